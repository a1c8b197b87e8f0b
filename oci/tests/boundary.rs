//! The crate boundary of `chasi-oci`: it depends on no other chasi crate, so the store, the
//! exporters, the builder, the compiler and the runtime can all use it without a cycle.
//! Checked on the manifest and on the code (a path such as `chasi_layers::x` would need the
//! dependency back).

use std::path::Path;

const OTHERS: &[&str] = &[
    "chasi_layers",
    "chasi_formats",
    "chasi_builder",
    "chasi_compiler",
    "chasi_runtime",
    "chasi_images",
];

#[test]
fn the_manifest_names_no_other_chasi_crate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("read Cargo.toml");
    let offending: Vec<&str> = manifest
        .lines()
        .filter(|l| l.trim_start().starts_with("chasi-"))
        .collect();
    assert!(offending.is_empty(), "chasi-oci depends on {offending:?}");
}

#[test]
fn the_code_uses_no_other_chasi_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offending = Vec::new();
    for entry in std::fs::read_dir(&src).expect("read src/") {
        let path = entry.expect("entry of src/").path();
        let text = std::fs::read_to_string(&path).expect("read a source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if let Some(name) = OTHERS.iter().find(|c| code.contains(&format!("{c}::"))) {
                offending.push(format!("{}:{}: {name}", path.display(), n + 1));
            }
        }
    }
    assert!(offending.is_empty(), "chasi-oci uses {offending:?}");
}
