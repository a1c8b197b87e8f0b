//! `CMD`/`CMDS` as a container's `Cmd` (README, "`CMD`/`CMDS` are a container's command"): a
//! container image runs them under `ctr run IMAGE` with no command given, in a containerd the
//! test starts; cluster images keep them in the sealer extension only; `--oci-cmd` overrides.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// The OCI `config` object and the sealer extension of a one-platform image.
fn config_and_extension(store: &Path, image: &str) -> (Value, Value) {
    let info = inspect(store, image);
    let one = &info["images"][0];
    (one["config"]["config"].clone(), one["extension"].clone())
}

#[test]
fn a_container_image_runs_its_cmds_under_ctr_without_a_command() {
    need("ctr", "containerd");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    busybox_context(
        &ctx,
        "FROM scratch\nCOPY rootfs/ /\nCMDS [\"echo one; echo two\", \"false || echo three\", \"echo four\"]\n",
        &["echo", "false"],
    );
    ok(
        &store,
        &["build", "-t", "ctr/cmds:1", ctx.to_str().unwrap()],
    );
    let (config, extension) = config_and_extension(&store, "ctr/cmds:1");
    assert_eq!(
        config["Cmd"],
        json!([
            "/bin/sh",
            "-c",
            "{ echo one; echo two\n} && { false || echo three\n} && { echo four\n}"
        ])
    );
    assert_eq!(
        extension["launch"]["cmds"],
        json!(["echo one; echo two", "false || echo three", "echo four"]),
        "the sealer extension keeps the commands"
    );
    let archive = tmp.path().join("cmds.tar");
    ok(
        &store,
        &[
            "save",
            "ctr/cmds:1",
            "-o",
            archive.to_str().unwrap(),
            "--format",
            "oci-archive",
        ],
    );
    need("skopeo", "skopeo");
    let skopeo: Value = serde_json::from_str(&sh(Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!("oci-archive:{}", archive.display()))))
    .expect("skopeo prints JSON");
    assert_eq!(skopeo["config"]["Cmd"], config["Cmd"]);

    let ctd = Containerd::start();
    sh(ctd.ctr().args(["images", "import"]).arg(&archive));
    let out = ctd
        .ctr()
        .args(["run", "--rm", "ctr/cmds:1", "chasi-cmds-test"])
        .output()
        .expect("run ctr");
    assert!(
        out.status.success(),
        "ctr run failed:\n{}\ncontainerd log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        ctd.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "one\ntwo\nthree\nfour\n"
    );
}

#[test]
fn cluster_images_keep_cmds_in_the_extension_unless_told() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    let build = |kubefile: &str, tag: &str, extra: &[&str]| {
        write_files(
            &ctx,
            &[("Kubefile", kubefile), ("app.yaml", "kind: List\n")],
        );
        let mut args = vec!["build", "-t", tag];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        ok(&store, &args);
        config_and_extension(&store, tag)
    };
    let cmds = "CMDS [\"kubectl apply -f app.yaml\"]\n";
    let shell_form = json!(["/bin/sh", "-c", "kubectl apply -f app.yaml"]);

    // sealer's base images carry cluster labels; an image FROM one inherits them.
    let labelled = format!(
        "FROM scratch\nCOPY app.yaml manifests/\nLABEL cluster.alpha.sealer.io/cluster-runtime-type=kubernetes\n{cmds}"
    );
    let (config, extension) = build(&labelled, "cluster/base:1", &[]);
    assert_eq!(config.get("Cmd"), None, "{config}");
    assert_eq!(
        extension["launch"]["cmds"],
        json!(["kubectl apply -f app.yaml"])
    );
    let (config, _) = build(&labelled, "cluster/forced:1", &["--oci-cmd", "always"]);
    assert_eq!(config["Cmd"], shell_form);
    let (config, _) = build(
        &format!("FROM cluster/base:1\nCOPY app.yaml more/\n{cmds}"),
        "cluster/derived:1",
        &[],
    );
    assert_eq!(config.get("Cmd"), None, "inherited label: {config}");

    // Applications make a cluster image (here declared; inherited ones count as well).
    let (config, _) = build(
        &format!("FROM scratch\nAPP web local://app.yaml\n{cmds}"),
        "cluster/app:1",
        &[],
    );
    assert_eq!(config.get("Cmd"), None, "{config}");
    let (config, extension) = build(
        "FROM cluster/app:1\nCOPY app.yaml other/\nCMDS [\"true\"]\n",
        "cluster/app-derived:1",
        &[],
    );
    assert_eq!(config.get("Cmd"), None, "inherited app: {config}");
    assert_eq!(extension["applications"][0]["name"], "web");

    // Without any of that it is a container image, unless --oci-cmd never.
    let plain = format!("FROM scratch\nCOPY app.yaml manifests/\n{cmds}");
    let (config, _) = build(&plain, "plain/auto:1", &[]);
    assert_eq!(config["Cmd"], shell_form);
    let (config, extension) = build(&plain, "plain/never:1", &["--oci-cmd", "never"]);
    assert_eq!(config.get("Cmd"), None, "{config}");
    assert_eq!(
        extension["launch"]["cmds"],
        json!(["kubectl apply -f app.yaml"])
    );
    // A container image without commands keeps its base's Cmd, as Docker does.
    let (config, _) = build(
        "FROM plain/auto:1\nCOPY app.yaml again/\n",
        "plain/inherits:1",
        &[],
    );
    assert_eq!(config["Cmd"], shell_form);

    let usage = run(
        &store,
        &["build", "-t", "x:1", "--oci-cmd", "sometimes", "."],
    );
    assert_eq!(
        usage.status.code(),
        Some(2),
        "a bad --oci-cmd is a usage error"
    );
    let err = String::from_utf8_lossy(&usage.stderr);
    assert!(err.contains("sometimes") && err.contains("never"), "{err}");
}
