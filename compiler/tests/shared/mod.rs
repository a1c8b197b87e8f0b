//! The `shared/` data beside the repository (the sealer corpus): tests that need it fail with a
//! message naming it when it is missing in CI (`CI=true`), and are skipped with that message
//! elsewhere (a checkout without `shared/` next to it).

use std::path::{Path, PathBuf};

/// `shared/corpus/sealer`, or `None` (with the reason printed) when it is absent outside CI.
pub fn corpus() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/sealer");
    if dir.is_dir() {
        return Some(dir);
    }
    let message = format!(
        "the sealer corpus is missing at {} (it lives in shared/, next to the repository)",
        dir.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{message}");
    }
    eprintln!("skipped: {message}");
    None
}
