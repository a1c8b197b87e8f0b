//! What detection refuses, and where it says so: malformed YAML, unknown and unsupported
//! template functions, `required`/`fail` on default values, invalid references, a symlink
//! out of the root, an oversized file, a FIFO, missing list files and roots; and what must
//! still be read (CRLF line ends, a byte order mark).

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;

use chasi_detect::{detect, DetectError, Detection, Options, Severity};
use common::write;

fn run(root: &Path) -> Detection {
    detect(root, &Options::default()).unwrap()
}

fn only_problem(d: &Detection) -> String {
    assert_eq!(d.problems.len(), 1, "{:#?}", d.problems);
    d.problems[0].to_string()
}

const CHART: &str = "apiVersion: v2\nname: demo\nversion: 0.1.0\n";

#[test]
fn malformed_yaml_is_an_error_with_its_position() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "manifests/bad.yaml",
        "apiVersion: v1\nkind: Pod\nspec:\n  containers: [\n    {name: a, image: nginx}\n  x: 1\n",
    );
    write(
        root.path(),
        "manifests/good.yaml",
        "kind: Pod\nspec:\n  containers:\n  - image: nginx:1\n",
    );
    let d = run(root.path());
    let p = only_problem(&d);
    assert!(p.starts_with("manifests/bad.yaml:6:"), "{p}");
    assert!(p.contains(": error: not valid YAML"), "{p}");
    assert_eq!(d.problems[0].severity, Severity::Error);
    assert_eq!(d.images.len(), 1, "the good file is still scanned");
}

#[test]
fn unknown_template_function_is_named_with_its_position() {
    let root = tempfile::tempdir().unwrap();
    write(root.path(), "charts/demo/Chart.yaml", CHART);
    write(
        root.path(),
        "charts/demo/templates/pod.yaml",
        "kind: Pod\nspec:\n  containers:\n  - image: {{ frobnicate .Values.image }}\n",
    );
    let p = only_problem(&run(root.path()));
    assert_eq!(p, "charts/demo/templates/pod.yaml:4:15: error: chart demo: function \"frobnicate\" not defined");
}

#[test]
fn unsupported_helm_function_is_named() {
    let root = tempfile::tempdir().unwrap();
    write(root.path(), "charts/demo/Chart.yaml", CHART);
    write(
        root.path(),
        "charts/demo/templates/_certs.tpl",
        "{{ define \"ca\" }}\n{{- $ca := genCA \"demo-ca\" 365 }}{{ end }}",
    );
    write(
        root.path(),
        "charts/demo/templates/pod.yaml",
        "kind: Pod\nspec:\n  containers:\n  - image: nginx\n",
    );
    let p = only_problem(&run(root.path()));
    assert_eq!(p, "charts/demo/templates/_certs.tpl:2:12: error: chart demo: function \"genCA\" is not supported by chasi's chart renderer");
}

#[test]
fn required_and_fail_on_default_values_are_errors() {
    let root = tempfile::tempdir().unwrap();
    write(root.path(), "charts/demo/Chart.yaml", CHART);
    write(
        root.path(),
        "charts/demo/values.yaml",
        "image:\n  repository: \"\"\n",
    );
    write(root.path(), "charts/demo/templates/_helpers.tpl", "{{- define \"demo.image\" -}}\n{{ required \"image.repository must be set\" .Values.image.repository }}\n{{- end }}");
    write(
        root.path(),
        "charts/demo/templates/pod.yaml",
        "kind: Pod\nspec:\n  containers:\n  - image: {{ include \"demo.image\" . }}\n",
    );
    write(
        root.path(),
        "charts/demo/templates/check.yaml",
        "{{ if not .Values.accepted }}{{ fail \"set accepted=true\" }}{{ end }}",
    );
    let d = run(root.path());
    let text: Vec<String> = d.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "charts/demo/templates/_helpers.tpl:2:4: error: chart demo: error calling required: image.repository must be set (rendering templates/pod.yaml)",
            "charts/demo/templates/check.yaml:1:33: error: chart demo: error calling fail: set accepted=true",
        ]
    );
}

#[test]
fn nil_pointer_is_helms_error() {
    let root = tempfile::tempdir().unwrap();
    write(root.path(), "charts/demo/Chart.yaml", CHART);
    write(
        root.path(),
        "charts/demo/templates/pod.yaml",
        "kind: Pod\nspec:\n  containers:\n  - image: {{ .Values.image.repository }}\n",
    );
    let p = only_problem(&run(root.path()));
    assert_eq!(p, "charts/demo/templates/pod.yaml:4:15: error: chart demo: nil pointer evaluating interface {}.repository");
}

#[test]
fn invalid_references_are_errors_at_their_line() {
    let root = tempfile::tempdir().unwrap();
    write(root.path(), "manifests/pods.yaml", "kind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: a\n    image: Nginx:1.25\n  - name: b\n    image: \"\"\n");
    write(
        root.path(),
        "manifests/imageList",
        "ok/image:1\nbad image\n",
    );
    write(root.path(), "charts/demo/Chart.yaml", CHART);
    write(
        root.path(),
        "charts/demo/templates/pod.yaml",
        "kind: Pod\nspec:\n  containers:\n  - image: \"{{ .Values.registry }}/app:{{ `{{` }}\"\n",
    );
    let d = run(root.path());
    let text: Vec<String> = d.problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 4, "{text:#?}");
    assert!(text[0].starts_with("charts/demo/templates/pod.yaml:4:12: error: `/app:{{` is not an image reference: it holds unrendered template syntax"), "{}", text[0]);
    assert!(
        text[1]
            .starts_with("manifests/imageList:2:1: error: `bad image` is not an image reference"),
        "{}",
        text[1]
    );
    assert!(text[2].starts_with("manifests/pods.yaml:6:12: error: `Nginx:1.25` is not an image reference: repository name must be lowercase"), "{}", text[2]);
    assert!(
        text[3].starts_with("manifests/pods.yaml:8:12: error: empty image reference"),
        "{}",
        text[3]
    );
    assert_eq!(d.images.len(), 1);
}

#[test]
fn symlinks_out_of_the_root_are_not_followed() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    write(
        outer.path(),
        "secret/pod.yaml",
        "kind: Pod\nspec:\n  containers:\n  - image: outside/secret:1\n",
    );
    write(
        &root,
        "manifests/in.yaml",
        "kind: Pod\nspec:\n  containers:\n  - image: inside:1\n",
    );
    symlink("../../secret/pod.yaml", root.join("manifests/escape.yaml")).unwrap();
    symlink("../../secret", root.join("manifests/dir")).unwrap();
    symlink("/manifests/in.yaml", root.join("manifests/absolute.yaml")).unwrap();
    let d = run(&root);
    let refs: Vec<&str> = d.images.iter().map(|i| i.reference.as_str()).collect();
    assert_eq!(refs, vec!["docker.io/library/inside:1"]);
    let text: Vec<String> = d.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        vec![
            "manifests/dir:0:0: warning: not read: it leads out of the image root (symlink or `..`)",
            "manifests/escape.yaml:0:0: warning: not read: it leads out of the image root (symlink or `..`)",
        ]
    );
    assert_eq!(
        d.images[0].sources.len(),
        2,
        "the absolute link resolves inside the root"
    );
}

#[test]
fn oversized_files_and_fifos_are_skipped_with_a_warning() {
    let root = tempfile::tempdir().unwrap();
    let big = "# padding\n".repeat((16 << 20) / 10 + 1);
    write(root.path(), "manifests/huge.yaml", &big);
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        root.path().join("manifests/pipe.yaml"),
        rustix::fs::Mode::RWXU,
    )
    .unwrap();
    let d = run(root.path());
    let text: Vec<String> = d.problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 2, "{text:#?}");
    assert!(text[0].starts_with("manifests/huge.yaml:0:0: warning: not read: it is 16777220 bytes, larger than the bound"), "{}", text[0]);
    assert_eq!(
        text[1],
        "manifests/pipe.yaml:0:0: warning: not read: it is a fifo, not a regular file"
    );
}

#[test]
fn missing_lists_and_roots_are_errs() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("nope.txt");
    let e = detect(
        root.path(),
        &Options {
            image_list: Some(missing.clone()),
            ignored_image_list: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(&e, DetectError::List { path, .. } if *path == missing),
        "{e}"
    );
    let e = detect(&root.path().join("absent"), &Options::default()).unwrap_err();
    assert!(matches!(e, DetectError::Root { .. }), "{e}");
}

#[test]
fn non_yaml_tmpl_is_a_warning_and_yaml_tmpl_is_scanned() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "manifests/a.yaml.tmpl",
        "kind: X\n{{- if .A }}\n  b: [\n",
    );
    write(
        root.path(),
        "manifests/b.yaml.tmpl",
        "kind: Pod\nspec:\n  containers:\n  - image: registry:2\n",
    );
    let d = run(root.path());
    assert_eq!(d.images.len(), 1);
    assert_eq!(d.problems.len(), 1);
    assert_eq!(d.problems[0].severity, Severity::Warning);
}

#[test]
fn crlf_files_and_byte_order_marks_are_read() {
    let root = tempfile::tempdir().unwrap();
    write(
        root.path(),
        "manifests/crlf.yaml",
        "\u{feff}kind: Pod\r\nspec:\r\n  containers:\r\n  - image: crlf/pod:1\r\n",
    );
    write(root.path(), "charts/demo/Chart.yaml", CHART);
    write(
        root.path(),
        "charts/demo/values.yaml",
        "image: crlf/chart:2\r\n",
    );
    write(root.path(), "charts/demo/templates/pod.yaml", "kind: Pod\r\nspec:\r\n  containers:\r\n  {{- if .Values.image }}\r\n  - image: {{ .Values.image }}\r\n  {{- end }}\r\n");
    let d = run(root.path());
    assert!(d.problems.is_empty(), "{:#?}", d.problems);
    let refs: Vec<&str> = d.images.iter().map(|i| i.reference.as_str()).collect();
    assert_eq!(refs, vec!["docker.io/crlf/chart:2", "docker.io/crlf/pod:1"]);
}
