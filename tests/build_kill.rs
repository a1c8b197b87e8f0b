//! Killed builds: SIGKILL a `chasi build` at instants spread over its RUN step and check that
//! nothing is left behind — no work directory outside the store, no process of the step still
//! running, no mount — and that the store still verifies and the next build succeeds.

mod common;

use common::{busybox_context, need, ok};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// A context whose RUN step (busybox) writes files for a while; `token` marks its processes.
fn context(dir: &Path, token: &str) {
    busybox_context(
        dir,
        &format!(
                "FROM scratch\nCOPY rootfs/ /\nRUN for i in 1 2 3 4 5 6 7 8 9 10; do mkdir -p /out/$i; \
                 for j in 1 2 3 4 5 6 7 8 9 10; do echo $i$j > /out/$i/$j; done; sleep 0.1; done; \
                 echo {token} > /out/token\n"
        ),
        &["mkdir", "echo", "sleep"],
    );
}

fn mounts_mentioning(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

fn processes_with(needle: &str) -> usize {
    let mut n = 0;
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmdline).contains(needle) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn sigkill_during_builds_leaves_nothing_behind() {
    need("busybox", "busybox-static");
    need("runc", "runc");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let ctx = tmp.path().join("ctx");
    let token = format!("chasi-kill-token-{}", std::process::id());
    context(&ctx, &token);
    // Our own temp directory, so that anything a build would leave in it is seen.
    let sys_tmp = tmp.path().join("system-tmp");
    fs::create_dir(&sys_tmp).unwrap();

    // One clean build calibrates the kill instants to this machine's speed.
    let started = Instant::now();
    ok(
        &store,
        &["build", "--no-cache", "-t", "k:0", ctx.to_str().unwrap()],
    );
    let full = started.elapsed();

    let rounds = 8u32;
    for round in 0..rounds {
        let mut child = common::chasi()
            .arg("--store")
            .arg(&store)
            .args(["build", "--no-cache", "-t"])
            .arg(format!("k:{}", round + 1))
            .arg(&ctx)
            .env("TMPDIR", &sys_tmp)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full * (round + 1) / (rounds + 1));
        let _ = child.kill();
        let _ = child.wait();

        // The step dies with the builder: give the kernel a moment to tear the namespaces down.
        let deadline = Instant::now() + Duration::from_secs(5);
        while processes_with(&token) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            processes_with(&token),
            0,
            "round {round}: the RUN step outlived its build"
        );
        assert!(
            mounts_mentioning(&store).is_empty(),
            "round {round}: mounts left: {:?}",
            mounts_mentioning(&store)
        );
        let left: Vec<_> = fs::read_dir(&sys_tmp)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(
            left.is_empty(),
            "round {round}: work files outside the store: {left:?}"
        );
    }

    // The next command cleans the dead sessions; the store verifies; a build completes.
    ok(&store, &["store", "verify"]);
    let sessions: Vec<_> = fs::read_dir(store.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(sessions.len() <= 1, "dead sessions kept: {sessions:?}");
    ok(&store, &["build", "-t", "k:last", ctx.to_str().unwrap()]);
    ok(&store, &["store", "verify"]);
}
