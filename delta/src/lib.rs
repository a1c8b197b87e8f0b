//! `chasi-delta`: static upgrade deltas between two images of the store, written as one self-contained,
//! verifiable OCI artifact, and their streaming, bounded-memory apply.
//!
//! A site that runs version N of an image gets N+1 as a file that carries only what changed; applying it
//! to a store holding N rebuilds N+1 with the same digests, or changes nothing. The format is in
//! `docs/delta-format.md`; the modules, in the order data flows:
//!
//! - `tarscan` finds each entry of a layer tar (header, content, padding) as byte ranges, with hashes;
//! - `plan` matches target entries to base entries (whole-entry reuse, content reuse, same path,
//!   version-masked path, file name and size) and cuts the rest of the tar into memory-bounded parts;
//! - `encode` hashes each operation and compresses each part with zstd against its reference;
//! - [`mod@create`] pairs platforms, chooses per layer between base, delta and whole blob, writes the artifact;
//! - [`read`] opens and checks an artifact, [`mod@apply`] checks the base and drives each layer's rebuild
//!   (`rebuild.rs`: the operations, each verified) through a bounded pipe into the store (`pipe.rs`), and
//!   [`mod@inspect`] summarises.
//!
//! It depends on `chasi-images`, `chasi-layers` and `chasi-oci` only, so the node runtime can apply
//! deltas without the compiler or the builder.

pub mod apply;
pub mod create;
mod encode;
pub mod error;
pub mod format;
pub mod inspect;
mod pipe;
mod plan;
pub mod read;
mod rebuild;
mod tarscan;

pub use apply::{apply, ApplyOptions, ApplyReport, DEFAULT_APPLY_MEMORY};
pub use create::{create, DeltaOptions, DeltaReport, DEFAULT_MAX_MEMORY};
pub use error::{DeltaError, Result};
pub use format::{DeltaConfig, Level, Method};
pub use inspect::{inspect, Inspection};
pub use read::{is_delta, DeltaArtifact};

pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    chasi_oci::error::chain(e)
}
