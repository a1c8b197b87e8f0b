//! Whether a Kubefile's `CMD`/`CMDS` also become the image's OCI `config.Cmd`.
//!
//! sealer keeps those commands in its extension only (`launch.cmds`): they run on a cluster's
//! first master with the image mounted, never inside a container, so a sealer image has no
//! `Cmd` and `ctr run IMAGE` fails with "args must not be empty". A Kubefile that builds a
//! container needs them in the OCI configuration, where containerd, runc, podman and docker
//! look. This module is the one rule that tells the two apart and the one encoding of the
//! commands as a `Cmd`; the sealer extension is written unchanged either way.
//!
//! The rule ([`ImageKind::of`]): an image is a **cluster image** when sealer launches it,
//! that is when its final sealer extension names applications (its own `APP`/`CNI`/`CSI`, or
//! inherited from a base image) or `LAUNCH`es some, or its configuration carries a sealer
//! label (`cluster.alpha.sealer.io/…` and `app.alpha.sealer.io/…`, which `CNI`, `CSI`,
//! `KUBEVERSION` and sealer's base images set, or `io.sealer.version`, which every image
//! sealer builds carries; labels are inherited from the base image's configuration). Any other
//! image is a **container image**. [`OciCmd`] (`chasi build --oci-cmd`) overrides the rule.
//!
//! The encoding ([`cmd_of`]) is Docker's shell form: one command `c` is
//! `["/bin/sh", "-c", c]`; several (each item of `CMDS` is a whole command) run in order in
//! one shell, each in its own brace group, stopping at the first that fails, as sealer runs
//! them. The base image's `Entrypoint` is kept, as a Dockerfile `CMD` keeps it.

use serde_json::{Map, Value};

/// `chasi build --oci-cmd`: when the Kubefile's commands are written to `config.Cmd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OciCmd {
    /// For container images only ([`ImageKind::of`]), the default.
    #[default]
    Auto,
    /// Always, cluster images included.
    Always,
    /// Never: the commands stay in the sealer extension only, as sealer does.
    Never,
}

/// Label prefixes that sealer's cluster and application images carry.
const SEALER_LABEL_PREFIXES: &[&str] = &["cluster.alpha.sealer.io/", "app.alpha.sealer.io/"];

/// The label every image sealer builds carries.
const SEALER_VERSION_LABEL: &str = "io.sealer.version";

/// What an image is, for its run configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKind {
    /// A container: its commands are its `Cmd`.
    Container,
    /// A sealer cluster or application image, with the first reason found.
    Cluster(ClusterReason),
}

/// Why an image is a cluster image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterReason {
    /// Its extension declares (or inherits) applications.
    Applications,
    /// Its extension launches applications.
    Launch,
    /// Its configuration carries this sealer label.
    Label(String),
}

impl ImageKind {
    /// The kind of an image from its final sealer extension and OCI `config` object.
    pub fn of(extension: &Value, config: &Map<String, Value>) -> ImageKind {
        let non_empty =
            |v: Option<&Value>| v.and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        if non_empty(extension.get("applications")) {
            return ImageKind::Cluster(ClusterReason::Applications);
        }
        if non_empty(extension.pointer("/launch/app_names")) {
            return ImageKind::Cluster(ClusterReason::Launch);
        }
        let sealer_label = config
            .get("Labels")
            .and_then(Value::as_object)
            .and_then(|labels| {
                labels.keys().find(|k| {
                    k.as_str() == SEALER_VERSION_LABEL
                        || SEALER_LABEL_PREFIXES.iter().any(|p| k.starts_with(p))
                })
            });
        match sealer_label {
            Some(key) => ImageKind::Cluster(ClusterReason::Label(key.clone())),
            None => ImageKind::Container,
        }
    }
}

/// The `Cmd` that runs `commands` (whole shell commands, in order); `None` when there is none.
pub fn cmd_of(commands: &[String]) -> Option<Vec<String>> {
    let commands: Vec<&str> = commands
        .iter()
        .map(String::as_str)
        .filter(|c| !c.trim().is_empty())
        .collect();
    let script = match commands.as_slice() {
        [] => return None,
        [one] => (*one).to_string(),
        many => many
            .iter()
            .map(|c| format!("{{ {c}\n}}"))
            .collect::<Vec<_>>()
            .join(" && "),
    };
    Some(vec!["/bin/sh".into(), "-c".into(), script])
}

/// Writes `config.Cmd` for `commands` when `mode` and the image's kind say so; otherwise the
/// configuration (with the `Cmd` inherited from the base image) is left as it is.
pub fn apply(
    config: &mut Map<String, Value>,
    extension: &Value,
    commands: &[String],
    mode: OciCmd,
) {
    let write = match mode {
        OciCmd::Always => true,
        OciCmd::Never => false,
        OciCmd::Auto => ImageKind::of(extension, config) == ImageKind::Container,
    };
    if !write {
        return;
    }
    if let Some(cmd) = cmd_of(commands) {
        config.insert(
            "Cmd".into(),
            Value::Array(cmd.into_iter().map(Value::String).collect()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_command_is_dockers_shell_form() {
        assert_eq!(
            cmd_of(&strings(&["nginx -g 'daemon off;'"])),
            Some(strings(&["/bin/sh", "-c", "nginx -g 'daemon off;'"]))
        );
        assert_eq!(cmd_of(&[]), None);
        assert_eq!(cmd_of(&strings(&["  "])), None);
    }

    #[test]
    fn several_commands_keep_their_own_status() {
        let cmd = cmd_of(&strings(&["false; true", "echo b &", "echo c"])).unwrap();
        assert_eq!(cmd[2], "{ false; true\n} && { echo b &\n} && { echo c\n}");
    }

    #[test]
    fn cluster_images_are_recognised() {
        let plain = json!({"schemaVersion": "v1alpha1", "launch": {"cmds": ["x"]}});
        assert_eq!(ImageKind::of(&plain, &Map::new()), ImageKind::Container);
        let apps = json!({"applications": [{"name": "a"}], "launch": {}});
        assert_eq!(
            ImageKind::of(&apps, &Map::new()),
            ImageKind::Cluster(ClusterReason::Applications)
        );
        let launch = json!({"launch": {"app_names": ["calico"]}});
        assert_eq!(
            ImageKind::of(&launch, &Map::new()),
            ImageKind::Cluster(ClusterReason::Launch)
        );
        for key in [
            "cluster.alpha.sealer.io/cluster-runtime-type",
            "app.alpha.sealer.io/supported-kube-version",
            "io.sealer.version",
        ] {
            let c = config(json!({"Labels": {"org.example": "1", key: "v"}}));
            assert_eq!(
                ImageKind::of(&plain, &c),
                ImageKind::Cluster(ClusterReason::Label(key.into()))
            );
        }
        let other = config(json!({"Labels": {"io.sealer.versions": "x"}}));
        assert_eq!(ImageKind::of(&plain, &other), ImageKind::Container);
    }

    #[test]
    fn modes_decide_and_the_base_cmd_stays_otherwise() {
        let cluster = json!({"applications": [{"name": "a"}]});
        let cmds = strings(&["run me"]);
        let base = config(json!({"Cmd": ["bash"], "Entrypoint": ["/init"]}));
        let mut c = base.clone();
        apply(&mut c, &cluster, &cmds, OciCmd::Auto);
        assert_eq!(c, base);
        apply(&mut c, &cluster, &cmds, OciCmd::Always);
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "run me"]));
        assert_eq!(c["Entrypoint"], json!(["/init"]));
        let mut c = base.clone();
        apply(&mut c, &json!({}), &cmds, OciCmd::Never);
        assert_eq!(c, base);
        apply(&mut c, &json!({}), &[], OciCmd::Auto);
        assert_eq!(c, base, "no command keeps the inherited Cmd");
        apply(&mut c, &json!({}), &cmds, OciCmd::Auto);
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "run me"]));
    }
}
