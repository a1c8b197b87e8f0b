//! Running a `RUN` step: the command sees the stage's rootfs, and only its changes are kept.
//!
//! Why this shape: the stage rootfs (materialised from its layers) is mounted read-only as the
//! lower directory of an overlay in a private mount namespace; the command writes into a fresh
//! upper directory, which afterwards holds *exactly* the changes (new and modified files,
//! `c 0/0` devices for deletions, `trusted.overlay.opaque` for replaced directories). No copy
//! of the rootfs is made before the command and no tree walk compares two copies after it.
//!
//! Two modes, chosen by whether the rootfs has a shell:
//! * **isolated** (`/bin/sh` in the rootfs): mount, pid, ipc and uts namespaces (plus a network
//!   namespace with `--network none`), a fresh `/proc`, a private `/dev` with the usual device
//!   nodes, then `chroot` into the merged tree;
//! * **host tools** (no shell, the usual `FROM scratch` cluster image): the same namespaces and
//!   overlay, but the command runs with the host's tools and the merged rootfs as its working
//!   directory — sealer's behaviour, so `COPY`-then-`RUN tar -xf x.tgz` Kubefiles work.
//!
//! Namespaces are entered with util-linux `unshare(1)` and the mounts are made by a short
//! host shell script, so this crate needs no `unsafe` `fork`/`unshare` code; as a non-root user
//! `--map-root-user` gives the needed capabilities inside a user namespace.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The network a `RUN` command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network (sealer's default: builds download things).
    #[default]
    Host,
    /// A new, empty network namespace (loopback only, down).
    None,
}

/// How the command is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunCommand {
    /// Shell form: run by `/bin/sh -c`.
    Shell(String),
    /// Exec form: argv, no shell.
    Exec(Vec<String>),
}

/// Everything needed to run one `RUN` step.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// The stage's rootfs before the step (never modified).
    pub lower: PathBuf,
    /// A scratch directory owned by this run; `upper/` in it receives the changes.
    pub scratch: PathBuf,
    /// The command.
    pub command: RunCommand,
    /// The complete environment of the command (`PATH` included), in order.
    pub env: Vec<(String, String)>,
    /// The network mode.
    pub network: Network,
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct RunOutcome {
    /// The exit code (128 + signal number when killed by a signal).
    pub exit_code: i32,
    /// Standard output and standard error, interleaved as written.
    pub output: Vec<u8>,
    /// The overlay upper directory: the changes made to the rootfs.
    pub upper: PathBuf,
    /// Whether the command ran isolated inside the rootfs (`true`) or with host tools.
    pub isolated: bool,
}

/// Why a command could not be run at all (a command that runs and fails is a [`RunOutcome`]).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A host tool the sandbox needs is missing.
    #[error("`{tool}` is needed to run RUN steps but was not found in PATH (Debian package `{package}`)")]
    MissingTool {
        /// The program name.
        tool: &'static str,
        /// The Debian package providing it.
        package: &'static str,
    },
    /// Filesystem trouble preparing or cleaning the scratch directory.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The namespace or overlay set-up failed before the command started.
    #[error("cannot set up the RUN sandbox (namespaces and overlayfs are required): {detail}")]
    Setup {
        /// What the set-up script printed.
        detail: String,
    },
}

/// Marker the set-up script prints right before it hands over to the user's command, so that
/// set-up failures can be told apart from the command's own failures.
const READY: &str = "\u{1}chasi-sandbox-ready\u{1}";

/// Mount points the isolated mode needs; created in the upper dir when the rootfs lacks them
/// and removed again afterwards, so they never show up in the layer.
const MOUNT_POINTS: &[&str] = &["proc", "dev"];

fn find_tool(tool: &'static str, package: &'static str) -> Result<PathBuf, SandboxError> {
    let path =
        std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/sbin:/usr/bin:/sbin:/bin"));
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
        .ok_or(SandboxError::MissingTool { tool, package })
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError {
    let path = path.to_path_buf();
    move |source| SandboxError::Io {
        action,
        path,
        source,
    }
}

/// Whether the rootfs can run its own shell (decides isolated vs host-tools mode).
pub fn has_shell(rootfs: &Path) -> bool {
    // `symlink_metadata` first: an absolute symlink such as `/bin/sh -> /usr/bin/dash` must be
    // resolved inside the rootfs, not on the host.
    let mut path = rootfs.join("bin/sh");
    for _ in 0..16 {
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let Ok(target) = fs::read_link(&path) else {
                    return false;
                };
                path = if target.is_absolute() {
                    rootfs.join(target.strip_prefix("/").unwrap_or(&target))
                } else {
                    path.parent().map(|p| p.join(&target)).unwrap_or(target)
                };
            }
            Ok(meta) => return meta.is_file(),
            Err(_) => return false,
        }
    }
    false
}

/// The set-up script, run by the host's `/bin/sh` as pid 1 of the new namespaces.
/// Positional parameters: lower upper work merged isolated(0|1) then the command argv.
const SETUP: &str = r#"set -e
lower=$1 upper=$2 work=$3 merged=$4 isolated=$5
shift 5
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$upper,workdir=$work,redirect_dir=off,metacopy=off" "$merged"
if [ "$isolated" = 1 ]; then
  mount -t proc proc "$merged/proc"
  mount -t tmpfs -o mode=0755,nosuid,size=16m chasi-dev "$merged/dev"
  for d in null zero full random urandom tty; do
    if [ -e "/dev/$d" ]; then : > "$merged/dev/$d"; mount --bind "/dev/$d" "$merged/dev/$d"; fi
  done
  ln -s /proc/self/fd "$merged/dev/fd"
  printf '%s' "$READY" >&2
  exec chroot "$merged" "$@"
fi
cd "$merged"
printf '%s' "$READY" >&2
exec "$@"
"#;

/// Runs one `RUN` step and returns its outcome; the rootfs in `spec.lower` is not modified.
pub fn run(spec: &RunSpec) -> Result<RunOutcome, SandboxError> {
    let unshare = find_tool("unshare", "util-linux")?;
    find_tool("mount", "mount")?;
    let isolated = has_shell(&spec.lower);
    if isolated {
        find_tool("chroot", "coreutils")?;
    }
    let upper = spec.scratch.join("upper");
    let work = spec.scratch.join("work");
    let merged = spec.scratch.join("merged");
    for dir in [&upper, &work, &merged] {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    let mut created = Vec::new();
    if isolated {
        for name in MOUNT_POINTS {
            if fs::symlink_metadata(spec.lower.join(name)).is_err() {
                let dir = upper.join(name);
                fs::create_dir(&dir).map_err(io("create", &dir))?;
                created.push(dir);
            }
        }
    }

    let mut argv: Vec<String> = match &spec.command {
        RunCommand::Shell(text) => vec!["/bin/sh".into(), "-c".into(), text.clone()],
        RunCommand::Exec(argv) => argv.clone(),
    };
    if argv.is_empty() {
        argv.push("true".into());
    }
    let mut cmd = Command::new(unshare);
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--ipc",
        "--uts",
        "--kill-child",
    ]);
    if spec.network == Network::None {
        cmd.arg("--net");
    }
    if !is_root() {
        cmd.arg("--map-root-user");
    }
    cmd.args([
        "/bin/sh",
        "-c",
        &SETUP.replace("\"$READY\"", &shell_quote(READY)),
        "chasi-sandbox",
    ])
    .arg(&spec.lower)
    .arg(&upper)
    .arg(&work)
    .arg(&merged)
    .arg(if isolated { "1" } else { "0" })
    .args(&argv)
    .env_clear()
    .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    .stdin(Stdio::null());
    // The set-up script itself needs a PATH to find mount/chroot even if the build env sets none.
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        cmd.env("PATH", DEFAULT_PATH);
    }
    let (output, status) = run_merged_output(cmd, &spec.scratch)?;

    for dir in created {
        // Only an empty mount point we made ourselves is removed; anything the command put
        // there stays part of the layer.
        let _ = fs::remove_dir(&dir);
    }
    let (setup, output) = match find_subslice(&output, READY.as_bytes()) {
        Some(pos) => {
            let mut rest = output[..pos].to_vec();
            rest.extend_from_slice(&output[pos + READY.len()..]);
            (false, rest)
        }
        None => (true, output),
    };
    if setup {
        return Err(SandboxError::Setup {
            detail: String::from_utf8_lossy(&output).trim().to_string(),
        });
    }
    Ok(RunOutcome {
        exit_code: status,
        output,
        upper,
        isolated,
    })
}

/// The `PATH` a build step gets when neither the image nor the Kubefile sets one (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `cmd` with stdout and stderr sent to one file, so the output is interleaved as written
/// and a chatty command can never fill a pipe and stall.
fn run_merged_output(mut cmd: Command, scratch: &Path) -> Result<(Vec<u8>, i32), SandboxError> {
    let log = scratch.join("output.log");
    let file = fs::File::create(&log).map_err(io("create", &log))?;
    let file2 = file.try_clone().map_err(io("open", &log))?;
    cmd.stdout(file).stderr(file2);
    let status = cmd.status().map_err(io("run", Path::new("unshare")))?;
    let mut output = Vec::new();
    fs::File::open(&log)
        .and_then(|mut f| f.read_to_end(&mut output))
        .map_err(io("read", &log))?;
    let _ = fs::remove_file(&log);
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    Ok((output, code))
}

fn find_subslice(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn is_root() -> bool {
    // The effective uid is what matters for mount(2); /proc/self/status has it without libc.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}
