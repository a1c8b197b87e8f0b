//! The checked program: what a Kubefile means, typed and fully expanded.
//!
//! The checker lowers the syntax tree into this model once per target platform (variables
//! such as `${ARCH}` resolve differently per platform). Nothing here refers to the syntax
//! tree except through spans and line numbers, so the planner and the build executor can
//! work from this model alone. Field names in the sealer image extension follow sealer
//! v0.11's JSON exactly (`app_names`, `schemaVersion`, …) so the extension can be written
//! into the manifest annotation `sealer.image.extension` as it is.

use crate::source::Span;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

/// A target platform `os/arch[/variant]`: the workspace's one platform type.
pub use chasi_oci::Platform;

/// Parses a platform as a Kubefile and `chasi check --platform` write it: `os/arch[/variant]`,
/// each part non-empty, lower-case letters, digits, `_`, `.` (a little wider than
/// `chasi_oci::Platform`'s `FromStr`, which the image commands use, and with the compiler's
/// own messages, which diagnostics show).
pub fn parse_platform(text: &str) -> Result<Platform, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    };
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if ok(os) && ok(arch) => {
            let variant = parts.get(2).map(|v| v.to_string());
            if variant.as_deref().is_some_and(|v| !ok(v)) {
                return Err(format!("`{text}` has an invalid variant"));
            }
            Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant,
            })
        }
        _ => Err(format!(
            "`{text}` is not a platform of the form os/arch[/variant] (e.g. linux/arm64)"
        )),
    }
}

/// Writes a platform into the program and plan JSON as it always was,
/// `{"os","arch","variant"?}`: `chasi_oci::Platform` calls the field `architecture`, and the
/// JSON keeps `arch` so the output of `chasi check`/`chasi plan` does not change
/// (`tests/snapshots.rs` holds it). Node ids hash the platform's text, not this JSON.
pub(crate) fn platform_json<S: Serializer>(platform: &Platform, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct PlatformJson<'a> {
        os: &'a str,
        arch: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        variant: Option<&'a str>,
    }
    PlatformJson {
        os: &platform.os,
        arch: &platform.architecture,
        variant: platform.variant.as_deref(),
    }
    .serialize(s)
}

/// A checked Kubefile: one [`Target`] per requested platform, in the order requested.
#[derive(Debug, Clone, Serialize)]
pub struct Program {
    /// One lowered program per target platform.
    pub targets: Vec<Target>,
}

/// The program for one target platform.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// The platform every stage is built for (unless `FROM --platform` says otherwise).
    #[serde(serialize_with = "platform_json")]
    pub platform: Platform,
    /// The stages in file order; the last one is the image.
    pub stages: Vec<Stage>,
    /// The final image's configuration and sealer extension.
    pub image: Image,
}

/// One `FROM` and the steps after it.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    /// 0-based position among the stages (`COPY --from=0`).
    pub index: usize,
    /// The `AS name`, lower-cased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the stage starts from.
    pub base: Base,
    /// The platform of the stage (`FROM --platform`, else the target's).
    #[serde(serialize_with = "platform_json")]
    pub platform: Platform,
    /// Layer-producing and configuration steps, in order.
    pub steps: Vec<Step>,
    /// Build arguments the `FROM` line consulted.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, Option<String>>,
    /// 1-based line of the `FROM`.
    pub line: usize,
    /// The `FROM` instruction.
    #[serde(skip)]
    pub span: Span,
}

/// The start of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Base {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An image reference, as written after expansion (resolved by the builder).
    Image {
        /// The reference.
        reference: String,
    },
    /// An earlier stage of the same Kubefile.
    Stage {
        /// Its index.
        index: usize,
    },
}

/// One step of a stage.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// What the step does.
    pub op: Op,
    /// Build arguments the step consulted, with their values (`null` = declared, unset).
    /// A `RUN` step consults every `ARG` in scope, because they are in its environment.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, Option<String>>,
    /// 1-based line of the instruction.
    pub line: usize,
    /// The instruction.
    #[serde(skip)]
    pub span: Span,
}

impl Step {
    /// Whether the step produces a filesystem layer (COPY, ADD, RUN, APP/CNI/CSI).
    pub fn is_layer(&self) -> bool {
        matches!(self.op, Op::Copy(_) | Op::Add(_) | Op::Run(_) | Op::App(_))
    }
}

/// The operation of a step.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    /// `COPY`.
    Copy(Copy),
    /// `ADD` (remote sources allowed; local archives are unpacked by the builder).
    Add(Copy),
    /// `RUN`.
    Run(Run),
    /// `APP`, `CNI` or `CSI`: copy the sources into `application/apps/<name>/`.
    App(App),
    /// `ENV`.
    Env {
        /// The variables, in order.
        vars: Vec<(String, String)>,
    },
    /// `LABEL`, and the labels generated by `KUBEVERSION`, `CNI` and `CSI`.
    Label {
        /// The labels, in order.
        labels: Vec<(String, String)>,
    },
    /// `ARG`.
    Arg {
        /// The variable.
        name: String,
        /// The default as written (unexpanded), when there is one.
        #[serde(skip_serializing_if = "Option::is_none")]
        default: Option<String>,
    },
    /// `MAINTAINER`.
    Maintainer {
        /// The text.
        text: String,
    },
}

impl Op {
    /// The instruction keyword the op came from (`APP` for CNI/CSI too: see [`App::kind`]).
    pub fn keyword(&self) -> &'static str {
        match self {
            Op::Copy(_) => "COPY",
            Op::Add(_) => "ADD",
            Op::Run(_) => "RUN",
            Op::App(app) => app.kind.keyword(),
            Op::Env { .. } => "ENV",
            Op::Label { .. } => "LABEL",
            Op::Arg { .. } => "ARG",
            Op::Maintainer { .. } => "MAINTAINER",
        }
    }
}

/// A `COPY` or `ADD`.
#[derive(Debug, Clone, Serialize)]
pub struct Copy {
    /// The sources, in order (all of them: sealer kept only the first).
    pub sources: Vec<Source>,
    /// The destination, relative to the image root unless absolute.
    pub dest: String,
    /// `--from`: a stage or an image to copy from instead of the context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<CopyFrom>,
    /// `--chown=user[:group]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chown: Option<Chown>,
    /// `--chown=preserve`: the sources keep their own numeric owners and extended attributes
    /// (an OS root built from a directory); without it context files become `0:0`. A local
    /// archive `ADD` unpacks keeps the owners, modes and extended attributes its entries
    /// record either way, as Docker does.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub preserve_owners: bool,
    /// `--chmod=octal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chmod: Option<u32>,
    /// `ADD --checksum=sha256:…` for a remote source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// Where a `COPY --from` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CopyFrom {
    /// An earlier stage.
    Stage {
        /// Its index.
        index: usize,
    },
    /// An image reference (contains `/`, `:` or `@`).
    Image {
        /// The reference.
        reference: String,
    },
}

/// The `--chown` value that keeps each source's own numeric owner ([`Copy::preserve_owners`]).
pub const PRESERVE_OWNERS: &str = "preserve";

/// `--chown=user[:group]` (names or numeric ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Chown {
    /// User name or id.
    pub user: String,
    /// Group name or id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A source of `COPY`, `ADD` or `APP`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// A path in the build context (or in the `--from` stage), after expansion; the
    /// `local://` prefix of APP sources is removed.
    Local {
        /// The path as written (expanded).
        path: String,
        /// With a build context: the matched paths relative to the context (a glob can
        /// match several; `.kubefileignore` applied). Empty without a context.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        matches: Vec<String>,
    },
    /// An `http://` or `https://` URL, fetched by the builder.
    Remote {
        /// The URL.
        url: String,
    },
}

/// `RUN`.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// The command.
    pub command: Command,
    /// The build-time environment of the command: the `ARG`s in scope that have a value.
    /// `ENV` values are not repeated here: they are in the image configuration that the
    /// steps before built up (and in the node's ancestry), and an `ARG` of the same name
    /// yields to them.
    pub env: BTreeMap<String, String>,
}

/// A command in shell or exec form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// Run with `/bin/sh -c`; variables are expanded by the shell.
    Shell(String),
    /// An argv, run directly.
    Exec(Vec<String>),
}

/// Which instruction declared an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// `APP`.
    App,
    /// `CNI` (also labels the image `cluster.alpha.sealer.io/kube-cni-<name>=true`).
    Cni,
    /// `CSI` (also labels the image `cluster.alpha.sealer.io/kube-csi-<name>=true`).
    Csi,
}

impl AppKind {
    /// `APP`, `CNI` or `CSI`.
    pub fn keyword(self) -> &'static str {
        match self {
            AppKind::App => "APP",
            AppKind::Cni => "CNI",
            AppKind::Csi => "CSI",
        }
    }
}

/// The detected type of an application (sealer's rules, evaluated in the build context).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AppType {
    /// A Helm chart: launched with `helm install <name> <app dir>`.
    Helm,
    /// Only `.yaml`/`.yml` files: launched with `kubectl apply -f` each.
    Kube,
    /// Only `.sh` files: launched with `bash` each.
    Shell,
    /// Mixed or other files: needs `APPCMDS`.
    Untyped,
}

impl AppType {
    /// The sealer spelling (`""` for untyped).
    pub fn as_sealer(self) -> &'static str {
        match self {
            AppType::Helm => "helm",
            AppType::Kube => "kube",
            AppType::Shell => "shell",
            AppType::Untyped => "",
        }
    }
}

/// `APP`/`CNI`/`CSI`.
#[derive(Debug, Clone, Serialize)]
pub struct App {
    /// The application name (a path segment).
    pub name: String,
    /// The declaring instruction.
    pub kind: AppKind,
    /// The sources, in order.
    pub sources: Vec<Source>,
    /// The detected type; `None` when it cannot be known (no build context).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_type: Option<AppType>,
    /// The files the launch command uses, relative to the app directory.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// The destination in the image: `application/apps/<name>/`.
    pub dest: String,
}

/// The final image: OCI configuration plus the sealer extension.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Image {
    /// `ENV`s of the final stage (and the stages it derives from), in order.
    pub env: Vec<(String, String)>,
    /// Labels, sorted.
    pub labels: BTreeMap<String, String>,
    /// `MAINTAINER`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintainer: Option<String>,
    /// The sealer image extension (manifest annotation `sealer.image.extension`).
    pub extension: ImageExtension,
}

/// What a sealer image installs (`sealer build --type`, the extension's `type`): sealer v0.11
/// runs an `app-installer` image onto an existing cluster and anything else as a cluster to
/// create; `sealer upgrade`/`rollback` take `kube-installer` images only. The rules chasi
/// derives from this are in `compiler/src/check/imagetype.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum ImageType {
    /// A cluster image: Kubernetes (or another runtime) and what it launches (the default).
    #[default]
    #[serde(rename = "kube-installer")]
    KubeInstaller,
    /// An application image for a running cluster: applications and their container images.
    #[serde(rename = "app-installer")]
    AppInstaller,
}

impl ImageType {
    /// Every type, in the order `--type` lists them.
    pub const ALL: [ImageType; 2] = [ImageType::KubeInstaller, ImageType::AppInstaller];

    /// The extension's spelling: `kube-installer` or `app-installer`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageType::KubeInstaller => "kube-installer",
            ImageType::AppInstaller => "app-installer",
        }
    }

    /// The type an extension's `type` value names, if it names one exactly.
    pub fn parse(text: &str) -> Option<ImageType> {
        ImageType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl std::fmt::Display for ImageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// sealer v0.11's `ImageExtension`, without the `buildClient` the builder adds.
#[derive(Debug, Clone, Serialize)]
pub struct ImageExtension {
    /// Always `v1alpha1` (sealer never bumped it).
    #[serde(rename = "schemaVersion")]
    pub schema_version: String,
    /// `kube-installer` (default) or `app-installer`: `chasi build --type`, never inherited.
    #[serde(rename = "type")]
    pub image_type: ImageType,
    /// Applications declared in the final stage (and inherited from earlier stages it is
    /// based on; applications of a base *image* are merged by the builder).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<Application>,
    /// `ENV` of the final stage.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `LAUNCH` / `CMDS` / `CMD`.
    pub launch: Launch,
}

impl Default for ImageExtension {
    fn default() -> Self {
        ImageExtension {
            schema_version: "v1alpha1".into(),
            image_type: ImageType::KubeInstaller,
            applications: Vec::new(),
            env: BTreeMap::new(),
            launch: Launch::default(),
        }
    }
}

/// sealer's `Application`.
#[derive(Debug, Clone, Serialize)]
pub struct Application {
    /// The name.
    pub name: String,
    /// `kube`, `helm`, `shell` or `""`.
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub app_type: String,
    /// Launch files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Always `v1`.
    pub version: String,
    /// `APPENV` (later keys win).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// `APPCMDS`: an argv, as in sealer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmds: Vec<String>,
}

/// sealer's `Launch`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Launch {
    /// Commands from `CMDS`/`CMD`, each a full shell command.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmds: Vec<String>,
    /// Applications from `LAUNCH`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub app_names: Vec<String>,
}
