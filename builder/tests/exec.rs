//! The executor as a library: a Kubefile built by `build_kubefile` (compile, file cache,
//! build), rebuilt from the cache, and a plan with an inconsistent stage refused cleanly.

mod common;

use chasi_builder::events::Silent;
use chasi_builder::{
    build, build_kubefile, BuildError, CompileObserver, KubefileBuild, KubefileInput,
};
use chasi_compiler::check::Platform;
use chasi_compiler::diagnostics::Diagnostic;
use chasi_compiler::source::SourceFile;
use chasi_compiler::Compiled;
use chasi_layers::Store;
use common::options;
use std::collections::BTreeMap;
use std::path::Path;

const KUBEFILE: &[u8] = b"FROM scratch AS files\nCOPY a.txt /a.txt\nFROM files\nENV K=v\nCOPY --from=files /a.txt /b.txt\nLABEL x=y\n";

struct Quiet;

impl CompileObserver for Quiet {
    fn compiled(&self, _: &SourceFile, _: &Compiled) {}
    fn warning(&self, message: &str) {
        panic!("unexpected warning: {message}");
    }
    fn refused(&self, _: &SourceFile, diagnostics: &[Diagnostic]) {
        panic!("unexpected refusal: {diagnostics:?}");
    }
}

fn input(bytes: &[u8]) -> KubefileInput<'_> {
    KubefileInput {
        name: "Kubefile".into(),
        bytes,
        build_args: BTreeMap::new(),
        platforms: vec![Platform::linux_amd64()],
        image_type: Default::default(),
    }
}

fn setup() -> (tempfile::TempDir, tempfile::TempDir, Store) {
    let context = tempfile::tempdir().unwrap();
    std::fs::write(context.path().join("a.txt"), "alpha").unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("store")).unwrap();
    (context, root, store)
}

#[test]
fn a_kubefile_builds_in_one_call_and_rebuilds_from_the_cache() {
    let (context, _root, store) = setup();
    let opts = options(context.path(), "lib/exec");
    let built = |bytes| match build_kubefile(&store, &input(bytes), &opts, &Quiet, &Silent) {
        Ok(KubefileBuild::Built(output)) => output,
        Ok(KubefileBuild::Rejected { compiled, .. }) => {
            panic!("rejected: {:?}", compiled.diagnostics)
        }
        Err(e) => panic!("{e}"),
    };
    let first = built(KUBEFILE);
    assert_eq!(first.name, "lib/exec:latest");
    assert_eq!((first.cached, first.executed), (0, 2));
    let second = built(KUBEFILE);
    assert_eq!(second.digest, first.digest, "the rebuild is byte-identical");
    assert_eq!((second.cached, second.executed), (2, 0));
    match build_kubefile(
        &store,
        &input(b"FROM scratch\nCOPY\n"),
        &opts,
        &Quiet,
        &Silent,
    ) {
        Ok(KubefileBuild::Rejected { compiled, .. }) => assert!(compiled.has_errors()),
        other => panic!("a Kubefile with errors must be rejected, got {other:?}"),
    }
}

fn plan(context: &Path) -> chasi_compiler::plan::Plan {
    let options = chasi_compiler::CompileOptions {
        context: Some(context),
        build_args: BTreeMap::new(),
        platforms: vec![Platform::linux_amd64()],
        image_type: Default::default(),
        skip_plan: false,
        file_digests: None,
    };
    let (_, compiled) = chasi_compiler::compile_bytes("Kubefile", KUBEFILE, &options).unwrap();
    compiled.plan.expect("the Kubefile is valid")
}

#[test]
fn a_plan_with_an_inconsistent_stage_is_an_error_not_a_panic() {
    let (context, _root, store) = setup();
    let opts = options(context.path(), "lib/exec");
    let good = plan(context.path());
    let breakages: [fn(&mut chasi_compiler::plan::TargetPlan); 6] = [
        |t| t.stages[1].nodes = 0..99,
        |t| t.stages[1].nodes.end -= 1,
        |t| t.stages.truncate(1),
        |t| t.stages[0].nodes.start = 1,
        |t| t.stages.clear(),
        |t| t.image = 0,
    ];
    for (i, breakage) in breakages.iter().enumerate() {
        let mut bad = good.clone();
        breakage(&mut bad.targets[0]);
        match build(&store, &bad, &opts, &Silent) {
            Err(BuildError::MalformedPlan { platform, .. }) => assert_eq!(platform, "linux/amd64"),
            other => panic!("breakage {i}: expected a malformed plan, got {other:?}"),
        }
    }
    build(&store, &good, &opts, &Silent).expect("the plan itself builds");
}
