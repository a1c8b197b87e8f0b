//! What the writers share: the format `chasi save` asks for, their options and their report.
//!
//! It sits below [`super::layout`] and [`super::docker`] (which fill a [`WriteReport`] from
//! [`WriteOptions`]) and below [`super::write`] (which dispatches to them), so no writer
//! imports the module that calls it. The types are re-exported from [`super::write`].

use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::image::Descriptor;

use super::error::{OciError, OciResult};
use super::media::LayerCompression;
use super::platform::Platform;

/// Output format of `chasi save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// An OCI image layout directory (`oci:`).
    OciLayout,
    /// A tar of an OCI image layout (`oci-archive:`).
    OciArchive,
    /// A `docker save` style archive (`docker-archive:`).
    DockerArchive,
}

impl FromStr for SaveFormat {
    type Err = OciError;
    fn from_str(s: &str) -> OciResult<Self> {
        match s {
            "oci" | "oci-dir" | "oci-layout" => Ok(SaveFormat::OciLayout),
            "oci-archive" => Ok(SaveFormat::OciArchive),
            "docker-archive" => Ok(SaveFormat::DockerArchive),
            other => Err(OciError::BadOption {
                format: "save",
                message: format!("unknown format `{other}` (oci, oci-archive, docker-archive)"),
            }),
        }
    }
}

/// Options shared by the writers.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `org.opencontainers.image.ref.name` in `index.json` (`v1.30`, or a full reference).
    pub tag: Option<String>,
    /// Full image name (`registry.local/k8s:v1.30`): `io.containerd.image.name` in OCI
    /// layouts, `RepoTags` in a docker-archive (which falls back to `tag`).
    pub image_name: Option<String>,
    /// Layer compression of the output.
    pub compression: LayerCompression,
    /// Platform to write: a docker-archive holds one platform, and OCI layouts and archives
    /// given one hold that platform's manifest alone instead of the whole index. An image
    /// without it is [`OciError::NoSuchPlatform`].
    pub platform: Option<Platform>,
    /// Where re-compressed layers are staged before they are written (the CLI passes the
    /// store's session `tmp/`, which a killed run leaves to the next one to clean; default:
    /// the system's temp dir). Never next to the output.
    pub work_dir: Option<PathBuf>,
}

/// What a writer did.
#[derive(Debug, Clone)]
pub struct WriteReport {
    /// The descriptor of the written root (differs from the input's when layers were
    /// re-compressed; for a docker-archive, the chosen platform's manifest).
    pub root: Descriptor,
    /// Blobs written (not counting ones already present in an existing layout).
    pub blobs_written: usize,
    /// Their total size.
    pub bytes_written: u64,
    /// Things the format could not carry (e.g. manifest annotations in a docker-archive).
    pub warnings: Vec<String>,
}

impl WriteReport {
    pub(crate) fn new(root: Descriptor) -> Self {
        WriteReport {
            root,
            blobs_written: 0,
            bytes_written: 0,
            warnings: Vec::new(),
        }
    }
}
