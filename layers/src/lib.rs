//! `chasi-layers`: the content-addressed, deduplicating, compressing, self-verifying layer store.
//!
//! The store is the one place where image content lives, and every other stage goes through
//! this crate:
//! - the build executor ingests directories or tar streams as layers ([`Store::ingest_dir`],
//!   [`Store::ingest_tar`]), stores manifests and configs ([`Store::put_blob`]), sets refs
//!   ([`Store::set_ref`]), records cache entries ([`Store::put_cache`]), and unpacks parent
//!   layers ([`Store::unpack`]);
//! - exporters stream blobs ([`Store::open_blob`]) and the merged root file system
//!   ([`Store::flat_view`], [`Store::flatten`]), without unpacking;
//! - `chasi store du|verify|gc` maintain it ([`maint`]);
//! - [`diff::diff_trees`] computes a whiteout-aware layer from two trees, for the coming deltas
//!   (`RUN` steps do not use it: their layer is the overlay's upper directory).
//!
//! **Location** ([`resolve_store_dir`]): `--store DIR`, else `$CHASI_STORE`, else
//! `/var/lib/chasi` for root, else `$XDG_DATA_HOME/chasi` (absolute values only), else
//! `$HOME/.local/share/chasi`. **Opening**: a directory with `layout.json` is a store; an absent
//! or empty directory becomes one when a command writes (`layout.json` first, so a crash leaves
//! an empty directory or a store), while read-only commands say `no store at PATH` and create
//! nothing; anything else is refused as `not a chasi store`. The on-disk layout (format 2; a
//! format-1 store is refused with a message saying so) is in [`store`], pack files in [`pack`],
//! the parameters in [`layout`].
//!
//! **Names**: blobs, DiffIDs, packs and cache keys are lowercase hex SHA-256, as OCI requires for
//! what leaves the store. Chunks are named by BLAKE3 (`blake3:<hex>` in layer indexes): their
//! names never leave the store, and every ingested byte is already hashed once with SHA-256 for
//! the DiffID (on CPUs without SHA-NI that pass alone costs as much as compression; figures in
//! `docs/benchmarks.md`).
//!
//! **Layers and their blobs**: a layer is its DiffID and an ordered list of chunks cut by
//! FastCDC 2020 (16/64/256 KiB by default, recorded in `layout.json` and used for the store's
//! life). New chunks are packed into zstd frames of at least 4 MiB. A layer's OCI `tar+zstd` blob
//! is a pure function of its chunk list (consecutive chunks grouped into frames of at least 4 MiB,
//! pinned encoder: level 3, no checksum, single-threaded), so it is produced from the store when
//! served and verified against the recorded digest as it streams. Because the grouping rules are
//! the same, a layer whose chunks were all new has pack frames that *are* its blob frames: ingest
//! records its digest at no extra cost and serving copies the stored frames. Otherwise the digest
//! is computed on first need ([`Store::ensure_zstd`]), and the frames compressed then are kept in
//! a pack so that serving copies them too; gc keeps the blob frames of reachable layers whole. `tar+gzip` is made on demand
//! ([`Store::ensure_gzip`]: one member per frame, level 6, mtime 0, OS 255). A blob from outside
//! ([`Store::import_layer_blob`]) is verified, chunked like any layer and compared with the blob
//! the chunks reproduce; if it differs, the raw blob is kept too (an `external` encoding), so
//! its original digest stays servable.
//!
//! **Invariants**:
//! 1. Every object is named by a hash of its content, and every read verifies digest and size
//!    (chunks when their frame is decoded, blobs while streaming, layer streams also the DiffID).
//! 2. A name a reader can reach is complete: pack before pack index, pack index before layer
//!    index, a blob's link before the layer index that lists it, blobs before refs. Metadata files
//!    are immutable except refs, cache records and a layer index gaining a blob entry.
//! 3. Every file is written temp → hash → fsync → rename → fsync(dir) in the writer's session
//!    directory `tmp/<session>/`; a killed process leaves nothing or a complete object, and its
//!    session is removed by the next open or `gc` (its `<session>.lock` flock is free).
//!    `ENOSPC`/`EDQUOT` become [`Error::DiskFull`] naming the path, with nothing renamed.
//!    `layers/tests/crash.rs` SIGKILLs writers at random instants and then verifies the store.
//! 4. Nothing a live writer wrote is deleted: every handle holds a shared flock on
//!    `locks/gc.lock`, and gc sweeps only under the exclusive lock (else [`Error::Busy`], or
//!    waits with [`GcOptions::wait`]). Concurrent writers need no other lock; refs and cache
//!    records are replaced atomically, the last writer wins.
//! 5. No panics on bad input: corrupt files, malformed JSON, truncated packs and malicious tars
//!    return typed errors naming the path or digest. Every JSON document the store reads goes
//!    through [`json`], bounded in size and depth before it is parsed.
//!
//! **The build cache** trusts a hit only if [`Store::check_layer`] proves the layer present
//! without reading a chunk (index parses, every chunk in a pack of the recorded size, the blob
//! listed and linked); what only reading can show is left to [`Store::verify`].
//!
//! **Applying layers** ([`apply`], [`flatten`]) follows one rule set ([`entry`]): names never
//! climb, symlinks are followed as the image sees them and never out of the root, whiteouts
//! `.wh.<name>` and `.wh..wh..opq` delete. Layers are written by the reproducible [`tarwriter`].

pub mod apply;
mod channel;
pub mod diff;
pub mod digest;
pub mod entry;
pub mod error;
pub mod flatten;
mod fsutil;
mod import;
mod ingest;
pub mod json;
pub mod layout;
pub mod location;
pub mod maint;
pub mod pack;
pub mod store;
mod tarframe;
pub mod tarwriter;

pub use apply::ApplyOptions;
pub use digest::Digest;
pub use error::{Error, Result};
pub use ingest::Framing;
pub use layout::{ChunkParams, Layout};
pub use location::{resolve_store_dir, resolve_store_dir_with};
pub use maint::{GcOptions, GcReport, Problem, StoreUsage, VerifyReport};
pub use store::{BlobDesc, ChunkRef, LayerIndex, LayerInfo, LayerReader, RefRecord, Store};
pub use tarwriter::{EntryKind, OwnerPolicy, TarEntry, TarOptions, TarWriter};
