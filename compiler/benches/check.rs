//! Benchmark: parse + check + plan of a generated 20,000-line Kubefile.
//!
//! Run with `cargo bench -p chasi-compiler --bench check` (or `scripts/bench-check.sh`, which
//! also times the release `chasi check` binary). The Kubefile is written to a temporary
//! directory (the same generator as the script, so the numbers are comparable); the
//! best of several runs is reported in milliseconds and lines per second.

use chasi_compiler::check::Platform;
use chasi_compiler::source::SourceFile;
use chasi_compiler::{compile, CompileOptions};
use std::fmt::Write;
use std::time::{Duration, Instant};

/// A Kubefile of `lines` lines using every instruction, with variables, flags and apps.
fn generate(lines: usize) -> String {
    let mut out = String::from("ARG BASE=scratch\nFROM ${BASE} AS tools\nARG VERSION=1.0\n");
    let mut i = 0;
    // Each block is 10 lines; 3 lines before them, 7 after.
    while 3 + 10 * (i + 1) + 7 <= lines {
        let _ = write!(
            out,
            "COPY --chmod=0644 files/{i}/a.yaml files/{i}/b.yaml manifests/{i}/\n\
             ADD https://example.com/{i}.tar.gz downloads/\n\
             RUN echo step {i} ${{VERSION}} && test -d manifests/{i}\n\
             ENV STEP_{i}=\"value {i}\" LEGACY_{i}=x\n\
             LABEL io.example.step{i}=\"${{VERSION}}-{i}\"\n\
             ARG OPT=${{VERSION:-{i}}}\n\
             COPY ${{ARCH}}/bin/tool{i} bin/\n\
             APP app{i} local://apps/{i}/deploy.yaml local://apps/{i}/svc.yml\n\
             APPENV app{i} REPLICAS={i} NAME=app{i}\n\
             # a comment line between blocks\n"
        );
        i += 1;
    }
    out.push_str("FROM scratch AS extra\nCOPY --from=tools manifests/ manifests/\n");
    out.push_str("FROM tools\nCOPY --from=extra manifests/ more/\nKUBEVERSION >=1.22 <1.30\n");
    out.push_str("LAUNCH [\"app0\"]\n");
    out
}

fn main() {
    let lines = 20_000;
    let text = generate(lines);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("Kubefile");
    std::fs::write(&path, &text).expect("write the Kubefile");
    let actual_lines = text.lines().count();
    let options = CompileOptions {
        platforms: vec![Platform::linux_amd64()],
        ..CompileOptions::default()
    };
    let parse_start = Instant::now();
    let parsed = chasi_compiler::syntax::parse(&SourceFile::new("Kubefile", text.clone()));
    println!(
        "parse only: {:.1} ms ({} instructions)",
        parse_start.elapsed().as_secs_f64() * 1000.0,
        parsed.kubefile.instructions.len()
    );
    let start = Instant::now();
    let source = SourceFile::new("Kubefile", text.clone());
    let (program, _) = chasi_compiler::check::check(
        &source,
        &parsed.kubefile,
        &chasi_compiler::check::CheckOptions {
            context: None,
            build_args: &Default::default(),
            platforms: &[Platform::linux_amd64()],
            image_type: Default::default(),
        },
    )
    .expect("check");
    println!(
        "check only: {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    let start = Instant::now();
    let _ = chasi_compiler::plan::plan(&program, None, None).expect("plan");
    println!(
        "plan only: {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    let mut best = Duration::MAX;
    let mut nodes = 0;
    for _ in 0..7 {
        let start = Instant::now();
        let bytes = std::fs::read(&path).expect("read");
        let source = SourceFile::from_bytes("Kubefile", &bytes);
        let compiled = compile(&source, &options).expect("compile");
        let elapsed = start.elapsed();
        assert!(
            !compiled.has_errors(),
            "the generated Kubefile must be valid: {:?}",
            compiled.diagnostics.first()
        );
        nodes = compiled
            .plan
            .as_ref()
            .map_or(0, |p| p.targets[0].nodes.len());
        best = best.min(elapsed);
    }
    let ms = best.as_secs_f64() * 1000.0;
    let per_sec = actual_lines as f64 / best.as_secs_f64();
    println!(
        "check: {actual_lines} lines, {} bytes, {nodes} plan nodes: parse+check+plan {ms:.1} ms (best of 7), {per_sec:.0} lines/s",
        text.len()
    );
}
