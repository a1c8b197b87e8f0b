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
