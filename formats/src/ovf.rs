//! The OVF descriptor of an OVA and the virtual-hardware profiles it can declare.
//!
//! Why it exists: the disk inside an OVA is the same for every hypervisor, but the devices the
//! descriptor declares decide what the importer builds, and each ecosystem reads a different
//! subset of OVF. A [`VmProfile`] chooses the whole set at once (disk controller, NIC, the VMDK
//! `ddb.adapterType`, `VirtualSystemType`, OS ids, how the firmware is said), so the parts
//! never disagree. Facts relied on, from the importers' own parsers:
//! - **virt-v2v** (`input/OVF.ml`, libguestfs/virt-v2v) maps a disk's parent controller by
//!   `ResourceType` only: 5 IDE, 6 SCSI, 20 SATA (anything else: a warning, no bus); the NIC
//!   model is `ResourceSubType` (`E1000` → e1000, any other lowercased, so `virtio` is its own
//!   name for virtio-net); the firmware is `vmw:Config firmware=efi|bios`; `VirtualSystemType`
//!   is not read (virt-v2v 2.2 reports BIOS when `vmw:Config` is absent, as seen here).
//!   **Proxmox** (`PVE/GuestImport/OVF.pm`, proxmox/pve-storage) maps 5/6/20 to
//!   ide/scsi/sata, takes the firmware from the same `vmw:Config`, the OS from the CIM id
//!   (101 → `l26`), needs `HostResource` as `ovf:/disk/ID`, does not read
//!   `VirtualSystemType` either, and keeps only the NIC models e1000, e1000e and vmxnet3 (the
//!   version read turns `virtio` into e1000; the disk still lands on SCSI). There is no CIM `ResourceType` for virtio-blk, so a virtio
//!   disk that importers can place is a `virtio-scsi` controller (libvirt's model name) of type
//!   6; KVM importers build virtio-blk or virtio-scsi for the converted guest themselves.
//! - **VMware** requires `VirtualSystemType` `vmx-NN` ("Missing/unsupported hardware family"
//!   otherwise, formats.md §1.3) and takes the firmware from `vmw:Config`. The VMware profile
//!   is the descriptor this crate always wrote (LSI Logic, the controller VMware gives
//!   `otherLinux64Guest` and VirtualBox also emulates; VMXNET3), byte for byte.
//! - **VirtualBox** (`ApplianceImplExport.cpp` and `ovfreader.cpp`, VirtualBox/virtualbox)
//!   writes OVF 1.0 as `ovf:version="1.0" xml:lang="en-US"` with the `vbox` namespace,
//!   `VirtualSystemType` `virtualbox-2.2`, a SATA controller as type 20 / `AHCI` (Caption and
//!   ElementName `sataController0`), memory in `MegaBytes`, items with Caption, Description
//!   and ElementName in schema order, a NAT network, the E1000 NIC as `E1000`, the guest type
//!   in `vbox:OSType` and `vbox:uuid` on the disk; the firmware lives only in its `vbox:Machine`
//!   section, which this writer leaves out (the standard form is what every other reader
//!   understands, and VirtualBox imports it too). VirtualBox is not installable on Debian 12,
//!   so that form is checked against the structure its exporter writes and against virt-v2v.
//!
//! Each renderer writes elements in schema order and escapes nothing: every value is either a
//! constant or a name or number the OVA packager has validated to be free of XML
//! metacharacters ([`VirtualSystem`]).

use std::fmt;
use std::str::FromStr;

use crate::error::FormatError;
use crate::vmdk::AdapterType;

/// Which hypervisor family the OVA's virtual hardware is chosen for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VmProfile {
    /// VMware (ESXi, Workstation): LSI Logic SCSI, VMXNET3, `vmx-NN`.
    #[default]
    Vmware,
    /// KVM-based (oVirt, OpenStack, Proxmox, libvirt through virt-v2v): virtio-scsi, virtio-net.
    Kvm,
    /// VirtualBox: SATA AHCI, Intel E1000, `virtualbox-2.2`, firmware by BIOS.
    Virtualbox,
}

impl VmProfile {
    /// Every profile, in `--help` order.
    pub const ALL: [VmProfile; 3] = [VmProfile::Vmware, VmProfile::Kvm, VmProfile::Virtualbox];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            VmProfile::Vmware => "vmware",
            VmProfile::Kvm => "kvm",
            VmProfile::Virtualbox => "virtualbox",
        }
    }

    /// The devices this profile declares.
    pub fn hardware(self) -> &'static VirtualHardware {
        match self {
            VmProfile::Vmware => &VMWARE,
            VmProfile::Kvm => &KVM,
            VmProfile::Virtualbox => &VIRTUALBOX,
        }
    }

    /// Whether the profile can say "UEFI" in its descriptor: VirtualBox reads the firmware
    /// only from its own `vbox:Machine` section, which the standard form leaves out.
    pub fn declares_firmware(self) -> bool {
        self != VmProfile::Virtualbox
    }
}

impl fmt::Display for VmProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for VmProfile {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, FormatError> {
        VmProfile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                FormatError::option(
                    "ova",
                    format!(
                        "unknown vm profile `{s}` (one of {})",
                        VmProfile::ALL.map(|p| p.name()).join(", ")
                    ),
                )
            })
    }
}

/// A disk controller as an OVF item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Controller {
    /// CIM `ResourceType`: 5 IDE, 6 parallel SCSI HBA, 20 other storage device (SATA).
    pub resource_type: u32,
    /// `ResourceSubType`: the controller model.
    pub subtype: &'static str,
    /// `ElementName` (and VirtualBox's `Caption`).
    pub name: &'static str,
    /// `Description`.
    pub description: &'static str,
}

/// An Ethernet adapter as an OVF item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nic {
    /// `ResourceSubType`: the NIC model.
    pub subtype: &'static str,
    /// Its human name in `Description` (`<name> ethernet adapter on "<network>"`).
    pub label: &'static str,
}

/// The virtual hardware a profile declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualHardware {
    /// `vssd:VirtualSystemType`; `None`: VMware's `vmx-NN` of [`VirtualSystem::hardware_version`].
    pub system_type: Option<&'static str>,
    /// The controller the disk hangs on.
    pub controller: Controller,
    /// The one NIC.
    pub nic: Nic,
    /// The VMDK descriptor's `ddb.adapterType` (`ide` is what VMware and VirtualBox write for
    /// ATA and SATA disks; qemu accepts ide, buslogic, lsilogic and legacyESX).
    pub adapter: AdapterType,
    /// The logical network the NIC is on.
    pub network: &'static str,
}

const VMWARE: VirtualHardware = VirtualHardware {
    system_type: None,
    controller: Controller {
        resource_type: 6,
        subtype: "lsilogic",
        name: "SCSI Controller 0",
        description: "SCSI Controller",
    },
    nic: Nic {
        subtype: "VmxNet3",
        label: "VmxNet3",
    },
    adapter: AdapterType::LsiLogic,
    network: "VM Network",
};

const KVM: VirtualHardware = VirtualHardware {
    system_type: Some("kvm"),
    controller: Controller {
        resource_type: 6,
        subtype: "virtio-scsi",
        name: "SCSI Controller 0",
        description: "VirtIO SCSI Controller",
    },
    nic: Nic {
        subtype: "virtio",
        label: "VirtIO",
    },
    adapter: AdapterType::LsiLogic,
    network: "VM Network",
};

const VIRTUALBOX: VirtualHardware = VirtualHardware {
    system_type: Some("virtualbox-2.2"),
    controller: Controller {
        resource_type: 20,
        subtype: "AHCI",
        name: "sataController0",
        description: "SATA Controller",
    },
    nic: Nic {
        subtype: "E1000",
        label: "E1000",
    },
    adapter: AdapterType::Ide,
    network: "NAT",
};

/// The virtual machine a descriptor describes (its values validated by the OVA packager: names
/// of `[A-Za-z0-9._-]`, OS types of `[A-Za-z0-9_]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualSystem<'a> {
    /// The hardware profile.
    pub profile: VmProfile,
    /// VM name (`ovf:id`, `Name`, `VirtualSystemIdentifier`).
    pub name: &'a str,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// VMware hardware version (`vmx-NN`; VMware profile).
    pub hardware_version: u32,
    /// Declare UEFI (`vmw:Config firmware=efi`) instead of BIOS (profiles that declare firmware).
    pub uefi: bool,
    /// CIM operating system id.
    pub cim_os_id: u32,
    /// VMware guest id (`vmw:osType`; VMware profile).
    pub vmware_os_type: &'a str,
    /// VirtualBox guest type (`vbox:OSType`; VirtualBox profile).
    pub virtualbox_os_type: &'a str,
    /// The disk's UUID (the VMDK's `ddb.uuid`; VirtualBox's `vbox:uuid`).
    pub disk_uuid: uuid::Uuid,
}

/// The disk member a descriptor refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskRef<'a> {
    /// Member name (`NAME-disk1.vmdk`).
    pub name: &'a str,
    /// Exact byte size of the member (`ovf:size`).
    pub size: u64,
    /// Virtual size of the disk in bytes (`ovf:capacity`).
    pub capacity: u64,
}

/// The OVF 1.x descriptor of `vm.profile` for one disk.
pub fn descriptor(vm: &VirtualSystem<'_>, disk: &DiskRef<'_>) -> String {
    match vm.profile {
        VmProfile::Vmware | VmProfile::Kvm => dmtf(vm, disk),
        VmProfile::Virtualbox => virtualbox(vm, disk),
    }
}

/// `vssd:VirtualSystemType`: the profile's, or VMware's hardware family of the options.
fn system_type(vm: &VirtualSystem<'_>) -> String {
    match vm.profile.hardware().system_type {
        Some(t) => t.to_string(),
        None => format!("vmx-{:02}", vm.hardware_version),
    }
}

/// The DSP0243 form VMware's tools write, with VMware's firmware and guest-type extensions
/// (read by virt-v2v and Proxmox as well).
fn dmtf(vm: &VirtualSystem<'_>, disk: &DiskRef<'_>) -> String {
    let hw = vm.profile.hardware();
    let name = vm.name;
    let firmware = if vm.uefi { "efi" } else { "bios" };
    let system_type = system_type(vm);
    let os = match vm.profile {
        VmProfile::Vmware => format!(
            r#"ovf:id="{}" vmw:osType="{}""#,
            vm.cim_os_id, vm.vmware_os_type
        ),
        _ => format!(r#"ovf:id="{}""#, vm.cim_os_id),
    };
    let (c, nic, net) = (&hw.controller, &hw.nic, hw.network);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{href}" ovf:id="file1" ovf:size="{size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="{net}">
      <Description>The {net} network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection {os}>
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>{system_type}</vssd:VirtualSystemType>
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
        <rasd:Description>{c_desc}</rasd:Description>
        <rasd:ElementName>{c_name}</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>{c_sub}</rasd:ResourceSubType>
        <rasd:ResourceType>{c_type}</rasd:ResourceType>
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
        <rasd:Connection>{net}</rasd:Connection>
        <rasd:Description>{nic_label} ethernet adapter on "{net}"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>{nic_sub}</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="{firmware}"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#,
        href = disk.name,
        size = disk.size,
        capacity = disk.capacity,
        cpus = vm.cpus,
        mem = vm.memory_mib,
        c_desc = c.description,
        c_name = c.name,
        c_sub = c.subtype,
        c_type = c.resource_type,
        nic_label = nic.label,
        nic_sub = nic.subtype,
    )
}

/// The standard OVF 1.0 form `VBoxManage export` writes, without its `vbox:Machine` section.
/// Instance ids follow VirtualBox's order (devices first, then the disk and the NIC); the disk's
/// `vbox:uuid` is the VMDK's `ddb.uuid`, so VirtualBox registers the medium under the id the
/// disk itself carries.
fn virtualbox(vm: &VirtualSystem<'_>, disk: &DiskRef<'_>) -> String {
    let hw = vm.profile.hardware();
    let name = vm.name;
    let (c, nic, net) = (&hw.controller, &hw.nic, hw.network);
    let uuid = vm.disk_uuid;
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vbox="http://www.virtualbox.org/ovf/machine">
  <References>
    <File ovf:id="file1" ovf:href="{href}" ovf:size="{size}"/>
  </References>
  <DiskSection>
    <Info>List of the virtual disks used in the package</Info>
    <Disk ovf:capacity="{capacity}" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" vbox:uuid="{uuid}"/>
  </DiskSection>
  <NetworkSection>
    <Info>Logical networks used in the package</Info>
    <Network ovf:name="{net}">
      <Description>Logical network used by this appliance.</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="{os_id}">
      <Info>The kind of installed guest operating system</Info>
      <Description>{vbox_os}</Description>
      <vbox:OSType ovf:required="false">{vbox_os}</vbox:OSType>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements for a virtual machine</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>{system_type}</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:Caption>{cpus} virtual CPU</rasd:Caption>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits>
        <rasd:Caption>{mem} MB of memory</rasd:Caption>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{mem} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{mem}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Caption>{c_name}</rasd:Caption>
        <rasd:Description>{c_desc}</rasd:Description>
        <rasd:ElementName>{c_name}</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>{c_sub}</rasd:ResourceSubType>
        <rasd:ResourceType>{c_type}</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:Caption>disk1</rasd:Caption>
        <rasd:Description>Disk Image</rasd:Description>
        <rasd:ElementName>disk1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Caption>Ethernet adapter on '{net}'</rasd:Caption>
        <rasd:Connection>{net}</rasd:Connection>
        <rasd:ElementName>Ethernet adapter on '{net}'</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>{nic_sub}</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"#,
        href = disk.name,
        size = disk.size,
        capacity = disk.capacity,
        os_id = vm.cim_os_id,
        vbox_os = vm.virtualbox_os_type,
        system_type = system_type(vm),
        cpus = vm.cpus,
        mem = vm.memory_mib,
        c_desc = c.description,
        c_name = c.name,
        c_sub = c.subtype,
        c_type = c.resource_type,
        nic_sub = nic.subtype,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_by_name_and_reject_others() {
        for p in VmProfile::ALL {
            assert_eq!(p.name().parse::<VmProfile>().ok(), Some(p));
            assert_eq!(p.to_string(), p.name());
        }
        let e = "hyperv".parse::<VmProfile>().unwrap_err().to_string();
        assert!(e.contains("unknown vm profile `hyperv`"), "{e}");
        assert!(e.contains("vmware, kvm, virtualbox"), "{e}");
        assert_eq!(VmProfile::default(), VmProfile::Vmware);
    }

    #[test]
    fn each_profile_names_its_own_devices() {
        let disk = DiskRef {
            name: "x-disk1.vmdk",
            size: 1024,
            capacity: 1 << 20,
        };
        for p in VmProfile::ALL {
            let vm = VirtualSystem {
                profile: p,
                name: "x",
                cpus: 1,
                memory_mib: 64,
                hardware_version: 14,
                uefi: p.declares_firmware(),
                cim_os_id: 101,
                vmware_os_type: "otherLinux64Guest",
                virtualbox_os_type: "Linux_64",
                disk_uuid: uuid::Uuid::nil(),
            };
            let ovf = descriptor(&vm, &disk);
            let hw = p.hardware();
            assert!(ovf.contains(&format!(
                "<rasd:ResourceSubType>{}</rasd:ResourceSubType>",
                hw.controller.subtype
            )));
            assert!(ovf.contains(&format!(
                "<rasd:ResourceSubType>{}</rasd:ResourceSubType>",
                hw.nic.subtype
            )));
            assert_eq!(ovf.contains("vmw:Config"), p.declares_firmware(), "{p}");
            assert_eq!(ovf.contains("vbox:"), p == VmProfile::Virtualbox, "{p}");
        }
    }
}
