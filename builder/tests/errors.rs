//! The build's failures as typed values: each names its input in its own variant (with the
//! underlying error as its source), so callers can tell a missing image from a broken store
//! without reading the message.

mod common;

use chasi_builder::events::Silent;
use chasi_builder::{
    build, build_kubefile, BuildError, ChownError, CompileObserver, KubefileBuild, KubefileError,
    KubefileInput, StepError,
};
use chasi_compiler::check::{ContextError, Platform};
use chasi_compiler::source::SourceFile;
use chasi_compiler::Compiled;
use chasi_layers::Store;
use common::options;
use std::collections::BTreeMap;
use std::error::Error as _;

struct Quiet;

impl CompileObserver for Quiet {
    fn compiled(&self, _: &SourceFile, _: &Compiled) {}
    fn warning(&self, _: &str) {}
    fn refused(&self, _: &SourceFile, _: &[chasi_compiler::diagnostics::Diagnostic]) {}
}

/// Builds `kubefile` in an empty context; the build's error.
fn build_error(store: &Store, kubefile: &[u8], tag: &str) -> BuildError {
    build_error_in(store, kubefile, tag, &[])
}

/// Builds `kubefile` in a context of `files` (path, content); the build's error.
fn build_error_in(store: &Store, kubefile: &[u8], tag: &str, files: &[(&str, &str)]) -> BuildError {
    let context = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let path = context.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    let input = KubefileInput {
        name: "Kubefile".into(),
        bytes: kubefile,
        build_args: BTreeMap::new(),
        platforms: vec![Platform::linux_amd64()],
        image_type: Default::default(),
    };
    let opts = options(context.path(), tag);
    match build_kubefile(store, &input, &opts, &Quiet, &Silent) {
        Err(KubefileError::Build(e)) => e,
        Ok(KubefileBuild::Rejected { compiled, .. }) => {
            panic!("rejected: {:?}", compiled.diagnostics)
        }
        other => panic!("expected a build error, got {other:?}"),
    }
}

fn store() -> (tempfile::TempDir, Store) {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("store")).unwrap();
    (root, store)
}

#[test]
fn a_base_image_missing_from_the_store_is_base_not_found() {
    let (_root, store) = store();
    match build_error(&store, b"FROM nothere:1\n", "t:1") {
        BuildError::BaseNotFound { reference, name } => {
            assert_eq!(
                (reference.as_str(), name.as_str()),
                ("nothere:1", "nothere:1")
            );
        }
        other => panic!("expected BaseNotFound, got {other:?}"),
    }
}

#[test]
fn a_base_ref_that_cannot_be_read_is_not_called_missing() {
    let (_root, store) = store();
    let refs = store.root().join("refs");
    std::fs::create_dir_all(&refs).unwrap();
    std::fs::write(refs.join("broken%3A1.json"), b"{ not json").unwrap();
    let err = build_error(&store, b"FROM broken:1\n", "t:1");
    let text = chasi_layers::error::chain(&err);
    assert!(
        matches!(err, BuildError::BaseRef { .. }) && !text.contains("not in the store"),
        "an unreadable ref must say why, not that the image is missing: {text}"
    );
    assert!(text.contains("broken"), "{text}");
}

#[test]
fn a_base_image_that_cannot_be_imported_keeps_its_oci_error() {
    let (_root, store) = store();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("no-layout");
    let kubefile = format!("FROM oci:{}\n", layout.display());
    let err = build_error(&store, kubefile.as_bytes(), "t:1");
    let text = chasi_layers::error::chain(&err);
    assert!(
        matches!(&err, BuildError::BaseImport { reference, .. } if reference.ends_with("no-layout")),
        "{err:?}"
    );
    assert!(
        err.source()
            .is_some_and(|s| s.downcast_ref::<chasi_oci::OciError>().is_some()),
        "{err:?}"
    );
    let prefix = format!("base image oci:{}: import failed: ", layout.display());
    assert!(text.starts_with(&prefix), "{text}");
}

#[test]
fn a_bad_tag_and_a_missing_context_are_typed() {
    let (_root, store) = store();
    match build_error(&store, b"FROM scratch\n", "a:b:c") {
        BuildError::BadTag { tag } => assert_eq!(tag, "a:b:c"),
        other => panic!("expected BadTag, got {other:?}"),
    }
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-context");
    let plan = {
        let context = tempfile::tempdir().unwrap();
        let options = chasi_compiler::CompileOptions {
            context: Some(context.path()),
            build_args: BTreeMap::new(),
            platforms: vec![Platform::linux_amd64()],
            image_type: Default::default(),
            skip_plan: false,
            file_digests: None,
        };
        let (_, compiled) =
            chasi_compiler::compile_bytes("Kubefile", b"FROM scratch\n", &options).unwrap();
        compiled.plan.expect("a valid Kubefile")
    };
    let err = build(&store, &plan, &options(&missing, "t:1"), &Silent).unwrap_err();
    let io = err
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>());
    assert!(
        matches!(err, BuildError::Context(ContextError::Root { .. }))
            && io.is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(err.to_string().contains("no-such-context"), "{err}");

    let mut empty = plan.clone();
    empty.targets.clear();
    let err = build(&store, &empty, &options(&missing, "t:1"), &Silent).unwrap_err();
    assert!(matches!(err, BuildError::NoTarget), "{err:?}");
}

#[test]
fn a_chown_to_an_unknown_user_is_a_step_error_whose_source_is_the_chown_error() {
    let (_root, store) = store();
    let files = [
        ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("a", "payload"),
    ];
    let kubefile = b"FROM scratch\nCOPY etc/ /etc/\nCOPY --chown=nosuchuser a /a\n";
    let err = build_error_in(&store, kubefile, "t:1", &files);
    assert_eq!(
        err.to_string(),
        "Kubefile:3:1: COPY --chown=nosuchuser a /a",
        "{err:?}"
    );
    let BuildError::Step { line, source, .. } = &err else {
        panic!("expected a step error, got {err:?}");
    };
    assert_eq!(*line, 3);
    match &**source {
        StepError::Chown(ChownError::UnknownUser { user, file }) => {
            assert_eq!((user.as_str(), *file), ("nosuchuser", "/etc/passwd"));
        }
        other => panic!("expected an unknown user, got {other:?}"),
    }
    let cause = err.source().expect("a source").to_string();
    assert_eq!(cause, "user `nosuchuser` is not in the image's /etc/passwd");
    // Without a passwd file the error says so, instead of "not in /etc/passwd".
    let err = build_error_in(
        &store,
        b"FROM scratch\nCOPY a /a\nCOPY --chown=app a /b\n",
        "t:2",
        &files[1..],
    );
    let BuildError::Step { source, .. } = &err else {
        panic!("expected a step error, got {err:?}");
    };
    assert!(
        matches!(
            &**source,
            StepError::Chown(ChownError::NoFile {
                file: "/etc/passwd",
                ..
            })
        ),
        "{err:?}"
    );
}
