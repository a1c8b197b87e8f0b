//! Digests and chunk names read from text: `sha256:<hex>`, bare hex, `blake3:<hex>`. A malformed name is
//! [`Error::BadDigest`]; parsing lives here, above both [`crate::digest`] (the types and hashing) and
//! [`crate::error`] (whose variants carry digests), so those two modules do not import each other.

use crate::digest::{ChunkId, Digest};
use crate::error::Error;
use std::str::FromStr;

impl Digest {
    /// Parses 64 lowercase hex digits (no prefix).
    pub fn from_hex(s: &str) -> Result<Self, Error> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::BadDigest(s.to_string()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| Error::BadDigest(s.to_string()))?;
        Ok(Digest(out))
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.strip_prefix("sha256:") {
            Some(h) => Digest::from_hex(h).map_err(|_| Error::BadDigest(s.to_string())),
            None => Err(Error::BadDigest(s.to_string())),
        }
    }
}

impl FromStr for ChunkId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.strip_prefix("blake3:").map(Digest::from_hex) {
            Some(Ok(d)) => Ok(ChunkId(d.0)),
            _ => Err(Error::BadDigest(s.to_string())),
        }
    }
}
