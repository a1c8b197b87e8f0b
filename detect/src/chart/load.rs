//! A chart's files, from a directory beneath the root or a packaged `.tgz`, read into
//! memory once (every file and the whole chart bounded), then split as Helm's loader does:
//! `Chart.yaml`, `values.yaml`, `templates/`, subcharts in `charts/` (directories and
//! `.tgz` packages, nested packages included) and the rest as `.Files`.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::fsroot::{Kind, Root};
use crate::report::Report;
use crate::template::funcs::yaml_to_value;
use crate::template::value::{Map, Value};
use crate::yaml::parse_stream;

/// Largest file read (a template, values file, a packaged chart).
pub(crate) const MAX_FILE: u64 = 16 << 20;
/// Largest chart, all files (unpacked) together.
const MAX_CHART: u64 = 64 << 20;
/// Most files in a chart.
const MAX_FILES: usize = 10_000;
/// Deepest packaged chart inside packaged charts.
const MAX_NESTING: usize = 8;

/// A chart's files by path inside the chart.
pub(crate) type Files = BTreeMap<String, Vec<u8>>;

/// A dependency of `Chart.yaml` (or `requirements.yaml`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Dependency {
    /// Its chart name.
    pub(crate) name: String,
    /// The name it is used under.
    pub(crate) alias: Option<String>,
    /// Value paths deciding whether it is enabled.
    pub(crate) condition: Option<String>,
    /// Its tags.
    pub(crate) tags: Vec<String>,
}

/// A loaded chart.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    /// `name` of `Chart.yaml` (or its alias as a subchart).
    pub(crate) name: String,
    /// Where its files are, for messages (`charts/x`, `charts/x/charts/y.tgz`).
    pub(crate) base: PathBuf,
    /// `Chart.yaml` as a map.
    pub(crate) metadata: Map,
    /// `values.yaml`.
    pub(crate) values: Map,
    /// `templates/…` sources by path inside the chart.
    pub(crate) templates: Vec<(String, String)>,
    /// The non-template files, for `.Files`.
    pub(crate) files: Rc<BTreeMap<String, Rc<Vec<u8>>>>,
    /// Subcharts found in `charts/`.
    pub(crate) subcharts: Vec<Chart>,
    /// Declared dependencies.
    pub(crate) dependencies: Vec<Dependency>,
}

/// Reads the chart directory `dir` (relative to the root) into memory.
pub(crate) fn read_dir(root: &Root, dir: &Path, report: &mut Report) -> Files {
    let mut files = Files::new();
    let mut total = 0u64;
    walk(root, dir, "", &mut files, &mut total, report, 0);
    files
}

fn walk(
    root: &Root,
    dir: &Path,
    prefix: &str,
    files: &mut Files,
    total: &mut u64,
    report: &mut Report,
    depth: usize,
) {
    if depth > 32 {
        report.warning(
            &dir.join(prefix),
            0,
            0,
            "directory nested too deep, not read",
        );
        return;
    }
    let here = dir.join(prefix);
    let entries = match root.list(&here) {
        Ok(e) => e,
        Err(e) => {
            report.warning(&here, 0, 0, format!("cannot read the directory: {e}"));
            return;
        }
    };
    for (name, kind) in entries {
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let path = dir.join(&rel);
        let linked = kind == Kind::Symlink;
        let kind = match kind {
            Kind::Symlink => match root.kind(&path) {
                Ok((_, k)) => k,
                Err(e) => {
                    report.warning(&path, 0, 0, format!("not read: {e}"));
                    continue;
                }
            },
            k => k,
        };
        match kind {
            Kind::Dir if !linked => walk(root, dir, &rel, files, total, report, depth + 1),
            Kind::Dir => report.warning(&path, 0, 0, "symlink to a directory, not followed"),
            Kind::File => {
                if files.len() >= MAX_FILES {
                    report.error(
                        &path,
                        0,
                        0,
                        format!("chart has more than {MAX_FILES} files, the rest not read"),
                    );
                    return;
                }
                match root.read(&path, MAX_FILE) {
                    Ok(data) => {
                        *total += data.len() as u64;
                        if *total > MAX_CHART {
                            report.error(
                                &path,
                                0,
                                0,
                                "chart larger than 64 MiB, the rest not read",
                            );
                            return;
                        }
                        files.insert(rel, data);
                    }
                    Err(e) => report.warning(&path, 0, 0, format!("not read: {e}")),
                }
            }
            Kind::Other(what) => report.warning(&path, 0, 0, format!("a {what}, not read")),
            Kind::Symlink => report.warning(&path, 0, 0, "symlink not resolved"),
        }
    }
}

/// The files of a packaged chart (`.tgz`), its top directory stripped.
pub(crate) fn read_tgz(data: &[u8], path: &Path, report: &mut Report) -> Option<Files> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(data));
    let mut files = Files::new();
    let mut total = 0u64;
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            report.error(path, 0, 0, format!("not a chart archive: {e}"));
            return None;
        }
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                report.error(path, 0, 0, format!("not a chart archive: {e}"));
                return None;
            }
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = match entry.path() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(_) => continue,
        };
        let inner: Vec<&str> = name
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        if inner.len() < 2 || inner.contains(&"..") {
            continue;
        }
        let rel = inner[1..].join("/");
        let size = entry.header().size().unwrap_or(u64::MAX);
        total = total.saturating_add(size);
        if size > MAX_FILE || total > MAX_CHART || files.len() >= MAX_FILES {
            report.error(path, 0, 0, format!("chart archive too large (a member over 16 MiB, over 64 MiB or {MAX_FILES} files in all): {rel}"));
            return None;
        }
        let mut buf = Vec::with_capacity(size as usize);
        if let Err(e) = entry.by_ref().take(MAX_FILE + 1).read_to_end(&mut buf) {
            report.error(path, 0, 0, format!("not a chart archive: {e}"));
            return None;
        }
        files.insert(rel, buf);
    }
    Some(files)
}

fn yaml_map(data: &[u8], path: &Path, what: &str, report: &mut Report) -> Option<Map> {
    let text = match std::str::from_utf8(data) {
        Ok(t) => t,
        Err(_) => {
            report.error(path, 0, 0, format!("{what} is not UTF-8"));
            return None;
        }
    };
    match parse_stream(text) {
        Ok(docs) => match docs.first().map(yaml_to_value) {
            None => Some(Map::new()),
            Some(Value::Map(m)) => Some(m.borrow().clone()),
            Some(other) => {
                report.error(
                    path,
                    1,
                    1,
                    format!("{what} is a {}, not a mapping", other.type_name()),
                );
                None
            }
        },
        Err(e) => {
            report.error(
                path,
                e.line,
                e.column,
                format!("{what} is not valid YAML: {}", e.message),
            );
            None
        }
    }
}

fn dependencies(meta: &Map) -> Vec<Dependency> {
    let Some(Value::List(deps)) = meta.get("dependencies") else {
        return Vec::new();
    };
    let text = |m: &Map, k: &str| {
        m.get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    deps.iter()
        .filter_map(|d| match d {
            Value::Map(m) => {
                let m = m.borrow();
                Some(Dependency {
                    name: text(&m, "name")?,
                    alias: text(&m, "alias"),
                    condition: text(&m, "condition"),
                    tags: match m.get("tags") {
                        Some(Value::List(t)) => t
                            .iter()
                            .filter_map(|t| t.as_str().map(str::to_string))
                            .collect(),
                        _ => Vec::new(),
                    },
                })
            }
            _ => None,
        })
        .collect()
}

/// Builds a chart from its files; `None` (with an error) when `Chart.yaml` is unusable.
pub(crate) fn load(
    mut files: Files,
    base: PathBuf,
    report: &mut Report,
    nesting: usize,
) -> Option<Chart> {
    let chart_yaml = base.join("Chart.yaml");
    let Some(meta_bytes) = files.remove("Chart.yaml") else {
        report.error(&chart_yaml, 0, 0, "chart has no Chart.yaml");
        return None;
    };
    let mut metadata = yaml_map(&meta_bytes, &chart_yaml, "Chart.yaml", report)?;
    let name = match metadata.get("name").map(super::meta_text) {
        Some(n) if !n.is_empty() => n,
        _ => {
            report.error(&chart_yaml, 0, 0, "Chart.yaml has no name");
            return None;
        }
    };
    if let Some(req) = files.remove("requirements.yaml") {
        if let Some(r) = yaml_map(
            &req,
            &base.join("requirements.yaml"),
            "requirements.yaml",
            report,
        ) {
            if let Some(d) = r.get("dependencies") {
                metadata
                    .entry("dependencies".into())
                    .or_insert_with(|| d.clone());
            }
        }
    }
    let values = match files.remove("values.yaml") {
        Some(v) => {
            yaml_map(&v, &base.join("values.yaml"), "values.yaml", report).unwrap_or_default()
        }
        None => Map::new(),
    };
    let mut templates = Vec::new();
    let mut sub_files: BTreeMap<String, Files> = BTreeMap::new();
    let mut packages = Vec::new();
    let mut rest = BTreeMap::new();
    for (rel, data) in files {
        if rel.starts_with("templates/") {
            match String::from_utf8(data) {
                Ok(t) => templates.push((rel, t)),
                Err(_) => report.error(&base.join(&rel), 0, 0, "template is not UTF-8"),
            }
        } else if let Some(sub) = rel.strip_prefix("charts/") {
            match sub.split_once('/') {
                Some((dir, inner)) => {
                    sub_files
                        .entry(dir.to_string())
                        .or_default()
                        .insert(inner.to_string(), data);
                }
                None if sub.ends_with(".tgz") || sub.ends_with(".tar.gz") => {
                    packages.push((sub.to_string(), data))
                }
                None => {}
            }
        } else if !matches!(
            rel.as_str(),
            "values.schema.json" | "Chart.lock" | "requirements.lock" | ".helmignore"
        ) {
            rest.insert(rel, Rc::new(data));
        }
    }
    let mut subcharts = Vec::new();
    for (dir, sf) in sub_files {
        if sf.contains_key("Chart.yaml") {
            subcharts.extend(load(sf, base.join("charts").join(&dir), report, nesting));
        }
    }
    for (file, data) in packages {
        let path = base.join("charts").join(&file);
        if nesting >= MAX_NESTING {
            report.error(&path, 0, 0, "packaged charts nested too deep");
            continue;
        }
        if let Some(sf) = read_tgz(&data, &path, report) {
            subcharts.extend(load(sf, path, report, nesting + 1));
        }
    }
    let dependencies = dependencies(&metadata);
    if let Some(Value::List(deps)) = metadata.get("dependencies") {
        for d in deps.iter() {
            if let Value::Map(m) = d {
                if m.borrow().contains_key("import-values") {
                    let dep = m
                        .borrow()
                        .get("name")
                        .map(super::meta_text)
                        .unwrap_or_default();
                    report.warning(
                        &chart_yaml,
                        0,
                        0,
                        format!("import-values of dependency {dep} is not supported: the values it imports are not set"),
                    );
                }
            }
        }
    }
    Some(Chart {
        name,
        base,
        metadata,
        values,
        templates,
        files: Rc::new(rest),
        subcharts,
        dependencies,
    })
}
