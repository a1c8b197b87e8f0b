//! Deltas end to end through the library: made in one store, applied in a fresh store that holds only the
//! base (as a site's node does), the target comes back with the same digests, or nothing changes.

mod common;

use chasi_delta::{apply, create, ApplyOptions, DeltaError, DeltaOptions, Level, Method};
use chasi_layers::{Digest, Store};
use common::{copy_image, edit, image, noise, store, tar, Item};
use std::path::Path;

/// Version 1 of a small OS tree: a versioned module directory, a big binary, links, a whiteout, xattrs,
/// empty files, a long name.
fn v1() -> Vec<u8> {
    let long = format!("usr/share/{}/deep.txt", "n".repeat(120));
    tar(&[
        Item::Dir("etc"),
        Item::File("etc/os-release", b"VERSION=1\n".to_vec()),
        Item::File("etc/empty", Vec::new()),
        Item::Dir("lib/modules/6.1.0-55-amd64"),
        Item::File("lib/modules/6.1.0-55-amd64/a.ko", noise(1, 200_000)),
        Item::File("lib/modules/6.1.0-55-amd64/b.ko", noise(2, 150_000)),
        Item::File("usr/bin/big", noise(3, 600_000)),
        Item::File("usr/bin/same", noise(4, 300_000)),
        Item::File("usr/bin/tool", elf(6, 0)),
        Item::Hard("usr/bin/same-link", "usr/bin/same"),
        Item::Link("usr/bin/sh", "busybox"),
        Item::Xattr(
            "usr/bin/ping",
            noise(5, 40_000),
            "security.capability",
            b"\x01\x00\x00\x02",
        ),
        Item::File(".wh.gone", Vec::new()),
        Item::File(&long, b"long name\n".to_vec()),
    ])
}

/// Version 2: modules in a renamed directory with small changes, the big binary rebuilt, one file renamed,
/// a new file, one removed, the capability kept.
fn v2() -> Vec<u8> {
    let long = format!("usr/share/{}/deep.txt", "n".repeat(120));
    tar(&[
        Item::Dir("etc"),
        Item::File("etc/os-release", b"VERSION=2\n".to_vec()),
        Item::File("etc/empty", Vec::new()),
        Item::File("etc/new", noise(9, 5_000)),
        Item::Dir("lib/modules/6.1.0-56-amd64"),
        Item::File(
            "lib/modules/6.1.0-56-amd64/a.ko",
            edit(&noise(1, 200_000), 4096, 3),
        ),
        Item::File(
            "lib/modules/6.1.0-56-amd64/b.ko",
            edit(&noise(2, 150_000), 9000, 1),
        ),
        Item::File("usr/bin/big", edit(&noise(3, 600_000), 1000, 7)),
        Item::File("usr/bin/same-renamed", noise(4, 300_000)),
        Item::File("usr/bin/tool", elf(6, 1)),
        Item::Link("usr/bin/sh", "busybox"),
        Item::Xattr(
            "usr/bin/ping",
            noise(5, 40_000),
            "security.capability",
            b"\x01\x00\x00\x02",
        ),
        Item::File(".wh.gone", Vec::new()),
        Item::File(&long, b"long name\n".to_vec()),
    ])
}

/// An "executable": the ELF magic, then code whose 4-byte "addresses" all shift by `shift` in a rebuild,
/// the case bsdiff encodes and a zstd prefix cannot.
fn elf(seed: u64, shift: u32) -> Vec<u8> {
    let mut v = b"\x7fELF".to_vec();
    for (i, w) in noise(seed, 300_000).chunks(8).enumerate() {
        v.extend_from_slice(&w[..4]);
        v.extend_from_slice(&((i as u32 * 64) + shift * 4096).to_le_bytes());
    }
    v
}

struct Site {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    origin: Store,
    node: Store,
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    Site {
        origin: store(&path, "origin"),
        node: store(&path, "node"),
        dir: path,
        _dir: dir,
    }
}

fn delta(s: &Site, from: &str, to: &str, opts: &DeltaOptions) -> std::path::PathBuf {
    let out = s.dir.join("delta.tar");
    create(&s.origin, from, to, &out, opts).expect("create delta");
    out
}

fn layers_of(store: &Store, image: &str) -> Vec<Digest> {
    let root = chasi_images::resolve(store, image).unwrap();
    let img = chasi_images::Image::read(store, &root).unwrap();
    let mut out = Vec::new();
    for pm in &img.manifests {
        for l in pm.manifest.layers() {
            out.push(l.digest().to_string().parse().unwrap());
        }
    }
    out
}

/// The node ends with the target under its name, the same root digest, and every layer servable.
fn assert_applied(s: &Site, target: &Digest, name: &str) {
    assert_eq!(s.node.get_ref(name).unwrap(), *target);
    for blob in layers_of(&s.node, name) {
        let mut out = Vec::new();
        s.node
            .copy_blob(&blob, &mut out)
            .expect("layer blob is served");
        assert_eq!(Digest::of(&out), blob);
    }
    assert!(s.node.verify().unwrap().problems.is_empty());
}

#[test]
fn a_delta_rebuilds_the_target_bit_for_bit_in_a_store_holding_only_the_base() {
    let s = site();
    image(&s.origin, "os:1", &[("linux/amd64", vec![v1()])]);
    let target = image(&s.origin, "os:2", &[("linux/amd64", vec![v2()])]);
    copy_image(&s.origin, &s.node, "os:1", &s.dir);
    for level in [Level::Fast, Level::Release] {
        let opts = DeltaOptions {
            level,
            ..DeltaOptions::default()
        };
        let out = delta(&s, "os:1", "os:2", &opts);
        let i = chasi_delta::inspect(&out).unwrap();
        assert_eq!(i.layers.len(), 1);
        assert_eq!(i.layers[0].method, Method::Delta, "{i:?}");
        // Renamed versioned modules and the rebuilt binary are patched, not carried as literals.
        assert!(i.total.patched > 1_200_000, "{:?}", i.total);
        assert!(i.total.literal < 10_000, "{:?}", i.total);
        assert!(i.total.reused >= 300_000, "{:?}", i.total);
        assert!(
            i.delta_size * 5 < i.target_size,
            "{} vs {}",
            i.delta_size,
            i.target_size
        );
        let r = apply(&s.node, &out, &ApplyOptions::default()).expect("apply");
        assert_eq!(r.target, target);
        assert_eq!(r.rebuilt + r.present, 1);
        assert_applied(&s, &target, "os:2");
    }
}

#[test]
fn the_same_images_give_the_same_delta() {
    let s = site();
    image(&s.origin, "os:1", &[("linux/amd64", vec![v1()])]);
    image(&s.origin, "os:2", &[("linux/amd64", vec![v2()])]);
    let a = std::fs::read(delta(&s, "os:1", "os:2", &DeltaOptions::default())).unwrap();
    let b = std::fs::read(delta(&s, "os:1", "os:2", &DeltaOptions::default())).unwrap();
    assert!(a == b, "two runs wrote different deltas");
}

#[test]
fn multi_platform_images_with_more_and_fewer_layers() {
    let s = site();
    let base_a = tar(&[Item::File("a", noise(10, 70_000))]);
    let base_b = tar(&[Item::File("b", noise(11, 90_000))]);
    image(
        &s.origin,
        "m:1",
        &[
            ("linux/amd64", vec![base_a.clone(), v1()]),
            (
                "linux/arm64",
                vec![
                    base_b.clone(),
                    v1(),
                    tar(&[Item::File("x", noise(12, 30_000))]),
                ],
            ),
        ],
    );
    // amd64 gains a layer (its bottom one unchanged), arm64 loses one.
    let target = image(
        &s.origin,
        "m:2",
        &[
            (
                "linux/amd64",
                vec![base_a, v2(), tar(&[Item::File("extra", noise(13, 20_000))])],
            ),
            ("linux/arm64", vec![v2()]),
        ],
    );
    copy_image(&s.origin, &s.node, "m:1", &s.dir);
    let out = delta(&s, "m:1", "m:2", &DeltaOptions::default());
    let i = chasi_delta::inspect(&out).unwrap();
    assert_eq!(i.platforms, ["linux/amd64", "linux/arm64"]);
    assert!(i.layers.iter().any(|l| l.method == Method::Base));
    apply(&s.node, &out, &ApplyOptions::default()).expect("apply");
    assert_applied(&s, &target, "m:2");
}

#[test]
fn one_platform_of_a_multi_platform_target_is_tagged_as_its_manifest() {
    let s = site();
    image(
        &s.origin,
        "m:1",
        &[("linux/amd64", vec![v1()]), ("linux/arm64", vec![v1()])],
    );
    image(
        &s.origin,
        "m:2",
        &[("linux/amd64", vec![v2()]), ("linux/arm64", vec![v2()])],
    );
    copy_image(&s.origin, &s.node, "m:1", &s.dir);
    let opts = DeltaOptions {
        platforms: vec!["linux/arm64".parse().unwrap()],
        ..DeltaOptions::default()
    };
    let out = delta(&s, "m:1", "m:2", &opts);
    let r = apply(&s.node, &out, &ApplyOptions::default()).unwrap();
    let img = chasi_images::Image::read(&s.node, &r.target).unwrap();
    assert_eq!(img.platforms(), ["linux/arm64"]);
    assert_eq!(s.node.get_ref("m:2").unwrap(), r.target);
    let e = create(
        &s.origin,
        "m:1",
        "m:2",
        &s.dir.join("x"),
        &DeltaOptions {
            platforms: vec!["linux/s390x".parse().unwrap()],
            ..DeltaOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, DeltaError::NoPlatform { .. }), "{e}");
}

#[test]
fn a_small_memory_budget_splits_parts_and_still_rebuilds() {
    let s = site();
    image(&s.origin, "os:1", &[("linux/amd64", vec![v1()])]);
    let target = image(&s.origin, "os:2", &[("linux/amd64", vec![v2()])]);
    copy_image(&s.origin, &s.node, "os:1", &s.dir);
    let opts = DeltaOptions {
        max_memory: 64 * 1024,
        level: Level::Fast,
        ..DeltaOptions::default()
    };
    let out = delta(&s, "os:1", "os:2", &opts);
    let i = chasi_delta::inspect(&out).unwrap();
    assert!(i.memory <= 64 * 1024, "{}", i.memory);
    // A node with less memory than the delta needs refuses it before doing anything.
    let e = apply(
        &s.node,
        &out,
        &ApplyOptions {
            max_memory: 1024,
            tag: None,
        },
    )
    .unwrap_err();
    assert!(matches!(e, DeltaError::TooMuchMemory { .. }), "{e}");
    assert!(s.node.get_ref("os:2").is_err());
    apply(&s.node, &out, &ApplyOptions::default()).unwrap();
    assert_applied(&s, &target, "os:2");
}

#[test]
fn a_layer_blob_the_node_cannot_reproduce_travels_whole() {
    let s = site();
    image(&s.origin, "os:1", &[("linux/amd64", vec![v1()])]);
    // A gzip blob written by another tool: the store keeps it as it came, a node could not re-create it.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(1));
    std::io::Write::write_all(&mut gz, &v2()).unwrap();
    let gz = gz.finish().unwrap();
    let info = s
        .origin
        .import_layer_blob(&gz[..], "application/vnd.oci.image.layer.v1.tar+gzip", None)
        .unwrap();
    let blob = chasi_oci::Descriptor::new(
        chasi_oci::MediaType::ImageLayerGzip,
        gz.len() as u64,
        Digest::of(&gz).to_oci(),
    );
    let config = serde_json::json!({
        "os": "linux", "architecture": "amd64",
        "rootfs": {"type": "layers", "diff_ids": [info.diff_id.to_string()]},
    });
    let m = chasi_oci::build_manifest(
        &mut chasi_images::StoreBlobs::new(&s.origin),
        &config,
        &[blob],
        &Default::default(),
    )
    .unwrap();
    let target: Digest = m.digest().to_string().parse().unwrap();
    s.origin.set_ref("os:2", &target).unwrap();
    copy_image(&s.origin, &s.node, "os:1", &s.dir);
    let out = delta(&s, "os:1", "os:2", &DeltaOptions::default());
    let i = chasi_delta::inspect(&out).unwrap();
    assert_eq!(i.layers[0].method, Method::Full, "{i:?}");
    apply(&s.node, &out, &ApplyOptions::default()).unwrap();
    assert_applied(&s, &target, "os:2");
}

/// What a failed apply must leave: the same refs and layers, and a sound store.
fn snapshot(store: &Store) -> (Vec<(String, Digest)>, Vec<Digest>) {
    let refs = store
        .list_refs()
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.digest))
        .collect();
    (refs, store.list_layers().unwrap())
}

fn fails_cleanly(node: &Store, path: &Path) -> DeltaError {
    let before = snapshot(node);
    let e =
        apply(node, path, &ApplyOptions::default()).expect_err("a damaged delta must be refused");
    assert_eq!(
        snapshot(node),
        before,
        "a refused delta changed the store: {e}"
    );
    assert!(node.verify().unwrap().problems.is_empty());
    e
}

#[test]
fn a_flipped_byte_anywhere_or_a_truncation_is_refused_and_changes_nothing() {
    let s = site();
    image(&s.origin, "os:1", &[("linux/amd64", vec![v1()])]);
    image(&s.origin, "os:2", &[("linux/amd64", vec![v2()])]);
    copy_image(&s.origin, &s.node, "os:1", &s.dir);
    let good = std::fs::read(delta(&s, "os:1", "os:2", &DeltaOptions::default())).unwrap();
    let bad = s.dir.join("bad.tar");
    // Every 512-byte block of the archive: tar headers, oci-layout, index.json, manifest, config,
    // documents and payload (its header, index and parts). Padding is not content: a flip there is
    // harmless, so only non-zero bytes are flipped.
    let mut refused = 0;
    for block in (0..good.len()).step_by(512) {
        let Some(i) = (block..(block + 512).min(good.len())).find(|&i| good[i] != 0) else {
            continue;
        };
        let mut b = good.clone();
        b[i] ^= 0x20;
        std::fs::write(&bad, &b).unwrap();
        let before = snapshot(&s.node);
        match apply(&s.node, &bad, &ApplyOptions::default()) {
            Err(_) => refused += 1,
            // A flip in a tar header field nobody reads (mtime, uname) leaves a valid delta.
            Ok(r) => {
                assert_eq!(r.target, s.origin.get_ref("os:2").unwrap());
                s.node.delete_ref("os:2").unwrap();
            }
        }
        let (refs, _) = snapshot(&s.node);
        assert_eq!(refs, before.0, "flip at {i}");
    }
    assert!(refused > good.len() / 512 / 2, "{refused} refused");
    // Cutting into the end-of-archive blocks loses nothing; any cut before the last byte of content does.
    let content_end = good.iter().rposition(|&b| b != 0).unwrap();
    for cut in [
        0,
        100,
        1024,
        good.len() / 3,
        good.len() / 2,
        content_end - 600,
        content_end,
    ] {
        std::fs::write(&bad, &good[..cut]).unwrap();
        fails_cleanly(&s.node, &bad);
    }
    assert!(s.node.verify().unwrap().problems.is_empty());
}

#[test]
fn a_store_without_the_base_is_told_which_base_is_missing() {
    let s = site();
    let base = image(&s.origin, "os:1", &[("linux/amd64", vec![v1()])]);
    image(&s.origin, "os:2", &[("linux/amd64", vec![v2()])]);
    image(
        &s.node,
        "other:1",
        &[("linux/amd64", vec![tar(&[Item::File("z", b"z".to_vec())])])],
    );
    let out = delta(&s, "os:1", "os:2", &DeltaOptions::default());
    let e = fails_cleanly(&s.node, &out);
    match &e {
        DeltaError::BaseMissing { base: b, .. } => assert_eq!(*b, base),
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains(&base.to_string()), "{e}");
}

#[test]
fn an_artifact_that_is_not_a_delta_is_said_to_be_one() {
    let s = site();
    image(&s.origin, "os:1", &[("linux/amd64", vec![v1()])]);
    let plain = s.dir.join("plain.tar");
    chasi_images::save(
        &s.origin,
        "os:1",
        &plain,
        chasi_oci::SaveFormat::OciArchive,
        chasi_oci::LayerCompression::Keep,
        None,
    )
    .unwrap();
    assert!(!chasi_delta::is_delta(&plain));
    let e = apply(&s.node, &plain, &ApplyOptions::default()).unwrap_err();
    assert!(matches!(e, DeltaError::NotADelta { .. }), "{e}");
}

/// Rewrites a delta layout so that its payload's index is `mutate`d and every digest up the chain (payload,
/// config, manifest, index.json) is recomputed: a forgery that only the per-operation checks can catch.
fn forge(layout: &Path, mutate: impl Fn(&mut chasi_delta::format::LayerIndex)) {
    use chasi_delta::format::{LayerIndex, MAGIC};
    use serde_json::Value;
    let blob_path = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let write_blob = |bytes: &[u8]| -> (String, u64) {
        let d = Digest::of(bytes).to_string();
        std::fs::write(blob_path(&d), bytes).unwrap();
        (d, bytes.len() as u64)
    };
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let md = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(blob_path(&md)).unwrap()).unwrap();
    let cd = manifest["config"]["digest"].as_str().unwrap().to_string();
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(blob_path(&cd)).unwrap()).unwrap();
    let layer = config["layers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|l| l["method"] == "delta")
        .expect("a delta layer");
    let pd = layer["source"]["digest"].as_str().unwrap().to_string();
    let payload = std::fs::read(blob_path(&pd)).unwrap();
    assert_eq!(&payload[..8], MAGIC);
    let len = u64::from_le_bytes(payload[8..16].try_into().unwrap()) as usize;
    let raw = zstd::bulk::decompress(&payload[16..16 + len], 64 << 20).unwrap();
    let mut li = LayerIndex::decode(&raw, "test").unwrap();
    mutate(&mut li);
    let new_index = zstd::bulk::compress(&li.encode(), 3).unwrap();
    let mut forged = MAGIC.to_vec();
    forged.extend_from_slice(&(new_index.len() as u64).to_le_bytes());
    forged.extend_from_slice(&new_index);
    forged.extend_from_slice(&payload[16 + len..]);
    let (pd2, ps2) = write_blob(&forged);
    layer["source"]["digest"] = pd2.clone().into();
    layer["source"]["size"] = ps2.into();
    let (cd2, cs2) = write_blob(&serde_json::to_vec(&config).unwrap());
    for l in manifest["layers"].as_array_mut().unwrap() {
        if l["digest"] == pd.as_str() {
            l["digest"] = pd2.clone().into();
            l["size"] = ps2.into();
        }
    }
    manifest["config"]["digest"] = cd2.into();
    manifest["config"]["size"] = cs2.into();
    let (md2, ms2) = write_blob(&serde_json::to_vec(&manifest).unwrap());
    index["manifests"][0]["digest"] = md2.into();
    index["manifests"][0]["size"] = ms2.into();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

#[test]
fn a_forged_delta_with_consistent_digests_is_caught_by_the_operation_it_forges() {
    use chasi_delta::format::Op;
    let s = site();
    image(&s.origin, "os:1", &[("linux/amd64", vec![v1()])]);
    image(&s.origin, "os:2", &[("linux/amd64", vec![v2()])]);
    copy_image(&s.origin, &s.node, "os:1", &s.dir);
    let opts = DeltaOptions {
        format: chasi_oci::SaveFormat::OciLayout,
        ..DeltaOptions::default()
    };
    type Forgery = fn(&mut chasi_delta::format::LayerIndex);
    let forgeries: [(&str, Forgery); 4] = [
        // A reuse that reads one byte further into the base than it was made from.
        ("reuse", |li| {
            let op = li
                .ops
                .iter_mut()
                .find(|o| matches!(o, Op::Reuse { .. }))
                .unwrap();
            if let Op::Reuse { src, .. } = op {
                if src.offset > 0 {
                    src.offset -= 1
                } else {
                    src.offset += 1
                }
            }
        }),
        // A stream operation whose recorded digest is not its bytes'.
        ("stream", |li| {
            let op = li
                .ops
                .iter_mut()
                .find(|o| matches!(o, Op::Stream { .. }))
                .unwrap();
            if let Op::Stream { digest, .. } = op {
                digest[0] ^= 1
            }
        }),
        // A bsdiff patch said to apply to another old file.
        ("bspatch", |li| {
            let op = li
                .ops
                .iter_mut()
                .find(|o| matches!(o, Op::Bspatch { .. }))
                .unwrap();
            if let Op::Bspatch { src_digest, .. } = op {
                src_digest[5] ^= 2
            }
        }),
        // A part whose reference is not what it was compressed against.
        ("part", |li| {
            let r = li
                .parts
                .iter_mut()
                .flat_map(|p| p.refs.iter_mut())
                .next()
                .unwrap();
            r.digest[3] ^= 0x40;
        }),
    ];
    for (i, (kind, f)) in forgeries.into_iter().enumerate() {
        let dir = s.dir.join(format!("forged-{i}"));
        create(&s.origin, "os:1", "os:2", &dir, &opts).unwrap();
        forge(&dir, f);
        match fails_cleanly(&s.node, &dir) {
            DeltaError::Op { kind: k, .. } => assert_eq!(k, kind),
            other => panic!("{kind}: {other}"),
        }
    }
}

#[test]
fn a_delta_between_equal_images_carries_no_layer_and_a_single_manifest_pairs_with_an_index() {
    let s = site();
    let same = image(&s.origin, "os:1", &[("linux/amd64", vec![v1()])]);
    s.origin.set_ref("os:1b", &same).unwrap();
    copy_image(&s.origin, &s.node, "os:1", &s.dir);
    let out = delta(&s, "os:1", "os:1b", &DeltaOptions::default());
    let i = chasi_delta::inspect(&out).unwrap();
    assert!(i.layers.iter().all(|l| l.method == Method::Base), "{i:?}");
    assert!(i.delta_size < 4096, "{}", i.delta_size);
    apply(&s.node, &out, &ApplyOptions::default()).unwrap();
    assert_applied(&s, &same, "os:1b");
    // A single-manifest base and a two-platform target: the amd64 entry pairs with the base by platform.
    let target = image(
        &s.origin,
        "os:2",
        &[("linux/amd64", vec![v2()]), ("linux/arm64", vec![v2()])],
    );
    let opts = DeltaOptions {
        platforms: vec!["linux/amd64".parse().unwrap()],
        ..DeltaOptions::default()
    };
    let out = delta(&s, "os:1", "os:2", &opts);
    let r = apply(&s.node, &out, &ApplyOptions::default()).unwrap();
    assert_ne!(
        r.target, target,
        "one platform of an index is tagged as its manifest"
    );
    assert_eq!(
        chasi_images::Image::read(&s.node, &r.target)
            .unwrap()
            .platforms(),
        ["linux/amd64"]
    );
    let e = create(
        &s.origin,
        "os:1",
        "os:2",
        &s.dir.join("all.tar"),
        &DeltaOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, DeltaError::NoPlatform { .. }), "{e}");
}
