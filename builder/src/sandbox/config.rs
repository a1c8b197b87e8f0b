//! The OCI runtime configuration (`config.json`) of one `RUN` step.
//!
//! Why generated here and run by `runc`: namespaces, capabilities, `no_new_privs`, seccomp,
//! masked `/proc` paths, device rules and the `pivot_root` into the step's root are exactly what
//! an OCI runtime does, and `runc` does it well (it is what buildah and containerd use). chasi
//! only decides the policy, written down in one place:
//!
//! * **Namespaces**: mount, pid, ipc, uts (hostname `chasi`, so a step that records the hostname
//!   stays reproducible) and cgroup; network only with `--network none` (the default shares the
//!   host's network, as `buildah build` and sealer do, so steps can download).
//! * **Capabilities**: the container default set (`CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD
//!   NET_RAW SETGID SETUID SETFCAP SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE`), in the
//!   bounding, effective and permitted sets; none inheritable or ambient. No `SYS_ADMIN` (no
//!   mounts), no `SYS_MODULE`, no `SYS_RAWIO`, no `NET_ADMIN`, no `SYS_TIME`.
//! * **`no_new_privs`**, and the seccomp allowlist of [`super::seccomp`].
//! * **Devices**: a private `/dev` (tmpfs) with only `null zero full random urandom tty`, `pts`,
//!   `shm` and `mqueue`; the device cgroup denies every other device, and the step's root is
//!   mounted `nodev`, so a node made with `mknod` (allowed: packages create them) cannot be
//!   opened.
//! * **`/proc`** of the step's own pid namespace, with `kcore`, `keys`, `timer_list`, … masked
//!   and `/proc/sys`, `/proc/sysrq-trigger`, `/proc/irq`, `/proc/bus`, `/proc/fs` read-only;
//!   `/sys` read-only, `/sys/firmware` masked.
//! * **Rootless** (chasi not run as root): the sandbox is already inside a user namespace that
//!   maps the caller to root; the runtime gets no cgroup settings and binds `/sys` instead of
//!   mounting it.

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use std::collections::HashSet;
use std::path::Path;

use super::mounts::Bind;
use super::{Network, SandboxError};

/// The hostname a step sees.
pub const HOSTNAME: &str = "chasi";

/// The container default capability set.
const CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

const MASKED: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

const READ_ONLY: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Everything the configuration depends on.
pub struct StepConfig<'a> {
    /// The step's root (the merged overlay).
    pub root: &'a Path,
    /// The command.
    pub argv: &'a [String],
    /// The environment, in order.
    pub env: &'a [(String, String)],
    /// The network mode.
    pub network: Network,
    /// Host paths bound into the root.
    pub binds: &'a [Bind],
    /// Paths that get a private tmpfs.
    pub tmpfs: &'a [String],
    /// Whether the sandbox runs without real root (inside a user namespace).
    pub rootless: bool,
    /// The cgroup the step runs in (real root only), unique per step.
    pub cgroup: &'a str,
}

fn err(e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Config {
        detail: e.to_string(),
    }
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SandboxError> {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(err)
}

/// The options of the step's own pts instance.
const PTS: [&str; 6] = [
    "nosuid",
    "noexec",
    "newinstance",
    "ptmxmode=0666",
    "mode=0620",
    "gid=5",
];

fn mounts(c: &StepConfig<'_>) -> Result<Vec<Mount>, SandboxError> {
    let mut out = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        // The tty group (gid 5) exists only outside a user namespace.
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            if c.rootless { &PTS[..5] } else { &PTS },
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        if c.rootless {
            mount(
                "/sys",
                "none",
                "/sys",
                &["rbind", "nosuid", "noexec", "nodev", "ro"],
            )?
        } else {
            mount(
                "/sys",
                "sysfs",
                "sysfs",
                &["nosuid", "noexec", "nodev", "ro"],
            )?
        },
    ];
    for dest in c.tmpfs {
        out.push(mount(
            dest,
            "tmpfs",
            "tmpfs",
            &["nosuid", "nodev", "mode=1777"],
        )?);
    }
    for b in c.binds {
        let source = b
            .source
            .to_str()
            .ok_or_else(|| err(format!("host path {} is not UTF-8", b.source.display())))?;
        let access = if b.writable { "rw" } else { "ro" };
        out.push(mount(
            &b.dest,
            "bind",
            source,
            &["rbind", "nosuid", "nodev", access],
        )?);
    }
    Ok(out)
}

/// The `config.json` of one step.
pub fn spec(c: &StepConfig<'_>) -> Result<Spec, SandboxError> {
    let caps: HashSet<Capability> = CAPABILITIES.into_iter().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(err)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(0u32)
                .gid(0u32)
                .build()
                .map_err(err)?,
        )
        .args(c.argv.to_vec())
        .env(
            c.env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>(),
        )
        .cwd("/")
        .capabilities(capabilities)
        .no_new_privileges(true)
        .rlimits(Vec::new())
        .build()
        .map_err(err)?;

    let mut kinds = vec![
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Cgroup,
    ];
    if c.network == Network::None {
        kinds.push(LinuxNamespaceType::Network);
    }
    let namespaces = kinds
        .into_iter()
        .map(|typ| {
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .build()
                .map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(MASKED.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(READ_ONLY.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .seccomp(super::seccomp::profile())
        .rootfs_propagation("rprivate");
    if !c.rootless {
        linux = linux.cgroups_path(c.cgroup).resources(device_rules()?);
    }
    let linux = linux.build().map_err(err)?;

    SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path(c.root)
                .readonly(false)
                .build()
                .map_err(err)?,
        )
        .hostname(HOSTNAME)
        .process(process)
        .mounts(mounts(c)?)
        .linux(linux)
        .build()
        .map_err(err)
}

/// Deny every device, then allow the standard character devices of `/dev` and the ptys.
fn device_rules() -> Result<oci_spec::runtime::LinuxResources, SandboxError> {
    let rule = |allow: bool, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .access(access);
        if allow {
            b = b.typ(LinuxDeviceType::C);
        }
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build().map_err(err)
    };
    let devices = vec![
        rule(false, None, None, "rwm")?,
        rule(true, Some(1), Some(3), "rwm")?, // null
        rule(true, Some(1), Some(5), "rwm")?, // zero
        rule(true, Some(1), Some(7), "rwm")?, // full
        rule(true, Some(1), Some(8), "rwm")?, // random
        rule(true, Some(1), Some(9), "rwm")?, // urandom
        rule(true, Some(5), Some(0), "rwm")?, // tty
        rule(true, Some(5), Some(2), "rwm")?, // ptmx
        rule(true, Some(136), None, "rwm")?,  // pts/*
    ];
    LinuxResourcesBuilder::default()
        .devices(devices)
        .build()
        .map_err(err)
}
