//! `chasi-node` with directory slots under a temporary `--root`: a full image, then a delta from a
//! "USB stick" directory, then a rollback; hooks that fail before and after the switch; `verify`;
//! `--dry-run`; and SIGKILL at random instants of `apply`.

mod common;

use chasi_layers::Store;
use common::*;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chasi-node"))
}

struct Site {
    tmp: tempfile::TempDir,
    build: Store,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let build = Store::open(tmp.path().join("build")).unwrap();
        Site { tmp, build }
    }
    fn dir(&self) -> &Path {
        self.tmp.path()
    }
    fn root(&self) -> PathBuf {
        self.dir().join("node")
    }
    fn run(&self, args: &[&str]) -> Output {
        bin()
            .arg("--root")
            .arg(self.root())
            .args(args)
            .output()
            .unwrap()
    }
    fn json(&self, args: &[&str]) -> (bool, Vec<Value>) {
        let mut a = args.to_vec();
        a.extend(["--format", "json"]);
        let out = self.run(&a);
        let lines = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        (out.status.success(), lines)
    }
    fn status(&self) -> Value {
        let (ok, mut v) = self.json(&["status"]);
        assert!(ok, "{v:?}");
        v.remove(0)
    }
    /// The name of the image in the active slot.
    fn active_image(&self) -> Option<String> {
        let s = self.status();
        let slot = s["active_slot"].as_str()?.to_string();
        s["slots"][slot]["image"]["name"]
            .as_str()
            .map(str::to_string)
    }
    fn verify_clean(&self) -> Value {
        let (ok, mut v) = self.json(&["verify"]);
        assert!(ok, "verify: {v:?}");
        let v = v.remove(0);
        assert_eq!(v["clean"], true, "{v}");
        v
    }
    fn current(&self, rel: &str) -> Option<String> {
        fs::read_to_string(
            self.root()
                .join("var/lib/chasi-node/slots/current")
                .join(rel),
        )
        .ok()
    }
    /// `app:N` from `versions(size)` plus `extra` layers, saved as `app-N.tar`.
    fn archive(&self, n: u32, size: usize, extra: &[Vec<u8>]) -> PathBuf {
        let v = versions(size);
        let mut layers = if n == 1 { v.v1 } else { v.v2 };
        layers.extend_from_slice(extra);
        let name = format!("app:{n}");
        image(&self.build, &name, &host(), &layers);
        save(&self.build, &name, self.dir(), &format!("app-{n}.tar"))
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn phases(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["phase"].as_str().unwrap_or("?"),
                l["status"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

#[test]
fn full_image_then_delta_from_a_stick_then_rollback() {
    let site = Site::new();
    let v1 = site.archive(1, 200_000, &[]);
    site.archive(2, 200_000, &[]);
    let stick = site.dir().join("usb");
    fs::create_dir(&stick).unwrap();
    delta(&site.build, "app:1", "app:2", &stick, "app-1-to-2.tar");
    fs::write(stick.join(".hidden"), b"ignored").unwrap();

    let (ok, lines) = site.json(&["apply", s(&v1)]);
    assert!(ok, "{lines:?}");
    assert_eq!(
        phases(&lines),
        [
            "pre-check ok",
            "stage ok",
            "switch ok",
            "post-verify ok",
            "done ok"
        ]
    );
    assert_eq!(lines[2]["to"], "a");
    assert_eq!(lines[4]["image"]["name"], "app:1");
    let st = site.status();
    assert_eq!(
        (st["active_slot"].as_str(), st["booted_slot"].as_str()),
        (Some("a"), Some("a"))
    );
    assert_eq!(st["pending"], false);
    assert_eq!(st["slots"]["a"]["state"], "good");
    assert!(st["slots"]["a"]["image"]["manifest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert_eq!(st["slots"]["b"]["image"], Value::Null);
    assert_eq!(site.current("etc/app.conf").as_deref(), Some("version=1\n"));
    site.verify_clean();

    let (ok, lines) = site.json(&["apply", s(&stick)]);
    assert!(ok, "{lines:?}");
    assert_eq!(lines[0]["layers_reused"], 1);
    let st = site.status();
    assert_eq!(st["active_slot"], "b");
    assert_eq!(st["slots"]["b"]["image"]["name"], "app:2");
    assert_eq!(site.current("etc/app.conf").as_deref(), Some("version=2\n"));
    assert_eq!(site.current("etc/old.conf"), None);
    assert_eq!(site.current("etc/new.conf").as_deref(), Some("new\n"));
    let v = site.verify_clean();
    assert!(v["checked"].as_u64().unwrap() >= 6, "{v}");
    // The delta's base is no longer the active image: refused, nothing changes.
    let (ok, v) = site.json(&["apply", s(&stick)]);
    assert!(!ok);
    let err = &v.last().unwrap()["error"];
    assert_eq!(err["kind"], "precheck", "{v:?}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("but the active slot b holds app:2"),
        "{err}"
    );
    assert_eq!(site.active_image().as_deref(), Some("app:2"));

    let (ok, v) = site.json(&["rollback"]);
    assert!(ok, "{v:?}");
    assert_eq!(v[0]["active_slot"], "a");
    assert_eq!(site.active_image().as_deref(), Some("app:1"));
    assert_eq!(site.current("etc/app.conf").as_deref(), Some("version=1\n"));
    site.verify_clean();
    let hist = fs::read_to_string(site.root().join("var/lib/chasi-node/history.jsonl")).unwrap();
    let events: Vec<String> = hist
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(events, ["applied", "applied", "failed", "rollback"]);
}

/// Everything under the node's state that an apply may change, with contents.
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("var/lib/chasi-node")];
    while let Some(p) = stack.pop() {
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        if rel.contains("/store/") || rel.ends_with("/tmp") || rel.ends_with("history.jsonl") {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            out.push((rel, Vec::new()));
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
        } else if m.file_type().is_symlink() {
            out.push((
                rel,
                fs::read_link(&p)
                    .unwrap()
                    .display()
                    .to_string()
                    .into_bytes(),
            ));
        } else {
            out.push((rel, fs::read(&p).unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn failing_pre_check_hook_changes_nothing_and_hooks_see_their_environment() {
    let site = Site::new();
    let env_hook = "#!/bin/sh\necho \"$CHASI_PHASE $CHASI_SLOT_DIR $CHASI_IMAGE_DIGEST\" >> \"$CHASI_NODE_ROOT/hook-env\"\n";
    let v1 = site.archive(
        1,
        1000,
        &[hooks(&[
            ("pre-check", "10-env", env_hook),
            ("post-verify", "10-env", env_hook),
        ])],
    );
    let (ok, lines) = site.json(&["apply", s(&v1)]);
    assert!(ok, "{lines:?}");
    let digest = lines[0]["image"]["root"].as_str().unwrap().to_string();
    let env = fs::read_to_string(site.root().join("hook-env")).unwrap();
    let slot_a = site.root().join("var/lib/chasi-node/slots/a");
    assert_eq!(
        env,
        format!(
            "pre-check {0} {digest}\npost-verify {0} {digest}\n",
            slot_a.display()
        )
    );

    let v2 = site.archive(
        2,
        1000,
        &[hooks(&[
            ("pre-check", "10-ok", "#!/bin/sh\nexit 0\n"),
            (
                "pre-check",
                "20-space",
                "#!/bin/sh\necho 'need a bigger disk' >&2\nexit 3\n",
            ),
            (
                "pre-check",
                "30-never",
                "#!/bin/sh\ntouch \"$CHASI_NODE_ROOT/ran-30\"\n",
            ),
        ])],
    );
    let before = snapshot(&site.root());
    let (ok, v) = site.json(&["apply", s(&v2)]);
    assert!(!ok);
    let msg = v.last().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(v.last().unwrap()["error"]["kind"], "precheck");
    assert!(
        msg.contains("pre-check hook 20-space exited with status 3: need a bigger disk"),
        "{msg}"
    );
    assert_eq!(v[0]["phase"], "pre-check");
    assert_eq!(v[0]["status"], "failed");
    assert_eq!(snapshot(&site.root()), before);
    assert!(!site.root().join("ran-30").exists());
    assert_eq!(site.active_image().as_deref(), Some("app:1"));
    site.verify_clean();
    // Human output names the hook on stderr.
    let out = site.run(&["apply", s(&v2)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("20-space"));
}

#[test]
fn failing_or_hanging_post_verify_rolls_back() {
    let site = Site::new();
    let v1 = site.archive(1, 1000, &[]);
    assert!(site.json(&["apply", s(&v1)]).0);
    let v2 = site.archive(
        2,
        1000,
        &[hooks(&[(
            "post-verify",
            "50-health",
            "#!/bin/sh\necho unhealthy\nexit 1\n",
        )])],
    );
    let (ok, v) = site.json(&["apply", s(&v2)]);
    assert!(!ok);
    assert_eq!(
        phases(&v),
        [
            "pre-check ok",
            "stage ok",
            "switch ok",
            "post-verify failed",
            "rollback ok",
            "? ?"
        ]
    );
    let err = &v.last().unwrap()["error"];
    assert_eq!(err["kind"], "rolled_back");
    assert!(
        err.to_string()
            .contains("50-health exited with status 1: unhealthy"),
        "{err}"
    );
    let st = site.status();
    assert_eq!(st["active_slot"], "a");
    assert_eq!(st["slots"]["b"]["state"], "bad");
    assert_eq!(st["last_event"]["event"], "rolled-back");
    assert!(st["last_event"]["reason"]
        .as_str()
        .unwrap()
        .contains("50-health"));
    site.verify_clean();

    // A hook that never ends is killed at its deadline, with what it started.
    image(
        &site.build,
        "app:3",
        &host(),
        &[
            versions(1000).v2[0].clone(),
            hooks(&[(
                "post-verify",
                "60-hang",
                "#!/bin/sh\nsleep 60 &\nsleep 60\n",
            )]),
        ],
    );
    let v3 = save(&site.build, "app:3", site.dir(), "app-3.tar");
    let start = Instant::now();
    let (ok, v) = site.json(&["apply", s(&v3), "--hook-timeout", "1"]);
    assert!(!ok);
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(
        v.last().unwrap()["error"]
            .to_string()
            .contains("timed out after 1 s"),
        "{v:?}"
    );
    assert_eq!(site.active_image().as_deref(), Some("app:1"));
}

#[test]
fn verify_names_changed_missing_and_extra_files() {
    let site = Site::new();
    let v2 = site.archive(2, 5000, &[]);
    assert!(site.json(&["apply", s(&v2)]).0);
    let slot = site.root().join("var/lib/chasi-node/slots/a");
    fs::write(slot.join("etc/app.conf"), b"version=X\n").unwrap();
    fs::remove_file(slot.join("etc/new.conf")).unwrap();
    fs::write(slot.join("etc/intruder"), b"x").unwrap();
    fs::create_dir(slot.join("extra-dir")).unwrap();
    fs::write(slot.join("extra-dir/inside"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", slot.join("bin/sh-link2")).unwrap();
    let (ok, v) = site.json(&["verify"]);
    assert!(!ok);
    let v = &v[0];
    assert_eq!(v["clean"], false);
    assert_eq!(v["changed"][0]["path"], "/etc/app.conf");
    assert_eq!(v["changed"][0]["what"], "content");
    assert_eq!(v["missing"], serde_json::json!(["/etc/new.conf"]));
    assert_eq!(
        v["extra"],
        serde_json::json!(["/bin/sh-link2", "/etc/intruder", "/extra-dir"])
    );
    let out = site.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("changed /etc/app.conf: content") && text.contains("missing /etc/new.conf"),
        "{text}"
    );
}

#[test]
fn dry_run_reports_and_touches_nothing() {
    let site = Site::new();
    let v1 = site.archive(1, 100_000, &[]);
    assert!(site.json(&["apply", s(&v1)]).0);
    let v2 = site.archive(
        2,
        100_000,
        &[hooks(&[("pre-check", "10-ok", "#!/bin/sh\n")])],
    );
    let store_layers = |site: &Site| {
        Store::open(site.root().join("var/lib/chasi-node/store"))
            .unwrap()
            .list_layers()
            .unwrap()
    };
    let layers_before = store_layers(&site);
    let before = snapshot(&site.root());
    let hist = fs::read(site.root().join("var/lib/chasi-node/history.jsonl")).unwrap();
    let (ok, v) = site.json(&["apply", s(&v2), "--dry-run"]);
    assert!(ok, "{v:?}");
    let d = &v[0];
    assert_eq!(
        (d["phase"].as_str(), d["status"].as_str()),
        (Some("dry-run"), Some("ok"))
    );
    assert_eq!(
        (d["layers"].as_u64(), d["layers_reused"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(d["slot"], "b");
    assert_eq!(d["hooks_passed"], serde_json::json!(["10-ok"]));
    assert!(d["space_needed"].as_u64().unwrap() > 100_000);
    assert!(d["space_available"].as_u64().unwrap() > d["space_needed"].as_u64().unwrap());
    assert_eq!(snapshot(&site.root()), before);
    assert_eq!(store_layers(&site), layers_before);
    assert_eq!(
        fs::read(site.root().join("var/lib/chasi-node/history.jsonl")).unwrap(),
        hist
    );
    let out = site.run(&["apply", s(&v2), "--dry-run"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("would apply image app:2") && text.contains("space: needs"),
        "{text}"
    );
}

#[test]
fn bad_sources_are_named() {
    let site = Site::new();
    let (ok, v) = site.json(&["apply", "/nonexistent/stick"]);
    assert!(!ok);
    assert!(v.last().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/stick"));
    let stick = site.dir().join("usb");
    fs::create_dir(&stick).unwrap();
    let (ok, v) = site.json(&["apply", s(&stick)]);
    assert!(!ok);
    assert!(
        v.last().unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("holds no chasi delta"),
        "{v:?}"
    );
    image(&site.build, "x:1", &host(), &versions(10).v1);
    save(&site.build, "x:1", &stick, "one.tar");
    save(&site.build, "x:1", &stick, "two.tar");
    let (ok, v) = site.json(&["apply", s(&stick)]);
    assert!(!ok);
    let m = v.last().unwrap()["error"]["message"].as_str().unwrap();
    assert!(m.contains("one.tar") && m.contains("two.tar"), "{m}");
    fs::write(stick.join("garbage"), b"not an archive").unwrap();
    let (ok, v) = site.json(&["apply", s(&stick.join("garbage"))]);
    assert!(!ok);
    assert_eq!(v.last().unwrap()["error"]["kind"], "invalid_input", "{v:?}");
    assert_eq!(site.status()["active_slot"], Value::Null);
}

/// A tiny LCG: the kill instants, reproducible from the printed seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

#[test]
fn sigkill_at_random_instants_leaves_the_old_or_the_new_version() {
    let site = Site::new();
    // Enough files that staging takes a while: kills land in every phase.
    let names: Vec<String> = (0..200).map(|i| format!("data/f{i:03}")).collect();
    let mut items = vec![Item::Dir("data")];
    for (i, n) in names.iter().enumerate() {
        items.push(Item::File(n, noise(i as u64, 2000)));
    }
    let bulk = tar(&items);
    // A post-verify hook that takes a moment, so kills land between the switch and the confirmation.
    let slow = hooks(&[("post-verify", "10-settle", "#!/bin/sh\nsleep 0.1\n")]);
    let v1 = site.archive(1, 500_000, &[bulk.clone(), slow.clone()]);
    let v2 = site.archive(2, 500_000, &[bulk, slow]);
    assert!(site.json(&["apply", s(&v1)]).0);
    // How long a complete apply takes here, now (both images in the store, as in the loop).
    let mut full = 0;
    for src in [&v2, &v1] {
        let start = Instant::now();
        assert!(site.json(&["apply", s(src)]).0);
        full = full.max(start.elapsed().as_micros() as u64);
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("seed {seed}, one apply takes {full} µs");
    let mut rng = Lcg(seed);
    let (mut old, mut new) = (0, 0);
    let mut hit = std::collections::BTreeMap::new();
    for round in 0..30 {
        let before = site.active_image().unwrap();
        let (src, other) = if before == "app:1" {
            (&v2, "app:2")
        } else {
            (&v1, "app:1")
        };
        let mut child = bin()
            .arg("--root")
            .arg(site.root())
            .args(["apply", s(src), "--format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(rng.next(full * 3 / 2)));
        let _ = child.kill();
        let _ = child.wait();
        let journal = site.root().join("var/lib/chasi-node/journal.json");
        let phase = fs::read(&journal)
            .ok()
            .and_then(|j| serde_json::from_slice::<Value>(&j).ok())
            .map_or("none".to_string(), |j| {
                j["phase"].as_str().unwrap_or("?").to_string()
            });
        *hit.entry(phase).or_insert(0) += 1;
        // `verify` takes the node's lock and first finishes what the kill left (a switch never
        // confirmed goes back); `status` takes no lock and shows the node as it is, so it is
        // asked after the recovery, not before.
        let v = site.verify_clean();
        let after = site
            .active_image()
            .unwrap_or_else(|| panic!("round {round}: no active image: {}", site.status()));
        assert!(after == before || after == other, "round {round}: {after}");
        if after == before {
            old += 1;
        } else {
            new += 1;
        }
        assert_eq!(v["image"]["name"], after.as_str(), "round {round}");
        assert_eq!(site.status()["apply_in_progress"], Value::Null);
    }
    eprintln!(
        "{old} kills left the old version, {new} the new one; journal phase at the kill: {hit:?}"
    );
    assert!(
        old > 0 && new > 0,
        "old {old}, new {new}: the kills missed the apply"
    );
    // An interrupted apply completes when run again.
    let target = if site.active_image().as_deref() == Some("app:1") {
        &v2
    } else {
        &v1
    };
    assert!(site.json(&["apply", s(target)]).0);
    site.verify_clean();
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_cleanly() {
    let site = Site::new();
    let Some(_fs) = Tmpfs::mount(&site.root(), "8m") else {
        eprintln!("skipped: cannot mount a tmpfs (needs root)");
        return;
    };
    let v1 = site.archive(1, 1000, &[]);
    assert!(site.json(&["apply", s(&v1)]).0);
    // Too big for what is free: refused by the pre-check, with both numbers.
    image(
        &site.build,
        "big:1",
        &host(),
        &[tar(&[Item::File("big", noise(7, 12 << 20))])],
    );
    let big = save(&site.build, "big:1", site.dir(), "big.tar");
    let (ok, v) = site.json(&["apply", s(&big)]);
    assert!(!ok);
    let err = &v.last().unwrap()["error"];
    assert_eq!(err["kind"], "no_space", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("bytes are available"),
        "{err}"
    );
    // Space that vanishes after the checks (a pre-check hook fills the disk): the writes fail, the node
    // stays on v1 and recovers.
    let filler =
        "#!/bin/sh\nhead -c 64m /dev/zero > \"$CHASI_NODE_ROOT/filler\" 2>/dev/null\nexit 0\n";
    let v2 = site.archive(2, 1000, &[hooks(&[("pre-check", "99-fill", filler)])]);
    let (ok, v) = site.json(&["apply", s(&v2)]);
    assert!(!ok);
    let err = &v.last().unwrap()["error"];
    assert_eq!(err["kind"], "disk_full", "{err}");
    fs::remove_file(site.root().join("filler")).unwrap();
    assert_eq!(site.active_image().as_deref(), Some("app:1"));
    site.verify_clean();
}

#[test]
fn status_during_an_apply_shows_it_and_recovers_nothing() {
    let site = Site::new();
    let v1 = site.archive(1, 1000, &[]);
    assert!(site.json(&["apply", s(&v1)]).0);
    let gate = site.dir().join("gate");
    let hook = format!(
        "#!/bin/sh\ntouch {0}.started\nwhile [ ! -e {0} ]; do sleep 0.02; done\n",
        gate.display()
    );
    let v2 = site.archive(2, 1000, &[hooks(&[("pre-check", "10-wait", &hook)])]);
    let mut child = bin()
        .arg("--root")
        .arg(site.root())
        .args(["apply", s(&v2), "--format", "json"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let started = PathBuf::from(format!("{}.started", gate.display()));
    let t0 = Instant::now();
    while !started.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the hook never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = site.status();
    assert_eq!(st["apply_in_progress"]["phase"], "pre-check", "{st}");
    assert_eq!(st["apply_in_progress"]["slot"], "b");
    assert_eq!(st["active_slot"], "a");
    // Commands that change the node wait for no one: they say it is busy.
    let (ok, v) = site.json(&["rollback"]);
    assert!(!ok);
    assert_eq!(v.last().unwrap()["error"]["kind"], "busy", "{v:?}");
    fs::write(&gate, b"").unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(site.active_image().as_deref(), Some("app:2"));
    assert_eq!(site.status()["apply_in_progress"], Value::Null);
}
