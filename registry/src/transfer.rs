//! Blob and manifest bytes across the network: uploads (resumable, [`crate::upload`]),
//! manifests, and downloads as a blocking [`Read`] that resumes an interrupted transfer with a
//! `Range` request.
//!
//! Downloads are not verified here: the OCI import reading them (`chasi_oci::import_image`)
//! verifies size and digest of every blob as it streams, so a corrupt blob is reported with
//! its expected and actual digests.

use crate::client::Session;
use crate::error::{RegistryError, Result};
use bytes::{Buf, Bytes};
use chasi_layers::{Digest, Store};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use oci_client::client::BlobResponse;
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::Reference;
use std::cell::RefCell;
use std::io::{self, Read};

/// The media types a pull accepts for a manifest or index.
const ACCEPT: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

impl Session {
    /// Whether the repository has the blob (`HEAD`).
    pub fn blob_exists(&self, digest: &str) -> Result<bool> {
        self.retry("check", &format!("blob {digest}"), || {
            self.block_on(self.client().blob_exists(&self.reference, digest))
        })
    }

    /// Mounts a blob from another repository of the same registry; `false` when the registry
    /// does not (it then opened an upload that it discards by itself).
    pub fn mount_blob(&self, from: &Reference, digest: &str) -> bool {
        self.block_on(self.client().mount_blob(&self.reference, from, digest))
            .is_ok()
    }

    /// Uploads a blob of the store in a resumable chunked upload ([`crate::upload`]).
    pub fn push_blob(&self, store: &Store, digest: &Digest, size: u64) -> Result<()> {
        crate::upload::upload(self, store, digest, size)
    }

    /// Puts a manifest or index under `target` (a tag or its digest), byte for byte.
    pub fn push_manifest(&self, target: &Reference, body: &[u8], media_type: &str) -> Result<()> {
        let what = format!("manifest {}", target.whole());
        let content_type =
            http::HeaderValue::from_str(media_type).map_err(|_| RegistryError::BadImage {
                reference: self.shown.clone(),
                reason: format!("media type {media_type:?} cannot be sent"),
            })?;
        self.retry("push", &what, || {
            let body = Bytes::copy_from_slice(body);
            self.block_on(
                self.client()
                    .push_manifest_raw(target, body, content_type.clone()),
            )
            .map(|_| ())
        })
    }

    /// Gets the manifest or index `target` names, with its digest.
    pub fn pull_manifest(&self, target: &Reference) -> Result<(Bytes, String)> {
        let what = match target.digest() {
            Some(d) => format!("manifest {d}"),
            None => format!(
                "repository {} or its tag {}",
                target.repository(),
                target.tag().unwrap_or("latest")
            ),
        };
        self.retry("pull", &what, || {
            self.block_on(
                self.manifest_client()
                    .pull_manifest_raw(target, self.auth(), ACCEPT),
            )
        })
    }

    /// A reader of blob `digest`; a failure that outlives the retries is left in `last_error`.
    pub fn open_blob<'s>(
        &'s self,
        digest: &str,
        last_error: &'s RefCell<Option<RegistryError>>,
    ) -> BlobReader<'s> {
        BlobReader {
            session: self,
            digest: digest.to_string(),
            delivered: 0,
            skip: 0,
            stream: None,
            pending: Bytes::new(),
            failures: 0,
            last_error,
        }
    }
}

/// A blob being downloaded, as a blocking reader that reconnects where it was cut off.
pub struct BlobReader<'s> {
    session: &'s Session,
    digest: String,
    /// Bytes handed to the reader so far.
    delivered: u64,
    /// Bytes to drop from a resumed response that started again from the beginning.
    skip: u64,
    stream: Option<BoxStream<'static, io::Result<Bytes>>>,
    pending: Bytes,
    failures: u32,
    last_error: &'s RefCell<Option<RegistryError>>,
}

/// Whether `e` is `oci-client`'s own digest check failing: the bytes are all there, and the
/// OCI import's check reports the mismatch with both digests.
fn is_verification(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<DigestError>())
        .is_some_and(|d| matches!(d, DigestError::VerificationError { .. }))
}

impl BlobReader<'_> {
    fn what(&self) -> String {
        format!("blob {}", self.digest)
    }

    fn fail(&self, e: RegistryError) -> io::Error {
        let err = io::Error::other(e.to_string());
        *self.last_error.borrow_mut() = Some(e);
        err
    }

    /// (Re)opens the stream at the first byte not delivered yet.
    fn open(&mut self) -> io::Result<()> {
        let s = self.session;
        let (offset, digest) = (self.delivered, self.digest.as_str());
        let opened = s.retry("pull", &self.what(), || {
            let client = s.client();
            if offset == 0 {
                // A Range request on an empty blob would be refused (416).
                s.block_on(client.pull_blob_stream(&s.reference, digest))
                    .map(|st| (st.stream, 0))
            } else {
                s.block_on(client.pull_blob_stream_partial(&s.reference, digest, offset, None))
                    .map(|r| match r {
                        BlobResponse::Full(st) => (st.stream, offset),
                        BlobResponse::Partial(st) => (st.stream, 0),
                    })
            }
        });
        match opened {
            Ok((stream, skip)) => {
                self.stream = Some(stream);
                self.skip = skip;
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }

    /// A failure in the middle of the body: reconnect later, or give up.
    fn interrupted(&mut self, e: io::Error) -> io::Result<()> {
        self.stream = None;
        self.failures += 1;
        let policy = self.session.retry_policy();
        if self.failures >= policy.attempts.max(1) {
            let what = self.what();
            let err = self.session.give_up(
                OciDistributionError::IoError(e),
                self.failures,
                "pull",
                &what,
            );
            return Err(self.fail(err));
        }
        std::thread::sleep(policy.delay(self.failures));
        Ok(())
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.pending.is_empty() {
                let n = buf.len().min(self.pending.len());
                buf[..n].copy_from_slice(&self.pending[..n]);
                self.pending.advance(n);
                self.delivered += n as u64;
                return Ok(n);
            }
            if self.stream.is_none() {
                self.open()?;
            }
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            match self.session.block_on(stream.next()) {
                None => return Ok(0),
                Some(Ok(mut piece)) => {
                    let drop = piece
                        .len()
                        .min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                    piece.advance(drop);
                    self.skip -= drop as u64;
                    self.pending = piece;
                }
                Some(Err(e)) if is_verification(&e) => return Ok(0),
                Some(Err(e)) => self.interrupted(e)?,
            }
        }
    }
}
