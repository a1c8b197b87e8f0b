//! `ADD` of a local tar archive: recognised by content (not by name) and unpacked.
//!
//! Docker's rule: a local source that is a tar archive — plain, gzip, bzip2, xz or zstd
//! compressed — is extracted at the destination, keeping the owners, modes and extended
//! attributes (`security.capability`, ACLs) its entries record; anything else is copied as a
//! file. The extraction goes through the store's safe applier, so an archive cannot write
//! outside its directory (`..`, absolute names, symlink and hardlink tricks are refused). The
//! metadata is taken from the archive's records, not read back from the unpacked files, so it
//! survives an unprivileged build (no `chown`) and a work directory without xattr support.

use crate::copy::{list_tree, Recorded, SourceTree, TreeOwners};
use crate::error::{io, BuildError, Result};
use chasi_layers::{ApplyOptions, EntryKind, Store, TarEntry};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

/// A compression a tar archive may be wrapped in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wrapping {
    Plain,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

fn sniff(head: &[u8]) -> Option<Wrapping> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Wrapping::Gzip)
    } else if head.starts_with(b"BZh") {
        Some(Wrapping::Bzip2)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(Wrapping::Xz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Wrapping::Zstd)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(Wrapping::Plain)
    } else {
        None
    }
}

fn open(path: &Path, wrapping: Wrapping) -> Result<Box<dyn Read>> {
    let file = BufReader::new(File::open(path).map_err(io("read", path))?);
    Ok(match wrapping {
        Wrapping::Plain => Box::new(file),
        Wrapping::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Wrapping::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        Wrapping::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(file)),
        // The layer decoder: frames over the store's 128 MiB window are refused by name.
        Wrapping::Zstd => chasi_oci::media::decoder(chasi_oci::LayerCodec::Zstd, file)
            .map_err(io("read", path))?,
    })
}

/// If `path` is a tar archive, extracts it into `dir` and returns the extracted tree;
/// otherwise `None` (the file is copied as is).
pub fn maybe_extract(store: &Store, path: &Path, dir: &Path) -> Result<Option<SourceTree>> {
    let mut head = [0u8; 512];
    let n = read_up_to(&mut File::open(path).map_err(io("read", path))?, &mut head)
        .map_err(io("read", path))?;
    let Some(wrapping) = sniff(&head[..n]) else {
        return Ok(None);
    };
    if wrapping != Wrapping::Plain {
        // A compressed file is an archive only if what it holds is a tar.
        let mut inner = [0u8; 512];
        let m = read_up_to(&mut open(path, wrapping)?, &mut inner).unwrap_or(0);
        if sniff(&inner[..m]) != Some(Wrapping::Plain) {
            return Ok(None);
        }
    }
    let _ = store; // extraction needs no store object: the applier is a free function
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let reader = open(path, wrapping)?;
    let mut recorded = BTreeMap::new();
    chasi_layers::apply::apply_layer_seeing(
        reader,
        dir,
        &ApplyOptions::default(),
        &path.display().to_string(),
        &mut |entry| record(&mut recorded, entry),
    )
    .map_err(|source| BuildError::Extract {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Some(SourceTree {
        root: dir.to_path_buf(),
        is_dir: true,
        below: list_tree(dir)?,
        file_name: String::new(),
        owners: TreeOwners::Recorded(Arc::new(recorded)),
        tar_bytes: None,
    }))
}

/// An entry's name as the applier places it: `./` and empty components dropped.
fn normalized(path: &[u8]) -> String {
    String::from_utf8_lossy(path)
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Records what an entry says about its path (a later entry of the same path wins, as it
/// does on disk); a hard link shares its target's inode, so it gets the target's record.
fn record(recorded: &mut BTreeMap<String, Recorded>, entry: &TarEntry) {
    let name = normalized(&entry.path);
    if name.is_empty() {
        return; // the archive's `./`: the destination directory keeps its own
    }
    let meta = match &entry.kind {
        EntryKind::Hardlink(target) => match recorded.get(&normalized(target)) {
            Some(r) => r.clone(),
            None => return,
        },
        _ => Recorded {
            uid: entry.uid,
            gid: entry.gid,
            mode: entry.mode,
            xattrs: entry.xattrs.clone(),
        },
    };
    recorded.insert(name, meta);
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
