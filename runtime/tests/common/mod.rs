//! Test images made directly in a build store (layers from hand-written tars), saved as oci-archives or
//! turned into deltas, as a site would receive them.

#![allow(dead_code)]

use chasi_images::StoreBlobs;
use chasi_layers::{Digest, Store};
use chasi_oci::{self as oci, Descriptor, MediaType, Platform};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One tar entry.
pub enum Item<'a> {
    File(&'a str, Vec<u8>),
    Exec(&'a str, &'a str),
    Dir(&'a str),
    Link(&'a str, &'a str),
    Whiteout(&'a str),
}

/// A layer tar of `items`.
pub fn tar(items: &[Item<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for it in items {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match it {
            Item::File(p, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, &data[..]).unwrap();
            }
            Item::Exec(p, script) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o755);
                h.set_size(script.len() as u64);
                b.append_data(&mut h, p, script.as_bytes()).unwrap();
            }
            Item::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            Item::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            Item::Whiteout(p) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// The host's platform as text.
pub fn host() -> String {
    Platform::host().to_string()
}

/// Tags image `name` (one manifest for `platform` over `tars`, bottom first); returns its digest.
pub fn image(store: &Store, name: &str, platform: &str, tars: &[Vec<u8>]) -> Digest {
    annotated_image(store, name, platform, tars, &BTreeMap::new())
}

/// [`image`] with manifest annotations (a sealer extension, say).
pub fn annotated_image(
    store: &Store,
    name: &str,
    platform: &str,
    tars: &[Vec<u8>],
    annotations: &BTreeMap<String, String>,
) -> Digest {
    let p: Platform = platform.parse().expect("platform");
    let mut descs = Vec::new();
    let mut ids = Vec::new();
    for t in tars {
        let info = store.ingest_tar(&t[..]).expect("ingest");
        let blob = store.ensure_zstd(&info.diff_id).expect("zstd");
        descs.push(Descriptor::new(
            MediaType::ImageLayerZstd,
            blob.size,
            blob.digest.to_oci(),
        ));
        ids.push(info.diff_id.to_string());
    }
    let mut config = json!({
        "os": p.os,
        "architecture": p.architecture,
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ids},
    });
    if let Some(v) = &p.variant {
        config["variant"] = json!(v);
    }
    let m = oci::build_manifest(&mut StoreBlobs::new(store), &config, &descs, annotations)
        .expect("manifest");
    let d: Digest = m.digest().to_string().parse().unwrap();
    store.set_ref(name, &d).expect("tag");
    d
}

/// Saves image `name` as an oci-archive at `dir/file`.
pub fn save(store: &Store, name: &str, dir: &Path, file: &str) -> PathBuf {
    let out = dir.join(file);
    chasi_images::save(
        store,
        name,
        &out,
        oci::SaveFormat::OciArchive,
        oci::LayerCompression::Keep,
        None,
    )
    .expect("save");
    out
}

/// A delta from `from` to `to` at `dir/file`.
pub fn delta(store: &Store, from: &str, to: &str, dir: &Path, file: &str) -> PathBuf {
    let out = dir.join(file);
    let opts = chasi_delta::DeltaOptions {
        level: chasi_delta::Level::Fast,
        ..Default::default()
    };
    chasi_delta::create(store, from, to, &out, &opts).expect("delta");
    out
}

/// Deterministic incompressible bytes.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// The two versions most tests use: `app:1` and `app:2` (a changed, a removed and an added file), each
/// with the given extra layer (hooks) on top.
pub struct Versions {
    pub v1: Vec<Vec<u8>>,
    pub v2: Vec<Vec<u8>>,
}

pub fn versions(size: usize) -> Versions {
    let base = tar(&[
        Item::Dir("bin"),
        Item::File("bin/tool", noise(1, size)),
        Item::Dir("etc"),
        Item::File("etc/app.conf", b"version=1\n".to_vec()),
        Item::File("etc/old.conf", b"old\n".to_vec()),
        Item::Link("bin/sh-link", "tool"),
    ]);
    let mut tool2 = noise(1, size);
    for i in (0..tool2.len()).step_by(4096) {
        tool2[i] ^= 0x5a;
    }
    let upper = tar(&[
        Item::Dir("bin"),
        Item::File("bin/tool", tool2),
        Item::Dir("etc"),
        Item::File("etc/app.conf", b"version=2\n".to_vec()),
        Item::Whiteout("etc/.wh.old.conf"),
        Item::File("etc/new.conf", b"new\n".to_vec()),
    ]);
    Versions {
        v1: vec![base.clone()],
        v2: vec![base, upper],
    }
}

/// A layer holding hooks: `(phase, name, script)`.
pub fn hooks(list: &[(&str, &str, &str)]) -> Vec<u8> {
    let mut items = vec![
        Item::Dir("etc"),
        Item::Dir("etc/chasi"),
        Item::Dir("etc/chasi/hooks"),
        Item::Dir("etc/chasi/hooks/pre-check.d"),
        Item::Dir("etc/chasi/hooks/post-verify.d"),
    ];
    let paths: Vec<String> = list
        .iter()
        .map(|(phase, name, _)| format!("etc/chasi/hooks/{phase}.d/{name}"))
        .collect();
    for (p, (_, _, script)) in paths.iter().zip(list) {
        items.push(Item::Exec(p, script));
    }
    tar(&items)
}
