//! How failures reach the user: JSON that stays JSON (`--format json` on stdout,
//! `--progress json` on stderr), and messages that say each cause once, in bounded length.

mod common;

use common::*;
use serde_json::Value;
use std::fs;
use std::process::Output;

/// Longest error output accepted from a plain failure.
const MAX_MESSAGE: usize = 8 * 1024;

/// Every non-empty line of `bytes` parsed as JSON (panicking on the first that is not).
fn json_lines(bytes: &[u8], what: &str) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what} is not UTF-8: {e}"));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{what} line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The one JSON document on stdout.
fn json_document(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Asserts `value` is `{"error": {"message", "causes", "kind"}}` and returns the error.
fn error_object(value: &Value) -> &Value {
    let err = &value["error"];
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{value}"
    );
    assert!(err["causes"].is_array(), "{value}");
    assert!(err["kind"].as_str().is_some(), "{value}");
    err
}

/// Asserts no `: `-separated segment of `message` appears twice in a row or anywhere, and
/// that the message is bounded.
fn assert_no_repeats(message: &str) {
    assert!(
        message.len() < MAX_MESSAGE,
        "{} bytes: {message}",
        message.len()
    );
    for line in message.lines() {
        let segments: Vec<&str> = line
            .split(": ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        for (i, s) in segments.iter().enumerate() {
            assert!(
                !segments[i + 1..].contains(s),
                "`{s}` is repeated in: {line}"
            );
        }
    }
}

#[test]
fn a_failing_build_with_json_progress_writes_only_json_lines() {
    need("busybox", "busybox-static");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    busybox_context(
        &ctx,
        "FROM scratch\nCOPY rootfs/ /\nRUN printf 'a\\377\\376b\\033[2J\\n'; echo second; exit 1\n",
        &["printf", "echo"],
    );
    let out = run(
        &store,
        &[
            "build",
            "--progress",
            "json",
            "-t",
            "fail:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(json_lines(&out.stdout, "stdout").is_empty());
    let events = json_lines(&out.stderr, "stderr");
    let output: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step_output")
        .filter_map(|e| e["line"].as_str())
        .collect();
    assert_eq!(
        output,
        ["a\\xff\\xfeb\\u{1b}[2J", "second"],
        "RUN output is kept, escaped"
    );
    let last = events.last().expect("events");
    assert_eq!(last["event"], "error", "{last}");
    let err = error_object(last);
    assert_eq!(err["kind"], "run_failed", "{err}");
    let text = err.to_string();
    assert!(
        text.contains("exit code 1") && text.contains("Kubefile:3:1: "),
        "{err}"
    );

    // Compile errors are a diagnostics event and an error event, not code frames.
    write_files(&ctx, &[("Kubefile", "FROM scratch\nCOPY missing /x\n")]);
    let out = run(
        &store,
        &[
            "build",
            "--progress",
            "json",
            "-t",
            "fail:1",
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let events = json_lines(&out.stderr, "stderr");
    assert_eq!(events[0]["event"], "diagnostics", "{events:?}");
    assert_eq!(events[0]["diagnostics"][0]["code"], "KF300");
    assert_eq!(error_object(&events[1])["kind"], "diagnostics");

    // A usage error too.
    let out = run(
        &store,
        &[
            "build",
            "--progress=json",
            "-t",
            "a:b:c",
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let events = json_lines(&out.stderr, "stderr");
    assert_eq!(error_object(&events[0])["kind"], "usage", "{events:?}");
}

#[test]
fn failing_json_commands_print_a_json_error_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_dir = tmp.path().join("file");
    fs::write(&not_a_dir, "x").unwrap();
    let store = not_a_dir.join("store");
    for args in [
        &["images", "--format", "json"][..],
        &["store", "du", "--format", "json"],
        &["check", "--format", "json", "-f", "/nonexistent/Kubefile"],
    ] {
        let out = run(&store, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc = json_document(&out);
        let err = error_object(&doc);
        assert_no_repeats(&err.to_string());
    }
    // `inspect` prints JSON, so its failure is JSON too.
    let good = tmp.path().join("good");
    let ctx = tmp.path().join("ctx-good");
    write_files(
        &ctx,
        &[("Kubefile", "FROM scratch\nCOPY a /a\n"), ("a", "a")],
    );
    common::ok(&good, &["build", "-t", "some:1", ctx.to_str().unwrap()]);
    let out = run(&good, &["inspect", "nope:1"]);
    assert_eq!(out.status.code(), Some(1));
    let doc = json_document(&out);
    assert!(error_object(&doc)["message"]
        .as_str()
        .unwrap()
        .contains("nope:1"));
    // Without --format json the failure is one plain line on stderr.
    let out = run(&store, &["images"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
}

/// A tar whose only member has a 6,000-character GNU long name, full of terminal escapes,
/// that climbs out with `../` (written raw: the tar crate refuses to build such a name).
fn hostile_tar() -> Vec<u8> {
    let name = format!("../{}", "\u{1b}[2J\u{7}evil".repeat(600));
    let mut tar = tar::Builder::new(Vec::new());
    let mut long = tar::Header::new_gnu();
    long.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    long.set_entry_type(tar::EntryType::GNULongName);
    long.set_size(name.len() as u64 + 1);
    long.set_cksum();
    tar.append(&long, format!("{name}\0").as_bytes()).unwrap();
    let mut file = tar::Header::new_gnu();
    file.as_gnu_mut().unwrap().name[..4].copy_from_slice(b"evil");
    file.set_size(1);
    file.set_mode(0o644);
    file.set_cksum();
    tar.append(&file, &b"x"[..]).unwrap();
    tar.into_inner().unwrap()
}

#[test]
fn errors_name_each_cause_once_and_stay_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    // An OS error under a store path: the io error text once, not twice.
    let not_a_dir = tmp.path().join("file");
    fs::write(&not_a_dir, "x").unwrap();
    let err = fails(&not_a_dir.join("store"), &["images"]);
    assert!(err.to_lowercase().contains("not a directory"), "{err}");
    assert_no_repeats(&err);

    // A layer with a hostile member name: the name is quoted as a bounded, escaped excerpt.
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("evil.tar"), hostile_tar()).unwrap();
    write_files(&ctx, &[("Kubefile", "FROM scratch\nADD evil.tar /x/\n")]);
    let err = fails(&store, &["build", "-t", "evil:1", ctx.to_str().unwrap()]);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.contains("evil.tar"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err}");
    assert!(last.len() < 2048, "{} bytes: {last}", last.len());
    assert_no_repeats(last);

    // A garbage tar header: no raw bytes in the message.
    let mut garbage = vec![0xffu8; 1536];
    garbage[257..263].copy_from_slice(b"ustar\0");
    fs::write(ctx.join("garbage.tar"), &garbage).unwrap();
    write_files(&ctx, &[("Kubefile", "FROM scratch\nADD garbage.tar /x/\n")]);
    let out = run(&store, &["build", "-t", "garbage:1", ctx.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains('\u{fffd}'), "{err}");
    assert_no_repeats(err.lines().last().unwrap_or_default());
}

#[test]
fn a_missing_base_image_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(&ctx, &[("Kubefile", "FROM nothere:1\n")]);
    let ctx = ctx.to_str().unwrap();
    let out = run(&store, &["build", "--progress", "json", "-t", "t:1", ctx]);
    assert_eq!(out.status.code(), Some(1));
    let events = json_lines(&out.stderr, "stderr");
    let err = error_object(events.last().expect("events"));
    assert_eq!(err["kind"], "not_found", "{err}");
    assert!(
        err.to_string().contains("`nothere:1` is not in the store"),
        "{err}"
    );
}

#[test]
fn a_chown_to_an_unknown_user_or_group_is_invalid_input_naming_the_step_and_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    write_files(
        &ctx,
        &[
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
            ),
            ("etc/group", "root:x:0:\n"),
            ("a", "payload"),
        ],
    );
    let cases = [
        (
            "COPY --chown=nosuchuser a /a",
            "user `nosuchuser` is not in the image's /etc/passwd",
        ),
        (
            "COPY --chown=app:nogroup a /a",
            "group `nogroup` is not in the image's /etc/group",
        ),
    ];
    for (step, cause) in cases {
        let kubefile = format!("FROM scratch\nCOPY etc/ /etc/\n{step}\n");
        fs::write(ctx.join("Kubefile"), kubefile).unwrap();
        let dir = ctx.to_str().unwrap();
        let out = run(&store, &["build", "--progress", "json", "-t", "t:1", dir]);
        assert_eq!(out.status.code(), Some(1));
        let events = json_lines(&out.stderr, "stderr");
        let err = error_object(events.last().expect("events"));
        assert_eq!(err["kind"], "invalid_input", "{err}");
        assert_eq!(err["message"], "building t:1 failed", "{err}");
        let causes = err["causes"].as_array().unwrap();
        let at = format!("{}:3:1", ctx.join("Kubefile").display());
        assert_eq!(causes[0], format!("{at}: {step}"), "{err}");
        assert_eq!(causes[1], cause, "{err}");
        let plain = run(&store, &["build", "-t", "t:1", dir]);
        let text = String::from_utf8_lossy(&plain.stderr);
        assert_eq!(
            text.lines().last().unwrap_or_default(),
            format!("error: building t:1 failed: {at}: {step}: {cause}")
        );
    }
}
