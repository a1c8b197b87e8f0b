//! The collector every source writes into: references found (normalised here, so an
//! invalid one becomes an error at its position) and problems; [`Report::finish`] sorts,
//! deduplicates and applies the ignore list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::model::{ContainerImage, Detection, Problem, Severity, Source};
use crate::reference::normalize;

/// Images and problems found so far.
#[derive(Debug, Default)]
pub(crate) struct Report {
    images: BTreeMap<(String, Option<String>), BTreeSet<Source>>,
    problems: Vec<Problem>,
}

impl Report {
    /// Records a problem.
    pub(crate) fn problem(
        &mut self,
        severity: Severity,
        path: &Path,
        line: u32,
        column: u32,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            severity,
            path: path.to_path_buf(),
            line,
            column,
            message: message.into(),
        });
    }

    /// Records an error.
    pub(crate) fn error(
        &mut self,
        path: &Path,
        line: u32,
        column: u32,
        message: impl Into<String>,
    ) {
        self.problem(Severity::Error, path, line, column, message);
    }

    /// Records a warning.
    pub(crate) fn warning(
        &mut self,
        path: &Path,
        line: u32,
        column: u32,
        message: impl Into<String>,
    ) {
        self.problem(Severity::Warning, path, line, column, message);
    }

    /// Records a reference as written at `source`; an invalid one is an error there.
    pub(crate) fn image(&mut self, raw: &str, app: Option<&str>, source: Source) {
        self.image_or(raw, app, source, Severity::Error);
    }

    /// As [`Report::image`], an invalid reference being a problem of `severity`.
    pub(crate) fn image_or(
        &mut self,
        raw: &str,
        app: Option<&str>,
        source: Source,
        severity: Severity,
    ) {
        match normalize(raw) {
            Ok(reference) => {
                self.images
                    .entry((reference, app.map(str::to_string)))
                    .or_default()
                    .insert(source);
            }
            Err(why) => {
                let message = match &source.detail {
                    Some(d) => format!("{why} ({d})"),
                    None => why,
                };
                self.problem(severity, &source.path, source.line, source.column, message);
            }
        }
    }

    /// The detection: `ignored` (normalised references) removed, everything sorted.
    pub(crate) fn finish(mut self, ignored: &BTreeSet<String>) -> Detection {
        let images = std::mem::take(&mut self.images)
            .into_iter()
            .filter(|((r, _), _)| !ignored.contains(r))
            .map(|((reference, app_name), sources)| ContainerImage {
                reference,
                app_name,
                sources: sources.into_iter().collect(),
            })
            .collect();
        let mut problems = self.problems;
        problems.sort_by(|a, b| {
            (&a.path, a.line, a.column, &a.message).cmp(&(&b.path, b.line, b.column, &b.message))
        });
        problems.dedup();
        Detection { images, problems }
    }
}

/// A source position without detail.
pub(crate) fn at(path: impl Into<PathBuf>, line: u32, column: u32) -> Source {
    Source {
        path: path.into(),
        line,
        column,
        detail: None,
    }
}
