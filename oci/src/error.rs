//! The error type of OCI image I/O.
//!
//! It exists separately from the disk writers' error type because the failures
//! are of a different kind: untrusted archives and layouts written by other tools. Every
//! variant names the file, archive member or digest involved so a failed `chasi load` says
//! what was wrong with *which* input, and none of them is ever produced by a panic.
//!
//! It also holds the text rules every error message of the workspace follows ([`chain`],
//! [`excerpt`], [`quoted`]): this crate is the one below all others, so the layer store
//! and the rest use them from here.

use std::io;
use std::path::PathBuf;

/// Result alias of this crate.
pub type OciResult<T, E = OciError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, writing or importing OCI / docker images.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// An I/O call on a named file failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done ("read", "create", ...).
        action: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing a blob failed for a reason other than its content.
    #[error("cannot {action} blob {digest}")]
    BlobIo {
        /// What was being done ("read", "write", "import", ...).
        action: &'static str,
        /// The blob.
        digest: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A blob's content does not hash to the digest that names it.
    #[error("blob {expected} is corrupt: its content hashes to {actual}")]
    DigestMismatch {
        /// The digest the descriptor promised.
        expected: String,
        /// The digest of the bytes actually read.
        actual: String,
    },
    /// A blob is longer or shorter than its descriptor says.
    #[error("blob {digest} has the wrong size: expected {expected} bytes, found {actual}")]
    SizeMismatch {
        /// The blob.
        digest: String,
        /// The size in the descriptor.
        expected: u64,
        /// The size found (a lower bound when the blob was too long).
        actual: u64,
    },
    /// A blob named by a manifest or index is not in the source.
    #[error("blob {digest} is missing from {location}")]
    MissingBlob {
        /// The blob.
        digest: String,
        /// The layout, archive or store searched.
        location: String,
    },
    /// A digest string is malformed or uses an algorithm this module cannot verify.
    #[error("invalid digest `{}`: {}", excerpt(digest), excerpt(reason))]
    BadDigest {
        /// The text that was given.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON document (manifest, index, config, `manifest.json`, ...) is malformed.
    #[error("malformed {what} in {}: {}", excerpt(location), excerpt(message))]
    BadJson {
        /// Which document ("image manifest", "index.json", ...).
        what: &'static str,
        /// The file, member or digest it came from.
        location: String,
        /// The parser's or checker's message.
        message: String,
    },
    /// A JSON blob is larger than the limit accepted for metadata.
    #[error("{what} {location} is {size} bytes, over the {limit}-byte limit for metadata")]
    TooLarge {
        /// Which document.
        what: &'static str,
        /// Its digest or file name.
        location: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A tar archive is malformed or truncated.
    #[error("malformed archive {path}: {}", excerpt(message))]
    BadArchive {
        /// The archive.
        path: PathBuf,
        /// What is wrong, naming the member when there is one.
        message: String,
    },
    /// An archive member name would escape the extraction root (`..`, absolute path).
    #[error("unsafe member name `{}` in archive {path}: {reason}", excerpt(member))]
    UnsafePath {
        /// The archive.
        path: PathBuf,
        /// The offending member name.
        member: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A path is neither an OCI layout, an oci-archive nor a docker-archive.
    #[error("{path} is not an OCI image layout, oci-archive or docker-archive: {reason}")]
    UnknownFormat {
        /// The path.
        path: PathBuf,
        /// What was looked for.
        reason: String,
    },
    /// A tag or reference names no image in the layout or archive.
    #[error(
        "no image named `{}` in {location}; available: {}",
        excerpt(name),
        excerpt(available)
    )]
    NoSuchImage {
        /// The tag or reference asked for.
        name: String,
        /// The layout or archive.
        location: String,
        /// The names found, comma-separated (or "none").
        available: String,
    },
    /// No tag was given and the layout or archive holds several images.
    #[error("{location} holds {count} images; name one of: {}", excerpt(available))]
    AmbiguousImage {
        /// The layout or archive.
        location: String,
        /// How many images it holds.
        count: usize,
        /// The names found.
        available: String,
    },
    /// An image index has no manifest for the requested platform.
    #[error("image {digest} has no manifest for platform {platform}; available: {available}")]
    NoSuchPlatform {
        /// The index digest.
        digest: String,
        /// The platform asked for.
        platform: String,
        /// The platforms in the index.
        available: String,
    },
    /// A docker-archive holds one platform; the image has several and none was chosen.
    #[error("a docker-archive holds a single platform but image {digest} has {available}: choose one with a platform option")]
    MultiPlatform {
        /// The index digest.
        digest: String,
        /// The platforms in the index.
        available: String,
    },
    /// A media type this module does not know how to handle.
    #[error(
        "unsupported media type `{}` for blob {}",
        excerpt(media_type),
        excerpt(digest)
    )]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
        /// The blob.
        digest: String,
    },
    /// A registry storage directory (`registry/docker/registry/v2`) is not laid out as the
    /// distribution registry lays it out.
    #[error("malformed registry directory at {path}: {}", excerpt(message))]
    BadRegistryLayout {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A reference string (`oci:PATH:TAG`, ...) is malformed.
    #[error("invalid image reference `{reference}`: {reason}")]
    BadReference {
        /// The text given.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// A platform string (`linux/amd64/v2`) is malformed.
    #[error("invalid platform `{platform}`: {reason}")]
    BadPlatform {
        /// The text given.
        platform: String,
        /// What is wrong.
        reason: String,
    },
    /// An image is internally inconsistent (layer count vs diff_ids, diff_id mismatch, ...).
    #[error("inconsistent image {}: {}", excerpt(digest), excerpt(message))]
    Inconsistent {
        /// The manifest or config digest.
        digest: String,
        /// What does not match.
        message: String,
    },
    /// Compressing or decompressing a layer failed.
    #[error("cannot {action} layer {digest}")]
    Codec {
        /// "decompress" or "compress".
        action: &'static str,
        /// The layer blob.
        digest: String,
        /// The codec's error.
        #[source]
        source: io::Error,
    },
    /// The output path exists and is not something this writer may replace.
    #[error("cannot write to {path}: {reason}")]
    OutputExists {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// The output could not be opened or written by the output rules.
    #[error(transparent)]
    Output(#[from] crate::output::OutputError),
    /// An export option does not fit the output format.
    #[error("invalid option for {format}: {message}")]
    BadOption {
        /// The output format.
        format: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The blob sink (usually the store) refused a blob.
    #[error("the blob sink refused blob {digest}: {message}")]
    Sink {
        /// The blob.
        digest: String,
        /// The sink's message.
        message: String,
    },
}

impl OciError {
    /// Builds a closure that wraps an `io::Error` with an action and a path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| OciError::Io {
            action,
            path,
            source,
        }
    }

    /// Builds a closure that wraps an `io::Error` with an action and a blob digest.
    pub fn blob_io(action: &'static str, digest: impl ToString) -> impl FnOnce(io::Error) -> Self {
        let digest = digest.to_string();
        move |source| OciError::BlobIo {
            action,
            digest,
            source,
        }
    }

    /// Wraps an error of a [`BlobSink`](super::BlobSink) implementation (the store), with
    /// its causes (messages do not repeat their sources, see [`chain`]).
    pub fn sink(digest: impl ToString, err: impl std::error::Error) -> Self {
        OciError::Sink {
            digest: digest.to_string(),
            message: chain(&err),
        }
    }

    pub(crate) fn bad_json(
        what: &'static str,
        location: impl ToString,
        message: impl JsonProblem,
    ) -> Self {
        OciError::BadJson {
            what,
            location: location.to_string(),
            message: message.describe(),
        }
    }

    pub(crate) fn inconsistent(digest: impl ToString, message: impl Into<String>) -> Self {
        OciError::Inconsistent {
            digest: digest.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn bad_archive(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        OciError::BadArchive {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// What went wrong with a JSON document, as text for [`OciError::BadJson`]: a checker's
/// message, or a parser's error with its position. `oci-spec`'s own error says only
/// "serde failed", so its serde cause is shown instead.
pub(crate) trait JsonProblem {
    /// The message.
    fn describe(self) -> String;
}

impl JsonProblem for &str {
    fn describe(self) -> String {
        self.to_string()
    }
}

impl JsonProblem for String {
    fn describe(self) -> String {
        self
    }
}

impl JsonProblem for serde_json::Error {
    fn describe(self) -> String {
        self.to_string()
    }
}

impl JsonProblem for oci_spec::OciSpecError {
    fn describe(self) -> String {
        match self {
            oci_spec::OciSpecError::SerDe(e) => e.to_string(),
            oci_spec::OciSpecError::Io(e) => e.to_string(),
            other => chain(&other),
        }
    }
}

/// The messages of `err` and of its causes, outermost first: the parts of one chain
/// `a: b: c`. A cause whose text its parent already ends with is left out, so an error type
/// of another crate that repeats its source in its message is still shown once.
pub fn causes(err: &dyn std::error::Error) -> Vec<String> {
    let mut parts = vec![err.to_string()];
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        let repeated = parts.last().is_some_and(|last| last.ends_with(&text));
        if !repeated && !text.is_empty() {
            parts.push(text);
        }
        next = cause.source();
    }
    parts
}

/// `err` with all of its causes as one line, `a: b: c` (see [`causes`]); what a message
/// that embeds another error must use, since messages do not repeat their sources.
pub fn chain(err: &dyn std::error::Error) -> String {
    causes(err).join(": ")
}

/// Longest excerpt of untrusted text in a message, in characters.
const EXCERPT: usize = 200;

/// Untrusted text quoted in a message (an archive member name, a parser's quote of a
/// garbage header): at most 200 characters, control characters and replacement characters
/// (what undecodable bytes became) escaped, so no message dumps a garbage layer.
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == EXCERPT {
            out.push('…');
            break;
        }
        if c.is_control() || c == char::REPLACEMENT_CHARACTER {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// [`excerpt`] in double quotes, for names.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", excerpt(text).replace('"', "\\\""))
}
