//! `chasi-layers`: the content-addressed, deduplicating, compressing, self-verifying layer store.
//!
//! Every other stage reads and writes through this crate:
//! - the build executor ingests directories or tar streams as layers ([`Store::ingest_dir`],
//!   [`Store::ingest_tar`]), stores manifests and configs ([`Store::put_blob`]), sets refs ([`Store::set_ref`]),
//!   records cache entries ([`Store::put_cache`]), and unpacks parent layers ([`Store::unpack`]);
//! - exporters stream blobs ([`Store::open_blob`]) and the flattened root file system ([`Store::flatten`]);
//! - RUN steps and deltas compute whiteout-aware layers from two trees ([`diff::diff_trees`]).
//!
//! See "The layer store" in the repository's `ARCHITECTURE.md` for the on-disk layout, chunking parameters and invariants.

pub mod apply;
pub mod diff;
pub mod digest;
pub mod entry;
pub mod error;
pub mod flatten;
mod fsutil;
mod ingest;
pub mod json;
pub mod layout;
pub mod location;
pub mod maint;
pub mod pack;
pub mod store;
pub mod tarwriter;

pub use apply::ApplyOptions;
pub use digest::Digest;
pub use error::{Error, Result};
pub use layout::{ChunkParams, Layout};
pub use location::{resolve_store_dir, resolve_store_dir_with};
pub use maint::{DuReport, GcOptions, GcReport, ImageUsage, Problem, VerifyReport};
pub use store::{BlobDesc, ChunkRef, LayerIndex, LayerInfo, LayerReader, RefRecord, Store};
pub use tarwriter::{EntryKind, OwnerPolicy, TarEntry, TarOptions, TarWriter};
