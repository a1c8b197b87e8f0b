//! `chasi delta`, `chasi delta inspect` and `chasi load DELTA` end to end: images built with `chasi build`,
//! the delta read by skopeo as an OCI artifact, applied in a store that only has the base, the target then
//! exported byte-identical to the one it was made from.

mod common;

use common::{fails, need, ok, sh, write_files};
use std::fs;
use std::path::Path;
use std::process::Command;

fn build(store: &Path, ctx: &Path, tag: &str, files: &[(&str, String)]) {
    let _ = fs::remove_dir_all(ctx);
    fs::create_dir_all(ctx).unwrap();
    let owned: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    write_files(ctx, &owned);
    fs::write(ctx.join("Kubefile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    ok(
        store,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            tag,
            ctx.to_str().unwrap(),
        ],
    );
}

fn version(n: usize) -> Vec<(&'static str, String)> {
    let body: String = (0..4000)
        .map(|i| format!("line {i} of a config file\n"))
        .collect();
    vec![
        (
            "rootfs/etc/app.conf",
            body.replace("line 7 ", &format!("line 7 v{n} ")),
        ),
        ("rootfs/etc/version", format!("{n}\n")),
        ("rootfs/usr/lib/app-1.0/lib.txt", body.repeat(n)),
    ]
}

#[test]
fn a_delta_made_and_applied_with_the_cli_rebuilds_the_exported_target_byte_for_byte() {
    need("skopeo", "skopeo");
    let t = tempfile::tempdir().unwrap();
    let (origin, node) = (t.path().join("origin"), t.path().join("node"));
    build(&origin, &t.path().join("c1"), "app:1", &version(1));
    build(&origin, &t.path().join("c2"), "app:2", &version(2));
    let d = t.path().join("app.delta");
    let d_str = d.to_str().unwrap();
    ok(&origin, &["delta", "app:1", "app:2", "-o", d_str]);

    // Another implementation sees an OCI artifact whose subject is the target.
    let raw =
        sh(Command::new("skopeo").args(["inspect", "--raw", &format!("oci-archive:{d_str}")]));
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["artifactType"], "application/vnd.chasi.delta.v1");
    let target = common::inspect(&origin, "app:2")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(m["subject"]["digest"], target.as_str());

    let i: serde_json::Value = serde_json::from_str(&ok(
        &origin,
        &["delta", "inspect", d_str, "--format", "json"],
    ))
    .unwrap();
    assert_eq!(i["target"], target.as_str());
    assert!(i["ratio"].as_f64().unwrap() < 0.5, "{i}");
    let human = ok(&origin, &["delta", "inspect", d_str]);
    assert!(human.contains("total: delta"), "{human}");

    // A store without the base is told which base it needs, and gets nothing.
    let e = fails(&node, &["load", d_str]);
    let base = common::inspect(&origin, "app:1")["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(e.contains(&base), "{e}");
    let base_archive = t.path().join("app1.tar");
    ok(
        &origin,
        &["save", "app:1", "-o", base_archive.to_str().unwrap()],
    );
    ok(&node, &["load", base_archive.to_str().unwrap()]);
    let out = ok(&node, &["load", d_str]);
    assert!(out.contains(&target), "{out}");

    let export = |store: &Path, name: &str| {
        let f = t.path().join(name);
        ok(
            store,
            &[
                "export",
                "app:2",
                "--format",
                "tar",
                "-o",
                f.to_str().unwrap(),
            ],
        );
        fs::read(f).unwrap()
    };
    assert!(
        export(&origin, "o.tar") == export(&node, "n.tar"),
        "the exports differ"
    );
    let v = ok(&node, &["store", "verify"]);
    assert!(v.contains("0 problem"), "{v}");
}

#[test]
fn bad_delta_arguments_are_refused_with_the_reason() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("s");
    build(&store, &t.path().join("c1"), "app:1", &version(1));
    let e = fails(
        &store,
        &[
            "delta",
            "app:1",
            "nope:9",
            "-o",
            t.path().join("d").to_str().unwrap(),
        ],
    );
    assert!(e.contains("nope:9"), "{e}");
    let e = fails(
        &store,
        &[
            "delta",
            "app:1",
            "app:1",
            "--platform",
            "linux/s390x",
            "-o",
            t.path().join("d").to_str().unwrap(),
        ],
    );
    assert!(e.contains("linux/s390x"), "{e}");
    let e = fails(
        &store,
        &[
            "delta",
            "inspect",
            t.path().join("missing").to_str().unwrap(),
        ],
    );
    assert!(e.contains("missing"), "{e}");
}
