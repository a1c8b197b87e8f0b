//! Helpers shared by the CLI end-to-end tests: run `chasi`, make contexts, find tools.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `chasi` binary under test.
pub fn chasi() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chasi"))
}

/// Runs `chasi --store STORE ARGS...` and returns its output.
pub fn run(store: &Path, args: &[&str]) -> Output {
    chasi()
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run chasi")
}

/// Like [`run`], asserting success; returns stdout.
pub fn ok(store: &Path, args: &[&str]) -> String {
    let out = run(store, args);
    assert!(
        out.status.success(),
        "chasi {args:?} failed ({:?}):\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Like [`run`], asserting exit code 1 (the input or the operation failed); returns stderr.
pub fn fails(store: &Path, args: &[&str]) -> String {
    let out = run(store, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "chasi {args:?} should fail with exit code 1:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The digest `chasi build` printed (`NAME DIGEST`).
pub fn built_digest(stdout: &str) -> String {
    stdout
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("chasi build prints NAME DIGEST")
        .to_string()
}

/// Writes files (path → content) under `dir`.
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
    }
}

/// The repository's `examples/<name>` directory.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// Asserts an external tool is installed, naming its Debian package otherwise.
pub fn need(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(found, "`{tool}` is needed by this test: install the Debian package `{package}` (./scripts/test does)");
}

/// Runs an external command, asserting success; returns stdout.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `chasi inspect` as JSON.
pub fn inspect(store: &Path, image: &str) -> serde_json::Value {
    serde_json::from_str(&ok(store, &["inspect", image])).expect("inspect prints JSON")
}

/// A build context: `Kubefile` and a `rootfs/` whose `/bin` holds a static busybox (Debian
/// package busybox-static) with the given applets linked, so `COPY rootfs/ /` gives an image
/// with `/bin/sh` and RUN runs inside it.
pub fn busybox_context(dir: &Path, kubefile: &str, applets: &[&str]) {
    need("busybox", "busybox-static");
    write_files(dir, &[("Kubefile", kubefile)]);
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
    for applet in applets.iter().chain(&["sh"]) {
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
}

/// `cargo metadata` of the workspace (offline, from the lock file), with `extra` arguments
/// (`--no-deps` to leave out the dependencies).
pub fn cargo_metadata(extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// A containerd of the test's own (state, content and socket in a temporary directory),
/// killed when dropped, also when the test panics.
pub struct Containerd {
    child: std::process::Child,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Starts it and waits (at most 30 s) for its socket.
    pub fn start() -> Self {
        need("containerd", "containerd");
        let dir = tempfile::Builder::new()
            .prefix("chasi-ctd-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n[grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n[debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n",
                root = dir.path().join("root").display(),
                state = dir.path().join("state").display(),
                sock = socket.display(),
            ),
        )
        .expect("write containerd config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let me = Containerd { child, socket, dir };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !me.socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "containerd did not create {} within 30 s; log:\n{}",
                me.socket.display(),
                me.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        me
    }

    /// `ctr` talking to this containerd, in namespace `test`.
    pub fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.socket).args(["-n", "test"]);
        c
    }

    /// Its socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `ctr` talking to this containerd, in namespace `ns`.
    pub fn ctr_in(&self, ns: &str) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.socket).args(["-n", ns]);
        c
    }

    /// What containerd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
