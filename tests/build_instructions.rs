//! Instruction semantics of `chasi build`, checked on the layers it produces: ADD unpacks
//! local archives (and only those), remote sources are downloaded and cached, `--chown` and
//! `--chmod` set ownership and modes, `.kubefileignore` keeps files out, RUN runs inside an
//! image that has a shell, and APP/APPCMDS/APPENV fill the sealer extension.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

/// One tar entry as the tests look at it: mode, uid, gid, and the content of a file.
type Entry = (u32, u64, u64, Option<Vec<u8>>);

/// Every entry of the image's layers, merged by path.
fn layer_entries(store: &Path, image: &str, tmp: &Path) -> BTreeMap<String, Entry> {
    let out = tmp.join(format!("layout-{}", image.replace(':', "-")));
    ok(
        store,
        &[
            "save",
            image,
            "-o",
            out.to_str().unwrap(),
            "--format",
            "oci",
            "--compression",
            "none",
        ],
    );
    let blob = |d: &Value| {
        out.join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let index: Value = serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    let manifest: Value =
        serde_json::from_slice(&fs::read(blob(&index["manifests"][0]["digest"])).unwrap()).unwrap();
    let mut all = BTreeMap::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let mut archive = tar::Archive::new(fs::File::open(blob(&layer["digest"])).unwrap());
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e
                .path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            let h = e.header().clone();
            let mut data = None;
            if h.entry_type().is_file() {
                let mut v = Vec::new();
                e.read_to_end(&mut v).unwrap();
                data = Some(v);
            }
            all.insert(
                path,
                (
                    h.mode().unwrap() & 0o7777,
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    data,
                ),
            );
        }
    }
    all
}

fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        builder.append_data(&mut h, name, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn add_unpacks_local_archives_copy_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(&ctx, &[("Kubefile", "FROM scratch\nADD bundle.tgz opt/\nCOPY bundle.tgz keep/\nADD notes.txt opt/notes.txt\n"), ("notes.txt", "plain\n")]);
    fs::write(
        ctx.join("bundle.tgz"),
        tar_gz(&[("tools/a.sh", b"echo a\n"), ("README", b"readme\n")]),
    )
    .unwrap();
    ok(&store, &["build", "-t", "add:1", ctx.to_str().unwrap()]);
    let e = layer_entries(&store, "add:1", tmp.path());
    assert_eq!(e["opt/tools/a.sh"].3.as_deref(), Some(&b"echo a\n"[..]));
    assert_eq!(e["opt/README"].3.as_deref(), Some(&b"readme\n"[..]));
    assert!(
        e.contains_key("keep/bundle.tgz"),
        "COPY keeps the archive as a file"
    );
    assert_eq!(e["opt/notes.txt"].3.as_deref(), Some(&b"plain\n"[..]));

    // An archive that tries to leave its directory is refused with a clear error.
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    let name = b"../../escape";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    evil.append(&h, &b"x"[..]).unwrap();
    fs::write(ctx.join("bundle.tgz"), evil.into_inner().unwrap()).unwrap();
    let err = fails(&store, &["build", "-t", "add:2", ctx.to_str().unwrap()]);
    assert!(err.contains("bundle.tgz") && err.contains(".."), "{err}");
}

#[test]
fn chown_chmod_and_ignore_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("Kubefile", "FROM scratch\nCOPY --chown=1000:2000 --chmod=0640 conf/ etc/app/\nCOPY scripts/ scripts/\n"),
            ("conf/app.yaml", "a: 1\n"),
            ("conf/secret.key", "do not ship\n"),
            ("scripts/run.sh", "#!/bin/sh\n"),
            ("scripts/run.sh.swp", "editor junk\n"),
            (".kubefileignore", "**/*.swp\nconf/*.key\n"),
        ],
    );
    ok(&store, &["build", "-t", "own:1", ctx.to_str().unwrap()]);
    let e = layer_entries(&store, "own:1", tmp.path());
    let (mode, uid, gid, _) = &e["etc/app/app.yaml"];
    assert_eq!((*mode, *uid, *gid), (0o640, 1000, 2000));
    assert!(
        !e.contains_key("etc/app/secret.key"),
        "ignored by .kubefileignore"
    );
    assert!(!e.contains_key("scripts/run.sh.swp"));
    assert!(e.contains_key("scripts/run.sh"));
    let (_, uid, gid, _) = &e["scripts/run.sh"];
    assert_eq!((*uid, *gid), (0, 0), "COPY without --chown gives root");
}

#[test]
fn run_inside_an_image_with_a_shell_is_isolated() {
    need("busybox", "busybox-static");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    busybox_context(
        &ctx,
        "FROM scratch\nCOPY rootfs/ /\nENV GREETING=hello\nARG WHO=world\nRUN echo \"$GREETING $WHO\" > /greeting && ls / > /listing && hostname > /host\n",
        &["echo", "ls", "hostname"],
    );
    ok(
        &store,
        &[
            "build",
            "-t",
            "iso:1",
            "--build-arg",
            "WHO=chasi",
            ctx.to_str().unwrap(),
        ],
    );
    let e = layer_entries(&store, "iso:1", tmp.path());
    assert_eq!(e["greeting"].3.as_deref(), Some(&b"hello chasi\n"[..]));
    let listing = String::from_utf8(e["listing"].3.clone().unwrap()).unwrap();
    assert!(
        !listing.contains("usr"),
        "the host root is not visible: {listing}"
    );
    assert!(
        !e.contains_key("proc") && !e.contains_key("dev"),
        "mount points are not part of the layer"
    );
}

/// A one-file HTTP server on loopback; counts requests.
fn http_server(body: &'static [u8]) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\netag: \"v1\"\r\nconnection: close\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    (base, hits)
}

#[test]
fn remote_app_sources_are_downloaded_and_cached() {
    let (base, hits) = http_server(b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: net\n");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[(
            "Kubefile",
            &format!("FROM scratch\nCNI flannel {base}/kube-flannel.yml\nLAUNCH [\"flannel\"]\n"),
        )],
    );
    ok(&store, &["build", "-t", "net:1", ctx.to_str().unwrap()]);
    let e = layer_entries(&store, "net:1", tmp.path());
    assert!(e["application/apps/flannel/kube-flannel.yml"]
        .3
        .as_ref()
        .unwrap()
        .starts_with(b"apiVersion"));
    let info = inspect(&store, "net:1");
    assert_eq!(
        info["images"][0]["config"]["config"]["Labels"]["cluster.alpha.sealer.io/kube-cni-flannel"],
        "true"
    );
    // Offline, the stored copy is used and the server is not asked.
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    ok(
        &store,
        &["build", "--offline", "-t", "net:2", ctx.to_str().unwrap()],
    );
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), before);
    assert_eq!(inspect(&store, "net:2")["digest"], info["digest"]);
    // Offline without a stored copy is a clear error.
    let err = fails(
        &tmp.path().join("empty"),
        &["build", "--offline", "-t", "net:3", ctx.to_str().unwrap()],
    );
    assert!(err.contains("offline"), "{err}");
}

#[test]
fn app_image_example_fills_the_extension() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    ok(
        &store,
        &[
            "build",
            "-t",
            "apps:1",
            example("app-image").to_str().unwrap(),
        ],
    );
    let info = inspect(&store, "apps:1");
    let ext = &info["images"][0]["extension"];
    let apps: BTreeMap<String, Value> = ext["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_string(), a.clone()))
        .collect();
    assert_eq!(apps["nginx"]["type"], "helm");
    assert_eq!(apps["nginx"]["files"], serde_json::json!(["nginx"]));
    assert_eq!(apps["dashboard"]["type"], "kube");
    assert_eq!(
        apps["dashboard"]["files"],
        serde_json::json!(["dashboard.yaml", "dashboard-rbac.yaml"])
    );
    assert!(
        apps["backup"].get("type").is_none(),
        "mixed sources: untyped"
    );
    assert_eq!(
        apps["backup"]["cmds"],
        serde_json::json!(["sh", "install-backup.sh", "--schedule", "0 3 * * *"])
    );
    assert_eq!(apps["backup"]["env"]["RETENTION_DAYS"], "14");
    assert_eq!(
        ext["launch"]["app_names"],
        serde_json::json!(["nginx", "dashboard", "backup"])
    );
    let e = layer_entries(&store, "apps:1", tmp.path());
    assert!(
        e.contains_key("application/apps/nginx/Chart.yaml"),
        "{:?}",
        e.keys().collect::<Vec<_>>()
    );
    assert!(e.contains_key("application/apps/nginx/templates/deployment.yaml"));
    assert!(e.contains_key("application/apps/backup/install-backup.sh"));
}

/// A plain tar holding one symlink.
fn tar_with_symlink(name: &str, target: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, name, target).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn copy_through_a_symlink_that_leaves_the_root_is_refused_at_its_step() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            (
                "Kubefile",
                "FROM scratch\nADD escape.tar /\nCOPY f.txt /opt/\nCOPY f.txt /x/victim/f.txt\nCOPY f.txt /opt/g.txt\n",
            ),
            ("f.txt", "data\n"),
        ],
    );
    fs::write(ctx.join("escape.tar"), tar_with_symlink("x", "../../..")).unwrap();
    let err = fails(&store, &["build", "-t", "esc:1", ctx.to_str().unwrap()]);
    assert!(
        err.contains("Kubefile:4:1: COPY"),
        "names the COPY's place: {err}"
    );
    assert!(
        err.contains("/x/victim/f.txt") && err.contains("/x -> ../../.."),
        "names the destination and the symlink: {err}"
    );
    assert!(!err.contains("Kubefile:5:"), "{err}");
}

#[test]
fn copy_through_an_absolute_symlink_stays_in_the_image_and_exports() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            (
                "Kubefile",
                "FROM scratch\nADD etc.tar /\nCOPY f.txt /etc/f.txt\nCOPY f.txt /etc/sub/\n",
            ),
            ("f.txt", "data\n"),
        ],
    );
    fs::write(ctx.join("etc.tar"), tar_with_symlink("etc", "/host/etc")).unwrap();
    ok(&store, &["build", "-t", "abs:1", ctx.to_str().unwrap()]);
    let out = tmp.path().join("abs.tar");
    ok(
        &store,
        &[
            "export",
            "abs:1",
            "--format",
            "tar",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(fs::File::open(&out).unwrap());
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        names.push(
            e.path()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string(),
        );
    }
    for want in ["etc", "host/etc/f.txt", "host/etc/sub/f.txt"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}
