//! `chasi-node images import` and the `images` phase of `apply` against a real containerd started by
//! each test (`root`, `state` and the socket under a temporary directory; killed by a guard, also when
//! the test fails), checked with `ctr`. Without containerd (or not as root) the tests that need it are
//! skipped with a message, except under `CI=true`, where they fail.

mod common;

use chasi_layers::Store;
use chasi_oci::distribution::RegistryDir;
use chasi_oci::{Descriptor, MediaType, MemoryBlobs};
use common::*;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn node() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chasi-node"))
}

/// A containerd of the test's own; killed when dropped.
struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts containerd, or `None` (with the reason printed) where it cannot run outside CI.
    fn start() -> Option<Containerd> {
        let missing = if !rustix::process::getuid().is_root() {
            Some("containerd tests need root".to_string())
        } else if Command::new("containerd")
            .arg("--version")
            .output()
            .is_err()
            || Command::new("ctr").arg("--version").output().is_err()
        {
            Some("containerd and ctr are not installed (Debian package containerd)".to_string())
        } else {
            None
        };
        if let Some(m) = missing {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{m}");
            }
            eprintln!("skipped: {m}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\n[grpc]\n  address = \"{}\"\n",
            d.join("root").display(),
            d.join("state").display(),
            d.join("containerd.sock").display()
        );
        fs::write(d.join("config.toml"), config).unwrap();
        let log = fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let c = Containerd { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not start: {}",
                fs::read_to_string(c.dir.path().join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(c)
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.sock())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `ctr -n k8s.io images ls -q`: the image names.
    fn image_names(&self) -> Vec<String> {
        self.ctr_ok(&["-n", "k8s.io", "images", "ls", "-q"])
            .lines()
            .filter(|l| !l.starts_with("sha256:"))
            .map(str::to_string)
            .collect()
    }

    /// `ctr -n k8s.io content ls`: digest → labels column.
    fn content(&self) -> Vec<(String, String)> {
        self.ctr_ok(&["-n", "k8s.io", "content", "ls"])
            .lines()
            .skip(1)
            .map(|l| {
                let cols: Vec<&str> = l.split('\t').collect();
                (cols[0].to_string(), cols.last().unwrap_or(&"").to_string())
            })
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// An uncompressed layer and its DiffID.
fn layer(blobs: &mut MemoryBlobs, items: &[Item<'_>]) -> (Descriptor, String) {
    let t = tar(items);
    let diff_id = sha256(&t);
    (blobs.insert(MediaType::ImageLayer, t), diff_id)
}

/// A manifest over `layers` for the host's platform.
fn manifest(blobs: &mut MemoryBlobs, layers: &[(Descriptor, String)], cmd: &[&str]) -> Descriptor {
    manifest_for(blobs, chasi_oci::Platform::host(), layers, cmd)
}

fn manifest_for(
    blobs: &mut MemoryBlobs,
    p: chasi_oci::Platform,
    layers: &[(Descriptor, String)],
    cmd: &[&str],
) -> Descriptor {
    let config = json!({
        "architecture": p.architecture, "os": p.os,
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.1).collect::<Vec<_>>()},
    });
    let descs: Vec<Descriptor> = layers.iter().map(|l| l.0.clone()).collect();
    chasi_oci::build_manifest(blobs, &config, &descs, &BTreeMap::new()).unwrap()
}

/// Two images in two repositories sharing their bottom layer (busybox, so they run):
/// `docker.io/library/app-a:v1` and `registry.example/team/app-b:v2`. Returns their manifests.
struct Fixture {
    reg: PathBuf,
    a: Descriptor,
    b: Descriptor,
    a_only: Descriptor,
    b_only: Descriptor,
    blobs: Vec<String>,
}

fn fixture(dir: &Path, extra: usize) -> Fixture {
    let mut blobs = MemoryBlobs::new();
    let busybox = fs::read("/bin/busybox").unwrap_or_else(|_| b"#!/bin/sh\n".to_vec());
    let shared = {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_size(busybox.len() as u64);
        b.append_data(&mut h, "bin/busybox", &busybox[..]).unwrap();
        let t = b.into_inner().unwrap();
        let diff_id = sha256(&t);
        (blobs.insert(MediaType::ImageLayer, t), diff_id)
    };
    let a_only = layer(
        &mut blobs,
        &[
            Item::File("a.txt", b"image a\n".to_vec()),
            Item::File("noise", noise(7, extra)),
        ],
    );
    let b_only = layer(&mut blobs, &[Item::File("b.txt", b"image b\n".to_vec())]);
    let a = manifest(
        &mut blobs,
        &[shared.clone(), a_only.clone()],
        &["/bin/busybox", "cat", "/a.txt"],
    );
    let b = manifest(
        &mut blobs,
        &[shared, b_only.clone()],
        &["/bin/busybox", "cat", "/b.txt"],
    );
    let reg = dir.join("registry");
    let r = RegistryDir::new(&reg);
    r.put_image(&blobs, &a, "docker.io/library/app-a", "v1")
        .unwrap();
    r.put_image(&blobs, &b, "registry.example/team/app-b", "v2")
        .unwrap();
    let all = blobs.digests().map(|d| d.to_string()).collect();
    Fixture {
        reg,
        a,
        b,
        a_only: a_only.0,
        b_only: b_only.0,
        blobs: all,
    }
}

fn import(sock: &Path, reg: &Path, extra: &[&str]) -> (Output, Value) {
    let out = node()
        .args(["images", "import", "--from"])
        .arg(reg)
        .arg("--address")
        .arg(sock)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    (out, v)
}

const A: &str = "docker.io/library/app-a:v1";
const B: &str = "registry.example/team/app-b:v2";

#[test]
fn two_images_are_imported_once_and_a_second_import_writes_nothing() {
    let Some(ctd) = Containerd::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture(tmp.path(), 1000);
    let (out, v) = import(&ctd.sock(), &f.reg, &[]);
    assert!(out.status.success(), "{v}");
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{v}");
    assert_eq!(images[0]["name"], A);
    assert_eq!(images[0]["digest"], f.a.digest().to_string());
    assert_eq!(images[0]["blobs_written"], 4, "{v}");
    assert_eq!(images[1]["name"], B);
    assert_eq!(images[1]["digest"], f.b.digest().to_string());
    // The shared layer was written for the first image.
    assert_eq!(images[1]["blobs_written"], 3, "{v}");
    assert_eq!(images[1]["blobs_present"], 1, "{v}");
    assert_eq!(v["blobs_written"], 7);
    assert_eq!(images[0]["record"], "created");

    let listed = ctd.ctr_ok(&["-n", "k8s.io", "images", "ls"]);
    for (name, d) in [(A, &f.a), (B, &f.b)] {
        let line = listed
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not in\n{listed}"));
        assert!(line.contains(&d.digest().to_string()), "{line}");
        assert!(line.contains("io.cri-containerd.image=managed"), "{line}");
    }
    // As after a CRI pull, each image is also named by its id (its config's digest), and the
    // CRI plugin took both into its image store (its event handler logs each, failing loudly).
    let reg = RegistryDir::new(&f.reg);
    let ids = ctd.ctr_ok(&["-n", "k8s.io", "images", "ls"]);
    for (i, d) in [&f.a, &f.b].into_iter().enumerate() {
        let (m, _) = chasi_oci::image::read_manifest(&reg, d).unwrap();
        let id = m.config().digest().to_string();
        assert_eq!(images[i]["id"], id.as_str(), "{v}");
        let line = ids
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("{ids}"));
        assert!(
            line.contains(&d.digest().to_string())
                && line.contains("io.cri-containerd.image=managed"),
            "{line}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = fs::read_to_string(ctd.dir.path().join("containerd.log")).unwrap();
        let seen = [A, B]
            .iter()
            .all(|n| log.contains(&format!("ImageCreate event &ImageCreate{{Name:{n},")));
        if seen {
            assert!(!log.contains("Failed to handle"), "{log}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the CRI plugin saw no ImageCreate events:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let content = ctd.content();
    for d in &f.blobs {
        let n = content.iter().filter(|(c, _)| c == d).count();
        assert_eq!(n, 1, "{d} in containerd's content {n} times");
    }
    let labels = &content
        .iter()
        .find(|(c, _)| *c == f.a.digest().to_string())
        .unwrap()
        .1;
    assert!(
        labels.contains("containerd.io/gc.ref.content.config=")
            && labels.contains("containerd.io/gc.ref.content.l.0=")
            && labels.contains("containerd.io/gc.ref.content.l.1="),
        "{labels}"
    );
    // containerd checks every image is complete.
    let check = ctd.ctr_ok(&["-n", "k8s.io", "images", "check"]);
    for name in [A, B] {
        let line = check.lines().find(|l| l.starts_with(name)).unwrap();
        assert!(line.contains("complete"), "{line}");
    }

    let (out, again) = import(&ctd.sock(), &f.reg, &[]);
    assert!(out.status.success(), "{again}");
    assert_eq!(again["blobs_written"], 0, "{again}");
    for i in again["images"].as_array().unwrap() {
        assert_eq!(i["record"], "unchanged", "{again}");
        assert_eq!(i["blobs_written"], 0, "{again}");
    }
    let human = node()
        .args(["images", "import", "--from"])
        .arg(&f.reg)
        .arg("--address")
        .arg(ctd.sock())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(human.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "imported {A} {}: 0 blob(s) written (0 bytes), 4 present",
            f.a.digest()
        )) && text.contains("2 image(s) in namespace k8s.io of containerd at")
            && text.contains("0 blob(s), 0 bytes written"),
        "{text}"
    );
    // After a GC (run synchronously by deleting a lease), everything is still there: the
    // labels keep the children.
    ctd.ctr_ok(&["-n", "k8s.io", "leases", "create", "--id", "chasi-test-gc"]);
    ctd.ctr_ok(&[
        "-n",
        "k8s.io",
        "leases",
        "delete",
        "--sync",
        "chasi-test-gc",
    ]);
    let after = ctd.content();
    for d in &f.blobs {
        assert!(after.iter().any(|(c, _)| c == d), "{d} collected");
    }
}

#[test]
fn an_index_is_imported_with_the_platforms_the_directory_carries() {
    let Some(ctd) = Containerd::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut blobs = MemoryBlobs::new();
    let l = layer(&mut blobs, &[Item::File("x", b"x\n".to_vec())]);
    let host = manifest(&mut blobs, std::slice::from_ref(&l), &["/x"]);
    let other_platform: chasi_oci::Platform =
        if chasi_oci::Platform::host().architecture == "s390x" {
            "linux/ppc64le"
        } else {
            "linux/s390x"
        }
        .parse()
        .unwrap();
    let other = manifest_for(&mut blobs, other_platform, &[l], &["/x"]);
    let index =
        chasi_oci::image::build_index(&mut blobs, &[host.clone(), other.clone()], &BTreeMap::new())
            .unwrap();
    let reg = RegistryDir::new(tmp.path().join("registry"));
    reg.put_image(&blobs, &index, "docker.io/library/multi", "v1")
        .unwrap();
    // The builder keeps only the build's platforms: the other manifest is not carried.
    fs::remove_dir_all(reg.blob_path(other.digest()).parent().unwrap()).unwrap();
    let (out, v) = import(&ctd.sock(), reg.root(), &[]);
    assert!(out.status.success(), "{v}");
    assert_eq!(v["images"][0]["digest"], index.digest().to_string(), "{v}");
    assert_eq!(v["images"][0]["blobs_written"], 4, "{v}");
    let listed = ctd.ctr_ok(&["-n", "k8s.io", "images", "ls"]);
    let line = listed
        .lines()
        .find(|l| l.starts_with("docker.io/library/multi:v1 "))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        line.contains("application/vnd.oci.image.index.v1+json"),
        "{line}"
    );
    let content = ctd.content();
    let labels = &content
        .iter()
        .find(|(c, _)| *c == index.digest().to_string())
        .unwrap()
        .1;
    assert_eq!(
        labels,
        &format!("containerd.io/gc.ref.content.m.0={}", host.digest()),
        "only the carried manifest is referenced"
    );
    let check = ctd.ctr_ok(&["-n", "k8s.io", "images", "check"]);
    let line = check
        .lines()
        .find(|l| l.starts_with("docker.io/library/multi"))
        .unwrap();
    assert!(line.contains("complete"), "{line}");
}

#[test]
fn a_corrupt_blob_is_refused_by_digest_and_file_and_no_image_is_tagged() {
    let Some(ctd) = Containerd::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture(tmp.path(), 1000);
    let path = RegistryDir::new(&f.reg).blob_path(f.b_only.digest());
    let mut data = fs::read(&path).unwrap();
    let last = data.len() - 600;
    data[last] ^= 1;
    fs::write(&path, data).unwrap();
    let (out, v) = import(&ctd.sock(), &f.reg, &[]);
    assert!(!out.status.success());
    let message = v["error"]["message"].as_str().unwrap();
    let digest = f.b_only.digest().to_string();
    assert!(message.contains(&digest), "{v}");
    assert!(message.contains(path.to_str().unwrap()), "{v}");
    assert_eq!(v["error"]["kind"], "corrupt");
    let names = ctd.image_names();
    assert!(
        names.is_empty(),
        "an import tags every image or none: {names:?}"
    );
    assert!(
        !ctd.content().iter().any(|(c, _)| *c == digest),
        "the corrupt blob was committed"
    );
    // Human output names it too.
    let out = node()
        .args(["images", "import", "--from"])
        .arg(&f.reg)
        .arg("--address")
        .arg(ctd.sock())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&digest), "{err}");
}

#[test]
fn containerd_absent_a_bad_namespace_and_a_malformed_directory_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture(tmp.path(), 10);
    let sock = tmp.path().join("none.sock");
    let (out, v) = import(&sock, &f.reg, &[]);
    assert!(!out.status.success());
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("cannot reach containerd at {}", sock.display())),
        "{v}"
    );
    assert_eq!(v["error"]["kind"], "unavailable");
    // A socket nobody listens on (containerd died and left it).
    let stale = tmp.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let (out, v) = import(&stale, &f.reg, &[]);
    assert!(!out.status.success());
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("cannot reach containerd at {}", stale.display()))
            && message.to_lowercase().contains("refused"),
        "{v}"
    );
    // A file that is not a socket.
    let (_, v) = import(&f.reg.join("docker/registry/v2/repositories"), &f.reg, &[]);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a socket"),
        "{v}"
    );
    let (out, v) = import(&sock, &f.reg, &["--namespace", "no/slash"]);
    assert!(!out.status.success());
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid containerd namespace \"no/slash\""),
        "{v}"
    );
    let link = f.reg.join(
        "docker/registry/v2/repositories/docker.io/library/app-a/_manifests/tags/v1/current/link",
    );
    fs::write(&link, "sha256:zz").unwrap();
    let (out, v) = import(&sock, &f.reg, &[]);
    assert!(!out.status.success());
    let text = format!("{} {}", v["error"]["message"], v["error"]["causes"]);
    assert!(
        text.contains("is malformed") && text.contains(link.to_str().unwrap()),
        "{v}"
    );
    assert_eq!(v["error"]["kind"], "invalid_input");
    let (out, v) = import(&sock, &tmp.path().join("nowhere"), &[]);
    assert!(!out.status.success());
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot read registry directory"),
        "{v}"
    );
    // An empty directory imports nothing and needs no containerd.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let (out, v) = import(&sock, &empty, &[]);
    assert!(out.status.success(), "{v}");
    assert_eq!(v["images"], json!([]));
}

#[test]
fn an_imported_image_runs_with_ctr() {
    let Some(ctd) = Containerd::start() else {
        return;
    };
    if !Path::new("/bin/busybox").exists()
        || Command::new("runc").arg("--version").output().is_err()
    {
        eprintln!("skipped: needs /bin/busybox (busybox-static) and runc");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture(tmp.path(), 10);
    let (out, v) = import(&ctd.sock(), &f.reg, &[]);
    assert!(out.status.success(), "{v}");
    // `ctr run` unpacks the image into the snapshotter first (as the CRI does on first use).
    let ran = ctd.ctr_ok(&["-n", "k8s.io", "run", "--rm", B, "chasi-test-b"]);
    assert_eq!(ran, "image b\n");
}

#[test]
fn import_speed_of_a_30_mb_image() {
    let Some(ctd) = Containerd::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture(tmp.path(), 30 << 20);
    let (out, v) = import(&ctd.sock(), &f.reg, &[]);
    assert!(out.status.success(), "{v}");
    let bytes = v["bytes_written"].as_f64().unwrap();
    let secs = v["seconds"].as_f64().unwrap();
    assert!(bytes > 30e6, "{v}");
    // The peer in the same run: `ctr content ingest` of the big layer alone, with its digest,
    // into a containerd of its own (one that has the blob already only records it).
    let other = Containerd::start().unwrap();
    let big = RegistryDir::new(&f.reg).blob_path(f.a_only.digest());
    let started = Instant::now();
    let peer = Command::new("ctr")
        .arg("--address")
        .arg(other.sock())
        .args(["-n", "peer", "content", "ingest", "--expected-digest"])
        .arg(f.a_only.digest().to_string())
        .arg("--expected-size")
        .arg(f.a_only.size().to_string())
        .arg("chasi-peer")
        .stdin(fs::File::open(&big).unwrap())
        .output()
        .unwrap();
    let peer_secs = started.elapsed().as_secs_f64();
    assert!(peer.status.success(), "{peer:?}");
    let peer_mb = f.a_only.size() as f64 / 1e6;
    eprintln!(
        "chasi-node images import: {:.1} MB in {secs:.3} s ({:.0} MB/s); ctr content ingest of the {peer_mb:.1} MB layer: {peer_secs:.3} s ({:.0} MB/s)",
        bytes / 1e6,
        bytes / 1e6 / secs,
        peer_mb / peer_secs
    );
}

/// A node image whose tree carries `reg` as `/registry`, saved as an oci-archive.
fn node_image(dir: &Path, reg: &Path) -> PathBuf {
    let store = Store::open(dir.join("build")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    b.append_dir_all("registry", reg).unwrap();
    let registry_layer = b.into_inner().unwrap();
    let base = tar(&[Item::Dir("etc"), Item::File("etc/os", b"node 1\n".to_vec())]);
    image(&store, "node:1", &host(), &[base, registry_layer]);
    save(&store, "node:1", dir, "node-1.tar")
}

fn apply(root: &Path, archive: &Path, sock: &Path, extra: &[&str]) -> (bool, Vec<Value>) {
    let out = node()
        .arg("--root")
        .arg(root)
        .arg("apply")
        .arg(archive)
        .arg("--containerd")
        .arg(sock)
        .args(["--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (out.status.success(), lines)
}

fn phases(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            Some(format!(
                "{} {}",
                l["phase"].as_str()?,
                l["status"].as_str()?
            ))
        })
        .collect()
}

fn active_slot(root: &Path) -> Value {
    let out = node()
        .arg("--root")
        .arg(root)
        .args(["status", "--format", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["active_slot"].clone()
}

#[test]
fn apply_without_containerd_fails_before_the_switch_unless_images_are_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture(tmp.path(), 10);
    let archive = node_image(tmp.path(), &f.reg);
    let root = tmp.path().join("node");
    let sock = tmp.path().join("down.sock");
    let (ok, lines) = apply(&root, &archive, &sock, &[]);
    assert!(!ok, "{lines:?}");
    assert_eq!(phases(&lines), ["pre-check failed"], "{lines:?}");
    let message = lines[0]["message"].as_str().unwrap();
    assert_eq!(lines[1]["error"]["kind"], "precheck", "{lines:?}");
    assert!(
        message.contains("carries 2 container image(s)")
            && message.contains(sock.to_str().unwrap()),
        "{message}"
    );
    assert_eq!(active_slot(&root), Value::Null, "the node stays on no slot");
    let history = fs::read_to_string(root.join("var/lib/chasi-node/history.jsonl")).unwrap();
    let rec: Value = serde_json::from_str(history.lines().last().unwrap()).unwrap();
    assert_eq!(rec["event"], "failed");
    assert!(
        rec["reason"].as_str().unwrap().contains("containerd"),
        "{rec}"
    );

    let (ok, lines) = apply(&root, &archive, &sock, &["--dry-run"]);
    assert!(!ok, "{lines:?}");
    assert_eq!(lines[0]["container_images"], 2, "{lines:?}");
    assert!(
        lines[0]["problems"][0]
            .as_str()
            .unwrap()
            .contains(sock.to_str().unwrap()),
        "{lines:?}"
    );
    let (ok, lines) = apply(&root, &archive, &sock, &["--skip-images"]);
    assert!(ok, "{lines:?}");
    let p = phases(&lines);
    assert!(p.contains(&"images skipped".to_string()), "{p:?}");
    assert_eq!(active_slot(&root), "a");
    // An apply killed in its `images` phase (the journal says so) never left slot a.
    let journal = json!({"format": 1, "source": archive, "phase": "images", "slot": "b",
        "from": "a", "image": null, "started": 0});
    fs::write(
        root.join("var/lib/chasi-node/journal.json"),
        journal.to_string(),
    )
    .unwrap();
    let out = node()
        .arg("--root")
        .arg(&root)
        .args(["status", "--format", "json"])
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["active_slot"], "a", "{status}");
    assert_eq!(status["apply_in_progress"], Value::Null, "{status}");
    assert_eq!(status["last_event"]["event"], "recovered", "{status}");
    let reason = status["last_event"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("interrupted in images") && reason.contains("stays on slot a"),
        "{reason}"
    );
}

#[test]
fn apply_imports_the_carried_images_before_switching() {
    let Some(ctd) = Containerd::start() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture(tmp.path(), 10);
    let archive = node_image(tmp.path(), &f.reg);
    let root = tmp.path().join("node");
    let (ok, lines) = apply(&root, &archive, &ctd.sock(), &[]);
    assert!(ok, "{lines:?}");
    let p = phases(&lines);
    let at = |x: &str| {
        p.iter()
            .position(|l| l == x)
            .unwrap_or_else(|| panic!("{x}: {p:?}"))
    };
    assert!(
        at("stage ok") < at("images ok") && at("images ok") < at("switch ok"),
        "{p:?}"
    );
    let images = &lines[at("images ok")];
    assert_eq!(images["images"].as_array().unwrap().len(), 2, "{images}");
    let mut names = ctd.image_names();
    names.sort();
    assert_eq!(names, vec![A.to_string(), B.to_string()]);
    // `images import` without --from reads the running slot's registry/: all present now.
    let out = node()
        .arg("--root")
        .arg(&root)
        .args(["images", "import", "--address"])
        .arg(ctd.sock())
        .args(["--format", "json"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{v}");
    assert_eq!(v["blobs_written"], 0, "{v}");
    assert_eq!(v["images"].as_array().unwrap().len(), 2, "{v}");
    assert!(
        v["from"].as_str().unwrap().ends_with("slots/a/registry"),
        "{v}"
    );

    // A corrupt blob in the next image: the apply fails in `images`, before the switch.
    let path = RegistryDir::new(&f.reg).blob_path(f.b_only.digest());
    let mut data = fs::read(&path).unwrap();
    let at_byte = data.len() - 600;
    data[at_byte] ^= 1;
    fs::write(&path, data).unwrap();
    // Into a namespace that has none of it, so the corrupt blob must be read.
    let dir2 = tmp.path().join("second");
    fs::create_dir(&dir2).unwrap();
    let archive2 = node_image(&dir2, &f.reg);
    let (ok, lines) = apply(&root, &archive2, &ctd.sock(), &["--namespace", "other"]);
    assert!(!ok, "{lines:?}");
    let p = phases(&lines);
    assert_eq!(p.last().unwrap(), "images failed", "{p:?}");
    assert!(
        lines[lines.len() - 2]["message"]
            .as_str()
            .unwrap()
            .contains(&f.b_only.digest().to_string()),
        "{lines:?}"
    );
    assert_eq!(active_slot(&root), "a", "the node stays on slot a");
}
