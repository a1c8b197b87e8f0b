//! `chasi-oci`: the crate that knows OCI documents. It reads and writes images as OCI
//! layouts, `oci-archive`s and `docker-archive`s, moves them in and out of a blob store, and
//! holds the atomic output writer every user-named output goes through.
//!
//! Invariant: it depends on no other chasi crate (the store, the builder, the exporters and
//! the compiler depend on it), so anything that needs "an OCI image" can use it alone.
//!
//! It exists so that `chasi save` / `chasi load` and `FROM oci:… / oci-archive:… /
//! docker-archive:…` exchange images with skopeo, umoci, containerd and docker, while
//! staying independent of the layer store: the store plugs in through two small traits,
//! [`BlobSource`] (to save) and [`BlobSink`] (to load).
//!
//! | module | role |
//! |---|---|
//! | [`reference`](mod@reference) | `oci:PATH[:TAG]`, `oci-archive:`, `docker-archive:`, store names |
//! | [`blobs`] | the source/sink traits; in-memory and `blobs/<alg>/<hex>` implementations |
//! | [`digest`] | hashing, and verification of every blob while it streams |
//! | [`json`] | canonical JSON (sorted keys, compact) for reproducible digests |
//! | [`media`] | media types, layer codecs, deterministic re-compression |
//! | [`image`] | manifests, indexes, configs; building images; platform selection |
//! | [`platform`] | `os/arch[/variant]` |
//! | [`layout`] | OCI layout directory and `oci-archive`, both ways |
//! | [`docker`] | `docker-archive`, both ways |
//! | [`read`] | format detection, tag resolution, verified import into a sink |
//! | [`write`](mod@write) | save options, report, [`save`] |
//! | [`output`] | the output rules of `-o PATH`: a file atomically, a pipe or device in place |
//! | [`error`] | [`OciError`], and the text rules of every error message ([`error::chain`]) |
//!
//! Types from the `oci-spec` crate ([`Descriptor`], [`Digest`], [`MediaType`], ...) are
//! re-exported; documents this crate writes are serialized with [`json`] rather than
//! `oci-spec`'s own serializer, whose annotation maps have random order.

pub mod blobs;
pub mod digest;
pub mod docker;
pub mod error;
pub mod image;
pub mod json;
pub mod layout;
pub mod media;
pub mod output;
pub(crate) mod plan;
pub mod platform;
pub mod read;
pub mod reference;
pub(crate) mod tarball;
pub mod write;

pub use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Platform,
};

pub use blobs::{BlobSink, BlobSource, DirBlobs, MemoryBlobs};
pub use docker::{write_docker_archive, DockerArchiveReader};
pub use error::{OciError, OciResult};
pub use image::{
    build_index, build_manifest, put_json, read_config, read_index, read_manifest, select_manifest,
    ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, ANNOTATION_SEALER_EXTENSION,
};
pub use layout::{write_oci_archive, write_oci_layout, OciLayoutReader};
pub use media::{LayerCodec, LayerCompression};
pub use platform::PlatformSpec;
pub use read::{
    detect_format, import_image, import_reference, load, open_image, ArchiveFormat, ImageEntry,
    ImportReport, ImportedImage, OpenedImages,
};
pub use reference::{DockerSelector, ImageRef};
pub use write::{save, SaveFormat, WriteOptions, WriteReport};
