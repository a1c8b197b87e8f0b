//! Container images of Kubernetes objects: every `image` of a mapping inside a
//! `containers`, `initContainers` or `ephemeralContainers` sequence, wherever it is (Pods,
//! every workload kind, `List` items, CRDs that embed pod specs or templates). Only those:
//! an `image:` key elsewhere, a comment or a string that merely contains `image:` is not a
//! container image.

use std::path::Path;

use crate::model::{Severity, Source};
use crate::report::Report;
use crate::yaml::{Node, Yaml};

const CONTAINER_LISTS: &[(&str, &str)] = &[
    ("containers", "container"),
    ("initContainers", "initContainer"),
    ("ephemeralContainers", "ephemeralContainer"),
];

/// Where the images of a document are reported.
pub(crate) struct Origin<'a> {
    /// The file (or template) path.
    pub(crate) path: &'a Path,
    /// The app, for images of `application/apps/<app>/`.
    pub(crate) app: Option<&'a str>,
    /// Prefix of each source's detail, e.g. `rendered from chart x, templates/y.yaml`.
    pub(crate) detail: Option<&'a str>,
    /// A `.tmpl` file sealer renders at install time: an image that is not a reference yet
    /// (templating left) is a warning, not an error.
    pub(crate) install_time: bool,
}

/// Reports the container images of one YAML document.
pub(crate) fn images(doc: &Node, origin: &Origin<'_>, report: &mut Report) {
    walk(doc, &object_name(doc), origin, report, 0);
}

fn object_name(node: &Node) -> String {
    let kind = node.get("kind").and_then(Node::as_str);
    let name = node
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str);
    match (kind, name) {
        (Some(k), Some(n)) => format!("{k} {n}"),
        (Some(k), None) => k.to_string(),
        (None, Some(n)) => n.to_string(),
        (None, None) => String::new(),
    }
}

fn walk(node: &Node, object: &str, origin: &Origin<'_>, report: &mut Report, depth: usize) {
    if depth > 256 {
        return;
    }
    match &node.value {
        Yaml::Seq(items) => {
            for item in items {
                // A `List`'s items are objects of their own.
                let own = object_name(item);
                let obj = if item.get("kind").is_some() {
                    own.as_str()
                } else {
                    object
                };
                walk(item, obj, origin, report, depth + 1);
            }
        }
        Yaml::Map(entries) => {
            for (key, value) in entries {
                if let (Some(k), Yaml::Seq(items)) = (key.as_str(), &value.value) {
                    if let Some((_, label)) = CONTAINER_LISTS.iter().find(|(list, _)| *list == k) {
                        for item in items.iter().filter(|i| matches!(i.value, Yaml::Map(_))) {
                            container(item, label, object, origin, report);
                        }
                    }
                }
                walk(value, object, origin, report, depth + 1);
            }
        }
        _ => {}
    }
}

fn container(item: &Node, label: &str, object: &str, origin: &Origin<'_>, report: &mut Report) {
    let Some(image) = item.get("image") else {
        return;
    };
    let name = item.get("name").and_then(Node::as_str).unwrap_or("?");
    let mut detail = match object.is_empty() {
        true => format!("{label} {name}"),
        false => format!("{object}, {label} {name}"),
    };
    if let Some(prefix) = origin.detail {
        detail = format!("{prefix}: {detail}");
    }
    let severity = if origin.install_time {
        Severity::Warning
    } else {
        Severity::Error
    };
    let later = if origin.install_time {
        "; the file is rendered at install time, so the image is not detected"
    } else {
        ""
    };
    let (line, column) = (image.line, image.column);
    match &image.value {
        Yaml::Str(s) => {
            let source = Source {
                path: origin.path.to_path_buf(),
                line,
                column,
                detail: Some(detail),
            };
            report.image_or(s, origin.app, source, severity);
        }
        Yaml::Null => report.problem(
            severity,
            origin.path,
            line,
            column,
            format!("empty image reference ({detail}){later}"),
        ),
        _ => report.problem(
            severity,
            origin.path,
            line,
            column,
            format!("{detail}: image is not a string{later}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_stream;
    use std::collections::BTreeSet;

    fn found(text: &str) -> Vec<String> {
        let mut report = Report::default();
        let origin = Origin {
            path: Path::new("m.yaml"),
            app: None,
            detail: None,
            install_time: false,
        };
        for doc in parse_stream(text).unwrap() {
            images(&doc, &origin, &mut report);
        }
        let d = report.finish(&BTreeSet::new());
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        d.images
            .into_iter()
            .map(|i| {
                format!(
                    "{} {}",
                    i.reference,
                    i.sources[0].detail.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn containers_anywhere_and_only_there() {
        let text = r#"
apiVersion: v1
kind: List
items:
- kind: Pod
  metadata: {name: p}
  spec:
    initContainers: [{name: init, image: busybox}]
    containers: [{name: c, image: "nginx:1.25"}]
- kind: Widget
  metadata: {name: w}
  spec:
    image: not-a-container
    deep:
      template:
        spec:
          ephemeralContainers:
          - name: dbg
            image: quay.io/x/debug
---
kind: ConfigMap
data:
  x: "image: fake"
  # image: commented
"#;
        assert_eq!(
            found(text),
            vec![
                "docker.io/library/busybox:latest Pod p, initContainer init",
                "docker.io/library/nginx:1.25 Pod p, container c",
                "quay.io/x/debug:latest Widget w, ephemeralContainer dbg",
            ]
        );
    }
}
