//! Helm charts: load ([`load`]), values and dependencies ([`values`]), render
//! ([`render`]) — `helm template` with sealer's settings, over chasi's own template engine.

pub(crate) mod load;
pub(crate) mod render;
pub(crate) mod values;

use std::path::{Path, PathBuf};

use crate::report::Report;
use crate::template::value::{format_float_json, Value};

pub(crate) use render::Rendered;

/// A metadata value as text (Helm decodes `Chart.yaml` fields into strings).
pub(crate) fn meta_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        Value::Float(f) => format_float_json(*f),
        Value::Nil => String::new(),
        other => other.to_go(),
    }
}

/// Renders the chart whose files are `files`, found at `base`.
pub(crate) fn render_files(
    files: load::Files,
    base: PathBuf,
    report: &mut Report,
) -> Vec<Rendered> {
    let Some(chart) = load::load(files, base, report, 0) else {
        return Vec::new();
    };
    let values = chart.values.clone();
    let resolved = values::resolve(chart, values, report, 0);
    render::render(&resolved, report)
}

/// Renders the chart directory `dir` of the root.
pub(crate) fn render_dir(
    root: &crate::fsroot::Root,
    dir: &Path,
    report: &mut Report,
) -> Vec<Rendered> {
    let files = load::read_dir(root, dir, report);
    render_files(files, dir.to_path_buf(), report)
}
