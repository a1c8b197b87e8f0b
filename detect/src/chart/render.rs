//! Renders a resolved chart tree as `helm template` does with sealer's settings: release
//! `dryrun` in namespace `default`, default values, every chart's templates parsed into one
//! set (deeper charts first, so a parent's `define` wins), each non-partial template
//! executed with its own chart's `.Values`, `.Chart`, `.Template`, `.Files` and
//! `.Subcharts`. `NOTES.txt` is parsed (its defines count) but not rendered; a library
//! chart only defines. Each file is also a template named by its path, for `include`.
//!
//! `.Capabilities` is fixed: Kubernetes v1.28.0 ([`KUBE_VERSION`]) with its GA API group
//! versions and their kinds, Helm v3.14.0.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use super::values::Resolved;
use crate::report::Report;
use crate::template::ast::{List, Pos};
use crate::template::exec::{Exec, TemplateSet};
use crate::template::parse::parse;
use crate::template::value::{Map, Object, Value};

/// The Kubernetes version `.Capabilities.KubeVersion` reports.
pub(crate) const KUBE_VERSION: &str = "v1.28.0";

/// The release name sealer renders charts with.
pub(crate) const RELEASE_NAME: &str = "dryrun";

/// API group versions of Kubernetes 1.28 and the kinds each serves.
const API_VERSIONS: &[(&str, &[&str])] = &[
    (
        "v1",
        &[
            "Pod",
            "Service",
            "ConfigMap",
            "Secret",
            "Namespace",
            "ServiceAccount",
            "PersistentVolumeClaim",
            "PersistentVolume",
            "Endpoints",
            "Node",
            "Event",
            "LimitRange",
            "ResourceQuota",
            "ReplicationController",
            "PodTemplate",
        ],
    ),
    (
        "apps/v1",
        &[
            "Deployment",
            "DaemonSet",
            "StatefulSet",
            "ReplicaSet",
            "ControllerRevision",
        ],
    ),
    ("batch/v1", &["Job", "CronJob"]),
    ("autoscaling/v1", &["HorizontalPodAutoscaler"]),
    ("autoscaling/v2", &["HorizontalPodAutoscaler"]),
    ("policy/v1", &["PodDisruptionBudget", "Eviction"]),
    (
        "networking.k8s.io/v1",
        &["Ingress", "IngressClass", "NetworkPolicy"],
    ),
    (
        "rbac.authorization.k8s.io/v1",
        &["Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"],
    ),
    (
        "storage.k8s.io/v1",
        &[
            "StorageClass",
            "CSIDriver",
            "CSINode",
            "VolumeAttachment",
            "CSIStorageCapacity",
        ],
    ),
    ("apiextensions.k8s.io/v1", &["CustomResourceDefinition"]),
    (
        "admissionregistration.k8s.io/v1",
        &[
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ],
    ),
    ("apiregistration.k8s.io/v1", &["APIService"]),
    ("certificates.k8s.io/v1", &["CertificateSigningRequest"]),
    ("coordination.k8s.io/v1", &["Lease"]),
    ("discovery.k8s.io/v1", &["EndpointSlice"]),
    ("events.k8s.io/v1", &["Event"]),
    ("node.k8s.io/v1", &["RuntimeClass"]),
    ("scheduling.k8s.io/v1", &["PriorityClass"]),
    (
        "authentication.k8s.io/v1",
        &["TokenReview", "SelfSubjectReview"],
    ),
    (
        "authorization.k8s.io/v1",
        &[
            "SubjectAccessReview",
            "SelfSubjectAccessReview",
            "LocalSubjectAccessReview",
            "SelfSubjectRulesReview",
        ],
    ),
    (
        "flowcontrol.apiserver.k8s.io/v1beta3",
        &["FlowSchema", "PriorityLevelConfiguration"],
    ),
];

/// One rendered manifest.
#[derive(Debug)]
pub(crate) struct Rendered {
    /// The template's file, for sources and problems.
    pub(crate) path: PathBuf,
    /// Chart name and template path inside it, for source details.
    pub(crate) detail: String,
    /// The output.
    pub(crate) text: String,
}

fn strukt(
    type_name: &'static str,
    fields: Vec<(&'static str, Value)>,
    text: Option<String>,
) -> Value {
    Value::Object(Rc::new(Object::Struct {
        type_name,
        fields: fields.into_iter().collect(),
        text,
    }))
}

fn capabilities() -> Value {
    let mut versions = Vec::new();
    for (gv, kinds) in API_VERSIONS {
        versions.push(gv.to_string());
        versions.extend(kinds.iter().map(|k| format!("{gv}/{k}")));
    }
    let kube = strukt(
        "chartutil.KubeVersion",
        vec![
            ("Version", Value::str(KUBE_VERSION)),
            ("Major", Value::str("1")),
            ("Minor", Value::str("28")),
            ("GitVersion", Value::str(KUBE_VERSION)),
        ],
        Some(KUBE_VERSION.into()),
    );
    let helm = strukt(
        "chartutil.HelmVersion",
        vec![
            ("Version", Value::str("v3.14.0")),
            ("GitCommit", Value::str("")),
            ("GitTreeState", Value::str("")),
            ("GoVersion", Value::str("")),
        ],
        Some("v3.14.0".into()),
    );
    strukt(
        "*chartutil.Capabilities",
        vec![
            (
                "APIVersions",
                Value::Object(Rc::new(Object::ApiVersions(Rc::new(versions)))),
            ),
            ("KubeVersion", kube),
            ("HelmVersion", helm),
        ],
        None,
    )
}

fn chart_object(meta: &Map, name: &str) -> Value {
    let text = |k: &str| Value::str(meta.get(k).map(super::meta_text).unwrap_or_default());
    let other = |k: &str, empty: Value| meta.get(k).cloned().unwrap_or(empty);
    strukt(
        "*chart.Metadata",
        vec![
            ("Name", Value::str(name)),
            ("Version", text("version")),
            ("AppVersion", text("appVersion")),
            ("Description", text("description")),
            ("Type", text("type")),
            ("KubeVersion", text("kubeVersion")),
            ("Home", text("home")),
            ("Icon", text("icon")),
            ("APIVersion", text("apiVersion")),
            ("Condition", text("condition")),
            ("Tags", text("tags")),
            (
                "Deprecated",
                Value::Bool(matches!(meta.get("deprecated"), Some(Value::Bool(true)))),
            ),
            ("Keywords", other("keywords", Value::list(Vec::new()))),
            ("Sources", other("sources", Value::list(Vec::new()))),
            ("Maintainers", other("maintainers", Value::list(Vec::new()))),
            ("Annotations", other("annotations", Value::map(Map::new()))),
            (
                "Dependencies",
                other("dependencies", Value::list(Vec::new())),
            ),
        ],
        None,
    )
}

/// A chart's top-level object without `.Template`: `.Values`, `.Release`, `.Chart`,
/// `.Capabilities`, `.Files` and `.Subcharts` (each subchart's own object).
fn chart_top(r: &Resolved, release: &Value, caps: &Value, depth: usize) -> Map {
    let mut top = Map::new();
    top.insert("Values".into(), r.values.clone());
    top.insert("Release".into(), release.clone());
    top.insert(
        "Chart".into(),
        chart_object(&r.chart.metadata, &r.chart.name),
    );
    top.insert("Capabilities".into(), caps.clone());
    top.insert(
        "Files".into(),
        Value::Object(Rc::new(Object::Files(r.chart.files.clone()))),
    );
    let mut subs = Map::new();
    if depth < 16 {
        for sub in &r.subcharts {
            subs.insert(
                sub.chart.name.clone(),
                Value::map(chart_top(sub, release, caps, depth + 1)),
            );
        }
    }
    top.insert("Subcharts".into(), Value::map(subs));
    top
}

struct Unit<'a> {
    /// Helm's template name: `<chart path>/templates/x.yaml`.
    name: String,
    /// The chart path: `parent/charts/sub`.
    chart_path: String,
    resolved: &'a Resolved,
    rel: String,
    source: &'a str,
}

fn units<'a>(r: &'a Resolved, chart_path: String, out: &mut Vec<Unit<'a>>) {
    for (rel, source) in &r.chart.templates {
        out.push(Unit {
            name: format!("{chart_path}/{rel}"),
            chart_path: chart_path.clone(),
            resolved: r,
            rel: rel.clone(),
            source,
        });
    }
    for sub in &r.subcharts {
        units(sub, format!("{chart_path}/charts/{}", sub.chart.name), out);
    }
}

/// Renders `root` and its subcharts; problems go to `report`.
pub(crate) fn render(root: &Resolved, report: &mut Report) -> Vec<Rendered> {
    let mut all = Vec::new();
    units(root, root.chart.name.clone(), &mut all);
    // Deeper templates first, then by name: later defines win, so the parent's do.
    all.sort_by(|a, b| {
        let da = a.name.matches('/').count();
        let db = b.name.matches('/').count();
        db.cmp(&da).then_with(|| a.name.cmp(&b.name))
    });
    let mut set = TemplateSet::default();
    let mut paths = Vec::new();
    let mut bodies: Vec<Option<Rc<List>>> = Vec::new();
    for (i, u) in all.iter().enumerate() {
        let path = u.resolved.chart.base.join(&u.rel);
        set.files.push(u.name.clone());
        paths.push(path.clone());
        let file = u32::try_from(i).unwrap_or(u32::MAX);
        match parse(u.source, file) {
            Ok(parsed) => {
                for (name, body, _) in parsed.defines {
                    set.defines.insert(name, body);
                }
                // A file is a template too, named by its path (`include (print
                // $.Template.BasePath "/configmap.yaml") . | sha256sum`).
                let body = Rc::new(parsed.body);
                set.defines.insert(u.name.clone(), body.clone());
                bodies.push(Some(body));
            }
            Err(e) => {
                report.error(
                    &path,
                    e.pos.line,
                    e.pos.col,
                    format!("chart {}: {}", u.resolved.chart.name, e.message),
                );
                bodies.push(None);
            }
        }
    }
    let caps = capabilities();
    let mut release = Map::new();
    release.insert("Name".into(), Value::str(RELEASE_NAME));
    release.insert("Namespace".into(), Value::str("default"));
    release.insert("Service".into(), Value::str("Helm"));
    release.insert("IsInstall".into(), Value::Bool(true));
    release.insert("IsUpgrade".into(), Value::Bool(false));
    release.insert("Revision".into(), Value::Int(1));
    let release = Value::map(release);
    let mut charts: BTreeMap<String, Map> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, u) in all.iter().enumerate() {
        let base = u.rel.rsplit('/').next().unwrap_or(&u.rel);
        let library = u
            .resolved
            .chart
            .metadata
            .get("type")
            .and_then(|t| t.as_str())
            == Some("library");
        if base.starts_with('_') || base == "NOTES.txt" || library {
            continue;
        }
        let Some(body) = bodies[i].as_ref() else {
            continue;
        };
        let chart_top = charts
            .entry(u.chart_path.clone())
            .or_insert_with(|| chart_top(u.resolved, &release, &caps, 0))
            .clone();
        let mut template = Map::new();
        template.insert("Name".into(), Value::str(u.name.as_str()));
        template.insert(
            "BasePath".into(),
            Value::str(format!("{}/templates", u.chart_path)),
        );
        let mut top = chart_top;
        top.insert("Template".into(), Value::map(template));
        let top = Value::map(top);
        let file = u32::try_from(i).unwrap_or(u32::MAX);
        let result = Exec::new(&mut set).run(
            body,
            &top,
            Pos {
                file,
                line: 1,
                col: 1,
            },
        );
        match result {
            Ok(text) => out.push(Rendered {
                path: paths[i].clone(),
                detail: format!("rendered from chart {}, {}", u.resolved.chart.name, u.rel),
                text,
            }),
            Err(e) => {
                let at = paths.get(e.pos.file as usize).unwrap_or(&paths[i]);
                let (line, col) = if paths.get(e.pos.file as usize).is_some() {
                    (e.pos.line, e.pos.col)
                } else {
                    (0, 0)
                };
                let via = if at != &paths[i] {
                    format!(" (rendering {})", u.rel)
                } else {
                    String::new()
                };
                report.error(
                    at,
                    line,
                    col,
                    format!("chart {}: {}{via}", u.resolved.chart.name, e.message),
                );
            }
        }
    }
    out
}
