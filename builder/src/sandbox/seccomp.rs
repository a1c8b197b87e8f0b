//! The seccomp filter of a `RUN` step: the container default.
//!
//! Why an allowlist: a build step is arbitrary code from a Kubefile or a base image, and the
//! kernel keeps adding system calls. Like Docker's and Podman's default profiles, everything not
//! listed fails with `EPERM`, so a new kernel interface is closed until someone decides it is
//! safe. The list is the ordinary user-space interface (files, processes, memory, signals,
//! sockets, time, IPC) and leaves out what only an administrator of the machine needs: mounting
//! (`mount`, the new `fsopen` family, `pivot_root`), new namespaces (`unshare`, `setns`, `clone`
//! with namespace flags), kernel modules and `kexec`, `bpf` and `perf_event_open`, the kernel
//! keyring, `reboot`, swap, the clock, raw I/O ports, `ptrace`-like access to other processes'
//! memory, NUMA policy, `userfaultfd` and `io_uring`. The capability set alone would already
//! refuse most of these; the filter is the second wall, and the only one for interfaces that
//! need no capability at all (`userfaultfd`, `io_uring`, `keyctl`).
//!
//! `clone3` fails with `ENOSYS` rather than `EPERM` because its flags live in memory a filter
//! cannot inspect; C libraries then fall back to `clone`, whose flags are checked.
//! Names unknown to the OCI runtime's libseccomp are skipped by it, so the list may name calls
//! newer than the runtime.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// `EPERM`: what a refused system call returns.
const EPERM: u32 = 1;
/// `ENOSYS`: what `clone3` returns, so callers fall back to `clone`.
const ENOSYS: u32 = 38;
/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET`: `clone` is allowed only with none of them set.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// The `personality(2)` values that only select an execution domain or query it: `PER_LINUX`,
/// `PER_LINUX32`, `UNAME26`, `UNAME26 | PER_LINUX32`, and `0xffffffff` (query).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// System calls allowed without conditions, by group (`#` starts a comment line).
const ALLOWED: &str = "
# files and directories
access chdir chmod chown chown32 close close_range copy_file_range
creat dup dup2 dup3 faccessat faccessat2 fadvise64 fadvise64_64
fallocate fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat
fcntl fcntl64 fdatasync fgetxattr flistxattr flock fremovexattr
fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
ftruncate64 futimesat getcwd getdents getdents64 getxattr lchown
lchown32 lgetxattr link linkat listxattr llistxattr _llseek
lremovexattr lseek lsetxattr lstat lstat64 mkdir mkdirat mknod
mknodat newfstatat open openat openat2 pread64 preadv preadv2
pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv
removexattr rename renameat renameat2 rmdir sendfile sendfile64
setxattr splice stat stat64 statfs statfs64 statx symlink
symlinkat sync sync_file_range syncfs tee truncate truncate64 umask
unlink unlinkat utime utimensat utimensat_time64 utimes vmsplice
write writev chroot fanotify_mark inotify_add_watch inotify_init
inotify_init1 inotify_rm_watch ioctl
# processes, threads, credentials
arch_prctl capget capset execve execveat exit exit_group fork
get_robust_list get_thread_area getcpu getegid getegid32 geteuid
geteuid32 getgid getgid32 getgroups getgroups32 getpgid getpgrp
getpid getppid getpriority getresgid getresgid32 getresuid getresuid32
getrlimit getrusage getsid gettid getuid getuid32 ioprio_get
ioprio_set kill landlock_add_rule landlock_create_ruleset
landlock_restrict_self membarrier pidfd_open pidfd_send_signal prctl
prlimit64 process_mrelease restart_syscall rseq sched_get_priority_max
sched_get_priority_min sched_getaffinity sched_getattr sched_getparam
sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64
sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield
seccomp set_robust_list set_thread_area set_tid_address setfsgid
setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32
setpgid setpriority setregid setregid32 setresgid setresgid32
setresuid setresuid32 setreuid setreuid32 setrlimit setsid setuid
setuid32 tgkill tkill ugetrlimit uname vfork wait4 waitid
waitpid sethostname setdomainname ptrace
# memory
brk madvise map_shadow_stack memfd_create mincore mlock mlock2
mlockall mmap mmap2 mprotect mremap msync munlock munlockall
munmap pkey_alloc pkey_free pkey_mprotect remap_file_pages modify_ldt
# signals, events, waiting
alarm epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait
epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 futex
futex_requeue futex_time64 futex_wait futex_waitv futex_wake nanosleep
pause poll ppoll ppoll_time64 pselect6 pselect6_time64
rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
select _newselect sigaltstack signalfd signalfd4 sigprocmask
sigreturn pipe pipe2
# time (reading it; setting the clock needs CAP_SYS_TIME and is not listed)
adjtimex clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 getitimer gettimeofday setitimer
time timer_create timer_delete timer_getoverrun timer_gettime
timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
# sockets
accept accept4 bind connect getpeername getsockname getsockopt
listen recv recvfrom recvmmsg recvmmsg_time64 recvmsg send sendmmsg
sendmsg sendto setsockopt shutdown socket socketcall socketpair
# System V and POSIX IPC (private to the step's IPC namespace)
ipc mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink msgctl
msgget msgrcv msgsnd semctl semget semop semtimedop
semtimedop_time64 shmat shmctl shmdt shmget
# asynchronous I/O (the old interface; io_uring is not listed)
io_cancel io_destroy io_getevents io_pgetevents io_pgetevents_time64
io_setup io_submit
# system information
getrandom sysinfo
# newer calls of the same kinds, and the ARM-only spellings
cachestat mseal getxattrat setxattrat listxattrat removexattrat
arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls
";

/// The unconditionally allowed names.
fn allowed() -> impl Iterator<Item = &'static str> {
    ALLOWED
        .lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(str::split_whitespace)
}

/// The seccomp section of the step's OCI runtime configuration, for the build machine's
/// architecture (and its 32-bit companions, which a step may execute too).
pub fn profile() -> LinuxSeccomp {
    let names: Vec<&str> = allowed().collect();
    let mut rules = vec![syscalls(
        &names,
        LinuxSeccompAction::ScmpActAllow,
        None,
        vec![],
    )];
    rules.push(syscalls(
        &["clone"],
        LinuxSeccompAction::ScmpActAllow,
        None,
        vec![arg(
            0,
            CLONE_NAMESPACE_FLAGS,
            0,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )],
    ));
    for value in PERSONALITIES {
        rules.push(syscalls(
            &["personality"],
            LinuxSeccompAction::ScmpActAllow,
            None,
            vec![arg(0, value, 0, LinuxSeccompOperator::ScmpCmpEq)],
        ));
    }
    rules.push(syscalls(
        &["clone3"],
        LinuxSeccompAction::ScmpActErrno,
        Some(ENOSYS),
        vec![],
    ));
    let mut seccomp = LinuxSeccomp::default();
    seccomp
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(EPERM))
        .set_architectures(Some(architectures()))
        .set_syscalls(Some(rules));
    seccomp
}

fn architectures() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        "powerpc64" => vec![Arch::ScmpArchPpc64le],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        _ => vec![Arch::ScmpArchNative],
    }
}

fn syscalls(
    names: &[&str],
    action: LinuxSeccompAction,
    errno: Option<u32>,
    args: Vec<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names.iter().map(|n| n.to_string()).collect())
        .set_action(action)
        .set_errno_ret(errno)
        .set_args((!args.is_empty()).then_some(args));
    rule
}

fn arg(index: usize, value: u64, value_two: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .value_two(value_two)
        .op(op)
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn administrative_calls_are_not_allowed() {
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "init_module",
            "finit_module",
            "delete_module",
            "kexec_load",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "reboot",
            "swapon",
            "settimeofday",
            "clock_settime",
            "iopl",
            "ioperm",
            "userfaultfd",
            "io_uring_setup",
            "open_by_handle_at",
            "fsopen",
            "move_mount",
            "process_vm_writev",
            "syslog",
            "acct",
            "quotactl",
        ] {
            assert!(!allowed().any(|n| n == name), "{name} must not be allowed");
        }
    }

    #[test]
    fn the_list_has_no_duplicates() {
        let mut names: Vec<_> = allowed().collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }
}
