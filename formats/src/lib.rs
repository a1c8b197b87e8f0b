//! `chasi-formats`: the exporters (disk images, ISO, archives); OCI I/O is `chasi-oci`.
//!
//! This part of the crate holds the native disk-image writers. They all stream from a
//! [`disk::DiskSource`] (a virtual disk made of extents; holes read as zeros) and write by
//! the output rules of [`chasi_oci::output::Output`] (a file atomically, a pipe or device in
//! place). Identifiers are derived from a caller-supplied seed ([`ids`]) so output is
//! byte-for-byte reproducible.
//!
//! | module | output |
//! |---|---|
//! | [`gpt`] | GUID partition table around ESP / root partition images |
//! | [`raw`] | sparse raw disk |
//! | [`qcow2`] | QCOW2 v3, optionally zlib- or zstd-compressed |
//! | [`vmdk`] | streamOptimized VMDK (markers, footer, end-of-stream marker) |
//! | [`ova`] | OVA: OVF 1.x descriptor, VMDK, SHA-256 manifest in a deterministic ustar ([`ustar`]) |
//! | [`vma`] | Proxmox VMA backup archive with `qemu-server.conf` |

mod compress;
pub mod disk;
pub mod error;
pub mod export;
pub mod gpt;
pub mod ids;
pub mod ova;
pub mod qcow2;
pub mod raw;
pub mod ustar;
pub mod vma;
pub mod vmdk;

pub use error::{FormatError, Result};
