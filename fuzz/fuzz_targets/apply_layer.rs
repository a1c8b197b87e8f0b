//! Fuzz target: any tar applied into a temporary root must not panic and must change nothing
//! beside the root. A first byte of 0 reads the rest as a hostile-entry script (the generator
//! the default suite's `layers/tests/apply_safety.rs` loop uses), anything else is a raw tar.
#![no_main]

#[path = "../../layers/tests/hostile/mod.rs"]
mod hostile;

use chasi_layers::apply::apply_layer;
use chasi_layers::ApplyOptions;
use libfuzzer_sys::fuzz_target;
use std::fs;
use std::path::Path;

/// What a canary directory looks like: its mtime and its entries.
fn state(dir: &Path) -> (std::time::SystemTime, Vec<std::ffi::OsString>) {
    let mtime = fs::metadata(dir).and_then(|m| m.modified()).expect("canary");
    let mut names: Vec<_> = fs::read_dir(dir)
        .expect("canary")
        .map(|e| e.expect("canary").file_name())
        .collect();
    names.sort();
    (mtime, names)
}

fuzz_target!(|data: &[u8]| {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("root");
    let canaries = [t.path().join("canary"), t.path().join("victim")];
    fs::create_dir_all(&root).expect("root");
    for c in &canaries {
        fs::create_dir_all(c).expect("canary");
        fs::write(c.join("keep"), b"keep").expect("canary");
    }
    let before: Vec<_> = canaries.iter().map(|c| state(c)).collect();
    let tar = match data.split_first() {
        Some((0, script)) => hostile::tar_from_script(script, &canaries[0].display().to_string()),
        _ => data.to_vec(),
    };
    let opts = ApplyOptions {
        chown: false,
        devices: false,
        xattrs: false,
        // Half the inputs go through the subtree filter, which must keep the same guarantees.
        only: if data.len() % 2 == 1 {
            vec!["a/b".to_string()]
        } else {
            Vec::new()
        },
    };
    let _ = apply_layer(&tar[..], &root, &opts, "fuzz");
    let after: Vec<_> = canaries.iter().map(|c| state(c)).collect();
    assert_eq!(before, after, "a canary beside the root changed");
    let mut names: Vec<_> = fs::read_dir(t.path())
        .expect("tempdir")
        .map(|e| e.expect("tempdir").file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["canary", "root", "victim"], "written beside the root");
});
