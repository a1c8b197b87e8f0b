//! Shared helpers of the integration tests: fixture trees copied into temporary roots, a
//! packaged chart made from a fixture directory, and the text form snapshots compare.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use chasi_detect::Detection;

/// The fixtures directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Copies directory `from` into `to`, recursively.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Packs directory `dir` (whose name becomes the archive's top directory) as a `.tgz`.
pub fn pack_chart(dir: &Path, out: &Path) {
    let file = fs::File::create(out).unwrap();
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let name = dir.file_name().unwrap();
    tar.append_dir_all(name, dir).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
}

/// Writes `text` to `root/rel`, creating directories.
pub fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// The detection as text: images with their sources, then problems; `host` (a temporary
/// directory holding list files) shown as `$HOST`.
pub fn render(d: &Detection, host: &Path) -> String {
    let host = host.display().to_string();
    let mut out = String::from("images:\n");
    for image in &d.images {
        match &image.app_name {
            Some(app) => out.push_str(&format!("{} (app {app})\n", image.reference)),
            None => out.push_str(&format!("{}\n", image.reference)),
        }
        for s in &image.sources {
            out.push_str(&format!("  {}:{}:{}", s.path.display(), s.line, s.column));
            if let Some(d) = &s.detail {
                out.push_str(&format!(" — {d}"));
            }
            out.push('\n');
        }
    }
    out.push_str("problems:\n");
    for p in &d.problems {
        out.push_str(&format!("{p}\n"));
    }
    out.replace(&host, "$HOST")
}
