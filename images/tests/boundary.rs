//! The crate boundary of `chasi-images`: it stands on `chasi-oci` and `chasi-layers` only, so
//! the CLI, the exporters, the builder and the runtime can use images in the store without the
//! builder or the compiler. Checked on the manifest and on the code (a path such as
//! `chasi_builder::x` would need the dependency).

use std::path::Path;

const ALLOWED: &[&str] = &["chasi-layers", "chasi-oci"];

const OTHERS: &[&str] = &[
    "chasi_builder",
    "chasi_compiler",
    "chasi_formats",
    "chasi_runtime",
];

#[test]
fn the_manifest_names_only_oci_and_layers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("read Cargo.toml");
    let chasi: Vec<&str> = manifest
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("chasi-"))
        .filter_map(|l| l.split(['.', ' ', '=']).next())
        .collect();
    assert_eq!(chasi, ALLOWED, "chasi-images depends on {chasi:?}");
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
    assert!(offending.is_empty(), "chasi-images uses {offending:?}");
}
