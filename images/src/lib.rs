//! `chasi-images`: images in the store.
//!
//! An image is a ref (`name:tag`) to a manifest or an index whose blobs live in the layer
//! store. This crate is what the CLI, the exporters, the builder (for `FROM`) and the coming
//! runtime share about such images, without any of them needing the builder or the compiler:
//!
//! - [`docs`] reads an image's documents once, typed (oci-spec's index and manifest, a small
//!   config struct), through the store's bounded JSON reader, and computes its OCI size;
//! - [`du`] is `chasi store du`: each image's OCI size, and the store's own accounting of
//!   what no image references;
//! - [`images`] lists, inspects, tags, removes, saves and loads images, and picks one
//!   platform of an image with [`chasi_oci::Platform::matches`], the rule `FROM
//!   --platform` uses;
//! - [`blobs`] is the store seen as a [`chasi_oci::BlobSource`] and [`chasi_oci::BlobSink`],
//!   the one place where the store and the OCI readers and writers meet.
//!
//! It depends on `chasi-oci` and `chasi-layers` only (the dependency block of `ARCHITECTURE.md`, checked by `tests/architecture.rs`).

pub mod blobs;
pub mod docs;
pub mod du;
pub mod error;
pub mod images;

pub use blobs::StoreBlobs;
pub use docs::{Image, PlatformManifest};
pub use du::{du, DuReport, ImageUsage};
pub use error::{ImagesError, Result};
pub use images::{
    inspect, list, load, normalize_name, platform_image, remove, resolve, save, tag, ImageSummary,
    Inspection, LayerInspection, PlatformImage, PlatformInspection,
};
