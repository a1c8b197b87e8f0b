//! A store that cannot be poisoned: bounded documents, gc that refuses to guess, verify that walks every ref to
//! completeness, cheap presence proofs for the build cache, cache records bound to their keys, and one rule for
//! directories without `layout.json`.

mod common;

use chasi_layers::maint::GcOptions;
use chasi_layers::{BlobDesc, Digest, Error, LayerInfo, Store, TarOptions};
use common::*;
use std::fs;
use std::path::{Path, PathBuf};

fn opts() -> TarOptions {
    TarOptions {
        source_date_epoch: Some(1_700_000_000),
        ..Default::default()
    }
}

fn layer(s: &Store, dir: &Path, seed: u64) -> (LayerInfo, BlobDesc) {
    make_tree(dir, seed, 20);
    let l = s.ingest_dir(dir, &opts()).unwrap();
    let z = s.layer_blob(&l.diff_id).unwrap();
    (l, z)
}

/// Every file under the store's object directories, sorted.
fn objects(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in ["blobs", "layers", "links", "packs", "refs", "cache"] {
        for e in fs::read_dir(root.join(d)).unwrap().flatten() {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

fn config_of(s: &Store, manifest: &Digest) -> Digest {
    let v: serde_json::Value = serde_json::from_slice(&s.get_blob(manifest).unwrap()).unwrap();
    v["config"]["digest"].as_str().unwrap().parse().unwrap()
}

fn problems(s: &Store) -> Vec<String> {
    s.verify()
        .unwrap()
        .problems
        .iter()
        .map(|p| format!("{} | {} | {}", p.object, p.path, p.detail))
        .collect()
}

#[test]
fn a_manifest_nested_200000_deep_is_reported_and_stops_gc_before_it_deletes_anything() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("s");
    let mut s = Store::open_with_layout(&root, small_layout()).unwrap();
    let (a, za) = layer(&s, &t.path().join("a"), 1);
    let good = put_image(&s, &[(a.diff_id, &za)]);
    s.set_ref("good:1", &good).unwrap();
    // The poisoned image: its own config and layer, and a field nested 200,000 deep, written straight into the
    // store as a hostile archive or user could.
    let (b, zb) = layer(&s, &t.path().join("b"), 2);
    let cfg = format!(
        r#"{{"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        b.diff_id
    );
    let cd = s.put_blob(cfg.as_bytes()).unwrap();
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let bad_doc = format!(
        r#"{{"schemaVersion":2,"config":{{"digest":"{cd}","size":{}}},"layers":[{{"digest":"{}","size":{}}}],"x":{deep}}}"#,
        cfg.len(),
        zb.digest,
        zb.size
    );
    let bad = s.put_blob(bad_doc.as_bytes()).unwrap();
    s.set_ref("bad:1", &bad).unwrap();

    // Listing it (`chasi store du`, `chasi images`) is chasi-images' (its tests/du.rs).

    // Verify names the ref, the digest and the fault.
    let found = problems(&s);
    assert!(
        found.iter().any(|p| p.starts_with("bad:1 |")
            && p.contains(&bad.to_string())
            && p.contains("nested deeper than 64")),
        "{found:?}"
    );
    assert!(!found.iter().any(|p| p.starts_with("good:1")), "{found:?}");

    // gc refuses, naming the ref and the digest, and deletes nothing (also in a dry run).
    let before = objects(&root);
    for dry_run in [true, false] {
        let err = s
            .gc(&GcOptions {
                dry_run,
                ..Default::default()
            })
            .unwrap_err();
        assert!(matches!(err, Error::GcUnreadable { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("ref bad:1") && msg.contains(&bad.to_string()),
            "{msg}"
        );
        assert!(msg.contains("nested deeper than 64"), "{msg}");
        assert_eq!(objects(&root), before);
    }

    // Without the bad ref, gc runs and the tagged image is whole.
    assert!(s.delete_ref("bad:1").unwrap());
    let rep = s.gc(&GcOptions::default()).unwrap();
    assert!(rep.blobs_removed >= 2, "{rep:?}");
    assert!(!s.has_blob(&bad) && !s.has_layer(&b.diff_id));
    for d in [good, config_of(&s, &good), za.digest] {
        assert!(s.has_blob(&d), "{d} lost");
        s.get_blob(&d).unwrap();
    }
    assert!(s.verify().unwrap().ok(), "{:?}", problems(&s));
}

#[test]
fn gc_stops_on_an_unreadable_ref_link_or_layer_index_it_would_follow() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("s");
    let mut s = Store::open_with_layout(&root, small_layout()).unwrap();
    let (a, za) = layer(&s, &t.path().join("a"), 3);
    let m = put_image(&s, &[(a.diff_id, &za)]);
    s.set_ref("img:1", &m).unwrap();
    let link = root.join("links").join(format!("{}.json", za.digest.hex()));
    let index = root
        .join("layers")
        .join(format!("{}.json", a.diff_id.hex()));
    for path in [&link, &index] {
        let orig = fs::read(path).unwrap();
        fs::write(path, b"{\"diff_id\": [[[").unwrap();
        let before = objects(&root);
        let err = s.gc(&GcOptions::default()).unwrap_err().to_string();
        assert!(
            err.contains("ref img:1") && err.contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(objects(&root), before);
        fs::write(path, orig).unwrap();
    }
    s.gc(&GcOptions::default()).unwrap();
    assert!(s.verify().unwrap().ok(), "{:?}", problems(&s));
}

#[test]
fn verify_walks_every_ref_to_its_config_and_layers() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("s");
    let s = Store::open_with_layout(&root, small_layout()).unwrap();
    let (a, za) = layer(&s, &t.path().join("a"), 4);
    let m = put_image(&s, &[(a.diff_id, &za)]);
    let cfg = config_of(&s, &m);
    s.set_ref("img:1", &m).unwrap();
    // An index over the manifest is walked too.
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"digest":"{m}","size":{}}}]}}"#,
        s.blob_size(&m).unwrap()
    );
    let ix = s.put_blob(index.as_bytes()).unwrap();
    s.set_ref("multi:1", &ix).unwrap();
    assert!(s.verify().unwrap().ok(), "{:?}", problems(&s));

    let expect =
        |what: &str, needles: &[&str]| {
            let found = problems(&s);
            for r in ["img:1", "multi:1"] {
                assert!(
                    found.iter().any(|p| p.starts_with(&format!("{r} |"))
                        && needles.iter().all(|n| p.contains(n))),
                    "{what}: no problem for {r} naming {needles:?} in {found:?}"
                );
            }
        };
    let moved = |p: PathBuf| {
        let keep = t.path().join("kept");
        fs::rename(&p, &keep).unwrap();
        move || fs::rename(&keep, &p).unwrap()
    };

    // A deleted config blob.
    let restore = moved(root.join("blobs").join(cfg.hex()));
    expect("config deleted", &[&cfg.to_string(), "missing"]);
    restore();
    // A removed layer index.
    let restore = moved(
        root.join("layers")
            .join(format!("{}.json", a.diff_id.hex())),
    );
    expect(
        "layer index removed",
        &[&za.digest.to_string(), &a.diff_id.to_string()],
    );
    restore();
    // A config whose DiffIDs are not the layers'.
    let (b, zb) = layer(&s, &t.path().join("b"), 5);
    let wrong = put_image(&s, &[(b.diff_id, &zb)]);
    let wrong_cfg = config_of(&s, &wrong);
    let v: serde_json::Value = serde_json::from_slice(&s.get_blob(&m).unwrap()).unwrap();
    let mut v2 = v.clone();
    v2["config"]["digest"] = wrong_cfg.to_string().into();
    v2["config"]["size"] = s.blob_size(&wrong_cfg).unwrap().into();
    let mixed = s.put_blob(&serde_json::to_vec(&v2).unwrap()).unwrap();
    s.set_ref("mixed:1", &mixed).unwrap();
    let found = problems(&s);
    assert!(
        found.iter().any(|p| p.starts_with("mixed:1 |")
            && p.contains("DiffIDs")
            && p.contains(&b.diff_id.to_string())),
        "{found:?}"
    );
    s.delete_ref("mixed:1").unwrap();
    assert!(s.verify().unwrap().ok(), "{:?}", problems(&s));

    // Refs at things that are not manifests: a layer blob, a config, a DiffID, nothing.
    let missing = Digest::of(b"nothing");
    for (target, needle) in [
        (za.digest, "is a layer blob"),
        (cfg, "is an image config"),
        (a.diff_id, "is a layer"),
        (missing, "is missing"),
    ] {
        s.set_ref("odd:1", &target).unwrap();
        let found = problems(&s);
        assert!(
            found.iter().any(|p| p.starts_with("odd:1 |")
                && p.contains(&target.to_string())
                && p.contains(needle)),
            "{needle}: {found:?}"
        );
        assert_eq!(found.len(), 1, "{found:?}");
    }
    s.delete_ref("odd:1").unwrap();
    assert!(s.verify().unwrap().ok(), "{:?}", problems(&s));
}

#[test]
fn check_layer_proves_presence_from_index_packs_sizes_and_links() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("s");
    let src = t.path().join("a");
    let s = Store::open_with_layout(&root, small_layout()).unwrap();
    let (a, za) = layer(&s, &src, 6);
    s.check_layer(&a.diff_id, &za.digest).unwrap();
    assert!(s.check_layer(&a.diff_id, &Digest::of(b"x")).is_err());
    let pack = fs::read_dir(root.join("packs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().unwrap() == "pack")
        .unwrap();
    let idx = pack.with_extension("idx");
    let link = root.join("links").join(format!("{}.json", za.digest.hex()));
    let index = root
        .join("layers")
        .join(format!("{}.json", a.diff_id.hex()));
    type Damage<'a> = (&'a Path, Box<dyn Fn(&Path)>);
    let damage: [Damage; 5] = [
        (&pack, Box::new(|p| fs::remove_file(p).unwrap())),
        (
            &pack,
            Box::new(|p| {
                let d = fs::read(p).unwrap();
                fs::write(p, &d[..d.len() - 1]).unwrap()
            }),
        ),
        (&idx, Box::new(|p| fs::remove_file(p).unwrap())),
        (&link, Box::new(|p| fs::remove_file(p).unwrap())),
        (&index, Box::new(|p| fs::write(p, b"{").unwrap())),
    ];
    for (i, (path, hurt)) in damage.iter().enumerate() {
        let orig = fs::read(path).unwrap();
        hurt(path);
        let err = s.check_layer(&a.diff_id, &za.digest).unwrap_err();
        assert!(!err.to_string().is_empty(), "case {i}");
        fs::write(path, orig).unwrap();
        s.check_layer(&a.diff_id, &za.digest).unwrap();
    }

    // A deleted pack: a new handle does not count its chunks as present, so ingesting the same content stores
    // them again and the layer is whole; gc drops the dangling index.
    fs::remove_file(&pack).unwrap();
    drop(s);
    let mut s = Store::open(&root).unwrap();
    assert!(s.check_layer(&a.diff_id, &za.digest).is_err());
    let again = s.ingest_dir(&src, &opts()).unwrap();
    assert_eq!(again.diff_id, a.diff_id);
    s.check_layer(&a.diff_id, &za.digest).unwrap();
    let m = put_image(&s, &[(a.diff_id, &za)]);
    s.set_ref("img:1", &m).unwrap();
    let found = problems(&s);
    assert!(
        found.iter().all(|p| p.contains("pack unreadable")),
        "only the deleted pack is reported: {found:?}"
    );
    s.gc(&GcOptions::default()).unwrap();
    assert!(s.verify().unwrap().ok(), "{:?}", problems(&s));
    assert_eq!(s.get_blob(&za.digest).unwrap().len() as u64, za.size);
}

#[test]
fn cache_records_are_bound_to_their_keys() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("s");
    let s = Store::open(&root).unwrap();
    let (k1, k2) = (Digest::of(b"one"), Digest::of(b"two"));
    s.put_cache(&k1, &serde_json::json!({"n": 1})).unwrap();
    s.put_cache(&k2, &serde_json::json!({"n": 2})).unwrap();
    assert_eq!(s.get_cache(&k1).unwrap(), Some(serde_json::json!({"n": 1})));
    let p = |k: &Digest| root.join("cache").join(format!("{}.json", k.hex()));
    let (r1, r2) = (fs::read(p(&k1)).unwrap(), fs::read(p(&k2)).unwrap());
    fs::write(p(&k1), &r2).unwrap();
    fs::write(p(&k2), &r1).unwrap();
    assert_eq!(s.get_cache(&k1).unwrap(), None);
    assert_eq!(s.get_cache(&k2).unwrap(), None);
    let found = problems(&s);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found.iter().all(|p| p.contains("written for key")),
        "{found:?}"
    );
    // Overwriting rebinds.
    s.put_cache(&k1, &serde_json::json!({"n": 1})).unwrap();
    assert_eq!(s.get_cache(&k1).unwrap(), Some(serde_json::json!({"n": 1})));
    // A record too deep to parse is a miss, and verify names it.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    fs::write(p(&k2), deep).unwrap();
    assert_eq!(s.get_cache(&k2).unwrap(), None);
    assert!(problems(&s).iter().any(|p| p.contains("nested deeper")));
}

#[test]
fn a_directory_without_layout_json_follows_one_rule() {
    let t = tempfile::tempdir().unwrap();
    // Absent: readers say "no store" and create nothing; writers create it.
    let absent = t.path().join("absent");
    let err = Store::open_existing(&absent).err().unwrap();
    assert!(matches!(err, Error::NoStore { .. }), "{err}");
    assert!(err
        .to_string()
        .contains(&format!("no store at {}", absent.display())));
    assert!(!absent.exists());
    drop(Store::open(&absent).unwrap());
    assert!(absent.join("layout.json").is_file());
    drop(Store::open_existing(&absent).unwrap());
    // Empty (or holding only the temp file of an interrupted creation): the same as absent.
    let empty = t.path().join("empty");
    fs::create_dir(&empty).unwrap();
    fs::write(empty.join(".chasi-new-layout.1-2-3"), b"{").unwrap();
    assert!(matches!(
        Store::open_existing(&empty),
        Err(Error::NoStore { .. })
    ));
    drop(Store::open(&empty).unwrap());
    assert!(empty.join("layout.json").is_file());
    // Not empty, no layout.json (someone's directory, or a store whose layout.json was deleted): refused by every
    // opener, and nothing is written into it.
    let foreign = t.path().join("foreign");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("notes.txt"), b"mine").unwrap();
    let broken = absent.clone();
    fs::remove_file(broken.join("layout.json")).unwrap();
    let file = t.path().join("file");
    fs::write(&file, b"x").unwrap();
    for dir in [&foreign, &broken, &file] {
        let listing = |d: &Path| -> Vec<_> {
            fs::read_dir(d)
                .map(|r| r.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default()
        };
        let before = listing(dir);
        for err in [
            Store::open(dir).err().unwrap(),
            Store::open_existing(dir).err().unwrap(),
        ] {
            assert!(matches!(err, Error::NotAStore { .. }), "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("{} is not a chasi store", dir.display())),
                "{err}"
            );
        }
        assert_eq!(listing(dir), before);
    }
}
