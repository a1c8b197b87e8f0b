//! `chasi store du` per image: each image counted by the one definition of its OCI size,
//! shared layers counted in every image that has them, and the store's unreferenced objects
//! counted once.

use chasi_images::{self as images, Image};
use chasi_layers::{Digest, LayerInfo, Store, TarOptions};
use std::fs;
use std::path::Path;

fn layer(store: &Store, dir: &Path, seed: u8) -> LayerInfo {
    fs::create_dir_all(dir).unwrap();
    let bytes: Vec<u8> = (0..50_000u32)
        .map(|i| (i as u8).wrapping_mul(seed))
        .collect();
    fs::write(dir.join("f"), bytes).unwrap();
    let opts = TarOptions {
        source_date_epoch: Some(0),
        ..Default::default()
    };
    store.ingest_dir(dir, &opts).unwrap()
}

/// A manifest of `layers` (their zstd blobs) and its config.
fn manifest(store: &Store, layers: &[&LayerInfo]) -> Digest {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let cd = store.put_blob(&config).unwrap();
    let descs: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            let z = store.ensure_zstd(&l.diff_id).unwrap();
            serde_json::json!({"mediaType": z.media_type, "digest": z.digest.to_string(), "size": z.size})
        })
        .collect();
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": config.len()},
        "layers": descs,
    });
    store.put_blob(&serde_json::to_vec(&m).unwrap()).unwrap()
}

#[test]
fn two_images_sharing_a_layer_each_count_it_and_the_orphan_counts_once() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let shared = layer(&store, &t.path().join("shared"), 7);
    let own = layer(&store, &t.path().join("own"), 11);
    let a = manifest(&store, &[&shared]);
    let b = manifest(&store, &[&shared, &own]);
    store.set_ref("a:1", &a).unwrap();
    store.set_ref("b:1", &b).unwrap();
    store.put_blob(b"orphan").unwrap();

    let du = images::du(&store).unwrap();
    let size = |d: &Digest| Image::read(&store, d).unwrap().oci_size();
    let got: Vec<_> = du
        .images
        .iter()
        .map(|i| {
            (
                i.name.as_str(),
                i.digest.clone(),
                i.logical_bytes,
                i.layers,
                i.problem.is_none(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a:1", a.to_string(), size(&a), 1, true),
            ("b:1", b.to_string(), size(&b), 2, true),
        ]
    );
    let zstd = store.ensure_zstd(&shared.diff_id).unwrap().size;
    assert!(
        size(&b) > size(&a) && size(&a) > zstd,
        "the shared layer is in both"
    );
    // Everything but the orphan blob is some image's.
    assert_eq!(
        du.logical_bytes,
        size(&a) + size(&b) + b"orphan".len() as u64
    );
    assert_eq!((du.layers, du.blobs), (2, 5));
    assert!(du.physical_bytes > 0);
    assert_eq!(
        du.dedup_ratio,
        du.logical_bytes as f64 / du.physical_bytes as f64
    );
}

#[test]
fn an_image_nested_200000_deep_is_listed_with_a_problem_naming_its_digest() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(t.path().join("store")).unwrap();
    let good = manifest(&store, &[&layer(&store, &t.path().join("a"), 3)]);
    store.set_ref("good:1", &good).unwrap();
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let bad = store
        .put_blob(format!(r#"{{"schemaVersion":2,"x":{deep}}}"#).as_bytes())
        .unwrap();
    store.set_ref("bad:1", &bad).unwrap();

    let du = images::du(&store).unwrap();
    let entry = |n: &str| du.images.iter().find(|i| i.name == n).unwrap().clone();
    let good_usage = entry("good:1");
    assert!(good_usage.problem.is_none());
    assert_eq!(
        good_usage.logical_bytes,
        Image::read(&store, &good).unwrap().oci_size()
    );
    let bad_usage = entry("bad:1");
    assert_eq!((bad_usage.logical_bytes, bad_usage.layers), (0, 0));
    let p = bad_usage.problem.expect("bad:1 has a problem");
    assert!(
        p.contains(&bad.hex()) && p.contains("nested deeper than 64"),
        "{p}"
    );
    // The unreadable root is the bad image's, not an unreferenced blob counted on its own.
    assert_eq!(du.logical_bytes, good_usage.logical_bytes);
}
