//! The Docker (moby) default seccomp profile, as the `linux.seccomp` section dockerd writes into a
//! container's config.json on x86_64 for Docker's default capability set.
//!
//! Source: moby's `profiles/seccomp/default.json` (moby 25-27, including moby#47341, which added
//! the syscalls of kernels 5.17-6.7). dockerd resolves that profile per container: it keeps the
//! architectures of the host (x86_64 with its x86 and x32 sub-architectures) and the entries whose
//! `includes` the container meets and whose `excludes` it does not. With Docker's default
//! capabilities (no CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_TIME...) on a kernel >= 4.8 that is:
//! the allow list, ptrace and process_vm_*, socket except AF_VSOCK, five personalities,
//! arch_prctl and modify_ldt (x86), chroot (CAP_SYS_CHROOT is a default), clone without the
//! namespace flags, and clone3 answering ENOSYS so that libc falls back to clone.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// EPERM: what every syscall outside the profile returns.
const EPERM: u32 = 1;
/// ENOSYS: what clone3 returns, so that glibc falls back to clone, whose flags can be checked.
const ENOSYS: u32 = 38;
/// AF_VSOCK: the one socket family containers may not open (it reaches the host's VMs).
const AF_VSOCK: u64 = 40;
/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET: without CAP_SYS_ADMIN a container may clone, but not into new namespaces.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// The personas of personality(2) allowed: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32,
/// and 0xffffffff, which only queries the current persona.
const PERSONAS: [u64; 5] = [0x0, 0x0008, 0x2_0000, 0x2_0008, 0xFFFF_FFFF];

/// The syscalls any container may make: moby's first, unconditional entry.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Allowed from kernel 4.8, where ptrace can no longer be used to bypass seccomp.
const PTRACE: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// The `linux.seccomp` of a Docker container with the default profile and capabilities on x86_64.
pub fn docker_default_profile() -> LinuxSeccomp {
    let mut syscalls = vec![allow(ALLOWED), allow(PTRACE)];
    syscalls.push(allow_if(
        "socket",
        compare(0, LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK),
    ));
    for persona in PERSONAS {
        let arg = compare(0, LinuxSeccompOperator::ScmpCmpEq, persona);
        syscalls.push(allow_if("personality", arg));
    }
    syscalls.push(allow(&["arch_prctl"]));
    syscalls.push(allow(&["modify_ldt"]));
    let no_namespaces = compare(
        0,
        LinuxSeccompOperator::ScmpCmpMaskedEq,
        CLONE_NAMESPACE_FLAGS,
    );
    syscalls.push(allow_if("clone", no_namespaces));
    syscalls.push(errno(&["clone3"], ENOSYS));
    syscalls.push(allow(&["chroot"]));

    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActErrno);
    seccomp.set_default_errno_ret(Some(EPERM));
    seccomp.set_architectures(Some(vec![
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX86,
        Arch::ScmpArchX32,
    ]));
    seccomp.set_syscalls(Some(syscalls));
    seccomp
}

fn syscall(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscall {
    let mut syscall = LinuxSyscall::default();
    syscall.set_names(names.iter().map(|name| name.to_string()).collect());
    syscall.set_action(action);
    syscall
}

fn allow(names: &[&str]) -> LinuxSyscall {
    syscall(names, LinuxSeccompAction::ScmpActAllow)
}

fn allow_if(name: &str, arg: LinuxSeccompArg) -> LinuxSyscall {
    let mut syscall = allow(&[name]);
    syscall.set_args(Some(vec![arg]));
    syscall
}

fn errno(names: &[&str], errno: u32) -> LinuxSyscall {
    let mut syscall = syscall(names, LinuxSeccompAction::ScmpActErrno);
    syscall.set_errno_ret(Some(errno));
    syscall
}

/// A comparison of argument `index`; for MASKED_EQ, `value` is the mask and the datum is 0.
fn compare(index: usize, op: LinuxSeccompOperator, value: u64) -> LinuxSeccompArg {
    // The arg has no setters, only a builder; its build() fails only for a field without a
    // default, and all have one (the tests check every arg the profile holds).
    let builder = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    builder.build().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn names(profile: &LinuxSeccomp) -> Vec<&str> {
        let syscalls = profile.syscalls().iter().flatten();
        syscalls
            .flat_map(|s| s.names())
            .map(String::as_str)
            .collect()
    }

    fn rules_for<'a>(profile: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        let syscalls = profile.syscalls().iter().flatten();
        syscalls
            .filter(|s| s.names().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn has_the_shape_docker_gives_it() {
        let profile = docker_default_profile();
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(profile.default_errno_ret(), Some(EPERM));
        let archs = [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32];
        assert_eq!(profile.architectures().as_deref(), Some(&archs[..]));
        assert!(
            names(&profile).len() > 300,
            "{} names",
            names(&profile).len()
        );
        assert_eq!(profile.flags(), &None, "dockerd sets no flags");
    }

    #[test]
    fn allow_list_has_no_duplicates_and_no_admin_syscalls() {
        let unique: HashSet<&str> = ALLOWED.iter().copied().collect();
        assert_eq!(unique.len(), ALLOWED.len());
        for admin in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "reboot",
            "init_module",
        ] {
            assert!(
                !names(&docker_default_profile()).contains(&admin),
                "{admin}"
            );
        }
    }

    #[test]
    fn clone_clone3_personality_and_socket_rules() {
        let profile = docker_default_profile();
        let [clone] = rules_for(&profile, "clone").try_into().unwrap();
        let [arg] = clone.args().clone().unwrap().try_into().unwrap();
        assert_eq!(
            (arg.index(), arg.op()),
            (0, LinuxSeccompOperator::ScmpCmpMaskedEq)
        );
        assert_eq!(
            (arg.value(), arg.value_two().unwrap_or(0)),
            (2_114_060_288, 0)
        );
        let [clone3] = rules_for(&profile, "clone3").try_into().unwrap();
        assert_eq!(clone3.action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3.errno_ret(), Some(ENOSYS));
        let personas = rules_for(&profile, "personality").into_iter().map(|rule| {
            let [arg] = rule.args().clone().unwrap().try_into().unwrap();
            assert_eq!(
                (arg.index(), arg.op()),
                (0, LinuxSeccompOperator::ScmpCmpEq)
            );
            arg.value()
        });
        assert_eq!(
            personas.collect::<Vec<_>>(),
            [0x0, 0x8, 0x2_0000, 0x2_0008, 0xFFFF_FFFF]
        );
        let [socket] = rules_for(&profile, "socket").try_into().unwrap();
        let [arg] = socket.args().clone().unwrap().try_into().unwrap();
        assert_eq!(
            (arg.op(), arg.value()),
            (LinuxSeccompOperator::ScmpCmpNe, AF_VSOCK)
        );
    }

    #[test]
    fn serializes_to_the_oci_json_and_back() {
        let profile = docker_default_profile();
        let json = serde_json::to_value(&profile).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        assert_eq!(json["architectures"][0], "SCMP_ARCH_X86_64");
        let clone = json["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["names"][0] == "clone");
        assert_eq!(clone.unwrap()["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        let back: LinuxSeccomp = serde_json::from_value(json).unwrap();
        assert_eq!(back, profile);
    }
}
