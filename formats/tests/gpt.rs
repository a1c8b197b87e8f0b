//! GPT layouts checked by sfdisk and sgdisk.

mod common;

use chasi_formats::disk::DiskSource;
use chasi_formats::gpt::{GptLayout, PartitionSpec, ESP_TYPE, ROOT_X86_64_TYPE};
use chasi_formats::raw::write_raw;
use common::*;

fn specs(esp: u64, root: Option<u64>) -> Vec<PartitionSpec> {
    vec![
        PartitionSpec {
            name: "ESP".into(),
            type_guid: ESP_TYPE,
            size: Some(esp),
        },
        PartitionSpec {
            name: "root".into(),
            type_guid: ROOT_X86_64_TYPE,
            size: root,
        },
    ]
}

#[test]
fn esp_and_root_validated_by_sfdisk_and_sgdisk() {
    require("sfdisk", "fdisk");
    require("sgdisk", "gdisk");
    let dir = tempfile::tempdir().unwrap();
    let esp = dir.path().join("esp.img");
    let root = dir.path().join("root.img");
    std::fs::write(&esp, text(3 << 20)).unwrap();
    std::fs::write(&root, noise(5 << 20, 9)).unwrap();
    let parts = specs(4 << 20, Some(6 << 20));
    let size = GptLayout::required_size(&parts).unwrap();
    let layout = GptLayout::new(size, b"sha256:feed", &parts).unwrap();
    let disk = layout.assemble(&[(0, &esp), (1, &root)]).unwrap();
    let raw = dir.path().join("disk.raw");
    write_raw(&disk, &raw).unwrap();

    let dump = run_ok("sfdisk", &["--dump", raw.to_str().unwrap()]);
    assert!(dump.contains("label: gpt"), "{dump}");
    assert!(
        dump.contains(&format!(
            "label-id: {}",
            layout.disk_guid.to_string().to_uppercase()
        )),
        "{dump}"
    );
    let p = &layout.partitions;
    for (i, part) in p.iter().enumerate() {
        let line = dump
            .lines()
            .find(|l| l.starts_with(&format!("{}{} :", raw.display(), i + 1)))
            .unwrap_or_else(|| panic!("partition {} missing from\n{dump}", i + 1));
        let field = |k: &str| {
            line.split([':', ','])
                .filter_map(|f| f.split_once('='))
                .find(|(n, _)| n.trim() == k)
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {k} in {line}"))
        };
        assert_eq!(field("start"), part.first_lba.to_string(), "{line}");
        assert_eq!(
            field("size"),
            (part.last_lba - part.first_lba + 1).to_string(),
            "{line}"
        );
        assert!(
            line.contains(&part.type_guid.to_string().to_uppercase()),
            "{line}"
        );
        assert!(
            line.contains(&part.guid.to_string().to_uppercase()),
            "{line}"
        );
        assert!(line.contains(&format!("name=\"{}\"", part.name)), "{line}");
    }
    let v = run_ok("sgdisk", &["-v", raw.to_str().unwrap()]);
    assert!(v.contains("No problems found"), "{v}");

    // Partition contents are where the table says.
    let mut b = vec![0u8; 4096];
    disk.read_at(p[1].first_lba * 512, &mut b).unwrap();
    assert_eq!(&b[..], &noise(4096, 9)[..]);

    // Same seed, same bytes; another seed, other GUIDs.
    let again = GptLayout::new(size, b"sha256:feed", &parts).unwrap();
    assert_eq!(again.primary_bytes(), layout.primary_bytes());
    assert_eq!(again.backup_bytes(), layout.backup_bytes());
    let other = GptLayout::new(size, b"sha256:beef", &parts).unwrap();
    assert_ne!(other.disk_guid, layout.disk_guid);
}

#[test]
fn root_takes_the_rest_of_a_big_sparse_disk() {
    require("sgdisk", "gdisk");
    let dir = tempfile::tempdir().unwrap();
    let layout = GptLayout::new(3 << 30, b"x", &specs(100 << 20, None)).unwrap();
    let raw = dir.path().join("big.raw");
    write_raw(&layout.empty_disk().unwrap(), &raw).unwrap();
    let v = run_ok("sgdisk", &["-v", raw.to_str().unwrap()]);
    assert!(v.contains("No problems found"), "{v}");
    let p = run_ok("sgdisk", &["-p", raw.to_str().unwrap()]);
    assert!(p.contains("EF00") && p.contains("8304"), "{p}");
}

#[test]
fn content_larger_than_partition_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.img");
    std::fs::write(&f, vec![1u8; (2 << 20) + 1]).unwrap();
    let parts = specs(2 << 20, Some(1 << 20));
    let layout = GptLayout::new(GptLayout::required_size(&parts).unwrap(), b"s", &parts).unwrap();
    let e = layout.assemble(&[(0, &f)]).unwrap_err();
    assert!(e.to_string().contains("does not fit partition"), "{e}");
}
