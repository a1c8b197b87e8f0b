//! Why a build stops. Every variant about an input names the Kubefile line, path, digest or
//! image involved and carries the error beneath it as its source, so the CLI can say each cause
//! once and class the failure (`src/errors.rs`) without reading messages.

use std::path::PathBuf;

/// A build failure.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A `RUN` command exited with a non-zero status.
    #[error("{at}: `{command}` failed with exit code {exit_code}{hint}{}", output_tail(.output))]
    RunFailed {
        /// The Kubefile line.
        line: usize,
        /// Where the step is: `FILE:LINE:COLUMN`, or `line N` for a plan without a source.
        at: String,
        /// The command as written.
        command: String,
        /// Its exit code.
        exit_code: i32,
        /// What it printed.
        output: String,
        /// `; …` when the output shows why (a program for another architecture), else empty.
        hint: String,
    },
    /// A step could not be executed (a source vanished, an unknown user, …).
    #[error("{at}: {label}")]
    Step {
        /// The Kubefile line.
        line: usize,
        /// Where the step is: `FILE:LINE:COLUMN`, or `line N` for a plan without a source.
        at: String,
        /// The step's label.
        label: String,
        /// What went wrong (boxed: it is large and rare).
        #[source]
        source: Box<StepError>,
    },
    /// The image a build's final image starts from does not fit `--type` (KF241: an
    /// app-installer image on a kube-installer, untyped or non-sealer base).
    #[error("{at}: {} {}", .diagnostic.code.as_str(), .diagnostic.message)]
    ImageType {
        /// Where the base's `FROM` is: `FILE:LINE:COLUMN`, or `line N` for a plan without a source.
        at: String,
        /// The diagnostic, with the `FROM`'s span in the Kubefile (boxed: it is rare).
        diagnostic: Box<chasi_compiler::diagnostics::Diagnostic>,
    },
    /// A base image's documents do not agree (its config and manifest list different
    /// numbers of layers).
    #[error("base image {reference}: {message}")]
    Base {
        /// The reference as written.
        reference: String,
        /// What disagrees.
        message: String,
    },
    /// A base image could not be read: its reference is not one, or its index, manifest or
    /// config is missing, broken or has no manifest for the platform.
    #[error("base image {reference}")]
    BaseImage {
        /// The reference as written.
        reference: String,
        /// Why.
        #[source]
        source: chasi_oci::OciError,
    },
    /// A base image could not be imported from its layout or archive.
    #[error("base image {reference}: import failed")]
    BaseImport {
        /// The reference as written.
        reference: String,
        /// Why.
        #[source]
        source: chasi_oci::OciError,
    },
    /// A base image in a registry could not be pulled.
    #[error("base image {reference}: pull failed")]
    BasePull {
        /// The reference as written.
        reference: String,
        /// Why (boxed: the registry's errors are large).
        #[source]
        source: Box<chasi_registry::RegistryError>,
    },
    /// A base image in a registry is not in the store and the build may not pull it.
    #[error("base image {reference} is not in the store and the build is offline (`chasi pull {reference}` brings it in)")]
    BaseOffline {
        /// The reference as written.
        reference: String,
    },
    /// A container image the cluster needs (`--build-mode all`) could not be fetched.
    #[error("container image {reference} for {platform} (--build-mode all): cannot carry it")]
    Carry {
        /// The normalised reference.
        reference: String,
        /// The target platform.
        platform: String,
        /// Why (boxed: the registry's errors are large).
        #[source]
        source: Box<chasi_registry::RegistryError>,
    },
    /// Finding the container images the cluster needs reported errors (an invalid reference,
    /// a chart that cannot be rendered), each with the image file, line and column.
    #[error("{platform}: {count} problem{} finding the container images to carry (--build-mode all):\n{problems}", if *count == 1 { "" } else { "s" })]
    CarryDetect {
        /// The target platform.
        platform: String,
        /// How many.
        count: usize,
        /// One per line, `path:line:column: error: message`.
        problems: String,
    },
    /// `--cache-to`: the build cache could not be pushed.
    #[error("--cache-to registry:{reference}: cannot push the build cache")]
    CacheTo {
        /// The registry reference.
        reference: String,
        /// Why.
        #[source]
        source: Box<chasi_registry::RegistryError>,
    },
    /// A container image to carry is not cached and the build is offline.
    #[error("container image {reference} for {platform} is not in the build cache and the build is offline (build once without --offline to fetch it)")]
    CarryOffline {
        /// The normalised reference.
        reference: String,
        /// The target platform.
        platform: String,
    },
    /// A base image's reference in the store exists but cannot be read.
    #[error("base image {reference}")]
    BaseRef {
        /// The reference as written.
        reference: String,
        /// Why.
        #[source]
        source: chasi_layers::Error,
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
    /// The plan has no target platform.
    #[error("the plan has no target")]
    NoTarget,
    /// The name the image is to be tagged with is not `NAME[:TAG]`.
    #[error("`{tag}` is not a valid image name (expected NAME[:TAG])")]
    BadTag {
        /// The name as given.
        tag: String,
    },
    /// The build context cannot be opened.
    #[error(transparent)]
    Context(#[from] chasi_compiler::check::ContextError),
    /// A base image named by its store name has no reference in the store.
    #[error("base image {reference}: `{name}` is not in the store (build it, `chasi load` it, or use oci:/oci-archive:/docker-archive:)")]
    BaseNotFound {
        /// The reference as written.
        reference: String,
        /// The store name looked up (`name:tag`).
        name: String,
    },
    /// An image in the store could not be read (`chasi-images`).
    #[error(transparent)]
    Images(#[from] chasi_images::ImagesError),
    /// A local archive `ADD` unpacks cannot be extracted.
    #[error("cannot extract {path}")]
    Extract {
        /// The archive.
        path: PathBuf,
        /// Why (an unsafe entry, a broken tar, …).
        #[source]
        source: chasi_layers::Error,
    },
    /// The file digest cache cannot be encoded.
    #[error("cannot encode the file digest cache")]
    EncodeCache(#[source] serde_json::Error),
    /// A stage reads a stage the plan does not have.
    #[error("stage {index} does not exist")]
    StageMissing {
        /// The index it asked for.
        index: usize,
    },
    /// The stages ended with neither a result for the last stage nor an error.
    #[error("the last stage produced nothing")]
    NoResult,
    /// A thread of the build panicked (its panic message went to stderr).
    #[error("{0} panicked")]
    ThreadPanicked(BuildThread),
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

/// Why one step (a [`BuildError::Step`], which names its line and label) could not be
/// executed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// `--chown` cannot be resolved to numeric ids.
    #[error(transparent)]
    Chown(#[from] ChownError),
    /// The sources cannot be placed at the destination.
    #[error(transparent)]
    Destination(#[from] DestinationError),
    /// A remote source's content is not what `--checksum` says.
    #[error("{url} has digest {digest} but --checksum wants {wanted}")]
    Checksum {
        /// The source's URL.
        url: String,
        /// The digest of what was fetched.
        digest: chasi_layers::Digest,
        /// The checksum as written.
        wanted: String,
    },
    /// `COPY --from` names an image, which is not supported yet.
    #[error("COPY --from an image ({reference}) is not supported yet: add a stage `FROM {reference} AS src` and copy from it")]
    CopyFromImage {
        /// The image reference as written.
        reference: String,
    },
    /// A remote source the step names was not fetched before it ran (a plan built by hand).
    #[error("{url} was not fetched")]
    NotFetched {
        /// The source's URL.
        url: String,
    },
    /// A context source checked at compile time is gone.
    #[error("{path} vanished from the build context")]
    Vanished {
        /// The source, relative to the context.
        path: String,
    },
    /// A `COPY --from` source is not in the source stage.
    #[error("/{path} does not exist in the source stage")]
    NotInStage {
        /// The source path in the stage, without its leading `/`.
        path: String,
    },
    /// A `COPY --from` source is, or passes through, a symbolic link.
    #[error("/{path} goes through a symbolic link in the source stage")]
    SymlinkInStage {
        /// The source path in the stage, without its leading `/`.
        path: String,
    },
    /// A remote source cannot be fetched.
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    /// A context source cannot be read.
    #[error(transparent)]
    Context(#[from] chasi_compiler::check::ContextError),
    /// The step's program is for an architecture this host cannot run (no emulator).
    #[error(transparent)]
    Foreign(#[from] Box<crate::sandbox::binfmt::ForeignError>),
    /// The file system of the layers below the step cannot be materialised.
    #[error("cannot apply the layers below the step")]
    Rootfs(#[source] Box<BuildError>),
}

/// Why `--chown=user[:group]` cannot be resolved in the image's own `/etc/passwd` and
/// `/etc/group`. `file` is the file's path in the image.
#[derive(Debug, thiserror::Error)]
pub enum ChownError {
    /// The user is not in the passwd file.
    #[error("user `{user}` is not in the image's {file}")]
    UnknownUser {
        /// The user name as written.
        user: String,
        /// `/etc/passwd`.
        file: &'static str,
    },
    /// The group is not in the group file.
    #[error("group `{group}` is not in the image's {file}")]
    UnknownGroup {
        /// The group name as written.
        group: String,
        /// `/etc/group`.
        file: &'static str,
    },
    /// The entry of the name has no number where its id belongs.
    #[error(
        "line {line} of the image's {file}: the {field} of `{name}` is `{value}`, not a number"
    )]
    Malformed {
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
        /// The 1-based line.
        line: usize,
        /// The user or group name.
        name: String,
        /// `uid` or `gid`.
        field: &'static str,
        /// The field as written (excerpted; empty when the line has no such field).
        value: String,
    },
    /// The image has no such regular file (reached through the image's own directories).
    #[error("the image has no {file} to look `{name}` up in")]
    NoFile {
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
        /// The name to look up.
        name: String,
    },
    /// The file cannot be read (or is not UTF-8).
    #[error("cannot read the image's {file}")]
    Unreadable {
        /// `/etc/passwd` or `/etc/group`.
        file: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Why sources cannot be placed at a `COPY`/`ADD`/`APP` destination (Docker's destination
/// rules, and the image's own symbolic links).
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// Several sources, and the destination is not a directory.
    #[error("with more than one source the destination must be a directory and end with `/` (got `{dest}`)")]
    SeveralSources {
        /// The destination as written.
        dest: String,
    },
    /// A file's destination is the image root itself.
    #[error("a file cannot replace the image root (`{file}`)")]
    FileAsRoot {
        /// The file's name.
        file: String,
    },
    /// A parent of a destination is a symbolic link out of the image root.
    #[error("cannot write {dest}: it goes through the symbolic link {via}, which points outside the image root")]
    Escapes {
        /// The path to be written.
        dest: String,
        /// The link and its target, as `/link -> target`.
        via: String,
    },
    /// A parent of a destination is not a directory.
    #[error("cannot write {dest}: {parent} is not a directory in the image")]
    NotADirectory {
        /// The path to be written.
        dest: String,
        /// The parent that is not a directory.
        parent: String,
    },
    /// Resolving a parent of a destination loops through symbolic links.
    #[error("cannot write {dest}: too many levels of symbolic links")]
    SymlinkLoop {
        /// The path to be written.
        dest: String,
    },
}

/// The threads a build runs work on, as [`BuildError::ThreadPanicked`] names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildThread {
    /// The thread building one target platform.
    Target,
    /// The thread building one stage.
    Stage,
    /// The thread writing a layer's tar into the store.
    LayerWriter,
}

impl std::fmt::Display for BuildThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BuildThread::Target => "a build thread",
            BuildThread::Stage => "a stage thread",
            BuildThread::LayerWriter => "the layer writer thread",
        })
    }
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
