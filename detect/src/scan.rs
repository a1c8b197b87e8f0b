//! Where a rootfs keeps what needs images (sealer's layout, `docs/api/cloudrootfs.md`):
//! `manifests/` (YAML, `.tmpl` files that may be YAML, `imageList`), `charts/` (chart
//! directories and packaged charts) and `application/apps/<app>/` (a chart, or YAML files
//! and charts inside). A chart is a directory with `Chart.yaml` and `templates/`; the walk
//! does not descend into it (its `charts/` are subcharts, rendered with it).

use std::path::{Path, PathBuf};

use crate::chart::{self, Rendered};
use crate::fsroot::{Kind, Root};
use crate::list;
use crate::manifest::{self, Origin};
use crate::report::Report;
use crate::yaml::parse_stream;

/// Largest YAML file or packaged chart read.
pub(crate) const MAX_FILE: u64 = 16 << 20;
/// Deepest directory walked.
const MAX_DEPTH: usize = 32;

/// Which files of a directory tree are read as YAML.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Yamls {
    /// `manifests/`: `.yaml`, `.yml`, and `.tmpl` (warned about when not YAML).
    Manifests,
    /// An app directory: `.yaml` and `.yml`.
    App,
    /// `charts/`: no plain YAML, charts only.
    ChartsOnly,
}

/// Scans the root.
pub(crate) fn scan(root: &Root, report: &mut Report) {
    let manifests = Path::new("manifests");
    if root.is_dir(manifests) {
        walk(root, manifests, Yamls::Manifests, None, report, 0);
    }
    let image_list = manifests.join("imageList");
    match root.read(&image_list, MAX_FILE) {
        Ok(data) => match String::from_utf8(data) {
            Ok(text) => list::images(&text, &image_list, report),
            Err(_) => report.error(&image_list, 0, 0, "image list is not UTF-8"),
        },
        Err(crate::fsroot::Refusal::Missing) => {}
        Err(e) => report.warning(&image_list, 0, 0, format!("not read: {e}")),
    }
    let charts = Path::new("charts");
    if root.is_dir(charts) {
        walk(root, charts, Yamls::ChartsOnly, None, report, 0);
    }
    let apps = Path::new("application/apps");
    if root.is_dir(apps) {
        let entries = match root.list(apps) {
            Ok(e) => e,
            Err(e) => {
                report.warning(apps, 0, 0, format!("cannot read the directory: {e}"));
                return;
            }
        };
        for (name, kind) in entries {
            let dir = apps.join(&name);
            match kind {
                Kind::Dir => {}
                Kind::Symlink if root.is_dir(&dir) => {
                    report.warning(&dir, 0, 0, "app directory is a symlink, not followed");
                    continue;
                }
                _ => continue,
            }
            if is_chart(root, &dir) {
                feed(chart::render_dir(root, &dir, report), Some(&name), report);
            } else {
                walk(root, &dir, Yamls::App, Some(&name), report, 0);
            }
        }
    }
}

fn is_chart(root: &Root, dir: &Path) -> bool {
    root.is_file(&dir.join("Chart.yaml")) && root.is_dir(&dir.join("templates"))
}

fn walk(
    root: &Root,
    dir: &Path,
    yamls: Yamls,
    app: Option<&str>,
    report: &mut Report,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        report.warning(dir, 0, 0, "directory nested too deep, not scanned");
        return;
    }
    let entries = match root.list(dir) {
        Ok(e) => e,
        Err(e) => {
            report.warning(dir, 0, 0, format!("cannot read the directory: {e}"));
            return;
        }
    };
    for (name, kind) in entries {
        let path = dir.join(&name);
        let wanted = wanted(&name, yamls);
        match kind {
            Kind::Dir if is_chart(root, &path) => {
                feed(chart::render_dir(root, &path, report), app, report)
            }
            Kind::Dir => walk(root, &path, yamls, app, report, depth + 1),
            Kind::File if wanted => yaml_file(root, &path, yamls, app, report),
            Kind::File if yamls == Yamls::ChartsOnly && is_package(&name) => {
                package(root, &path, report)
            }
            Kind::Symlink => match root.kind(&path) {
                Ok((_, Kind::Dir)) => {
                    report.warning(&path, 0, 0, "symlink to a directory, not followed")
                }
                Ok((_, Kind::File)) if wanted => yaml_file(root, &path, yamls, app, report),
                Ok((_, Kind::File)) if yamls == Yamls::ChartsOnly && is_package(&name) => {
                    package(root, &path, report)
                }
                Ok(_) if !wanted => {}
                Ok((_, other)) => report.warning(
                    &path,
                    0,
                    0,
                    format!("not read: {other:?} is not a regular file"),
                ),
                Err(e) => report.warning(&path, 0, 0, format!("not read: {e}")),
            },
            Kind::Other(what) if wanted => report.warning(
                &path,
                0,
                0,
                format!("not read: it is a {what}, not a regular file"),
            ),
            _ => {}
        }
    }
}

fn wanted(name: &str, yamls: Yamls) -> bool {
    let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
    match yamls {
        Yamls::Manifests => yaml || name.ends_with(".tmpl"),
        Yamls::App => yaml,
        Yamls::ChartsOnly => false,
    }
}

fn is_package(name: &str) -> bool {
    name.ends_with(".tgz") || name.ends_with(".tar.gz")
}

fn package(root: &Root, path: &Path, report: &mut Report) {
    match root.read(path, MAX_FILE) {
        Ok(data) => {
            if let Some(files) = chart::load::read_tgz(&data, path, report) {
                feed(
                    chart::render_files(files, path.to_path_buf(), report),
                    None,
                    report,
                );
            }
        }
        Err(e) => report.warning(path, 0, 0, format!("packaged chart not read: {e}")),
    }
}

fn yaml_file(root: &Root, path: &Path, yamls: Yamls, app: Option<&str>, report: &mut Report) {
    let template = path.extension().is_some_and(|e| e == "tmpl");
    let data = match root.read(path, MAX_FILE) {
        Ok(d) => d,
        Err(e) => {
            report.warning(path, 0, 0, format!("not read: {e}"));
            return;
        }
    };
    let Ok(text) = String::from_utf8(data) else {
        if template {
            report.warning(path, 0, 0, "template is not UTF-8, not scanned");
        } else {
            report.error(path, 0, 0, "YAML file is not UTF-8");
        }
        return;
    };
    match parse_stream(&text) {
        Ok(docs) => {
            let origin = Origin { path, app, detail: None, install_time: template };
            for doc in &docs {
                manifest::images(doc, &origin, report);
            }
        }
        Err(e) if template && yamls == Yamls::Manifests => report.warning(
            path,
            e.line,
            e.column,
            format!("template is not YAML ({}), not scanned: it is rendered when the cluster is installed", e.message),
        ),
        Err(e) => report.error(path, e.line, e.column, format!("not valid YAML: {}", e.message)),
    }
}

/// Feeds rendered chart manifests to the YAML scan.
fn feed(rendered: Vec<Rendered>, app: Option<&str>, report: &mut Report) {
    for r in rendered {
        let path: PathBuf = r.path;
        match parse_stream(&r.text) {
            Ok(docs) => {
                let origin = Origin {
                    path: &path,
                    app,
                    detail: Some(&r.detail),
                    install_time: false,
                };
                for doc in &docs {
                    manifest::images(doc, &origin, report);
                }
            }
            Err(e) => report.error(
                &path,
                e.line,
                e.column,
                format!(
                    "{}: the rendered output is not valid YAML at its line {}, column {}: {}",
                    r.detail, e.line, e.column, e.message
                ),
            ),
        }
    }
}
