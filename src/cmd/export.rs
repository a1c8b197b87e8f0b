//! `chasi export`: one platform of an image as a delivery medium (thin: the work is in
//! `chasi_formats::export`; the image and platform are resolved by `chasi_images`).

use anyhow::Context as _;
use chasi_formats::export::{
    self, parse_bytes, AbSlots, BootMode, ClusterCompression, ExportFormat, ExportInput,
    ExportOptions, OciImage, RootFsType, VmProfile,
};
use chasi_images::{self as images, StoreBlobs};
use chasi_layers::Store;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `--size`: `None` is `auto`.
#[derive(Debug, Clone, Copy)]
struct DiskSize(Option<u64>);

fn size_arg(s: &str) -> Result<DiskSize, String> {
    if s == "auto" {
        return Ok(DiskSize(None));
    }
    parse_bytes(s)
        .filter(|&n| n > 0)
        .map(|n| DiskSize(Some(n)))
        .ok_or_else(|| format!("`{s}` is not `auto` or a size (BYTES, or with K/M/G/T)"))
}

/// `--slot-size` / `--data-size`.
fn bytes_arg(s: &str) -> Result<u64, String> {
    parse_bytes(s)
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("`{s}` is not a size (BYTES, or with K/M/G/T)"))
}

/// `--slots`: the one layout there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SlotsArg {
    /// Two root partitions and a data partition, booted by GRUB with boot counting, for chasi-node.
    Ab,
}

fn memory_arg(s: &str) -> Result<u64, String> {
    // A bare number is MiB (as in VM tools); with a unit, bytes converted to MiB.
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    parse_bytes(s)
        .map(|b| b >> 20)
        .ok_or_else(|| format!("`{s}` is not a memory size (MiB, or with M/G)"))
}

fn parsed<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| e.to_string())
}

/// `chasi export` options.
#[derive(Debug, Args)]
#[command(after_help = "\
Formats:
  tar       the flattened root file system (whiteouts applied), one reproducible tar
  squashfs  the root file system as a zstd squashfs image
  raw       GPT disk image (sparse file)
  qcow2     GPT disk as QCOW2 v3 (--compress none|zlib|zstd)
  vmdk      GPT disk as a streamOptimized VMDK
  ova       OVF + VMDK + SHA-256 manifest (--vm-name, --cpus, --memory, --vm-profile)
  vma       Proxmox VMA backup with qemu-server.conf (--vm-name, --cpus, --memory)
  iso       ISO 9660 + Rock Ridge + Joliet, hybrid; a live system booting under BIOS and
            UEFI when the image has a kernel, else the image as an OCI layout (--label)

Disks hold a root partition (--fs) and, when the image carries a kernel (/boot/vmlinuz-*
or /vmlinuz, with its initrd), an EFI System Partition with GRUB: they boot under UEFI with
root=PARTUUID=... console=ttyS0 (--boot bios|hybrid: under BIOS too, from a BIOS boot partition). With --slots ab a disk is laid out for chasi-node: two root
partitions (slot a holds the image, slot b is empty), a data partition holding the node
state (a store with the image, so the first delta applies) and GRUB choosing the slot from
its environment block, falling back from a slot whose boot is never confirmed (chasi-node
boot-check). Output is reproducible: the same image and options give
the same bytes (set SOURCE_DATE_EPOCH to choose the time stamps).

OVA virtual hardware (--vm-profile):
  vmware      LSI Logic SCSI, VMXNET3 NIC, vmx-14, firmware in vmw:Config (default)
  kvm         virtio-scsi controller, virtio-net NIC, for virt-v2v (oVirt, OpenStack,
              libvirt) and Proxmox, firmware in vmw:Config
  virtualbox  SATA AHCI, Intel E1000 NIC, virtualbox-2.2, VirtualBox's standard OVF 1.0
              form; it cannot declare UEFI, so the disk boots under BIOS and UEFI
              (--boot hybrid, the default for this profile) or BIOS")]
pub struct ExportArgs {
    /// Image name (NAME[:TAG]) or digest.
    image: String,
    /// Output format: tar, squashfs, raw, qcow2, vmdk, ova, vma, iso.
    #[arg(long, value_parser = parsed::<ExportFormat>)]
    format: ExportFormat,
    /// Output: a file (written under a temporary name, renamed when complete), an existing
    /// pipe or device (written in place, never replaced), or `-` for standard output.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Platform of a multi-platform image (os/arch[/variant]); default: the only one, else the host's.
    #[arg(long, value_name = "OS/ARCH")]
    platform: Option<String>,
    /// Disk size (disks): BYTES (K/M/G/T suffixes) or `auto` (content plus headroom).
    #[arg(long, value_name = "BYTES|auto", default_value = "auto", value_parser = size_arg)]
    size: DiskSize,
    /// Root file system of disks: ext4, squashfs or erofs.
    #[arg(long, value_name = "FS", default_value = "ext4", value_parser = parsed::<RootFsType>)]
    fs: RootFsType,
    /// Firmware of bootable exports: uefi (disk default), bios, hybrid (ISO default; a disk then
    /// also carries GRUB for BIOS in a BIOS boot partition).
    #[arg(long, value_name = "MODE", value_parser = parsed::<BootMode>)]
    boot: Option<BootMode>,
    /// Extra kernel command line, appended after root=... console=ttyS0.
    #[arg(long, value_name = "STR")]
    kernel_cmdline: Option<String>,
    /// QCOW2 cluster compression: none, zlib or zstd.
    #[arg(long, value_name = "ALG", default_value = "none", value_parser = parsed::<ClusterCompression>)]
    compress: ClusterCompression,
    /// VM name (OVA, VMA).
    #[arg(long, value_name = "NAME", default_value = "chasi")]
    vm_name: String,
    /// Virtual CPUs (OVA, VMA).
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Memory (OVA, VMA): MiB, or a size with M/G.
    #[arg(long, value_name = "MIB", default_value = "2048", value_parser = memory_arg)]
    memory: u64,
    /// Virtual hardware of an OVA: vmware (default), kvm or virtualbox (see below).
    #[arg(long, value_name = "PROFILE", value_parser = parsed::<VmProfile>)]
    vm_profile: Option<VmProfile>,
    /// ISO volume id (A-Z, 0-9, _; at most 32).
    #[arg(long, value_name = "LABEL", default_value = "CHASI")]
    label: String,
    /// Compression threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Lay the disk out for chasi-node: `ab` (two root slots and a data partition).
    #[arg(long, value_enum, value_name = "LAYOUT")]
    slots: Option<SlotsArg>,
    /// Size of each slot partition (--slots ab); default: twice the image, at least 256 MiB.
    #[arg(long, value_name = "BYTES", value_parser = bytes_arg, requires = "slots")]
    slot_size: Option<u64>,
    /// Size of the data partition (--slots ab); default: three times its content plus 64 MiB.
    #[arg(long, value_name = "BYTES", value_parser = bytes_arg, requires = "slots")]
    data_size: Option<u64>,
}

fn open(store: Option<&Path>) -> anyhow::Result<Store> {
    Ok(Store::open_existing(chasi_layers::resolve_store_dir(
        store,
    )?)?)
}

/// `chasi export`.
pub fn run(store: Option<&Path>, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let mut opts = ExportOptions {
        size: args.size.0,
        fs: args.fs,
        boot: args.boot,
        kernel_cmdline: args.kernel_cmdline,
        compress: args.compress,
        vm_name: args.vm_name,
        cpus: args.cpus,
        memory_mib: args.memory,
        vm_profile: args.vm_profile,
        label: args.label,
        threads: args.threads,
        // Checked now; the data partition's tree is made once the image is known.
        slots: args.slots.map(|_| AbSlots {
            data_dir: PathBuf::new(),
            slot_size: args.slot_size,
            data_size: args.data_size,
        }),
    };
    // Options first: a bad option fails before the store is touched.
    opts.check(args.format)?;
    let platform = args
        .platform
        .as_deref()
        .map(str::parse::<chasi_oci::Platform>)
        .transpose()?;
    let store = open(store)?;
    let image = images::platform_image(&store, &args.image, platform.as_ref())?;
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.trim()
                .parse::<i64>()
                .with_context(|| format!("SOURCE_DATE_EPOCH `{v}` is not a number"))?,
        ),
        _ => None,
    };
    // The node state of an A/B disk: the image imported into a node store the way chasi-node imports.
    // (In the store's session temp directory, removed with the store handle.)
    if let Some(ab) = &mut opts.slots {
        let dir = store.tmp_dir().join("slots");
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let layout = dir.join("image");
        images::save(
            &store,
            &args.image,
            &layout,
            chasi_oci::SaveFormat::OciLayout,
            chasi_oci::LayerCompression::Keep,
            None,
        )?;
        let node_platform: chasi_oci::Platform = image.platform.parse()?;
        ab.data_dir = dir.join("data");
        chasi_runtime::seed::seed_state(&ab.data_dir, &layout, &node_platform)
            .context("seed the node state of the data partition")?;
        std::fs::remove_dir_all(&layout).with_context(|| format!("remove {}", layout.display()))?;
    }
    let blobs = StoreBlobs::new(&store);
    let input = ExportInput {
        store: &store,
        layers: image.diff_ids.clone(),
        digest: image.manifest,
        platform: image.platform.clone(),
        epoch,
        oci: Some(OciImage {
            source: &blobs,
            root: image.descriptor.clone(),
            name: image.name.clone(),
        }),
    };
    let report = export::export(args.format, &input, &opts, &args.output)?;
    for n in &report.notes {
        eprintln!("{n}");
    }
    let line = format!(
        "{} {} {} bytes{}",
        report.path.display(),
        report.format,
        report.size,
        if report.bootable { " bootable" } else { "" }
    );
    // With `-o -` standard output carries the export itself.
    if chasi_oci::output::is_stdout(&args.output) {
        eprintln!("{line}");
    } else {
        outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
