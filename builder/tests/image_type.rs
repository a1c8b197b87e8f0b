//! `--type` through the library: the extension's `type`, inheritance from a sealer base, and
//! the base-image rule (KF241 refuses before anything is tagged, KF242 warns).

mod common;

use chasi_builder::events::{BuildEvent, BuildObserver};
use chasi_builder::{build_kubefile, CompileObserver, KubefileBuild, KubefileInput};
use chasi_compiler::check::{ImageType, Platform};
use chasi_compiler::diagnostics::{Code, Diagnostic};
use chasi_compiler::source::SourceFile;
use chasi_compiler::Compiled;
use chasi_layers::Store;
use common::options;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Records what the build reports.
#[derive(Default)]
struct Record {
    refused: Mutex<Vec<Diagnostic>>,
    warnings: Mutex<Vec<String>>,
}

impl CompileObserver for Record {
    fn compiled(&self, _: &SourceFile, _: &Compiled) {}
    fn warning(&self, message: &str) {
        panic!("unexpected warning: {message}");
    }
    fn refused(&self, _: &SourceFile, diagnostics: &[Diagnostic]) {
        self.refused.lock().unwrap().extend_from_slice(diagnostics);
    }
}

impl BuildObserver for Record {
    fn event(&self, event: BuildEvent) {
        if let BuildEvent::Warning { message, .. } = event {
            self.warnings.lock().unwrap().push(message);
        }
    }
}

struct Fixture {
    context: tempfile::TempDir,
    _root: tempfile::TempDir,
    store: Store,
}

impl Fixture {
    fn new() -> Fixture {
        let context = tempfile::tempdir().unwrap();
        std::fs::write(context.path().join("app.yaml"), "kind: ConfigMap\n").unwrap();
        std::fs::write(context.path().join("init.sh"), "echo init\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path().join("store")).unwrap();
        Fixture {
            context,
            _root: root,
            store,
        }
    }

    fn build(
        &self,
        kubefile: &str,
        image_type: ImageType,
        tag: &str,
        record: &Record,
    ) -> KubefileBuild {
        let input = KubefileInput {
            name: "Kubefile".into(),
            bytes: kubefile.as_bytes(),
            build_args: BTreeMap::new(),
            platforms: vec![Platform::linux_amd64()],
            image_type,
        };
        let opts = options(self.context.path(), tag);
        build_kubefile(&self.store, &input, &opts, record, record).expect("no build error")
    }

    fn built(&self, kubefile: &str, image_type: ImageType, tag: &str) -> Value {
        match self.build(kubefile, image_type, tag, &Record::default()) {
            KubefileBuild::Built(_) => self.extension(tag),
            KubefileBuild::Rejected { compiled, .. } => {
                panic!("rejected: {:?}", compiled.diagnostics)
            }
        }
    }

    fn extension(&self, tag: &str) -> Value {
        let inspection = chasi_images::inspect(&self.store, tag).expect("inspect");
        inspection.images[0]
            .extension
            .clone()
            .expect("an extension")
    }
}

const APP: &str = "FROM scratch\nAPP app local://app.yaml\nLAUNCH [\"app\"]\n";
const CLUSTER: &str = "FROM scratch\nCOPY init.sh scripts/\nCMDS [\"bash scripts/init.sh\"]\n";

#[test]
fn the_type_is_written_and_an_app_image_extends_an_app_image() {
    let f = Fixture::new();
    assert_eq!(
        f.built(CLUSTER, ImageType::KubeInstaller, "t/cluster")["type"],
        "kube-installer"
    );
    assert_eq!(
        f.built(APP, ImageType::AppInstaller, "t/app")["type"],
        "app-installer"
    );
    let ext = f.built(
        "FROM t/app:latest\nCOPY app.yaml manifests/\nLAUNCH [\"app\"]\n",
        ImageType::AppInstaller,
        "t/app2",
    );
    assert_eq!(ext["type"], "app-installer");
    assert_eq!(
        ext["applications"][0]["name"], "app",
        "applications are inherited"
    );
    assert_eq!(ext["launch"]["app_names"][0], "app");
}

#[test]
fn an_app_image_on_a_cluster_image_is_refused_at_its_from_and_nothing_is_tagged() {
    let f = Fixture::new();
    f.built(CLUSTER, ImageType::KubeInstaller, "t/cluster");
    for kubefile in [
        "FROM t/cluster:latest\nAPP app local://app.yaml\nLAUNCH [\"app\"]\n",
        // Through a stage: the final image's files still start from the cluster image.
        "FROM t/cluster:latest AS base\nFROM base\nAPP app local://app.yaml\nLAUNCH [\"app\"]\n",
    ] {
        let record = Record::default();
        match f.build(kubefile, ImageType::AppInstaller, "t/bad", &record) {
            KubefileBuild::Rejected { source, compiled } => {
                let errors: Vec<&Diagnostic> = compiled
                    .diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .collect();
                assert_eq!(errors.len(), 1, "{:?}", compiled.diagnostics);
                let d = errors[0];
                assert_eq!(d.code, Code::AppImageBase);
                let at = source.line_col(d.span.start);
                assert_eq!((at.line, at.column), (1, 1));
                assert_eq!(
                    d.message,
                    "the app-installer image is based on `t/cluster:latest`, which is a \
                     kube-installer image: its files would be copied over the running cluster's \
                     on every master"
                );
                assert_eq!(*record.refused.lock().unwrap(), vec![d.clone()]);
            }
            KubefileBuild::Built(out) => panic!("built {}", out.name),
        }
        assert!(
            f.store.get_ref("t/bad:latest").is_err(),
            "nothing is tagged"
        );
    }
}

#[test]
fn a_cluster_image_on_an_app_image_builds_with_a_warning() {
    let f = Fixture::new();
    f.built(APP, ImageType::AppInstaller, "t/app");
    let record = Record::default();
    let kubefile = "FROM t/app:latest\nCOPY init.sh scripts/\nLAUNCH [\"app\"]\n";
    match f.build(kubefile, ImageType::KubeInstaller, "t/on-app", &record) {
        KubefileBuild::Built(_) => {}
        KubefileBuild::Rejected { compiled, .. } => panic!("{:?}", compiled.diagnostics),
    }
    let warnings = record.warnings.lock().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "Kubefile:1:1: KF242 the kube-installer image is based on `t/app:latest`, an \
             app-installer image"
        ),
        "{}",
        warnings[0]
    );
    let ext = f.extension("t/on-app");
    assert_eq!(ext["type"], "kube-installer");
    assert_eq!(ext["applications"][0]["name"], "app");
}
