//! `chasi-registry`: images between the store and an OCI distribution registry.
//!
//! `chasi push`, `chasi pull` and the builder's `FROM HOST/NAME:TAG` need the distribution API:
//! auth challenges and bearer tokens, chunked uploads, manifests by tag and by digest. That
//! protocol is `oci-client`'s; this crate wraps its async API behind a blocking one
//! ([`client::Session`], a current-thread tokio runtime), and connects it to the store through
//! what `chasi save`/`chasi load` already use:
//!
//! - [`push`]: `chasi_images::Image::read` walks the image, blobs stream from the store;
//! - [`pull`]: the registry is a `chasi_oci::BlobSource` that `chasi_oci::import_image` reads
//!   into `chasi_images::StoreBlobs`, the path of `chasi load` (every blob verified, DiffIDs
//!   checked, nothing tagged unless all of it is stored);
//! - [`pull_to_dir`]: one platform of an image into a registry directory
//!   (`chasi_oci::distribution`), for the images a cluster image carries;
//! - [`client`]: the session, the scheme rule (plain HTTP only for loopback and
//!   `--insecure-registry` registries that do not talk TLS), TLS options, retries with
//!   exponential backoff, and the sorting of failures into [`RegistryError`];
//! - [`auth`]: `--creds`, `$REGISTRY_AUTH_FILE`, `~/.docker/config.json`;
//! - [`transfer`]: blob and manifest bytes across the network (resumable downloads), and
//!   `upload` (private): resumable chunked uploads, spoken over `reqwest` because
//!   `oci-client` cannot resume one.
//!
//! It depends on `chasi-images`, `chasi-layers` and `chasi-oci` only, never on the builder or
//! the compiler.
//!
//! Not done yet: `Retry-After` outside uploads (`oci-client` does not expose response
//! headers: a 429 there waits the backoff), credential helpers, pushing with re-compression,
//! pushing or pulling blobs in parallel.

pub mod auth;
pub mod client;
pub mod error;
pub mod pull;
pub mod push;
pub mod transfer;
mod upload;

pub use auth::{AuthFiles, Credentials};
pub use client::{is_loopback, may_be_plain, parse_reference, Options, Retry, Session};
pub use error::{RegistryError, Result};
pub use pull::{pull, pull_to_dir, DirPullReport, PullReport};
pub use push::{push, PushReport};
