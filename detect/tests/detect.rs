//! Detection over a cluster rootfs in the shapes real projects use: an ingress-nginx-like,
//! a cert-manager-like and an umbrella chart (directory and packaged subcharts, `global`
//! values, a condition that disables one), a calico-like manifest set (initContainers, a
//! CRD embedding a pod template, a `List`), apps (a chart and plain YAML), image lists;
//! and sealer's heuristic's false hits, which must not appear. The result is snapshotted.

mod common;

use std::fs;

use chasi_detect::{detect, Options, Severity};
use common::{copy_tree, fixtures, pack_chart, render};

fn cluster() -> (tempfile::TempDir, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    copy_tree(&fixtures().join("rootfs"), root.path());
    pack_chart(
        &fixtures().join("db-chart/db"),
        &root.path().join("charts/umbrella/charts/db-1.0.0.tgz"),
    );
    let host = tempfile::tempdir().unwrap();
    fs::write(
        host.path().join("images.txt"),
        "# from the command line\ndocker.io/library/alpine:3.19\n",
    )
    .unwrap();
    fs::write(
        host.path().join("ignored.txt"),
        "# short forms match normalised ones\nbusybox:1.36\n",
    )
    .unwrap();
    (root, host)
}

fn options(host: &std::path::Path) -> Options {
    Options {
        image_list: Some(host.join("images.txt")),
        ignored_image_list: Some(host.join("ignored.txt")),
    }
}

#[test]
fn cluster_rootfs() {
    let (root, host) = cluster();
    let d = detect(root.path(), &options(host.path())).unwrap();
    insta::assert_snapshot!(render(&d, host.path()));
}

#[test]
fn sealer_heuristic_false_hits_are_not_images() {
    let (root, host) = cluster();
    let d = detect(root.path(), &options(host.path())).unwrap();
    for fake in [
        "commented",
        "configmap/string",
        "parameter.image",
        "fake/init",
        "widget/not-a-container",
        "also/not-an-image",
        "disabled-by-condition",
        "not-yaml",
        "markdown",
    ] {
        assert!(
            !d.images.iter().any(|i| i.reference.contains(fake)),
            "{fake} detected"
        );
    }
    assert!(!d
        .images
        .iter()
        .any(|i| i.reference.ends_with("/library/latest:latest")));
}

#[test]
fn sealer_heuristic_misses_are_found() {
    let (root, host) = cluster();
    let d = detect(root.path(), &options(host.path())).unwrap();
    let refs: Vec<&str> = d.images.iter().map(|i| i.reference.as_str()).collect();
    for want in [
        // repository + tag composed by charts
        "docker.io/kubernetesui/dashboard:v2.7.0",
        "registry.example.com/example/web:v2",
        "registry.example.com/library/postgres:16.1",
        "registry.example.com/bitnami/redis:7.2",
        // initContainers and a CRD-embedded pod template
        "docker.io/calico/cni:v3.26.1",
        "docker.io/calico/typha:v3.26.1",
        // digests are kept
        "registry.k8s.io/ingress-nginx/controller:1.9.4@sha256:5b161f051d017e55d358435f295f5e9a297e66158f136321d9b04520ec6c48a3",
    ] {
        assert!(refs.contains(&want), "{want} missing from {refs:#?}");
    }
    assert!(!d.has_errors(), "{:#?}", d.problems);
}

#[test]
fn ignore_list_compares_normalised_forms() {
    let (root, host) = cluster();
    let d = detect(root.path(), &options(host.path())).unwrap();
    assert!(!d
        .images
        .iter()
        .any(|i| i.reference == "docker.io/library/busybox:1.36"));
    let d = detect(
        root.path(),
        &Options {
            ignored_image_list: None,
            ..options(host.path())
        },
    )
    .unwrap();
    let busybox = d
        .images
        .iter()
        .find(|i| i.reference == "docker.io/library/busybox:1.36")
        .unwrap();
    assert_eq!(
        busybox.sources[0].path,
        std::path::Path::new("manifests/imageList")
    );
}

#[test]
fn detection_is_deterministic() {
    let (root, host) = cluster();
    let a = detect(root.path(), &options(host.path())).unwrap();
    let b = detect(root.path(), &options(host.path())).unwrap();
    assert_eq!(a, b);
    assert!(a.problems.iter().all(|p| p.severity == Severity::Warning));
}
