//! What one layer-tar entry means, decided once for both readers of layers.
//!
//! Why a module of its own: the rules that turn a tar member into an operation on a file system —
//! the name is relative and never climbs (`..`, absolute, NUL and overlong names are refused),
//! `.wh.<name>` deletes a sibling, `.wh..wh..opq` empties its directory of what lower layers put
//! there, a whiteout may not name `.`, `..` or nothing, a hard link names an existing non-directory
//! by a path that obeys the same rules — are security-critical. [`crate::apply`] (onto a real
//! directory, through handles opened beneath it) and [`crate::flatten`] (onto an in-memory tree)
//! must agree on them exactly, so both ask [`classify`] and [`hard_link_target`] and differ only
//! in how they resolve a parent and carry the operation out.

use crate::error::{Error, Result};

/// The marker name of an opaque directory.
pub const OPAQUE: &[u8] = b".wh..wh..opq";
/// The prefix of a whiteout name.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// The longest entry name accepted (Linux's `PATH_MAX`); it also bounds the depth of the tree an archive can make.
pub const MAX_NAME: usize = 4096;

/// Normalizes an entry name: returns its components, or an error for absolute names and `..`.
pub(crate) fn normalize(raw: &[u8]) -> Result<Vec<Vec<u8>>> {
    let show = || String::from_utf8_lossy(raw).into_owned();
    if raw.first() == Some(&b'/') {
        return Err(Error::UnsafeEntry {
            entry: show(),
            reason: "absolute path".into(),
        });
    }
    if raw.len() > MAX_NAME {
        return Err(Error::UnsafeEntry {
            entry: format!("{}…", String::from_utf8_lossy(&raw[..64])),
            reason: format!("name longer than {MAX_NAME} bytes"),
        });
    }
    if raw.contains(&0) {
        return Err(Error::UnsafeEntry {
            entry: show(),
            reason: "NUL byte in name".into(),
        });
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(Error::UnsafeEntry {
                    entry: show(),
                    reason: "path contains '..'".into(),
                })
            }
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// What a layer entry asks for; `parent` is the normalized path of the directory it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOp {
    /// The root itself (`./`): nothing to do.
    Root,
    /// Remove from `parent` everything lower layers put there (an opaque marker).
    Opaque {
        /// The directory made opaque.
        parent: Vec<Vec<u8>>,
    },
    /// Remove `name` (and everything below it) from `parent`.
    Whiteout {
        /// The directory the whiteout is in.
        parent: Vec<Vec<u8>>,
        /// The name it removes.
        name: Vec<u8>,
    },
    /// Create or replace `name` in `parent` with the entry.
    Put {
        /// The directory the entry goes into.
        parent: Vec<Vec<u8>>,
        /// Its name.
        name: Vec<u8>,
    },
}

fn unsafe_entry(show: &str, reason: &str) -> Error {
    Error::UnsafeEntry {
        entry: show.to_string(),
        reason: reason.into(),
    }
}

/// Classifies an entry by its raw tar name (`show` is how errors name it).
pub fn classify(raw: &[u8], show: &str) -> Result<EntryOp> {
    let mut comps = normalize(raw)?;
    let Some(name) = comps.pop() else {
        return Ok(EntryOp::Root);
    };
    let parent = comps;
    if name == OPAQUE {
        return Ok(EntryOp::Opaque { parent });
    }
    if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
        if target.is_empty() || target == b"." || target == b".." {
            return Err(unsafe_entry(show, "invalid whiteout name"));
        }
        return Ok(EntryOp::Whiteout {
            parent,
            name: target.to_vec(),
        });
    }
    Ok(EntryOp::Put { parent, name })
}

/// The target of a hard link, split into its parent directory and name (a link to the root is
/// refused). The caller resolves the parent and must still refuse a missing target or a
/// directory ([`hard_link_refusal`]).
pub fn hard_link_target(target: &[u8], show: &str) -> Result<(Vec<Vec<u8>>, Vec<u8>)> {
    let mut comps = normalize(target)?;
    let Some(name) = comps.pop() else {
        return Err(unsafe_entry(show, "hard link to the root"));
    };
    Ok((comps, name))
}

/// What the resolved target of a hard link was found to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkTarget {
    /// Nothing is there.
    Missing,
    /// A directory.
    Directory,
    /// A file, symlink, device or FIFO: a valid target.
    Other,
}

/// The error for a hard link whose target is not a valid one, or `None` when it is.
pub fn hard_link_refusal(found: LinkTarget, target: &[u8], show: &str) -> Option<Error> {
    match found {
        LinkTarget::Other => None,
        LinkTarget::Directory => Some(unsafe_entry(show, "hard link to a directory")),
        LinkTarget::Missing => Some(unsafe_entry(
            show,
            &format!(
                "hard link target {} does not exist",
                crate::error::excerpt(&String::from_utf8_lossy(target))
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(raw: &str) -> Result<EntryOp> {
        classify(raw.as_bytes(), raw)
    }

    #[test]
    fn whiteouts_opaque_markers_and_puts_are_told_apart() {
        assert_eq!(op("./").unwrap(), EntryOp::Root);
        assert_eq!(
            op("a/b/.wh..wh..opq").unwrap(),
            EntryOp::Opaque {
                parent: vec![b"a".to_vec(), b"b".to_vec()]
            }
        );
        assert_eq!(
            op("./a/.wh.x").unwrap(),
            EntryOp::Whiteout {
                parent: vec![b"a".to_vec()],
                name: b"x".to_vec()
            }
        );
        assert_eq!(
            op("a//x/").unwrap(),
            EntryOp::Put {
                parent: vec![b"a".to_vec()],
                name: b"x".to_vec()
            }
        );
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in [
            "a/.wh.",
            "a/.wh..",
            "a/.wh...",
            "../x",
            "/etc/passwd",
            "a/../../x",
        ] {
            let r = op(bad);
            assert!(r.is_err(), "{bad} must be refused, got {r:?}");
        }
        assert!(hard_link_target(b"./", "l").is_err());
        assert_eq!(
            hard_link_target(b"a/b", "l").unwrap(),
            (vec![b"a".to_vec()], b"b".to_vec())
        );
        assert!(hard_link_refusal(LinkTarget::Directory, b"a", "l").is_some());
        assert!(hard_link_refusal(LinkTarget::Missing, b"a", "l").is_some());
        assert!(hard_link_refusal(LinkTarget::Other, b"a", "l").is_none());
    }
}
