//! The RUN sandbox against the real kernel: overlay upper dirs hold exactly the changes,
//! failing commands report their exit code and output, isolation is real.

use chasi_builder::sandbox::{self, Network, RunCommand, RunSpec, DEFAULT_PATH};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

fn spec(lower: &Path, scratch: &Path, command: RunCommand) -> RunSpec {
    RunSpec {
        lower: lower.to_path_buf(),
        scratch: scratch.to_path_buf(),
        command,
        env: vec![
            ("PATH".into(), DEFAULT_PATH.into()),
            ("GREETING".into(), "hi there".into()),
        ],
        network: Network::Host,
    }
}

/// A rootfs with a static busybox as `/bin/sh` (package busybox-static).
fn busybox_rootfs(root: &Path) {
    let busybox = Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "/bin/busybox is missing: install the Debian package busybox-static"
    );
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy(busybox, root.join("bin/busybox")).unwrap();
    fs::set_permissions(root.join("bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    for applet in [
        "sh", "echo", "rm", "mkdir", "cat", "hostname", "ls", "ip", "sleep",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
}

fn is_whiteout(path: &Path) -> bool {
    let meta = fs::symlink_metadata(path).unwrap();
    meta.file_type().is_char_device() && meta.rdev() == 0
}

#[test]
fn host_tools_mode_records_only_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    fs::create_dir_all(lower.join("keep")).unwrap();
    fs::write(lower.join("old.txt"), "old").unwrap();
    fs::write(lower.join("keep/same.txt"), "same").unwrap();
    let scratch = tmp.path().join("scratch");
    assert!(!sandbox::has_shell(&lower));

    let cmd = RunCommand::Shell("echo \"$GREETING\" > greeting && rm old.txt && pwd".into());
    let out = sandbox::run(&spec(&lower, &scratch, cmd)).unwrap();
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.output));
    assert!(!out.isolated);
    assert!(String::from_utf8_lossy(&out.output)
        .trim()
        .ends_with("/merged"));
    assert_eq!(
        fs::read_to_string(out.upper.join("greeting")).unwrap(),
        "hi there\n"
    );
    assert!(is_whiteout(&out.upper.join("old.txt")));
    assert!(
        !out.upper.join("keep").exists(),
        "untouched directories are not in the diff"
    );
    // The lower rootfs is untouched.
    assert_eq!(fs::read_to_string(lower.join("old.txt")).unwrap(), "old");
    assert!(!lower.join("greeting").exists());
}

#[test]
fn failing_command_reports_exit_code_and_output() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    fs::create_dir_all(&lower).unwrap();
    let cmd = RunCommand::Shell("echo to-stdout; echo to-stderr >&2; exit 7".into());
    let out = sandbox::run(&spec(&lower, &tmp.path().join("s"), cmd)).unwrap();
    assert_eq!(out.exit_code, 7);
    let text = String::from_utf8_lossy(&out.output);
    assert!(
        text.contains("to-stdout") && text.contains("to-stderr"),
        "{text}"
    );
}

#[test]
fn isolated_mode_runs_inside_the_rootfs() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    busybox_rootfs(&lower);
    fs::create_dir_all(lower.join("data")).unwrap();
    fs::write(lower.join("data/a"), "a").unwrap();
    assert!(sandbox::has_shell(&lower));

    let cmd = RunCommand::Shell(
        "echo pid=$$; ls /; cat /proc/1/cmdline >/dev/null; rm -r /data; mkdir /data; echo new > /data/b; echo \"$GREETING\" > /etc-greeting".into(),
    );
    let out = sandbox::run(&spec(&lower, &tmp.path().join("s"), cmd)).unwrap();
    let text = String::from_utf8_lossy(&out.output).to_string();
    assert_eq!(out.exit_code, 0, "{text}");
    assert!(out.isolated);
    assert!(
        text.contains("pid=1"),
        "the command is pid 1 of its own pid namespace: {text}"
    );
    assert!(!text.contains("usr"), "the host's / is not visible: {text}");
    assert_eq!(
        fs::read_to_string(out.upper.join("etc-greeting")).unwrap(),
        "hi there\n"
    );
    assert_eq!(
        fs::read_to_string(out.upper.join("data/b")).unwrap(),
        "new\n"
    );
    assert!(!out.upper.join("data/a").exists());
    // The mount points made for /proc and /dev are not part of the changes.
    assert!(!out.upper.join("proc").exists());
    assert!(!out.upper.join("dev").exists());
}

#[test]
fn exec_form_and_no_network() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    busybox_rootfs(&lower);
    let mut s = spec(
        &lower,
        &tmp.path().join("s"),
        RunCommand::Exec(vec!["/bin/ip".into(), "-o".into(), "link".into()]),
    );
    s.network = Network::None;
    let out = sandbox::run(&s).unwrap();
    let text = String::from_utf8_lossy(&out.output).to_string();
    assert_eq!(out.exit_code, 0, "{text}");
    let links: Vec<_> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        links.len(),
        1,
        "only loopback in a new network namespace: {text}"
    );
    assert!(links[0].contains("lo"), "{text}");
}

#[test]
fn missing_program_in_exec_form_is_a_failed_run() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    busybox_rootfs(&lower);
    let s = spec(
        &lower,
        &tmp.path().join("s"),
        RunCommand::Exec(vec!["/no/such/program".into()]),
    );
    let out = sandbox::run(&s).unwrap();
    assert_ne!(out.exit_code, 0);
}
