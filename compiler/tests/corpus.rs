//! Every Kubefile of the shared sealer corpus, checked without a build context: the
//! diagnostics, the sealer image extension and the build plan are snapshots; and what the
//! application-image rules (`--type app-installer`) say about each, in one snapshot.
//!
//! The corpus lives outside the repository (`shared/corpus/sealer`, see its README for the
//! odd files); it is read in place, never copied.

mod shared;

use chasi_compiler::check::{ImageType, Platform};
use chasi_compiler::diagnostics::Code;
use chasi_compiler::source::SourceFile;
use chasi_compiler::{compile, plan, CompileOptions};
use std::fmt::Write;

fn report(name: &str, text: &str) -> String {
    let source = SourceFile::new(name, text);
    let options = CompileOptions {
        platforms: vec![Platform::linux_amd64()],
        ..CompileOptions::default()
    };
    let compiled = compile(&source, &options).expect("no context, no I/O");
    let mut out = String::from("diagnostics:\n");
    for d in &compiled.diagnostics {
        let start = source.line_col(d.span.start);
        let end = source.line_col(d.span.end);
        let _ = writeln!(
            out,
            "  {}:{}-{}:{} {} {} {}",
            start.line,
            start.column,
            end.line,
            end.column,
            d.severity.as_str(),
            d.code.as_str(),
            d.message
        );
        if let Some(help) = &d.help {
            let _ = writeln!(out, "      help: {help}");
        }
    }
    match (&compiled.program, &compiled.plan) {
        (Some(program), Some(plan)) => {
            let extension = &program.targets[0].image.extension;
            let _ = writeln!(
                out,
                "extension: {}",
                serde_json::to_string(extension).expect("serializable")
            );
            out.push_str("plan:\n");
            out.push_str(&plan::render::text(plan));
        }
        _ => out.push_str("no plan (errors)\n"),
    }
    out
}

fn corpus_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read corpus")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "Kubefile"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 28,
        "expected the 28 corpus Kubefiles, found {}",
        files.len()
    );
    files
}

#[test]
fn corpus_snapshots() {
    let Some(dir) = shared::corpus() else {
        return;
    };
    for path in corpus_files(&dir) {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).expect("read Kubefile");
        insta::assert_snapshot!(name.clone(), report(&format!("{name}.Kubefile"), &text));
    }
}

/// The image-type diagnostics (KF239–KF242) of every corpus Kubefile built as an application
/// image, and whether it would still build.
#[test]
fn corpus_as_app_images() {
    let Some(dir) = shared::corpus() else {
        return;
    };
    let type_codes = [
        Code::AppImageClusterFiles,
        Code::AppImageLaunchesNothing,
        Code::AppImageBase,
        Code::ClusterImageFromAppImage,
    ];
    let mut out = String::new();
    for path in corpus_files(&dir) {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).expect("read Kubefile");
        let source = SourceFile::new(format!("{name}.Kubefile"), text);
        let options = CompileOptions {
            platforms: vec![Platform::linux_amd64()],
            image_type: ImageType::AppInstaller,
            ..CompileOptions::default()
        };
        let compiled = compile(&source, &options).expect("no context, no I/O");
        let _ = writeln!(
            out,
            "{name}: {}",
            match &compiled.program {
                Some(p) => format!("builds, type {}", p.targets[0].image.extension.image_type),
                None => "errors".to_string(),
            }
        );
        for d in compiled
            .diagnostics
            .iter()
            .filter(|d| type_codes.contains(&d.code))
        {
            let at = source.line_col(d.span.start);
            let _ = writeln!(
                out,
                "  {}:{} {} {} {}",
                at.line,
                at.column,
                d.severity.as_str(),
                d.code.as_str(),
                d.message
            );
        }
    }
    insta::assert_snapshot!("corpus_as_app_images", out);
}
