//! The result types of detection: what the builder reads back. They are plain data so the
//! builder can pull, place and annotate images and print problems without knowing how they
//! were found.

use std::fmt;
use std::path::PathBuf;

/// Host files that add or remove images, sealer's `--image-list` and `--ignored-image-list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// A list of references to add (one a line, sealer's syntax).
    pub image_list: Option<PathBuf>,
    /// A list of references to remove; compared after normalising both sides.
    pub ignored_image_list: Option<PathBuf>,
}

/// Everything detection found: the images and the problems met on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detection {
    /// The images, sorted by reference then app, one entry per (reference, app).
    pub images: Vec<ContainerImage>,
    /// Errors (the build must fail) and warnings, sorted by path, line and column.
    pub problems: Vec<Problem>,
}

impl Detection {
    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// One container image the cluster needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    /// The normalised reference: `docker.io/library/nginx:latest`; a digest is kept.
    pub reference: String,
    /// The app (`application/apps/<app>/`) that needs it, if it came from an app.
    pub app_name: Option<String>,
    /// Where it was found, sorted.
    pub sources: Vec<Source>,
}

/// Where a reference was found.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    /// The file, relative to the root, or a host list file as given in [`Options`]. For a
    /// chart it is the template file (inside a packaged chart: `CHART.tgz/PATH`).
    pub path: PathBuf,
    /// 1-based line; for a chart, in the template's rendered output.
    pub line: u32,
    /// 1-based column (in characters).
    pub column: u32,
    /// What the position means, e.g. `rendered from chart ingress-nginx, templates/x.yaml`.
    pub detail: Option<String>,
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The images found are incomplete or wrong: the build must fail.
    Error,
    /// Something was skipped that cannot hold images the build needs, or is unusual.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A problem met while detecting, with its position.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file, as in [`Source::path`].
    pub path: PathBuf,
    /// 1-based line, 0 when the problem is about the whole file.
    pub line: u32,
    /// 1-based column, 0 when the problem is about the whole file.
    pub column: u32,
    /// What is wrong, lowercase.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.path.display(),
            self.line,
            self.column,
            self.severity,
            self.message
        )
    }
}

/// Why detection could not run at all. Everything else is a [`Problem`].
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The root is missing, not a directory or unreadable.
    #[error("cannot read the image root {path}")]
    Root {
        /// The root.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A list file of [`Options`] cannot be read.
    #[error("cannot read the image list {path}")]
    List {
        /// The list file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
