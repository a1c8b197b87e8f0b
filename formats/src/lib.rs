//! `chasi-formats`: the native disk-image writers and `chasi export` ([`export`]); OCI I/O is
//! `chasi-oci`.
//!
//! The native disk-image writers all stream from a [`disk::DiskSource`] (a virtual disk made of
//! extents; holes read as zeros) and write by the output rules of [`chasi_oci::output::Output`]
//! (a file atomically, a pipe or device in place, `-` to standard output). Identifiers are
//! derived from a caller-supplied seed ([`ids`]) so output is byte-for-byte reproducible:
//!
//! ```text
//! partition images (ext4, FAT ESP, made by export/)
//!         │
//!   gpt::GptLayout ──assemble──▶ disk::ExtentDisk (impl DiskSource: size, read_at, allocated_ranges)
//!         ┌──────────┬──────────────┬───────────┴──┬─────────────┐
//!   raw::write_raw  qcow2::write_qcow2  vmdk::write_vmdk  ova::write_ova  vma::write_vma
//! ```
//!
//! Why this shape:
//! - **One input type.** A `DiskSource` is a virtual disk whose extents are in-memory buffers
//!   (GPT structures) or file regions (partition images); holes read as zeros.
//!   `allocated_ranges()` comes from `SEEK_DATA`/`SEEK_HOLE` (through `rustix`, no `unsafe`), so
//!   writers skip holes without reading them, and every cluster read is still tested for zeros
//!   (`disk::is_zero`): QCOW2 and VMDK stay sparse and VMA masks zero blocks even when the file
//!   system reports allocated zeros.
//! - **Reproducible.** No clock, no randomness: UUIDs and GUIDs, the VMDK CID, the VMA uuid and
//!   the Proxmox NIC MAC derive from a caller seed (the image digest) through [`ids`]; times (VMA
//!   ctime, OVA member mtime) are options the caller clamps to `SOURCE_DATE_EPOCH`. Each writer
//!   has a "same input ⇒ same bytes" test.
//! - **Durable by default.** The option structs have `sync` (default true; raw has
//!   `raw::write_raw_with`) for callers that do not need durability, and for like-for-like
//!   benchmarks against `qemu-img`, which never syncs.
//! - **Compression** (`compress.rs`): per-thread reusable compressors (raw deflate with a 4 KiB
//!   window for QCOW2 zlib, zlib streams for VMDK grains, zstd frames for QCOW2 zstd) over batches
//!   of about 1 MiB on `threads` workers (default 2), results written in guest order.
//!   Figures: `docs/benchmarks.md`.
//!
//! | module | output | validated by (tests) |
//! |---|---|---|
//! | [`gpt`] | protective MBR, both headers and 128-entry arrays, 1 MiB alignment; ESP, x86-64 root (Discoverable Partitions) and Linux data type GUIDs | `sfdisk --dump`, `sgdisk -v` |
//! | [`raw`] | sparse raw disk; zeros written on anything but a regular file; a block device smaller than the disk refused | `sfdisk`, `e2fsck` in the export tests |
//! | [`qcow2`] | v3, 16-bit refcounts, optionally zlib or zstd; data first, then L2s, L1, refcounts (fixpoint), header last | `qemu-img check`, `compare` with the raw export, `info` |
//! | [`vmdk`] | streamOptimized: grain markers and zlib grains, GT after each 512-grain group, GD, footer, end-of-stream marker | `qemu-img compare`/`check`/`info`, a structural walk of the tail |
//! | [`ova`] | `.ovf` first, then the disk and a SHA-256 (or SHA-512) manifest, in a deterministic ustar ([`ustar`]: no PAX, 0/0, 0644, fixed mtime) | `virt-v2v -i ova --print-source`, which rejects a tampered package |
//! | [`ovf`] | the OVF descriptor of one [`ovf::VmProfile`]: VMware (LSI Logic, VMXNET3, `vmx-NN`), KVM (virtio-scsi, virtio-net), VirtualBox (SATA AHCI, E1000, `virtualbox-2.2`) | `virt-v2v --print-source` reports each profile's bus and NIC; the XML read back with `roxmltree`; qemu starts the KVM profile's devices |
//! | [`vma`] | Proxmox VMA as its C reader checks it: header and blob buffer, MD5s, `qemu-server.conf`, every cluster once in 59-slot extents, zero 4 KiB blocks masked | an independent reader in `formats/tests/vma.rs` |

mod compress;
pub mod disk;
pub mod error;
pub mod export;
pub mod gpt;
pub mod ids;
pub mod ova;
pub mod ovf;
pub mod qcow2;
pub mod raw;
pub mod slots;
pub mod ustar;
pub mod vma;
pub mod vmdk;

pub use error::{FormatError, Result};
