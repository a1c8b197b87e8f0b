//! The checker and the planner against small good and bad Kubefiles.
//!
//! * `tests/data/check/{ok,err}/*.Kubefile` carry their expected diagnostics as comment
//!   lines `# expect: KF214 3:24` (code, line, column); the set must match exactly, `err`
//!   files must have an error and `ok` files none.
//! * Build-context rules (KF3xx, app type detection) run against small contexts created in
//!   temporary directories from the [`CONTEXT_CASES`] table.
//! * A coverage test fails when a KF2xx/KF3xx code has no case.
//! * Plan identity: what changes a node id and what does not; multi-platform plans; the
//!   DOT output renders with Graphviz.

use chasi_compiler::check::{
    parse_platform, AppType, Command, CopyFrom, ImageType, Op, Platform, Program, Source,
};
use chasi_compiler::diagnostics::Code;
use chasi_compiler::plan::{render, Plan};
use chasi_compiler::source::SourceFile;
use chasi_compiler::{compile, CompileOptions, Compiled};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/check");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");

type Expected = BTreeSet<(String, usize, usize)>;

fn amd64() -> Vec<Platform> {
    vec![Platform::linux_amd64()]
}

fn compile_text(
    text: &str,
    context: Option<&Path>,
    build_args: &[(&str, &str)],
) -> (SourceFile, Compiled) {
    compile_with(text, context, build_args, amd64())
}

fn compile_with(
    text: &str,
    context: Option<&Path>,
    build_args: &[(&str, &str)],
    platforms: Vec<Platform>,
) -> (SourceFile, Compiled) {
    compile_typed(text, context, build_args, platforms, ImageType::default())
}

fn compile_typed(
    text: &str,
    context: Option<&Path>,
    build_args: &[(&str, &str)],
    platforms: Vec<Platform>,
    image_type: ImageType,
) -> (SourceFile, Compiled) {
    let source = SourceFile::new("Kubefile", text);
    let options = CompileOptions {
        context,
        build_args: build_args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        platforms,
        image_type,
        skip_plan: false,
        file_digests: None,
    };
    let compiled = compile(&source, &options).expect("the context is readable");
    (source, compiled)
}

fn found(source: &SourceFile, compiled: &Compiled) -> Expected {
    compiled
        .diagnostics
        .iter()
        .map(|d| {
            let at = source.line_col(d.span.start);
            (d.code.as_str().to_string(), at.line, at.column)
        })
        .collect()
}

fn describe(source: &SourceFile, compiled: &Compiled) -> String {
    compiled
        .diagnostics
        .iter()
        .map(|d| {
            let at = source.line_col(d.span.start);
            format!(
                "  {} {}:{} {}\n",
                d.code.as_str(),
                at.line,
                at.column,
                d.message
            )
        })
        .collect()
}

fn expectations(text: &str) -> Expected {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("# expect:"))
        .map(|e| {
            let mut parts = e.split_whitespace();
            let code = parts.next().expect("code").to_string();
            let (line, col) = parts
                .next()
                .expect("line:col")
                .split_once(':')
                .expect("line:col");
            (
                code,
                line.parse().expect("line"),
                col.parse().expect("column"),
            )
        })
        .collect()
}

fn data_files(kind: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(Path::new(DATA).join(kind))
        .expect("data dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "Kubefile"))
        .collect();
    files.sort();
    files
}

fn check_data_file(path: &Path, must_fail: bool) -> Expected {
    let text = std::fs::read_to_string(path).expect("read");
    let expected = expectations(&text);
    let (source, compiled) = compile_text(&text, None, &[]);
    let actual = found(&source, &compiled);
    assert_eq!(
        actual,
        expected,
        "{}: diagnostics differ; found:\n{}",
        path.display(),
        describe(&source, &compiled)
    );
    assert_eq!(
        compiled.has_errors(),
        must_fail,
        "{}: expected {}",
        path.display(),
        if must_fail { "an error" } else { "no error" }
    );
    assert_eq!(compiled.plan.is_some(), !must_fail);
    expected
}

#[test]
fn ok_files_have_no_errors() {
    let files = data_files("ok");
    assert!(files.len() >= 5);
    for path in files {
        check_data_file(&path, false);
    }
}

#[test]
fn err_files_report_exactly_the_expected_diagnostics() {
    let files = data_files("err");
    assert!(files.len() >= 25);
    for path in files {
        let expected = check_data_file(&path, true);
        assert!(!expected.is_empty(), "{} expects nothing", path.display());
    }
}

// ---- build-context cases -------------------------------------------------------------------

/// A context file: `(path, content)`; content `"-> target"` makes a symbolic link.
type File = (&'static str, &'static str);

struct ContextCase {
    name: &'static str,
    files: &'static [File],
    kubefile: &'static str,
    expect: &'static [(&'static str, usize, usize)],
}

const CONTEXT_CASES: &[ContextCase] = &[
    ContextCase {
        name: "missing sources",
        files: &[("a.yaml", "a")],
        kubefile: "FROM scratch\nCOPY missing.txt dest/\nAPP app local://nope.yaml\nCOPY a.yaml dest/\n",
        expect: &[("KF300", 2, 6), ("KF300", 3, 9)],
    },
    ContextCase {
        name: "paths leaving the context",
        files: &[("a.yaml", "a")],
        kubefile: "FROM scratch\nCOPY ../outside d/\nCOPY /etc/passwd d/\nAPP x local://sub/../../y.yaml\nCOPY sub/../a.yaml d/\n",
        expect: &[("KF301", 2, 6), ("KF301", 3, 6), ("KF301", 4, 7)],
    },
    ContextCase {
        name: "symbolic links pointing out",
        files: &[("out", "-> /etc"), ("up", "-> ../.."), ("in", "-> real"), ("real/x", "x")],
        kubefile: "FROM scratch\nCOPY out/hostname d/\nCOPY up d/\nCOPY in/x d/\n",
        expect: &[("KF302", 2, 6), ("KF302", 3, 6)],
    },
    ContextCase {
        name: "ignored sources",
        files: &[
            (".kubefileignore", "# secrets stay out\nsecret.txt\n*.log\n!keep.log\n/build\n"),
            ("secret.txt", "s"),
            ("a.log", "l"),
            ("keep.log", "k"),
            ("build/out.bin", "b"),
        ],
        kubefile: "FROM scratch\nCOPY secret.txt d/\nCOPY a.log d/\nCOPY keep.log d/\nCOPY build/out.bin d/\n",
        expect: &[("KF303", 2, 6), ("KF303", 3, 6), ("KF303", 5, 6)],
    },
    ContextCase {
        name: "invalid ignore pattern",
        files: &[(".kubefileignore", "ok\n[z-a]\n"), ("a", "a")],
        kubefile: "FROM scratch\nCOPY a d/\n",
        expect: &[("KF304", 1, 1)],
    },
    ContextCase {
        name: "globs",
        files: &[("m/a.yaml", "a"), ("m/b.yaml", "b"), ("m/c.txt", "c")],
        kubefile: "FROM scratch\nCOPY m/*.yaml manifests/\nCOPY m/*.json manifests/\nCOPY m/*.yaml one\n",
        expect: &[("KF305", 3, 6), ("KF234", 4, 15)],
    },
    ContextCase {
        name: "untyped app in the context needs APPCMDS",
        files: &[("mixedcontext/app.yaml", "a"), ("mixedcontext/install.sh", "i"), ("yamls/a.yml", "a")],
        kubefile: "FROM scratch\nAPP mixed local://mixedcontext\nAPP kube local://yamls\nLAUNCH mixed kube\n",
        expect: &[("KF215", 2, 5)],
    },
    ContextCase {
        name: "NUL bytes, written or expanded, in values that become paths, names or commands",
        files: &[("a", "a")],
        kubefile: "FROM scratch\nARG X=\"a\0b\"\nCOPY \"a\0b\" /x\nCOPY ${X} d/\nCOPY a d\0/\nCOPY --from=st\0 a d/\nCOPY --chown=ro\0ot a d/\nAPP n local://a\0b\nRUN echo \0\nRUN [\"a\\u0000\"]\nFROM oci:/l\0x\n",
        expect: &[
            ("KF238", 3, 8),
            ("KF238", 4, 6),
            ("KF238", 5, 9),
            ("KF238", 6, 15),
            ("KF238", 7, 16),
            ("KF238", 8, 16),
            ("KF238", 9, 10),
            ("KF238", 10, 6),
            ("KF238", 11, 12),
        ],
    },
];

fn make_context(files: &[File]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, content) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        match content.strip_prefix("-> ") {
            #[cfg(unix)]
            Some(target) => std::os::unix::fs::symlink(target, &full).expect("symlink"),
            #[cfg(not(unix))]
            Some(_) => {}
            None => std::fs::write(&full, content).expect("write"),
        }
    }
    dir
}

#[test]
fn context_cases() {
    for case in CONTEXT_CASES {
        let dir = make_context(case.files);
        let (source, compiled) = compile_text(case.kubefile, Some(dir.path()), &[]);
        let expected: Expected = case
            .expect
            .iter()
            .map(|(c, l, col)| (c.to_string(), *l, *col))
            .collect();
        assert_eq!(
            found(&source, &compiled),
            expected,
            "{}: found\n{}",
            case.name,
            describe(&source, &compiled)
        );
    }
}

/// `--type` cases: `(name, image type, context files, Kubefile, expected diagnostics)`.
type TypeCase = (
    &'static str,
    ImageType,
    &'static [File],
    &'static str,
    &'static [(&'static str, usize, usize)],
);

const APP_FILES: &[File] = &[
    ("rootfs/etc/kubeadm.yml", "k"),
    ("rootfs/scripts/init.sh", "i"),
    ("rootfs/manifests/x.yaml", "x"),
    ("app.yaml", "a"),
    ("init-kube.sh", "i"),
];

const CLUSTER_WRITES: &str = "FROM scratch\nCOPY rootfs .\nCOPY init-kube.sh /scripts/\n\
    COPY app.yaml manifests/\nCOPY app.yaml etc\nAPP app local://app.yaml\nLAUNCH [\"app\"]\n";

const TYPE_CASES: &[TypeCase] = &[
    (
        "an app image writing directories of the cluster runtime",
        ImageType::AppInstaller,
        APP_FILES,
        CLUSTER_WRITES,
        &[("KF239", 2, 13), ("KF239", 3, 19), ("KF239", 5, 15)],
    ),
    (
        "the same files in a cluster image",
        ImageType::KubeInstaller,
        APP_FILES,
        CLUSTER_WRITES,
        &[],
    ),
    (
        "an app image that launches nothing",
        ImageType::AppInstaller,
        APP_FILES,
        "FROM scratch\nCOPY app.yaml manifests/\nAPP app local://app.yaml\n",
        &[("KF240", 1, 1)],
    ),
    (
        "a cluster image may launch nothing",
        ImageType::KubeInstaller,
        APP_FILES,
        "FROM scratch\nAPP app local://app.yaml\n",
        &[],
    ),
    (
        "only the stages the final image is based on count",
        ImageType::AppInstaller,
        APP_FILES,
        "FROM scratch AS tools\nCOPY init-kube.sh scripts/\nFROM scratch AS base\n\
         COPY app.yaml etc/\nFROM base\nCOPY --from=tools scripts/init-kube.sh application/apps/app/\n\
         COPY --from=tools scripts .\nAPP app local://app.yaml\nCMDS [\"kubectl apply -f application/apps/app/app.yaml\"]\n",
        &[("KF239", 4, 15)],
    ),
    (
        "an app image launching by CMD, files under application/",
        ImageType::AppInstaller,
        APP_FILES,
        "FROM scratch\nCOPY rootfs/manifests manifests/\nCOPY app.yaml application/apps/x/\nCMD kubectl apply -f manifests/x.yaml\n",
        &[("KF210", 4, 1)],
    ),
];

#[test]
fn image_type_cases() {
    for (name, image_type, files, kubefile, expect) in TYPE_CASES {
        let dir = make_context(files);
        let (source, compiled) =
            compile_typed(kubefile, Some(dir.path()), &[], amd64(), *image_type);
        let expected: Expected = expect
            .iter()
            .map(|(c, l, col)| (c.to_string(), *l, *col))
            .collect();
        assert_eq!(
            found(&source, &compiled),
            expected,
            "{name}: found\n{}",
            describe(&source, &compiled)
        );
        assert!(!compiled.has_errors(), "{name}: the rules are warnings");
        let program = compiled.program.expect("no errors");
        let extension = serde_json::to_value(&program.targets[0].image.extension).expect("json");
        assert_eq!(extension["type"], image_type.as_str(), "{name}");
    }
}

#[test]
fn image_type_messages_name_the_directories() {
    let dir = make_context(APP_FILES);
    let (_, compiled) = compile_typed(
        CLUSTER_WRITES,
        Some(dir.path()),
        &[],
        amd64(),
        ImageType::AppInstaller,
    );
    let messages: Vec<&str> = compiled
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "the app-installer image writes `etc/`, `scripts/`, a directory of the cluster runtime: \
             `sealer run` copies an application image's files over the running cluster's own on every master",
            "the app-installer image writes `scripts/`, a directory of the cluster runtime: \
             `sealer run` copies an application image's files over the running cluster's own on every master",
            "the app-installer image writes `etc/`, a directory of the cluster runtime: \
             `sealer run` copies an application image's files over the running cluster's own on every master",
        ]
    );
    // Without a context, a copy into the root cannot be seen through.
    let (source, compiled) =
        compile_typed(CLUSTER_WRITES, None, &[], amd64(), ImageType::AppInstaller);
    let lines: Vec<usize> = compiled
        .diagnostics
        .iter()
        .map(|d| source.line_col(d.span.start).line)
        .collect();
    assert_eq!(lines, [3, 5]);
}

/// Codes only the builder reports (they need the resolved base image): tested by the unit
/// tests of `compiler/src/check/imagetype.rs` and by `tests/build_cli.rs`.
const BUILDER_CODES: &[&str] = &["KF241", "KF242"];

#[test]
fn every_owned_code_has_a_case() {
    let mut covered: BTreeSet<String> = BTreeSet::new();
    for kind in ["ok", "err"] {
        for path in data_files(kind) {
            let text = std::fs::read_to_string(&path).expect("read");
            covered.extend(expectations(&text).into_iter().map(|(c, _, _)| c));
        }
    }
    for case in CONTEXT_CASES {
        covered.extend(case.expect.iter().map(|(c, _, _)| c.to_string()));
    }
    for (_, _, _, _, expect) in TYPE_CASES {
        covered.extend(expect.iter().map(|(c, _, _)| c.to_string()));
    }
    covered.extend(BUILDER_CODES.iter().map(|c| c.to_string()));
    let missing: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| c.starts_with("KF2") || c.starts_with("KF3"))
        .filter(|c| !covered.contains(*c))
        .collect();
    assert!(missing.is_empty(), "codes without a test case: {missing:?}");
}

// ---- what the program says -----------------------------------------------------------------

fn program(text: &str, build_args: &[(&str, &str)]) -> Program {
    let (source, compiled) = compile_text(text, None, build_args);
    let why = describe(&source, &compiled);
    compiled.program.unwrap_or_else(|| panic!("errors:\n{why}"))
}

#[test]
fn env_quoting_is_honoured() {
    let p = program(
        "FROM scratch\nENV a=\"x y\" b='$c' c=\\$d e=\"q\\\"uote\"\nENV legacy two  words\n",
        &[],
    );
    let env = &p.targets[0].image.env;
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("a"), Some("x y"));
    assert_eq!(get("b"), Some("$c"));
    assert_eq!(get("c"), Some("$d"));
    assert_eq!(get("e"), Some("q\"uote"));
    assert_eq!(get("legacy"), Some("two  words"));
    assert_eq!(
        p.targets[0]
            .image
            .extension
            .env
            .get("a")
            .map(String::as_str),
        Some("x y")
    );
}

#[test]
fn json_arrays_are_honoured_for_commands() {
    let p = program(
        "FROM scratch\nAPP a local://a.tgz\nAPPCMDS a [\"helm\", \"install\", \"a\", \"a.tgz\"]\nCMDS [\"kubectl apply -f x.yaml\", \"echo done\"]\n",
        &[],
    );
    let ext = &p.targets[0].image.extension;
    assert_eq!(
        ext.launch.cmds,
        vec!["kubectl apply -f x.yaml", "echo done"]
    );
    assert_eq!(
        ext.applications[0].cmds,
        vec!["helm", "install", "a", "a.tgz"]
    );
    let p = program("FROM scratch\nCMD [\"a b\", \"c\"]\nCMD d e\n", &[]);
    assert_eq!(
        p.targets[0].image.extension.launch.cmds,
        vec!["a b", "c", "d e"]
    );
    let p = program(
        "FROM scratch\nRUN [\"/bin/echo\", \"$HOME\"]\nRUN echo $HOME\n",
        &[],
    );
    let steps = &p.targets[0].stages[0].steps;
    match (&steps[0].op, &steps[1].op) {
        (Op::Run(a), Op::Run(b)) => {
            assert_eq!(
                a.command,
                Command::Exec(vec!["/bin/echo".into(), "$HOME".into()])
            );
            assert_eq!(b.command, Command::Shell("echo $HOME".into()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn copy_keeps_every_source_and_flag() {
    let p = program(
        "FROM scratch AS one\nFROM scratch\nCOPY --from=one --chown=1000:app --chmod=0750 a \"b c\" d/\n",
        &[],
    );
    let Op::Copy(copy) = &p.targets[0].stages[1].steps[0].op else {
        panic!("not a copy")
    };
    let paths: Vec<&str> = copy
        .sources
        .iter()
        .map(|s| match s {
            Source::Local { path, .. } => path.as_str(),
            Source::Remote { url } => url.as_str(),
        })
        .collect();
    assert_eq!(paths, vec!["a", "b c"]);
    assert_eq!(copy.dest, "d/");
    assert_eq!(copy.from, Some(CopyFrom::Stage { index: 0 }));
    assert_eq!(copy.chmod, Some(0o750));
    let chown = copy.chown.as_ref().expect("chown");
    assert_eq!(
        (chown.user.as_str(), chown.group.as_deref()),
        ("1000", Some("app"))
    );
}

#[test]
fn variables_build_args_and_platforms() {
    let text = "ARG BASE=scratch\nFROM ${BASE}\nARG V=1\nARG W\nLABEL v=${V} w=${W:-none} alt=${V:+set} arch=${ARCH}-${TARGETARCH} p=$TARGETPLATFORM\n";
    let labels = |p: &Program, t: usize| p.targets[t].image.labels.clone();
    let p = program(text, &[]);
    let l = labels(&p, 0);
    assert_eq!(l["v"], "1");
    assert_eq!(l["w"], "none");
    assert_eq!(l["alt"], "set");
    assert_eq!(l["arch"], "amd64-amd64");
    assert_eq!(l["p"], "linux/amd64");
    let p = program(text, &[("V", "2"), ("W", "given")]);
    assert_eq!(
        (labels(&p, 0)["v"].as_str(), labels(&p, 0)["w"].as_str()),
        ("2", "given")
    );
    let platforms = vec![
        Platform::linux_amd64(),
        parse_platform("linux/arm64/v8").expect("platform"),
    ];
    let (_, compiled) = compile_with(text, None, &[], platforms);
    let p = compiled.program.expect("program");
    assert_eq!(labels(&p, 1)["arch"], "arm64-arm64");
    assert_eq!(labels(&p, 1)["p"], "linux/arm64/v8");
}

// ---- app type detection in a context -------------------------------------------------------

#[test]
fn app_types_are_detected_in_the_context_not_the_working_directory() {
    let dir = make_context(&[
        ("chart/Chart.yaml", "c"),
        ("chart/values.yaml", "v"),
        ("chart/templates/d.yaml", "d"),
        ("charts/nested/Chart.yaml", "c"),
        ("charts/nested/values.yaml", "v"),
        ("charts/nested/templates/d.yaml", "d"),
        ("yamls/a.yaml", "a"),
        ("yamls/sub/b.yml", "b"),
        ("scripts/a.sh", "a"),
        ("scripts/b.sh", "b"),
        ("mixed/a.sh", "a"),
        ("mixed/b.yaml", "b"),
    ]);
    let text = "FROM scratch\nAPP helm local://chart\nAPP nested local://charts\nAPP kube local://yamls\nAPP shell local://scripts\nAPP mixed local://mixed\nAPPCMDS mixed [\"sh\", \"a.sh\"]\nAPP remote https://example.com/x.yaml\n";
    let (source, compiled) = compile_text(text, Some(dir.path()), &[]);
    let why = describe(&source, &compiled);
    let p = compiled.program.unwrap_or_else(|| panic!("{why}"));
    let apps: BTreeMap<&str, (Option<AppType>, Vec<String>)> = p.targets[0].stages[0]
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            Op::App(a) => Some((a.name.as_str(), (a.app_type, a.files.clone()))),
            _ => None,
        })
        .collect();
    assert_eq!(
        apps["helm"],
        (Some(AppType::Helm), vec!["helm".to_string()])
    );
    assert_eq!(
        apps["nested"],
        (Some(AppType::Helm), vec!["nested".to_string()])
    );
    assert_eq!(
        apps["kube"],
        (
            Some(AppType::Kube),
            vec!["a.yaml".to_string(), "sub/b.yml".to_string()]
        )
    );
    assert_eq!(
        apps["shell"],
        (
            Some(AppType::Shell),
            vec!["a.sh".to_string(), "b.sh".to_string()]
        )
    );
    assert_eq!(apps["mixed"].0, Some(AppType::Untyped));
    assert_eq!(
        apps["remote"],
        (Some(AppType::Kube), vec!["x.yaml".to_string()])
    );
    let ext = &p.targets[0].image.extension;
    let types: Vec<&str> = ext
        .applications
        .iter()
        .map(|a| a.app_type.as_str())
        .collect();
    assert_eq!(types, vec!["helm", "helm", "kube", "shell", "", "kube"]);
}

#[test]
fn the_examples_check_clean_against_their_contexts() {
    // The examples this suite knows; others may need preparation (see their Kubefiles).
    for name in ["app-image", "cluster-base", "multi-stage"] {
        let dir = Path::new(EXAMPLES).join(name);
        let kubefile = dir.join("Kubefile");
        let text = std::fs::read_to_string(&kubefile).expect("read");
        let platforms = vec![
            Platform::linux_amd64(),
            parse_platform("linux/arm64").expect("p"),
        ];
        let (source, compiled) = compile_with(&text, Some(&dir), &[], platforms);
        assert!(
            compiled.diagnostics.is_empty(),
            "{}:\n{}",
            dir.display(),
            describe(&source, &compiled)
        );
    }
}

// ---- plan identity -------------------------------------------------------------------------

const PLAN_KUBEFILE: &str = "FROM scratch
ARG V=1
ARG UNUSED=0
COPY a.txt a.txt
COPY b/ b/
LABEL v=${V}
COPY c.txt c.txt
";

fn plan_context() -> tempfile::TempDir {
    make_context(&[
        ("a.txt", "alpha"),
        ("b/x", "x"),
        ("b/y/z", "z"),
        ("b/skip.tmp", "ignored"),
        ("c.txt", "gamma"),
        (".kubefileignore", "**/*.tmp\n"),
    ])
}

fn ids(dir: &Path, build_args: &[(&str, &str)]) -> Vec<String> {
    let (source, compiled) = compile_text(PLAN_KUBEFILE, Some(dir), build_args);
    let why = describe(&source, &compiled);
    let plan = compiled.plan.unwrap_or_else(|| panic!("{why}"));
    plan.targets[0]
        .nodes
        .iter()
        .map(|n| n.id.to_string())
        .collect()
}

/// The index of the first node whose id differs (`None`: all equal).
fn first_change(a: &[String], b: &[String]) -> Option<usize> {
    assert_eq!(a.len(), b.len());
    let first = a.iter().zip(b).position(|(x, y)| x != y)?;
    assert!(
        a[first..].iter().zip(&b[first..]).all(|(x, y)| x != y),
        "every node after a changed node must change too"
    );
    Some(first)
}

fn set_mtime(path: &Path, secs: u64) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    file.set_times(
        std::fs::FileTimes::new()
            .set_modified(time)
            .set_accessed(time),
    )
    .expect("set times");
}

#[test]
fn node_ids_ignore_mtimes_but_not_bytes() {
    let dir = plan_context();
    let base = ids(dir.path(), &[]);
    assert_eq!(base.len(), 8, "FROM, 2 ARG, 3 COPY, LABEL, image");
    assert_eq!(ids(dir.path(), &[]), base, "planning is deterministic");

    set_mtime(&dir.path().join("a.txt"), 1_000_000);
    set_mtime(&dir.path().join("b/y/z"), 2_000_000);
    assert_eq!(
        ids(dir.path(), &[]),
        base,
        "an mtime is not part of an identity"
    );

    std::fs::write(dir.path().join("b/skip.tmp"), "changed but ignored").expect("write");
    assert_eq!(
        ids(dir.path(), &[]),
        base,
        ".kubefileignored files are not hashed"
    );

    std::fs::write(dir.path().join("b/y/z"), "Z").expect("write");
    let changed = ids(dir.path(), &[]);
    assert_eq!(
        first_change(&base, &changed),
        Some(4),
        "COPY b/ and everything after"
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let before = ids(dir.path(), &[]);
        std::fs::set_permissions(
            dir.path().join("a.txt"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        assert_eq!(
            first_change(&before, &ids(dir.path(), &[])),
            Some(3),
            "a mode is content"
        );
    }
}

#[test]
fn node_ids_follow_the_build_args_they_use() {
    let dir = plan_context();
    let base = ids(dir.path(), &[]);
    assert_eq!(
        ids(dir.path(), &[("V", "1")]),
        base,
        "the same value as the default"
    );
    assert_eq!(
        first_change(&base, &ids(dir.path(), &[("V", "2")])),
        Some(5),
        "LABEL v=${{V}} on"
    );
    assert_eq!(
        ids(dir.path(), &[("UNUSED", "9")]),
        base,
        "a declared but unused arg"
    );
    assert_eq!(
        ids(dir.path(), &[("NOT_DECLARED", "9")]),
        base,
        "an undeclared arg"
    );
}

#[test]
fn run_steps_see_every_arg_in_scope() {
    let text = "FROM scratch\nARG A=1\nRUN make\n";
    let plan_ids = |args: &[(&str, &str)]| -> Vec<String> {
        let (_, c) = compile_text(text, None, args);
        c.plan.expect("plan").targets[0]
            .nodes
            .iter()
            .map(|n| n.id.to_string())
            .collect()
    };
    assert_eq!(
        first_change(&plan_ids(&[]), &plan_ids(&[("A", "2")])),
        Some(2)
    );
}

/// `ARG ARCH=amd64` (and defaults of the other platform variables), global or in a stage, do
/// not override the platform: the arm64 plan copies `arm64`.
#[test]
fn platform_variables_win_over_arg_defaults() {
    let text = "ARG ARCH=amd64\nARG TARGETOS=windows\nFROM scratch\nARG TARGETARCH=amd64\nARG TARGETPLATFORM=linux/amd64\nARG ARCH=amd64\nCOPY ${ARCH} .\nCOPY ${TARGETARCH}/${TARGETOS} x/\nCOPY ${TARGETPLATFORM} y/\n";
    let (source, compiled) = compile_with(
        text,
        None,
        &[],
        vec![
            Platform::linux_amd64(),
            parse_platform("linux/arm64").expect("p"),
        ],
    );
    let why = describe(&source, &compiled);
    let plan = compiled.plan.unwrap_or_else(|| panic!("{why}"));
    let copies = |t: usize| -> Vec<String> {
        plan.targets[t]
            .nodes
            .iter()
            .map(|n| n.label.clone())
            .filter(|l| l.starts_with("COPY"))
            .collect()
    };
    assert_eq!(
        copies(0),
        ["COPY amd64 .", "COPY amd64/linux x/", "COPY linux/amd64 y/"]
    );
    assert_eq!(
        copies(1),
        ["COPY arm64 .", "COPY arm64/linux x/", "COPY linux/arm64 y/"]
    );
}

fn multi_stage_plan(platforms: Vec<Platform>) -> Plan {
    let text = "ARG BASE=scratch\nFROM ${BASE} AS tools\nCOPY ${ARCH}/bin bin/\nRUN make\nFROM scratch\nCOPY --from=tools out/ /opt/\nENV A=1\nLAUNCH []\n";
    let (source, compiled) = compile_with(text, None, &[], platforms);
    let why = describe(&source, &compiled);
    compiled.plan.unwrap_or_else(|| panic!("{why}"))
}

#[test]
fn multi_platform_plans_have_one_dag_per_platform() {
    let plan = multi_stage_plan(vec![
        Platform::linux_amd64(),
        parse_platform("linux/arm64").expect("p"),
    ]);
    assert_eq!(plan.targets.len(), 2);
    let (a, b) = (&plan.targets[0], &plan.targets[1]);
    assert_eq!(a.platform.to_string(), "linux/amd64");
    assert_eq!(b.platform.to_string(), "linux/arm64");
    assert_eq!(a.nodes.len(), b.nodes.len());
    assert!(
        a.nodes.iter().zip(&b.nodes).all(|(x, y)| x.id != y.id),
        "platform is in every id"
    );
    assert_eq!(a.nodes[1].label, "COPY amd64/bin bin/");
    assert_eq!(b.nodes[1].label, "COPY arm64/bin bin/");
    // The COPY --from node depends on the last node of the tools stage.
    let copy = a
        .nodes
        .iter()
        .position(|n| n.label.starts_with("COPY --from=tools"))
        .expect("copy");
    assert_eq!(a.nodes[copy].deps, vec![2]);
    assert_eq!(a.image, a.nodes.len() - 1);
    let text = render::text(&plan);
    assert!(text.contains("platform linux/arm64"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&render::json(&plan)).expect("json");
    assert_eq!(json["targets"][1]["nodes"][copy]["deps"][0], 2);
}

#[test]
fn dot_output_renders_with_graphviz() {
    let plan = multi_stage_plan(vec![
        Platform::linux_amd64(),
        parse_platform("linux/arm64").expect("p"),
    ]);
    let dot = render::dot(&plan);
    let child = std::process::Command::new("dot")
        .arg("-Tsvg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => panic!(
            "Graphviz `dot` is needed to check the DOT output ({e}); install it with `apt-get install graphviz` (scripts/test does)"
        ),
    };
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(dot.as_bytes())
            .expect("write");
    }
    let out = child.wait_with_output().expect("dot runs");
    assert!(
        out.status.success(),
        "dot rejected the plan: {}\n{dot}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(
        svg.contains("<svg") && svg.contains("COPY amd64/bin bin/"),
        "{svg}"
    );
}

/// A plan is self-sufficient: each stage's node range starts with its `FROM` node and holds
/// one node per step, each carrying its checked op (the very op its hashed `definition` is
/// made of), and the image node carries the image. The carried step stays out of the JSON view.
#[test]
fn plan_nodes_carry_their_steps_and_stages_their_ranges() {
    use chasi_compiler::check::Base;
    use chasi_compiler::plan::NodeStep;
    let text = "FROM scratch AS build\nCOPY a.txt /a\nRUN make\nFROM build\nENV K=v\nCOPY --from=build /a /b\n";
    let dir = plan_context();
    let (source, compiled) = compile_text(text, Some(dir.path()), &[]);
    let why = describe(&source, &compiled);
    let (Some(program), Some(plan)) = (&compiled.program, &compiled.plan) else {
        panic!("{why}");
    };
    let (target, tplan) = (&program.targets[0], &plan.targets[0]);
    assert_eq!(tplan.stages.len(), target.stages.len());
    let mut covered = 0;
    for (stage, splan) in target.stages.iter().zip(&tplan.stages) {
        assert_eq!(splan.index, stage.index);
        assert_eq!(splan.nodes.start, covered, "ranges are contiguous");
        covered = splan.nodes.end;
        let nodes = &tplan.nodes[splan.nodes.clone()];
        let NodeStep::From {
            base,
            platform,
            span,
        } = &nodes[0].step
        else {
            panic!("stage {} does not start with its FROM", stage.index);
        };
        assert_eq!(
            (base, platform, *span),
            (&stage.base, &stage.platform, stage.span)
        );
        assert_eq!(nodes.len(), 1 + stage.steps.len());
        for (i, (node, step)) in nodes[1..].iter().zip(&stage.steps).enumerate() {
            let NodeStep::Step { index, op, span } = &node.step else {
                panic!("node {} is not a step", node.id);
            };
            assert_eq!((*index, *span, node.line), (i, step.span, Some(step.line)));
            assert_eq!(serde_json::to_value(op).unwrap(), node.definition);
        }
    }
    assert_eq!(
        covered, tplan.image,
        "the image node follows the last stage"
    );
    assert!(matches!(tplan.stages[1..], [_] if matches!(
        tplan.nodes[tplan.stages[1].nodes.start].step,
        NodeStep::From { base: Base::Stage { index: 0 }, .. }
    )));
    let NodeStep::Image(image) = &tplan.nodes[tplan.image].step else {
        panic!("the last node is not the image");
    };
    assert_eq!(image.env, target.image.env);
    let json = render::json(plan);
    assert!(
        !json.contains("\"step\"") && !json.contains("\"stages\""),
        "{json}"
    );
}

// ---- the platform and digest types ---------------------------------------------------------

/// The compiler's platforms are `chasi_oci::Platform` (the one platform type) and its node ids
/// `chasi_oci::Digest`; its parse rules and the plan JSON (`arch`, not `architecture`) did not
/// change with them.
#[test]
fn platforms_and_node_ids_are_the_workspace_types() {
    let arm: chasi_oci::Platform = parse_platform("linux/arm64/v8").expect("platform");
    assert_eq!(arm, "linux/arm64/v8".parse().expect("oci platform"));
    // The compiler accepts `.` where the image commands do not, with its own messages.
    assert!(parse_platform("linux/a.b").is_ok());
    assert!("linux/a.b".parse::<chasi_oci::Platform>().is_err());
    assert_eq!(
        parse_platform("linux/arm64/V8"),
        Err("`linux/arm64/V8` has an invalid variant".to_string())
    );
    assert_eq!(
        parse_platform("linux"),
        Err(
            "`linux` is not a platform of the form os/arch[/variant] (e.g. linux/arm64)"
                .to_string()
        )
    );
    let (_, compiled) = compile_with("FROM scratch\nENV A=1\n", None, &[], vec![arm]);
    let plan = compiled.plan.expect("plan");
    let json = serde_json::to_value(&plan).expect("plan json");
    assert_eq!(
        json["targets"][0]["platform"],
        serde_json::json!({"os": "linux", "arch": "arm64", "variant": "v8"})
    );
    let id: chasi_oci::Digest = plan.targets[0].nodes[0].id;
    assert_eq!(json["targets"][0]["nodes"][0]["id"], id.to_string());
}

/// KF106's help for `CMD`/`CMDS` shows whole commands per item (as KF229 says), elsewhere
/// words; `FROM name:${UNSET}` is an error naming the expanded reference, and KF224's help in
/// `FROM` says where the `ARG` must be declared.
#[test]
fn from_references_are_checked_after_expansion_and_helps_fit_the_instruction() {
    let help_of = |text: &str, code: &str| -> Vec<(String, String)> {
        let (_, compiled) = compile_text(text, None, &[]);
        compiled
            .diagnostics
            .iter()
            .filter(|d| d.code.as_str() == code)
            .map(|d| (d.message.clone(), d.help.clone().unwrap_or_default()))
            .collect()
    };
    let cmds = help_of("FROM scratch\nCMDS [kubectl apply -f a.yaml]\n", "KF106");
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert!(
        cmds[0].1.contains("one whole command per item")
            && cmds[0]
                .1
                .contains(r#"CMDS ["kubectl apply -f app.yaml", "helm install app ./chart"]"#),
        "{cmds:?}"
    );
    let cmd = help_of("FROM scratch\ncmd [ls -l]\n", "KF106");
    assert!(cmd[0].1.contains("`CMD [\"kubectl apply"), "{cmd:?}");
    let run = help_of("FROM scratch\nRUN [ls -l]\n", "KF106");
    assert!(
        run[0]
            .1
            .contains(r#"["kubectl", "apply", "-f", "app.yaml"]"#),
        "{run:?}"
    );

    let text = "FROM registry.local/app:${UNSET}\n";
    let (source, compiled) = compile_text(text, None, &[]);
    assert!(
        compiled.plan.is_none(),
        "an invalid reference is not planned"
    );
    let why = describe(&source, &compiled);
    let from = compiled
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == "KF232")
        .unwrap_or_else(|| panic!("no KF232:\n{why}"));
    assert_eq!(from.severity, chasi_compiler::diagnostics::Severity::Error);
    assert_eq!(
        from.message,
        "the image `registry.local/app:` (from `registry.local/app:${UNSET}`) is not a valid reference: the tag after `:` is empty"
    );
    let undefined = help_of(text, "KF224");
    assert!(
        undefined[0]
            .1
            .contains("declare `ARG UNSET` before the first `FROM`"),
        "{undefined:?}"
    );
    // In a stage the usual help stays.
    let in_stage = help_of("FROM scratch\nLABEL a=${NOPE}\n", "KF224");
    assert!(
        in_stage[0].1.starts_with("declare it with `ARG NOPE`"),
        "{in_stage:?}"
    );
    // Valid references, with digests and registries, are not flagged.
    for ok in [
        "FROM busybox\n",
        "ARG V=1.36\nFROM docker.io/library/busybox:${V}\n",
        "FROM ghcr.io/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
    ] {
        assert!(help_of(ok, "KF232").is_empty(), "{ok}");
    }
}
