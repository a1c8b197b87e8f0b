//! Whether this host can execute the program a `RUN` step starts, before the step starts it.
//!
//! A `RUN` of an image built for another architecture (`--platform linux/arm64` on an amd64
//! host) executes that architecture's programs. The kernel runs them only through a
//! binfmt_misc handler (qemu-user-static, Debian packages `qemu-user-static binfmt-support`),
//! and inside the step's container only a handler registered with flag `F` (the kernel opened
//! the interpreter at registration) works: without it the interpreter's host path is looked up
//! in the image. Without a usable handler the step dies with a bare "exec format error"; this
//! module finds that case first and says what is missing.
//!
//! The check reads the program's ELF header (the image's `/bin/sh` for the shell form, the
//! exec form's program by `PATH`; a `#!` script's interpreter), so a mislabelled binary of the
//! host's own architecture still runs, and programs of the host's architecture never look at
//! binfmt_misc. Handlers are read from `/proc/sys/fs/binfmt_misc`, or from the directory
//! `CHASI_BINFMT_MISC` names (tests use it to be independent of the host's registrations).

use super::{resolve_in_root, RunCommand};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where the kernel's binfmt_misc file system is mounted.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// The environment variable naming another directory of binfmt_misc entries.
pub const BINFMT_MISC_ENV: &str = "CHASI_BINFMT_MISC";

/// The Debian packages that register emulators for foreign architectures.
pub const EMULATOR_PACKAGES: &str = "qemu-user-static binfmt-support";

/// Why a step's program cannot run on this host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForeignError {
    /// No enabled handler for the program's architecture.
    #[error("{program} in the image is a program for {arch} (the step is built for {platform}) and this {host} host has no emulator for {arch} registered in binfmt_misc ({dir}{state}): install the Debian packages `{EMULATOR_PACKAGES}`, which register qemu with flag F, or build on a machine of that architecture")]
    NoEmulator {
        /// The program's path in the image.
        program: String,
        /// Its architecture, as platforms name it (`arm64`).
        arch: String,
        /// The platform the step is built for.
        platform: String,
        /// The host's platform.
        host: String,
        /// The binfmt_misc directory read.
        dir: PathBuf,
        /// Why nothing there applies (`: not mounted`, `: disabled`, or empty).
        state: String,
    },
    /// A handler exists but without flag `F`, and its interpreter is not in the image.
    #[error("{program} in the image is a program for {arch}, and the binfmt_misc handler `{handler}` ({dir}) that runs it is registered without flag F, so its interpreter {interpreter} cannot be opened inside the step: register it with flag F (Debian's `{EMULATOR_PACKAGES}` do)")]
    NotFixed {
        /// The program's path in the image.
        program: String,
        /// Its architecture.
        arch: String,
        /// The handler's name.
        handler: String,
        /// The handler's interpreter.
        interpreter: String,
        /// The binfmt_misc directory read.
        dir: PathBuf,
    },
}

/// The identifying part of an ELF header: class, byte order and machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Elf {
    bits64: bool,
    little: bool,
    machine: u16,
}

/// How many header bytes a handler's magic may look at.
const HEADER: usize = 128;

fn parse_elf(header: &[u8]) -> Option<Elf> {
    if header.len() < 20 || &header[..4] != b"\x7fELF" {
        return None;
    }
    let bits64 = match header[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = match header[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let m = [header[18], header[19]];
    let machine = if little {
        u16::from_le_bytes(m)
    } else {
        u16::from_be_bytes(m)
    };
    Some(Elf {
        bits64,
        little,
        machine,
    })
}

impl Elf {
    /// The architecture as OCI platforms name it.
    fn arch(self) -> String {
        let name = match (self.machine, self.bits64, self.little) {
            (3, false, _) => "386",
            (62, true, _) => "amd64",
            (40, false, true) => "arm",
            (183, true, true) => "arm64",
            (21, true, true) => "ppc64le",
            (21, true, false) => "ppc64",
            (22, true, false) => "s390x",
            (243, true, _) => "riscv64",
            (8, true, true) => "mips64le",
            (8, true, false) => "mips64",
            (8, false, true) => "mipsle",
            (8, false, false) => "mips",
            (258, true, _) => "loong64",
            (m, _, _) => return format!("ELF machine {m}"),
        };
        name.to_string()
    }

    /// Whether a host whose own programs are `host` runs this natively (the same machine,
    /// or a 32-bit program of a 64-bit host that may run it: i386 on amd64, arm on arm64).
    fn native_on(self, host: Elf) -> bool {
        self == host
            || (host.machine == 62 && self.machine == 3)
            || (host.machine == 183 && self.machine == 40)
    }
}

/// The first bytes of a file (fewer when it is shorter); `None` when it cannot be read.
fn header_of(path: &Path) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(HEADER);
    fs::File::open(path)
        .ok()?
        .take(HEADER as u64)
        .read_to_end(&mut buf)
        .ok()?;
    Some(buf)
}

/// The file the kernel executes for `program` (a path in the image): the program, or the
/// interpreter of a `#!` script. With its path in the image and its header.
fn executed(root: &Path, program: &str) -> Option<(String, Vec<u8>)> {
    let header = header_of(&resolve_in_root(root, Path::new(program))?)?;
    if !header.starts_with(b"#!") {
        return Some((program.to_string(), header));
    }
    let line = header[2..].split(|&b| b == b'\n').next()?;
    let interpreter = std::str::from_utf8(line).ok()?.split_whitespace().next()?;
    let header = header_of(&resolve_in_root(root, Path::new(interpreter))?)?;
    Some((interpreter.to_string(), header))
}

/// The image path of the program a command starts: `/bin/sh`, or the exec form's program
/// (found through `PATH` when it has no `/`, as runc finds it).
fn program_of(root: &Path, command: &RunCommand, env: &[(String, String)]) -> Option<String> {
    let name = match command {
        RunCommand::Shell(_) => return Some("/bin/sh".into()),
        RunCommand::Exec(argv) => argv.first()?,
    };
    if name.contains('/') {
        return Some(if name.starts_with('/') {
            name.clone()
        } else {
            format!("/{name}")
        });
    }
    let path = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(super::DEFAULT_PATH);
    path.split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| format!("{}/{name}", dir.trim_end_matches('/')))
        .find(|candidate| resolve_in_root(root, Path::new(candidate)).is_some_and(|p| p.is_file()))
}

/// One binfmt_misc entry (`magic` type; `extension` entries never match a program).
#[derive(Debug)]
struct Entry {
    name: String,
    enabled: bool,
    fix_binary: bool,
    interpreter: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn parse_entry(name: &str, text: &str) -> Option<Entry> {
    let mut entry = Entry {
        name: name.to_string(),
        enabled: text.lines().next() == Some("enabled"),
        fix_binary: false,
        interpreter: String::new(),
        offset: 0,
        magic: Vec::new(),
        mask: Vec::new(),
    };
    for line in text.lines() {
        let (key, value) = line.split_once([' ', ':']).unwrap_or((line, ""));
        let value = value.trim_start_matches(':').trim();
        match key {
            "interpreter" => entry.interpreter = value.to_string(),
            "flags" => entry.fix_binary = value.contains('F'),
            "offset" => entry.offset = value.parse().ok()?,
            "magic" => entry.magic = hex(value)?,
            "mask" => entry.mask = hex(value)?,
            _ => {}
        }
    }
    (!entry.magic.is_empty()).then_some(entry)
}

impl Entry {
    fn matches(&self, header: &[u8]) -> bool {
        self.magic.iter().enumerate().all(|(i, &m)| {
            let mask = self.mask.get(i).copied().unwrap_or(0xff);
            header
                .get(self.offset + i)
                .is_some_and(|&b| b & mask == m & mask)
        })
    }
}

/// The binfmt_misc directory this process reads.
pub fn binfmt_dir() -> PathBuf {
    std::env::var_os(BINFMT_MISC_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BINFMT_MISC))
}

/// The ELF identity of this host's own programs (this very executable).
fn host_elf() -> Option<Elf> {
    parse_elf(&header_of(Path::new("/proc/self/exe"))?)
}

/// Checks that the program `command` starts in the image at `root` can run here, for a step
/// of `platform`; `dir` holds the binfmt_misc entries. Anything it cannot tell (no such
/// program, not ELF, an unknown host) passes: the step's own error then says what happened.
pub fn check(
    root: &Path,
    command: &RunCommand,
    env: &[(String, String)],
    platform: &str,
    dir: &Path,
) -> Result<(), Box<ForeignError>> {
    let Some(host) = host_elf() else {
        return Ok(());
    };
    let Some((program, header)) = program_of(root, command, env).and_then(|p| executed(root, &p))
    else {
        return Ok(());
    };
    let Some(elf) = parse_elf(&header) else {
        return Ok(());
    };
    if elf.native_on(host) {
        return Ok(());
    }
    let status = fs::read_to_string(dir.join("status")).ok();
    let state = match status.as_deref().map(str::trim) {
        None => ": not mounted".to_string(),
        Some("disabled") => ": disabled".to_string(),
        Some(_) => String::new(),
    };
    let matching: Vec<Entry> = if state.is_empty() {
        entries(dir)
            .into_iter()
            .filter(|e| e.enabled && e.matches(&header))
            .collect()
    } else {
        Vec::new()
    };
    let usable = |e: &Entry| {
        e.fix_binary
            || resolve_in_root(root, Path::new(&e.interpreter)).is_some_and(|p| p.is_file())
    };
    if matching.iter().any(usable) {
        return Ok(());
    }
    Err(Box::new(match matching.into_iter().next() {
        Some(e) => ForeignError::NotFixed {
            program,
            arch: elf.arch(),
            handler: e.name,
            interpreter: e.interpreter,
            dir: dir.to_path_buf(),
        },
        None => ForeignError::NoEmulator {
            program,
            arch: elf.arch(),
            platform: platform.to_string(),
            host: format!("linux/{}", host.arch()),
            dir: dir.to_path_buf(),
            state,
        },
    }))
}

/// What to say when a step of `platform` failed and its `output` shows the kernel refusing a
/// program, for a platform of another architecture than the host's: "exec format error", or
/// a shell's complaint about an ELF file it then tried to read as a script (`sh` and
/// `execvp` do so after `ENOEXEC`). That is a program the check could not see before the step
/// (one the command starts later, with the host's tools). `None` otherwise.
pub fn exec_format_hint(platform: &str, output: &[u8]) -> Option<String> {
    let arch = platform.split('/').nth(1)?;
    let host = chasi_oci::Platform::host();
    let refused = output.windows(4).any(|w| w == b"\x7fELF")
        || String::from_utf8_lossy(output)
            .to_ascii_lowercase()
            .contains("exec format error");
    if arch == host.architecture || !refused {
        return None;
    }
    Some(format!(
        "the kernel refused a program, probably one for {arch} (the step is built for {platform}): this {host} host runs those only through an emulator registered in binfmt_misc with flag F, from the Debian packages `{EMULATOR_PACKAGES}`"
    ))
}

/// The magic entries of a binfmt_misc directory, sorted by name; unreadable ones are skipped.
fn entries(dir: &Path) -> Vec<Entry> {
    let Ok(list) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = list
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "status" && n != "register")
        .collect();
    names.sort();
    names
        .iter()
        .filter_map(|n| parse_entry(n, &fs::read_to_string(dir.join(n)).ok()?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: PF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn elf_header(bits64: bool, little: bool, machine: u16, etype: u16) -> Vec<u8> {
        let mut h = vec![0x7f, b'E', b'L', b'F', if bits64 { 2 } else { 1 }];
        h.push(if little { 1 } else { 2 });
        h.push(1);
        h.resize(16, 0);
        let (t, m) = if little {
            (etype.to_le_bytes(), machine.to_le_bytes())
        } else {
            (etype.to_be_bytes(), machine.to_be_bytes())
        };
        h.extend(t);
        h.extend(m);
        h.resize(64, 0);
        h
    }

    #[test]
    fn exec_format_errors_of_foreign_steps_get_a_hint() {
        let host = chasi_oci::Platform::host().to_string();
        let out = b"sh: /usr/bin/tool: Exec format error\n";
        assert_eq!(
            exec_format_hint(&host, out),
            None,
            "the host's own platform"
        );
        let foreign = if host == "linux/s390x" {
            "linux/amd64"
        } else {
            "linux/s390x"
        };
        let hint = exec_format_hint(foreign, out).unwrap();
        assert!(
            hint.contains(EMULATOR_PACKAGES) && hint.contains(foreign),
            "{hint}"
        );
        assert_eq!(exec_format_hint(foreign, b"no such file\n"), None);
        let dash = b"/usr/local/bin/tool: 1: \x7fELF\x02\x01\x01: not found\n";
        assert!(exec_format_hint(foreign, dash).is_some());
    }

    #[test]
    fn elf_identity_and_names() {
        let arm64 = parse_elf(&elf_header(true, true, 183, 2)).unwrap();
        assert_eq!(arm64.arch(), "arm64");
        let s390x = parse_elf(&elf_header(true, false, 22, 2)).unwrap();
        assert_eq!(s390x.arch(), "s390x");
        assert_eq!(parse_elf(b"#!/bin/sh\n"), None);
        let amd64 = parse_elf(&elf_header(true, true, 62, 2)).unwrap();
        let i386 = parse_elf(&elf_header(false, true, 3, 2)).unwrap();
        assert!(i386.native_on(amd64) && amd64.native_on(amd64));
        assert!(!arm64.native_on(amd64));
    }

    #[test]
    fn qemu_entries_match_their_architecture_only() {
        let e = parse_entry("qemu-aarch64", AARCH64).unwrap();
        assert!(e.enabled && e.fix_binary);
        assert_eq!(e.interpreter, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
        assert!(e.matches(&elf_header(true, true, 183, 2)), "executable");
        assert!(
            e.matches(&elf_header(true, true, 183, 3)),
            "position-independent"
        );
        assert!(!e.matches(&elf_header(true, true, 62, 2)));
        assert!(!e.matches(b"\x7fELF"), "short header");
        let off = parse_entry(
            "x",
            &AARCH64.replace("enabled", "disabled").replace("PF", "P"),
        )
        .unwrap();
        assert!(!off.enabled && !off.fix_binary);
        assert!(parse_entry(
            "jar",
            "enabled\ninterpreter /usr/bin/jexec\nflags: \nextension .jar\n"
        )
        .is_none());
        assert!(parse_entry("bad", "enabled\nmagic 7f4\n").is_none());
    }

    /// A program of a machine no test host is (s390x, big-endian), as the image's `/bin/sh`
    /// through an absolute link, against binfmt_misc directories made here.
    #[test]
    fn check_names_what_is_missing() {
        if host_elf().is_some_and(|h| h.machine == 22) {
            return; // the fixture is native on s390x
        }
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/dash"), elf_header(true, false, 22, 2)).unwrap();
        std::os::unix::fs::symlink("/usr/bin/dash", root.join("bin/sh")).unwrap();
        let shell = RunCommand::Shell("true".into());
        let dir = tmp.path().join("binfmt");
        let run = |dir: &Path| check(&root, &shell, &[], "linux/s390x", dir);

        let err = run(&dir).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("/bin/sh in the image is a program for s390x (the step is built for linux/s390x) and this linux/")
                && text.contains("not mounted")
                && text.contains("`qemu-user-static binfmt-support`"),
            "{text}"
        );
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("status"), "enabled\n").unwrap();
        assert!(
            matches!(run(&dir).map_err(|e| *e), Err(ForeignError::NoEmulator { state, .. }) if state.is_empty())
        );

        let entry = "enabled\ninterpreter /usr/libexec/qemu-binfmt/s390x-binfmt-P\nflags: P\noffset 0\nmagic 7f454c4602020100000000000000000000020016\nmask ffffffffffffff00fffffffffffffffffffeffff\n";
        fs::write(dir.join("qemu-s390x"), entry).unwrap();
        let err = run(&dir).unwrap_err();
        assert!(
            matches!(&*err, ForeignError::NotFixed { handler, .. } if handler == "qemu-s390x"),
            "{err}"
        );
        assert!(err.to_string().contains("without flag F"), "{err}");

        fs::write(
            dir.join("qemu-s390x"),
            entry.replace("flags: P", "flags: PF"),
        )
        .unwrap();
        assert_eq!(run(&dir), Ok(()));
        fs::write(dir.join("status"), "disabled\n").unwrap();
        assert!(run(&dir).unwrap_err().to_string().contains(": disabled)"));

        // The host's own programs, scripts of them and absent programs never look at binfmt_misc.
        fs::copy("/proc/self/exe", root.join("usr/bin/dash")).unwrap();
        assert_eq!(run(&dir), Ok(()));
        fs::write(root.join("bin/script"), "#!/usr/bin/dash\n").unwrap();
        let exec = RunCommand::Exec(vec!["script".into()]);
        let env = [("PATH".to_string(), "/nowhere:/bin".to_string())];
        assert_eq!(check(&root, &exec, &env, "linux/s390x", &dir), Ok(()));
        let missing = RunCommand::Exec(vec!["/no/such".into()]);
        assert_eq!(check(&root, &missing, &env, "linux/s390x", &dir), Ok(()));
        // ... while a script whose interpreter is foreign does.
        fs::write(root.join("usr/bin/dash"), elf_header(true, false, 22, 2)).unwrap();
        assert!(check(&root, &exec, &env, "linux/s390x", &dir).is_err());
    }
}
