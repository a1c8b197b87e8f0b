//! OVA packager: an OVF 1.x descriptor, a streamOptimized VMDK and a SHA-256 manifest in a
//! deterministic ustar archive.
//!
//! Why it exists: an OVA is the one VM format VMware, VirtualBox and virt-v2v all import,
//! and the pitfalls are in details the standard tools get wrong (formats.md §1.3):
//! - the `.ovf` must be the **first** member; DSP0243 lets the manifest either follow it
//!   directly or come last ([`ManifestPlacement`]); disks follow in `References` order;
//! - the manifest lines are exactly `SHA256(<name>)= <lowercase hex>` (the `sha256sum
//!   --tag` and OpenSSL 3 spellings are rejected by vSphere);
//! - `ovf:size` is the exact byte size of the member; the disk is a streamOptimized VMDK
//!   ([`crate::vmdk`], with footer and end-of-stream marker);
//! - the descriptor itself, and the virtual hardware it declares, come from [`crate::ovf`]:
//!   one [`VmProfile`] (VMware, KVM or VirtualBox) chooses the controller, the NIC, the VMDK's
//!   `ddb.adapterType`, `VirtualSystemType` and how the firmware is said;
//! - ustar, no PAX, fixed owners and mtime ([`crate::ustar`]).
//!
//! The VMDK is spooled to a temporary file first ([`OvaOptions::work_dir`], the exporter
//! passes the store's session `tmp/`): its size and digest must be known before the
//! descriptor, which comes first in the archive. The archive itself streams, so it can go
//! to a pipe or a device by the rules of [`chasi_oci::output`].

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256, Sha512};

use crate::disk::DiskSource;
use crate::error::{FormatError, Result};
use crate::ids::derive_uuid;
use crate::ovf::{descriptor, DiskRef, VirtualSystem, VmProfile};
use crate::ustar::UstarWriter;
use crate::vmdk::{write_vmdk_stream, VmdkOptions, UUID_LABEL};
use chasi_oci::output::Output;

/// Where the manifest goes in the archive (both are allowed by DSP0243).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestPlacement {
    /// `.ovf`, `.vmdk`, `.mf`: the manifest last.
    #[default]
    End,
    /// `.ovf`, `.mf`, `.vmdk`: the order `ovftool` writes.
    AfterDescriptor,
}

/// Digest algorithm of the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManifestDigest {
    /// `SHA256(name)= hex` (default; accepted by current vSphere).
    #[default]
    Sha256,
    /// `SHA512(name)= hex`.
    Sha512,
}

/// Options of the OVA packager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvaOptions {
    /// VM name: also the base of the member names (`NAME.ovf`, `NAME-disk1.vmdk`, `NAME.mf`).
    pub vm_name: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// The virtual hardware the descriptor declares (default: VMware's).
    pub profile: VmProfile,
    /// VMware virtual hardware version (`vmx-NN`), 4–21; default 14 (ESXi 6.7 and later).
    /// Written by the VMware profile only.
    pub hardware_version: u32,
    /// Boot with UEFI (`firmware=efi`) instead of BIOS. The VirtualBox profile cannot say so
    /// ([`VmProfile::declares_firmware`]) and refuses it.
    pub uefi: bool,
    /// VMware guest OS id, e.g. `otherLinux64Guest` (VMware profile).
    pub vmware_os_type: String,
    /// VirtualBox guest OS type, e.g. `Linux_64` (VirtualBox profile, `vbox:OSType`).
    pub virtualbox_os_type: String,
    /// CIM operating system id matching them (101 = 64-bit Linux; Proxmox maps it to `l26`).
    pub cim_os_id: u32,
    /// Seed for UUIDs (normally the image digest).
    pub seed: Vec<u8>,
    /// Modification time of the members (clamp to `SOURCE_DATE_EPOCH`).
    pub mtime: u64,
    /// Manifest position.
    pub manifest: ManifestPlacement,
    /// Manifest digest algorithm.
    pub digest: ManifestDigest,
    /// zlib level of the VMDK grains.
    pub level: u32,
    /// Compression threads.
    pub threads: usize,
    /// Make the output durable (`fsync`) before renaming it into place (default true).
    pub sync: bool,
    /// Where the VMDK is spooled before it is archived (default: the system's temp dir).
    /// It is copied into the archive either way, so its file system does not matter.
    pub work_dir: Option<PathBuf>,
}

impl Default for OvaOptions {
    fn default() -> Self {
        OvaOptions {
            vm_name: "chasi".into(),
            cpus: 2,
            memory_mib: 2048,
            profile: VmProfile::Vmware,
            hardware_version: 14,
            uefi: true,
            vmware_os_type: "otherLinux64Guest".into(),
            virtualbox_os_type: "Linux_64".into(),
            cim_os_id: 101,
            seed: Vec::new(),
            mtime: 0,
            manifest: ManifestPlacement::End,
            digest: ManifestDigest::Sha256,
            level: 6,
            threads: 2,
            sync: true,
            work_dir: None,
        }
    }
}

impl OvaOptions {
    /// Checks the options before any work is done.
    pub fn validate(&self) -> Result<()> {
        let ok_name = !self.vm_name.is_empty()
            && self.vm_name.len() <= 64
            && !self.vm_name.starts_with(['.', '-'])
            && self
                .vm_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok_name {
            return Err(FormatError::option(
                "ova",
                format!(
                    "vm name {:?} must be 1-64 of [A-Za-z0-9._-], not starting with . or -",
                    self.vm_name
                ),
            ));
        }
        if self.cpus == 0 || self.cpus > 768 {
            return Err(FormatError::option(
                "ova",
                format!("{} cpus is outside 1..=768", self.cpus),
            ));
        }
        if self.memory_mib < 4 || !self.memory_mib.is_multiple_of(4) {
            return Err(FormatError::option(
                "ova",
                format!(
                    "memory {} MiB must be a multiple of 4 and at least 4",
                    self.memory_mib
                ),
            ));
        }
        if !(4..=21).contains(&self.hardware_version) {
            return Err(FormatError::option(
                "ova",
                format!(
                    "hardware version vmx-{} is outside 4..=21",
                    self.hardware_version
                ),
            ));
        }
        if self.vmware_os_type.is_empty()
            || !self
                .vmware_os_type
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        {
            return Err(FormatError::option(
                "ova",
                format!("os type {:?} must be alphanumeric", self.vmware_os_type),
            ));
        }
        let vbox_ok = !self.virtualbox_os_type.is_empty()
            && self.virtualbox_os_type.len() <= 64
            && self
                .virtualbox_os_type
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !vbox_ok {
            return Err(FormatError::option(
                "ova",
                format!(
                    "virtualbox os type {:?} must be 1-64 of [A-Za-z0-9_]",
                    self.virtualbox_os_type
                ),
            ));
        }
        if self.uefi && !self.profile.declares_firmware() {
            return Err(FormatError::option(
                "ova",
                format!(
                    "the {} profile cannot declare UEFI firmware (VirtualBox reads it only from its own vbox:Machine section): give it a disk that boots under BIOS",
                    self.profile
                ),
            ));
        }
        Ok(())
    }

    /// The virtual machine the descriptor declares.
    pub fn virtual_system(&self) -> VirtualSystem<'_> {
        VirtualSystem {
            profile: self.profile,
            name: &self.vm_name,
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            hardware_version: self.hardware_version,
            uefi: self.uefi,
            cim_os_id: self.cim_os_id,
            vmware_os_type: &self.vmware_os_type,
            virtualbox_os_type: &self.virtualbox_os_type,
            disk_uuid: derive_uuid(&self.seed, UUID_LABEL),
        }
    }

    /// Member names: (descriptor, disk, manifest).
    pub fn member_names(&self) -> (String, String, String) {
        (
            format!("{}.ovf", self.vm_name),
            format!("{}-disk1.vmdk", self.vm_name),
            format!("{}.mf", self.vm_name),
        )
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OvaReport {
    /// Size of the `.ova`.
    pub file_size: u64,
    /// Size of the VMDK member.
    pub disk_size: u64,
    /// Members in archive order.
    pub members: Vec<String>,
}

struct HashCount<W: Write> {
    inner: W,
    sha256: Sha256,
    sha512: Sha512,
    n: u64,
}

impl<W: Write> Write for HashCount<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.sha256.update(&b[..n]);
        self.sha512.update(&b[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn digest_line(alg: ManifestDigest, name: &str, data_256: &[u8], data_512: &[u8]) -> String {
    match alg {
        ManifestDigest::Sha256 => format!("SHA256({name})= {}\n", hex::encode(data_256)),
        ManifestDigest::Sha512 => format!("SHA512({name})= {}\n", hex::encode(data_512)),
    }
}

/// Writes `src` as an OVA at `out` (by the rules of [`chasi_oci::output`]).
pub fn write_ova(src: &dyn DiskSource, out: &Path, opts: &OvaOptions) -> Result<OvaReport> {
    opts.validate()?;
    let (ovf_name, disk_name, mf_name) = opts.member_names();
    let vmdk_opts = VmdkOptions {
        seed: opts.seed.clone(),
        file_name: disk_name.clone(),
        adapter: opts.profile.hardware().adapter,
        level: opts.level,
        threads: opts.threads,
        sync: false,
    };
    vmdk_opts.validate()?;
    let mut o = Output::create(out)?;
    o.set_sync(opts.sync);
    let dir = opts.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut vmdk = tempfile::Builder::new()
        .prefix(".chasi-ova-disk.")
        .tempfile_in(&dir)
        .map_err(FormatError::io("create a temporary file in", &dir))?;
    let vmdk_path = vmdk.path().to_path_buf();
    let mut hc = HashCount {
        inner: vmdk.as_file_mut(),
        sha256: Sha256::new(),
        sha512: Sha512::new(),
        n: 0,
    };
    write_vmdk_stream(src, &mut hc, &vmdk_opts, &vmdk_path)?;
    let disk_size = hc.n;
    let disk_256 = hc.sha256.finalize();
    let disk_512 = hc.sha512.finalize();

    let ovf = descriptor(
        &opts.virtual_system(),
        &DiskRef {
            name: &disk_name,
            size: disk_size,
            capacity: src.size(),
        },
    );
    let mut mf = digest_line(
        opts.digest,
        &ovf_name,
        &Sha256::digest(ovf.as_bytes()),
        &Sha512::digest(ovf.as_bytes()),
    );
    mf.push_str(&digest_line(opts.digest, &disk_name, &disk_256, &disk_512));

    let f = vmdk.as_file_mut();
    f.seek(SeekFrom::Start(0))
        .map_err(FormatError::io("seek in", &vmdk_path))?;
    let tmp = out.to_path_buf();
    let mut members = vec![ovf_name.clone()];
    let out_file = std::io::BufWriter::with_capacity(1 << 20, o.writer());
    let mut tar = UstarWriter::new(out_file, opts.mtime, &tmp);
    tar.append_bytes(&ovf_name, ovf.as_bytes())?;
    if opts.manifest == ManifestPlacement::AfterDescriptor {
        tar.append_bytes(&mf_name, mf.as_bytes())?;
        members.push(mf_name.clone());
    }
    tar.append_reader(&disk_name, disk_size, std::io::BufReader::new(&*f))?;
    members.push(disk_name);
    if opts.manifest == ManifestPlacement::End {
        tar.append_bytes(&mf_name, mf.as_bytes())?;
        members.push(mf_name);
    }
    let (out_file, file_size) = tar.finish()?;
    out_file
        .into_inner()
        .map_err(|e| FormatError::Io {
            action: "write",
            path: tmp.clone(),
            source: e.into_error(),
        })?
        .finish()
        .map_err(FormatError::io("sync", &tmp))?;
    drop(vmdk);
    o.commit()?;
    Ok(OvaReport {
        file_size,
        disk_size,
        members,
    })
}
