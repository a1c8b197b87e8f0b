//! Crash safety and multi-process safety.
//!
//! The test binary re-executes itself as a writer process (`writer_process`, inert unless `CHASI_CRASH_STORE` is
//! set). The parent SIGKILLs writers at random instants during ingest, then checks that `verify` accepts the store,
//! that leftovers of the dead writer are cleaned, and that everything a writer reported as committed is intact.

mod common;

use chasi_layers::maint::GcOptions;
use chasi_layers::{Digest, Error, Store, TarOptions};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LOG: &str = "committed.log";

/// Helper process body: ingest trees and tag them until killed (or `CHASI_CRASH_COUNT` rounds are done).
#[test]
#[ignore = "helper process for the crash tests; does nothing without CHASI_CRASH_STORE"]
fn writer_process() {
    let Ok(store) = std::env::var("CHASI_CRASH_STORE") else {
        return;
    };
    let work = PathBuf::from(std::env::var("CHASI_CRASH_WORK").unwrap());
    let count: u64 = std::env::var("CHASI_CRASH_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    let s = Store::open_with_layout(&store, common::small_layout()).unwrap();
    let pid = std::process::id() as u64;
    let mut log = fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(work.join(LOG))
        .unwrap();
    for i in 0..count {
        let dir = work.join(format!("tree-{pid}-{i}"));
        let _ = fs::remove_dir_all(&dir);
        // Seeds repeat across rounds and processes so that known and new chunks are both exercised.
        common::make_tree(&dir, (pid + i) % 5, 12 + (i as usize % 4));
        fs::write(dir.join("unique"), format!("{pid}-{i}")).unwrap();
        let l = s.ingest_dir(&dir, &TarOptions::default()).unwrap();
        let z = s.layer_blob(&l.diff_id).unwrap();
        let md = common::put_image(&s, &[(l.diff_id, &z)]);
        let name = format!("img:{pid}-{i}");
        s.set_ref(&name, &md).unwrap();
        s.put_cache(
            &Digest::of(name.as_bytes()),
            &serde_json::json!({ "layer": l.diff_id }),
        )
        .unwrap();
        // Only now is the image committed: record it (the log line is written with one write + fsync).
        // `writeln!` on a file may split the line into several writes, which two writers appending at once
        // interleave: format first, write once.
        let line = format!("{name} {md} {} {}\n", l.diff_id, z.digest);
        log.write_all(line.as_bytes()).unwrap();
        log.sync_all().unwrap();
        let _ = fs::remove_dir_all(&dir);
    }
}

fn spawn_writer(store: &Path, work: &Path, count: Option<u64>) -> Child {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "writer_process",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("CHASI_CRASH_STORE", store)
    .env("CHASI_CRASH_WORK", work)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(n) = count {
        c.env("CHASI_CRASH_COUNT", n.to_string());
    }
    c.spawn().unwrap()
}

/// Checks that every logged (committed) image is complete and byte-exact; returns how many.
fn check_committed(s: &Store, work: &Path) -> usize {
    let log = fs::read_to_string(work.join(LOG)).unwrap_or_default();
    let mut n = 0;
    for line in log.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() != 4 {
            continue; // a line torn by the kill is not a commit record
        }
        let (md, diff, blob): (Digest, Digest, Digest) = (
            f[1].parse().unwrap(),
            f[2].parse().unwrap(),
            f[3].parse().unwrap(),
        );
        assert_eq!(s.get_ref(f[0]).unwrap(), md, "ref {} lost", f[0]);
        assert!(s.get_blob(&md).is_ok());
        let mut tar = Vec::new();
        s.open_layer(&diff).unwrap().read_to_end(&mut tar).unwrap();
        assert_eq!(Digest::of(&tar), diff);
        assert_eq!(Digest::of(&s.get_blob(&blob).unwrap()), blob);
        n += 1;
    }
    n
}

fn rand_ms(state: &mut u64, lo: u64, hi: u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    lo + *state % (hi - lo)
}

#[test]
fn sigkill_at_random_points_never_corrupts_the_store() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let work = t.path().join("work");
    fs::create_dir_all(&work).unwrap();
    drop(Store::open_with_layout(&store, common::small_layout()).unwrap());
    // One complete round first: guarantees committed data exists and calibrates the kill delays to this machine's
    // speed (CI may be loaded), so kills land before, during and after commits.
    let started = Instant::now();
    assert!(spawn_writer(&store, &work, Some(1))
        .wait()
        .unwrap()
        .success());
    let round_ms = (started.elapsed().as_millis() as u64).clamp(100, 5000);
    let mut rng = (std::process::id() as u64) << 20 | 0x2545F491;
    let iterations = 30;
    let mut kills_mid_write = 0;
    for i in 0..iterations {
        let mut child = spawn_writer(&store, &work, None);
        std::thread::sleep(Duration::from_millis(rand_ms(
            &mut rng,
            5,
            round_ms * 3 / 2,
        )));
        if child.try_wait().unwrap().is_none() {
            kills_mid_write += 1;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let s = Store::open(&store).unwrap();
        let rep = s.verify().unwrap();
        assert!(rep.ok(), "iteration {i}: verify failed: {:?}", rep.problems);
        // The dead writer's temp session is gone; only ours is left.
        let tmp: Vec<_> = fs::read_dir(store.join("tmp")).unwrap().flatten().collect();
        assert_eq!(tmp.len(), 2, "iteration {i}: leftover temp files: {tmp:?}");
        if i % 10 == 9 {
            check_committed(&s, &work);
        }
    }
    assert!(
        kills_mid_write > iterations / 2,
        "the writer should usually be killed while working"
    );
    let mut s = Store::open(&store).unwrap();
    let committed = check_committed(&s, &work);
    assert!(
        committed > 0,
        "no image was ever committed; the kill delays are too short"
    );
    s.gc(&GcOptions::default()).unwrap();
    let rep = s.verify().unwrap();
    assert!(rep.ok(), "after gc: {:?}", rep.problems);
    assert_eq!(check_committed(&s, &work), committed);
}

#[test]
fn concurrent_processes_and_gc_are_safe() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let work = t.path().join("work");
    fs::create_dir_all(&work).unwrap();
    drop(Store::open_with_layout(&store, common::small_layout()).unwrap());
    let mut a = spawn_writer(&store, &work, Some(4));
    let mut b = spawn_writer(&store, &work, Some(4));
    // While writers are running, gc refuses to sweep (or waits for them).
    std::thread::sleep(Duration::from_millis(100));
    let mut s = Store::open(&store).unwrap();
    let busy = a.try_wait().unwrap().is_none() || b.try_wait().unwrap().is_none();
    if busy {
        assert!(matches!(
            s.gc(&GcOptions::default()),
            Err(Error::Busy { .. })
        ));
    }
    let started = Instant::now();
    let rep = s
        .gc(&GcOptions {
            wait: Some(Duration::from_secs(120)),
            ..Default::default()
        })
        .unwrap();
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    assert!(started.elapsed() < Duration::from_secs(120));
    let _ = rep;
    let rep = s.verify().unwrap();
    assert!(rep.ok(), "after gc: {:?}", rep.problems);
    assert_eq!(check_committed(&s, &work), 8);
}
