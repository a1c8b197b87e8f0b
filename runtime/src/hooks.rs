//! Running an image's hooks: in name order, each with a deadline, its output kept for the error message.
//!
//! [`ProcessHooks`] writes each hook into the node's scratch directory (mode 0700), runs it in its own
//! process group with stdin closed and stdout and stderr going to a file (never a pipe, so a hook that
//! leaves a child behind cannot block the runtime), and kills the whole group when the deadline passes.
//! Hooks run on the host, not inside the slot: `CHASI_SLOT_DIR` tells them where the slot's tree is.
//! The engine reaches hooks through [`HookRunner`], so tests put a recording fake in its place.

use crate::content::{Hook, HookPhase};
use crate::error::{IoCtx, NodeError, Result};
use chasi_layers::Digest;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest tail of a hook's output quoted in an error.
const OUTPUT_TAIL: u64 = 2048;

/// The environment a hook gets (besides the runtime's own).
#[derive(Debug, Clone)]
pub struct HookEnv {
    /// `CHASI_NODE_ROOT`: the `--root`.
    pub node_root: PathBuf,
    /// `CHASI_SLOT_DIR`: the slot being staged (pre-check) or now active (post-verify).
    pub slot_dir: PathBuf,
    /// `CHASI_IMAGE_DIGEST`: the new image's root digest.
    pub image_digest: Digest,
    /// `CHASI_PHASE`: `pre-check` or `post-verify`.
    pub phase: HookPhase,
}

/// How one hook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    /// Exit status 0.
    Passed,
    /// Anything else, with the tail of its output.
    Failed(String),
}

/// Runs hooks; the OS-touching half of the hook phases.
pub trait HookRunner {
    /// Runs one hook to completion or until `timeout`.
    fn run(&mut self, hook: &Hook, env: &HookEnv, timeout: Duration) -> Result<HookOutcome>;
}

/// Runs `hooks` in order, stopping at the first that does not pass ([`NodeError::Hook`]).
pub fn run_all(
    runner: &mut dyn HookRunner,
    hooks: &[Hook],
    env: &HookEnv,
    timeout: Duration,
) -> Result<Vec<String>> {
    let mut passed = Vec::new();
    for h in hooks {
        match runner.run(h, env, timeout)? {
            HookOutcome::Passed => passed.push(h.name.clone()),
            HookOutcome::Failed(outcome) => {
                return Err(NodeError::Hook {
                    phase: env.phase.name().to_string(),
                    name: h.name.clone(),
                    outcome,
                });
            }
        }
    }
    Ok(passed)
}

/// Hooks as processes, written under `scratch`.
#[derive(Debug)]
pub struct ProcessHooks {
    scratch: PathBuf,
}

impl ProcessHooks {
    /// Hooks written and run under `scratch` (created when needed).
    pub fn new(scratch: &Path) -> ProcessHooks {
        ProcessHooks {
            scratch: scratch.to_path_buf(),
        }
    }
}

impl HookRunner for ProcessHooks {
    fn run(&mut self, hook: &Hook, env: &HookEnv, timeout: Duration) -> Result<HookOutcome> {
        let dir = self.scratch.join(env.phase.name());
        fs::create_dir_all(&dir).ctx("create", &dir)?;
        let exe = dir.join(&hook.name);
        let _ = fs::remove_file(&exe);
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o700)
                .open(&exe)
                .ctx("write hook", &exe)?;
            f.write_all(&hook.data).ctx("write hook", &exe)?;
        }
        let log_path = dir.join(format!(".{}.log", hook.name));
        let log = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&log_path)
            .ctx("create", &log_path)?;
        let err = log.try_clone().ctx("open", &log_path)?;
        let spawned = Command::new(&exe)
            .current_dir(&env.slot_dir)
            .env("CHASI_NODE_ROOT", &env.node_root)
            .env("CHASI_SLOT_DIR", &env.slot_dir)
            .env("CHASI_IMAGE_DIGEST", env.image_digest.to_string())
            .env("CHASI_PHASE", env.phase.name())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_file(&exe);
                let _ = fs::remove_file(&log_path);
                return Ok(HookOutcome::Failed(format!("could not be started: {e}")));
            }
        };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().ctx("wait for hook", &exe)? {
                break Some(s);
            }
            if start.elapsed() >= timeout {
                kill_group(child.id());
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let tail = output_tail(&log_path);
        let _ = fs::remove_file(&exe);
        let _ = fs::remove_file(&log_path);
        let outcome = match status {
            Some(s) if s.success() => HookOutcome::Passed,
            Some(s) => HookOutcome::Failed(match (s.code(), s.signal()) {
                (Some(c), _) => format!("exited with status {c}{tail}"),
                (None, Some(sig)) => format!("was killed by signal {sig}{tail}"),
                _ => format!("failed ({s}){tail}"),
            }),
            None => HookOutcome::Failed(format!(
                "timed out after {} s and was killed{tail}",
                timeout.as_secs_f64()
            )),
        };
        Ok(outcome)
    }
}

fn kill_group(pid: u32) {
    if let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// `: <last lines of output>` or nothing.
fn output_tail(path: &Path) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(OUTPUT_TAIL)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let chars: Vec<char> = text.trim().chars().collect();
    let tail: String = chars[chars.len().saturating_sub(200)..].iter().collect();
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {}", chasi_oci::error::excerpt(&tail))
    }
}
