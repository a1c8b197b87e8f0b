//! `chasi check` and `chasi plan` as a user runs them: exit codes, the JSON diagnostics
//! shape, where output goes, and `--help`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const CHASI: &str = env!("CARGO_BIN_EXE_chasi");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

fn chasi(args: &[&str]) -> Output {
    Command::new(CHASI)
        .args(args)
        .env_remove("CHASI_STORE")
        .output()
        .expect("run chasi")
}

fn chasi_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(CHASI)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chasi");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    child.wait_with_output().expect("wait")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn kubefile(dir: &Path, content: &str) -> String {
    let path = dir.join("Kubefile");
    std::fs::write(&path, content).expect("write Kubefile");
    path.display().to_string()
}

#[test]
fn check_exits_0_on_a_clean_context_and_1_on_errors() {
    let ok = chasi(&["check", &format!("{EXAMPLES}/cluster-base")]);
    assert_eq!(code(&ok), 0, "{}{}", text(&ok.stdout), text(&ok.stderr));
    assert!(text(&ok.stdout).contains("0 errors, 0 warnings"));

    let dir = tempfile::tempdir().expect("tempdir");
    let file = kubefile(dir.path(), "FROM scratch\nCOPY missing.txt d/\nCMD echo\n");
    let bad = chasi(&["check", "-f", &file, &dir.path().display().to_string()]);
    assert_eq!(code(&bad), 1);
    let out = text(&bad.stdout);
    assert!(
        out.contains("error[KF300]") && out.contains("warning[KF210]"),
        "{out}"
    );
    assert!(out.contains("1 error, 1 warning"), "{out}");
}

#[test]
fn warnings_alone_exit_0() {
    let out = chasi_stdin(&["check", "-f", "-"], "FROM scratch\nCMD echo hi\n");
    assert_eq!(code(&out), 0, "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("KF210"));
}

#[test]
fn check_json_has_the_documented_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = kubefile(
        dir.path(),
        "FROM scratch\nAPP es https://charts/ elasticsearch.tgz\n",
    );
    let out = chasi(&["check", "--format", "json", "-f", &file]);
    assert_eq!(code(&out), 1);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let top: Vec<&String> = json.as_object().expect("object").keys().collect();
    assert_eq!(top, vec!["diagnostics"]);
    let diagnostics = json["diagnostics"].as_array().expect("array");
    assert_eq!(diagnostics.len(), 1, "{json}");
    let d = diagnostics[0].as_object().expect("object");
    let mut keys: Vec<&str> = d.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "code",
            "column",
            "end_column",
            "end_line",
            "file",
            "help",
            "line",
            "message",
            "severity"
        ]
    );
    assert_eq!(d["severity"], "error");
    assert_eq!(d["code"], "KF214");
    assert_eq!(d["file"], file.as_str());
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(2), Some(24))
    );
    assert_eq!(
        (d["end_line"].as_u64(), d["end_column"].as_u64()),
        (Some(2), Some(41))
    );
    assert!(d["help"].as_str().expect("help").contains("local://"));
    assert!(d["message"]
        .as_str()
        .expect("message")
        .contains("elasticsearch.tgz"));

    let clean = chasi_stdin(&["check", "--format", "json", "-f", "-"], "FROM scratch\n");
    assert_eq!(code(&clean), 0);
    let json: serde_json::Value = serde_json::from_slice(&clean.stdout).expect("JSON");
    assert_eq!(json, serde_json::json!({"diagnostics": []}));
}

#[test]
fn a_missing_kubefile_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = chasi(&["check", &dir.path().display().to_string()]);
    assert_eq!(code(&out), 1);
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot read the Kubefile") && err.contains("Kubefile"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["check", "--format", "yaml"],
        vec!["check", "--platform", "amd64"],
        vec!["check", "--build-arg", "1x=y"],
        vec!["plan", "--format", "svg"],
        vec!["check", "--no-such-flag"],
    ] {
        let out = chasi(&args);
        assert_eq!(code(&out), 2, "{args:?}: {}", text(&out.stderr));
    }
}

#[test]
fn build_args_and_platforms_reach_the_plan() {
    let input = "FROM scratch\nARG V=1\nLABEL v=${V} arch=${TARGETARCH}\n";
    let out = chasi_stdin(
        &[
            "plan",
            "-f",
            "-",
            "--build-arg",
            "V=7",
            "--platform",
            "linux/arm64,linux/amd64",
        ],
        input,
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let plan = text(&out.stdout);
    let arm = plan.find("platform linux/arm64").expect("arm64 first");
    let amd = plan.find("platform linux/amd64").expect("amd64");
    assert!(arm < amd, "{plan}");
    assert!(
        plan.contains("LABEL v=7 arch=arm64") && plan.contains("LABEL v=7 arch=amd64"),
        "{plan}"
    );

    let out = Command::new(CHASI)
        .args(["plan", "-f", "-", "--build-arg", "V", "--format", "json"])
        .env("V", "from-env")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(input.as_bytes())?;
            c.wait_with_output()
        })
        .expect("run");
    assert_eq!(code(&out), 0);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let nodes = json["targets"][0]["nodes"].as_array().expect("nodes");
    assert!(
        nodes.iter().any(|n| n["label"]
            .as_str()
            .is_some_and(|l| l.starts_with("LABEL v=from-env "))),
        "{json}"
    );
}

#[test]
fn plan_prints_diagnostics_to_stderr_and_fails_on_errors() {
    let out = chasi_stdin(&["plan", "-f", "-"], "FROM scratch\nCOPY onlyone\n");
    assert_eq!(code(&out), 1);
    assert!(out.stdout.is_empty(), "no plan on errors");
    assert!(text(&out.stderr).contains("KF205"));

    let out = chasi_stdin(
        &["plan", "-f", "-", "--format", "dot"],
        "FROM scratch\nCMD echo\n",
    );
    assert_eq!(code(&out), 0);
    assert!(text(&out.stdout).starts_with("digraph plan {"));
    assert!(text(&out.stderr).contains("KF210"), "warnings on stderr");
}

#[test]
fn help_describes_every_option() {
    for cmd in ["check", "plan"] {
        let out = chasi(&[cmd, "--help"]);
        assert_eq!(code(&out), 0);
        let help = text(&out.stdout);
        for needle in [
            "[CONTEXT]",
            "--file",
            "--format",
            "--build-arg",
            "--platform",
            "Build context directory",
        ] {
            assert!(
                help.contains(needle),
                "`chasi {cmd} --help` lacks {needle}:\n{help}"
            );
        }
    }
    let top = text(&chasi(&["--help"]).stdout);
    assert!(top.contains("check") && top.contains("plan"), "{top}");
}

#[test]
fn a_nul_byte_in_a_copy_source_is_a_diagnostic_not_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a"), "a").expect("write");
    let ctx = dir.path().display().to_string();
    for content in [
        "FROM scratch\nCOPY \"a\0b\" /x\n",
        "FROM scratch\nARG X=\"a\0b\"\nCOPY ${X} /x\n",
    ] {
        kubefile(dir.path(), content);
        let out = chasi(&["check", "--format", "json", &ctx]);
        assert_eq!(code(&out), 1, "{}", text(&out.stderr));
        assert!(out.stderr.is_empty(), "no I/O error: {}", text(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let d = &json["diagnostics"][0];
        assert_eq!(d["code"], "KF238", "{json}");
        let line = content.lines().position(|l| l.contains("COPY")).unwrap() + 1;
        assert_eq!(d["line"].as_u64(), Some(line as u64), "{json}");
        assert!(d["column"].as_u64().is_some(), "{json}");
    }
}
