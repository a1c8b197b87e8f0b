//! The byte format of one kind of archive: the few header details in which chasi's three tar
//! outputs have always differed, kept as explicit options so each stays byte-identical.

/// What happens to a value that does not fit its ustar field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// A PAX extended header (`x`) before the entry holds it: names that cannot be split
    /// into prefix and name, link targets over 100 bytes, sizes of 8 GiB and more, uids and
    /// gids of 2^21 and more, mtimes before 1970 or past 8^11 seconds, and every extended
    /// attribute (`SCHILY.xattr.*`). Records are sorted by key; the header is named
    /// `dir/PaxHeaders/base` (cut to 100 bytes), mode 0644, owner 0:0, mtime 0. The ustar
    /// fields keep the value clamped to what fits.
    Pax,
    /// No extended headers ever: a size of 8 GiB or more is written in the GNU base-256
    /// encoding (high bit of the field's first byte set, the value big-endian in its last 8
    /// bytes); any other value that does not fit, and any extended attribute, is a
    /// [`crate::TarError::DoesNotFit`].
    Base256Size,
}

/// How the header checksum field is spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// Six octal digits, NUL, space: what GNU tar writes.
    SixDigitsNulSpace,
    /// Seven octal digits, NUL: what the `tar` crate writes.
    SevenDigitsNul,
}

/// How the device major/minor fields are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceFields {
    /// In every header, as octal (zeros for entries that are not devices).
    Always,
    /// Only for character and block devices; all NUL otherwise (the `tar` crate's headers).
    DevicesOnly,
}

/// The byte format of an archive. Each preset is the exact format one output has always had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Values that do not fit ustar.
    pub overflow: Overflow,
    /// Spelling of the checksum.
    pub checksum: Checksum,
    /// Device fields of non-device entries.
    pub device_fields: DeviceFields,
    /// The archive is padded with zeros after its two end blocks to a multiple of this
    /// (a multiple of 512; 512 means no padding beyond the end blocks).
    pub record_size: u64,
}

impl Format {
    /// Layer tars (`chasi-layers`): PAX whenever needed, so any file tree is representable.
    pub const LAYER: Format = Format {
        overflow: Overflow::Pax,
        checksum: Checksum::SixDigitsNulSpace,
        device_fields: DeviceFields::Always,
        record_size: 512,
    };

    /// OVA packages (`chasi-formats`): vSphere refuses PAX, so only base-256 sizes beyond
    /// ustar, and GNU tar's 10240-byte record.
    pub const OVA: Format = Format {
        overflow: Overflow::Base256Size,
        checksum: Checksum::SixDigitsNulSpace,
        device_fields: DeviceFields::Always,
        record_size: 10240,
    };

    /// oci-archives and docker-archives (`chasi-oci`): the headers `tar::Builder` wrote for
    /// them before this crate existed (member names are short, so no extended headers).
    pub const ARCHIVE: Format = Format {
        overflow: Overflow::Base256Size,
        checksum: Checksum::SevenDigitsNul,
        device_fields: DeviceFields::DevicesOnly,
        record_size: 512,
    };
}
