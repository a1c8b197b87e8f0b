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
//! - `vssd:VirtualSystemType` is a VMware hardware family `vmx-NN` (a VirtualBox-only type
//!   makes vSphere fail with "Missing/unsupported hardware family");
//! - RASD items carry InstanceID, ResourceType and ElementName (elements in schema order):
//!   CPU (3), memory (4, `byte * 2^20`), LSI Logic SCSI controller (6), disk (17), and a
//!   VmxNet3 NIC (10) on a `NetworkSection` network; UEFI is the
//!   `vmw:Config firmware=efi` entry;
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
use crate::ustar::UstarWriter;
use crate::vmdk::{write_vmdk_stream, AdapterType, VmdkOptions};
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
    /// VMware virtual hardware version (`vmx-NN`), 4–21; default 14 (ESXi 6.7 and later).
    pub hardware_version: u32,
    /// Boot with UEFI (`firmware=efi`) instead of BIOS.
    pub uefi: bool,
    /// VMware guest OS id, e.g. `otherLinux64Guest`.
    pub vmware_os_type: String,
    /// CIM operating system id matching it (101 = 64-bit Linux).
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
            hardware_version: 14,
            uefi: true,
            vmware_os_type: "otherLinux64Guest".into(),
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
        Ok(())
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
        adapter: AdapterType::LsiLogic,
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

    let ovf = descriptor(opts, &disk_name, disk_size, src.size());
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

/// The OVF 1.x descriptor for one disk of `capacity` bytes stored as `disk_name`
/// (`disk_size` bytes).
pub fn descriptor(opts: &OvaOptions, disk_name: &str, disk_size: u64, capacity: u64) -> String {
    let name = &opts.vm_name; // validated: no XML metacharacters
    let firmware = if opts.uefi { "efi" } else { "bios" };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{disk_name}" ovf:id="file1" ovf:size="{disk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="{os_id}" vmw:osType="{os_type}">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-{hw:02}</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{mem}MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{mem}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>VmxNet3 ethernet adapter on "VM Network"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="{firmware}"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#,
        os_id = opts.cim_os_id,
        os_type = opts.vmware_os_type,
        hw = opts.hardware_version,
        cpus = opts.cpus,
        mem = opts.memory_mib,
    )
}
