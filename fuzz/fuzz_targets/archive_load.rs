//! Shared by the archive-loading fuzz targets: write the input to a temporary file and load
//! it the way `chasi load` does (format detected from the content), into a fresh store and
//! into a fresh OCI layout directory. Errors are expected; panics are the bugs.

use chasi_oci::{self as oci, DirBlobs};

pub fn load_all(data: &[u8], name: &str) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let path = dir.path().join(name);
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(store) = chasi_layers::Store::open(dir.path().join("store")) {
        let _ = chasi_images::load(&store, &path);
    }
    let mut layout = DirBlobs::new(dir.path().join("layout"));
    let _ = oci::load(&path, &mut layout);
}
