//! Shared helpers for the integration tests: deterministic trees and tree comparison.
#![allow(dead_code)]

use chasi_layers::ChunkParams;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Small chunks so that test trees produce many of them.
pub fn small_chunks() -> ChunkParams {
    ChunkParams {
        min_size: 1024,
        avg_size: 4096,
        max_size: 16384,
        ..ChunkParams::default()
    }
}

/// Small chunks and small frames, so that the small test trees span many chunks, pack frames and blob frames.
pub fn small_layout() -> chasi_layers::Layout {
    let mut l = chasi_layers::Layout::new(small_chunks());
    l.compression.pack_frame_bytes = 64 << 10;
    l.compression.blob_frame_bytes = 64 << 10;
    l
}

/// Deterministic pseudo-random bytes (xorshift), half of them compressible text.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x >> 60) & 1 == 0 {
            out.extend_from_slice(format!("line {} of seed {seed}\n", x % 1000).as_bytes());
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// Builds a tree with files, nested dirs, a symlink, a hard link, an empty dir and odd modes.
pub fn make_tree(root: &Path, seed: u64, files: usize) {
    fs::create_dir_all(root.join("etc/conf.d")).unwrap();
    fs::create_dir_all(root.join("usr/lib/deep/er")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    for i in 0..files {
        let dir = match i % 3 {
            0 => "etc/conf.d",
            1 => "usr/lib",
            _ => "usr/lib/deep/er",
        };
        let len = 100 + ((seed as usize + i * 7919) % 40_000);
        fs::write(
            root.join(dir).join(format!("f{i}")),
            bytes(seed * 1000 + i as u64, len),
        )
        .unwrap();
    }
    fs::write(root.join("usr/lib/big"), bytes(seed ^ 0xabc, 300_000)).unwrap();
    fs::write(root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    fs::set_permissions(root.join("etc/passwd"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
    fs::hard_link(root.join("etc/passwd"), root.join("etc/passwd-")).unwrap();
    let long = "a-very-long-directory-name-that-goes-on/".repeat(4);
    fs::create_dir_all(root.join(&long)).unwrap();
    fs::write(root.join(long).join("x".repeat(120)), b"long name").unwrap();
}

/// A comparable description of a tree: path → (kind, mode, size, content or link target).
pub fn snapshot(root: &Path) -> BTreeMap<String, (char, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let md = fs::symlink_metadata(e.path()).unwrap();
        let ft = md.file_type();
        let v = if ft.is_symlink() {
            (
                'l',
                0,
                fs::read_link(e.path())
                    .unwrap()
                    .to_string_lossy()
                    .as_bytes()
                    .to_vec(),
            )
        } else if ft.is_dir() {
            ('d', md.mode() & 0o7777, Vec::new())
        } else {
            ('f', md.mode() & 0o7777, fs::read(e.path()).unwrap())
        };
        out.insert(rel, v);
    }
    out
}

/// Store size of the packs directory (bytes of `.pack` files).
pub fn pack_bytes(store: &Path) -> u64 {
    fs::read_dir(store.join("packs"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Stores a minimal but complete OCI image (config with the layers' DiffIDs, manifest) and returns the manifest
/// digest; `verify` walks it to completeness.
pub fn put_image(
    s: &chasi_layers::Store,
    layers: &[(chasi_layers::Digest, &chasi_layers::BlobDesc)],
) -> chasi_layers::Digest {
    let ids: Vec<String> = layers.iter().map(|(d, _)| format!("\"{d}\"")).collect();
    let cfg = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        ids.join(",")
    );
    let cd = s.put_blob(cfg.as_bytes()).unwrap();
    let descs: Vec<String> = layers
        .iter()
        .map(|(_, b)| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{}","size":{}}}"#,
                b.digest, b.size
            )
        })
        .collect();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cd}","size":{}}},"layers":[{}]}}"#,
        cfg.len(),
        descs.join(",")
    );
    s.put_blob(m.as_bytes()).unwrap()
}
