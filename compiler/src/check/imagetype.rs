//! Image types, `chasi build --type kube-installer|app-installer`: what an application image
//! may hold and start from.
//!
//! sealer v0.11 writes the type into the extension and decides everything else at run time,
//! so the rules here are derived from what its run commands do with each type. Read at tag
//! `v0.11.0` of `github.com/sealerio/sealer` (`build/` and `pkg/define/` are unchanged at the
//! last commit, f4f89c58):
//!
//! - `cmd/sealer/cmd/image/build.go`: `--type` is a string flag, default `kube-installer`;
//!   its check against `kube-installer`/`app-installer` (`image type %s is not supported`)
//!   runs in `NewBuildCmd` before the flags are parsed, so it only ever sees the default and
//!   any string is written. `buildImageExtensionOnResult` copies the flag into the
//!   extension's `type` (`pkg/define/image/v1/sealer_image.go`: `KubeInstaller`,
//!   `AppInstaller`, `json:"type,omitempty"`); nothing else in the build reads it.
//! - `build/kubefile/parser/kubefile.go`: the Kubefile parser is never given the type
//!   (`NewParser` takes the app root, the context, the pull policy and the platform), so
//!   every instruction means the same in both types. `processFrom` copies the base image's
//!   `applications` (by name; a later declaration wins) and reads nothing else of its
//!   extension: `type`, `launch` and `env` are not inherited, and the base's type is never
//!   compared with `--type` (a base without an extension fails: `failed to get
//!   image-extension`, from `pkg/imageengine/buildah/inspect.go`'s `sealer.image.extension does
//!   not exist`).
//! - `cmd/sealer/cmd/cluster/run.go`: an image whose type is `app-installer` goes to the
//!   `AppInstaller`, any other (empty included) to the `KubeInstaller`, which creates a
//!   cluster; `apply.go` likewise reconciles the cluster only for `kube-installer`.
//! - `cmd/sealer/cmd/cluster/installer.go` `AppInstaller`: it needs the running cluster's
//!   Clusterfile, mounts the image and copies its whole rootfs onto every master into the
//!   cluster's rootfs directory, the one the cluster's own files live in
//!   (`pkg/imagedistributor/scp_distributor.go` `filterCopy`: every top-level entry but
//!   `registry/`), uploads `registry/` into the cluster's registry, and runs on the first
//!   master the image's `CMDS`, else its `LAUNCH` apps (`pkg/application/appdriver.go`
//!   `GetImageLaunchCmds`), else nothing unless `--apps`/`--cmds` name something. Hooks
//!   (`plugins/*.yaml`, `loadPluginsFromImage`), the CRI, registry and kubeadm scripts are
//!   used by the `KubeInstaller` only.
//! - `cmd/sealer/cmd/cluster/upgrade.go` and `rollback.go` refuse any type but
//!   `kube-installer` (`exit upgrade process, wrong sealer image type: %s`).
//!
//! What chasi makes of it (sealer is silent at build time; these are what a user of an app
//! image needs to hear before `sealer run` acts on it):
//! - `--type` is a closed choice, default `kube-installer`, written into the extension and
//!   never inherited (sealer's rule); both types accept every instruction.
//! - KF239 (warning): an app-installer image's `COPY`/`ADD` writes a top-level directory of
//!   the cluster runtime ([`CLUSTER_RUNTIME_DIRS`]), which the `AppInstaller` copies over the
//!   running cluster's own (or, for `plugins/`, never runs). Checked on the destination, and
//!   for a copy into the image root on the context entries it brings (with a build context);
//!   a `RUN`'s writes, a `COPY --from` into the root and the contents of an archive `ADD`
//!   unpacks there are not known before the build.
//! - KF240 (warning): an app-installer image with no `LAUNCH`, `CMDS` or `CMD` of its own
//!   (a base's are not inherited) starts nothing when it is run.
//! - KF241 (error, found by the builder once the base is resolved, [`check_base`]): an
//!   app-installer image whose filesystem starts from anything but `scratch` or an
//!   app-installer image (a kube-installer image, a sealer image without type, which sealer
//!   runs as a cluster, or a plain container image): it would carry that system, which the
//!   `AppInstaller` copies onto the masters.
//! - KF242 (warning, builder): a kube-installer image based on an app-installer image, which
//!   brings applications but no Kubernetes: the cluster runtime must come from this Kubefile.
//! - Not rules: `RUN` (chasi runs a `RUN` in a stage without a shell with the host's tools, so
//!   it is not meaningless in an image from `scratch`), `CNI`/`CSI`/`KUBEVERSION` and labels
//!   (sealer's documentation describes `KUBEVERSION` for application images).
//! - `chasi-node apply` refuses an app-installer image (an application bundle is no system
//!   for a slot), as `sealer upgrade` does.

use super::context::EntryKind;
use super::program::{Base, ImageType, Source};
use super::{Checker, ContextError};
use crate::diagnostics::{Code, Diagnostic};
use crate::source::Span;

/// Top-level directories of a cluster image that only sealer's cluster installer reads: the
/// binaries, CRI packages, configuration, image tarballs, hooks, scripts and static files of
/// the runtime (`shared/notes/sealer.md` §4.3).
pub const CLUSTER_RUNTIME_DIRS: &[&str] = &[
    "bin", "cri", "etc", "images", "plugins", "scripts", "statics",
];

/// What a base image's manifest says about its sealer type, as the builder read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaseType<'a> {
    /// No `sealer.image.extension` (a container or OS image), or one that is not JSON.
    NotSealer,
    /// The extension's `type`, `""` when it has none.
    Sealer(&'a str),
}

/// The rule between `--type` and the image the final image's filesystem starts from
/// (`reference`, whose `FROM` is at `span`); `None` when they fit. KF241 is an error, KF242 a
/// warning.
pub fn check_base(
    image_type: ImageType,
    reference: &str,
    base: BaseType<'_>,
    span: Span,
) -> Option<Diagnostic> {
    let base_type = match base {
        BaseType::Sealer(text) => ImageType::parse(text),
        BaseType::NotSealer => None,
    };
    match (image_type, base_type) {
        (ImageType::AppInstaller, Some(ImageType::AppInstaller))
        | (ImageType::KubeInstaller, Some(ImageType::KubeInstaller) | None) => None,
        (ImageType::AppInstaller, other) => {
            let what = match (base, other) {
                (BaseType::NotSealer, _) => {
                    "is not a sealer image (its manifest has no `sealer.image.extension`)"
                        .to_string()
                }
                (_, Some(t)) => format!("is a {t} image"),
                (BaseType::Sealer(""), None) => {
                    "is a sealer image without a type, which sealer runs as a cluster".to_string()
                }
                (BaseType::Sealer(text), None) => format!(
                    "is a sealer image of the unknown type `{}`, which sealer runs as a cluster",
                    chasi_oci::error::excerpt(text)
                ),
            };
            Some(
                Diagnostic::new(
                    Code::AppImageBase,
                    span,
                    format!(
                        "the app-installer image is based on `{reference}`, which {what}: its \
                         files would be copied over the running cluster's on every master"
                    ),
                )
                .with_help(
                    "start an app-installer image from `FROM scratch` or another app-installer \
                     image, or build a cluster image with `--type kube-installer`",
                ),
            )
        }
        (ImageType::KubeInstaller, Some(ImageType::AppInstaller)) => Some(
            Diagnostic::new(
                Code::ClusterImageFromAppImage,
                span,
                format!(
                    "the kube-installer image is based on `{reference}`, an app-installer image: \
                     it inherits its applications but no Kubernetes, so the cluster runtime must \
                     come from this Kubefile"
                ),
            )
            .with_help(
                "build with `--type app-installer` to extend the application image, or start \
                 from a cluster image and re-declare the applications to `LAUNCH`",
            ),
        ),
    }
}

/// The first path segment a destination writes into, `None` for the image root.
fn top_segment(dest: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in dest.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.first().map(|p| p.to_string())
}

fn base_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

impl Checker<'_> {
    /// Records which cluster-runtime directories a `COPY`/`ADD` of an app-installer image
    /// writes (reported by [`Checker::check_image_type`] for the final image's stages).
    pub(super) fn note_cluster_writes(
        &mut self,
        dest: &str,
        dest_span: Span,
        sources: &[Source],
        from_stage: bool,
    ) -> Result<(), ContextError> {
        if self.options.image_type != ImageType::AppInstaller || self.stages.is_empty() {
            return Ok(());
        }
        let mut tops = Vec::new();
        match top_segment(dest) {
            Some(top) => tops.push(top),
            None if from_stage => {}
            None => {
                for source in sources {
                    let Source::Local { matches, .. } = source else {
                        continue;
                    };
                    for m in matches {
                        tops.extend(self.root_entries(m)?);
                    }
                }
            }
        }
        tops.retain(|t| CLUSTER_RUNTIME_DIRS.contains(&t.as_str()));
        tops.sort();
        tops.dedup();
        if !tops.is_empty() {
            let names = tops
                .iter()
                .map(|t| format!("`{t}/`"))
                .collect::<Vec<_>>()
                .join(", ");
            self.stage().cluster_writes.push((dest_span, names));
        }
        Ok(())
    }

    /// The top-level names a context path brings when copied into the image root: a
    /// directory's children, or a file's own name.
    fn root_entries(&self, path: &str) -> Result<Vec<String>, ContextError> {
        let Some(context) = self.options.context else {
            return Ok(Vec::new());
        };
        let entries = context.walk(path)?;
        if entries.first().map(|e| e.kind) != Some(EntryKind::Dir) {
            return Ok(vec![base_name(path).to_string()]);
        }
        Ok(entries
            .iter()
            .filter(|e| !e.rel.is_empty() && !e.rel.contains('/'))
            .map(|e| e.rel.clone())
            .collect())
    }

    /// The stages whose files the final image holds: the last stage and the stages it is
    /// based on (`FROM <stage>`), last first.
    fn final_lineage(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut next = self.stages.len().checked_sub(1);
        while let Some(i) = next {
            if out.contains(&i) {
                break;
            }
            out.push(i);
            next = match self.stages[i].stage.base {
                Base::Stage { index } => Some(index),
                _ => None,
            };
        }
        out
    }

    /// KF239 and KF240, for an app-installer image (the base-image rule needs the base and is
    /// the builder's: [`check_base`]).
    pub(super) fn check_image_type(&mut self) {
        if self.options.image_type != ImageType::AppInstaller {
            return;
        }
        let mut found = Vec::new();
        for i in self.final_lineage() {
            for (span, names) in &self.stages[i].cluster_writes {
                found.push(
                    Diagnostic::new(
                        Code::AppImageClusterFiles,
                        *span,
                        format!(
                            "the app-installer image writes {names}, a directory of the cluster \
                             runtime: `sealer run` copies an application image's files over the \
                             running cluster's own on every master"
                        ),
                    )
                    .with_help(
                        "put application files under `application/apps/<name>/` (`APP`), \
                         `manifests/` or `charts/`, or build a cluster image with \
                         `--type kube-installer`",
                    ),
                );
            }
        }
        if let Some(last) = self.stages.last() {
            let launch = &last.launch;
            if launch.app_names.is_empty() && launch.cmds.is_empty() {
                found.push(
                    Diagnostic::new(
                        Code::AppImageLaunchesNothing,
                        last.stage.span,
                        "the app-installer image launches nothing: its final stage has no \
                         `LAUNCH`, `CMDS` or `CMD` (a base image's are not inherited)",
                    )
                    .with_help(
                        "end the Kubefile with `LAUNCH [\"<app>\", ...]` or `CMDS [...]`; without \
                         one, running the image only copies its files and container images",
                    ),
                );
            }
        }
        self.diagnostics.append(&mut found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_segment_normalises_the_destination() {
        assert_eq!(top_segment("."), None);
        assert_eq!(top_segment("/"), None);
        assert_eq!(top_segment("./"), None);
        assert_eq!(top_segment(""), None);
        assert_eq!(top_segment("etc"), Some("etc".into()));
        assert_eq!(top_segment("/etc/kubeadm.yml"), Some("etc".into()));
        assert_eq!(top_segment("./scripts/"), Some("scripts".into()));
        assert_eq!(top_segment("a/../bin/"), Some("bin".into()));
        assert_eq!(top_segment("../../plugins"), Some("plugins".into()));
        assert_eq!(
            top_segment("application/apps/x/"),
            Some("application".into())
        );
    }

    #[test]
    fn base_rule_per_type() {
        let span = Span::new(0, 4);
        let app = ImageType::AppInstaller;
        let kube = ImageType::KubeInstaller;
        let code = |d: Option<Diagnostic>| d.map(|d| d.code);
        assert_eq!(
            code(check_base(
                app,
                "a",
                BaseType::Sealer("app-installer"),
                span
            )),
            None
        );
        assert_eq!(
            code(check_base(
                app,
                "a",
                BaseType::Sealer("kube-installer"),
                span
            )),
            Some(Code::AppImageBase)
        );
        assert_eq!(
            code(check_base(app, "a", BaseType::Sealer(""), span)),
            Some(Code::AppImageBase)
        );
        assert_eq!(
            code(check_base(
                app,
                "a",
                BaseType::Sealer("App-Installer"),
                span
            )),
            Some(Code::AppImageBase)
        );
        assert_eq!(
            code(check_base(app, "a", BaseType::NotSealer, span)),
            Some(Code::AppImageBase)
        );
        assert_eq!(
            code(check_base(
                kube,
                "k",
                BaseType::Sealer("kube-installer"),
                span
            )),
            None
        );
        assert_eq!(
            code(check_base(kube, "k", BaseType::Sealer(""), span)),
            None
        );
        assert_eq!(code(check_base(kube, "k", BaseType::NotSealer, span)), None);
        assert_eq!(
            code(check_base(
                kube,
                "k",
                BaseType::Sealer("app-installer"),
                span
            )),
            Some(Code::ClusterImageFromAppImage)
        );
    }

    #[test]
    fn base_messages_name_the_reference_and_its_type() {
        let span = Span::new(0, 4);
        let d = check_base(
            ImageType::AppInstaller,
            "reg.example/k8s:v1",
            BaseType::Sealer("kube-installer"),
            span,
        )
        .expect("refused");
        assert!(d.is_error());
        assert_eq!(
            d.message,
            "the app-installer image is based on `reg.example/k8s:v1`, which is a kube-installer \
             image: its files would be copied over the running cluster's on every master"
        );
        let d = check_base(
            ImageType::AppInstaller,
            "alpine:3",
            BaseType::NotSealer,
            span,
        )
        .expect("refused");
        assert!(d.message.contains(
            "`alpine:3`, which is not a sealer image (its manifest has no `sealer.image.extension`)"
        ));
        let d = check_base(
            ImageType::KubeInstaller,
            "apps:1",
            BaseType::Sealer("app-installer"),
            span,
        )
        .expect("warned");
        assert!(!d.is_error());
    }
}
