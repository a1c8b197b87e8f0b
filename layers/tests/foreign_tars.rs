//! Layer tars as other tools write them, made by those tools: they must apply, unpack and
//! flatten as they do in containerd and umoci, and real damage must still be refused.

mod common;

use chasi_layers::apply::apply_layer;
use chasi_layers::{ApplyOptions, Store};
use common::*;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

fn opts() -> ApplyOptions {
    ApplyOptions {
        chown: false,
        devices: false,
        xattrs: false,
        only: Vec::new(),
    }
}

/// Path of an external tool, or a failure naming the Debian package.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: apt-get install -y {package}"))
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &serde_json::Value) -> PathBuf {
    let d = digest.as_str().unwrap().strip_prefix("sha256:").unwrap();
    layout.join("blobs/sha256").join(d)
}

/// The uncompressed first layer `umoci insert` writes for `tree` (mounted at `/d`).
fn umoci_layer(t: &Path, tree: &Path) -> Vec<u8> {
    let umoci = tool("umoci", "umoci");
    let layout = t.join("layout");
    let image = format!("{}:v1", layout.display());
    run(Command::new(&umoci)
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    run(Command::new(&umoci).args(["new", "--image", &image]));
    run(Command::new(&umoci)
        .args(["insert", "--image", &image])
        .arg(tree)
        .arg("/d"));
    let index = json(&layout.join("index.json"));
    let manifest = json(&blob(&layout, &index["manifests"][0]["digest"]));
    let layer = fs::read(blob(&layout, &manifest["layers"][0]["digest"])).unwrap();
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&layer[..])
        .read_to_end(&mut plain)
        .unwrap();
    plain
}

#[test]
fn umoci_insert_layers_without_end_blocks_apply_and_truncation_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("sub/last"), b"hi\n").unwrap();
    let plain = umoci_layer(t.path(), &tree);
    assert_ne!(
        plain.len() % 512,
        0,
        "umoci's layer ends right after the last file's data"
    );

    // Applied directly, and through the store (unpack and flat view) as `FROM oci:` does.
    let root = t.path().join("root");
    fs::create_dir_all(&root).unwrap();
    apply_layer(&plain[..], &root, &opts(), "umoci").expect("apply umoci's layer");
    assert_eq!(fs::read(root.join("d/sub/last")).unwrap(), b"hi\n");
    let s = Store::open_with_layout(t.path().join("s"), small_layout()).unwrap();
    let info = s.ingest_tar(&plain[..]).unwrap();
    let out = t.path().join("unpacked");
    s.unpack(&[info.diff_id], &out, &opts()).expect("unpack");
    assert_eq!(snapshot(&out), snapshot(&root));
    let view = s.flat_view(&[info.diff_id]).expect("flat view");
    assert_eq!(view.entries().len(), snapshot(&root).len());

    // One byte of the last file missing is truncation, not a clean end.
    let cut = t.path().join("cut");
    fs::create_dir_all(&cut).unwrap();
    let err = apply_layer(&plain[..plain.len() - 1], &cut, &opts(), "cut").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("ends inside the data of") && msg.contains("1 bytes missing"),
        "{msg}"
    );
}

/// `tar --xattrs --acls` (GNU tar, POSIX format) stores ACLs as PAX records whose values hold
/// newlines, which the `tar` crate's own PAX parser calls malformed: the layer must apply with
/// its files, names (also a PAX `path` after the ACL records) and xattrs intact.
#[test]
fn gnu_tar_with_acls_and_xattrs_applies() {
    let setfacl = tool("setfacl", "acl");
    let t = tempfile::tempdir().unwrap();
    let tree = t.path().join("tree");
    // A name longer than ustar's 100 bytes gets a PAX `path` record next to the ACL records.
    let long = format!("{}/file", "d".repeat(120));
    fs::create_dir_all(tree.join(&long).parent().unwrap()).unwrap();
    fs::write(tree.join("acl"), b"with acl\n").unwrap();
    fs::write(tree.join(&long), b"deep\n").unwrap();
    for f in ["acl", long.as_str()] {
        run(Command::new(&setfacl)
            .args(["-m", "u:1000:r--,g:1000:rw-"])
            .arg(tree.join(f)));
    }
    run(Command::new(tool("setfattr", "attr"))
        .args(["-n", "user.note", "-v", "0x610a62"])
        .arg(tree.join("acl")));
    let tar_file = t.path().join("acl.tar");
    run(Command::new(tool("tar", "tar"))
        .args([
            "--xattrs",
            "--xattrs-include=*",
            "--acls",
            "--format=posix",
            "-cf",
        ])
        .arg(&tar_file)
        .arg("-C")
        .arg(&tree)
        .arg("."));
    let bytes = fs::read(&tar_file).unwrap();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"SCHILY.acl.access="), "GNU tar wrote ACL records");

    let root = t.path().join("root");
    fs::create_dir_all(&root).unwrap();
    let with_xattrs = ApplyOptions {
        xattrs: true,
        ..opts()
    };
    let stats = apply_layer(&bytes[..], &root, &with_xattrs, "acl.tar").expect("apply");
    assert_eq!(fs::read(root.join("acl")).unwrap(), b"with acl\n");
    assert_eq!(fs::read(root.join(&long)).unwrap(), b"deep\n");
    if stats.xattr_failures == 0 {
        let out = Command::new(tool("getfattr", "attr"))
            .args(["--only-values", "-n", "user.note"])
            .arg(root.join("acl"))
            .output()
            .unwrap();
        assert_eq!(
            out.stdout, b"a\nb",
            "an xattr value with a newline survives"
        );
    }
    let s = Store::open_with_layout(t.path().join("s"), small_layout()).unwrap();
    let info = s.ingest_tar(&bytes[..]).unwrap();
    let view = s.flat_view(&[info.diff_id]).expect("flat view");
    let note = view
        .entries()
        .iter()
        .find(|e| e.entry.path == b"acl")
        .and_then(|e| e.entry.xattrs.get("user.note").cloned());
    assert_eq!(note, Some(b"a\nb".to_vec()));
}
