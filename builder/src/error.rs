//! Why a build stops. Every variant names the Kubefile line, path, digest or image involved.

use std::path::PathBuf;

/// A build failure.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A `RUN` command exited with a non-zero status.
    #[error("line {line}: `{command}` failed with exit code {exit_code}{}", output_tail(.output))]
    RunFailed {
        /// The Kubefile line.
        line: usize,
        /// The command as written.
        command: String,
        /// Its exit code.
        exit_code: i32,
        /// What it printed.
        output: String,
    },
    /// A step could not be executed (a source vanished, an unknown user, …).
    #[error("line {line}: {label}: {message}")]
    Step {
        /// The Kubefile line.
        line: usize,
        /// The step's label.
        label: String,
        /// What went wrong.
        message: String,
    },
    /// A base image could not be found or read.
    #[error("base image {reference}: {message}")]
    Base {
        /// The reference as written.
        reference: String,
        /// What went wrong.
        message: String,
    },
    /// A file-system operation on a work or context path failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] chasi_layers::Error),
    /// Reading or writing OCI documents failed.
    #[error(transparent)]
    Oci(#[from] chasi_oci::OciError),
    /// A remote source could not be fetched.
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// The `RUN` sandbox could not be set up.
    #[error(transparent)]
    Sandbox(#[from] crate::sandbox::SandboxError),
    /// The request itself is unusable (no plan, a bad tag, …).
    #[error("{0}")]
    Request(String),
    /// A plan whose structure is inconsistent (a stage's node range, a node's step), as a
    /// plan built by hand can be; [`chasi_compiler::plan::plan`] never makes one.
    #[error("the plan for {platform} is malformed: {problem}")]
    MalformedPlan {
        /// The target platform.
        platform: String,
        /// What is inconsistent.
        problem: String,
    },
    /// A stage this one needs failed.
    #[error("stage {stage} cannot be built because stage {dependency} failed")]
    DependencyFailed {
        /// The stage that was not built.
        stage: usize,
        /// The stage whose failure stopped it.
        dependency: usize,
    },
}

/// Longest output line quoted in a [`BuildError::RunFailed`] message, in characters.
const MAX_LINE: usize = 400;

fn output_tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(20);
    let mut text = String::from("; its last output:\n");
    for line in &lines[start..] {
        text.push_str("  | ");
        match line.char_indices().nth(MAX_LINE) {
            Some((end, _)) => {
                text.push_str(&line[..end]);
                text.push('…');
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text.trim_end().to_string()
}

/// Shorthand for results of this crate.
pub type Result<T, E = BuildError> = std::result::Result<T, E>;

/// Wraps an I/O error with an action and a path.
pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> BuildError {
    let path = path.into();
    move |source| BuildError::Io {
        action,
        path,
        source,
    }
}
