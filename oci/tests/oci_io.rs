//! OCI image I/O against the real consumers: skopeo, umoci and containerd.
//!
//! Each test builds a small image in memory (layer tars made with the `tar` crate, zstd and
//! gzip variants), writes it with `chasi_oci`, and has the external tools read it;
//! round trips and reproducibility are checked byte for byte, and malicious or broken
//! inputs must give typed errors. Tests that need a tool fail (they do not skip) with the
//! Debian package to install when it is missing.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chasi_oci::media::{oci_layer_type, transcode};
use chasi_oci::{
    build_index, build_manifest, import_image, import_reference, load, open_image, read_index,
    read_manifest, save, select_manifest, ArchiveFormat, Descriptor, ImageRef, LayerCodec,
    LayerCompression, MediaType, MemoryBlobs, OciError, OpenedImages, Platform, SaveFormat,
    WriteOptions, ANNOTATION_SEALER_EXTENSION,
};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

// ---------------------------------------------------------------------------------------
// helpers

/// Path of an external tool, or a failure naming the Debian package.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is not installed: apt-get install -y {package}");
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn skopeo() -> Command {
    let mut c = Command::new(tool("skopeo", "skopeo"));
    // No policy.json is needed for local transports with this flag.
    c.arg("--insecure-policy");
    c
}

/// What a file system entry should be after all layers are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>, u32),
    Link(String),
}

enum Entry<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Link(&'a str, &'a str),
}

fn layer_tar(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        match e {
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).expect("dir");
            }
            Entry::File(p, data, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).expect("file");
            }
            Entry::Link(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).expect("link");
            }
        }
    }
    b.into_inner().expect("tar")
}

fn layers_plain() -> Vec<Vec<u8>> {
    vec![
        layer_tar(&[
            Entry::Dir("etc/"),
            Entry::File("etc/hostname", b"chasi\n", 0o644),
            Entry::File("etc/removed", b"gone soon\n", 0o644),
            Entry::Dir("usr/"),
            Entry::Dir("usr/bin/"),
            Entry::File("usr/bin/hello", b"#!/bin/sh\necho hello\n", 0o755),
            Entry::Link("usr/bin/hi", "hello"),
        ]),
        layer_tar(&[
            Entry::Dir("etc/"),
            Entry::File("etc/hostname", b"node-1\n", 0o644),
            Entry::File("etc/.wh.removed", b"", 0o644),
            Entry::Dir("var/"),
            Entry::File("var/motd", &[7u8; 3000], 0o600),
        ]),
    ]
}

fn expected_tree() -> BTreeMap<String, Node> {
    let mut t = BTreeMap::new();
    for d in ["etc", "usr", "usr/bin", "var"] {
        t.insert(d.to_string(), Node::Dir);
    }
    t.insert(
        "etc/hostname".into(),
        Node::File(b"node-1\n".to_vec(), 0o644),
    );
    t.insert(
        "usr/bin/hello".into(),
        Node::File(b"#!/bin/sh\necho hello\n".to_vec(), 0o755),
    );
    t.insert("usr/bin/hi".into(), Node::Link("hello".into()));
    t.insert("var/motd".into(), Node::File(vec![7u8; 3000], 0o600));
    t
}

fn read_tree(root: &Path) -> BTreeMap<String, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry"))
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&p).expect("meta");
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&p).expect("link");
                out.insert(rel, Node::Link(target.to_string_lossy().into_owned()));
            } else if meta.is_dir() {
                out.insert(rel, Node::Dir);
                walk(root, &p, out);
            } else {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o7777;
                out.insert(rel, Node::File(fs::read(&p).expect("read"), mode));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A one-platform image with layers in `codec`; returns the manifest descriptor.
fn build_image(blobs: &mut MemoryBlobs, codec: LayerCodec, arch: &str) -> Descriptor {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for plain in layers_plain() {
        let (diff_id, _, bytes) =
            transcode(&mut &plain[..], LayerCodec::Uncompressed, codec, Vec::new())
                .expect("compress");
        diff_ids.push(diff_id.to_string());
        layers.push(blobs.insert(oci_layer_type(codec), bytes));
    }
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin"], "Labels": {"io.sealer.version": "v1"}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "COPY etc etc"}, {"created_by": "COPY var var"}],
    });
    let mut annotations = BTreeMap::new();
    annotations.insert(
        ANNOTATION_SEALER_EXTENSION.to_string(),
        r#"{"schemaVersion":"v1alpha1","type":"kube-installer"}"#.to_string(),
    );
    build_manifest(blobs, &config, &layers, &annotations).expect("manifest")
}

fn opts(tag: &str, name: Option<&str>) -> WriteOptions {
    WriteOptions {
        tag: Some(tag.to_string()),
        image_name: name.map(str::to_string),
        ..WriteOptions::default()
    }
}

/// Every file under `dir` (relative path → bytes).
fn dir_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p
                    .strip_prefix(root)
                    .expect("prefix")
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("chasi-oci-test-")
        .tempdir()
        .expect("tempdir")
}

// ---------------------------------------------------------------------------------------
// pure library tests

#[test]
fn writes_are_reproducible_and_round_trip_byte_for_byte() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Zstd, "amd64");
    let o = opts("v1", Some("registry.local/chasi/test:v1"));

    for format in [
        SaveFormat::OciLayout,
        SaveFormat::OciArchive,
        SaveFormat::DockerArchive,
    ] {
        let a = t.path().join(format!("{format:?}-a"));
        let b = t.path().join(format!("{format:?}-b"));
        let c = t.path().join(format!("{format:?}-c"));
        save(&blobs, &root, format, &a, &o).expect("first write");
        save(&blobs, &root, format, &b, &o).expect("second write");
        // A store with the same blobs built again gives the same bytes too.
        let mut blobs2 = MemoryBlobs::new();
        let root2 = build_image(&mut blobs2, LayerCodec::Zstd, "amd64");
        assert_eq!(root2.digest(), root.digest(), "same inputs, same digest");

        // Read back, import into a fresh store, write again: identical bytes.
        let opened = OpenedImages::open(&a, None).expect("read back");
        let entry = opened
            .resolve(Some("v1"))
            .or_else(|_| opened.resolve(None))
            .expect("entry")
            .clone();
        let mut store = MemoryBlobs::new();
        let report = import_image(&opened, &entry.root, &mut store).expect("import");
        assert!(report.blobs_imported >= 4, "{report:?}");
        save(&store, &entry.root, format, &c, &o).expect("rewrite");

        if format == SaveFormat::OciLayout {
            assert_eq!(opened.format(), ArchiveFormat::OciLayout);
            assert_eq!(entry.root.digest(), root.digest());
            assert_eq!(dir_bytes(&a), dir_bytes(&b), "{format:?} reproducible");
            assert_eq!(dir_bytes(&a), dir_bytes(&c), "{format:?} round trip");
        } else {
            let bytes = fs::read(&a).expect("read");
            assert_eq!(
                bytes,
                fs::read(&b).expect("read"),
                "{format:?} reproducible"
            );
            assert_eq!(bytes, fs::read(&c).expect("read"), "{format:?} round trip");
        }
        if format == SaveFormat::OciArchive {
            assert_eq!(opened.format(), ArchiveFormat::OciArchive);
            assert_eq!(entry.root.digest(), root.digest());
            // Members are sorted, owned by root, dated 0.
            let mut ar = tar::Archive::new(fs::File::open(&a).expect("open"));
            let mut names = Vec::new();
            for e in ar.entries().expect("entries") {
                let e = e.expect("entry");
                assert_eq!(e.header().mtime().expect("mtime"), 0);
                assert_eq!(e.header().uid().expect("uid"), 0);
                names.push(e.path().expect("path").to_string_lossy().into_owned());
            }
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted);
            assert_eq!(names.last().map(String::as_str), Some("oci-layout"));
        }
        if format == SaveFormat::DockerArchive {
            assert_eq!(opened.format(), ArchiveFormat::DockerArchive);
            // zstd layers became plain tar; the config (and so the image ID) is unchanged.
            let (m, _) = read_manifest(&opened, &entry.root).expect("manifest");
            let (orig, _) = read_manifest(&blobs, &root).expect("manifest");
            assert_eq!(m.config().digest(), orig.config().digest());
            for l in m.layers() {
                assert_eq!(l.media_type(), &MediaType::ImageLayer);
            }
            assert!(open_image(
                &"docker-archive:/nonexistent.tar"
                    .parse::<ImageRef>()
                    .expect("ref")
            )
            .is_err());
        }
    }
}

/// The bytes `save` writes as an oci-archive and a docker-archive, pinned by SHA-256: recorded
/// before the archive writer moved into `chasi-tar`, they prove the move byte-identical.
/// Uncompressed layers, so only chasi's own writers (and canonical JSON) are pinned.
#[test]
fn saved_archive_bytes_are_pinned() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Uncompressed, "amd64");
    let o = opts("v1", Some("registry.local/chasi/test:v1"));
    let mut got = Vec::new();
    for format in [SaveFormat::OciArchive, SaveFormat::DockerArchive] {
        let path = t.path().join(format!("{format:?}.tar"));
        save(&blobs, &root, format, &path, &o).expect("save");
        let bytes = fs::read(&path).expect("read");
        got.push(format!(
            "{format:?} {}",
            hex::encode(Sha256::digest(&bytes))
        ));
    }
    assert_eq!(
        got,
        [
            "OciArchive dfbc142c56581a3d32e4cbb7557f62bd1bef0eafa67c11237c336e1617d7b6f0",
            "DockerArchive 96d423e764f33c0990696ee3a78c294ce018f3cd3c06f17b7159d1ad6b9f0b56",
        ]
    );
}

/// A source blob altered without changing its size is refused while an archive is written:
/// the archive writer reads each blob to its end, where the verifying reader checks the digest.
#[test]
fn archives_refuse_a_source_blob_that_does_not_match_its_digest() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Uncompressed, "amd64");
    let (manifest, _) = read_manifest(&blobs, &root).expect("manifest");
    let layer = manifest.layers()[0].digest().clone();
    let mut bytes = blobs.get(&layer).expect("layer").to_vec();
    bytes[0] ^= 1;
    blobs.replace_unchecked(&layer, bytes);
    for format in [SaveFormat::OciArchive, SaveFormat::DockerArchive] {
        let path = t.path().join(format!("{format:?}.tar"));
        let err = save(&blobs, &root, format, &path, &opts("v1", None)).unwrap_err();
        let msg = chasi_oci::error::chain(&err);
        assert!(msg.contains(&layer.to_string()), "{format:?}: {msg}");
        assert!(!path.exists(), "{format:?}: nothing is left behind");
    }
}

#[test]
fn gzip_recompression_rewrites_manifest_and_keeps_diff_ids() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Zstd, "amd64");
    let mut o = opts("v1", None);
    o.compression = LayerCompression::Gzip;
    let a = t.path().join("a");
    let b = t.path().join("b");
    let ra = save(&blobs, &root, SaveFormat::OciLayout, &a, &o).expect("gzip save");
    let rb = save(&blobs, &root, SaveFormat::OciLayout, &b, &o).expect("gzip save");
    assert_eq!(dir_bytes(&a), dir_bytes(&b), "gzip output is reproducible");
    assert_ne!(ra.root.digest(), root.digest(), "manifest was rewritten");
    assert_eq!(ra.root.digest(), rb.root.digest());

    let (orig, _) = read_manifest(&blobs, &root).expect("orig");
    let (img, entry) =
        open_image(&format!("oci:{}:v1", a.display()).parse().expect("ref")).expect("open");
    let (m, _) = read_manifest(&img, &entry.root).expect("new manifest");
    assert_eq!(
        m.config().digest(),
        orig.config().digest(),
        "config and diff_ids unchanged"
    );
    assert_eq!(m.annotations(), orig.annotations(), "annotations kept");
    for (new, old) in m.layers().iter().zip(orig.layers()) {
        assert_eq!(new.media_type(), &MediaType::ImageLayerGzip);
        assert_ne!(new.digest(), old.digest());
    }
    // Back to zstd gives the same layers as the (level-3) originals.
    let mut o2 = opts("v1", None);
    o2.compression = LayerCompression::Zstd;
    let c = t.path().join("c");
    let rc = save(&img, &entry.root, SaveFormat::OciLayout, &c, &o2).expect("zstd save");
    assert_eq!(
        rc.root.digest(),
        root.digest(),
        "gzip → zstd restores the original digests"
    );
}

#[test]
fn multi_platform_index_and_platform_selection() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let amd = build_image(&mut blobs, LayerCodec::Zstd, "amd64");
    let arm = build_image(&mut blobs, LayerCodec::Zstd, "arm64");
    let index =
        build_index(&mut blobs, &[amd.clone(), arm.clone()], &BTreeMap::new()).expect("index");
    assert!(build_index(&mut blobs, &[amd.clone(), amd.clone()], &BTreeMap::new()).is_err());

    let arm_spec: Platform = "linux/arm64".parse().expect("platform");
    let chosen = select_manifest(&blobs, &index, Some(&arm_spec)).expect("arm64");
    assert_eq!(chosen.digest(), arm.digest());
    let s390: Platform = "linux/s390x".parse().expect("platform");
    assert!(matches!(
        select_manifest(&blobs, &index, Some(&s390)),
        Err(OciError::NoSuchPlatform { .. })
    ));

    // OCI layout keeps the index, one manifest per platform.
    let dir = t.path().join("layout");
    save(
        &blobs,
        &index,
        SaveFormat::OciLayout,
        &dir,
        &opts("multi", None),
    )
    .expect("save");
    let (img, entry) =
        open_image(&format!("oci:{}:multi", dir.display()).parse().expect("ref")).expect("open");
    assert_eq!(entry.root.digest(), index.digest());
    let (idx, _) = read_index(&img, &entry.root).expect("index");
    let platforms: Vec<String> = idx
        .manifests()
        .iter()
        .map(|m| Platform::from_oci(m.platform().as_ref().expect("platform")).to_string())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    // skopeo copies the whole index and we read its copy back unchanged.
    let copy = t.path().join("copy");
    run(skopeo()
        .args(["copy", "--all"])
        .arg(format!("oci:{}:multi", dir.display()))
        .arg(format!("oci:{}:multi", copy.display())));
    let (img2, entry2) = open_image(
        &format!("oci:{}:multi", copy.display())
            .parse()
            .expect("ref"),
    )
    .expect("open");
    assert_eq!(entry2.root.digest(), index.digest());
    let mut sink = MemoryBlobs::new();
    import_image(&img2, &entry2.root, &mut sink).expect("import skopeo's copy");
    assert_eq!(sink.len(), blobs.len(), "every blob of both platforms");

    // `FROM oci:DIR:TAG` for one platform imports just that platform's blobs.
    let mut sink = MemoryBlobs::new();
    let r: ImageRef = format!("oci:{}:multi", dir.display()).parse().expect("ref");
    let got = import_reference(&r, Some(&arm_spec), &mut sink).expect("import arm64");
    assert_eq!(got.manifest.digest(), arm.digest());
    assert_eq!(got.names, ["multi"]);
    let (am, _) = read_manifest(&sink, &got.manifest).expect("arm manifest in the sink");
    assert!(sink.get(am.config().digest()).is_some());
    assert!(
        sink.get(amd.digest()).is_none(),
        "the amd64 manifest was not imported"
    );
    assert!(matches!(
        import_reference(&r, None, &mut MemoryBlobs::new()),
        Err(OciError::MultiPlatform { .. })
    ));

    // A docker-archive needs a platform choice.
    let tarball = t.path().join("d.tar");
    match save(
        &blobs,
        &index,
        SaveFormat::DockerArchive,
        &tarball,
        &opts("x:1", None),
    ) {
        Err(OciError::MultiPlatform { .. }) => {}
        other => panic!("expected a multi-platform error, got {other:?}"),
    }
    assert!(!tarball.exists());
    let mut o = opts("x:1", None);
    o.platform = Some(arm_spec.clone());
    save(&blobs, &index, SaveFormat::DockerArchive, &tarball, &o).expect("arm64 archive");
    let opened = OpenedImages::open(&tarball, None).expect("open");
    let e = opened.resolve(Some("x:1")).expect("by tag");
    let p = e.root.platform().as_ref().expect("platform");
    assert!(arm_spec.matches(&Platform::from_oci(p)));

    // Skopeo sees the index and picks a platform from it.
    let out = run(skopeo()
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:multi", dir.display())));
    let raw: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(raw["manifests"].as_array().map(Vec::len), Some(2));
    let out = run(skopeo()
        .args(["--override-arch", "arm64", "inspect"])
        .arg(format!("oci:{}:multi", dir.display())));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["Architecture"], "arm64");
    // skopeo reports the digest of what the reference names: the index.
    assert_eq!(v["Digest"], index.digest().to_string());
}

#[test]
fn layout_directory_accumulates_tags_and_refuses_foreign_dirs() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let a = build_image(&mut blobs, LayerCodec::Zstd, "amd64");
    let g = build_image(&mut blobs, LayerCodec::Gzip, "amd64");
    let dir = t.path().join("layout");
    save(&blobs, &a, SaveFormat::OciLayout, &dir, &opts("zstd", None)).expect("first");
    save(&blobs, &g, SaveFormat::OciLayout, &dir, &opts("gzip", None)).expect("second");
    save(&blobs, &g, SaveFormat::OciLayout, &dir, &opts("zstd", None)).expect("retag");
    let opened = OpenedImages::open(&dir, None).expect("open");
    assert_eq!(opened.entries().len(), 2);
    assert_eq!(
        opened.resolve(Some("zstd")).expect("zstd").root.digest(),
        g.digest()
    );
    assert!(matches!(
        opened.resolve(None),
        Err(OciError::AmbiguousImage { count: 2, .. })
    ));
    assert!(matches!(
        opened.resolve(Some("nope")),
        Err(OciError::NoSuchImage { .. })
    ));

    // A damaged blob in an existing layout is rewritten, not trusted.
    let (m, _) = read_manifest(&blobs, &a).expect("manifest");
    let victim = dir
        .join("blobs/sha256")
        .join(m.layers()[0].digest().digest());
    let mut bytes = fs::read(&victim).expect("read");
    bytes[0] ^= 0xff;
    fs::write(&victim, &bytes).expect("write");
    save(&blobs, &a, SaveFormat::OciLayout, &dir, &opts("zstd", None)).expect("repair");
    let opened = OpenedImages::open(&dir, None).expect("open");
    let e = opened.resolve(Some("zstd")).expect("zstd").clone();
    import_image(&opened, &e.root, &mut MemoryBlobs::new()).expect("repaired layout imports");

    let foreign = t.path().join("foreign");
    fs::create_dir(&foreign).expect("mkdir");
    fs::write(foreign.join("x"), b"x").expect("write");
    assert!(matches!(
        save(
            &blobs,
            &a,
            SaveFormat::OciLayout,
            &foreign,
            &opts("v", None)
        ),
        Err(OciError::OutputExists { .. })
    ));
    let mut sink = MemoryBlobs::new();
    let loaded = load(&dir, &mut sink).expect("load all");
    assert_eq!(loaded.len(), 2);
    assert!(loaded[1].1.blobs_present >= 1 || loaded[1].1.blobs_imported >= 1);
}

// ---------------------------------------------------------------------------------------
// hostile and broken inputs

/// A tar whose member names are written raw (the `tar` crate refuses to build these).
fn raw_tar(members: &[(&str, &[u8], tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data, kind, link) in members {
        let mut h = tar::Header::new_old();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, *data).expect("append");
    }
    b.into_inner().expect("tar")
}

#[test]
fn malicious_and_broken_archives_are_rejected_with_typed_errors() {
    let t = tmp();
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let index = br#"{"schemaVersion":2,"manifests":[]}"#;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            raw_tar(&[
                ("oci-layout", layout, tar::EntryType::Regular, ""),
                ("index.json", index, tar::EntryType::Regular, ""),
                ("blobs/../../evil", b"x", tar::EntryType::Regular, ""),
            ]),
        ),
        (
            "absolute",
            raw_tar(&[
                ("/etc/passwd", b"x", tar::EntryType::Regular, ""),
                ("oci-layout", layout, tar::EntryType::Regular, ""),
            ]),
        ),
        (
            "symlink-out",
            raw_tar(&[
                ("oci-layout", layout, tar::EntryType::Regular, ""),
                (
                    "blobs/link",
                    b"",
                    tar::EntryType::Symlink,
                    "../../../etc/shadow",
                ),
            ]),
        ),
    ];
    for (name, bytes) in cases {
        let p = t.path().join(format!("{name}.tar"));
        fs::write(&p, bytes).expect("write");
        match OpenedImages::open(&p, None) {
            Err(OciError::UnsafePath { ref member, .. }) => {
                assert!(!member.is_empty(), "{name}");
            }
            Err(e) => panic!("{name}: expected UnsafePath, got {e}"),
            Ok(_) => panic!("{name}: accepted a path traversal"),
        }
        assert!(matches!(
            ImageRef::OciArchive {
                path: p.clone(),
                tag: None
            }
            .to_string()
            .parse::<ImageRef>()
            .map(|r| open_image(&r)),
            Ok(Err(OciError::UnsafePath { .. }))
        ));
    }

    // A real archive, truncated in the middle of a blob.
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Gzip, "amd64");
    let good = t.path().join("good.tar");
    save(
        &blobs,
        &root,
        SaveFormat::OciArchive,
        &good,
        &opts("v1", None),
    )
    .expect("save");
    let bytes = fs::read(&good).expect("read");
    // Cut anywhere inside the content: an error naming the problem, never a panic or a
    // partial import.
    let n = bytes.len();
    for at in [1, 300, 511, 513, 1536, n / 3, n / 2, 2 * n / 3, n - 2048] {
        let cut = t.path().join(format!("cut-{at}.tar"));
        fs::write(&cut, &bytes[..at]).expect("write");
        let result = OpenedImages::open(&cut, None).and_then(|o| {
            let e = o.resolve(None)?.clone();
            import_image(&o, &e.root, &mut MemoryBlobs::new())
        });
        match result {
            Err(
                OciError::BadArchive { .. }
                | OciError::UnknownFormat { .. }
                | OciError::MissingBlob { .. }
                | OciError::NoSuchImage { .. },
            ) => {}
            Err(e) => panic!("cut at {at}: unexpected error kind: {e}"),
            Ok(r) => panic!("cut at {at}: a truncated archive was imported: {r:?}"),
        }
    }
    let cut = t.path().join("cut.tar");
    fs::write(&cut, &bytes[..n / 2]).expect("write");
    match OpenedImages::open(&cut, None) {
        Err(OciError::BadArchive { message, .. }) => {
            assert!(message.contains("truncated"), "{message}")
        }
        other => panic!("expected a truncation error, got {:?}", other.err()),
    }

    // A docker archive from before manifest.json existed is named as such.
    let legacy = t.path().join("legacy.tar");
    fs::write(
        &legacy,
        raw_tar(&[
            (
                "repositories",
                br#"{"x":{"1":"abc"}}"#,
                tar::EntryType::Regular,
                "",
            ),
            ("abc/layer.tar", b"", tar::EntryType::Regular, ""),
        ]),
    )
    .expect("write");
    match OpenedImages::open(&legacy, None) {
        Err(e @ OciError::UnknownFormat { .. }) => {
            assert!(e.to_string().contains("docker before 1.10"), "{e}")
        }
        other => panic!("expected UnknownFormat, got {:?}", other.err()),
    }

    // Malformed index.json: a typed error naming the file, no panic.
    let bad_index = t.path().join("bad-index.tar");
    fs::write(
        &bad_index,
        raw_tar(&[
            (
                "index.json",
                b"{\"manifests\": [",
                tar::EntryType::Regular,
                "",
            ),
            ("oci-layout", layout, tar::EntryType::Regular, ""),
        ]),
    )
    .expect("write");
    match OpenedImages::open(&bad_index, None) {
        Err(e @ OciError::BadJson { .. }) => assert!(e.to_string().contains("index.json"), "{e}"),
        other => panic!("expected BadJson, got {:?}", other.err()),
    }

    // Garbage file.
    let garbage = t.path().join("garbage.tar");
    fs::write(&garbage, vec![0x5a; 10_000]).expect("write");
    assert!(OpenedImages::open(&garbage, None).is_err());

    // A corrupted blob in a layout directory: import names its digest.
    let dir = t.path().join("layout");
    save(
        &blobs,
        &root,
        SaveFormat::OciLayout,
        &dir,
        &opts("v1", None),
    )
    .expect("save");
    let (m, _) = read_manifest(&blobs, &root).expect("manifest");
    let layer = &m.layers()[1];
    let path = dir.join("blobs/sha256").join(layer.digest().digest());
    let mut content = fs::read(&path).expect("read");
    let last = content.len() - 1;
    content[last] ^= 0xff;
    fs::write(&path, &content).expect("write");
    let (img, entry) =
        open_image(&format!("oci:{}:v1", dir.display()).parse().expect("ref")).expect("open");
    match import_image(&img, &entry.root, &mut MemoryBlobs::new()) {
        Err(OciError::DigestMismatch { expected, .. }) => {
            assert_eq!(expected, layer.digest().to_string())
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    // And the same blob truncated: a size error.
    fs::write(&path, &content[..10]).expect("write");
    match import_image(&img, &entry.root, &mut MemoryBlobs::new()) {
        Err(OciError::SizeMismatch { digest, .. }) => {
            assert_eq!(digest, layer.digest().to_string())
        }
        other => panic!("expected SizeMismatch, got {other:?}"),
    }

    // A docker-archive whose layer does not match the config's diff_id.
    let d = t.path().join("d.tar");
    save(
        &blobs,
        &root,
        SaveFormat::DockerArchive,
        &d,
        &opts("x:1", None),
    )
    .expect("save");
    let mut archive = tar::Archive::new(fs::File::open(&d).expect("open"));
    let mut members = Vec::new();
    for e in archive.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let kind = e.header().entry_type();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        members.push((name, data, kind));
    }
    let swapped: Vec<(String, Vec<u8>, tar::EntryType)> = members
        .iter()
        .map(|(n, d, k)| {
            if n.ends_with("layer.tar") {
                (
                    n.clone(),
                    layer_tar(&[Entry::File("x", b"other", 0o644)]),
                    *k,
                )
            } else {
                (n.clone(), d.clone(), *k)
            }
        })
        .collect();
    let refs: Vec<(&str, &[u8], tar::EntryType, &str)> = swapped
        .iter()
        .map(|(n, d, k)| (n.as_str(), d.as_slice(), *k, ""))
        .collect();
    let bad = t.path().join("bad-docker.tar");
    fs::write(&bad, raw_tar(&refs)).expect("write");
    match OpenedImages::open(&bad, None) {
        Err(OciError::Inconsistent { message, .. }) => assert!(
            message.contains("diff_id") || message.contains("config says"),
            "{message}"
        ),
        other => panic!("expected Inconsistent, got {:?}", other.err()),
    }
}

// ---------------------------------------------------------------------------------------
// external tools

#[test]
fn skopeo_inspects_and_copies_our_output_and_we_read_its_layouts() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Zstd, "amd64");
    let a = t.path().join("a");
    save(&blobs, &root, SaveFormat::OciLayout, &a, &opts("v1", None)).expect("layout");
    let out = run(skopeo()
        .arg("inspect")
        .arg(format!("oci:{}:v1", a.display())));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["Digest"], root.digest().to_string());
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["Architecture"], "amd64");

    // Plain copy: same manifest, and our reader reads skopeo's layout.
    let b = t.path().join("b");
    run(skopeo()
        .arg("copy")
        .arg(format!("oci:{}:v1", a.display()))
        .arg(format!("oci:{}:v1", b.display())));
    let (img, entry) =
        open_image(&format!("oci:{}:v1", b.display()).parse().expect("ref")).expect("open b");
    assert_eq!(entry.root.digest(), root.digest());
    let mut store = MemoryBlobs::new();
    import_image(&img, &entry.root, &mut store).expect("import b");
    for d in blobs.digests() {
        assert!(store.get(d).is_some(), "blob {d} missing after the copy");
    }

    // oci-archive and docker-archive are accepted by skopeo's readers.
    let oa = t.path().join("img.oci.tar");
    save(
        &blobs,
        &root,
        SaveFormat::OciArchive,
        &oa,
        &opts("v1", None),
    )
    .expect("oci-archive");
    let out = run(skopeo()
        .arg("inspect")
        .arg(format!("oci-archive:{}:v1", oa.display())));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["Digest"], root.digest().to_string());

    let da = t.path().join("img.docker.tar");
    save(
        &blobs,
        &root,
        SaveFormat::DockerArchive,
        &da,
        &opts("chasi/test:v1", None),
    )
    .expect("docker-archive");
    let out = run(skopeo()
        .arg("inspect")
        .arg(format!("docker-archive:{}", da.display())));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["Layers"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["Architecture"], "amd64");
    let (m, _) = read_manifest(&blobs, &root).expect("manifest");
    let out = run(skopeo()
        .args(["inspect", "--config"])
        .arg(format!("docker-archive:{}", da.display())));
    let cfg: Value = serde_json::from_str(&out).expect("json");
    let (orig_cfg, _) = chasi_oci::read_config(&blobs, m.config()).expect("config");
    assert_eq!(
        cfg["rootfs"], orig_cfg["rootfs"],
        "diff_ids survive the docker-archive"
    );

    // skopeo can copy our docker-archive to a layout that we read back.
    let c = t.path().join("c");
    run(skopeo()
        .arg("copy")
        .arg(format!("docker-archive:{}", da.display()))
        .arg(format!("oci:{}:from-docker", c.display())));
    let (img, entry) = open_image(
        &format!("oci:{}:from-docker", c.display())
            .parse()
            .expect("ref"),
    )
    .expect("open c");
    import_image(&img, &entry.root, &mut MemoryBlobs::new()).expect("import c");
}

#[test]
fn umoci_unpacks_exactly_the_tree_we_built() {
    let umoci = tool("umoci", "umoci");
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Zstd, "amd64");

    // 1) our own gzip save
    let ours = t.path().join("ours");
    let mut o = opts("v1", None);
    o.compression = LayerCompression::Gzip;
    save(&blobs, &root, SaveFormat::OciLayout, &ours, &o).expect("gzip save");
    let bundle = t.path().join("bundle-ours");
    run(Command::new(&umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", ours.display()))
        .arg(&bundle));
    assert_eq!(read_tree(&bundle.join("rootfs")), expected_tree());

    // 2) skopeo's gzip re-compression of our zstd layout, which we also read back
    let a = t.path().join("a");
    save(&blobs, &root, SaveFormat::OciLayout, &a, &opts("v1", None)).expect("zstd save");
    let b = t.path().join("b");
    run(skopeo()
        .args(["copy", "--dest-compress", "--dest-compress-format", "gzip"])
        .arg(format!("oci:{}:v1", a.display()))
        .arg(format!("oci:{}:v1", b.display())));
    let bundle = t.path().join("bundle-skopeo");
    run(Command::new(&umoci)
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", b.display()))
        .arg(&bundle));
    assert_eq!(read_tree(&bundle.join("rootfs")), expected_tree());

    let (img, entry) =
        open_image(&format!("oci:{}:v1", b.display()).parse().expect("ref")).expect("open");
    let (m, _) = read_manifest(&img, &entry.root).expect("manifest");
    let (orig, _) = read_manifest(&blobs, &root).expect("orig");
    assert_eq!(
        m.config().digest(),
        orig.config().digest(),
        "diff_ids unchanged"
    );
    for l in m.layers() {
        assert_eq!(l.media_type(), &MediaType::ImageLayerGzip);
    }
    import_image(&img, &entry.root, &mut MemoryBlobs::new()).expect("import skopeo gzip copy");
}

/// A containerd started for one test, killed when dropped (also on panic).
struct Containerd {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Self {
        let bin = tool("containerd", "containerd");
        let dir = tempfile::Builder::new()
            .prefix("chasi-ctd-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n[grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
                root = dir.path().join("root").display(),
                state = dir.path().join("state").display(),
                sock = socket.display(),
            ),
        )
        .expect("config");
        let log = fs::File::create(dir.path().join("containerd.log")).expect("log");
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let me = Containerd {
            child,
            socket,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !me.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "containerd did not create {} within 30 s; log:\n{}",
                me.socket.display(),
                fs::read_to_string(me._dir.path().join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        me
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new(tool("ctr", "containerd"));
        c.arg("--address").arg(&self.socket).args(["-n", "test"]);
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn containerd_imports_our_oci_archive_and_docker_archive() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let zstd_root = build_image(&mut blobs, LayerCodec::Zstd, "amd64");
    let ctd = Containerd::start();

    let oa = t.path().join("img.oci.tar");
    save(
        &blobs,
        &zstd_root,
        SaveFormat::OciArchive,
        &oa,
        &opts("v1", Some("docker.io/library/chasi-oci:v1")),
    )
    .expect("oci-archive");
    run(ctd.ctr().args(["images", "import", "--no-unpack"]).arg(&oa));

    let da = t.path().join("img.docker.tar");
    save(
        &blobs,
        &zstd_root,
        SaveFormat::DockerArchive,
        &da,
        &opts("v1", Some("chasi-docker:v1")),
    )
    .expect("docker-archive");
    run(ctd.ctr().args(["images", "import", "--no-unpack"]).arg(&da));

    // gzip layers kept as gzip in a docker-archive.
    let mut gz_blobs = MemoryBlobs::new();
    let gz_root = build_image(&mut gz_blobs, LayerCodec::Gzip, "amd64");
    let dg = t.path().join("img.docker-gzip.tar");
    save(
        &gz_blobs,
        &gz_root,
        SaveFormat::DockerArchive,
        &dg,
        &opts("v1", Some("chasi-docker-gzip:v1")),
    )
    .expect("gzip docker-archive");
    run(ctd.ctr().args(["images", "import", "--no-unpack"]).arg(&dg));

    // A multi-platform index, all platforms imported.
    let arm = build_image(&mut blobs, LayerCodec::Zstd, "arm64");
    let index =
        build_index(&mut blobs, &[zstd_root.clone(), arm], &BTreeMap::new()).expect("index");
    let ma = t.path().join("multi.oci.tar");
    save(
        &blobs,
        &index,
        SaveFormat::OciArchive,
        &ma,
        &opts("v1", Some("docker.io/library/chasi-multi:v1")),
    )
    .expect("multi-platform oci-archive");
    run(ctd
        .ctr()
        .args(["images", "import", "--no-unpack", "--all-platforms"])
        .arg(&ma));

    let ls = run(ctd.ctr().args(["images", "ls"]));
    assert!(ls.contains("chasi-docker-gzip:v1"), "{ls}");
    assert!(
        ls.lines().any(|l| l.contains("chasi-multi:v1")
            && l.contains(&index.digest().to_string())
            && l.contains("linux/amd64")
            && l.contains("linux/arm64")),
        "the multi-platform index is imported as one image:\n{ls}"
    );
    // `check` reports whether containerd holds every blob each image needs.
    let check = run(ctd.ctr().args(["images", "check"]));
    for name in [
        "chasi-oci:v1",
        "chasi-docker:v1",
        "chasi-docker-gzip:v1",
        "chasi-multi:v1",
    ] {
        assert!(
            check
                .lines()
                .any(|l| l.contains(name) && l.contains("complete")),
            "{name} is not complete in containerd:\n{check}"
        );
    }
    assert!(ls.contains("docker.io/library/chasi-oci:v1"), "{ls}");
    assert!(ls.contains("docker.io/library/chasi-docker:v1"), "{ls}");
    assert!(
        ls.lines()
            .any(|l| l.contains("chasi-oci:v1") && l.contains(&zstd_root.digest().to_string())),
        "the oci-archive keeps our manifest digest:\n{ls}"
    );
    // containerd checks content on export too: export it again and read it with our reader.
    let back = t.path().join("back.tar");
    run(ctd
        .ctr()
        .args(["images", "export"])
        .arg(&back)
        .arg("docker.io/library/chasi-oci:v1"));
    let opened = OpenedImages::open(&back, None).expect("read containerd's export");
    let e = opened
        .resolve(Some("docker.io/library/chasi-oci:v1"))
        .expect("by containerd name")
        .clone();
    assert_eq!(e.root.digest(), zstd_root.digest());
    import_image(&opened, &e.root, &mut MemoryBlobs::new()).expect("import containerd export");
}

#[test]
fn mutated_archives_never_panic_and_never_import_wrong_content() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Gzip, "amd64");
    for format in [SaveFormat::OciArchive, SaveFormat::DockerArchive] {
        let good = t.path().join(format!("{format:?}.tar"));
        save(&blobs, &root, format, &good, &opts("x:1", None)).expect("save");
        let bytes = fs::read(&good).expect("read");
        let (mut imported, mut rejected) = (0, 0);
        for (i, at) in (0..bytes.len()).step_by(61).enumerate() {
            let mut bad = bytes.clone();
            bad[at] ^= [0x55, 0x01, 0xff, 0x20][i % 4];
            let p = t.path().join("mutated.tar");
            fs::write(&p, &bad).expect("write");
            let mut sink = MemoryBlobs::new();
            let result = OpenedImages::open(&p, None).and_then(|o| {
                let e = o.resolve(None)?.clone();
                import_image(&o, &e.root, &mut sink)
            });
            match result {
                Ok(_) => {
                    imported += 1;
                    // Whatever was accepted must be exactly the original content (the
                    // mutation hit padding, a mode or an mtime).
                    for d in sink.digests() {
                        if let Some(orig) = blobs.get(d) {
                            assert_eq!(sink.get(d), Some(orig));
                        }
                    }
                }
                Err(e) => {
                    rejected += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        assert!(
            rejected > 0 && imported > 0,
            "{format:?}: {imported} imported, {rejected} rejected"
        );
    }

    // Malformed JSON in correctly-addressed blobs: errors, not panics.
    let mut junk = MemoryBlobs::new();
    for text in [
        &b"{"[..],
        b"[]",
        b"{\"schemaVersion\":2}",
        b"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:00\",\"size\":1},\"layers\":[]}",
        b"{\"schemaVersion\":1,\"config\":{},\"layers\":null}",
        b"\xff\xfe",
    ] {
        let d = junk.insert(MediaType::ImageManifest, text.to_vec());
        assert!(read_manifest(&junk, &d).is_err(), "{:?}", String::from_utf8_lossy(text));
        let d = junk.insert(MediaType::ImageIndex, text.to_vec());
        assert!(read_index(&junk, &d).is_err(), "{:?}", String::from_utf8_lossy(text));
        assert!(import_image(&junk, &d, &mut MemoryBlobs::new()).is_err());
    }
}

// ---------------------------------------------------------------------------------------
// crafted layouts: every refusal happens at load, names the digest, and writes nothing

/// `{mediaType, digest, size}` of a descriptor.
fn desc_json(d: &Descriptor) -> Value {
    json!({"mediaType": d.media_type().to_string(), "digest": d.digest().to_string(), "size": d.size()})
}

/// An `index.json` listing `entries`, each with an optional ref name.
fn index_json(entries: &[(&Descriptor, Option<&str>)]) -> Vec<u8> {
    let manifests: Vec<Value> = entries
        .iter()
        .map(|(d, name)| {
            let mut v = desc_json(d);
            if let Some(n) = name {
                v["annotations"] = json!({"org.opencontainers.image.ref.name": n});
            }
            v
        })
        .collect();
    serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": manifests})).expect("json")
}

fn add_member(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    b.append_data(&mut h, name, data).expect("append");
}

/// Writes an oci-archive of every blob in `blobs` with `index` as its `index.json`.
fn oci_archive_of(path: &Path, blobs: &MemoryBlobs, index: &[u8]) {
    let mut b = tar::Builder::new(Vec::new());
    add_member(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add_member(&mut b, "index.json", index);
    for d in blobs.digests() {
        let data = blobs.get(d).expect("blob");
        add_member(&mut b, &format!("blobs/sha256/{}", d.digest()), data);
    }
    fs::write(path, b.into_inner().expect("tar")).expect("write");
}

/// Stores a manifest over `config` and `layers` and returns its descriptor.
fn put_manifest(
    blobs: &mut MemoryBlobs,
    config: &Descriptor,
    layers: &[&Descriptor],
) -> Descriptor {
    let doc = json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest.to_string(),
        "config": desc_json(config),
        "layers": layers.iter().map(|l| desc_json(l)).collect::<Vec<_>>(),
    });
    blobs.insert(
        MediaType::ImageManifest,
        serde_json::to_vec(&doc).expect("json"),
    )
}

/// Loads `path` into a fresh sink; asserts it fails and that nothing was written.
fn load_fails(path: &Path) -> OciError {
    let mut sink = MemoryBlobs::new();
    let err = match load(path, &mut sink) {
        Ok(r) => panic!("{} loaded: {r:?}", path.display()),
        Err(e) => e,
    };
    assert!(sink.is_empty(), "{err}: {} blobs were written", sink.len());
    err
}

#[test]
fn a_manifest_nested_200000_deep_is_refused_at_load_and_nothing_is_stored() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Gzip, "amd64");
    let (m, _) = read_manifest(&blobs, &root).expect("manifest");
    // An unknown field serde skips without a recursion limit.
    let deep = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{},"layers":[],"x":{}{}}}"#,
        MediaType::ImageManifest,
        desc_json(m.config()),
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    let bad = blobs.insert(MediaType::ImageManifest, deep.into_bytes());
    let p = t.path().join("deep.tar");
    oci_archive_of(
        &p,
        &blobs,
        &index_json(&[(&root, Some("good")), (&bad, Some("deep"))]),
    );
    let err = load_fails(&p);
    let text = err.to_string();
    assert!(
        matches!(err, OciError::BadJson { .. }) && text.contains("nested more than 64 deep"),
        "{text}"
    );
    assert!(text.contains(&bad.digest().to_string()), "{text}");
    // The same through `FROM oci-archive:…:deep`.
    let r: ImageRef = format!("oci-archive:{}:deep", p.display())
        .parse()
        .expect("ref");
    let mut sink = MemoryBlobs::new();
    assert!(import_reference(&r, None, &mut sink).is_err());
    assert!(sink.is_empty());
    // An index.json nested as deep is refused when the archive is opened.
    let deep_index = format!(
        r#"{{"schemaVersion":2,"manifests":[],"x":{}{}}}"#,
        "{\"a\":".repeat(100_000),
        "}".repeat(100_000)
    );
    oci_archive_of(&p, &blobs, deep_index.as_bytes());
    match OpenedImages::open(&p, None) {
        Err(e @ OciError::BadJson { .. }) => assert!(e.to_string().contains("index.json"), "{e}"),
        other => panic!("expected BadJson, got {:?}", other.err()),
    }
}

#[test]
fn manifests_chained_5000_deep_as_layers_or_config_are_refused_without_recursion() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Gzip, "amd64");
    let (m, _) = read_manifest(&blobs, &root).expect("manifest");
    let config = m.config().clone();
    let (mut as_layer, mut as_config) = (root.clone(), root.clone());
    for _ in 0..5000 {
        as_layer = put_manifest(&mut blobs, &config, &[&as_layer]);
        as_config = put_manifest(&mut blobs, &as_config, &[]);
    }
    for (top, role) in [(&as_layer, "layer"), (&as_config, "config")] {
        let p = t.path().join(format!("chain-{role}.tar"));
        oci_archive_of(&p, &blobs, &index_json(&[(top, Some("v1"))]));
        let err = load_fails(&p);
        let text = err.to_string();
        assert!(text.contains(&top.digest().to_string()), "{text}");
        assert!(text.contains(&format!("cannot be a {role}")), "{text}");
        // `FROM oci-archive:` goes through the same reader.
        let r: ImageRef = format!("oci-archive:{}:v1", p.display())
            .parse()
            .expect("ref");
        let mut sink = MemoryBlobs::new();
        match import_reference(&r, None, &mut sink) {
            Err(e) => assert!(
                e.to_string().contains(&format!("cannot be a {role}")),
                "{e}"
            ),
            Ok(i) => panic!("imported {i:?}"),
        }
        assert!(sink.is_empty());
    }
    // An index typed as a layer is refused the same way.
    let index = blobs.insert(MediaType::ImageIndex, index_json(&[(&root, None)]));
    let top = put_manifest(&mut blobs, &config, &[&index]);
    let p = t.path().join("index-as-layer.tar");
    oci_archive_of(&p, &blobs, &index_json(&[(&top, Some("v1"))]));
    assert!(load_fails(&p).to_string().contains("cannot be a layer"));
}

/// A zstd frame whose header declares a 2 GiB window, holding `payload` in a raw block.
fn zstd_2gib_window(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 21 << 3];
    let header = 1 | ((payload.len() as u32) << 3);
    f.extend_from_slice(&header.to_le_bytes()[..3]);
    f.extend_from_slice(payload);
    f
}

#[test]
fn zstd_layers_declaring_a_2_gib_window_are_refused_by_name() {
    let t = tmp();
    let payload = layer_tar(&[Entry::File("x", b"x", 0o644)]);
    let layer_bytes = zstd_2gib_window(&payload);
    let diff_id = chasi_oci::digest::sha256_digest(&payload);
    let want = "zstd frame needs a window of 2048 MiB, more than the 128 MiB accepted";

    // docker-archive: the layer is decoded to hash it when the archive is opened.
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    }))
    .expect("json");
    let config_name = format!(
        "{}.json",
        chasi_oci::digest::sha256_digest(&config).digest()
    );
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name, "RepoTags": ["zst:1"], "Layers": ["l/layer.tar"],
    }]))
    .expect("json");
    let mut b = tar::Builder::new(Vec::new());
    add_member(&mut b, "manifest.json", &manifest);
    add_member(&mut b, &config_name, &config);
    add_member(&mut b, "l/layer.tar", &layer_bytes);
    let d = t.path().join("zst-docker.tar");
    fs::write(&d, b.into_inner().expect("tar")).expect("write");
    let err = load_fails(&d);
    assert!(
        chasi_oci::error::chain(&err).contains(want),
        "{}",
        chasi_oci::error::chain(&err)
    );
    assert!(
        chasi_oci::error::chain(&err).contains("l/layer.tar"),
        "{}",
        chasi_oci::error::chain(&err)
    );

    // oci-archive: the layer is decoded at load to check its DiffID.
    let mut blobs = MemoryBlobs::new();
    let layer = blobs.insert(MediaType::ImageLayerZstd, layer_bytes);
    let config = blobs.insert(MediaType::ImageConfig, config);
    let m = put_manifest(&mut blobs, &config, &[&layer]);
    let p = t.path().join("zst-oci.tar");
    oci_archive_of(&p, &blobs, &index_json(&[(&m, Some("v1"))]));
    let err = load_fails(&p);
    assert!(
        chasi_oci::error::chain(&err).contains(want),
        "{}",
        chasi_oci::error::chain(&err)
    );
    assert!(
        chasi_oci::error::chain(&err).contains(&layer.digest().to_string()),
        "{}",
        chasi_oci::error::chain(&err)
    );
}

#[test]
fn diff_ids_layer_types_and_nested_indexes_are_checked_at_load() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Gzip, "amd64");
    let (m, _) = read_manifest(&blobs, &root).expect("manifest");
    let layers: Vec<&Descriptor> = m.layers().iter().collect();
    let (config, _) = chasi_oci::read_config(&blobs, m.config()).expect("config");
    let with_ids = |blobs: &mut MemoryBlobs, ids: Vec<String>| {
        let mut c = config.clone();
        c["rootfs"]["diff_ids"] = json!(ids);
        blobs.insert(
            MediaType::ImageConfig,
            serde_json::to_vec(&c).expect("json"),
        )
    };
    let ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_str().expect("str").to_string())
        .collect();
    let mut cases: Vec<(&str, Descriptor, String)> = Vec::new();

    // One diff_id short.
    let c = with_ids(&mut blobs, ids[..1].to_vec());
    let man = put_manifest(&mut blobs, &c, &layers);
    cases.push((
        "count",
        man.clone(),
        format!("2 layers but 1 diff_ids in config {}", c.digest()),
    ));
    // The diff_ids swapped: each layer decompresses to the other's.
    let c = with_ids(&mut blobs, vec![ids[1].clone(), ids[0].clone()]);
    let man = put_manifest(&mut blobs, &c, &layers);
    cases.push((
        "values",
        man.clone(),
        format!("layer {} decompresses to {}", layers[0].digest(), ids[0]),
    ));
    // A layer of a media type this store cannot read.
    let mut odd = layers[0].clone();
    odd.set_media_type(MediaType::Other(
        "application/vnd.oci.image.layer.v1.tar+encrypted".into(),
    ));
    let man = put_manifest(&mut blobs, m.config(), &[&odd, layers[1]]);
    cases.push((
        "media type",
        man,
        format!(
            "unsupported media type `application/vnd.oci.image.layer.v1.tar+encrypted` for blob {}",
            odd.digest()
        ),
    ));
    // A nested index listing a layer as if it were a manifest entry.
    let nested = blobs.insert(
        MediaType::ImageIndex,
        index_json(&[(&root, None), (layers[0], None)]),
    );
    let outer = blobs.insert(MediaType::ImageIndex, index_json(&[(&nested, None)]));
    cases.push((
        "nested entry",
        outer,
        format!(
            "inconsistent image {}: the index lists {}",
            nested.digest(),
            layers[0].digest()
        ),
    ));
    // A nested index whose manifest is not in the archive.
    let mut missing = root.clone();
    missing.set_digest(chasi_oci::digest::sha256_digest(b"absent"));
    let nested = blobs.insert(MediaType::ImageIndex, index_json(&[(&missing, None)]));
    let outer = blobs.insert(MediaType::ImageIndex, index_json(&[(&nested, None)]));
    cases.push((
        "nested missing",
        outer,
        format!("blob {} is missing", missing.digest()),
    ));
    // A nested index listing nothing.
    let empty = blobs.insert(MediaType::ImageIndex, index_json(&[]));
    let outer = blobs.insert(
        MediaType::ImageIndex,
        index_json(&[(&root, None), (&empty, None)]),
    );
    cases.push((
        "nested empty",
        outer,
        format!(
            "inconsistent image {}: the index lists no manifests",
            empty.digest()
        ),
    ));
    // Indexes nested five deep.
    let mut deep = root.clone();
    for _ in 0..5 {
        deep = blobs.insert(MediaType::ImageIndex, index_json(&[(&deep, None)]));
    }
    cases.push((
        "index depth",
        deep,
        "image indexes nested more than 4 deep".to_string(),
    ));

    for (name, top, want) in cases {
        // A good image first: the bad one must not leave it half-imported either.
        let p = t.path().join("case.tar");
        oci_archive_of(&p, &blobs, &index_json(&[(&top, Some("bad"))]));
        let err = load_fails(&p);
        assert!(
            err.to_string().contains(&want),
            "{name}: {err}\nwanted: {want}"
        );
    }
    // The untouched image still loads from the same blobs.
    let p = t.path().join("good.tar");
    oci_archive_of(&p, &blobs, &index_json(&[(&root, Some("good"))]));
    let mut sink = MemoryBlobs::new();
    load(&p, &mut sink).expect("the good image loads");
}

#[test]
fn invalid_image_names_and_empty_indexes_are_refused() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Gzip, "amd64");
    let long = "a".repeat(300);
    for name in [
        "../..",
        "a/../../b",
        "x\ny",
        "tab\there",
        "bell\u{7}",
        "",
        long.as_str(),
    ] {
        let p = t.path().join("names.tar");
        oci_archive_of(&p, &blobs, &index_json(&[(&root, Some(name))]));
        match OpenedImages::open(&p, None) {
            Err(e @ OciError::BadJson { .. }) => {
                let text = e.to_string();
                assert!(text.contains("index.json"), "{text}");
                assert!(text.contains(&root.digest().to_string()), "{text}");
                assert!(!text.contains('\n') && !text.contains('\u{7}'), "{text:?}");
                assert!(text.len() < 500, "{text}");
            }
            other => panic!("{name:?}: expected BadJson, got {:?}", other.err()),
        }
        assert!(load_fails(&p).to_string().contains("named"));
    }
    let p = t.path().join("empty.tar");
    oci_archive_of(&p, &blobs, &index_json(&[]));
    match OpenedImages::open(&p, None) {
        Err(e) => assert!(
            e.to_string().contains("the index lists no manifests"),
            "{e}"
        ),
        Ok(_) => panic!("an empty index opened"),
    }
    // A docker-archive: RepoTags are checked the same way, and an empty list is refused.
    let d = t.path().join("d.tar");
    save(
        &blobs,
        &root,
        SaveFormat::DockerArchive,
        &d,
        &opts("x:1", None),
    )
    .expect("save");
    let rewrite = |manifest: &[u8]| {
        let mut ar = tar::Archive::new(fs::File::open(&d).expect("open"));
        let mut b = tar::Builder::new(Vec::new());
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let name = e.path().expect("path").to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read");
            if name == "manifest.json" {
                data = manifest.to_vec();
            }
            if e.header().entry_type() == tar::EntryType::Regular {
                add_member(&mut b, &name, &data);
            }
        }
        let out = t.path().join("d2.tar");
        fs::write(&out, b.into_inner().expect("tar")).expect("write");
        out
    };
    let mut ar = tar::Archive::new(fs::File::open(&d).expect("open"));
    let mut list: Value = Value::Null;
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.path().expect("path").to_string_lossy() == "manifest.json" {
            list = serde_json::from_reader(&mut e).expect("manifest.json");
        }
    }
    list[0]["RepoTags"] = json!(["../../etc:x"]);
    let bad = rewrite(&serde_json::to_vec(&list).expect("json"));
    let err = load_fails(&bad);
    assert!(err.to_string().contains("\"../../etc:x\""), "{err}");
    let empty = rewrite(b"[]");
    assert!(load_fails(&empty).to_string().contains("lists no images"));
}

/// splitmix64: a deterministic stream for the mutation test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The regular members of a tar, in order.
fn tar_members(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(bytes);
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = e.path().expect("path").to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        out.push((name, data));
    }
    out
}

/// One random change: to the raw bytes of the archive, or (rebuilt as a valid tar) to one
/// of its JSON members, which is what reaches the document readers.
fn mutate(rng: &mut Rng, good: &[u8], members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = good.to_vec();
    let at = rng.below(bytes.len());
    match rng.below(6) {
        0 => bytes[at] ^= 1 << rng.below(8),
        1 => bytes[at] = rng.next() as u8,
        2 => bytes.truncate(at),
        3 => {
            let n = 1 + rng.below(16);
            let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            bytes.splice(at..at, junk);
        }
        _ => {
            let json: Vec<usize> = (0..members.len())
                .filter(|&i| members[i].0.ends_with(".json") || !members[i].0.contains('/'))
                .collect();
            let pick = json[rng.below(json.len())];
            let mut b = tar::Builder::new(Vec::new());
            for (i, (name, data)) in members.iter().enumerate() {
                let mut data = data.clone();
                if i == pick {
                    let at = rng.below(data.len());
                    let tokens: [&[u8]; 12] = [
                        b"{",
                        b"}",
                        b"[",
                        b"]",
                        b"\"",
                        b":",
                        b",",
                        b"\\",
                        b"0",
                        b"-1e999",
                        b"null",
                        b"\"sha256:00\"",
                    ];
                    match rng.below(3) {
                        0 => {
                            let t = tokens[rng.below(tokens.len())];
                            data.splice(at..at, t.iter().copied());
                        }
                        1 => {
                            let end = (at + 1 + rng.below(8)).min(data.len());
                            data.drain(at..end);
                        }
                        _ => {
                            let end = (at + rng.below(64)).min(data.len());
                            let copy = data[at..end].to_vec();
                            data.splice(at..at, copy);
                        }
                    }
                }
                add_member(&mut b, name, &data);
            }
            bytes = b.into_inner().expect("tar");
        }
    }
    bytes
}

#[test]
fn thousands_of_random_mutations_of_small_archives_load_without_panicking() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Gzip, "amd64");
    let started = Instant::now();
    let mut rng = Rng(0x0c1_a5e5);
    for format in [SaveFormat::OciArchive, SaveFormat::DockerArchive] {
        let good_path = t.path().join(format!("{format:?}.tar"));
        save(&blobs, &root, format, &good_path, &opts("x:1", None)).expect("save");
        let good = fs::read(&good_path).expect("read");
        let members = tar_members(&good);
        let (mut loaded, mut refused) = (0, 0);
        for i in 0..1500 {
            let bytes = mutate(&mut rng, &good, &members);
            let p = t.path().join("mutated.tar");
            fs::write(&p, &bytes).expect("write");
            let layout = t.path().join("layout");
            let _ = fs::remove_dir_all(&layout);
            let outcome = std::panic::catch_unwind(|| {
                let mut sink = MemoryBlobs::new();
                let result = load(&p, &mut sink);
                if i % 10 == 0 {
                    let mut dir = chasi_oci::DirBlobs::new(&layout);
                    let again = load(&p, &mut dir);
                    assert_eq!(result.is_ok(), again.is_ok(), "same verdict for any sink");
                }
                result.map(|r| r.len())
            });
            match outcome {
                Ok(Ok(_)) => loaded += 1,
                Ok(Err(e)) => {
                    refused += 1;
                    let text = e.to_string();
                    assert!(!text.is_empty() && text.len() < 2000, "{text}");
                }
                Err(_) => {
                    let keep =
                        std::env::temp_dir().join(format!("chasi-oci-panic-{format:?}-{i}.tar"));
                    fs::write(&keep, &bytes).expect("keep");
                    panic!(
                        "load panicked on mutation {i}; input kept at {}",
                        keep.display()
                    );
                }
            }
        }
        assert!(
            loaded > 0 && refused > 0,
            "{format:?}: {loaded} loaded, {refused} refused"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// skopeo (like buildah and podman) writes a docker-archive whose layers are stored once as
/// `<digest>.tar` and linked from the legacy `<id>/layer.tar` by a relative symlink
/// (`../<digest>.tar`): we read it and import exactly the image we saved.
#[test]
fn docker_archives_written_by_skopeo_with_member_links_are_read() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Gzip, "amd64");
    let oa = t.path().join("img.oci.tar");
    save(
        &blobs,
        &root,
        SaveFormat::OciArchive,
        &oa,
        &opts("v1", None),
    )
    .expect("oci-archive");
    let da = t.path().join("skopeo.docker.tar");
    run(skopeo()
        .arg("copy")
        .arg(format!("oci-archive:{}:v1", oa.display()))
        .arg(format!("docker-archive:{}:chasi/skopeo:v1", da.display())));
    let listing = run(Command::new("tar").arg("-tvf").arg(&da));
    assert!(
        listing.contains("/layer.tar -> ../"),
        "skopeo links its layers: {listing}"
    );

    let opened = OpenedImages::open(&da, None).expect("open skopeo's docker-archive");
    let entry = opened.resolve(None).expect("one image").clone();
    assert!(
        entry.names.iter().any(|n| n.ends_with("chasi/skopeo:v1")),
        "{:?}",
        entry.names
    );
    let mut store = MemoryBlobs::new();
    import_image(&opened, &entry.root, &mut store).expect("import skopeo's docker-archive");
    let (ours, _) = read_manifest(&blobs, &root).expect("manifest");
    let (theirs, _) = read_manifest(&store, &entry.root).expect("imported manifest");
    let (a, _) = chasi_oci::read_config(&blobs, ours.config()).expect("config");
    let (b, _) = chasi_oci::read_config(&store, theirs.config()).expect("config");
    assert_eq!(a["rootfs"], b["rootfs"], "same diff_ids");
    assert_eq!(theirs.layers().len(), 2);
}

/// An oci-archive compressed as a whole (`gzip`, `zstd`, `xz`, `bzip2`, as people ship them) is
/// named as such, with the command that makes the tar, instead of a tar header parse error.
#[test]
fn compressed_archives_are_named_by_their_compression() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let root = build_image(&mut blobs, LayerCodec::Gzip, "amd64");
    let oa = t.path().join("img.oci.tar");
    save(
        &blobs,
        &root,
        SaveFormat::OciArchive,
        &oa,
        &opts("v1", None),
    )
    .expect("oci-archive");
    for (tool_name, package, what) in [
        ("gzip", "gzip", "gzip"),
        ("zstd", "zstd", "zstd"),
        ("xz", "xz-utils", "xz"),
        ("bzip2", "bzip2", "bzip2"),
    ] {
        let packed = t.path().join(format!("img.oci.tar.{tool_name}"));
        let out = Command::new(tool(tool_name, package))
            .arg("-c")
            .arg(&oa)
            .output()
            .expect("compress");
        assert!(out.status.success(), "{tool_name}");
        fs::write(&packed, &out.stdout).expect("write");
        for format in [
            None,
            Some(ArchiveFormat::OciArchive),
            Some(ArchiveFormat::DockerArchive),
        ] {
            let err = match OpenedImages::open(&packed, format) {
                Err(e) => e,
                Ok(_) => panic!("{tool_name}: a compressed file was read as a tar"),
            };
            assert!(matches!(err, OciError::UnknownFormat { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("it is a {what}-compressed file"))
                    && msg.contains(&format!("{tool_name} -dc")),
                "{msg}"
            );
        }
    }
}

/// `save` with a platform writes OCI layouts and archives holding that platform's manifest
/// alone (skopeo sees a single-platform image), and refuses a platform the image lacks.
#[test]
fn save_with_a_platform_writes_that_platform_alone_to_oci_layouts_and_archives() {
    let t = tmp();
    let mut blobs = MemoryBlobs::new();
    let amd = build_image(&mut blobs, LayerCodec::Zstd, "amd64");
    let arm = build_image(&mut blobs, LayerCodec::Zstd, "arm64");
    let index =
        build_index(&mut blobs, &[amd.clone(), arm.clone()], &BTreeMap::new()).expect("index");
    let mut o = opts("v1", None);
    o.platform = Some("linux/arm64".parse().expect("platform"));

    let dir = t.path().join("layout");
    save(&blobs, &index, SaveFormat::OciLayout, &dir, &o).expect("layout");
    let oa = t.path().join("arm.oci.tar");
    save(&blobs, &index, SaveFormat::OciArchive, &oa, &o).expect("archive");
    for reference in [
        format!("oci:{}:v1", dir.display()),
        format!("oci-archive:{}:v1", oa.display()),
    ] {
        let (img, entry) = open_image(&reference.parse().expect("ref")).expect("open");
        assert_eq!(entry.root.digest(), arm.digest(), "{reference}");
        let (m, _) = read_manifest(&img, &entry.root).expect("a manifest, not an index");
        assert_eq!(m.layers().len(), 2);
        let v: Value =
            serde_json::from_str(&run(skopeo().arg("inspect").arg(&reference))).expect("json");
        assert_eq!(v["Digest"], arm.digest().to_string(), "{reference}");
        assert_eq!(v["Architecture"], "arm64", "{reference}");
    }
    let layout_index: Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).expect("index.json"))
            .expect("json");
    assert_eq!(layout_index["manifests"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        layout_index["manifests"][0]["digest"],
        arm.digest().to_string()
    );

    // A platform the image lacks, from an index or from a single manifest, is refused.
    o.platform = Some("linux/s390x".parse().expect("platform"));
    for (root, name) in [(&index, "index"), (&amd, "manifest")] {
        let out = t.path().join(format!("s390x-{name}.tar"));
        match save(&blobs, root, SaveFormat::OciArchive, &out, &o) {
            Err(OciError::NoSuchPlatform { .. }) => {}
            other => panic!("{name}: expected NoSuchPlatform, got {other:?}"),
        }
        assert!(!out.exists(), "{name}: nothing written");
    }
}
