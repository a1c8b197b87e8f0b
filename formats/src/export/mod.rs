//! `chasi export`: turns the flattened root file system of one platform of an image into a
//! delivery medium (tar, squashfs, raw/qcow2/vmdk/ova/vma disks, ISO).
//!
//! Why a trait and a closed enum: every format shares the same two phases — an *early check*
//! of options and external tools (so a bad option or a missing package fails before any
//! work or output), then a *streaming export* from the layer store's merged view
//! ([`chasi_layers::Store::flat_view`]) into the output, written by the rules of
//! [`chasi_oci::output`] (a file atomically, a pipe or device in place, `-` to standard output).
//! [`ExportFormat`] is closed so the CLI can list the formats and their options in `--help`,
//! and each format lives in its own module:
//!
//! | module | formats |
//! |---|---|
//! | [`archive`] | `tar` (the flattened rootfs), `squashfs` |
//! | [`disks`] | `raw`, `qcow2`, `vmdk`, `ova`, `vma`: a GPT disk (ESP + root when the image has a kernel) |
//! | [`iso`] | `iso`: live hybrid ISO (BIOS + UEFI) with a kernel, else an OCI-layout data medium |
//! | [`rootfs`] | root file-system images: ext4 (`mke2fs -d`), squashfs, erofs |
//! | `ext4times` | the ext4 image's inode times reset to the epoch, in place |
//! | `cleanup` | the unpacked tree removed, in parallel, while the output is written |
//! | [`boot`] | ESP (FAT via mtools) and GRUB images for UEFI and BIOS |
//! | [`installed`] | what makes a bootable disk look installed: `/etc/fstab`, `/boot/efi`, root growth |
//! | [`menu`] | the single-root disk's boot path: the loader script and the ESP menu |
//! | [`cpio`] | the live ISO's initramfs (the rootfs as a newc archive) |
//!
//! Work directories (the unpacked rootfs, partition images, the ISO tree) are made by
//! [`work_dir`] in the store's session `tmp/` ([`chasi_layers::Store::tmp_dir`]): a killed
//! export leaves them where the next command that opens the store, or `store gc`, removes
//! them, never next to the output. The intermediate files there are read into the final
//! output (the disk is assembled from them), so their file system does not matter. An image
//! an external tool builds whole (squashfs, ISO) is written by the tool straight into the
//! output's temporary file next to the output ([`write_built`]), so finishing it is a rename
//! on the output's file system, not a copy of a large file from the store's; that temporary
//! file is removed by the next output made in that directory if the export is killed.
//!
//! Reproducibility: identifiers derive from the image digest ([`crate::ids`]) and every
//! time is clamped to [`ExportInput::epoch`] (`SOURCE_DATE_EPOCH`, else the newest mtime in
//! the image), so the same image and options give byte-identical output.
//! Where exceptions to that remain (ext4 inode numbering follows the unpacked tree's
//! `readdir` order) is said in [`rootfs`].
//!
//! ```text
//! CLI (src/cmd/export.rs) ── chasi_images::platform_image ──▶ manifest digest, DiffIDs, descriptor
//!         │ ExportOptions parsed by clap (unknown values: exit 2; misplaced options: exit 1)
//!         ▼
//! export(format, ExportInput { store, layers, digest, platform, epoch, oci }, options, out)
//!         1. options.check(format)   2. Exporter::check (tools present, Debian package named)
//!         3. check the output path   4. Exporter::export (streaming; temporary name, rename)
//! ```
//!
//! This crate reaches the store only through `chasi-layers` (the merged view, unpack, the work
//! directory) and never depends on the builder: the CLI passes the OCI blob source for the data
//! ISO (`StoreBlobs`). The kernel is `/boot/vmlinuz-*` (newest version by name), else `/vmlinuz`,
//! with its initrd (`initrd.img-V`, `initramfs-V.img`, `initrd-V`); disks boot by UEFI unless
//! `--boot bios|hybrid` says otherwise ([`ExportOptions::disk_boot`]: an OVA for VirtualBox,
//! which cannot be told UEFI, defaults to hybrid). An OVA's virtual hardware is one
//! [`VmProfile`] (`--vm-profile`, [`crate::ovf`]). `examples/bootable/README.md` shows an image that
//! boots this way; `tests/export_cli.rs` validates every format with the external tools that
//! read it and boots the disks and ISO under QEMU (TCG) with OVMF and SeaBIOS.

mod ab;
pub mod archive;
pub mod boot;
mod cleanup;
pub mod cpio;
pub mod disks;
mod ext4times;
pub mod installed;
pub mod iso;
pub mod menu;
pub mod rootfs;
pub mod tools;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chasi_layers::{Digest, Store};

use crate::error::FormatError;
pub use crate::ovf::VmProfile;
use chasi_oci::output::{self, Output, OutputError};
use chasi_oci::{BlobSource, Descriptor, OciError};

/// Everything that can stop an export: what the disk writers can fail with
/// ([`FormatError`]: a file operation, an invalid option, a missing or failing external
/// tool, …) and what only an export can.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file operation, an option, an external tool or a writer of this crate failed.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The layer store failed (missing or corrupt layer).
    #[error("layer store")]
    Store(#[from] chasi_layers::Error),
    /// Writing the OCI layout of a data ISO failed.
    #[error("oci layout")]
    Oci(#[from] OciError),
    /// The image has nothing to export.
    #[error("image {image} has no root file system (no layers, or only empty ones)")]
    NoRootfs {
        /// The image digest.
        image: Digest,
    },
    /// `--size` is smaller than the content needs.
    #[error("disk size {requested} bytes is too small: this image needs at least {needed} bytes (use --size auto or a larger size)")]
    TooSmall {
        /// The size asked for.
        requested: u64,
        /// The minimum that fits.
        needed: u64,
    },
    /// The ext4 image mke2fs wrote does not have the layout the time clamp knows.
    #[error("ext4 image {path}: {message}")]
    Ext4 {
        /// The image.
        path: PathBuf,
        /// What does not fit.
        message: String,
    },
    /// The output path cannot be written.
    #[error("cannot write the output {path}: {reason}")]
    Output {
        /// The final output path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The output rules fail as the writers of this crate do: as [`FormatError::Output`].
impl From<OutputError> for ExportError {
    fn from(e: OutputError) -> Self {
        ExportError::Format(e.into())
    }
}

impl ExportError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let wrap = FormatError::io(action, path);
        move |source| ExportError::Format(wrap(source))
    }

    pub(crate) fn option(format: &'static str, message: impl Into<String>) -> Self {
        ExportError::Format(FormatError::option(format, message))
    }
}

/// Result of this module.
pub type ExportResult<T> = std::result::Result<T, ExportError>;

/// The output formats of `chasi export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// The flattened rootfs as one reproducible tar.
    Tar,
    /// The rootfs as a squashfs image.
    Squashfs,
    /// A sparse raw GPT disk.
    Raw,
    /// A QCOW2 v3 GPT disk.
    Qcow2,
    /// A streamOptimized VMDK GPT disk.
    Vmdk,
    /// An OVA (OVF + VMDK + manifest).
    Ova,
    /// A Proxmox VMA backup.
    Vma,
    /// An ISO 9660 medium (live when the image has a kernel, data otherwise).
    Iso,
}

impl ExportFormat {
    /// Every format, in `--help` order.
    pub const ALL: [ExportFormat; 8] = [
        ExportFormat::Tar,
        ExportFormat::Squashfs,
        ExportFormat::Raw,
        ExportFormat::Qcow2,
        ExportFormat::Vmdk,
        ExportFormat::Ova,
        ExportFormat::Vma,
        ExportFormat::Iso,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Tar => "tar",
            ExportFormat::Squashfs => "squashfs",
            ExportFormat::Raw => "raw",
            ExportFormat::Qcow2 => "qcow2",
            ExportFormat::Vmdk => "vmdk",
            ExportFormat::Ova => "ova",
            ExportFormat::Vma => "vma",
            ExportFormat::Iso => "iso",
        }
    }

    /// The exporter for this format.
    pub fn exporter(self) -> Box<dyn Exporter> {
        match self {
            ExportFormat::Tar => Box::new(archive::TarExporter),
            ExportFormat::Squashfs => Box::new(archive::SquashfsExporter),
            ExportFormat::Raw
            | ExportFormat::Qcow2
            | ExportFormat::Vmdk
            | ExportFormat::Ova
            | ExportFormat::Vma => Box::new(disks::DiskExporter { format: self }),
            ExportFormat::Iso => Box::new(iso::IsoExporter),
        }
    }

    /// Whether the writer seeks back into its output (qcow2 writes its header last), so the
    /// output must be a regular file or a block device.
    pub fn needs_seek(self) -> bool {
        self == ExportFormat::Qcow2
    }

    /// Whether the format is a GPT disk image.
    pub fn is_disk(self) -> bool {
        matches!(
            self,
            ExportFormat::Raw
                | ExportFormat::Qcow2
                | ExportFormat::Vmdk
                | ExportFormat::Ova
                | ExportFormat::Vma
        )
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ExportFormat {
    type Err = ExportError;
    fn from_str(s: &str) -> ExportResult<Self> {
        ExportFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                ExportError::option(
                    "export",
                    format!(
                        "unknown format `{s}` (one of {})",
                        ExportFormat::ALL.map(|f| f.name()).join(", ")
                    ),
                )
            })
    }
}

/// File system of the root partition (disks) or of the rootfs image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RootFsType {
    /// ext4, read-write (`mke2fs -d`).
    #[default]
    Ext4,
    /// squashfs, read-only, zstd-compressed (`mksquashfs`).
    Squashfs,
    /// erofs, read-only, lz4hc-compressed (`mkfs.erofs`).
    Erofs,
}

impl RootFsType {
    /// Name for the kernel's `rootfstype=` and messages.
    pub fn name(self) -> &'static str {
        match self {
            RootFsType::Ext4 => "ext4",
            RootFsType::Squashfs => "squashfs",
            RootFsType::Erofs => "erofs",
        }
    }
}

impl FromStr for RootFsType {
    type Err = ExportError;
    fn from_str(s: &str) -> ExportResult<Self> {
        match s {
            "ext4" => Ok(RootFsType::Ext4),
            "squashfs" => Ok(RootFsType::Squashfs),
            "erofs" => Ok(RootFsType::Erofs),
            _ => Err(ExportError::option(
                "export",
                format!("unknown file system `{s}` (ext4, squashfs, erofs)"),
            )),
        }
    }
}

/// Firmware a bootable export targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// UEFI only.
    Uefi,
    /// BIOS only (ISO).
    Bios,
    /// Both (ISO).
    Hybrid,
}

impl BootMode {
    /// The firmware it boots under, for people (`BIOS + UEFI`).
    pub fn firmware(self) -> &'static str {
        match self {
            BootMode::Uefi => "UEFI",
            BootMode::Bios => "BIOS",
            BootMode::Hybrid => "BIOS + UEFI",
        }
    }
}

impl FromStr for BootMode {
    type Err = ExportError;
    fn from_str(s: &str) -> ExportResult<Self> {
        match s {
            "uefi" => Ok(BootMode::Uefi),
            "bios" => Ok(BootMode::Bios),
            "hybrid" => Ok(BootMode::Hybrid),
            _ => Err(ExportError::option(
                "export",
                format!("unknown boot mode `{s}` (uefi, bios, hybrid)"),
            )),
        }
    }
}

/// QCOW2 cluster compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterCompression {
    /// Uncompressed.
    #[default]
    None,
    /// Deflate (qemu's `zlib` compression type).
    Zlib,
    /// zstd.
    Zstd,
}

impl FromStr for ClusterCompression {
    type Err = ExportError;
    fn from_str(s: &str) -> ExportResult<Self> {
        match s {
            "none" => Ok(ClusterCompression::None),
            "zlib" => Ok(ClusterCompression::Zlib),
            "zstd" => Ok(ClusterCompression::Zstd),
            _ => Err(ExportError::option(
                "export",
                format!("unknown compression `{s}` (none, zlib, zstd)"),
            )),
        }
    }
}

/// Parses `1234`, `512K`, `64M`, `2G`, `1T` (binary units, optional `iB`/`B`).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" | "kb" => 10,
        "m" | "mib" | "mb" => 20,
        "g" | "gib" | "gb" => 30,
        "t" | "tib" | "tb" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// Options of `chasi export`; every field has a default that works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// Disk size in bytes; `None` = just large enough (auto).
    pub size: Option<u64>,
    /// Root file system of disks.
    pub fs: RootFsType,
    /// Firmware of bootable exports; `None` = UEFI for disks, hybrid for ISO. A BIOS disk gets GRUB's
    /// core image in a BIOS boot partition and its boot code in the protective MBR.
    pub boot: Option<BootMode>,
    /// Extra kernel command line (appended to `root=... console=ttyS0`).
    pub kernel_cmdline: Option<String>,
    /// QCOW2 cluster compression.
    pub compress: ClusterCompression,
    /// VM name (OVA, VMA).
    pub vm_name: String,
    /// vCPUs (OVA, VMA).
    pub cpus: u32,
    /// Memory in MiB (OVA, VMA).
    pub memory_mib: u64,
    /// Virtual hardware of an OVA (`--vm-profile`); `None`: VMware's. Refused for other formats.
    pub vm_profile: Option<VmProfile>,
    /// ISO volume id.
    pub label: String,
    /// Compression threads.
    pub threads: usize,
    /// A/B slots for `chasi-node` (disks): see [`crate::slots`].
    pub slots: Option<AbSlots>,
}

/// `--slots ab`: what the A/B disk needs beyond the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbSlots {
    /// The data partition's tree: the node state the runtime starts with (`grubenv` is added to it).
    pub data_dir: PathBuf,
    /// Size of each slot partition; `None`: twice the image's auto size, at least 256 MiB.
    pub slot_size: Option<u64>,
    /// Size of the data partition; `None`: three times its content plus 64 MiB, at least 128 MiB.
    pub data_size: Option<u64>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            size: None,
            fs: RootFsType::Ext4,
            boot: None,
            kernel_cmdline: None,
            compress: ClusterCompression::None,
            vm_name: "chasi".into(),
            cpus: 2,
            memory_mib: 2048,
            vm_profile: None,
            label: "CHASI".into(),
            threads: 2,
            slots: None,
        }
    }
}

impl ExportOptions {
    /// The OVA's virtual hardware: `--vm-profile`, else VMware's.
    pub fn profile(&self) -> VmProfile {
        self.vm_profile.unwrap_or_default()
    }

    /// The firmware a disk is built for: `--boot`, else UEFI; for the VirtualBox OVA profile
    /// BIOS + UEFI, since its descriptor cannot ask for UEFI ([`VmProfile::declares_firmware`])
    /// and VirtualBox starts an imported Linux guest with BIOS.
    pub fn disk_boot(&self) -> BootMode {
        self.boot.unwrap_or(if self.profile().declares_firmware() {
            BootMode::Uefi
        } else {
            BootMode::Hybrid
        })
    }

    /// The early option check shared by all formats: rejects options the format does not
    /// use (so a typo'd intent is not silently ignored) and malformed values.
    pub fn check(&self, format: ExportFormat) -> ExportResult<()> {
        let f = format.name();
        let only = |what: &str, formats: &str| {
            Err(ExportError::option(
                f,
                format!("{what} applies to {formats} only"),
            ))
        };
        if self.compress != ClusterCompression::None && format != ExportFormat::Qcow2 {
            return only("--compress", "qcow2");
        }
        if self.size.is_some() && !format.is_disk() {
            return only("--size", "raw, qcow2, vmdk, ova and vma");
        }
        if self.fs != RootFsType::Ext4 && !format.is_disk() {
            return only("--fs", "raw, qcow2, vmdk, ova and vma");
        }
        if self.boot.is_some() && !format.is_disk() && format != ExportFormat::Iso {
            return only("--boot", "disks and iso");
        }
        if let Some(p) = self.vm_profile {
            if format != ExportFormat::Ova {
                return Err(ExportError::option(
                    f,
                    "--vm-profile applies to ova only: a vmdk alone declares no hardware and a vma carries Proxmox's own configuration",
                ));
            }
            if self.boot == Some(BootMode::Uefi) && !p.declares_firmware() {
                return Err(ExportError::option(
                    f,
                    format!(
                        "--vm-profile {p} cannot declare UEFI firmware (VirtualBox reads it only from its own vbox:Machine section, which this standard OVF does not carry) and VirtualBox starts the guest with BIOS: use --boot hybrid (the default for this profile) or --boot bios"
                    ),
                ));
            }
        }
        if let Some(c) = &self.kernel_cmdline {
            if c.contains(['\n', '\r', '"', '\'', '\\', '$', ';']) {
                return Err(ExportError::option(
                    f,
                    "--kernel-cmdline must not contain quotes, backslashes, `$`, `;` or newlines",
                ));
            }
        }
        if self.slots.is_some() {
            if !format.is_disk() && format != ExportFormat::Iso {
                return only("--slots", "disks and iso (an installer)");
            }
            if self.fs != RootFsType::Ext4 {
                return Err(ExportError::option(
                    f,
                    "--slots ab needs --fs ext4: chasi-node refills a slot's file system in place, without mkfs",
                ));
            }
        }
        if self.threads == 0 {
            return Err(ExportError::option(f, "threads must be at least 1"));
        }
        if format == ExportFormat::Iso {
            let ok = !self.label.is_empty()
                && self.label.len() <= 32
                && self
                    .label
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                return Err(ExportError::option(
                    f,
                    format!(
                        "--label {:?} must be 1-32 of A-Z, 0-9 and _ (ISO 9660 d-characters)",
                        self.label
                    ),
                ));
            }
        }
        if matches!(format, ExportFormat::Ova | ExportFormat::Vma) {
            if self.cpus == 0 || self.cpus > 768 {
                return Err(ExportError::option(
                    f,
                    format!("--cpus {} is outside 1..=768", self.cpus),
                ));
            }
            if self.memory_mib < 16 || !self.memory_mib.is_multiple_of(4) {
                return Err(ExportError::option(
                    f,
                    format!(
                        "--memory {} MiB must be at least 16 MiB and a multiple of 4 MiB",
                        self.memory_mib
                    ),
                ));
            }
            let ok = !self.vm_name.is_empty()
                && self.vm_name.len() <= 63
                && !self.vm_name.starts_with(['.', '-'])
                && self
                    .vm_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(ExportError::option(
                    f,
                    format!(
                        "--vm-name {:?} must be 1-63 of A-Z, a-z, 0-9, `.` and `-`, not starting with `.` or `-`",
                        self.vm_name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The OCI form of the image, for media that carry the image itself (data ISO).
pub struct OciImage<'a> {
    /// Where the blobs come from (the store, through the builder's adapter).
    pub source: &'a dyn BlobSource,
    /// The root descriptor (index or manifest) to write.
    pub root: Descriptor,
    /// The image's name (`name:tag`), written into the layout's `index.json`.
    pub name: Option<String>,
}

/// What to export: one platform of one image.
pub struct ExportInput<'a> {
    /// The layer store.
    pub store: &'a Store,
    /// The platform's layers, bottom first, by DiffID.
    pub layers: Vec<Digest>,
    /// The platform manifest's digest: the seed of every identifier.
    pub digest: Digest,
    /// The platform (`linux/amd64`).
    pub platform: String,
    /// Clamp time for everything written (`SOURCE_DATE_EPOCH`); `None` = the newest mtime
    /// in the image.
    pub epoch: Option<i64>,
    /// The image as OCI, for the data ISO (without it, a data ISO cannot be made).
    pub oci: Option<OciImage<'a>>,
}

impl ExportInput<'_> {
    /// Scans the flattened rootfs and picks the time the output is dated with
    /// (`SOURCE_DATE_EPOCH`, else the newest mtime in the image); an image with nothing in
    /// its rootfs is an error, since every exporter would produce an empty medium.
    pub fn scan_rootfs(&self) -> ExportResult<(rootfs::RootfsInfo, i64)> {
        let info = rootfs::scan(self.store, &self.layers)?;
        if info.entries == 0 {
            return Err(ExportError::NoRootfs { image: self.digest });
        }
        let epoch = self.epoch.unwrap_or(info.max_mtime).max(0);
        Ok((info, epoch))
    }

    /// The seed bytes for [`crate::ids`].
    pub fn seed(&self) -> Vec<u8> {
        self.digest.to_string().into_bytes()
    }

    /// Whether the platform can be booted by the boot chain we build (GRUB for x86-64).
    pub fn bootable_arch(&self) -> bool {
        self.platform.ends_with("/amd64") || self.platform.contains("/amd64/")
    }
}

/// What an export did.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The format.
    pub format: ExportFormat,
    /// The output path as given.
    pub path: PathBuf,
    /// Its size in bytes (written, for a pipe or device).
    pub size: u64,
    /// Whether the output boots (a kernel was found and a boot chain written).
    pub bootable: bool,
    /// Human notes (kernel found, sizes chosen, ...).
    pub notes: Vec<String>,
}

/// An exporter: an early check, then a streaming export.
pub trait Exporter {
    /// The format this exporter writes.
    fn format(&self) -> ExportFormat;

    /// Checks options and the presence of external tools before any work is done.
    fn check(&self, opts: &ExportOptions) -> ExportResult<()>;

    /// Writes the export to `out` by the rules of [`chasi_oci::output`] (a file atomically:
    /// nothing appears under `out` unless it completes; a pipe or device in place).
    fn export(
        &self,
        input: &ExportInput<'_>,
        opts: &ExportOptions,
        out: &Path,
    ) -> ExportResult<ExportReport>;
}

/// Checks early that `out` can be written by `format`, by the rules of [`chasi_oci::output`]:
/// not a directory; a file to create has a writable folder; a format that seeks is not
/// given a pipe, a character device or standard output.
pub fn check_output(out: &Path, format: ExportFormat) -> ExportResult<()> {
    let target = if format.needs_seek() {
        output::inspect_seekable(out, format.name())?
    } else {
        output::inspect(out)?
    };
    if target.kind.in_place() {
        return Ok(());
    }
    let dir = output::parent_dir(&target.resolved);
    tempfile::Builder::new()
        .prefix(".chasi-export-probe.")
        .tempfile_in(&dir)
        .map(drop)
        .map_err(|e| ExportError::Output {
            path: out.to_path_buf(),
            reason: format!("the folder {} is not writable: {e}", dir.display()),
        })
}

/// Runs the whole export: option check, tool check, output check, then the exporter.
pub fn export(
    format: ExportFormat,
    input: &ExportInput<'_>,
    opts: &ExportOptions,
    out: &Path,
) -> ExportResult<ExportReport> {
    opts.check(format)?;
    let exporter = format.exporter();
    exporter.check(opts)?;
    check_output(out, format)?;
    if input.layers.is_empty() {
        return Err(ExportError::NoRootfs {
            image: input.digest,
        });
    }
    exporter.export(input, opts, out)
}

/// A work folder in the store's session `tmp/` (removed when dropped; if the process is
/// killed, by the next command that opens the store).
pub(crate) fn work_dir(store: &Store) -> ExportResult<tempfile::TempDir> {
    let dir = store.tmp_dir();
    tempfile::Builder::new()
        .prefix("export-")
        .tempdir_in(dir)
        .map_err(ExportError::io("create a work folder in", dir))
}

/// Writes an output an external tool builds whole (`build` is given the path to write):
/// into the output's temporary file when the output is a file (finished by a rename), else
/// into `work/name`, then copied into the pipe or device. Returns the output's size.
pub(crate) fn write_built(
    out: &Path,
    work: &Path,
    name: &str,
    build: impl FnOnce(&Path) -> ExportResult<()>,
) -> ExportResult<u64> {
    let target = output::inspect(out)?;
    if target.kind.in_place() {
        let staged = work.join(name);
        build(&staged)?;
        let mut o = Output::open(target)?;
        o.copy_from(&staged)?;
        return Ok(o.commit()?);
    }
    let mut o = Output::open(target)?;
    let path = o.path_for_tool().ok_or_else(|| ExportError::Output {
        path: out.to_path_buf(),
        reason: "a file output has no temporary file (internal)".into(),
    })?;
    build(&path)?;
    Ok(o.commit()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        for f in ExportFormat::ALL {
            assert_eq!(f.name().parse::<ExportFormat>().unwrap(), f);
        }
        assert!("vhd".parse::<ExportFormat>().is_err());
    }

    #[test]
    fn export_failures_are_the_writers_errors_with_the_same_messages() {
        let e = "vhd".parse::<ExportFormat>().unwrap_err();
        assert!(
            matches!(
                e,
                ExportError::Format(FormatError::InvalidOption {
                    format: "export",
                    ..
                })
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("invalid option for export: unknown format `vhd` (one of "),
            "{e}"
        );
        let missing = tools::Tool {
            name: "chasi-no-such-tool",
            package: "chasi-test",
        };
        let e = tools::require(&[missing]).unwrap_err();
        assert!(
            matches!(
                e,
                ExportError::Format(FormatError::ToolMissing {
                    tool: "chasi-no-such-tool",
                    ..
                })
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "`chasi-no-such-tool` not found in PATH: install the Debian package `chasi-test`"
        );
        let e = ExportError::io("write", "/x")(std::io::Error::other("boom"));
        assert!(matches!(e, ExportError::Format(FormatError::Io { .. })));
        assert_eq!(e.to_string(), "cannot write /x");
        assert_eq!(chasi_oci::error::chain(&e), "cannot write /x: boom");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512"), Some(512));
        assert_eq!(parse_bytes("64M"), Some(64 << 20));
        assert_eq!(parse_bytes("2GiB"), Some(2 << 30));
        assert_eq!(parse_bytes("2X"), None);
        assert_eq!(parse_bytes(""), None);
    }

    #[test]
    fn option_checks() {
        let o = ExportOptions {
            compress: ClusterCompression::Zstd,
            ..Default::default()
        };
        assert!(o.check(ExportFormat::Qcow2).is_ok());
        assert!(o.check(ExportFormat::Raw).is_err());
        let o = ExportOptions {
            boot: Some(BootMode::Bios),
            ..Default::default()
        };
        assert!(o.check(ExportFormat::Iso).is_ok());
        assert!(o.check(ExportFormat::Qcow2).is_ok());
        let o = ExportOptions {
            label: "bad label".into(),
            ..Default::default()
        };
        assert!(o.check(ExportFormat::Iso).is_err());
        let o = ExportOptions {
            vm_name: "a_b".into(),
            ..Default::default()
        };
        assert!(o.check(ExportFormat::Vma).is_err());
    }

    #[test]
    fn vm_profile_is_for_ova_and_sets_the_disk_firmware() {
        for format in ExportFormat::ALL {
            let o = ExportOptions {
                vm_profile: Some(VmProfile::Vmware),
                ..Default::default()
            };
            let r = o.check(format);
            if format == ExportFormat::Ova {
                assert!(r.is_ok(), "{format}: {r:?}");
            } else {
                let e = r.unwrap_err().to_string();
                assert!(e.contains("--vm-profile applies to ova only"), "{e}");
            }
        }
        let vbox = |boot| ExportOptions {
            vm_profile: Some(VmProfile::Virtualbox),
            boot,
            ..Default::default()
        };
        let e = vbox(Some(BootMode::Uefi))
            .check(ExportFormat::Ova)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--vm-profile virtualbox cannot declare UEFI"),
            "{e}"
        );
        assert!(vbox(Some(BootMode::Bios)).check(ExportFormat::Ova).is_ok());
        assert_eq!(vbox(None).disk_boot(), BootMode::Hybrid);
        assert_eq!(vbox(Some(BootMode::Bios)).disk_boot(), BootMode::Bios);
        assert_eq!(ExportOptions::default().disk_boot(), BootMode::Uefi);
        let kvm = ExportOptions {
            vm_profile: Some(VmProfile::Kvm),
            ..Default::default()
        };
        assert_eq!(kvm.disk_boot(), BootMode::Uefi);
        assert_eq!(kvm.profile(), VmProfile::Kvm);
    }
}
