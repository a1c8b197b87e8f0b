//! The one deterministic tar writer of chasi.
//!
//! Why it exists: three outputs are tar streams whose bytes are part of their identity: layer
//! tars (a layer's DiffID is their SHA-256), oci-archives and docker-archives, and OVA packages.
//! They share one encoding of headers, PAX records, padding and end blocks ([`TarWriter`]);
//! each keeps its exact historical byte format through a [`Format`], and each caller keeps
//! its own rules on top (which entries, in which order, with which names and owners):
//! `chasi-layers` walks directories (`layers/src/tarwriter.rs`), `chasi-oci` writes the members
//! of an archive (`oci/src/tarball.rs`), `chasi-formats` the members of an OVA
//! (`formats/src/ustar.rs`).
//!
//! Why hand-written on top of raw 512-byte headers instead of `tar::Builder`: reproducibility
//! needs exact control of when a PAX extended header is emitted (only when a value does not
//! fit ustar), of its fixed name (no PID, unlike GNU tar's `PaxHeaders.%p`), of its record
//! order (sorted keys), and no atime/ctime ever; vSphere needs no PAX at all.
//!
//! Encoding rules common to every [`Format`] (changing one changes outputs: do not, without a
//! new layout version):
//! - ustar headers (`ustar\0` + `00`), numeric fields zero-padded octal with a trailing NUL,
//!   uname/gname empty;
//! - entry names as given, relative; a directory's name gets a trailing `/`; names of more
//!   than 100 bytes are split at the leftmost `/` that leaves at most 100 bytes for the name
//!   field and at most 155 for the prefix;
//! - mtimes in whole seconds ([`clamp_mtime`] is the `SOURCE_DATE_EPOCH` rule callers apply);
//! - data padded with zeros to 512 bytes; the end is two zero blocks, then zeros up to
//!   [`Format::record_size`];
//! - entries are written in the order appended: callers sort (by the bytes of the names).

mod entry;
mod error;
mod format;
mod header;
mod writer;

pub use entry::{clamp_mtime, join, EntryKind, TarEntry};
pub use error::TarError;
pub use format::{Checksum, DeviceFields, Format, Overflow};
pub use header::encode_headers;
pub use writer::TarWriter;
