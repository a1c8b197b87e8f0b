//! Images in the store, through the crate's API: platform selection (the rule `FROM --platform`
//! uses), sizes, names, and documents that are not what they claim.

use chasi_images::{self as images, blobs::descriptor_of, ImagesError, StoreBlobs};
use chasi_layers::{Digest, Store};
use chasi_oci::{self as oci, Descriptor, Platform};
use serde_json::json;
use std::collections::BTreeMap;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("store")).expect("open store");
    (dir, store)
}

/// A layerless manifest for `platform` (`os/arch[/variant]`); its descriptor carries the platform.
fn manifest(store: &Store, platform: &str) -> Descriptor {
    let p: Platform = platform.parse().expect("platform");
    let mut config = json!({
        "os": p.os,
        "architecture": p.architecture,
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    if let Some(v) = &p.variant {
        config["variant"] = json!(v);
    }
    oci::build_manifest(&mut StoreBlobs::new(store), &config, &[], &BTreeMap::new())
        .expect("build manifest")
}

fn digest(d: &Descriptor) -> Digest {
    d.digest().to_string().parse().expect("sha256")
}

/// Tags an index over `platforms` as `name`; returns the manifests' digests.
fn index(store: &Store, name: &str, platforms: &[&str]) -> Vec<Digest> {
    let manifests: Vec<Descriptor> = platforms.iter().map(|p| manifest(store, p)).collect();
    let index = oci::build_index(&mut StoreBlobs::new(store), &manifests, &BTreeMap::new())
        .expect("build index");
    store.set_ref(name, &digest(&index)).expect("tag");
    manifests.iter().map(digest).collect()
}

fn spec(p: &str) -> Platform {
    p.parse().expect("platform")
}

#[test]
fn linux_arm64_and_linux_arm64_v8_select_the_same_manifest() {
    let (_dir, store) = store();
    // An index that writes arm64 without its variant, and one that writes `v8`.
    let plain = index(&store, "plain:1", &["linux/amd64", "linux/arm64"]);
    let v8 = index(&store, "v8:1", &["linux/amd64", "linux/arm64/v8"]);
    for (image, arm) in [("plain:1", plain[1]), ("v8:1", v8[1])] {
        let root = images::resolve(&store, image).expect("resolve");
        let root = descriptor_of(&store, &root).expect("descriptor");
        for want in ["linux/arm64", "linux/arm64/v8"] {
            let chosen = images::platform_image(&store, image, Some(&spec(want)))
                .unwrap_or_else(|e| panic!("{image} --platform {want}: {e}"));
            assert_eq!(chosen.manifest, arm, "{image} --platform {want}");
            // `FROM --platform` picks the same one.
            let from = oci::select_manifest(&StoreBlobs::new(&store), &root, Some(&spec(want)))
                .expect("select_manifest");
            assert_eq!(digest(&from), arm, "FROM {image} --platform {want}");
            // And `inspect` lists it under the platform export reports.
            let inspected = images::inspect(&store, image).expect("inspect");
            let entry = inspected
                .images
                .iter()
                .find(|i| i.digest == arm)
                .expect("listed by inspect");
            assert_eq!(entry.platform, chosen.platform);
        }
    }
    // A different variant is a different platform.
    let err =
        images::platform_image(&store, "v8:1", Some(&spec("linux/arm64/v7"))).expect_err("no v7");
    assert!(
        matches!(&err, ImagesError::NoSuchPlatform { available, .. } if available == "linux/amd64, linux/arm64/v8"),
        "{err}"
    );
}

#[test]
fn a_single_manifest_is_matched_against_its_config_platform() {
    let (_dir, store) = store();
    let m = manifest(&store, "linux/arm64");
    store.set_ref("one:1", &digest(&m)).expect("tag");
    for want in ["linux/arm64", "linux/arm64/v8"] {
        let chosen = images::platform_image(&store, "one:1", Some(&spec(want))).expect(want);
        assert_eq!(chosen.manifest, digest(&m));
        assert_eq!(chosen.platform, "linux/arm64");
        assert_eq!(chosen.name.as_deref(), Some("one:1"));
    }
    let err = images::platform_image(&store, "one:1", Some(&spec("linux/amd64")))
        .expect_err("wrong platform");
    assert_eq!(
        err.to_string(),
        "image `one:1` has no platform linux/amd64 (it has linux/arm64)"
    );
    assert!(images::platform_image(&store, "one:1", None).is_ok());
}

#[test]
fn several_platforms_without_the_hosts_need_a_choice() {
    let (_dir, store) = store();
    index(&store, "far:1", &["linux/s390x", "linux/riscv64"]);
    let err = images::platform_image(&store, "far:1", None).expect_err("ambiguous");
    assert_eq!(
        err.to_string(),
        "image `far:1` has several platforms (linux/s390x, linux/riscv64): choose one with --platform"
    );
}

#[test]
fn the_oci_size_counts_every_index_manifest_config_and_layer_once() {
    let (_dir, store) = store();
    let single = manifest(&store, "linux/amd64");
    store.set_ref("single:1", &digest(&single)).expect("tag");
    index(&store, "multi:1", &["linux/amd64", "linux/arm64"]);
    // An index over one manifest (as skopeo and docker write single-platform images).
    index(&store, "wrapped:1", &["linux/amd64"]);
    let size = |d: &Digest| store.blob_size(d).expect("size");
    let manifest_size = |m: &Digest| {
        let doc: oci::ImageManifest =
            serde_json::from_slice(&store.get_blob(m).expect("manifest")).expect("parse");
        size(m) + doc.config().size()
    };
    let list = images::list(&store).expect("list");
    let names: Vec<&str> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["multi:1", "single:1", "wrapped:1"]);
    for summary in &list {
        let root: Digest = summary.digest;
        let image = chasi_images::Image::read(&store, &root).expect("read");
        let manifests: u64 = image
            .manifests
            .iter()
            .map(|m| manifest_size(&m.digest))
            .sum();
        let expected = if summary.name == "single:1" {
            manifests
        } else {
            size(&root) + manifests
        };
        assert_eq!(summary.size, expected, "{}", summary.name);
        assert_eq!(summary.problem, None);
    }
    assert_eq!(list[0].platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(list[2].platforms, ["linux/amd64"]);
}

#[test]
fn a_ref_that_cannot_be_read_is_not_reported_missing() {
    let (dir, store) = store();
    let m = manifest(&store, "linux/amd64");
    store.set_ref("app:1", &digest(&m)).expect("tag");
    std::fs::write(dir.path().join("store/refs/app%3A1.json"), b"{not json").expect("damage");
    let err = images::resolve(&store, "app:1").expect_err("damaged ref");
    assert!(matches!(err, ImagesError::Store(_)), "{err:?}");
    assert!(!err.to_string().contains("not in the store"), "{err}");
    let err = images::resolve(&store, "other:1").expect_err("absent");
    assert_eq!(err.to_string(), "image `other:1` is not in the store");
}

#[test]
fn names_are_checked_and_removing_an_absent_image_says_so() {
    let (_dir, store) = store();
    let err = images::remove(&store, "gone").expect_err("absent");
    assert_eq!(err.to_string(), "image `gone:latest` is not in the store");
    let err = images::tag(&store, "gone", "Bad Name").expect_err("bad");
    assert!(matches!(err, ImagesError::NotInStore { .. }), "{err}");
    let err = images::normalize_name("Bad Name").expect_err("bad");
    assert_eq!(
        err.to_string(),
        "`Bad Name` is not a valid image name (expected NAME[:TAG])"
    );
}

#[test]
fn a_manifest_of_the_wrong_shape_is_listed_with_a_problem_naming_it() {
    let (_dir, store) = store();
    let good = manifest(&store, "linux/amd64");
    store.set_ref("good:1", &digest(&good)).expect("tag");
    let bad = store
        .put_blob(br#"{"schemaVersion":2,"layers":[]}"#)
        .expect("put");
    store.set_ref("bad:1", &bad).expect("tag");
    let list = images::list(&store).expect("list");
    let problem = list[0].problem.as_deref().expect("bad:1 has a problem");
    assert!(
        problem.starts_with(&format!(
            "image manifest {bad} is not a valid OCI document: "
        )),
        "{problem}"
    );
    assert!(problem.contains("config"), "{problem}");
    assert_eq!(list[1].name, "good:1");
    assert!(list[1].problem.is_none());
    let err = images::inspect(&store, "bad:1").expect_err("bad");
    assert!(matches!(err, ImagesError::BadDocument { .. }), "{err}");
}

/// An index whose only entry is `inner` (an index too), as a registry's nested index is.
fn wrap(store: &Store, inner: &Digest) -> Digest {
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": inner.to_string(),
            "size": store.blob_size(inner).expect("size"),
        }],
    });
    store
        .put_blob(&serde_json::to_vec(&doc).expect("json"))
        .expect("put")
}

#[test]
fn nested_indexes_are_followed_to_their_manifests_and_bounded() {
    let (_dir, store) = store();
    let arms = index(&store, "flat:1", &["linux/amd64", "linux/arm64"]);
    let flat = store.get_ref("flat:1").expect("ref");
    let nested = wrap(&store, &flat);
    store.set_ref("nested:1", &nested).expect("tag");
    let list = images::list(&store).expect("list");
    let (flat_summary, nested_summary) = (&list[0], &list[1]);
    assert_eq!(nested_summary.platforms, ["linux/amd64", "linux/arm64"]);
    assert_eq!(
        nested_summary.size,
        flat_summary.size + store.blob_size(&nested).expect("size")
    );
    let chosen = images::platform_image(&store, "nested:1", Some(&spec("linux/arm64/v8")))
        .expect("through the nested index");
    assert_eq!(chosen.manifest, arms[1]);
    // Four indexes deep is the limit `select_manifest` keeps too.
    let mut deep = nested;
    for _ in 0..3 {
        deep = wrap(&store, &deep);
    }
    store.set_ref("deep:1", &deep).expect("tag");
    let err = chasi_images::Image::read(&store, &deep).expect_err("too deep");
    assert!(matches!(err, ImagesError::TooDeep { .. }), "{err}");
}
