//! The calls the import makes to containerd (content, leases, images), blocking: the
//! `containerd-client` crate's async gRPC stubs run on a current-thread tokio runtime owned
//! here, so the engine stays synchronous (as `chasi-registry` does for `oci-client`).
//!
//! Every request carries the namespace (`containerd-namespace` metadata) and, once
//! [`Containerd::begin_lease`] took one, the lease (`containerd-lease`), so content written
//! under it is not collected before the image record that references it exists. Every call
//! has a deadline; a status from containerd becomes [`NodeError::Containerd`] naming the
//! call, a socket that does not answer [`NodeError::ContainerdUnreachable`].

use crate::error::{NodeError, Result};
use chasi_oci::error::excerpt;
use containerd_client::services::v1::{
    content_client::ContentClient, images_client::ImagesClient, leases_client::LeasesClient,
    version_client::VersionClient, AbortRequest, CreateImageRequest, CreateRequest, DeleteRequest,
    GetImageRequest, Image, Info, InfoRequest, UpdateImageRequest, UpdateRequest, WriteAction,
    WriteContentRequest, WriteContentResponse,
};
use containerd_client::tonic::{self, transport::Channel, Code, Request, Status};
use containerd_client::types::Descriptor;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long connecting and each call may take before containerd counts as not answering.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the connection itself may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes per write message (containerd accepts messages up to 16 MiB).
pub const CHUNK: usize = 1 << 20;
/// Write messages sent ahead of their acknowledgement.
const WINDOW: usize = 4;
/// How long a lease outlives a crashed import before containerd's GC drops it.
const LEASE_EXPIRY_SECS: i64 = 24 * 3600;

/// A connection to containerd in one namespace.
pub struct Containerd {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    address: PathBuf,
    namespace: String,
    lease: Option<String>,
}

/// What writing a blob did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The blob was written and committed: its bytes.
    Bytes(u64),
    /// containerd had it already (another writer committed it meanwhile).
    Present,
}

/// Checks a namespace name with containerd's identifier rule: letters and digits, in parts
/// joined by one `.`, `_` or `-`, at most 76 characters.
pub fn check_namespace(namespace: &str) -> Result<()> {
    let bad = |reason: &str| NodeError::BadNamespace {
        namespace: excerpt(namespace).to_string(),
        reason: reason.to_string(),
    };
    if namespace.is_empty() || namespace.len() > 76 {
        return Err(bad("a namespace has 1 to 76 characters"));
    }
    let parts_ok = namespace
        .split(['.', '_', '-'])
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !parts_ok {
        return Err(bad(
            "a namespace is letters and digits in parts joined by one `.`, `_` or `-`",
        ));
    }
    Ok(())
}

impl Containerd {
    /// Connects to the socket at `address` and asks containerd its version (so a socket that
    /// is not containerd's is found here, not in the middle of an import).
    pub fn connect(address: &Path, namespace: &str) -> Result<Containerd> {
        check_namespace(namespace)?;
        let unreachable = |reason: String| NodeError::ContainerdUnreachable {
            address: address.to_path_buf(),
            reason,
        };
        match std::fs::metadata(address) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {}
            Ok(_) => return Err(unreachable("it is not a socket".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(unreachable(
                    "no such socket (is containerd running?)".into(),
                ))
            }
            Err(e) => return Err(unreachable(e.to_string())),
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| NodeError::io("start the containerd client for", address, e))?;
        let channel = rt
            .block_on(async {
                tokio::time::timeout(CONNECT_TIMEOUT, containerd_client::connect(address)).await
            })
            .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(chasi_oci::error::chain(&e)))?;
        let client = Containerd {
            rt,
            channel,
            address: address.to_path_buf(),
            namespace: namespace.to_string(),
            lease: None,
        };
        client.version().map_err(|e| match e {
            NodeError::Containerd { status, .. } => unreachable(format!(
                "the socket does not answer as containerd ({status})"
            )),
            e => e,
        })?;
        Ok(client)
    }

    /// The socket.
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// containerd's version.
    pub fn version(&self) -> Result<String> {
        let mut c = VersionClient::new(self.channel.clone());
        let r = self.call("ask the version", async move { c.version(()).await })?;
        Ok(r.into_inner().version)
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut r = Request::new(message);
        let md = r.metadata_mut();
        // Both values were checked to be ASCII identifiers, so they are valid header values.
        if let Ok(v) = self.namespace.parse() {
            md.insert("containerd-namespace", v);
        }
        if let Some(Ok(v)) = self.lease.as_deref().map(str::parse) {
            md.insert("containerd-lease", v);
        }
        r
    }

    fn refused(&self, call: impl Into<String>, status: &Status) -> NodeError {
        // A lost connection; containerd's own `Unavailable` is a locked ingest.
        let unreachable =
            status.code() == Code::Unavailable && !status.message().contains("locked");
        if unreachable {
            return NodeError::ContainerdUnreachable {
                address: self.address.clone(),
                reason: excerpt(status.message()).to_string(),
            };
        }
        NodeError::Containerd {
            address: self.address.clone(),
            call: call.into(),
            status: format!("{:?}: {}", status.code(), excerpt(status.message())),
        }
    }

    /// Runs one call with the deadline.
    fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = std::result::Result<T, Status>>,
    ) -> Result<T> {
        match self.run(fut) {
            Ok(r) => r.map_err(|s| self.refused(what, &s)),
            Err(e) => Err(e),
        }
    }

    fn run<T>(&self, fut: impl Future<Output = T>) -> Result<T> {
        self.rt.block_on(self.deadline(fut))
    }

    /// Takes a lease that holds everything written from now on until [`Containerd::end_lease`]
    /// (or, after a crash, until it expires in a day).
    pub fn begin_lease(&mut self) -> Result<()> {
        let id = format!(
            "chasi-node-import-{}-{}",
            std::process::id(),
            crate::state::now()
        );
        let expires = rfc3339(crate::state::now() as i64 + LEASE_EXPIRY_SECS);
        let labels = HashMap::from([("containerd.io/gc.expire".to_string(), expires)]);
        let req = self.request(CreateRequest {
            id: id.clone(),
            labels,
        });
        let mut c = LeasesClient::new(self.channel.clone());
        self.call("create a lease", async move { c.create(req).await })?;
        self.lease = Some(id);
        Ok(())
    }

    /// Drops the lease: what it held stays only if something references it.
    pub fn end_lease(&mut self) -> Result<()> {
        let Some(id) = self.lease.take() else {
            return Ok(());
        };
        let req = self.request(DeleteRequest {
            id: id.clone(),
            sync: false,
        });
        let mut c = LeasesClient::new(self.channel.clone());
        self.call(format!("delete lease {id}").as_str(), async move {
            c.delete(req).await
        })?;
        Ok(())
    }

    /// The labels of a blob containerd holds, or `None`.
    pub fn blob_labels(&self, digest: &str) -> Result<Option<HashMap<String, String>>> {
        let req = self.request(InfoRequest {
            digest: digest.to_string(),
        });
        let mut c = ContentClient::new(self.channel.clone());
        match self.run(async move { c.info(req).await })? {
            Ok(r) => Ok(Some(
                r.into_inner().info.map(|i| i.labels).unwrap_or_default(),
            )),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(self.refused(format!("describe blob {digest}"), &s)),
        }
    }

    /// Sets `labels` on a blob containerd holds, leaving its other labels.
    pub fn set_blob_labels(&self, digest: &str, labels: &BTreeMap<String, String>) -> Result<()> {
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        let req = self.request(UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                labels: labels.clone().into_iter().collect(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths }),
        });
        let mut c = ContentClient::new(self.channel.clone());
        self.call(&format!("label blob {digest}"), async move {
            c.update(req).await
        })?;
        Ok(())
    }

    /// Writes a blob of `size` bytes named `digest` through the content service and commits it
    /// with `labels`; `read` fills a buffer (0 at the end, after it verified the content). The
    /// write declares the digest and size, so containerd checks them too; when `read` fails,
    /// nothing is committed and the ingest is aborted.
    pub fn write_blob(
        &self,
        digest: &str,
        size: u64,
        labels: &BTreeMap<String, String>,
        read: &mut dyn FnMut(&mut [u8]) -> Result<usize>,
    ) -> Result<Written> {
        let reference = format!("chasi-node-{}", digest.replace(':', "-"));
        let outcome = self
            .rt
            .block_on(self.stream_blob(&reference, digest, size, labels, read));
        match outcome {
            Ok(w) => Ok(w),
            Err(StreamFailure::Status(s)) if s.code() == Code::AlreadyExists => {
                Ok(Written::Present)
            }
            Err(failure) => {
                // Best effort: the ingest holds partial data; containerd drops stale ones too.
                let req = self.request(AbortRequest {
                    r#ref: reference.clone(),
                });
                let mut c = ContentClient::new(self.channel.clone());
                let _ = self.run(async move { c.abort(req).await });
                Err(match failure {
                    StreamFailure::Node(e) => e,
                    StreamFailure::Status(s) => self.refused(format!("write blob {digest}"), &s),
                })
            }
        }
    }

    async fn stream_blob(
        &self,
        reference: &str,
        digest: &str,
        size: u64,
        labels: &BTreeMap<String, String>,
        read: &mut dyn FnMut(&mut [u8]) -> Result<usize>,
    ) -> std::result::Result<Written, StreamFailure> {
        let total = i64::try_from(size).map_err(|_| {
            StreamFailure::Node(NodeError::Containerd {
                address: self.address.clone(),
                call: format!("write blob {digest}"),
                status: format!("size {size} does not fit containerd's 63-bit sizes"),
            })
        })?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(WINDOW + 1);
        let base = WriteContentRequest {
            r#ref: reference.to_string(),
            total,
            expected: digest.to_string(),
            ..Default::default()
        };
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(size).unwrap_or(CHUNK).max(1))];
        let mut offset = 0i64;
        // The first message opens the ingest; an empty blob sends only the commit.
        let first = next_message(&base, read, &mut buf, &mut offset)?;
        let mut reading = first.is_some();
        let opening = first.unwrap_or_else(|| commit(&base, offset, labels));
        let _ = tx.try_send(opening);
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let mut c = ContentClient::new(self.channel.clone());
        let mut acks = self
            .deadline(c.write(self.request(stream)))
            .await?
            .map_err(StreamFailure::Status)?
            .into_inner();
        let mut pending = 1usize;
        while reading {
            while pending > WINDOW {
                self.ack(&mut acks).await?;
                pending -= 1;
            }
            let message = match next_message(&base, read, &mut buf, &mut offset)? {
                Some(m) => m,
                // The reader ended, so everything it gave verified: commit.
                None => {
                    reading = false;
                    commit(&base, offset, labels)
                }
            };
            // A closed channel means the call ended; its status comes with the next ack.
            let _ = tx.send(message).await;
            pending += 1;
        }
        let mut last = None;
        while pending > 0 {
            last = Some(self.ack(&mut acks).await?);
            pending -= 1;
        }
        drop(tx);
        let committed = last.is_some_and(|r| r.action == WriteAction::Commit as i32);
        if !committed || offset != total {
            return Err(StreamFailure::Node(NodeError::Containerd {
                address: self.address.clone(),
                call: format!("write blob {digest}"),
                status: format!("the commit was not acknowledged ({offset} of {total} bytes)"),
            }));
        }
        Ok(Written::Bytes(size))
    }

    /// The image record `name`, or `None`.
    pub fn image(&self, name: &str) -> Result<Option<Image>> {
        let req = self.request(GetImageRequest {
            name: name.to_string(),
        });
        let mut c = ImagesClient::new(self.channel.clone());
        match self.run(async move { c.get(req).await })? {
            Ok(r) => Ok(r.into_inner().image),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(self.refused(format!("look up image {name}"), &s)),
        }
    }

    /// Creates the image record `name` → `target` with `labels`, or points an existing one at
    /// `target` and sets `labels` on it (its other labels kept).
    pub fn put_image(
        &self,
        name: &str,
        target: Descriptor,
        labels: &BTreeMap<String, String>,
        exists: bool,
    ) -> Result<()> {
        let image = Image {
            name: name.to_string(),
            labels: labels.clone().into_iter().collect(),
            target: Some(target),
            ..Default::default()
        };
        let mut c = ImagesClient::new(self.channel.clone());
        if !exists {
            let req = self.request(CreateImageRequest {
                image: Some(image.clone()),
                ..Default::default()
            });
            let mut c = c.clone();
            match self.run(async move { c.create(req).await })? {
                Ok(_) => return Ok(()),
                Err(s) if s.code() == Code::AlreadyExists => {}
                Err(s) => return Err(self.refused(format!("create image {name}"), &s)),
            }
        }
        let mut paths = vec!["target".to_string()];
        paths.extend(labels.keys().map(|k| format!("labels.{k}")));
        let req = self.request(UpdateImageRequest {
            image: Some(image),
            update_mask: Some(prost_types::FieldMask { paths }),
            ..Default::default()
        });
        self.call(&format!("update image {name}"), async move {
            c.update(req).await
        })?;
        Ok(())
    }
}

impl Containerd {
    /// `fut` within the call deadline.
    async fn deadline<T>(&self, fut: impl Future<Output = T>) -> Result<T> {
        tokio::time::timeout(CALL_TIMEOUT, fut).await.map_err(|_| {
            NodeError::ContainerdUnreachable {
                address: self.address.clone(),
                reason: format!("no answer within {CALL_TIMEOUT:?}"),
            }
        })
    }

    /// The next acknowledgement of a write.
    async fn ack(
        &self,
        acks: &mut tonic::Streaming<WriteContentResponse>,
    ) -> std::result::Result<WriteContentResponse, StreamFailure> {
        match self.deadline(acks.message()).await? {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(StreamFailure::Status(Status::aborted(
                "containerd ended the write stream early",
            ))),
            Err(s) => Err(StreamFailure::Status(s)),
        }
    }
}

/// How a blob stream failed: containerd's status, or our side (the reader, a deadline).
enum StreamFailure {
    Status(Status),
    Node(NodeError),
}

impl From<NodeError> for StreamFailure {
    fn from(e: NodeError) -> Self {
        StreamFailure::Node(e)
    }
}

/// The next write message, or `None` at the end of the (verified) content.
fn next_message(
    base: &WriteContentRequest,
    read: &mut dyn FnMut(&mut [u8]) -> Result<usize>,
    buf: &mut [u8],
    offset: &mut i64,
) -> Result<Option<WriteContentRequest>> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    if filled == 0 {
        // The reader reports the end only once it verified everything.
        return Ok(None);
    }
    let m = WriteContentRequest {
        action: WriteAction::Write as i32,
        offset: *offset,
        data: buf[..filled].to_vec(),
        ..base.clone()
    };
    *offset += filled as i64;
    Ok(Some(m))
}

fn commit(
    base: &WriteContentRequest,
    offset: i64,
    labels: &BTreeMap<String, String>,
) -> WriteContentRequest {
    WriteContentRequest {
        action: WriteAction::Commit as i32,
        offset,
        labels: labels.clone().into_iter().collect(),
        ..base.clone()
    }
}

/// RFC 3339 UTC time of a Unix timestamp (containerd's `gc.expire` label format).
fn rfc3339(epoch: i64) -> String {
    chasi_oci::time::rfc3339(epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_containerd_identifiers() {
        for ok in ["k8s.io", "default", "a", "moby-1", "x_y.z"] {
            check_namespace(ok).unwrap();
        }
        for bad in ["", "a..b", "-a", "a-", "a/b", "k8s io", &"a".repeat(77)] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expiry_times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
