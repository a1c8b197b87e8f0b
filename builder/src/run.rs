//! `RUN`: execute the command over the stage's filesystem and turn its changes into a layer.
//!
//! The sandbox leaves the changes in an overlay upper directory, in overlayfs' own notation;
//! this module translates that notation into OCI's: a character device `0:0` becomes a
//! `.wh.<name>` whiteout, a directory marked `overlay.opaque=y` gets a `.wh..wh..opq` marker
//! (its lower contents are gone), everything else is copied as it is, owners kept (the
//! command may have `chown`ed files on purpose).

use crate::error::{io, Result};
use crate::sandbox::{self, RunSpec};
use chasi_layers::tarwriter::entry_from_fs;
use chasi_layers::{EntryKind, LayerInfo, OwnerPolicy, Store, TarEntry, TarOptions, TarWriter};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// What a finished `RUN` produced.
pub struct RunResult {
    /// The exit code.
    pub exit_code: i32,
    /// Interleaved stdout and stderr.
    pub output: Vec<u8>,
    /// The layer, when the command succeeded and changed something.
    pub layer: Option<LayerInfo>,
}

/// Runs the command of `spec` over `spec.lower` (not modified) and ingests its changes.
pub fn run_step(
    store: &Store,
    spec: &RunSpec,
    epoch: i64,
    progress: Option<crate::rootfs::Progress<'_>>,
) -> Result<RunResult> {
    let scratch = &spec.scratch;
    let outcome = sandbox::run(spec)?;
    let layer = if outcome.exit_code == 0 && !is_empty_dir(&outcome.upper)? {
        Some(upper_to_layer(store, &outcome.upper, epoch, progress)?)
    } else {
        None
    };
    // The scratch directory holds the only copy of the changes until here; now it can go.
    let _ = fs::remove_dir_all(scratch);
    Ok(RunResult {
        exit_code: outcome.exit_code,
        output: outcome.output,
        layer,
    })
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    Ok(fs::read_dir(dir).map_err(io("list", dir))?.next().is_none())
}

/// Whether overlayfs marked a directory opaque (`trusted.` as root, `user.` in a user namespace).
fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"].iter().any(|name| {
        let mut buf = [0u8; 4];
        matches!(rustix::fs::lgetxattr(path, *name, &mut buf), Ok(n) if n >= 1 && buf[0] == b'y')
    })
}

/// Translates an overlay upper directory into an OCI layer in the store.
pub fn upper_to_layer(
    store: &Store,
    upper: &Path,
    epoch: i64,
    progress: Option<crate::rootfs::Progress<'_>>,
) -> Result<LayerInfo> {
    let opts = TarOptions {
        source_date_epoch: Some(epoch),
        owner: OwnerPolicy::Keep,
        xattrs: false,
    };
    crate::rootfs::ingest_stream(store, progress, |out| {
        let mut tar = TarWriter::new(out);
        write_dir(&mut tar, upper, &[], &opts, epoch)?;
        tar.finish().map_err(io("finish the layer of", upper))?;
        Ok(())
    })
}

/// Writes the entries below `dir` depth-first: siblings sorted by name, each directory
/// immediately followed by its contents (the tar writer's order everywhere in the store).
fn write_dir<W: std::io::Write>(
    tar: &mut TarWriter<W>,
    dir: &Path,
    rel: &[u8],
    opts: &TarOptions,
    epoch: i64,
) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(io("list", dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(io("list", dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        let child = if rel.is_empty() {
            name.as_bytes().to_vec()
        } else {
            [rel, b"/", name.as_bytes()].concat()
        };
        let meta = fs::symlink_metadata(&path).map_err(io("stat", &path))?;
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            tar.append(&TarEntry::whiteout(rel, name.as_bytes(), epoch), None)
                .map_err(io("write a whiteout for", &path))?;
            continue;
        }
        let Some(entry) = entry_from_fs(&path, &child, opts)? else {
            continue;
        };
        match entry.kind {
            EntryKind::File => {
                let mut f = fs::File::open(&path).map_err(io("read", &path))?;
                tar.append(&entry, Some(&mut f))
                    .map_err(io("read", &path))?;
            }
            EntryKind::Dir => {
                tar.append(&entry, None).map_err(io("write", &path))?;
                if is_opaque(&path) {
                    tar.append(&TarEntry::opaque(&child, epoch), None)
                        .map_err(io("write an opaque marker for", &path))?;
                }
                write_dir(tar, &path, &child, opts, epoch)?;
            }
            _ => tar.append(&entry, None).map_err(io("write", &path))?,
        }
    }
    Ok(())
}
