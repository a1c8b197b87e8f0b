//! Running a `RUN` step: the command sees the stage's rootfs, only its changes are kept, and
//! nothing it does reaches the host.
//!
//! Why this shape: the stage rootfs (materialised from its layers) is the read-only lower
//! directory of an overlay mounted in a private mount namespace; the command writes into a
//! fresh upper directory, which afterwards holds *exactly* the changes (new and modified
//! files, `c 0/0` devices for deletions, `trusted.overlay.opaque` for replaced directories).
//! No copy of the rootfs is made before the command and no tree walk compares two copies
//! after it.
//!
//! The command itself runs in a container made by an OCI runtime (`runc`, Debian package
//! `runc`; `CHASI_OCI_RUNTIME` names another runc-compatible binary such as `crun`) from a
//! generated `config.json` ([`config`]): its own namespaces, the container default
//! capabilities, `no_new_privs`, a seccomp allowlist ([`seccomp`]), a private `/dev`, masked
//! and read-only `/proc` paths. Why an OCI runtime rather than our own `fork`/`unshare`/`seccomp`
//! code or youki's `libcontainer` in-process: `runc` is what buildah and containerd run, is
//! packaged by Debian, and keeps every `unsafe` system call out of chasi (which denies
//! `unsafe_code`); `libcontainer` would pull libseccomp bindings, cgroup managers and a
//! `fork` inside our multi-threaded builder. The price is about 70 ms per step.
//!
//! The process tree, and why each link is there:
//! `setpriv --pdeathsig KILL` (the sandbox dies with the builder thread that started it) →
//! `unshare --mount --pid --fork --mount-proc --kill-child` (a private mount namespace that
//! holds the overlay and vanishes with its last process; a pid namespace whose end kills
//! every process of the step) → a short `/bin/sh` script that mounts the overlay `nodev` →
//! `runc run`. As a non-root user `unshare --map-root-user` adds a user namespace that maps
//! the caller to root, and `runc` runs rootless inside it.
//!
//! Two modes, chosen by whether the rootfs has a shell:
//! * **isolated** (`/bin/sh` in the rootfs): the container's root is the rootfs and nothing of
//!   the host is visible but `resolv.conf` and `hosts` (private copies, with the host network);
//! * **host tools** (no shell, the usual `FROM scratch` cluster image, sealer's behaviour): the
//!   same container, root = the rootfs, with the host's tool directories bound read-only into
//!   the gaps of the image ([`mounts`]), so `COPY`-then-`RUN tar -xf x.tgz` Kubefiles work, every
//!   write lands in the layer, and nothing outside it changes.
//!
//! The container's details are in `config.rs` (namespaces: mount, pid, ipc, uts with hostname
//! `chasi`, cgroup, and network with `--network none`; capabilities: the test asserts
//! `CapEff 00000000a80425fb`, so no `SYS_ADMIN`, `SYS_MODULE`, `SYS_RAWIO`, `NET_ADMIN`,
//! `SYS_TIME`; a tmpfs `/dev` with the standard nodes and a device cgroup that denies every
//! other device; masked `/proc` files and read-only `/proc/sys` and `/sys`) and [`seccomp`]
//! (no `mount`, namespaces, modules, `kexec`, `bpf`, keyring, `io_uring`, `userfaultfd`;
//! `clone3` gives `ENOSYS`). Mount points the sandbox needs and the image lacks are created in
//! the upper directory first and removed after the step if unchanged (`mounts.rs`). Work
//! directories are in the store's session `tmp/`, removed by the next run or `store gc` after a
//! kill. Rootless, `runc --rootless` runs without cgroup settings, with `/sys` bound instead of
//! mounted, and the overlay keeps its markers in `user.` xattrs (`userxattr`).
//!
//! A program of another architecture runs only through a binfmt_misc emulator registered with
//! flag F (qemu-user-static); [`binfmt`] refuses a step whose program has none before it starts,
//! naming the packages to install, instead of the bare "exec format error".
//!
//! Limits, as they are: with `--network host` (the default, as in sealer and `buildah build
//! --network host`, so steps can download) a step shares the host's network namespace and can
//! reach services on the host's loopback and abstract unix sockets: build Kubefiles you do not
//! trust with `--network none`. Steps get no CPU, memory or pids limits.
//!
//! History: the first sandbox was `unshare(1)` and a shell script, namespaces but every
//! capability of the host (a step could `mknod` the host's disk and write to it). `crun` starts
//! faster than `runc`, but Debian 12's build refuses hosts with hybrid cgroups. The RUN
//! benchmark (`scripts/bench-run.sh`, figures in `docs/benchmarks.md`) compares a cold build
//! with `buildah build`.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

pub mod binfmt;
mod config;
mod mounts;
pub mod seccomp;

use mounts::{Kind, MountPlan};

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
    /// The OCI runtime named by `CHASI_OCI_RUNTIME` is unusable.
    #[error("OCI runtime {path}: {detail}")]
    Runtime {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The step's OCI runtime configuration could not be made.
    #[error("cannot write the RUN sandbox configuration: {detail}")]
    Config {
        /// Why.
        detail: String,
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
    resolve_in_root(rootfs, Path::new("/bin/sh")).is_some_and(|p| p.is_file())
}

/// `path` (absolute or relative, as seen from the image's `/`) resolved inside `rootfs`:
/// every symbolic link on the way is followed inside it (an absolute target such as
/// `/bin/sh -> /usr/bin/dash` from the rootfs, not the host; `..` never above it). `None` when
/// nothing is there or the links loop.
pub(crate) fn resolve_in_root(rootfs: &Path, path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut done: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(name) = pending.pop() {
        if name == ".." {
            done.pop();
            continue;
        }
        let here = done
            .iter()
            .fold(rootfs.to_path_buf(), |p, n| p.join(n))
            .join(&name);
        let meta = fs::symlink_metadata(&here).ok()?;
        if !meta.file_type().is_symlink() {
            done.push(name);
            continue;
        }
        links += 1;
        if links > 40 {
            return None;
        }
        let target = fs::read_link(&here).ok()?;
        if target.is_absolute() {
            done.clear();
        }
        for c in target.components().rev() {
            match c {
                Component::Normal(n) => pending.push(n.to_os_string()),
                Component::ParentDir => pending.push("..".into()),
                _ => {}
            }
        }
    }
    Some(done.iter().fold(rootfs.to_path_buf(), |p, n| p.join(n)))
}

/// The set-up script, run by the host's `/bin/sh` as pid 1 of the new namespaces.
/// Positional parameters: lower upper work merged runtime state bundle log id, then
/// rootless (`true`/`false`) and the overlay options that depend on it.
const SETUP: &str = r#"set -e
lower=$1 upper=$2 work=$3 merged=$4 runtime=$5 state=$6 bundle=$7 log=$8 id=$9
shift 9
mount -t overlay overlay -o "nodev,lowerdir=$lower,upperdir=$upper,workdir=$work,$2" "$merged"
printf '%s' "$READY" >&2
exec "$runtime" --root "$state" --log "$log" --log-format json --rootless "$1" run --bundle "$bundle" "$id"
"#;

/// Distinguishes concurrent steps of one process (cgroup and container names).
static STEP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The OCI runtime binary: `$CHASI_OCI_RUNTIME`, else `runc` from `PATH`.
fn oci_runtime() -> Result<PathBuf, SandboxError> {
    match std::env::var_os("CHASI_OCI_RUNTIME") {
        Some(path) if !path.is_empty() => {
            let path = PathBuf::from(path);
            if path.is_file() {
                Ok(path)
            } else {
                Err(SandboxError::Runtime {
                    path,
                    detail: "CHASI_OCI_RUNTIME does not name a file".into(),
                })
            }
        }
        _ => find_tool("runc", "runc"),
    }
}

/// Runs one `RUN` step and returns its outcome; the rootfs in `spec.lower` is not modified.
pub fn run(spec: &RunSpec) -> Result<RunOutcome, SandboxError> {
    let setpriv = find_tool("setpriv", "util-linux")?;
    let unshare = find_tool("unshare", "util-linux")?;
    find_tool("mount", "mount")?;
    let runtime = oci_runtime()?;
    let isolated = has_shell(&spec.lower);
    let rootless = !is_root();
    if !rootless {
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| sweep_stale_cgroups(Path::new(CGROUP_ROOT)));
    }

    let scratch = spec.scratch.as_path();
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    let merged = scratch.join("merged");
    let bundle = scratch.join("bundle");
    let state = scratch.join("runtime-state");
    let log = scratch.join("runtime.log");
    for dir in [&upper, &work, &merged, &bundle, &state] {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
    }

    let mut plan = MountPlan::default();
    for point in ["proc", "dev", "sys"] {
        plan.need(&spec.lower, Path::new(point), Kind::Dir);
    }
    if spec.network == Network::Host {
        host_network_files(&mut plan, &spec.lower, &bundle)?;
    }
    let mut argv: Vec<String> = match &spec.command {
        RunCommand::Shell(text) => vec!["/bin/sh".into(), "-c".into(), text.clone()],
        RunCommand::Exec(argv) => argv.clone(),
    };
    if !isolated {
        plan.host_tools(&spec.lower, Path::new("/"));
        if let RunCommand::Shell(_) = spec.command {
            argv[0] = host_shell(&plan)?;
        }
    }
    if argv.is_empty() {
        argv.push("true".into());
    }
    plan.create(&spec.lower, &upper)?;

    let n = STEP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = format!("chasi-{}-{n}", std::process::id());
    let config = config::spec(&config::StepConfig {
        root: &merged,
        argv: &argv,
        env: &spec.env,
        network: spec.network,
        binds: &plan.binds,
        tmpfs: &plan.tmpfs,
        rootless,
        cgroup: &format!("/chasi/{id}"),
    })?;
    let config_path = bundle.join("config.json");
    let json = serde_json::to_vec_pretty(&config).map_err(|e| SandboxError::Config {
        detail: e.to_string(),
    })?;
    fs::write(&config_path, json).map_err(io("write", &config_path))?;

    let mut cmd = Command::new(setpriv);
    cmd.args(["--pdeathsig", "KILL", "--"]).arg(unshare).args([
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
    ]);
    if rootless {
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
    .arg(&runtime)
    .arg(&state)
    .arg(&bundle)
    .arg(&log)
    .arg(&id)
    .arg(if rootless { "true" } else { "false" })
    // Renamed directories are copied up, never redirected, so the upper directory holds whole
    // trees. In a user namespace overlayfs keeps its markers in `user.` xattrs (`userxattr`),
    // where redirects are off already and may not be named.
    .arg(if rootless {
        "userxattr,metacopy=off"
    } else {
        "redirect_dir=off,metacopy=off"
    })
    .env_clear()
    .env("PATH", DEFAULT_PATH)
    .stdin(Stdio::null());
    let ran = run_merged_output(cmd, scratch);
    plan.remove(&upper);
    let (output, status) = ran?;

    let Some(pos) = find_subslice(&output, READY.as_bytes()) else {
        return Err(SandboxError::Setup {
            detail: String::from_utf8_lossy(&output).trim().to_string(),
        });
    };
    let mut rest = output[..pos].to_vec();
    rest.extend_from_slice(&output[pos + READY.len()..]);
    let mut outcome = RunOutcome {
        exit_code: status,
        output: rest,
        upper,
        isolated,
    };
    if let Some(message) = runtime_error(&log) {
        // The runtime could not start the command: a program that does not exist or cannot
        // be executed is the step's failure (as a shell reports it: 127 and 126); anything
        // else is the sandbox's.
        let start = "unable to start container process: exec";
        if !message.contains(start) {
            return Err(SandboxError::Setup { detail: message });
        }
        outcome.exit_code = if message.contains("no such file") || message.contains("not found") {
            127
        } else {
            126
        };
        outcome.output.extend_from_slice(message.as_bytes());
        outcome.output.push(b'\n');
    }
    Ok(outcome)
}

/// Where cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Removes the cgroups of steps whose chasi process is gone (`chasi/chasi-<pid>-<n>` in each
/// hierarchy). `runc run` removes a step's cgroup when the step ends, but a killed build kills
/// `runc` too; the kernel refuses to remove a cgroup that still has processes, so this can only
/// remove empty, orphaned ones.
pub fn sweep_stale_cgroups(root: &Path) {
    let mut parents = vec![root.join("chasi")];
    if let Ok(hierarchies) = fs::read_dir(root) {
        parents.extend(hierarchies.flatten().map(|h| h.path().join("chasi")));
    }
    for parent in parents {
        let Ok(children) = fs::read_dir(&parent) else {
            continue;
        };
        for child in children.flatten() {
            let name = child.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix("chasi-")
                .and_then(|rest| rest.split('-').next())
            else {
                continue;
            };
            let alive = pid.parse::<u32>().is_ok_and(|pid| {
                pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
            });
            if !alive {
                let _ = fs::remove_dir(child.path());
            }
        }
    }
}

/// Private copies of the host's `resolv.conf` and `hosts` (with the step's hostname), bound
/// writable over the image's: a step may edit them, and its edits are dropped with the copies.
fn host_network_files(
    plan: &mut MountPlan,
    lower: &Path,
    bundle: &Path,
) -> Result<(), SandboxError> {
    let resolv = bundle.join("resolv.conf");
    let content = fs::read(Path::new("/etc/resolv.conf")).unwrap_or_default();
    fs::write(&resolv, content).map_err(io("write", &resolv))?;
    let hosts = bundle.join("hosts");
    let mut content = fs::read(Path::new("/etc/hosts"))
        .unwrap_or_else(|_| b"127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_vec());
    if !content.ends_with(b"\n") && !content.is_empty() {
        content.push(b'\n');
    }
    content.extend_from_slice(format!("127.0.1.1\t{}\n", config::HOSTNAME).as_bytes());
    fs::write(&hosts, content).map_err(io("write", &hosts))?;
    plan.bind(lower, &resolv, "etc/resolv.conf", true, true);
    plan.bind(lower, &hosts, "etc/hosts", true, true);
    Ok(())
}

/// The host's shell as the step will see it in host-tools mode (merged-usr hosts have it
/// under `/usr/bin`, others under `/bin`).
fn host_shell(plan: &MountPlan) -> Result<String, SandboxError> {
    let real = fs::canonicalize("/bin/sh").map_err(io("resolve", Path::new("/bin/sh")))?;
    let visible = plan
        .binds
        .iter()
        .any(|b| !b.writable && real.starts_with(&b.source));
    match real.to_str() {
        Some(path) if visible => Ok(path.to_string()),
        _ => Err(SandboxError::Setup {
            detail: format!(
                "the image has no /bin/sh and the host's shell {} is hidden by the image's own files",
                real.display()
            ),
        }),
    }
}

/// The first error the OCI runtime logged (its JSON log has one object per line).
fn runtime_error(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    text.lines().find_map(|line| {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (v.get("level")?.as_str()? == "error").then(|| {
            v.get("msg")
                .and_then(|m| m.as_str())
                .unwrap_or(line)
                .to_string()
        })
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
    let status = cmd.status().map_err(io("run", Path::new("setpriv")))?;
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
