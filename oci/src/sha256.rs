//! [`Digest`], the SHA-256 digest every chasi crate passes to another: store objects, layers by
//! DiffID, manifests and configs, cache keys and plan node ids.
//!
//! One type so that a digest is parsed once, where text enters, and compared and printed the
//! same everywhere (`sha256:<64 lowercase hex>`). OCI documents carry `oci-spec`'s digest, which
//! also admits sha512 (foreign layouts may use it); [`Digest::from_oci`] and [`Digest::to_oci`]
//! are the one conversion each way, at that document boundary. The hash is `ring`'s (assembly
//! with SHA-NI, AVX2 or ARMv8 SHA2 selected at run time; several times faster than portable
//! code on machines without SHA-NI, and every ingested byte is hashed).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{quoted, OciError, OciResult};

/// A SHA-256 digest, printed and parsed as `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

/// Text that is not a `sha256:<64 lowercase hex>` digest (or, for [`Digest::from_hex`], not
/// 64 lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid digest {}: expected sha256:<64 lowercase hex digits>", quoted(.text))]
pub struct DigestParseError {
    /// The text that was given.
    pub text: String,
}

impl DigestParseError {
    /// The error for `text`.
    pub fn new(text: &str) -> Self {
        DigestParseError {
            text: text.to_string(),
        }
    }
}

impl Digest {
    /// Hashes a byte slice.
    pub fn of(data: &[u8]) -> Self {
        let d = ring::digest::digest(&ring::digest::SHA256, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Digest(out)
    }

    /// The 64 lowercase hex digits, without the algorithm prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hex digits (no prefix).
    pub fn from_hex(s: &str) -> Result<Self, DigestParseError> {
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if s.len() != 64 || !s.bytes().all(lower_hex) {
            return Err(DigestParseError::new(s));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestParseError::new(s))?;
        Ok(Digest(out))
    }

    /// The digest an OCI descriptor names; only SHA-256 is one (the store keeps nothing
    /// else, so the error reads as the store refusing the blob).
    pub fn from_oci(digest: &oci_spec::image::Digest) -> OciResult<Self> {
        digest.as_ref().parse().map_err(|_| OciError::Sink {
            digest: digest.to_string(),
            message: "only sha256 digests are supported".into(),
        })
    }

    /// As the digest of an OCI descriptor.
    pub fn to_oci(&self) -> oci_spec::image::Digest {
        // `sha256:` and 64 lowercase hex digits is always a valid OCI digest.
        match self.to_string().parse() {
            Ok(d) => d,
            Err(e) => unreachable!("a sha256 digest is a valid OCI digest: {e}"),
        }
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, DigestParseError> {
        match s.strip_prefix("sha256:").map(Digest::from_hex) {
            Some(Ok(d)) => Ok(d),
            _ => Err(DigestParseError::new(s)),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let d = Digest::of(b"");
        let s = d.to_string();
        assert_eq!(
            s,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(s.parse::<Digest>(), Ok(d));
        for bad in [
            "sha256:E3B0",
            "md5:00",
            "e3b0",
            &format!("sha256:{}", "G".repeat(64)),
        ] {
            assert_eq!(bad.parse::<Digest>(), Err(DigestParseError::new(bad)));
        }
        assert_eq!(
            "sha256:xy".parse::<Digest>().map_err(|e| e.to_string()),
            Err("invalid digest \"sha256:xy\": expected sha256:<64 lowercase hex digits>".into())
        );
    }

    #[test]
    fn oci_round_trip() {
        let d = Digest::of(b"hello");
        assert_eq!(d.to_oci().to_string(), d.to_string());
        assert_eq!(Digest::from_oci(&d.to_oci()).ok(), Some(d));
        let sha512: oci_spec::image::Digest = format!("sha512:{}", "a".repeat(128))
            .parse()
            .expect("valid sha512");
        assert!(matches!(
            Digest::from_oci(&sha512),
            Err(OciError::Sink { .. })
        ));
    }
}
