//! Helm charts: load ([`load`]), values and dependencies ([`values`]), render
//! ([`render`]) — `helm template` with sealer's settings, over chasi's own template engine.

pub(crate) mod load;
pub(crate) mod render;
pub(crate) mod values;

use std::path::{Path, PathBuf};

use crate::report::Report;
use crate::template::value::{format_float_json, Value};

pub(crate) use render::Rendered;

/// A metadata value as text (Helm decodes `Chart.yaml` fields into strings).
pub(crate) fn meta_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.to_string(),
        Value::Float(f) => format_float_json(*f),
        Value::Nil => String::new(),
        other => other.to_go(),
    }
}

/// Renders the chart whose files are `files`, found at `base`.
pub(crate) fn render_files(
    files: load::Files,
    base: PathBuf,
    report: &mut Report,
) -> Vec<Rendered> {
    let Some(chart) = load::load(files, base, report, 0) else {
        return Vec::new();
    };
    let values = chart.values.clone();
    let resolved = values::resolve(chart, values, report, 0);
    render::render(&resolved, report)
}

/// Renders the chart directory `dir` of the root.
pub(crate) fn render_dir(
    root: &crate::fsroot::Root,
    dir: &Path,
    report: &mut Report,
) -> Vec<Rendered> {
    let files = load::read_dir(root, dir, report);
    render_files(files, dir.to_path_buf(), report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn files(list: &[(&str, &str)]) -> load::Files {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn render(list: &[(&str, &str)]) -> (Vec<(String, String)>, Vec<String>) {
        let mut report = Report::default();
        let out = render_files(files(list), PathBuf::from("charts/c"), &mut report);
        let d = report.finish(&BTreeSet::new());
        (
            out.into_iter()
                .map(|r| (r.path.display().to_string(), r.text))
                .collect(),
            d.problems.iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn helm_objects() {
        let (out, problems) = render(&[
            ("Chart.yaml", "apiVersion: v2\nname: c\nversion: 1.2.3\nappVersion: \"2.0\"\n"),
            ("files/x.conf", "hello"),
            (
                "templates/t.yaml",
                "{{ .Template.Name }}|{{ .Template.BasePath }}|{{ .Release.Name }}/{{ .Release.Namespace }}/{{ .Release.Revision }}|{{ .Chart.Name }}-{{ .Chart.Version }}-{{ .Chart.AppVersion }}|{{ .Files.Get \"files/x.conf\" }}|{{ .Capabilities.APIVersions.Has \"apps/v1/Deployment\" }}{{ .Capabilities.APIVersions.Has \"extensions/v1beta1\" }}|{{ .Capabilities.KubeVersion.Minor }}|{{ .Capabilities.KubeVersion }}",
            ),
            ("templates/NOTES.txt", "{{ fail \"not rendered\" }}"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(out, vec![("charts/c/templates/t.yaml".into(), "c/templates/t.yaml|c/templates|dryrun/default/1|c-1.2.3-2.0|hello|truefalse|28|v1.28.0".into())]);
    }

    #[test]
    fn files_are_templates_too() {
        let (out, problems) = render(&[
            ("Chart.yaml", "apiVersion: v2\nname: c\nversion: 1.0.0\n"),
            ("templates/configmap.yaml", "kind: ConfigMap\n"),
            ("templates/deploy.yaml", "checksum: {{ include (print $.Template.BasePath \"/configmap.yaml\") . | sha256sum | trunc 8 }}"),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(out[1].1, "checksum: bb6c7fb1");
    }

    #[test]
    fn tpl_defines_stay_local_and_parent_defines_win() {
        let (out, problems) = render(&[
            ("Chart.yaml", "apiVersion: v2\nname: c\nversion: 1.0.0\n"),
            (
                "values.yaml",
                "t: '{{ define \"n\" }}tpl{{ end }}{{ include \"n\" . }}'\n",
            ),
            ("templates/_h.tpl", "{{ define \"n\" }}parent{{ end }}"),
            (
                "templates/t.yaml",
                "{{ tpl .Values.t . }} {{ include \"n\" . }} {{ include \"s\" . }} {{ .Subcharts.sub.Values.v }}",
            ),
            (
                "charts/sub/Chart.yaml",
                "apiVersion: v2\nname: sub\nversion: 1.0.0\n",
            ),
            ("charts/sub/values.yaml", "v: sub-value\n"),
            (
                "charts/sub/templates/_h.tpl",
                "{{ define \"n\" }}sub{{ end }}{{ define \"s\" }}from-sub{{ end }}",
            ),
        ]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(out[0].1, "tpl parent from-sub sub-value");
    }

    #[test]
    fn conditions_tags_and_library_charts() {
        let (out, problems) = render(&[
            ("Chart.yaml", "apiVersion: v2\nname: c\nversion: 1.0.0\ndependencies:\n- {name: a, condition: a.enabled}\n- {name: b, tags: [extras], import-values: [data]}\n- {name: lib}\n- {name: gone}\n"),
            ("values.yaml", "tags: {extras: false}\n"),
            ("charts/a/Chart.yaml", "name: a\nversion: 1.0.0\n"),
            ("charts/a/values.yaml", "enabled: false\n"),
            ("charts/a/templates/t.yaml", "a"),
            ("charts/b/Chart.yaml", "name: b\nversion: 1.0.0\n"),
            ("charts/b/templates/t.yaml", "b"),
            ("charts/lib/Chart.yaml", "name: lib\nversion: 1.0.0\ntype: library\n"),
            ("charts/lib/templates/t.yaml", "{{ fail \"a library chart only defines\" }}"),
            ("templates/t.yaml", "parent"),
        ]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            problems,
            vec![
                "charts/c/Chart.yaml:0:0: error: dependency gone of chart c is declared but missing in charts/",
                "charts/c/Chart.yaml:0:0: warning: import-values of dependency b is not supported: the values it imports are not set",
            ]
        );
    }
}
