//! A build by a user without root: the RUN sandbox runs in a user namespace that maps the user
//! to root, with the same isolation, and the step's changes still become the layer.

mod common;

use common::{busybox_context, need, sh};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

const NOBODY: u32 = 65534;

fn chown_tree(root: &Path) {
    sh(Command::new("chown")
        .args(["-R", &format!("{NOBODY}:{NOBODY}")])
        .arg(root));
}

#[test]
fn a_build_without_root_runs_its_step_in_a_user_namespace() {
    need("busybox", "busybox-static");
    need("runc", "runc");
    need("setpriv", "util-linux");
    if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        eprintln!("skipped: needs root to start chasi as an unprivileged user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    busybox_context(
        &ctx,
        "FROM scratch\nCOPY rootfs/ /\nRUN grep CapEff /proc/self/status > /caps && cat /proc/self/uid_map > /uid_map && mkdir -p /out && echo made > /out/file\n",
        &["grep", "cat", "mkdir", "echo"],
    );
    chown_tree(tmp.path());
    let store = tmp.path().join("store");
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_chasi"))
        .arg("--store")
        .arg(&store)
        .args(["build", "--progress", "plain", "-t", "rootless:1"])
        .arg(&ctx)
        .env("HOME", tmp.path())
        .env_remove("CHASI_STORE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rootless build failed:\n{stderr}");
    let tar = tmp.path().join("rootless.tar");
    sh(Command::new(env!("CARGO_BIN_EXE_chasi"))
        .arg("--store")
        .arg(&store)
        .args(["export", "rootless:1", "--format", "tar", "-o"])
        .arg(&tar));
    let member = |name: &str| sh(Command::new("tar").arg("-xOf").arg(&tar).arg(name));
    let caps = member("caps");
    assert!(caps.contains("CapEff:\t00000000a80425fb"), "{caps}");
    // Inside, root is the calling user: one mapped id, never the host's root.
    let uid_map = member("uid_map");
    let map: Vec<&str> = uid_map.split_whitespace().collect();
    assert_eq!(map, ["0", "65534", "1"], "{uid_map}");
    assert_eq!(member("out/file"), "made\n");
}
