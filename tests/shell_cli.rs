//! `chasi completions` and `chasi man`: scripts the shells accept and man pages groff renders, for every
//! subcommand the parser has.

mod common;

use common::{need, sh};
use std::fs;
use std::process::Command;

fn chasi_out(args: &[&str]) -> String {
    let out = common::chasi().args(args).output().expect("run chasi");
    assert!(
        out.status.success(),
        "chasi {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn completion_scripts_parse_in_their_shell_and_know_the_subcommands() {
    let t = tempfile::tempdir().unwrap();
    let bash = chasi_out(&["completions", "bash"]);
    for sub in ["build", "delta", "export", "load", "node", "store"] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    let f = t.path().join("chasi.bash");
    fs::write(&f, &bash).unwrap();
    sh(Command::new("bash").arg("-n").arg(&f));
    // The script registers itself when sourced.
    let out = sh(Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p chasi", f.display())));
    assert!(out.contains("chasi"), "{out}");
    assert!(chasi_out(&["completions", "zsh"]).starts_with("#compdef chasi"));
    assert!(chasi_out(&["completions", "fish"]).contains("complete -c chasi"));
    let e = common::chasi()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(e.status.code(), Some(2));
}

#[test]
fn man_pages_exist_for_every_subcommand_and_render() {
    need("groff", "groff-base");
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("man");
    chasi_out(&["man", "-o", dir.to_str().unwrap()]);
    for page in [
        "chasi.1",
        "chasi-build.1",
        "chasi-delta.1",
        "chasi-export.1",
        "chasi-node.1",
    ] {
        let p = dir.join(page);
        assert!(p.is_file(), "{page} missing");
        let text = sh(Command::new("groff")
            .args(["-man", "-Tutf8", "-ww"])
            .arg(&p));
        assert!(text.contains("chasi"), "{page} renders empty");
    }
    let top = chasi_out(&["man"]);
    assert!(
        top.starts_with(".ie") || top.contains(".TH chasi"),
        "{}",
        &top[..top.len().min(200)]
    );
}

/// `chasi … | head` closes the pipe early: chasi then ends quietly with SIGPIPE's status (141), as Unix
/// tools do, never with a panic. The pipe's read end is closed before chasi writes, so every run hits it.
#[test]
fn a_closed_stdout_pipe_ends_quietly_without_a_panic() {
    let t = tempfile::tempdir().unwrap();
    let ctx = t.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Kubefile"),
        "FROM scratch\nCOPY a /a\nCMDS [\"true\"]\n",
    )
    .unwrap();
    fs::write(ctx.join("a"), "a\n").unwrap();
    let store = t.path().join("store");
    common::ok(&store, &["build", "-t", "x:1", ctx.to_str().unwrap()]);
    let ctx_s = ctx.to_str().unwrap();
    let store_s = store.to_str().unwrap();
    for args in [
        vec!["completions", "bash"],
        vec!["man"],
        vec!["check", ctx_s, "--format", "json"],
        vec!["plan", ctx_s, "--format", "json"],
        vec!["--store", store_s, "images", "--format", "json"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = common::chasi()
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "chasi {args:?}: {err}");
        assert_eq!(out.status.code(), Some(141), "chasi {args:?}: {err}");
    }
}
