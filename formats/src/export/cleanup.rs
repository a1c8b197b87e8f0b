//! Removing the unpacked rootfs once the file systems made from it are built.
//!
//! Why it is more than `remove_dir_all`: the tree holds thousands of inodes, and on some hosts
//! freeing each one's blocks waits for the disk (ext4 without a journal, mounted `discard`,
//! discards every freed extent synchronously, one `rmdir` at a time). So the removal runs beside
//! the writing of the output ([`removing`]), and spreads the unlinks over a few threads: files
//! first, then directories from the deepest level up, each level's in parallel (a directory is
//! only empty once its level below is gone). Nothing in the tree is followed: entries are typed
//! by `readdir` without following symlinks, and a symlink is unlinked like a file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads that unlink (the waits are on the disk, not the CPU).
const THREADS: usize = 8;

/// Runs `f` while another thread removes `tree`, a work tree nothing reads any more. What the
/// removal cannot delete (an error) is left to the work directory's own removal.
pub(crate) fn removing<T>(tree: &Path, f: impl FnOnce() -> T) -> T {
    std::thread::scope(|s| {
        s.spawn(|| remove_tree(tree));
        f()
    })
}

/// Removes `tree` and everything below it, on [`THREADS`] threads; errors stop nothing (what is
/// left goes with the work directory).
fn remove_tree(tree: &Path) {
    let mut files = Vec::new();
    let mut levels: Vec<Vec<PathBuf>> = Vec::new();
    let mut stack = vec![(tree.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => {
                    if levels.len() <= depth {
                        levels.resize_with(depth + 1, Vec::new);
                    }
                    levels[depth].push(e.path());
                    stack.push((e.path(), depth + 1));
                }
                _ => files.push(e.path()),
            }
        }
    }
    in_parallel(&files, |p| std::fs::remove_file(p));
    for level in levels.iter().rev() {
        in_parallel(level, |p| std::fs::remove_dir(p));
    }
    let _ = std::fs::remove_dir_all(tree);
}

/// Applies `op` to every path, on up to [`THREADS`] threads.
fn in_parallel(paths: &[PathBuf], op: impl Fn(&Path) -> std::io::Result<()> + Sync) {
    let next = AtomicUsize::new(0);
    let work = || {
        while let Some(p) = paths.get(next.fetch_add(1, Ordering::Relaxed)) {
            let _ = op(p);
        }
    };
    std::thread::scope(|s| {
        for _ in 1..THREADS.min(paths.len()) {
            s.spawn(work);
        }
        work();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_deep_trees_and_never_follows_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("keep"), "k").expect("write");
        let tree = dir.path().join("tree");
        for d in 0..20 {
            let deep = tree.join(format!("d{d}/a/b/c"));
            std::fs::create_dir_all(&deep).expect("mkdir");
            std::fs::write(deep.join("f"), "x").expect("write");
            std::fs::write(tree.join(format!("d{d}/g")), "y").expect("write");
        }
        std::os::unix::fs::symlink(&outside, tree.join("d0/a/link")).expect("symlink");
        std::os::unix::fs::symlink(&outside, tree.join("top")).expect("symlink");
        let written = removing(&tree, || 42);
        assert_eq!(written, 42);
        assert!(!tree.exists(), "tree left behind");
        assert!(outside.join("keep").exists(), "a symlink was followed");
    }
}
