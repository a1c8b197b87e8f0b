//! End-to-end tests of `chasi store du|verify|gc` against a store filled through the library.

use chasi_layers::{Digest, Store, TarOptions};
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn chasi(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chasi"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("CHASI_STORE")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A store with one tagged image (config + one layer) and one orphan blob.
fn sample_store(root: &Path, work: &Path) -> (Digest, Digest) {
    fs::create_dir_all(work.join("etc")).unwrap();
    fs::write(work.join("etc/hello"), "hello world\n".repeat(1000)).unwrap();
    fs::write(
        work.join("bin"),
        (0..200_000u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let s = Store::open(root).unwrap();
    let l = s
        .ingest_dir(
            work,
            &TarOptions {
                source_date_epoch: Some(0),
                ..Default::default()
            },
        )
        .unwrap();
    let cfg = s
        .put_blob(
            format!(
                r#"{{"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
                l.diff_id
            )
            .as_bytes(),
        )
        .unwrap();
    let z = s.layer_blob(&l.diff_id).unwrap();
    let m = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}]}}"#,
        s.blob_size(&cfg).unwrap(),
        z.media_type,
        z.digest,
        z.size
    );
    let md = s.put_blob(m.as_bytes()).unwrap();
    s.set_ref("demo:1", &md).unwrap();
    let orphan = s.put_blob(b"orphan").unwrap();
    (md, orphan)
}

#[test]
fn du_reports_logical_and_physical_bytes() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    sample_store(&root, &t.path().join("w"));
    let o = chasi(&root, &["store", "du", "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["logical_bytes"].as_u64().unwrap() > 0);
    assert!(v["physical_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["images"][0]["name"], "demo:1");
    assert_eq!(v["images"][0]["layers"], 1);
    let o = chasi(&root, &["store", "du"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("physical bytes:"), "{}", stdout(&o));
    assert!(stdout(&o).contains("demo:1"));
}

#[test]
fn verify_exits_1_naming_each_bad_object() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let (manifest, orphan) = sample_store(&root, &t.path().join("w"));
    let o = chasi(&root, &["store", "verify"]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).starts_with("ok:"));
    fs::write(root.join("blobs").join(orphan.hex()), b"tampered").unwrap();
    fs::write(root.join("blobs").join(manifest.hex()), b"{}").unwrap();
    let o = chasi(&root, &["store", "verify"]);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains(&orphan.to_string()) && out.contains(&manifest.to_string()),
        "{out}"
    );
    let o = chasi(&root, &["store", "verify", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // The two blobs, and the ref whose manifest can no longer be read.
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().any(|p| p["object"] == "demo:1"
        && p["detail"]
            .as_str()
            .unwrap()
            .contains(&manifest.to_string())));
}

#[test]
fn gc_removes_unreachable_objects_only() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let (manifest, orphan) = sample_store(&root, &t.path().join("w"));
    let o = chasi(&root, &["store", "gc", "--dry-run"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("would have removed 1 blob(s)"),
        "{}",
        stdout(&o)
    );
    assert!(root.join("blobs").join(orphan.hex()).exists());
    let o = chasi(&root, &["store", "gc", "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["blobs_removed"], 1);
    assert!(!root.join("blobs").join(orphan.hex()).exists());
    assert!(root.join("blobs").join(manifest.hex()).exists());
    assert!(chasi(&root, &["store", "verify"]).status.success());
}

#[test]
fn gc_no_wait_fails_while_the_store_is_in_use() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    sample_store(&root, &t.path().join("w"));
    let held = Store::open(&root).unwrap();
    let o = chasi(&root, &["store", "gc", "--no-wait"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("busy"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    drop(held);
    assert!(chasi(&root, &["store", "gc", "--no-wait"]).status.success());
}

#[test]
fn store_location_from_env_and_errors() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    sample_store(&root, &t.path().join("w"));
    let o = Command::new(env!("CARGO_BIN_EXE_chasi"))
        .args(["store", "du", "--format", "json"])
        .env("CHASI_STORE", &root)
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["store"], root.display().to_string());
    let missing = t.path().join("nope");
    let o = chasi(&missing, &["store", "verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no store at"));
    assert!(!missing.exists(), "verify must not create a store");
    let o = chasi(&root, &["store", "frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn one_rule_for_a_directory_without_layout_json() {
    let t = tempfile::tempdir().unwrap();
    // Absent: commands that only read say so and create nothing.
    let absent = t.path().join("absent");
    for args in [
        &["store", "du"][..],
        &["store", "gc"],
        &["store", "verify"],
        &["images"],
        &["inspect", "x:1"],
    ] {
        let o = chasi(&absent, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        // `inspect` prints JSON, its error too (on stdout); the others a line on stderr.
        let err =
            String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
        assert!(
            err.contains(&format!("no store at {}", absent.display())),
            "{args:?}: {err}"
        );
        assert!(!absent.exists(), "{args:?} created the store");
    }
    // Not empty and no layout.json: every command refuses it, the same way, and writes nothing into it.
    let foreign = t.path().join("foreign");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let ctx = t.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("Kubefile"), "FROM scratch\nLABEL a=b\n").unwrap();
    for args in [
        &["store", "verify"][..],
        &["store", "gc"],
        &["images"],
        &["build", "-t", "x:1", ctx.to_str().unwrap()],
    ] {
        let o = chasi(&foreign, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("{} is not a chasi store", foreign.display())),
            "{args:?}: {err}"
        );
        let names: Vec<_> = fs::read_dir(&foreign).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{args:?} wrote into the directory");
    }
    // Absent or empty: a command that writes creates the store.
    let o = chasi(&absent, &["build", "-t", "x:1", ctx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(absent.join("layout.json").is_file());
    assert!(chasi(&absent, &["store", "verify"]).status.success());
}

#[test]
fn a_poisoned_manifest_neither_hides_the_other_images_nor_makes_gc_delete_them() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let ctx = t.path().join("ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("Kubefile"), "FROM scratch\nCOPY a /a\n").unwrap();
    fs::write(ctx.join("a"), "payload").unwrap();
    let o = chasi(&root, &["build", "-t", "good:1", ctx.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    {
        // A manifest nested 200,000 deep, tagged, as a hostile archive would have left it.
        let s = chasi_layers::Store::open(&root).unwrap();
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        let doc = format!(r#"{{"schemaVersion":2,"x":{deep}}}"#);
        let d = s.put_blob(doc.as_bytes()).unwrap();
        s.set_ref("bad:1", &d).unwrap();
    }
    let blobs_before = fs::read_dir(root.join("blobs")).unwrap().count();
    let o = chasi(&root, &["images", "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let good = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "good:1")
        .unwrap();
    assert!(good.get("problem").is_none() && good["size"].as_u64().unwrap() > 0);
    let bad = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "bad:1")
        .unwrap();
    assert!(bad["problem"].as_str().unwrap().contains("nest"), "{bad}");
    // gc cannot read what the bad ref reaches: it fails and deletes nothing.
    let o = chasi(&root, &["store", "gc"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        fs::read_dir(root.join("blobs")).unwrap().count(),
        blobs_before
    );
    let o = chasi(&root, &["rmi", "bad:1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for args in [
        &["store", "gc"][..],
        &["store", "verify"],
        &["export", "good:1", "--format", "tar", "-o", "/dev/null"],
    ] {
        let o = chasi(&root, args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// A manifest of `layers` (each with its zstd blob) and a config naming their DiffIDs.
fn put_manifest(s: &Store, layers: &[&chasi_layers::LayerInfo]) -> Digest {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("\"{}\"", l.diff_id))
        .collect();
    let cfg = s
        .put_blob(
            format!(
                r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
                diff_ids.join(",")
            )
            .as_bytes(),
        )
        .unwrap();
    let descs: Vec<String> = layers
        .iter()
        .map(|l| {
            let z = s.ensure_zstd(&l.diff_id).unwrap();
            format!(
                r#"{{"mediaType":"{}","digest":"{}","size":{}}}"#,
                z.media_type, z.digest, z.size
            )
        })
        .collect();
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":{}}},"layers":[{}]}}"#,
        s.blob_size(&cfg).unwrap(),
        descs.join(",")
    );
    s.put_blob(m.as_bytes()).unwrap()
}

/// A layer of one deterministic file.
fn put_layer(s: &Store, work: &Path, name: &str, seed: u32) -> chasi_layers::LayerInfo {
    let dir = work.join(name);
    fs::create_dir_all(&dir).unwrap();
    let bytes: Vec<u8> = (0..150_000u32)
        .map(|i| (i.wrapping_mul(seed) % 251) as u8)
        .collect();
    fs::write(dir.join(name), bytes).unwrap();
    s.ingest_dir(
        &dir,
        &TarOptions {
            source_date_epoch: Some(0),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Two images sharing a layer (one of them behind an index), a layer and a blob no image
/// references, and a layer whose compressed size is not known yet.
fn shared_layer_store(root: &Path, work: &Path) {
    let s = Store::open(root).unwrap();
    let shared = put_layer(&s, work, "shared", 7);
    let own = put_layer(&s, work, "own", 13);
    let a = put_manifest(&s, &[&shared]);
    s.set_ref("a:1", &a).unwrap();
    let b = put_manifest(&s, &[&shared, &own]);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{b}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        s.blob_size(&b).unwrap()
    );
    let index = s.put_blob(index.as_bytes()).unwrap();
    s.set_ref("b:1", &index).unwrap();
    let loose = put_layer(&s, work, "loose", 17);
    s.ensure_zstd(&loose.diff_id).unwrap();
    put_layer(&s, work, "raw", 19);
    s.put_blob(b"orphan").unwrap();
}

/// `chasi store du` on [`shared_layer_store`], byte for byte (recorded before du's per-image
/// part moved to chasi-images). Only the store's path and its allocated bytes depend on the
/// machine; they are filled in from the JSON report.
#[test]
fn du_output_is_unchanged_on_a_two_image_store_with_a_shared_layer() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    shared_layer_store(&root, &t.path().join("w"));
    let o = chasi(&root, &["store", "du", "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = stdout(&o);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let physical = v["physical_bytes"].as_u64().unwrap();
    let logical = v["logical_bytes"].as_u64().unwrap();
    let ratio = v["dedup_ratio"].clone();
    let fill = |text: &str| {
        text.replace("{STORE}", &root.display().to_string())
            .replace("{PHYSICAL}", &physical.to_string())
            .replace("{RATIO}", &ratio.to_string())
    };
    assert_eq!(json, fill(DU_JSON));
    assert!(physical > 0);
    assert_eq!(ratio.as_f64().unwrap(), logical as f64 / physical as f64);
    let o = chasi(&root, &["store", "du"]);
    assert!(o.status.success());
    let human = stdout(&o);
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(
        lines[2].split(' ').nth(2),
        Some(physical.to_string().as_str()),
        "{human}"
    );
    let expected: Vec<String> = fill(DU_HUMAN).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), expected.len(), "{human}");
    for (i, (got, want)) in lines.iter().zip(&expected).enumerate() {
        // The physical bytes' human form and the ratio with two decimals: checked above.
        if i != 2 && i != 3 {
            assert_eq!(got, want, "{human}");
        }
    }
}

const DU_JSON: &str = r#"{
  "store": "{STORE}",
  "logical_bytes": 3410,
  "physical_bytes": {PHYSICAL},
  "dedup_ratio": {RATIO},
  "uncompressed_layer_bytes": 606208,
  "layers": 4,
  "chunks": 4,
  "blobs": 6,
  "images": [
    {
      "name": "a:1",
      "digest": "sha256:a5016be76356e9d7b422eac771807dbe716d1b6e69f88de9efadbfafd07f0d66",
      "logical_bytes": 910,
      "layers": 1
    },
    {
      "name": "b:1",
      "digest": "sha256:8e0935ba1f75967d251090920cb403a5abb4716b2b90e5c52e1ebc06d18535dd",
      "logical_bytes": 1782,
      "layers": 2
    }
  ]
}
"#;
const DU_HUMAN: &str = "store:          {STORE}
logical bytes:  3410 (3.3 KiB)
physical bytes: {PHYSICAL} (140.0 KiB)
dedup ratio:    0.02
layers: 4  chunks: 4  blobs: 6
  a:1  sha256:a5016be76356e9d7b422eac771807dbe716d1b6e69f88de9efadbfafd07f0d66  910 B  1 layers
  b:1  sha256:8e0935ba1f75967d251090920cb403a5abb4716b2b90e5c52e1ebc06d18535dd  1.7 KiB  2 layers
";

/// `store du` counts each image as `chasi images` does (one definition of an image's size):
/// a layer descriptor with a digest the store cannot hold still has a size, and indexes
/// nested deeper than chasi follows are a problem, not a silently smaller size.
#[test]
fn du_counts_each_image_as_chasi_images_does() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    shared_layer_store(&root, &t.path().join("w"));
    {
        let s = Store::open(&root).unwrap();
        let a = s.get_ref("a:1").unwrap();
        let mut doc: serde_json::Value = serde_json::from_slice(&s.get_blob(&a).unwrap()).unwrap();
        doc["layers"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": format!("sha512:{}", "ab".repeat(64)),
                "size": 100_000,
            }));
        let m = s.put_blob(&serde_json::to_vec(&doc).unwrap()).unwrap();
        s.set_ref("sha512:1", &m).unwrap();
        let mut d = a;
        for _ in 0..5 {
            let index = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{d}","size":{}}}]}}"#,
                s.blob_size(&d).unwrap()
            );
            d = s.put_blob(index.as_bytes()).unwrap();
        }
        s.set_ref("deep:1", &d).unwrap();
    }
    let du = chasi(&root, &["store", "du", "--format", "json"]);
    assert!(
        du.status.success(),
        "{}",
        String::from_utf8_lossy(&du.stderr)
    );
    let du: serde_json::Value = serde_json::from_slice(&du.stdout).unwrap();
    let list = chasi(&root, &["images", "--format", "json"]);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let du_images = du["images"].as_array().unwrap();
    assert_eq!(du_images.len(), 4, "{du}");
    for i in du_images {
        let listed = list
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == i["name"])
            .unwrap();
        assert_eq!(i["logical_bytes"], listed["size"], "{i} vs {listed}");
        assert_eq!(i["problem"], listed["problem"], "{i} vs {listed}");
    }
}
