//! Digests: node identities and the content digest of local sources.
//!
//! Both are SHA-256 over a canonical byte encoding, so that the same definition and the same
//! files give the same digest on any machine, and times never matter. The exact encodings
//! are part of the cache-key contract documented on [`super::Node::id`]; changing them
//! invalidates every cache, so the encoding carries a version string.

use super::files::{FileDigests, FileStamp};
use crate::check::context::{Context, ContextError, EntryKind};
use chasi_oci::Digest;
use rayon::prelude::*;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;

/// A file's size and BLAKE3, or why it could not be read.
type FileDigest = Result<(u64, [u8; 32]), ContextError>;

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Version tag hashed into every node identity.
pub const NODE_DIGEST_VERSION: &str = "chasi.plan.node/v1";

/// Version tag hashed into every content digest.
pub const CONTENT_DIGEST_VERSION: &str = "chasi.plan.content/v2";

/// Writes JSON with object keys sorted (by bytes) and no insignificant whitespace, whatever
/// the map implementation of `serde_json` in the build.
pub fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                canonical_json(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::String(text) => write_json_string(text, out),
        other => out.push_str(&other.to_string()),
    }
}

/// Writes a JSON string literal (the escaping `serde_json` uses) without a temporary value.
fn write_json_string(text: &str, out: &mut String) {
    if text
        .bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(text).unwrap_or_default());
    }
}

/// Hashes the files below context paths, caching per path (a source used by several steps
/// or platforms is read once).
#[derive(Debug)]
pub struct ContentHasher<'c> {
    context: &'c Context,
    cache: HashMap<String, [u8; 32]>,
    files: Option<&'c dyn FileDigests>,
}

fn put(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_le_bytes());
    hasher.update(bytes);
}

impl<'c> ContentHasher<'c> {
    /// A hasher over `context`.
    pub fn new(context: &'c Context) -> Self {
        ContentHasher {
            context,
            cache: HashMap::new(),
            files: None,
        }
    }

    /// A hasher that looks file digests up in (and records them into) `files` first.
    pub fn with_file_digests(context: &'c Context, files: Option<&'c dyn FileDigests>) -> Self {
        ContentHasher {
            context,
            cache: HashMap::new(),
            files,
        }
    }

    /// The content digest of the given context paths, in order (see [`super::Node::id`]).
    pub fn digest(&mut self, paths: &[String]) -> Result<Digest, ContextError> {
        self.digest_with(paths, false)
    }

    /// [`Self::digest`]; with `owners` (`COPY --chown=preserve`, whose layer carries them)
    /// every entry's numeric uid and gid and its extended attributes but `security.selinux`
    /// are part of it too.
    pub fn digest_with(&mut self, paths: &[String], owners: bool) -> Result<Digest, ContextError> {
        let mut hasher = Sha256::new();
        put(&mut hasher, CONTENT_DIGEST_VERSION.as_bytes());
        if owners {
            put(&mut hasher, b"owners");
        }
        for path in paths {
            let tree = self.tree(path, owners)?;
            put(&mut hasher, path.as_bytes());
            hasher.update(tree);
        }
        Ok(Digest(hasher.finalize().into()))
    }

    /// The digest of one path's tree: for every entry (sorted by relative path) its kind,
    /// relative path, permission bits and, for a file, its size and the BLAKE3 of its bytes
    /// (fast without SHA instructions; never leaves chasi), for a
    /// symbolic link, its target; with `owners`, its uid, gid and extended attributes. Times
    /// and inode numbers are left out.
    fn tree(&mut self, path: &str, owners: bool) -> Result<[u8; 32], ContextError> {
        let key = if owners {
            format!("{path}\0owners")
        } else {
            path.to_string()
        };
        if let Some(d) = self.cache.get(&key) {
            return Ok(*d);
        }
        let entries = self.context.walk(path)?;
        let files = self.files;
        // Files are read and hashed in parallel (the plan's one pass over the context's bytes), then folded into
        // the tree digest in walk order; the first failing file in that order is the error.
        let files: Vec<Option<FileDigest>> = entries
            .par_iter()
            .map(|e| (e.kind == EntryKind::File).then(|| file_digest(files, &e.path, &e.stat)))
            .collect();
        let mut hasher = Sha256::new();
        for (entry, file) in entries.iter().zip(files) {
            let kind: &[u8] = match entry.kind {
                EntryKind::Dir => b"d",
                EntryKind::File => b"f",
                EntryKind::Symlink => b"l",
                EntryKind::Other => b"o",
            };
            hasher.update(kind);
            put(&mut hasher, entry.rel.as_bytes());
            hasher.update(entry.mode.to_le_bytes());
            if owners {
                owner_record(&mut hasher, &entry.path)?;
            }
            match entry.kind {
                EntryKind::File => {
                    if let Some(file) = file {
                        let (size, digest) = file?;
                        hasher.update(size.to_le_bytes());
                        hasher.update(digest);
                    }
                }
                EntryKind::Symlink => {
                    let target =
                        std::fs::read_link(&entry.path).map_err(|source| ContextError::Read {
                            path: entry.path.clone(),
                            source,
                        })?;
                    put(&mut hasher, target.to_string_lossy().as_bytes());
                }
                EntryKind::Dir | EntryKind::Other => {}
            }
        }
        let digest: [u8; 32] = hasher.finalize().into();
        self.cache.insert(key, digest);
        Ok(digest)
    }
}

/// Hashes a path's numeric owner and its extended attributes (sorted by name, without
/// `security.selinux`, which labels the build host and never goes into a layer).
fn owner_record(hasher: &mut Sha256, path: &std::path::Path) -> Result<(), ContextError> {
    use std::os::unix::fs::MetadataExt;
    let read_err = |source: std::io::Error| ContextError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::symlink_metadata(path).map_err(read_err)?;
    hasher.update(meta.uid().to_le_bytes());
    hasher.update(meta.gid().to_le_bytes());
    let mut names = vec![0u8; 65536];
    let n = match rustix::fs::llistxattr(path, &mut names) {
        Ok(n) => n,
        Err(e) if e == rustix::io::Errno::NOTSUP || e == rustix::io::Errno::OPNOTSUPP => 0,
        Err(e) => return Err(read_err(e.into())),
    };
    let mut list: Vec<&[u8]> = names[..n]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .collect();
    list.sort();
    let mut value = vec![0u8; 65536];
    for name in list.into_iter().filter(|n| *n != b"security.selinux") {
        let len = rustix::fs::lgetxattr(path, name, &mut value).map_err(|e| read_err(e.into()))?;
        put(hasher, name);
        put(hasher, &value[..len]);
    }
    Ok(())
}

/// BLAKE3 of a file's bytes, from the stamp cache when it knows the file (`meta` is
/// what the context walk's `lstat` said).
fn file_digest(
    files: Option<&dyn FileDigests>,
    path: &std::path::Path,
    stat: &crate::check::context::Stat,
) -> FileDigest {
    let read_err = |source| ContextError::Read {
        path: path.to_path_buf(),
        source,
    };
    let stamp = match files {
        Some(files) => {
            let stamp = FileStamp::of(path, stat);
            if let Some(d) = files.get(&stamp) {
                return Ok((stamp.size, d));
            }
            Some(stamp)
        }
        None => None,
    };
    let mut file = std::fs::File::open(path).map_err(read_err)?;
    let mut content = blake3::Hasher::new();
    let mut size = 0u64;
    // One read buffer per thread: a fresh 256 KiB buffer per file cost more than hashing small files.
    READ_BUF.with(|buf| -> Result<(), ContextError> {
        let mut buf = buf.borrow_mut();
        if buf.is_empty() {
            buf.resize(256 * 1024, 0);
        }
        loop {
            let n = file.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                return Ok(());
            }
            size += n as u64;
            content.update(&buf[..n]);
        }
    })?;
    let digest: [u8; 32] = content.finalize().into();
    if let (Some(files), Some(stamp)) = (files, stamp) {
        // A file that changed while it was read is not remembered under either stamp.
        if stamp.size == size {
            files.put(stamp, digest);
        }
    }
    Ok((size, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[1,{"z":0,"y":"x"}],"c":null}}"#).unwrap();
        let mut out = String::new();
        canonical_json(&v, &mut out);
        assert_eq!(out, r#"{"a":{"c":null,"d":[1,{"y":"x","z":0}]},"b":1}"#);
    }
}
