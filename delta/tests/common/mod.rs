//! Images made directly in a store (layers from hand-written tars, configs, manifests, indexes), so the
//! delta tests control every byte of every layer without a builder.

#![allow(dead_code)]

use chasi_images::StoreBlobs;
use chasi_layers::{Digest, Store};
use chasi_oci::{self as oci, Descriptor, MediaType, Platform};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

pub fn store(dir: &Path, name: &str) -> Store {
    Store::open(dir.join(name)).expect("open store")
}

/// One tar entry.
pub enum Item<'a> {
    File(&'a str, Vec<u8>),
    Dir(&'a str),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Xattr(&'a str, Vec<u8>, &'a str, &'a [u8]),
}

/// A layer tar of `items`, written by the `tar` crate (GNU long names, PAX for xattrs).
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
            Item::Hard(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            Item::Xattr(p, data, key, value) => {
                let body = [format!("SCHILY.xattr.{key}=").as_bytes(), value, b"\n"].concat();
                let mut len = body.len() + 2;
                while format!("{len} ").len() + body.len() != len {
                    len = format!("{len} ").len() + body.len();
                }
                let rec = [format!("{len} ").as_bytes(), &body].concat();
                let mut x = tar::Header::new_ustar();
                x.set_entry_type(tar::EntryType::XHeader);
                x.set_size(rec.len() as u64);
                x.set_mode(0o644);
                b.append_data(&mut x, "PaxHeaders/x", &rec[..]).unwrap();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o4755);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, &data[..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// Ingests a layer tar; returns its blob descriptor (the store's reproducible zstd blob) and DiffID.
pub fn layer(store: &Store, tar: &[u8]) -> (Descriptor, Digest) {
    let info = store.ingest_tar(tar).expect("ingest");
    let blob = store.ensure_zstd(&info.diff_id).expect("zstd blob");
    let d = Descriptor::new(MediaType::ImageLayerZstd, blob.size, blob.digest.to_oci());
    (d, info.diff_id)
}

/// A manifest for `platform` over `tars` (bottom first).
pub fn manifest(store: &Store, platform: &str, tars: &[Vec<u8>]) -> Descriptor {
    let p: Platform = platform.parse().expect("platform");
    let (descs, ids): (Vec<Descriptor>, Vec<Digest>) = tars.iter().map(|t| layer(store, t)).unzip();
    let config = json!({
        "os": p.os,
        "architecture": p.architecture,
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
    });
    oci::build_manifest(
        &mut StoreBlobs::new(store),
        &config,
        &descs,
        &BTreeMap::new(),
    )
    .expect("build manifest")
}

/// Tags an image `name` with one manifest per platform (an index when there are several, or always when
/// `index` is set).
pub fn image(store: &Store, name: &str, platforms: &[(&str, Vec<Vec<u8>>)]) -> Digest {
    let ms: Vec<Descriptor> = platforms
        .iter()
        .map(|(p, tars)| manifest(store, p, tars))
        .collect();
    let root = if ms.len() == 1 {
        ms[0].clone()
    } else {
        oci::build_index(&mut StoreBlobs::new(store), &ms, &BTreeMap::new()).expect("index")
    };
    let d: Digest = root.digest().to_string().parse().unwrap();
    store.set_ref(name, &d).expect("tag");
    d
}

/// Copies image `name` from one store to another through an oci-archive, as a site gets its base.
pub fn copy_image(from: &Store, to: &Store, name: &str, dir: &Path) {
    let archive = dir.join(format!("copy-{}.tar", name.replace([':', '/'], "_")));
    chasi_images::save(
        from,
        name,
        &archive,
        oci::SaveFormat::OciArchive,
        oci::LayerCompression::Keep,
        None,
    )
    .expect("save");
    chasi_images::load(to, &archive).expect("load");
}

/// Pseudo-random bytes (a fixed LCG), compressible like binaries are not.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// `data` with a few bytes changed every `every` bytes (a rebuilt binary).
pub fn edit(data: &[u8], every: usize, seed: u8) -> Vec<u8> {
    let mut v = data.to_vec();
    let mut i = every / 2;
    while i < v.len() {
        v[i] = v[i].wrapping_add(seed);
        i += every;
    }
    v
}
