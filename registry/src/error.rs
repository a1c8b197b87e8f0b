//! Why a push or a pull fails. Every variant names the reference; the registry's answers are
//! sorted into what a user acts on differently: credentials (401/403, with where they came
//! from), a name or tag that does not exist (404), throttling (429), a registry that cannot be
//! reached (after the retries), a blob whose bytes are not its digest.

use chasi_layers::Digest;
use std::path::PathBuf;

/// The result of a registry operation.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// A failure of `push` or `pull`.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A reference that is not `HOST[:PORT]/NAME[:TAG][@DIGEST]`.
    #[error("`{reference}` is not a registry reference: {reason}")]
    BadReference {
        /// The reference as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry refused the credentials (401) or the operation with them (403).
    #[error("{reference}: the registry answered {status} {}: credentials from {credentials}", if *status == 403 { "forbidden" } else { "unauthorized" })]
    Unauthorized {
        /// The reference.
        reference: String,
        /// 401 or 403.
        status: u16,
        /// Where the credentials came from (`--creds`, an auth file, none).
        credentials: String,
    },
    /// The repository, tag, manifest or blob does not exist (404).
    #[error("{reference}: {what} not found on the registry")]
    NotFound {
        /// The reference.
        reference: String,
        /// What was asked for (`manifest or tag`, `blob sha256:…`).
        what: String,
    },
    /// The registry kept answering 429 Too Many Requests.
    #[error("{reference}: the registry answered 429 too many requests {attempts} {}; try again later", if *attempts == 1 { "time" } else { "times" })]
    TooManyRequests {
        /// The reference.
        reference: String,
        /// How many tries were made.
        attempts: u32,
    },
    /// The registry could not be reached (connection refused, reset, timed out), after retries.
    #[error("{reference}: cannot reach the registry after {attempts} {}", if *attempts == 1 { "try" } else { "tries" })]
    Unreachable {
        /// The reference.
        reference: String,
        /// How many tries were made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// Another answer of the registry (a 5xx after retries, a protocol violation, ...).
    #[error("{reference}: {action} failed")]
    Protocol {
        /// The reference.
        reference: String,
        /// What was being done (`push blob sha256:…`, `pull manifest`).
        action: String,
        /// The client's error.
        #[source]
        source: oci_client::errors::OciDistributionError,
    },
    /// A downloaded blob whose content is not its digest; nothing was tagged.
    #[error("{reference}: blob {expected} downloaded as {actual}: the registry served corrupt data; nothing was tagged")]
    DigestMismatch {
        /// The reference.
        reference: String,
        /// The blob's digest (what the manifest says).
        expected: String,
        /// The digest of what was received.
        actual: String,
    },
    /// A document the registry served that chasi does not take as an image.
    #[error("{reference}: {reason}")]
    BadImage {
        /// The reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// An auth file (`~/.docker/config.json`, `$REGISTRY_AUTH_FILE`) that cannot be used.
    #[error("auth file {}: {reason}", path.display())]
    AuthFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `--creds` that is not `USER:PASS`.
    #[error("--creds must be USER:PASSWORD")]
    BadCreds,
    /// The CA file of `--tls-ca` cannot be read or holds no certificate.
    #[error("TLS CA file {}: {reason}", path.display())]
    TlsCa {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The registry's TLS certificate is not accepted.
    #[error("{reference}: the registry's TLS certificate is not accepted ({reason}); trust its CA with --tls-ca FILE or turn verification off with --tls-verify=false")]
    Tls {
        /// The reference.
        reference: String,
        /// What the TLS library said.
        reason: String,
    },
    /// The HTTP client could not be set up.
    #[error("cannot set up the registry client")]
    Client(#[source] std::io::Error),
    /// Importing into the store (the checks `chasi load` makes) refused the image.
    #[error("{reference}: the image cannot be stored")]
    Import {
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: chasi_oci::OciError,
    },
    /// The image to push has a blob the store cannot give.
    #[error("{reference}: reading blob {digest} from the store failed")]
    StoreBlob {
        /// The reference.
        reference: String,
        /// The blob.
        digest: Digest,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] chasi_layers::Error),
    /// Reading an image of the store failed.
    #[error(transparent)]
    Images(#[from] chasi_images::ImagesError),
}
