//! Store maintenance: store-level disk usage (`du`; what each image counts is `chasi-images`'), full
//! re-verification (`verify`) and mark-and-sweep garbage collection (`gc`).
//!
//! GC roots are the refs and the build-cache records. Marking follows every `sha256:…` string found in a reachable
//! JSON blob (manifests, indexes, configs, cache records), so it needs no knowledge of OCI media types and keeps
//! configs, layers (by blob digest or DiffID), subjects and referrers alike. A reachable document that cannot be
//! read or parsed (a JSON-looking blob, a layer index, a link, a ref, a cache record) stops gc before anything is
//! deleted, naming the root and the digest: its references are unknown, so nothing may be taken for garbage. The
//! sweep runs under the exclusive `locks/gc.lock`, which no open [`Store`](crate::Store) shares, so nothing a
//! concurrent build is writing can be deleted.
//!
//! `verify` walks every ref to completeness (manifest or nested index, config, every layer's link and index) and
//! re-hashes every object; see [`Store::verify`](crate::Store::verify).
//!
//! One concern a module: `du` (store-level usage), `verify` and its ref walk (`verify_refs`), the mark phase
//! (`marks`) and the sweep (`gc`), each an `impl Store` block with its report types (re-exported here).

mod du;
mod gc;
mod marks;
mod verify;
mod verify_refs;

pub use du::StoreUsage;
pub use gc::{GcOptions, GcReport};
pub use verify::{Problem, VerifyReport};
