//! `chasi build` end to end: every instruction's effect on the image, the cache rules,
//! multi-platform indexes, reproducibility across stores, the sealer extension, and bases
//! from the store and from OCI layouts and archives written by other tools.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::path::Path;

fn events(stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

/// Labels of steps that were executed and of steps served from the cache.
fn executed_and_cached(stderr: &[u8]) -> (Vec<String>, Vec<String>) {
    let mut executed = Vec::new();
    let mut cached = Vec::new();
    for e in events(stderr) {
        let label = e["label"].as_str().unwrap_or("").to_string();
        match e["event"].as_str() {
            Some("step_started") => executed.push(label),
            Some("step_cached") => cached.push(label),
            _ => {}
        }
    }
    (executed, cached)
}

fn build_json(store: &Path, args: &[&str]) -> (String, Vec<String>, Vec<String>) {
    let mut all = vec!["build", "--progress", "json"];
    all.extend_from_slice(args);
    let out = run(store, &all);
    assert!(
        out.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (executed, cached) = executed_and_cached(&out.stderr);
    (
        built_digest(&String::from_utf8_lossy(&out.stdout)),
        executed,
        cached,
    )
}

#[test]
fn cluster_base_example_has_the_sealer_extension() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = example("cluster-base");
    ok(
        &store,
        &["build", "-t", "cluster-base:v1", ctx.to_str().unwrap()],
    );
    let info = inspect(&store, "cluster-base:v1");
    let image = &info["images"][0];
    assert_eq!(image["platform"], "linux/amd64");
    let ext = &image["extension"];
    assert_eq!(ext["schemaVersion"], "v1alpha1");
    assert_eq!(ext["type"], "kube-installer");
    assert_eq!(ext["launch"]["app_names"], serde_json::json!(["calico"]));
    let apps = ext["applications"].as_array().unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0]["name"], "calico");
    assert_eq!(apps[0]["type"], "shell");
    assert_eq!(apps[0]["files"], serde_json::json!(["calico.sh"]));
    assert_eq!(apps[0]["version"], "v1");
    assert_eq!(ext["env"]["REGISTRY_DOMAIN"], "sea.hub");
    let labels = &image["config"]["config"]["Labels"];
    assert_eq!(labels["cluster.alpha.sealer.io/kube-cni-calico"], "true");
    assert_eq!(
        labels["cluster.alpha.sealer.io/cluster-runtime-version"],
        "v1.28.4"
    );
    assert_eq!(
        labels["app.alpha.sealer.io/supported-kube-version"],
        ">=1.26.0 <1.30.0"
    );
    let env = image["config"]["config"]["Env"].as_array().unwrap();
    assert!(env.iter().any(|e| e == "REGISTRY_PORT=5000"), "{env:?}");
    // COPY rootfs, COPY ${ARCH}/bin, COPY imageList, CNI: four layers, zstd by default.
    let layers = image["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4);
    for l in layers {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    assert_eq!(image["config"]["created"], "1970-01-01T00:00:00Z");
}

#[test]
fn builds_are_reproducible_across_stores_and_without_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = example("cluster-base");
    let ctx = ctx.to_str().unwrap();
    let a = built_digest(&ok(&tmp.path().join("a"), &["build", "-t", "x:1", ctx]));
    let b = built_digest(&ok(&tmp.path().join("b"), &["build", "-t", "x:1", ctx]));
    let c = built_digest(&ok(
        &tmp.path().join("b"),
        &["build", "--no-cache", "-t", "x:1", ctx],
    ));
    assert_eq!(a, b);
    assert_eq!(b, c);
    let d = built_digest(&ok(
        &tmp.path().join("a"),
        &[
            "build",
            "--source-date-epoch",
            "1700000000",
            "-t",
            "x:2",
            ctx,
        ],
    ));
    let e = built_digest(&ok(
        &tmp.path().join("c"),
        &[
            "build",
            "--source-date-epoch",
            "1700000000",
            "-t",
            "x:2",
            ctx,
        ],
    ));
    assert_eq!(d, e);
    assert_ne!(a, d, "the epoch is part of the image");
}

#[test]
fn cache_hits_and_misses_follow_content_and_build_args() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("Kubefile", "FROM scratch\nARG FLAVOR=plain\nCOPY a/ a/\nCOPY b.txt b.txt\nRUN echo \"$FLAVOR\" > flavor.txt\nCOPY c.txt c.txt\n"),
            ("a/one.txt", "one\n"),
            ("b.txt", "bee\n"),
            ("c.txt", "sea\n"),
        ],
    );
    let c = ctx.to_str().unwrap();
    let (first, executed, cached) = build_json(&store, &["-t", "t:1", c]);
    assert_eq!(executed.len(), 4, "{executed:?}");
    assert!(cached.is_empty());

    // Touching a file changes only its mtime: everything is a hit, same image.
    let f = fs::File::options()
        .write(true)
        .open(ctx.join("a/one.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .unwrap();
    drop(f);
    let (again, executed, cached) = build_json(&store, &["-t", "t:1", c]);
    assert!(executed.is_empty(), "{executed:?}");
    assert_eq!(cached.len(), 4);
    assert_eq!(again, first);

    // One byte of b.txt: COPY a/ hits; COPY b.txt and everything after it miss.
    fs::write(ctx.join("b.txt"), "bee!\n").unwrap();
    let (_, executed, cached) = build_json(&store, &["-t", "t:1", c]);
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].contains("COPY a/"));
    assert_eq!(executed.len(), 3, "{executed:?}");

    // A build argument the RUN uses: COPYs before it hit, RUN and after miss.
    let (_, executed, cached) =
        build_json(&store, &["-t", "t:1", "--build-arg", "FLAVOR=spicy", c]);
    assert_eq!(cached.len(), 2, "{cached:?}");
    assert_eq!(executed.len(), 2, "{executed:?}");
    assert!(executed[0].contains("RUN"));

    // An argument nobody declares changes nothing.
    let (_, executed, _) = build_json(
        &store,
        &[
            "-t",
            "t:1",
            "--build-arg",
            "FLAVOR=spicy",
            "--build-arg",
            "UNUSED=1",
            c,
        ],
    );
    assert!(executed.is_empty(), "{executed:?}");

    // --no-cache executes everything again and gives the same image.
    let (nc, executed, cached) = build_json(
        &store,
        &["-t", "t:1", "--no-cache", "--build-arg", "FLAVOR=spicy", c],
    );
    assert_eq!(executed.len(), 4);
    assert!(cached.is_empty());
    let (cached_digest, _, _) =
        build_json(&store, &["-t", "t:1", "--build-arg", "FLAVOR=spicy", c]);
    assert_eq!(nc, cached_digest);
}

#[test]
fn multi_platform_builds_an_index_with_per_arch_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = example("cluster-base");
    ok(
        &store,
        &[
            "build",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "multi:1",
            ctx.to_str().unwrap(),
        ],
    );
    let info = inspect(&store, "multi:1");
    let images = info["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(images[0]["platform"], "linux/amd64");
    assert_eq!(images[1]["platform"], "linux/arm64");
    assert_eq!(images[1]["config"]["architecture"], "arm64");
    let layer = |i: usize, n: usize| {
        images[i]["layers"][n]["diff_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        layer(0, 0),
        layer(1, 0),
        "COPY rootfs is the same layer on both"
    );
    assert_ne!(
        layer(0, 1),
        layer(1, 1),
        "COPY ${{ARCH}}/bin differs per platform"
    );
    let root = &info["digest"];
    let listed = ok(&store, &["images", "--format", "json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["digest"], *root);
    assert_eq!(
        listed[0]["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
}

#[test]
fn run_changes_and_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("Kubefile", "FROM scratch\nCOPY files/ .\nRUN rm old.txt && rm -r gone && mkdir -p made && echo new > made/new.txt\n"),
            ("files/old.txt", "old\n"),
            ("files/keep.txt", "keep\n"),
            ("files/gone/inner.txt", "inner\n"),
        ],
    );
    ok(&store, &["build", "-t", "run:1", ctx.to_str().unwrap()]);
    // The RUN layer holds whiteouts for the deletions and the new files.
    let out = tmp.path().join("layout");
    ok(
        &store,
        &[
            "save",
            "run:1",
            "-o",
            out.to_str().unwrap(),
            "--format",
            "oci",
            "--compression",
            "none",
        ],
    );
    let index: Value = serde_json::from_slice(&fs::read(out.join("index.json")).unwrap()).unwrap();
    let blob_path = |d: &Value| {
        out.join("blobs/sha256")
            .join(d.as_str().unwrap().trim_start_matches("sha256:"))
    };
    let manifest: Value =
        serde_json::from_slice(&fs::read(blob_path(&index["manifests"][0]["digest"])).unwrap())
            .unwrap();
    assert_eq!(
        manifest["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    let blob = blob_path(&manifest["layers"][1]["digest"]);
    let mut names: Vec<String> = tar::Archive::new(fs::File::open(&blob).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".wh.gone", ".wh.old.txt", "made/", "made/new.txt"]);

    // A failing command fails the build with its exit code, its output and its line.
    write_files(
        &ctx,
        &[(
            "Kubefile",
            "FROM scratch\nCOPY files/ .\nRUN echo boom-output; exit 3\n",
        )],
    );
    let err = fails(&store, &["build", "-t", "run:2", ctx.to_str().unwrap()]);
    assert!(
        err.contains("Kubefile:3:1: `echo boom-output; exit 3`"),
        "{err}"
    );
    assert!(err.contains("exit code 3"), "{err}");
    assert!(err.contains("boom-output"), "{err}");
    assert!(
        run(&store, &["inspect", "run:2"]).status.code() == Some(1),
        "a failed build tags nothing"
    );
}

#[test]
fn bad_kubefile_fails_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[(
            "Kubefile",
            "FROM scratch\nCOPY missing.txt /x\nLAUNCH [\"nope\"]\n",
        )],
    );
    let err = fails(&store, &["build", "-t", "bad:1", ctx.to_str().unwrap()]);
    assert!(err.contains("KF300"), "{err}");
    assert!(err.contains("KF212"), "{err}");
    let out = run(&store, &["build", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "a missing -t is a usage error");
}

#[test]
fn multi_stage_example_copies_only_the_result() {
    need("skopeo", "skopeo");
    need("umoci", "umoci");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    ok(
        &store,
        &[
            "build",
            "-t",
            "ms:1",
            example("multi-stage").to_str().unwrap(),
        ],
    );
    let bundle = unpack(&store, "ms:1", tmp.path());
    let rootfs = bundle.join("rootfs");
    let mut found = Vec::new();
    for e in walk(&rootfs) {
        found.push(e);
    }
    assert_eq!(found, ["bin", "bin/greet", "etc", "etc/motd"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(rootfs.join("bin/greet"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o755);
    let info = inspect(&store, "ms:1");
    let ext = &info["images"][0]["extension"];
    assert_eq!(ext["launch"]["cmds"], serde_json::json!(["bin/greet"]));
    assert_eq!(info["images"][0]["config"]["author"], "chasi developers");
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(rel);
        }
    }
    out.sort();
    out
}

/// Saves an image as an OCI layout, re-compresses it to gzip with skopeo (umoci 0.4.7 reads
/// gzip layers only) and unpacks it with umoci; returns the bundle.
fn unpack(store: &Path, image: &str, tmp: &Path) -> std::path::PathBuf {
    let layout = tmp.join("layout");
    let gz = tmp.join("gz");
    let bundle = tmp.join("bundle");
    ok(
        store,
        &[
            "save",
            image,
            "-o",
            layout.to_str().unwrap(),
            "--format",
            "oci",
        ],
    );
    let tag = image.rsplit_once(':').unwrap().1;
    sh(std::process::Command::new("skopeo").args([
        "copy",
        "--dest-compress-format",
        "gzip",
        "--dest-compress",
        &format!("oci:{}:{tag}", layout.display()),
        &format!("oci:{}:{tag}", gz.display()),
    ]));
    sh(std::process::Command::new("umoci").args([
        "unpack",
        "--rootless",
        "--image",
        &format!("{}:{tag}", gz.display()),
        bundle.to_str().unwrap(),
    ]));
    bundle
}

#[test]
fn skopeo_and_umoci_read_what_we_build_and_we_read_what_skopeo_writes() {
    need("skopeo", "skopeo");
    need("umoci", "umoci");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = example("cluster-base");
    let digest = built_digest(&ok(
        &store,
        &["build", "-t", "cb:v1", ctx.to_str().unwrap()],
    ));
    let layout = tmp.path().join("layout");
    ok(
        &store,
        &[
            "save",
            "cb:v1",
            "-o",
            layout.to_str().unwrap(),
            "--format",
            "oci",
        ],
    );
    let raw = sh(std::process::Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci:{}:v1", layout.display()),
    ]));
    let manifest: Value = serde_json::from_str(&raw).unwrap();
    assert!(manifest["annotations"]["sealer.image.extension"].is_string());

    // umoci's tree is exactly what the Kubefile put together.
    let bundle = unpack(&store, "cb:v1", tmp.path());
    let rootfs = bundle.join("rootfs");
    let mut expected: Vec<String> = walk(&ctx.join("rootfs"));
    expected.extend(
        [
            "bin",
            "bin/kubeadm",
            "bin/kubectl",
            "bin/kubelet",
            "manifests/imageList",
        ]
        .map(String::from),
    );
    expected.extend(
        [
            "application",
            "application/apps",
            "application/apps/calico",
            "application/apps/calico/calico.sh",
        ]
        .map(String::from),
    );
    expected.sort();
    expected.dedup();
    assert_eq!(walk(&rootfs), expected);
    assert_eq!(
        fs::read(rootfs.join("bin/kubectl")).unwrap(),
        fs::read(ctx.join("amd64/bin/kubectl")).unwrap()
    );

    // A layout written by skopeo loads back, under the tag skopeo gave it.
    let copied = tmp.path().join("skopeo-copy");
    sh(std::process::Command::new("skopeo").args([
        "copy",
        &format!("oci:{}:v1", layout.display()),
        &format!("oci:{}:v1", copied.display()),
    ]));
    let other = tmp.path().join("other-store");
    let loaded = ok(&other, &["load", copied.to_str().unwrap()]);
    assert!(loaded.contains(&digest), "{loaded}");
    assert!(loaded.starts_with("skopeo-copy:v1 "), "{loaded}");
    assert_eq!(inspect(&other, "skopeo-copy:v1")["digest"], digest.as_str());
    // And saving it again from the other store gives the same manifest.
    let archive = tmp.path().join("cb.tar");
    ok(
        &other,
        &[
            "save",
            "skopeo-copy:v1",
            "-o",
            archive.to_str().unwrap(),
            "--format",
            "oci-archive",
        ],
    );
    sh(std::process::Command::new("skopeo")
        .args(["inspect", &format!("oci-archive:{}", archive.display())]));
}

#[test]
fn bases_from_the_store_and_from_layouts_and_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    ok(
        &store,
        &[
            "build",
            "-t",
            "base:1",
            example("cluster-base").to_str().unwrap(),
        ],
    );
    let saved = |format: &str, name: &str| {
        let p = tmp.path().join(name);
        ok(
            &store,
            &[
                "save",
                "base:1",
                "-o",
                p.to_str().unwrap(),
                "--format",
                format,
            ],
        );
        p
    };
    let oci = saved("oci", "base-oci");
    let archive = saved("oci-archive", "base.oci.tar");
    let docker = saved("docker-archive", "base.docker.tar");
    let ctx = tmp.path().join("ctx");
    for (i, from) in [
        "base:1".to_string(),
        format!("oci:{}:1", oci.display()),
        format!("oci-archive:{}:1", archive.display()),
        format!("docker-archive:{}", docker.display()),
    ]
    .iter()
    .enumerate()
    {
        write_files(
            &ctx,
            &[
                (
                    "Kubefile",
                    &format!("FROM {from}\nAPP nginx local://nginx.yaml\nLAUNCH [\"nginx\"]\n"),
                ),
                (
                    "nginx.yaml",
                    "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n",
                ),
            ],
        );
        // The store name resolves in the store it was built in; the others import from files.
        let other = if i == 0 {
            store.clone()
        } else {
            tmp.path().join(format!("store-{i}"))
        };
        ok(&other, &["build", "-t", "app:1", ctx.to_str().unwrap()]);
        let info = inspect(&other, "app:1");
        let image = &info["images"][0];
        assert_eq!(
            image["layers"].as_array().unwrap().len(),
            5,
            "{from}: base layers + APP"
        );
        let apps: Vec<&str> = image["extension"]["applications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        if from.starts_with("docker-archive:") {
            // A docker-archive has no manifest annotations: the base's apps are not known.
            assert_eq!(apps, ["nginx"], "{from}");
        } else {
            assert_eq!(
                apps,
                ["calico", "nginx"],
                "{from}: the base's apps are inherited"
            );
        }
    }
}

#[test]
fn a_content_change_is_seen_even_with_the_old_mtime_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("Kubefile", "FROM scratch\nCOPY data.txt data.txt\n"),
            ("data.txt", "one\n"),
        ],
    );
    // Old enough that the stamp is trusted by the file-digest cache.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let set_mtime = |t| {
        fs::File::options()
            .write(true)
            .open(ctx.join("data.txt"))
            .unwrap()
            .set_modified(t)
            .unwrap()
    };
    set_mtime(old);
    let c = ctx.to_str().unwrap();
    let (first, executed, _) = build_json(&store, &["-t", "m:1", c]);
    assert_eq!(executed.len(), 1);
    let (_, executed, _) = build_json(&store, &["-t", "m:1", c]);
    assert!(executed.is_empty(), "unchanged: served from the cache");
    // Same size, same mtime, different bytes: only the change time tells.
    fs::write(ctx.join("data.txt"), "two\n").unwrap();
    set_mtime(old);
    let (second, executed, _) = build_json(&store, &["-t", "m:1", c]);
    assert_eq!(
        executed.len(),
        1,
        "the change must not be hidden by the file-digest cache"
    );
    assert_ne!(first, second);
}

#[test]
fn invalid_utf8_is_reported_at_its_position() {
    let tmp = tempfile::tempdir().unwrap();
    let kubefile = tmp.path().join("Kubefile");
    fs::write(&kubefile, b"FROM scratch\nLABEL a=\xff\xfe\n").unwrap();
    let out = chasi()
        .args([
            "check",
            "--format",
            "json",
            "-f",
            kubefile.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &json["diagnostics"][0];
    assert_eq!(d["code"], "KF111");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(2), Some(9))
    );
}

/// Cache records of layer steps (`{"key": …, "value": {"diff_id", "blob", "size"}}`) in a store.
fn step_records(store: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = fs::read_dir(store.join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            serde_json::from_slice::<Value>(&fs::read(p).unwrap())
                .is_ok_and(|v| v["value"]["blob"].is_object())
        })
        .collect();
    out.sort();
    out
}

fn remove_all(dir: &Path, ext: &str) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        if e.path().extension().is_some_and(|x| x == ext) {
            fs::remove_file(e.path()).unwrap();
        }
    }
}

#[test]
fn a_cache_hit_needs_its_layer_present_and_a_record_its_own_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            (
                "Kubefile",
                "FROM scratch\nCOPY a.txt a.txt\nCOPY b.txt b.txt\n",
            ),
            ("a.txt", &"alpha\n".repeat(5000)),
            ("b.txt", &"beta\n".repeat(7000)),
        ],
    );
    let c = ctx.to_str().unwrap();
    let (clean, _, _) = build_json(&tmp.path().join("clean"), &["-t", "t:1", c]);
    let store = tmp.path().join("store");
    let (first, executed, _) = build_json(&store, &["-t", "t:1", c]);
    assert_eq!((first.as_str(), executed.len()), (clean.as_str(), 2));
    let rebuild = |what: &str| {
        let (d, executed, cached) = build_json(&store, &["-t", "t:1", c]);
        assert_eq!(
            executed.len(),
            2,
            "{what}: both steps run again ({cached:?} cached)"
        );
        assert_eq!(d, clean, "{what}: same image as a clean build");
        ok(&store, &["store", "gc"]);
        ok(&store, &["store", "verify"]);
    };

    // Packs deleted: the layer index and links are still there, but the hit cannot be proven.
    remove_all(&store.join("packs"), "pack");
    rebuild("packs deleted");
    // Layer indexes deleted.
    remove_all(&store.join("layers"), "json");
    rebuild("layer indexes deleted");
    // Two step records swapped: each is now under the other's key, so neither answers.
    let recs = step_records(&store);
    assert_eq!(recs.len(), 2, "{recs:?}");
    let (r0, r1) = (fs::read(&recs[0]).unwrap(), fs::read(&recs[1]).unwrap());
    fs::write(&recs[0], &r1).unwrap();
    fs::write(&recs[1], &r0).unwrap();
    rebuild("records swapped");
    // The records were overwritten: everything is a hit again.
    let (d, executed, cached) = build_json(&store, &["-t", "t:1", c]);
    assert!(executed.is_empty(), "{executed:?}");
    assert_eq!((d, cached.len()), (clean, 2));
}

#[test]
fn a_bad_tag_is_a_usage_error_before_any_step_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    // A RUN can write only into its layer: a step that ran leaves a layer in the store.
    write_files(
        &ctx,
        &[("Kubefile", "FROM scratch\nRUN echo ran > /marker\n")],
    );
    let ctx = ctx.to_str().unwrap();
    for tag in ["a:b:c", "Upper:1", "x:", "oci:/tmp/l:v1", "a/b:c:d"] {
        let out = run(&store, &["build", "--progress", "json", "-t", tag, ctx]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "-t {tag}: {stderr}");
        assert!(stderr.contains(tag), "the error names the tag: {stderr}");
        assert!(
            !stderr.contains("step_started") && !store.join("layers").exists(),
            "-t {tag}: no step may run before the tag is checked"
        );
    }
    // The same Kubefile with a good tag does run the step.
    let (_, executed, _) = build_json(&store, &["-t", "good:1", ctx]);
    assert_eq!(executed.len(), 1, "{executed:?}");
    let out = run(&store, &["tag", "good:1", "a:b:c"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "chasi tag checks its target too"
    );
}

#[test]
fn a_copy_of_context_files_announces_its_total_bytes_and_processes_exactly_them() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(ctx.join("rootfs/etc")).unwrap();
    std::fs::write(ctx.join("rootfs/etc/a.conf"), "a".repeat(3000)).unwrap();
    std::fs::write(ctx.join("rootfs/etc/b.conf"), "").unwrap();
    std::fs::write(ctx.join("rootfs/big"), vec![7u8; 1 << 20]).unwrap();
    std::fs::write(ctx.join("Kubefile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    let out = run(
        &store,
        &[
            "build",
            "--progress",
            "json",
            "-t",
            "total:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = events(&out.stderr);
    let total: Vec<u64> = all
        .iter()
        .filter(|e| e["event"] == "step_total")
        .map(|e| e["bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(total.len(), 1, "{all:?}");
    let processed: u64 = all
        .iter()
        .filter(|e| e["event"] == "step_bytes")
        .map(|e| e["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(processed, total[0], "the total is the layer tar's size");
    let done = all.iter().find(|e| e["event"] == "step_done").unwrap();
    assert_eq!(done["layer_bytes"].as_u64().unwrap(), total[0]);
}
