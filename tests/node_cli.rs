//! `chasi node …`, the node runtime's commands in the main CLI: the whole path a release takes, built
//! with `chasi build`, shipped with `chasi save` and `chasi delta`, applied to directory slots under a
//! temporary `--root`, then rolled back.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;

fn node(root: &Path, store: &Path, args: &[&str]) -> (bool, Vec<Value>) {
    let mut all = vec!["node", "--root", root.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend(["--format", "json"]);
    let out = run(store, &all);
    let text = String::from_utf8_lossy(&out.stdout);
    // JSON lines, a failure included.
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{text}")))
        .collect();
    (out.status.success(), lines)
}

#[test]
fn build_save_delta_then_chasi_node_apply_and_rollback() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let root = tmp.path().join("node");
    for (n, text) in [(1, "one\n"), (2, "two\n")] {
        let ctx = tmp.path().join(format!("ctx{n}"));
        write_files(
            &ctx,
            &[
                ("Kubefile", "FROM scratch\nCOPY files/ .\n"),
                ("files/etc/app.conf", text),
                ("files/bin/tool", "unchanged tool\n"),
            ],
        );
        ok(
            &store,
            &["build", "-t", &format!("app:{n}"), ctx.to_str().unwrap()],
        );
    }
    let v1 = tmp.path().join("app-1.tar");
    ok(&store, &["save", "app:1", "-o", v1.to_str().unwrap()]);
    let d = tmp.path().join("delta.tar");
    ok(
        &store,
        &[
            "delta",
            "app:1",
            "app:2",
            "-o",
            d.to_str().unwrap(),
            "--level",
            "fast",
        ],
    );

    let (okay, lines) = node(&root, &store, &["apply", v1.to_str().unwrap()]);
    assert!(okay, "{lines:?}");
    assert_eq!(lines.last().unwrap()["phase"], "done");
    let (okay, lines) = node(&root, &store, &["apply", d.to_str().unwrap()]);
    assert!(okay, "{lines:?}");
    let current = root.join("var/lib/chasi-node/slots/current");
    assert_eq!(
        fs::read_to_string(current.join("etc/app.conf")).unwrap(),
        "two\n"
    );
    let (_, st) = node(&root, &store, &["status"]);
    assert_eq!(st[0]["active_slot"], "b");
    assert_eq!(st[0]["slots"]["b"]["image"]["name"], "app:2");
    let (okay, v) = node(&root, &store, &["verify"]);
    assert!(okay && v[0]["clean"] == true, "{v:?}");

    let (okay, _) = node(&root, &store, &["rollback"]);
    assert!(okay);
    assert_eq!(
        fs::read_to_string(current.join("etc/app.conf")).unwrap(),
        "one\n"
    );
    // A failure is one JSON line with its kind.
    let (okay, v) = node(&root, &store, &["apply", "/nonexistent"]);
    assert!(!okay);
    assert_eq!(v.last().unwrap()["error"]["kind"], "invalid_input", "{v:?}");
}

#[test]
fn chasi_node_apply_refuses_an_app_installer_image() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let root = tmp.path().join("node");
    ok(
        &store,
        &[
            "build",
            "--type",
            "app-installer",
            "-t",
            "apps:1",
            example("app-image").to_str().unwrap(),
        ],
    );
    let archive = tmp.path().join("apps.tar");
    ok(&store, &["save", "apps:1", "-o", archive.to_str().unwrap()]);
    let (okay, v) = node(&root, &store, &["apply", archive.to_str().unwrap()]);
    assert!(!okay);
    let error = &v.last().unwrap()["error"];
    assert_eq!(error["kind"], "precheck", "{v:?}");
    assert_eq!(
        error["message"],
        format!(
            "image {} is an app-installer image (the type in its sealer.image.extension): it \
             holds applications for a running cluster, not a system a slot can run; apply a \
             kube-installer or OS image",
            archive.display()
        )
    );
    let (_, st) = node(&root, &store, &["status"]);
    assert!(
        st[0]["active_slot"].is_null(),
        "nothing was applied: {st:?}"
    );
}
