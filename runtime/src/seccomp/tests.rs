//! Tests of the seccomp module. The ones that load a filter do it in a forked child, which ends
//! with `_exit` and is killed if it outlives a deadline, so a bad filter cannot hang the tests.

use std::cell::Cell;
use std::fs;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use libc::c_long;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::Signal;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::wait::WaitStatus;
use nix::unistd::{fork, ForkResult};
use serde_json::json;

use super::*;

thread_local! {
    static COMPILATIONS: Cell<usize> = const { Cell::new(0) };
}

/// Counts libseccomp compilations made by this thread (each test runs on its own thread).
pub(super) fn count_compilation() {
    COMPILATIONS.with(|count| count.set(count.get() + 1));
}

fn compilations() -> usize {
    COMPILATIONS.with(Cell::get)
}

fn profile(value: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(value).expect("a valid LinuxSeccomp")
}

/// Default ALLOW, one rule: the shape of most action tests.
fn one_rule(names: &[&str], action: &str, errno_ret: Option<u32>) -> LinuxSeccomp {
    let mut rule = json!({ "names": names, "action": action });
    if let Some(errno) = errno_ret {
        rule["errnoRet"] = json!(errno);
    }
    profile(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule] }))
}

fn arg(index: usize, op: &str, value: u64, value_two: Option<u64>) -> serde_json::Value {
    let mut arg = json!({ "index": index, "value": value, "op": op });
    if let Some(two) = value_two {
        arg["valueTwo"] = json!(two);
    }
    arg
}

#[test]
fn actions_translate_like_runc() {
    use LinuxSeccompAction as A;
    let cases = [
        (A::ScmpActKill, None, ScmpAction::KillThread),
        (A::ScmpActKillThread, None, ScmpAction::KillThread),
        (A::ScmpActKillProcess, None, ScmpAction::KillProcess),
        (A::ScmpActTrap, None, ScmpAction::Trap),
        (A::ScmpActErrno, None, ScmpAction::Errno(libc::EPERM)),
        (A::ScmpActErrno, Some(38), ScmpAction::Errno(38)),
        (A::ScmpActTrace, None, ScmpAction::Trace(1)),
        (A::ScmpActTrace, Some(7), ScmpAction::Trace(7)),
        (A::ScmpActLog, None, ScmpAction::Log),
        (A::ScmpActAllow, Some(5), ScmpAction::Allow),
    ];
    for (oci, errno_ret, expected) in cases {
        assert_eq!(
            action(oci, errno_ret).unwrap(),
            expected,
            "{oci:?} {errno_ret:?}"
        );
    }
    assert!(
        action(A::ScmpActErrno, Some(70_000)).is_err(),
        "errnoRet wider than 16 bits"
    );
}

/// A profile that notifies `names` to an agent (that is never asked: nothing is sent here).
fn notify_rule(names: &[&str]) -> LinuxSeccomp {
    profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": "/run/keel-test-agent.sock",
        "syscalls": [{ "names": names, "action": "SCMP_ACT_NOTIFY" }],
    }))
}

const NEW_LISTENER: u32 = libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
const TSYNC: u32 = libc::SECCOMP_FILTER_FLAG_TSYNC as u32;
const TSYNC_ESRCH: u32 = libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH as u32;
const WAIT_KILLABLE_RECV: u32 = libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV as u32;

/// Whether the program has a `ret SECCOMP_RET_USER_NOTIF`.
fn returns_user_notif(program: &[u8]) -> bool {
    let ret_k = (libc::BPF_RET | libc::BPF_K) as u16;
    instructions(program)
        .unwrap()
        .iter()
        .any(|insn| insn.code == ret_k && insn.k == libc::SECCOMP_RET_USER_NOTIF)
}

#[test]
fn notify_rule_compiles_to_a_listener_filter() {
    assert_eq!(
        action(LinuxSeccompAction::ScmpActNotify, None).unwrap(),
        ScmpAction::Notify
    );
    let filter = compile(&notify_rule(&["getppid"]), None).unwrap();
    assert!(filter.notify);
    assert_eq!(
        filter.flags & NEW_LISTENER,
        NEW_LISTENER,
        "{:#x}",
        filter.flags
    );
    assert!(returns_user_notif(&filter.program));

    let plain = compile(&one_rule(&["getppid"], "SCMP_ACT_ERRNO", None), None).unwrap();
    assert!(!plain.notify);
    assert_eq!(plain.flags & NEW_LISTENER, 0);
    assert!(!returns_user_notif(&plain.program));
}

#[test]
fn notify_is_refused_where_runc_refuses_it() {
    let cases = [
        (
            json!({ "defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/a.sock" }),
            "cannot be used as default action",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a.sock",
                    "syscalls": [{ "names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY" }] }),
            "cannot be used for the write syscall",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a.sock",
                    "syscalls": [{ "names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY" }] }),
            "cannot be used for the sendmsg syscall",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW",
                    "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }] }),
            "needs linux.seccomp.listenerPath",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "",
                    "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }] }),
            "needs linux.seccomp.listenerPath",
        ),
        (
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m" }),
            "listenerMetadata is set but listenerPath is not",
        ),
    ];
    let cache = tempfile::tempdir().unwrap();
    for (spec, message) in cases {
        for dir in [None, Some(cache.path())] {
            let err = compile(&profile(spec.clone()), dir).unwrap_err();
            assert!(
                matches!(err, SeccompError::Invalid(_)) && err.to_string().contains(message),
                "{spec}: {err}"
            );
        }
    }
    // Write is only refused as a notified syscall: other actions on it are fine.
    compile(&one_rule(&["write"], "SCMP_ACT_LOG", None), None).unwrap();
}

#[test]
fn listener_path_without_notify_is_ignored() {
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/a.sock", "listenerMetadata": "m",
        "syscalls": [{ "names": ["getppid"], "action": "SCMP_ACT_ERRNO" }],
    }));
    let filter = compile(&spec, None).unwrap();
    assert!(!filter.notify);
    assert_eq!(
        filter,
        compile(&one_rule(&["getppid"], "SCMP_ACT_ERRNO", None), None).unwrap()
    );
}

#[test]
fn notify_flags_follow_the_kernel_rules() {
    let with_flags = |flags: serde_json::Value| {
        let mut spec = notify_rule(&["getppid"]);
        spec.set_flags(serde_json::from_value(flags).unwrap());
        compile(&spec, None)
    };
    let tsync = with_flags(json!(["SECCOMP_FILTER_FLAG_TSYNC"])).unwrap();
    assert_eq!(
        tsync.flags,
        TSYNC | TSYNC_ESRCH | NEW_LISTENER,
        "TSYNC with a listener needs TSYNC_ESRCH"
    );
    assert_eq!(with_flags(json!([])).unwrap().flags, NEW_LISTENER);

    let killable = json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]);
    let without_notify = compile(
        &profile(json!({ "defaultAction": "SCMP_ACT_ALLOW", "flags": killable })),
        None,
    );
    if kernel_flag(WAIT_KILLABLE_RECV | NEW_LISTENER) == Some(false) {
        // Linux before 5.19: refused with or without a listener.
        assert!(matches!(
            without_notify,
            Err(SeccompError::Unsupported { .. })
        ));
        return;
    }
    assert_eq!(
        without_notify.unwrap().flags & WAIT_KILLABLE_RECV,
        0,
        "dropped without a listener, as libseccomp does"
    );
    assert_eq!(
        with_flags(killable).unwrap().flags,
        WAIT_KILLABLE_RECV | NEW_LISTENER
    );
}

#[test]
fn load_asks_for_a_listener_exactly_for_notify_filters() {
    let filter = |flags, notify| Filter {
        program: Vec::new(),
        flags,
        notify,
    };
    assert_eq!(load_flags(&filter(4, true)).unwrap(), 4 | NEW_LISTENER);
    assert_eq!(
        load_flags(&filter(TSYNC, true)).unwrap(),
        TSYNC | TSYNC_ESRCH | NEW_LISTENER
    );
    assert_eq!(load_flags(&filter(4, false)).unwrap(), 4);
    // A listener nobody would take: refused before seccomp(2).
    let err = load(&filter(NEW_LISTENER, false)).unwrap_err();
    assert!(matches!(err, SeccompError::BadProgram(_)), "{err}");
}

#[test]
fn filter_without_notify_field_deserializes() {
    let old: Filter = serde_json::from_value(json!({ "program": [1, 2], "flags": 4 })).unwrap();
    assert!(!old.notify);
}

#[test]
fn notify_filter_is_cached_with_its_listener_flag() {
    let dir = tempfile::tempdir().unwrap();
    let spec = notify_rule(&["getppid"]);
    let before = compilations();
    let first = compile(&spec, Some(dir.path())).unwrap();
    let mut elsewhere = spec.clone();
    elsewhere.set_listener_path(Some("/run/another-agent.sock".into()));
    elsewhere.set_listener_metadata(Some("meta".into()));
    let second = compile(&elsewhere, Some(dir.path())).unwrap();
    assert_eq!(
        compilations(),
        before + 1,
        "the listener's path does not change the program"
    );
    assert_eq!(second, first);
    assert!(second.notify);
}

#[test]
fn operators_translate_like_runc() {
    use LinuxSeccompOperator as O;
    let cases = [
        (O::ScmpCmpNe, ScmpCompareOp::NotEqual),
        (O::ScmpCmpLt, ScmpCompareOp::Less),
        (O::ScmpCmpLe, ScmpCompareOp::LessOrEqual),
        (O::ScmpCmpEq, ScmpCompareOp::Equal),
        (O::ScmpCmpGe, ScmpCompareOp::GreaterEqual),
        (O::ScmpCmpGt, ScmpCompareOp::Greater),
    ];
    for (oci, op) in cases {
        let arg: LinuxSeccompArg = serde_json::from_value(json!({
            "index": 2, "value": 10, "valueTwo": 99, "op": oci
        }))
        .unwrap();
        assert_eq!(
            condition("x", &arg).unwrap(),
            (2, ScmpArgCompare::new(2, op, 10)),
            "{oci:?}"
        );
    }
    let masked: LinuxSeccompArg =
        serde_json::from_value(arg(0, "SCMP_CMP_MASKED_EQ", 0xF0, Some(0x20))).unwrap();
    let expected = ScmpArgCompare::new(0, ScmpCompareOp::MaskedEqual(0xF0), 0x20);
    assert_eq!(
        condition("x", &masked).unwrap(),
        (0, expected),
        "mask in value, datum in valueTwo"
    );
    let beyond: LinuxSeccompArg = serde_json::from_value(arg(6, "SCMP_CMP_EQ", 0, None)).unwrap();
    assert!(condition("x", &beyond).is_err(), "argument index 6");
}

#[test]
fn conditions_on_one_argument_become_separate_rules() {
    let cmp = |index: u32, datum| ScmpArgCompare::new(index, ScmpCompareOp::Equal, datum);
    let (a, b, c) = (cmp(0, 1), cmp(1, 2), cmp(0, 3));
    assert_eq!(
        condition_groups(vec![]),
        vec![vec![]],
        "no args: one plain rule"
    );
    assert_eq!(
        condition_groups(vec![(0, a), (1, b)]),
        vec![vec![a, b]],
        "ANDed"
    );
    assert_eq!(
        condition_groups(vec![(0, a), (1, b), (0, c)]),
        vec![vec![a], vec![b], vec![c]],
        "ORed"
    );
}

#[test]
fn unknown_names_are_refused_by_the_spec_types() {
    // The typed spec cannot hold an action, operator, architecture or flag it does not know.
    let bad = [
        json!({ "defaultAction": "SCMP_ACT_BOGUS" }),
        json!({ "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_BOGUS"] }),
        json!({ "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_BOGUS"] }),
        json!({ "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{ "names": ["read"], "action": "SCMP_ACT_BOGUS" }] }),
        json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{ "names": ["read"],
                "action": "SCMP_ACT_ERRNO", "args": [arg(0, "SCMP_CMP_BOGUS", 1, None)] }] }),
    ];
    for value in bad {
        assert!(
            serde_json::from_value::<LinuxSeccomp>(value.clone()).is_err(),
            "{value}"
        );
    }
}

#[test]
fn unknown_syscall_name_is_skipped() {
    let with_unknown = one_rule(&["getppid", "keel_no_such_syscall"], "SCMP_ACT_ERRNO", None);
    let without = one_rule(&["getppid"], "SCMP_ACT_ERRNO", None);
    assert_eq!(
        compile(&with_unknown, None).unwrap(),
        compile(&without, None).unwrap()
    );
}

#[test]
fn empty_syscall_name_is_refused() {
    let err = compile(&one_rule(&[""], "SCMP_ACT_ERRNO", None), None).unwrap_err();
    assert!(err.to_string().contains("empty string"), "{err}");
}

#[test]
fn rule_repeating_the_default_action_is_skipped() {
    let redundant = one_rule(&["getppid"], "SCMP_ACT_ALLOW", None);
    let empty = profile(json!({ "defaultAction": "SCMP_ACT_ALLOW" }));
    assert_eq!(
        compile(&redundant, None).unwrap(),
        compile(&empty, None).unwrap()
    );
}

#[test]
fn flags_come_from_the_spec() {
    let with = |flags: serde_json::Value| {
        compile(
            &profile(json!({ "defaultAction": "SCMP_ACT_ALLOW", "flags": flags })),
            None,
        )
    };
    let log_tsync = with(json!([
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_TSYNC"
    ]))
    .unwrap();
    assert_eq!(log_tsync.flags, 0b011);
    assert_eq!(
        with(json!([])).unwrap().flags,
        0,
        "an empty list means no flags"
    );
    let unset = compile(&profile(json!({ "defaultAction": "SCMP_ACT_ALLOW" })), None).unwrap();
    assert_eq!(
        unset.flags & !0b100,
        0,
        "no flags at all: SPEC_ALLOW at most, as runc"
    );
}

#[test]
fn long_profile_compiles_within_the_kernel_limit() {
    let names = [
        "read",
        "write",
        "open",
        "close",
        "stat",
        "fstat",
        "lstat",
        "poll",
        "lseek",
        "mmap",
        "mprotect",
        "munmap",
        "brk",
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "ioctl",
        "pread64",
        "pwrite64",
        "readv",
        "writev",
        "access",
        "pipe",
        "select",
        "sched_yield",
        "mremap",
        "msync",
        "mincore",
        "madvise",
        "dup",
        "dup2",
        "pause",
        "nanosleep",
        "getpid",
        "exit_group",
        "openat",
        "newfstatat",
        "futex",
        "clone3",
    ];
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{ "names": names.as_slice(), "action": "SCMP_ACT_ALLOW" }],
    }));
    let filter = compile(&spec, None).unwrap();
    assert!(check_length(&filter.program).is_ok());
}

#[test]
fn load_refuses_programs_the_kernel_would_refuse() {
    let bad = [vec![], vec![0; 12], vec![0; (MAX_INSNS + 1) * INSN_SIZE]];
    for program in bad {
        let len = program.len();
        let err = load(&Filter {
            program,
            flags: 0,
            notify: false,
        })
        .unwrap_err();
        assert!(
            matches!(err, SeccompError::BadProgram(_)),
            "{len} bytes: {err}"
        );
    }
}

fn bpf_files(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path());
    entries
        .filter(|path| path.extension().is_some_and(|ext| ext == "bpf"))
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn cache_hit_returns_the_same_program_without_compiling() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("seccomp");
    let spec = one_rule(&["getppid", "mkdir"], "SCMP_ACT_ERRNO", Some(38));
    let before = compilations();
    let first = compile(&spec, Some(&dir)).unwrap();
    assert_eq!(compilations(), before + 1);
    let [file] = bpf_files(&dir).try_into().unwrap();
    let written = fs::metadata(&file).unwrap().modified().unwrap();
    assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));

    let second = compile(&spec, Some(&dir)).unwrap();
    assert_eq!(
        compilations(),
        before + 1,
        "a profile already compiled is not compiled again"
    );
    assert_eq!(second, first);
    assert_eq!(fs::metadata(&file).unwrap().modified().unwrap(), written);

    compile(&one_rule(&["getppid"], "SCMP_ACT_ERRNO", None), Some(&dir)).unwrap();
    assert_eq!(
        (compilations(), bpf_files(&dir).len()),
        (before + 2, 2),
        "another profile"
    );
}

#[test]
fn corrupt_cache_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let spec = one_rule(&["getppid"], "SCMP_ACT_KILL_PROCESS", None);
    let first = compile(&spec, Some(dir.path())).unwrap();
    let [file] = bpf_files(dir.path()).try_into().unwrap();
    let sound = fs::read(&file).unwrap();
    for damaged in [
        b"garbage".to_vec(),
        sound[..sound.len() - 8].to_vec(),
        vec![],
    ] {
        fs::write(&file, &damaged).unwrap();
        let before = compilations();
        assert_eq!(compile(&spec, Some(dir.path())).unwrap(), first);
        assert_eq!(
            compilations(),
            before + 1,
            "recompiled after {} bytes",
            damaged.len()
        );
        assert_eq!(
            fs::read(&file).unwrap(),
            sound,
            "and the file is whole again"
        );
    }
}

#[test]
fn without_a_cache_dir_every_call_compiles() {
    let spec = one_rule(&["getppid"], "SCMP_ACT_TRAP", None);
    let before = compilations();
    compile(&spec, None).unwrap();
    compile(&spec, None).unwrap();
    assert_eq!(compilations(), before + 2);
}

// --- Loading, in forked children ---------------------------------------------------------

/// Exit codes of a child that failed before its check.
const CHILD_NO_RLIMIT: i32 = 90;
const CHILD_NO_NNP: i32 = 91;
const CHILD_NO_LOAD: i32 = 92;
const CHILD_PANICKED: i32 = 93;

/// Runs `check` in a forked child under `filter`; the child exits with what `check` returns.
#[allow(unsafe_code)]
fn in_child(filter: &Filter, check: fn() -> i32) -> WaitStatus {
    // SAFETY: the child makes syscalls and allocates a little in `load` (glibc's malloc is fork
    // safe), then leaves with `_exit`; it never returns into the test harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            let code = std::panic::catch_unwind(|| child(filter, check)).unwrap_or(CHILD_PANICKED);
            // SAFETY: ends the child at once, without the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => crate::forked::wait_with_deadline(child),
    }
}

fn child(filter: &Filter, check: fn() -> i32) -> i32 {
    // A child stuck by a filter gone wrong dies of SIGALRM; the parent has a deadline too.
    nix::unistd::alarm::set(20);
    // The SIGSYS of KILL and TRAP would otherwise dump core.
    if setrlimit(Resource::RLIMIT_CORE, 0, 0).is_err() {
        return CHILD_NO_RLIMIT;
    }
    if nix::sys::prctl::set_no_new_privs().is_err() {
        return CHILD_NO_NNP;
    }
    if load(filter).is_err() {
        return CHILD_NO_LOAD;
    }
    check()
}

/// The errno of a raw syscall, 0 when it succeeded.
#[allow(unsafe_code)]
fn errno_of(nr: c_long, a0: u64, a1: u64) -> i32 {
    // SAFETY: only called with syscalls that ignore their arguments or fail harmlessly.
    let ret = unsafe { libc::syscall(nr, a0, a1) };
    if ret == -1 {
        Errno::last_raw()
    } else {
        0
    }
}

/// 0 when every case gives its errno, else the 1-based number of the first that does not.
fn first_failure(cases: &[(c_long, u64, u64, i32)]) -> i32 {
    let failed = cases
        .iter()
        .position(|&(nr, a0, a1, want)| errno_of(nr, a0, a1) != want);
    failed.map_or(0, |index| index as i32 + 1)
}

fn expect_exit(status: WaitStatus, code: i32, what: &str) {
    assert!(
        matches!(status, WaitStatus::Exited(_, c) if c == code),
        "{what}: {status:?}"
    );
}

fn expect_sigsys(status: WaitStatus, what: &str) {
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{what}: {status:?}"
    );
}

fn getppid_errno() -> i32 {
    errno_of(libc::SYS_getppid, 0, 0)
}

#[allow(unsafe_code)]
fn mkdir_errno() -> i32 {
    // SAFETY: a constant C string; the parent directory does not exist, so nothing is made.
    let ret = unsafe { libc::mkdir(c"/keel-seccomp-test-no-such-dir/x".as_ptr(), 0o700) };
    if ret == -1 {
        Errno::last_raw()
    } else {
        0
    }
}

#[test]
fn loaded_filter_returns_the_errno_of_each_rule() {
    let eperm = compile(&one_rule(&["getppid"], "SCMP_ACT_ERRNO", None), None).unwrap();
    expect_exit(
        in_child(&eperm, getppid_errno),
        libc::EPERM,
        "ERRNO defaults to EPERM",
    );
    let enosys = one_rule(&["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", Some(38));
    expect_exit(
        in_child(&compile(&enosys, None).unwrap(), mkdir_errno),
        38,
        "mkdir errnoRet 38",
    );
    let trace = compile(&one_rule(&["getppid"], "SCMP_ACT_TRACE", None), None).unwrap();
    expect_exit(
        in_child(&trace, getppid_errno),
        libc::ENOSYS,
        "TRACE without a tracer",
    );
    let log = compile(&one_rule(&["getppid"], "SCMP_ACT_LOG", None), None).unwrap();
    expect_exit(in_child(&log, getppid_errno), 0, "LOG allows");
}

#[test]
fn loaded_filter_kills_and_traps() {
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
    ] {
        let filter = compile(&one_rule(&["getppid"], action, None), None).unwrap();
        expect_sigsys(in_child(&filter, getppid_errno), action);
    }
}

fn operator_cases() -> i32 {
    use libc::*;
    first_failure(&[
        (SYS_getpid, 9, 0, 101),
        (SYS_getpid, 10, 0, 0),
        (SYS_getppid, 9, 0, 102),
        (SYS_getppid, 10, 0, 0),
        (SYS_gettid, 10, 0, 103),
        (SYS_gettid, 11, 0, 0),
        (SYS_getuid, 10, 0, 104),
        (SYS_getuid, 11, 0, 0),
        (SYS_getgid, 10, 0, 105),
        (SYS_getgid, 9, 0, 0),
        (SYS_geteuid, 11, 0, 106),
        (SYS_geteuid, 10, 0, 0),
        (SYS_getegid, 0x2F, 0, 107),
        (SYS_getegid, 0x30, 0, 0),
        (SYS_munlockall, 1, 0, 108),
        (SYS_munlockall, 2, 0, 108),
        (SYS_munlockall, 3, 0, 0),
        (SYS_sched_yield, 1, 2, 109),
        (SYS_sched_yield, 1, 3, 0),
        (SYS_sched_yield, 4, 2, 0),
    ])
}

#[test]
fn loaded_filter_compares_arguments_with_each_operator() {
    let rule = |name: &str, errno: u32, args: serde_json::Value| json!({ "names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": errno, "args": args });
    let spec = profile(json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        rule("getpid", 101, json!([arg(0, "SCMP_CMP_NE", 10, None)])),
        rule("getppid", 102, json!([arg(0, "SCMP_CMP_LT", 10, None)])),
        rule("gettid", 103, json!([arg(0, "SCMP_CMP_LE", 10, None)])),
        rule("getuid", 104, json!([arg(0, "SCMP_CMP_EQ", 10, None)])),
        rule("getgid", 105, json!([arg(0, "SCMP_CMP_GE", 10, None)])),
        rule("geteuid", 106, json!([arg(0, "SCMP_CMP_GT", 10, None)])),
        rule("getegid", 107, json!([arg(0, "SCMP_CMP_MASKED_EQ", 0xF0, Some(0x20))])),
        rule("munlockall", 108, json!([arg(0, "SCMP_CMP_EQ", 1, None), arg(0, "SCMP_CMP_EQ", 2, None)])),
        rule("sched_yield", 109, json!([arg(0, "SCMP_CMP_EQ", 1, None), arg(1, "SCMP_CMP_EQ", 2, None)])),
    ]}));
    expect_exit(
        in_child(&compile(&spec, None).unwrap(), operator_cases),
        0,
        "first failed case",
    );
}

#[cfg(target_arch = "x86_64")]
fn enosys_cases() -> i32 {
    first_failure(&[
        (libc::SYS_getppid, 0, 0, 0),
        (libc::SYS_times, 0, 0, libc::EPERM),
        (libc::SYS_fanotify_init, 0, 0, libc::ENOSYS),
        (1000, 0, 0, libc::ENOSYS),
    ])
}

/// Syscalls newer than every name of the profile get ENOSYS; older ones the default EPERM.
#[cfg(target_arch = "x86_64")]
#[test]
fn newer_syscalls_get_enosys_older_ones_the_default() {
    for archs in [
        json!(null),
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    ] {
        let spec = profile(json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": archs,
            "syscalls": [{ "names": ["exit_group", "exit", "getppid"], "action": "SCMP_ACT_ALLOW" }],
        }));
        let status = in_child(&compile(&spec, None).unwrap(), enosys_cases);
        expect_exit(
            status,
            0,
            &format!("first failed case, architectures {archs}"),
        );
    }
}

// --- Notify: a listener in the child, an agent in the parent --------------------------------

/// Exit codes of a notify child that failed before its check.
const CHILD_NO_LISTENER: i32 = 94;
const CHILD_LISTENER_INHERITABLE: i32 = 95;
const CHILD_NO_SEND: i32 = 96;

/// What the agent answers to one notification.
#[derive(Clone, Copy)]
enum Answer {
    /// The syscall returns this value.
    Value(i64),
    /// The syscall fails with this errno.
    Errno(i32),
}

/// Runs `check` in a forked child under the notify `filter`; the child sends its listener
/// over a socketpair right after loading, and the parent answers the child's notifications with
/// `answers`, in order. Returns the child's status and the syscall numbers the parent saw.
#[allow(unsafe_code)]
fn in_notify_child(
    filter: &Filter,
    check: fn() -> i32,
    answers: &[Answer],
) -> (WaitStatus, Vec<i32>) {
    let (parent_end, child_end) = UnixStream::pair().expect("socketpair");
    // SAFETY: as in `in_child`: the child makes syscalls, allocates a little, and `_exit`s.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(parent_end);
            let code = std::panic::catch_unwind(|| notify_child(filter, &child_end, check))
                .unwrap_or(CHILD_PANICKED);
            // SAFETY: ends the child at once, without the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(child_end);
            // No listener: the child failed before sending it, and its exit code says where.
            let seen = receive_fd(&parent_end)
                .map(|listener| serve(&listener, answers))
                .unwrap_or_default();
            (crate::forked::wait_with_deadline(child), seen)
        }
    }
}

fn notify_child(filter: &Filter, sock: &UnixStream, check: fn() -> i32) -> i32 {
    nix::unistd::alarm::set(20);
    if nix::sys::prctl::set_no_new_privs().is_err() {
        return CHILD_NO_NNP;
    }
    let listener = match load(filter) {
        Ok(Some(listener)) => listener,
        Ok(None) => return CHILD_NO_LISTENER,
        Err(_) => return CHILD_NO_LOAD,
    };
    let cloexec = fcntl(&listener, FcntlArg::F_GETFD)
        .is_ok_and(|flags| FdFlag::from_bits_truncate(flags).contains(FdFlag::FD_CLOEXEC));
    if !cloexec {
        return CHILD_LISTENER_INHERITABLE;
    }
    let fds = [listener.as_raw_fd()];
    let sent = sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(b"L")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    );
    if sent.is_err() {
        return CHILD_NO_SEND;
    }
    // The parent holds its own copy now.
    drop(listener);
    check()
}

fn receive_fd(sock: &UnixStream) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let flags = MsgFlags::MSG_CMSG_CLOEXEC;
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags).ok()?;
    let fd = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
        _ => None,
    })?;
    Some(take_listener(fd))
}

/// Answers one notification per answer; returns the syscall number of each one received.
fn serve(listener: &OwnedFd, answers: &[Answer]) -> Vec<i32> {
    let mut seen = Vec::new();
    for answer in answers {
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(10_000u16)).unwrap_or(0);
        let readable = fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        if ready == 0 || !readable {
            break;
        }
        let Ok(request) = notif_recv(listener) else {
            break;
        };
        seen.push(request.data.nr);
        let (val, error) = match *answer {
            Answer::Value(val) => (val, 0),
            Answer::Errno(errno) => (0, -errno),
        };
        let response = libc::seccomp_notif_resp {
            id: request.id,
            val,
            error,
            flags: 0,
        };
        if notif_send(listener, &response).is_err() {
            break;
        }
    }
    seen
}

/// SECCOMP_IOCTL_NOTIF_RECV: the next notification.
#[allow(unsafe_code)]
fn notif_recv(listener: &OwnedFd) -> nix::Result<libc::seccomp_notif> {
    // SAFETY: seccomp_notif is plain integers; the kernel wants it zeroed and fills it in.
    let mut request: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one seccomp_notif into `request`, which outlives the call.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut request,
        )
    };
    Errno::result(ret).map(|_| request)
}

/// SECCOMP_IOCTL_NOTIF_SEND: the answer to a notification.
#[allow(unsafe_code)]
fn notif_send(listener: &OwnedFd, response: &libc::seccomp_notif_resp) -> nix::Result<()> {
    let response: *const libc::seccomp_notif_resp = response;
    // SAFETY: the ioctl reads one seccomp_notif_resp from `response`, valid for the call.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            response,
        )
    };
    Errno::result(ret).map(drop)
}

/// getppid's raw return value and errno (0 when it succeeded).
#[allow(unsafe_code)]
fn raw_getppid() -> (c_long, i32) {
    // SAFETY: getppid takes no arguments and touches no memory.
    let ret = unsafe { libc::syscall(libc::SYS_getppid) };
    (ret, if ret == -1 { Errno::last_raw() } else { 0 })
}

/// 0 when the agent's two answers arrive: the value 4242, then EROFS.
fn agent_answers() -> i32 {
    if raw_getppid() != (4242, 0) {
        return 1;
    }
    if raw_getppid() != (-1, libc::EROFS) {
        return 2;
    }
    // Not notified: the real answer.
    if errno_of(libc::SYS_gettid, 0, 0) != 0 {
        return 3;
    }
    0
}

#[test]
fn loaded_notify_filter_hands_out_a_listener_the_agent_answers_on() {
    let filter = compile(&notify_rule(&["getppid"]), None).unwrap();
    let answers = [Answer::Value(4242), Answer::Errno(libc::EROFS)];
    let (status, seen) = in_notify_child(&filter, agent_answers, &answers);
    expect_exit(status, 0, "first failed answer");
    let nr = libc::SYS_getppid as i32;
    assert_eq!(seen, [nr, nr]);
}

#[test]
fn notify_with_tsync_loads() {
    let mut spec = notify_rule(&["getppid"]);
    spec.set_flags(Some(vec![LinuxSeccompFilterFlag::SeccompFilterFlagTsync]));
    let filter = compile(&spec, None).unwrap();
    let answers = [Answer::Value(4242), Answer::Errno(libc::EROFS)];
    let (status, _) = in_notify_child(&filter, agent_answers, &answers);
    expect_exit(status, 0, "first failed answer, with TSYNC");
}

#[test]
fn notified_syscall_fails_with_enosys_once_the_listener_is_gone() {
    // `in_child` drops what `load` returns: nobody holds the listener.
    let filter = compile(&notify_rule(&["getppid"]), None).unwrap();
    expect_exit(
        in_child(&filter, getppid_errno),
        libc::ENOSYS,
        "no agent: ENOSYS",
    );
}
