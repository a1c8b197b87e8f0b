//! Content digests: computing them, and verifying a blob against its descriptor while it
//! streams.
//!
//! Every byte this module reads from a layout, an archive or a [`BlobSource`](super::BlobSource)
//! passes through a [`VerifyingReader`], so a corrupt or truncated blob is reported as a
//! typed error naming its digest instead of being imported or re-exported silently.
//!
//! The digests here are `oci-spec`'s, as descriptors carry them (sha256 or sha512, since a
//! foreign layout may use either); the SHA-256 [`Digest`](crate::Digest) chasi crates pass
//! each other is [`crate::sha256`].

use std::io::{self, Read, Write};

use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::{Digest as _, Sha256, Sha512};

use super::error::{OciError, OciResult};

/// Parses `algorithm:hex`, accepting only algorithms this module can verify (sha256, sha512).
pub fn parse_digest(text: &str) -> OciResult<Digest> {
    let digest: Digest = text.parse().map_err(|e| OciError::BadDigest {
        digest: text.to_string(),
        reason: format!("{e}"),
    })?;
    Hasher::for_digest(&digest)?;
    Ok(digest)
}

/// The `sha256:…` digest of a byte string.
pub fn sha256_digest(bytes: &[u8]) -> Digest {
    let mut hasher = Hasher::Sha256(Sha256::new());
    hasher.update(bytes);
    hasher.finish()
}

/// An incremental hash of one of the supported algorithms.
#[derive(Clone)]
pub enum Hasher {
    /// SHA-256 (what this crate writes).
    Sha256(Sha256),
    /// SHA-512 (accepted when reading).
    Sha512(Sha512),
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hasher::Sha256(_) => f.write_str("Hasher::Sha256"),
            Hasher::Sha512(_) => f.write_str("Hasher::Sha512"),
        }
    }
}

impl Hasher {
    /// A SHA-256 hasher.
    pub fn sha256() -> Self {
        Hasher::Sha256(Sha256::new())
    }

    /// A hasher of the algorithm `digest` uses; an error for algorithms we cannot verify.
    pub fn for_digest(digest: &Digest) -> OciResult<Self> {
        match digest.algorithm() {
            DigestAlgorithm::Sha256 => Ok(Hasher::Sha256(Sha256::new())),
            DigestAlgorithm::Sha512 => Ok(Hasher::Sha512(Sha512::new())),
            other => Err(OciError::BadDigest {
                digest: digest.to_string(),
                reason: format!("algorithm `{other}` is not supported (sha256, sha512 are)"),
            }),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let text = match self {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        };
        // A hex string of the right length always parses.
        match text.parse() {
            Ok(d) => d,
            Err(e) => unreachable!("a computed digest is valid: {e}"),
        }
    }
}

/// Why a [`VerifyingReader`] rejected its blob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    Size(u64),
    Digest(Digest),
}

/// Wraps a blob reader; at end of input checks size and digest against the descriptor.
///
/// On a mismatch `read` returns an `InvalidData` I/O error and [`VerifyingReader::error`]
/// gives the typed error; a blob longer than its descriptor is rejected as soon as the extra
/// byte is seen, so a hostile source cannot make the reader consume unbounded data.
pub struct VerifyingReader<R> {
    inner: R,
    expected: Digest,
    size: u64,
    read: u64,
    hasher: Option<Hasher>,
    failure: Option<Failure>,
    verified: bool,
}

impl<R: Read> VerifyingReader<R> {
    /// Verifies `inner` against `expected` and `size`.
    pub fn new(inner: R, expected: &Digest, size: u64) -> OciResult<Self> {
        Ok(VerifyingReader {
            inner,
            expected: expected.clone(),
            size,
            read: 0,
            hasher: Some(Hasher::for_digest(expected)?),
            failure: None,
            verified: false,
        })
    }

    /// The typed error if verification failed.
    pub fn error(&self) -> Option<OciError> {
        self.failure.as_ref().map(|f| match f {
            Failure::Size(actual) => OciError::SizeMismatch {
                digest: self.expected.to_string(),
                expected: self.size,
                actual: *actual,
            },
            Failure::Digest(actual) => OciError::DigestMismatch {
                expected: self.expected.to_string(),
                actual: actual.to_string(),
            },
        })
    }

    /// Reads whatever the consumer left and returns the verification result.
    pub fn finish(mut self) -> OciResult<()> {
        if !self.verified && self.failure.is_none() {
            let mut buf = [0u8; 8192];
            loop {
                match self.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        return Err(self
                            .error()
                            .unwrap_or_else(|| OciError::blob_io("read", &self.expected)(e)))
                    }
                }
            }
        }
        match self.error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Converts an I/O error seen by a consumer into the typed verification error when
    /// that is what caused it.
    pub fn explain(&self, err: io::Error, action: &'static str) -> OciError {
        self.error()
            .unwrap_or_else(|| OciError::blob_io(action, &self.expected)(err))
    }

    fn fail(&mut self, failure: Failure) -> io::Error {
        self.failure = Some(failure);
        let msg = self
            .error()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "blob verification failed".to_string());
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failure.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "blob verification failed",
            ));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // Allow one byte past the declared size so an over-long blob is detected.
        let remaining = self.size.saturating_sub(self.read).saturating_add(1);
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            if self.verified {
                return Ok(0);
            }
            if self.read != self.size {
                return Err(self.fail(Failure::Size(self.read)));
            }
            let actual = match self.hasher.take() {
                Some(h) => h.finish(),
                None => return Ok(0),
            };
            if actual != self.expected {
                return Err(self.fail(Failure::Digest(actual)));
            }
            self.verified = true;
            return Ok(0);
        }
        self.read += n as u64;
        if self.read > self.size {
            return Err(self.fail(Failure::Size(self.read)));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// Counts and hashes (SHA-256) what passes through to the inner writer.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::sha256(),
            written: 0,
        }
    }

    /// Wraps `inner`, hashing with `hasher` instead of SHA-256.
    pub fn with_hasher(inner: W, hasher: Hasher) -> Self {
        HashingWriter {
            inner,
            hasher,
            written: 0,
        }
    }

    /// The inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts and hashes (SHA-256) what is read through it, without checking anything.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::sha256(),
            read: 0,
        }
    }

    /// The digest and byte count of what was read.
    pub fn finish(self) -> (Digest, u64) {
        (self.hasher.finish(), self.read)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifying_reader_accepts_good_and_rejects_bad() {
        let data = b"hello world";
        let d = sha256_digest(data);
        let mut r = VerifyingReader::new(&data[..], &d, data.len() as u64).expect("sha256");
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("good blob");
        assert_eq!(out, data);
        assert!(r.finish().is_ok());

        let mut r = VerifyingReader::new(&b"hello worle"[..], &d, 11).expect("sha256");
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        assert!(matches!(r.error(), Some(OciError::DigestMismatch { .. })));

        let r = VerifyingReader::new(&b"hello world!"[..], &d, 11).expect("sha256");
        assert!(matches!(r.finish(), Err(OciError::SizeMismatch { .. })));

        let r = VerifyingReader::new(&b"hello"[..], &d, 11).expect("sha256");
        assert!(matches!(
            r.finish(),
            Err(OciError::SizeMismatch { actual: 5, .. })
        ));
    }

    #[test]
    fn parse_digest_rejects_unknown_algorithms() {
        assert!(parse_digest("md5:0123").is_err());
        assert!(parse_digest("sha256:xyz").is_err());
        assert!(parse_digest(sha256_digest(b"").as_ref()).is_ok());
    }
}
