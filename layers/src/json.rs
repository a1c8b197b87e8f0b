//! The one way the store reads a JSON document: bounded in size and in nesting depth.
//!
//! Everything the store parses as JSON (refs, layer indexes, blob links, cache records, `layout.json`, and the
//! manifests, indexes and configs that `gc`, `verify` and `du` walk) may have been written by someone else: a
//! loaded archive, a damaged disk, a hostile user with write access to a shared store. A document is refused
//! before it is parsed when it is larger than its kind allows or nested deeper than [`MAX_DEPTH`], with an error
//! naming the file, so that no reader can be made to allocate without bound or to recurse deeply, and every
//! caller sees the same clear error for the same fault.

use crate::error::{Error, IoCtx, Result};
use serde::de::DeserializeOwned;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Deepest nesting of arrays and objects accepted. OCI manifests, indexes and configs and the store's own files
/// need fewer than ten levels.
pub const MAX_DEPTH: usize = 64;
/// Largest small document (ref, link, cache record, `layout.json`, manifest, index, config).
pub const MAX_DOC: u64 = 16 << 20;
/// Largest layer index: ~80 bytes per chunk, so this covers a layer of tens of gigabytes at the default sizes.
pub const MAX_LAYER_INDEX: u64 = 512 << 20;

/// Checks a document's size and nesting before any parsing; the error says what is wrong and where.
pub fn check(data: &[u8], max: u64) -> std::result::Result<(), String> {
    if data.len() as u64 > max {
        return Err(format!(
            "{} bytes, more than the {max} bytes allowed",
            data.len()
        ));
    }
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (at, &b) in data.iter().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!(
                        "nested deeper than {MAX_DEPTH} levels at byte {at}"
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a document already in memory, refusing it when larger than `max` bytes or nested too deep.
pub fn parse<T: DeserializeOwned>(
    data: &[u8],
    max: u64,
    what: &'static str,
    path: &Path,
) -> Result<T> {
    let malformed = |detail: String| Error::Malformed {
        what,
        path: path.to_path_buf(),
        detail,
    };
    check(data, max).map_err(malformed)?;
    serde_json::from_slice(data).map_err(|e| malformed(e.to_string()))
}

/// Reads at most `max` bytes of a file (an error, not a truncation, when it is larger).
/// `Ok(None)` when the file does not exist.
pub fn read_bounded(path: &Path, max: u64, what: &'static str) -> Result<Option<Vec<u8>>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", path, e)),
    };
    let mut data = Vec::new();
    f.take(max + 1).read_to_end(&mut data).ctx("read", path)?;
    if data.len() as u64 > max {
        return Err(Error::Malformed {
            what,
            path: path.to_path_buf(),
            detail: format!("larger than the {max} bytes allowed"),
        });
    }
    Ok(Some(data))
}

/// Reads and parses a document file; `Ok(None)` when it does not exist.
pub fn read<T: DeserializeOwned>(path: &Path, max: u64, what: &'static str) -> Result<Option<T>> {
    match read_bounded(path, max, what)? {
        Some(data) => parse(&data, max, what, path).map(Some),
        None => Ok(None),
    }
}

/// True when the bytes look like a JSON document (first non-blank byte `{` or `[`): such a blob is meant to be
/// parsed, and a failure to parse it is an error rather than a sign that it is some other kind of blob.
pub fn looks_like_json(data: &[u8]) -> bool {
    matches!(
        data.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{' | b'[')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_and_size_are_bounded_and_strings_do_not_count() {
        let p = Path::new("x.json");
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let e = parse::<serde_json::Value>(deep.as_bytes(), MAX_DOC, "manifest", p).unwrap_err();
        assert!(e.to_string().contains("nested deeper than 64"), "{e}");
        let ok = format!("{{\"a\":\"{}\\\"\"}}", "[".repeat(1000));
        assert!(parse::<serde_json::Value>(ok.as_bytes(), MAX_DOC, "manifest", p).is_ok());
        let e = parse::<serde_json::Value>(b"[1, 2, 3]", 4, "ref", p).unwrap_err();
        assert!(e.to_string().contains("more than the 4 bytes"), "{e}");
        assert!(looks_like_json(b" \n{") && !looks_like_json(b"\x28\xb5\x2f\xfd"));
    }
}
