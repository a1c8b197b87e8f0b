//! Fuzz target: the YAML and chart-template path of `chasi_detect::detect`. The input is
//! split at the first two NUL bytes into a template, a `values.yaml` and a manifest; they
//! are written as a chart and a manifest file in a temporary root. Detection must not panic
//! and must return a result (problems are expected).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let template = parts.next().unwrap_or_default();
    let values = parts.next().unwrap_or_default();
    let manifest = parts.next().unwrap_or_default();
    let Ok(root) = tempfile::tempdir() else { return };
    let chart = root.path().join("charts/fuzz");
    if std::fs::create_dir_all(chart.join("templates")).is_err()
        || std::fs::create_dir_all(root.path().join("manifests")).is_err()
    {
        return;
    }
    let _ = std::fs::write(chart.join("Chart.yaml"), "apiVersion: v2\nname: fuzz\nversion: 0.1.0\n");
    let _ = std::fs::write(chart.join("values.yaml"), values);
    let _ = std::fs::write(chart.join("templates/t.yaml"), template);
    let _ = std::fs::write(root.path().join("manifests/m.yaml"), manifest);
    let detection = chasi_detect::detect(root.path(), &chasi_detect::Options::default())
        .expect("the root is readable");
    for p in &detection.problems {
        let _ = p.to_string();
    }
});
