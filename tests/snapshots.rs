//! Snapshots at the stage boundaries, through the CLI: the plan (`chasi plan --format json`)
//! and the OCI documents a build writes (index, manifest, config, as `chasi save --format oci`
//! puts them in a layout). Builds are reproducible, so the documents, digests included, are
//! the same on every machine of the same architecture; a change to any of them is a change of
//! chasi's output and must be reviewed (`cargo insta review`).

mod common;

use common::{example, ok};
use serde_json::Value;
use std::fs;
use std::path::Path;

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    json_file(&layout.join("blobs/sha256").join(hex))
}

#[test]
fn plan_json_of_the_multi_stage_example() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = example("multi-stage");
    let plan = ok(
        &tmp.path().join("store"),
        &[
            "plan",
            "--format",
            "json",
            "--platform",
            "linux/amd64",
            ctx.to_str().unwrap(),
        ],
    );
    let plan: Value = serde_json::from_str(&plan).unwrap();
    insta::assert_json_snapshot!("plan_multi_stage", plan);
}

#[test]
fn oci_documents_of_the_multi_stage_example() {
    common::need("runc", "runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = example("multi-stage");
    ok(
        &store,
        &[
            "build",
            "--platform",
            "linux/amd64",
            "-t",
            "snap:1",
            ctx.to_str().unwrap(),
        ],
    );
    let layout = tmp.path().join("layout");
    ok(
        &store,
        &[
            "save",
            "snap:1",
            "--format",
            "oci",
            "-o",
            layout.to_str().unwrap(),
        ],
    );
    let index = json_file(&layout.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = blob(&layout, &manifest_digest);
    let config = blob(&layout, manifest["config"]["digest"].as_str().unwrap());
    insta::assert_json_snapshot!("oci_index_multi_stage", index);
    insta::assert_json_snapshot!("oci_manifest_multi_stage", manifest);
    insta::assert_json_snapshot!("oci_config_multi_stage", config);
}

/// The bytes `chasi save` writes as an oci-archive and a docker-archive, by SHA-256. They proved
/// the archive writer's move into `chasi-tar` byte-identical; since then they changed only with
/// the image (the config's `Cmd`, issue 11 item 6).
#[test]
fn archive_digests_of_the_multi_stage_example() {
    use sha2::Digest as _;
    common::need("runc", "runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = example("multi-stage");
    let args = ["build", "--platform", "linux/amd64", "-t", "snap:1"];
    ok(&store, &[&args[..], &[ctx.to_str().unwrap()]].concat());
    let mut digests = std::collections::BTreeMap::new();
    for format in ["oci-archive", "docker-archive"] {
        let out = tmp.path().join(format!("{format}.tar"));
        let save = ["save", "snap:1", "--format", format, "-o"];
        ok(&store, &[&save[..], &[out.to_str().unwrap()]].concat());
        let digest = hex::encode(sha2::Sha256::digest(fs::read(&out).unwrap()));
        digests.insert(format, digest);
    }
    insta::assert_yaml_snapshot!("archive_digests_multi_stage", digests);
}
