//! `chasi build|check --type kube-installer|app-installer` end to end: the extension's type,
//! sealer's rules for extending an image (applications inherited, `LAUNCH` re-declared, the
//! type given again), the application-image warnings, and the refusals with their messages.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;

fn events(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

fn app_names(ext: &Value) -> Vec<String> {
    let mut names: Vec<String> = ext["applications"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|a| a["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Builds examples/app-image as `apps:1`, an app-installer image.
fn build_app_image(store: &Path) -> String {
    let out = run(
        store,
        &[
            "build",
            "--type",
            "app-installer",
            "-t",
            "apps:1",
            example("app-image").to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

#[test]
fn the_app_image_example_builds_as_an_app_installer_without_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let stderr = build_app_image(&store);
    assert!(!stderr.contains("warning"), "{stderr}");
    let ext = &inspect(&store, "apps:1")["images"][0]["extension"];
    assert_eq!(ext["type"], "app-installer");
    assert_eq!(app_names(ext), ["backup", "dashboard", "nginx"]);
    // The default stays sealer's: kube-installer.
    let ctx = tmp.path().join("ctx");
    write_files(&ctx, &[("Kubefile", "FROM scratch\nLABEL a=b\n")]);
    ok(&store, &["build", "-t", "plain:1", ctx.to_str().unwrap()]);
    assert_eq!(
        inspect(&store, "plain:1")["images"][0]["extension"]["type"],
        "kube-installer"
    );
    // `chasi check` takes the same flag and finds nothing to say about the example.
    let out = ok(
        &store,
        &[
            "check",
            "--type",
            "app-installer",
            example("app-image").to_str().unwrap(),
        ],
    );
    assert!(!out.contains("KF2"), "{out}");
}

#[test]
fn an_app_image_extends_an_app_image_and_relaunches_what_it_inherits() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    build_app_image(&store);
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("nginx.yaml", "kind: Deployment\n"),
            (
                "Kubefile",
                "FROM apps:1\nAPP web local://nginx.yaml\nLAUNCH [\"nginx\", \"web\"]\n",
            ),
        ],
    );
    let out = run(
        &store,
        &[
            "build",
            "--type",
            "app-installer",
            "-t",
            "apps:2",
            ctx.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let ext = &inspect(&store, "apps:2")["images"][0]["extension"];
    assert_eq!(ext["type"], "app-installer");
    assert_eq!(app_names(ext), ["backup", "dashboard", "nginx", "web"]);
    assert_eq!(
        ext["launch"]["app_names"],
        serde_json::json!(["nginx", "web"])
    );
}

#[test]
fn a_cluster_image_on_the_app_image_inherits_its_apps_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    build_app_image(&store);
    // sealer's rule: the base's applications are inherited by name, its LAUNCH is not (it is
    // re-declared), and the type is the flag's (here the default, kube-installer).
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("rootfs/scripts/init-kube.sh", "kubeadm init\n"),
            ("rootfs/etc/kubeadm.yml", "kind: InitConfiguration\n"),
            (
                "Kubefile",
                "FROM apps:1\nCOPY rootfs .\nLAUNCH [\"dashboard\", \"nginx\"]\n",
            ),
        ],
    );
    let out = run(
        &store,
        &[
            "build",
            "--progress",
            "json",
            "-t",
            "cluster-apps:1",
            ctx.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let warnings: Vec<String> = events(&stderr)
        .iter()
        .filter(|e| e["event"] == "warning")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect();
    let kubefile = ctx.join("Kubefile");
    assert_eq!(
        warnings,
        [format!(
            "{}:1:1: KF242 the kube-installer image is based on `apps:1`, an app-installer \
             image: it inherits its applications but no Kubernetes, so the cluster runtime must \
             come from this Kubefile",
            kubefile.display()
        )]
    );
    let ext = &inspect(&store, "cluster-apps:1")["images"][0]["extension"];
    assert_eq!(ext["type"], "kube-installer");
    assert_eq!(app_names(ext), ["backup", "dashboard", "nginx"]);
    assert_eq!(
        ext["launch"]["app_names"],
        serde_json::json!(["dashboard", "nginx"])
    );
}

#[test]
fn an_app_image_on_a_cluster_image_is_refused_with_a_diagnostic() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    ok(
        &store,
        &[
            "build",
            "-t",
            "cluster-base:v1",
            example("cluster-base").to_str().unwrap(),
        ],
    );
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("nginx.yaml", "kind: Deployment\n"),
            (
                "Kubefile",
                "# an app on the cluster base\nFROM cluster-base:v1\nAPP web local://nginx.yaml\nLAUNCH [\"web\"]\n",
            ),
        ],
    );
    let ctx_arg = ctx.to_str().unwrap();
    let args = ["build", "--type", "app-installer", "-t", "web:1", ctx_arg];
    let stderr = fails(&store, &args);
    let kubefile = ctx.join("Kubefile");
    assert!(
        stderr.contains(
            "error[KF241]: the app-installer image is based on `cluster-base:v1`, which is a \
         kube-installer image: its files would be copied over the running cluster's on \
         every master\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("--> {}:2:1", kubefile.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("start an app-installer image from `FROM scratch`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: 1 error", kubefile.display())),
        "{stderr}"
    );
    let out = run(&store, &["inspect", "web:1"]);
    assert!(!out.status.success(), "nothing is tagged");
    // With JSON progress the diagnostic is one `diagnostics` event, as the compiler's are.
    let mut json_args = vec!["build", "--progress", "json"];
    json_args.extend_from_slice(&args[1..]);
    let stderr = fails(&store, &json_args);
    let diagnostics: Vec<Value> = events(&stderr)
        .into_iter()
        .filter(|e| e["event"] == "diagnostics")
        .flat_map(|e| e["diagnostics"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(diagnostics.len(), 1, "{stderr}");
    assert_eq!(diagnostics[0]["code"], "KF241");
    assert_eq!(diagnostics[0]["severity"], "error");
    // The same Kubefile is a valid cluster image.
    ok(&store, &["build", "-t", "web:1", ctx_arg]);
}

#[test]
fn an_app_image_on_a_plain_container_image_is_refused() {
    need("umoci", "umoci");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let layout = tmp.path().join("layout");
    let image = format!("{}:v1", layout.display());
    sh(std::process::Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    sh(std::process::Command::new("umoci").args(["new", "--image", &image]));
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("app.yaml", "kind: ConfigMap\n"),
            (
                "Kubefile",
                &format!("FROM oci:{image}\nAPP app local://app.yaml\nLAUNCH [\"app\"]\n"),
            ),
        ],
    );
    let stderr = fails(
        &store,
        &[
            "build",
            "--type",
            "app-installer",
            "-t",
            "app:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert!(
        stderr.contains(&format!(
            "error[KF241]: the app-installer image is based on `oci:{image}`, which is not a \
             sealer image (its manifest has no `sealer.image.extension`)"
        )),
        "{stderr}"
    );
}

#[test]
fn check_reports_the_app_image_warnings_at_their_words() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            ("rootfs/bin/kubectl", "k"),
            ("rootfs/manifests/app.yaml", "a"),
            ("app.yaml", "a"),
            (
                "Kubefile",
                "FROM scratch\nCOPY rootfs .\nAPP app local://app.yaml\n",
            ),
        ],
    );
    let out = run(
        &store,
        &[
            "check",
            "--type",
            "app-installer",
            "--format",
            "json",
            ctx.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "warnings only");
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let found: Vec<(String, u64, u64)> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_string(),
                d["line"].as_u64().unwrap(),
                d["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [("KF240".to_string(), 1, 1), ("KF239".to_string(), 2, 13)]
    );
    // The same Kubefile checked as a cluster image has nothing to say.
    let out = ok(&store, &["check", ctx.to_str().unwrap()]);
    assert!(!out.contains("KF2"), "{out}");
}

#[test]
fn an_unknown_type_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        &tmp.path().join("store"),
        &["build", "--type", "cluster", "-t", "x:1", "."],
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value 'cluster' for '--type <IMAGE_TYPE>'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[possible values: kube-installer, app-installer]"),
        "{stderr}"
    );
}
