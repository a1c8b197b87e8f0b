//! `chasi load` of hostile archives, end to end: a refused archive fails with the reason,
//! never aborts the process, and leaves the store without new names or blobs.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use chasi_oci::{build_manifest, Descriptor, MediaType, MemoryBlobs};
use serde_json::{json, Value};

fn chasi(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chasi"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("CHASI_STORE")
        .output()
        .expect("run chasi")
}

fn desc_json(d: &Descriptor) -> Value {
    json!({"mediaType": d.media_type().to_string(), "digest": d.digest().to_string(), "size": d.size()})
}

fn layer_tar(name: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(6);
    h.set_mode(0o644);
    b.append_data(&mut h, name, &b"hello\n"[..])
        .expect("append");
    b.into_inner().expect("tar")
}

/// A one-layer image (uncompressed layer, so its digest is its DiffID).
fn image(blobs: &mut MemoryBlobs) -> Descriptor {
    let layer = blobs.insert(MediaType::ImageLayer, layer_tar("hello"));
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.digest().to_string()]},
    });
    build_manifest(blobs, &config, &[layer], &BTreeMap::new()).expect("manifest")
}

/// A one-layer image whose gzip layer is not what its config's DiffID says.
fn lying_image(blobs: &mut MemoryBlobs) -> Descriptor {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&layer_tar("other")).expect("gzip");
    let layer = blobs.insert(MediaType::ImageLayerGzip, gz.finish().expect("gzip"));
    let wrong = chasi_oci::digest::sha256_digest(&layer_tar("hello"));
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [wrong.to_string()]},
    });
    build_manifest(blobs, &config, &[layer], &BTreeMap::new()).expect("manifest")
}

/// An oci-archive of `blobs` whose index.json names each root `load-test:<tag>`.
fn archive(path: &Path, blobs: &MemoryBlobs, roots: &[(&Descriptor, &str)]) {
    let manifests: Vec<Value> = roots
        .iter()
        .map(|(d, tag)| {
            let mut v = desc_json(d);
            v["annotations"] = json!({
                "org.opencontainers.image.ref.name": tag,
                "io.containerd.image.name": format!("load-test:{tag}"),
            });
            v
        })
        .collect();
    let index =
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).expect("json");
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).expect("append");
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", &index);
    for d in blobs.digests() {
        add(
            &format!("blobs/sha256/{}", d.digest()),
            blobs.get(d).expect("blob"),
        );
    }
    fs::write(path, b.into_inner().expect("tar")).expect("write");
}

fn images(store: &Path) -> String {
    let o = chasi(store, &["images"]);
    assert!(
        o.status.success(),
        "images failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn refused_archives_tag_nothing_and_leave_the_store_readable() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = t.path().join("store");
    let mut blobs = MemoryBlobs::new();
    let good = image(&mut blobs);
    let config = match serde_json::from_slice::<Value>(blobs.get(good.digest()).expect("m")) {
        Ok(m) => m["config"].clone(),
        Err(e) => panic!("{e}"),
    };
    // A manifest nested 200,000 deep in an unknown field.
    let deep = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{config},"layers":[],"x":{}{}}}"#,
        MediaType::ImageManifest,
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let deep = blobs.insert(MediaType::ImageManifest, deep.into_bytes());
    // 5,000 manifests, each the "layer" of the next.
    let mut chain = good.clone();
    for _ in 0..5000 {
        let doc = json!({
            "schemaVersion": 2, "mediaType": MediaType::ImageManifest.to_string(),
            "config": config, "layers": [desc_json(&chain)],
        });
        chain = blobs.insert(
            MediaType::ImageManifest,
            serde_json::to_vec(&doc).expect("json"),
        );
    }
    let lying = lying_image(&mut blobs);
    for (name, bad, reason) in [
        ("deep", &deep, "nested more than 64 deep"),
        ("chain", &chain, "a manifest or index cannot be a layer"),
        ("diff_id", &lying, "decompresses to"),
    ] {
        let p = t.path().join(format!("{name}.tar"));
        archive(&p, &blobs, &[(&good, "good"), (bad, "bad")]);
        let o = chasi(&store, &["load", p.to_str().expect("utf-8")]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(reason), "{name}: {stderr}");
        assert!(
            stderr.contains(&bad.digest().to_string()),
            "{name}: {stderr}"
        );
        // Not even the good image of the same archive was tagged.
        assert!(!images(&store).contains("load-test"), "{name}");
        let o = chasi(&store, &["store", "verify"]);
        assert!(o.status.success(), "{name}: verify: {:?}", o);
    }
    let p = t.path().join("good.tar");
    archive(&p, &blobs, &[(&good, "good")]);
    let o = chasi(&store, &["load", p.to_str().expect("utf-8")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(images(&store).contains("load-test:good"));
}
