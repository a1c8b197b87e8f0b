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
    assert_eq!(
        String::from_utf8_lossy(&out.output).trim(),
        "/",
        "the command runs at the root of the image"
    );
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

/// The first block device of the host, as `major minor` (from sysfs).
fn host_block_device() -> Option<(String, String)> {
    let mut names: Vec<_> = fs::read_dir("/sys/class/block")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    names.sort();
    names.iter().find_map(|p| {
        let dev = fs::read_to_string(p.join("dev")).ok()?;
        let (maj, min) = dev.trim().split_once(':')?;
        Some((maj.to_string(), min.to_string()))
    })
}

#[test]
fn a_hostile_step_cannot_reach_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    busybox_rootfs(&lower);
    let (major, minor) = host_block_device().unwrap_or(("7".into(), "0".into()));
    let script = format!(
        "grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status; \
         busybox mknod /disk b {major} {minor} && echo mknod=ok; \
         busybox dd if=/disk of=/dev/null bs=512 count=1 2>/dev/null && echo open=LEAK || echo open=refused; \
         busybox mkdir -p /mnt; busybox mount -t tmpfs x /mnt 2>/dev/null && echo mount=LEAK || echo mount=refused; \
         {{ echo chasi > /proc/sys/kernel/hostname; }} 2>/dev/null && echo sysctl=LEAK || echo sysctl=refused; \
         echo kcore=$(busybox cat /proc/kcore 2>/dev/null | busybox head -c 1 | busybox wc -c); \
         echo devs=$(busybox ls /dev); echo host=$(busybox hostname)"
    );
    let out = sandbox::run(&spec(
        &lower,
        &tmp.path().join("s"),
        RunCommand::Shell(script),
    ))
    .unwrap();
    let text = String::from_utf8_lossy(&out.output).to_string();
    assert_eq!(out.exit_code, 0, "{text}");
    assert!(
        text.contains("CapEff:\t00000000a80425fb"),
        "the container default capabilities only: {text}"
    );
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    assert!(text.contains("open=refused"), "{text}");
    assert!(text.contains("mount=refused"), "{text}");
    assert!(text.contains("sysctl=refused"), "{text}");
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_string()
    };
    for d in value("devs=").split_whitespace() {
        assert!(
            [
                "full", "null", "random", "tty", "urandom", "zero", "pts", "shm", "mqueue", "ptmx",
                "fd", "stdin", "stdout", "stderr", "console", "core"
            ]
            .contains(&d),
            "unexpected /dev entry {d}: {text}"
        );
    }
    assert_eq!(value("host="), "chasi", "a fixed hostname: {text}");
    assert_eq!(value("kcore=").trim(), "0", "/proc/kcore is masked: {text}");
    // The node made with mknod is part of the layer like any file; the mount points are not.
    assert!(out.upper.join("disk").exists());
    assert!(!out.upper.join("proc").exists() && !out.upper.join("sys").exists());
}

#[test]
fn host_tools_mode_never_writes_to_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    // A sealer-style image: its own bin/ and etc/ but no shell.
    fs::create_dir_all(lower.join("bin")).unwrap();
    fs::write(lower.join("bin/kubectl"), "#!fake").unwrap();
    fs::create_dir_all(lower.join("etc")).unwrap();
    fs::write(lower.join("etc/kubeadm.yml"), "kind: x").unwrap();
    assert!(!sandbox::has_shell(&lower));
    let canary = format!("chasi-canary-{}", std::process::id());
    let script = format!(
        "echo x > /tmp/{canary} && echo tmp=ok; \
         echo y >> /etc/{canary} && echo etc=ok; \
         touch /usr/{canary} 2>/dev/null && echo usr=LEAK || echo usr=refused; \
         rm -f /etc/passwd 2>/dev/null; ls /bin/kubectl; tar --version | head -n1"
    );
    let out = sandbox::run(&spec(
        &lower,
        &tmp.path().join("s"),
        RunCommand::Shell(script),
    ))
    .unwrap();
    let text = String::from_utf8_lossy(&out.output).to_string();
    assert_eq!(out.exit_code, 0, "{text}");
    assert!(!out.isolated);
    assert!(text.contains("tmp=ok") && text.contains("etc=ok"), "{text}");
    assert!(text.contains("usr=refused"), "{text}");
    assert!(
        text.contains("/bin/kubectl"),
        "the image's own /bin stays visible: {text}"
    );
    assert!(text.contains("tar"), "the host's tools run: {text}");
    assert!(
        !out.upper.join("tmp").exists(),
        "an image without /tmp gets a private, discarded one"
    );
    for host_path in [
        format!("/tmp/{canary}"),
        format!("/etc/{canary}"),
        format!("/usr/{canary}"),
    ] {
        assert!(
            !Path::new(&host_path).exists(),
            "{host_path} written on the host"
        );
    }
    assert!(Path::new("/etc/passwd").exists());
    assert_eq!(
        fs::read_to_string(out.upper.join(format!("etc/{canary}"))).unwrap(),
        "y\n"
    );
    // Nothing of the host's tools or the mount points is in the changes.
    let mut top: Vec<_> = fs::read_dir(&out.upper)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["etc"], "changes: {top:?}");
    let mut etc: Vec<_> = fs::read_dir(out.upper.join("etc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    etc.sort();
    assert_eq!(
        etc,
        [canary.as_str()],
        "only the step's own file in /etc: {etc:?}"
    );
}

#[test]
fn killing_the_builder_kills_the_step() {
    // The sandbox dies with the thread that started it: a step that would outlive it is gone.
    let tmp = tempfile::tempdir().unwrap();
    let lower = tmp.path().join("lower");
    busybox_rootfs(&lower);
    let marker = tmp.path().join("s/upper/still-running");
    let s = spec(
        &lower,
        &tmp.path().join("s"),
        RunCommand::Shell("sleep 3; echo > /still-running".into()),
    );
    let handle = std::thread::spawn(move || {
        let _ = sandbox::run(&s);
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Kill the sandbox's setpriv/unshare process the way the death of chasi would: this test's
    // own (its command line names the test's root), not one of a test running beside it.
    let me = std::process::id().to_string();
    let ps = std::process::Command::new("pgrep")
        .args(["-P", &me, "-f"])
        .arg(format!("^[^ ]*unshare .*{}", lower.display()))
        .output()
        .unwrap();
    let pid = String::from_utf8_lossy(&ps.stdout).trim().to_string();
    assert!(
        !pid.is_empty() && !pid.contains('\n'),
        "not one sandbox process found: {pid:?}"
    );
    std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .unwrap();
    handle.join().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert!(
        !marker.exists(),
        "the step kept running after its sandbox died"
    );
}

#[test]
fn cgroups_left_by_killed_builds_are_swept() {
    // A killed build kills runc before it can remove the step's cgroup: the next build removes
    // the empty cgroups of chasi processes that are gone, and never one of a live process.
    let root = Path::new("/sys/fs/cgroup");
    let hierarchy = ["pids", "unified", ""]
        .iter()
        .map(|h| root.join(h).join("chasi"))
        .find(|p| fs::create_dir_all(p).is_ok());
    let Some(parent) = hierarchy else {
        eprintln!("skipped: no writable cgroup hierarchy here");
        return;
    };
    let dead = parent.join("chasi-4294967290-0");
    let live = parent.join(format!("chasi-{}-999", std::process::id()));
    for d in [&dead, &live] {
        let _ = fs::create_dir(d);
    }
    if !dead.is_dir() {
        eprintln!("skipped: cannot create cgroups here");
        return;
    }
    sandbox::sweep_stale_cgroups(root);
    assert!(!dead.exists(), "the cgroup of a dead process is removed");
    assert!(live.exists(), "the cgroup of a live process stays");
    let _ = fs::remove_dir(&live);
}
