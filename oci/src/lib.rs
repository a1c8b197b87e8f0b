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
//! | [`sha256`] | [`Digest`], the SHA-256 digest chasi crates pass each other |
//! | [`digest`] | hashing, and verification of every blob while it streams |
//! | [`json`] | canonical JSON (sorted keys, compact) for reproducible digests |
//! | [`media`] | media types, layer codecs, deterministic re-compression |
//! | [`image`] | manifests, indexes, configs; building images; platform selection |
//! | [`platform`] | `os/arch[/variant]` |
//! | [`layout`] | OCI layout directory and `oci-archive`, both ways |
//! | [`distribution`] | the distribution registry's storage directory (sealer's `registry/`), both ways |
//! | [`docker`] | `docker-archive`, both ways |
//! | [`read`] | format detection, tag resolution, verified import into a sink |
//! | [`write`](mod@write) | save options, report, [`save`] |
//! | [`output`] | the output rules of `-o PATH`: a file atomically, a pipe or device in place |
//! | [`time`](mod@time) | UTC calendar time of a timestamp (RFC 3339), for every date chasi writes |
//! | [`error`] | [`OciError`], and the text rules of every error message ([`error::chain`]) |
//!
//! Types from the `oci-spec` crate ([`Descriptor`], [`OciDigest`], [`MediaType`], ...) are
//! re-exported, its digest as [`OciDigest`]: documents and the blob traits carry it, since a
//! foreign layout may use sha512; between chasi crates a digest is [`Digest`]. Documents this
//! crate writes are serialized with [`json`] rather than `oci-spec`'s own serializer, whose
//! annotation maps have random order.
//!
//! ```text
//!             BlobSource (the store, MemoryBlobs, DirBlobs, OpenedImages)
//!                  │
//!  save ──────────▶ plan (which blobs; re-compress layers; rewrite manifests/index)
//!                  ├──▶ write_oci_layout      dir/ oci-layout, index.json, blobs/sha256/…
//!                  ├──▶ write_oci_archive     deterministic tar of that layout
//!                  └──▶ write_docker_archive  manifest.json, <cfg>.json, <hex>/layer.tar
//!
//!  load ──▶ detect_format ─▶ OciLayoutReader (dir | archive, random access, no extraction)
//!                         └▶ DockerArchiveReader (hashes every layer once; synthesizes an OCI manifest)
//!           OpenedImages::resolve(tag) / select_manifest(platform) ─▶ import_image ─▶ BlobSink (the store)
//! ```
//!
//! An image is a root descriptor (a manifest or an index) in a source; writers, [`import_image`]
//! and `select_manifest` walk it from there and keep nothing in memory but its JSON documents.
//! `FROM oci:… | oci-archive:… | docker-archive:…` is [`import_reference`]: open, resolve the
//! tag, choose the platform's manifest, import only that manifest's blobs. Of `chasi-layers` this
//! module uses only the error helpers (`chain`, `excerpt`); the store's errors come back through
//! `OciError::sink`.
//!
//! Invariants:
//! - **Every byte read is verified** (`open_verified`, [`digest`]): size and sha256/sha512 digest,
//!   a blob running longer than its descriptor cut at the first extra byte; a mismatch is a typed
//!   `DigestMismatch`/`SizeMismatch` naming the blob, even when the sink wrapped the I/O error.
//! - **Import checks everything, then writes** ([`read`]): every document is read and checked
//!   before the sink is touched (index nesting at most 4 deep, no manifest as a layer or config,
//!   layer media types, config `diff_ids` against the layers, every blob present with its size).
//!   A sink that hashes layers as it ingests them (`BlobSink::records_diff_ids`: the store) has a
//!   new layer's DiffID compared right after that layer is written, before any config or manifest
//!   could reference it.
//! - **Children first**: layers, then the config, then manifests, then the index, so a sink never
//!   holds a manifest whose blobs are missing, and `has_blob(parent)` skips a whole subtree.
//! - **Foreign input is bounded before it is parsed**: JSON documents at most 8 MiB and 64 levels
//!   ([`json`]); image names at most 255 characters (`reference::ref_name_problem`); zstd
//!   windows at most 128 MiB (`media::ZSTD_WINDOW_LOG_MAX`), refused from the frame header before
//!   the decoder allocates.
//! - **Archives are never extracted**: one scan indexes the members (absolute names, `..`, links
//!   leaving the root, members past the end, duplicates and sparse files refused), then members
//!   are served by offset.
//! - **Reproducible output**: canonical JSON for every document written (foreign manifests are
//!   copied byte for byte; one that must change is rewritten as a `serde_json::Value`, keeping
//!   unknown fields), blobs sorted by digest, ustar members with uid/gid 0 and mtime 0 (written
//!   by `chasi-tar`, whose bytes `tests/oci_io.rs` pins by SHA-256), pinned
//!   gzip/zstd settings ([`media`]). Tests write twice and compare bytes, and write → read → write.
//! - Re-compressed layers are staged in `WriteOptions::work_dir` (the store's session `tmp/` when
//!   `chasi save` calls it, else the system temp directory), never next to the output.
//!
//! Why `oci-spec` (0.8, feature `image`): typed descriptors, manifests and indexes with digest
//! validation (whose grammar also keeps `blobs/<alg>/<hex>` inside the layout). Its annotation maps
//! serialize in random order and it drops unknown fields, hence the canonical writer and the
//! rewrites on `serde_json::Value`; configs stay `serde_json::Value` so foreign fields survive.
//!
//! Not done yet: sealer's own multi-arch `save` format (an outer tar with one archive per platform
//! and a `Metadata` file); compressed oci-archives (`.tar.gz`); signatures and referrers
//! (`subject`) are not copied; blobs are not copied in parallel.

pub mod blobs;
pub mod digest;
pub mod distribution;
pub mod docker;
pub mod error;
pub mod image;
pub mod json;
pub mod layout;
pub mod media;
pub mod options;
pub mod output;
pub(crate) mod plan;
pub mod platform;
pub mod read;
pub mod reference;
pub mod sha256;
pub(crate) mod tarball;
pub mod time;
pub mod write;

pub use oci_spec::image::{
    Descriptor, Digest as OciDigest, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
};

pub use blobs::{BlobSink, BlobSource, DirBlobs, MemoryBlobs};
pub use docker::{write_docker_archive, DockerArchiveReader};
pub use error::{OciError, OciResult};
pub use image::{
    build_index, build_manifest, put_json, read_config, read_index, read_manifest, select_manifest,
    select_platform_manifest, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME,
    ANNOTATION_SEALER_EXTENSION,
};
pub use layout::{write_oci_archive, write_oci_layout, OciLayoutReader};
pub use media::{LayerCodec, LayerCompression};
pub use platform::Platform;
pub use read::{
    detect_format, import_image, import_reference, load, open_image, ArchiveFormat, ImageEntry,
    ImportReport, ImportedImage, OpenedImages,
};
pub use reference::{DockerSelector, ImageRef};
pub use sha256::{Digest, DigestParseError};
pub use write::{save, SaveFormat, WriteOptions, WriteReport};
