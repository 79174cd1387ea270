//! Tests of the seccomp module. The ones that load a filter do it in a forked child, which ends
//! with `_exit` and is killed if it outlives a deadline, so a bad filter cannot hang the tests.

use std::cell::Cell;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libc::c_long;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
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

#[test]
fn notify_is_not_supported_yet() {
    let as_default = profile(json!({ "defaultAction": "SCMP_ACT_NOTIFY" }));
    let in_rule = one_rule(&["getppid"], "SCMP_ACT_NOTIFY", None);
    let wait_killable = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    }));
    for spec in [as_default, in_rule, wait_killable] {
        let err = compile(&spec, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("seccomp notify is not supported yet"),
            "{err}"
        );
    }
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
        let err = load(&Filter { program, flags: 0 }).unwrap_err();
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
        ForkResult::Parent { child } => wait_with_deadline(child),
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

fn wait_with_deadline(child: Pid) -> WaitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).expect("waitpid") {
            WaitStatus::StillAlive if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            WaitStatus::StillAlive => {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                panic!("child {child} did not exit in time");
            }
            status => return status,
        }
    }
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
