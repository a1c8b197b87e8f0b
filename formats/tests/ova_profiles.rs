//! OVA virtual-hardware profiles, each checked by the tools of its ecosystem that install
//! here: virt-v2v (the OVA importer behind oVirt, OpenStack and libvirt) must report the bus
//! and NIC model each profile declares; the descriptor, read back as namespaced XML
//! (`roxmltree`), must name the devices, wire the disk to its controller and agree with the
//! VMDK's `ddb.adapterType`; the manifest digests must verify; QEMU must start the KVM
//! profile's devices on the OVA's disk converted by `qemu-img`. VirtualBox is not installable
//! on Debian 12: its profile is held to the OVF 1.0 structure VirtualBox's own exporter writes
//! (`ApplianceImplExport.cpp`: `virtualbox-2.2`, SATA `AHCI` controller, `E1000`, Caption and
//! ElementName on every item, memory in `MegaBytes`, `vbox:OSType`, `vbox:uuid`) and to virt-v2v.
//! The expected values are written out here, not taken from the writer's tables, so a profile
//! that were ignored (or a table that drifted) fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use chasi_formats::ova::{write_ova, OvaOptions};
use chasi_formats::ovf::VmProfile;
use common::*;
use roxmltree::{Document, Node};
use sha2::{Digest, Sha256};

const OVF: &str = "http://schemas.dmtf.org/ovf/envelope/1";
const RASD: &str =
    "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData";
const VSSD: &str = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData";
const VMW: &str = "http://www.vmware.com/schema/ovf";
const VBOX: &str = "http://www.virtualbox.org/ovf/machine";

/// What each profile must declare, and what virt-v2v must make of it.
struct Expect {
    system_type: &'static str,
    controller_type: &'static str,
    controller_subtype: &'static str,
    nic_subtype: &'static str,
    network: &'static str,
    vmdk_adapter: &'static str,
    firmware: Option<&'static str>,
    v2v_bus: &'static str,
    v2v_nic: &'static str,
}

fn expect(p: VmProfile) -> Expect {
    match p {
        VmProfile::Vmware => Expect {
            system_type: "vmx-14",
            controller_type: "6",
            controller_subtype: "lsilogic",
            nic_subtype: "VmxNet3",
            network: "VM Network",
            vmdk_adapter: "lsilogic",
            firmware: Some("efi"),
            v2v_bus: "scsi",
            v2v_nic: "vmxnet3",
        },
        VmProfile::Kvm => Expect {
            system_type: "kvm",
            controller_type: "6",
            controller_subtype: "virtio-scsi",
            nic_subtype: "virtio",
            network: "VM Network",
            vmdk_adapter: "lsilogic",
            firmware: Some("efi"),
            v2v_bus: "scsi",
            v2v_nic: "virtio",
        },
        VmProfile::Virtualbox => Expect {
            system_type: "virtualbox-2.2",
            controller_type: "20",
            controller_subtype: "AHCI",
            nic_subtype: "E1000",
            network: "NAT",
            vmdk_adapter: "ide",
            firmware: None,
            v2v_bus: "sata",
            v2v_nic: "e1000",
        },
    }
}

fn options(p: VmProfile) -> OvaOptions {
    OvaOptions {
        vm_name: format!("prof-{}", p.name()),
        cpus: 2,
        memory_mib: 1024,
        profile: p,
        uefi: p != VmProfile::Virtualbox,
        seed: b"sha256:profiles".to_vec(),
        ..Default::default()
    }
}

fn build(dir: &Path, p: VmProfile) -> PathBuf {
    let out = dir.join(format!("{}.ova", p.name()));
    write_ova(&mixed_disk(8 << 20), &out, &options(p)).unwrap();
    out
}

/// The members of an OVA, the manifest verified against them.
struct Package {
    ovf: String,
    vmdk_name: String,
    vmdk: Vec<u8>,
}

fn unpack(bytes: &[u8]) -> Package {
    let ms = members(bytes);
    let data = |m: &Member| &bytes[m.data_at..m.data_at + m.size];
    let find = |suffix: &str| {
        ms.iter()
            .find(|m| m.name.ends_with(suffix))
            .unwrap_or_else(|| panic!("no {suffix} member"))
    };
    let (ovf, vmdk, mf) = (find(".ovf"), find(".vmdk"), find(".mf"));
    assert_eq!(ms[0].name, ovf.name, "the descriptor must come first");
    let manifest = String::from_utf8(data(mf).to_vec()).unwrap();
    let mut checked = Vec::new();
    for line in manifest.lines() {
        let (name, hex_digest) = line
            .strip_prefix("SHA256(")
            .and_then(|l| l.split_once(")= "))
            .unwrap_or_else(|| panic!("manifest line {line:?}"));
        let m = ms
            .iter()
            .find(|m| m.name == name)
            .expect("manifest names a member");
        assert_eq!(
            hex::encode(Sha256::digest(data(m))),
            hex_digest,
            "digest of {name}"
        );
        checked.push(name.to_string());
    }
    assert_eq!(checked, [ovf.name.clone(), vmdk.name.clone()]);
    Package {
        ovf: String::from_utf8(data(ovf).to_vec()).unwrap(),
        vmdk_name: vmdk.name.clone(),
        vmdk: data(vmdk).to_vec(),
    }
}

fn child<'a, 'i>(n: Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| {
        c.is_element() && c.tag_name().namespace() == Some(ns) && c.tag_name().name() == name
    })
}

fn text<'a>(n: Node<'a, '_>, ns: &str, name: &str) -> Option<&'a str> {
    child(n, ns, name).and_then(|c| c.text())
}

fn path<'a, 'i>(n: Node<'a, 'i>, steps: &[&str]) -> Node<'a, 'i> {
    steps.iter().fold(n, |n, s| {
        child(n, OVF, s).unwrap_or_else(|| panic!("no ovf:{s} under {:?}", n.tag_name()))
    })
}

/// The VMDK descriptor's value for `key` (the text at sector 1).
fn ddb(vmdk: &[u8], key: &str) -> String {
    let desc = String::from_utf8_lossy(&vmdk[512..512 * 21]);
    let line = desc
        .lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in the VMDK descriptor"));
    line.split('"').nth(1).unwrap().to_string()
}

/// Checks the descriptor of `p` as XML; returns the controller and NIC subtypes it declares.
fn check_descriptor(p: VmProfile, pkg: &Package) -> (String, String) {
    let e = expect(p);
    let doc = Document::parse(&pkg.ovf).unwrap_or_else(|err| panic!("{p}: not XML: {err}"));
    let env = doc.root_element();
    assert_eq!(env.tag_name().namespace(), Some(OVF));
    assert_eq!(env.tag_name().name(), "Envelope");
    let file = path(env, &["References", "File"]);
    assert_eq!(file.attribute((OVF, "href")), Some(pkg.vmdk_name.as_str()));
    assert_eq!(file.attribute((OVF, "id")), Some("file1"));
    assert_eq!(
        file.attribute((OVF, "size")),
        Some(pkg.vmdk.len().to_string().as_str()),
        "{p}: ovf:size"
    );
    let disk = path(env, &["DiskSection", "Disk"]);
    assert_eq!(disk.attribute((OVF, "diskId")), Some("vmdisk1"));
    assert_eq!(disk.attribute((OVF, "fileRef")), Some("file1"));
    assert_eq!(disk.attribute((OVF, "capacity")), Some("8388608"));
    let network = path(env, &["NetworkSection", "Network"]);
    assert_eq!(network.attribute((OVF, "name")), Some(e.network));

    let vhs = path(env, &["VirtualSystem", "VirtualHardwareSection"]);
    let system = path(vhs, &["System"]);
    assert_eq!(
        text(system, VSSD, "VirtualSystemType"),
        Some(e.system_type),
        "{p}"
    );
    let items: Vec<Node> = vhs
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "Item")
        .collect();
    for item in &items {
        // RASD elements in schema (alphabetical) order; VMware requires it.
        let names: Vec<&str> = item
            .children()
            .filter(|c| c.is_element())
            .map(|c| c.tag_name().name())
            .collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "{p}: item children out of schema order");
        for required in ["ElementName", "InstanceID", "ResourceType"] {
            assert!(
                text(*item, RASD, required).is_some(),
                "{p}: item without {required}"
            );
        }
    }
    let of_type = |t: &str| -> Vec<Node> {
        items
            .iter()
            .copied()
            .filter(|i| text(*i, RASD, "ResourceType") == Some(t))
            .collect()
    };
    assert_eq!(text(of_type("3")[0], RASD, "VirtualQuantity"), Some("2"));
    assert_eq!(text(of_type("4")[0], RASD, "VirtualQuantity"), Some("1024"));
    let disks = of_type("17");
    assert_eq!(disks.len(), 1);
    assert_eq!(
        text(disks[0], RASD, "HostResource"),
        Some("ovf:/disk/vmdisk1")
    );
    // The disk hangs on the controller the profile chose.
    let parent = text(disks[0], RASD, "Parent").expect("disk has a parent");
    let controller = items
        .iter()
        .find(|i| text(**i, RASD, "InstanceID") == Some(parent))
        .expect("the parent controller is declared");
    assert_eq!(
        text(*controller, RASD, "ResourceType"),
        Some(e.controller_type),
        "{p}"
    );
    let controller_subtype = text(*controller, RASD, "ResourceSubType")
        .unwrap()
        .to_string();
    assert_eq!(controller_subtype, e.controller_subtype, "{p}");
    let nics = of_type("10");
    assert_eq!(nics.len(), 1);
    let nic_subtype = text(nics[0], RASD, "ResourceSubType").unwrap().to_string();
    assert_eq!(nic_subtype, e.nic_subtype, "{p}");
    assert_eq!(text(nics[0], RASD, "Connection"), Some(e.network));
    let firmware = vhs
        .children()
        .find(|c| {
            c.tag_name().namespace() == Some(VMW)
                && c.tag_name().name() == "Config"
                && c.attribute((VMW, "key")) == Some("firmware")
        })
        .and_then(|c| c.attribute((VMW, "value")));
    assert_eq!(firmware, e.firmware, "{p}: firmware");
    assert_eq!(ddb(&pkg.vmdk, "ddb.adapterType"), e.vmdk_adapter, "{p}");

    let os = path(env, &["VirtualSystem", "OperatingSystemSection"]);
    assert_eq!(os.attribute((OVF, "id")), Some("101"));
    assert_eq!(
        os.attribute((VMW, "osType")),
        (p == VmProfile::Vmware).then_some("otherLinux64Guest")
    );
    if p == VmProfile::Virtualbox {
        check_virtualbox_form(env, &items, os, disk, &pkg.vmdk);
    } else {
        assert!(
            !pkg.ovf.contains(VBOX),
            "{p}: vbox namespace outside the VirtualBox profile"
        );
    }
    (controller_subtype, nic_subtype)
}

/// What VirtualBox's exporter writes beyond the common structure.
fn check_virtualbox_form(env: Node, items: &[Node], os: Node, disk: Node, vmdk: &[u8]) {
    assert_eq!(env.attribute((OVF, "version")), Some("1.0"));
    assert_eq!(
        env.attribute(("http://www.w3.org/XML/1998/namespace", "lang")),
        Some("en-US")
    );
    assert_eq!(text(os, VBOX, "OSType"), Some("Linux_64"));
    for item in items {
        assert_eq!(
            text(*item, RASD, "Caption"),
            text(*item, RASD, "ElementName"),
            "VirtualBox writes the Caption as the ElementName"
        );
    }
    let memory = items
        .iter()
        .find(|i| text(**i, RASD, "ResourceType") == Some("4"))
        .unwrap();
    assert_eq!(text(*memory, RASD, "AllocationUnits"), Some("MegaBytes"));
    // The medium's UUID is the one the VMDK carries (ddb.uuid: 16 hex bytes, a dash after 8).
    let ddb_uuid: String = ddb(vmdk, "ddb.uuid").replace([' ', '-'], "");
    let vbox_uuid = disk
        .attribute((VBOX, "uuid"))
        .expect("vbox:uuid")
        .replace('-', "");
    assert_eq!(vbox_uuid, ddb_uuid);
    let machine = env
        .descendants()
        .any(|n| n.tag_name().namespace() == Some(VBOX) && n.tag_name().name() == "Machine");
    assert!(!machine, "the standard form carries no vbox:Machine");
}

#[test]
fn descriptors_declare_each_profiles_devices() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for p in VmProfile::ALL {
        let ova = build(dir.path(), p);
        let bytes = std::fs::read(&ova).unwrap();
        let pkg = unpack(&bytes);
        seen.push(check_descriptor(p, &pkg));
        // The disk is the same whatever the hardware.
        let vmdk = dir.path().join(format!("{}.vmdk", p.name()));
        std::fs::write(&vmdk, &pkg.vmdk).unwrap();
        let raw = dir.path().join("ref.raw");
        chasi_formats::raw::write_raw(&mixed_disk(8 << 20), &raw).unwrap();
        assert_same("raw", &raw, "vmdk", &vmdk);
        // Same inputs, same bytes, per profile.
        let again = dir.path().join("again.ova");
        write_ova(&mixed_disk(8 << 20), &again, &options(p)).unwrap();
        assert!(
            bytes == std::fs::read(&again).unwrap(),
            "{p}: not reproducible"
        );
    }
    seen.dedup();
    assert_eq!(
        seen.len(),
        3,
        "every profile declares its own devices: {seen:?}"
    );
}

fn v2v(ova: &Path) -> String {
    require("virt-v2v", "virt-v2v");
    let o = Command::new("virt-v2v")
        .args(["-i", "ova", ova.to_str().unwrap(), "--print-source"])
        .env("LIBGUESTFS_BACKEND", "direct")
        .output()
        .expect("run virt-v2v");
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "virt-v2v rejected {}:\n{out}",
        ova.display()
    );
    out
}

#[test]
fn virt_v2v_reports_each_profiles_bus_and_nic() {
    let dir = tempfile::tempdir().unwrap();
    for p in VmProfile::ALL {
        let e = expect(p);
        let out = v2v(&build(dir.path(), p));
        assert!(out.contains(&format!("prof-{}", p.name())), "{p}:\n{out}");
        assert!(out.contains("nr vCPUs: 2"), "{p}:\n{out}");
        assert!(out.contains("memory: 1073741824 (bytes)"), "{p}:\n{out}");
        let disk_line = out
            .lines()
            .find(|l| l.trim_start().starts_with("0 ["))
            .unwrap_or_else(|| panic!("{p}: no disk line:\n{out}"));
        assert_eq!(
            disk_line.trim(),
            format!("0 [{}]", e.v2v_bus),
            "{p}:\n{out}"
        );
        let nic = format!("\"{}\" [{}]", e.network, e.v2v_nic);
        assert!(out.contains(&nic), "{p}: no NIC {nic}:\n{out}");
        // Without vmw:Config virt-v2v 2.2 assumes BIOS, which is what VirtualBox starts.
        let firmware = match e.firmware {
            Some(_) => "firmware: uefi",
            None => "firmware: bios",
        };
        assert!(out.contains(firmware), "{p}: no `{firmware}`:\n{out}");
    }
}

/// QEMU's device for an OVF controller or NIC subtype, as KVM importers map them.
fn qemu_device(subtype: &str) -> &'static str {
    match subtype {
        "virtio-scsi" => "virtio-scsi-pci",
        "virtio" => "virtio-net-pci",
        "lsilogic" => "lsi53c895a",
        "AHCI" => "ahci",
        "E1000" => "e1000",
        "VmxNet3" => "vmxnet3",
        other => panic!("no QEMU device for {other}"),
    }
}

#[test]
fn kvm_profile_devices_start_in_qemu() {
    require("qemu-img", "qemu-utils");
    require("qemu-system-x86_64", "qemu-system-x86");
    let dir = tempfile::tempdir().unwrap();
    let pkg = unpack(&std::fs::read(build(dir.path(), VmProfile::Kvm)).unwrap());
    let (controller, nic) = check_descriptor(VmProfile::Kvm, &pkg);
    let (controller, nic) = (qemu_device(&controller), qemu_device(&nic));
    assert_eq!((controller, nic), ("virtio-scsi-pci", "virtio-net-pci"));
    let vmdk = dir.path().join("kvm.vmdk");
    std::fs::write(&vmdk, &pkg.vmdk).unwrap();
    let qcow2 = dir.path().join("kvm.qcow2");
    let (v, q) = (vmdk.to_str().unwrap(), qcow2.to_str().unwrap());
    run_ok("qemu-img", &["convert", "-f", "vmdk", "-O", "qcow2", v, q]);
    let info = run_ok("qemu-img", &["info", "--output=json", q]);
    assert!(info.contains("\"virtual-size\": 8388608"), "{info}");
    // No guest runs (-S): QEMU builds the machine with the declared devices, the disk on the
    // virtio-scsi bus, and answers the monitor.
    let drive = format!("file={q},format=qcow2,if=none,id=d0");
    let mut child = Command::new("timeout")
        .args([
            "60",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-nodefaults",
            "-display",
            "none",
        ])
        .args(["-S", "-monitor", "stdio", "-m", "128", "-drive", &drive])
        .args(["-device", &format!("{controller},id=c0")])
        .args(["-device", "scsi-hd,drive=d0,bus=c0.0"])
        .args(["-device", nic])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-x86_64");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"info qtree\ninfo block\nquit\n").unwrap();
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "qemu failed:\n{out}");
    for dev in [
        "dev: virtio-scsi-pci",
        "dev: scsi-hd",
        "dev: virtio-net-pci",
    ] {
        assert!(out.contains(dev), "no `{dev}` in the machine:\n{out}");
    }
    let attached = out
        .lines()
        .any(|l| l.starts_with("d0 ") && l.ends_with(&format!(": {q} (qcow2)")));
    assert!(attached, "disk not attached:\n{out}");
    assert!(
        out.contains("drive = \"d0\""),
        "the disk is not on the controller:\n{out}"
    );
}

#[test]
fn virtualbox_profile_refuses_uefi() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.ova");
    let opts = OvaOptions {
        uefi: true,
        ..options(VmProfile::Virtualbox)
    };
    let e = write_ova(&mixed_disk(8 << 20), &out, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("virtualbox profile cannot declare UEFI"), "{e}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    let bad = OvaOptions {
        virtualbox_os_type: "Linux 64".into(),
        ..options(VmProfile::Virtualbox)
    };
    let e = write_ova(&mixed_disk(8 << 20), &out, &bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("virtualbox os type"), "{e}");
}
