//! Test support: running a check in a forked child, for tests that change process-wide
//! state, with a deadline so a stuck child cannot hang the suite.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

/// Exit code of a child whose check panicked.
pub(crate) const PANICKED: i32 = 101;

/// Runs `check` in a forked child and returns its exit code (what `check` returned); a
/// child that outlives 30 s is killed and the test fails.
#[allow(unsafe_code)]
pub(crate) fn run(check: fn() -> i32) -> i32 {
    // SAFETY: the child makes syscalls and allocates a little (glibc's malloc is fork safe),
    // then leaves with `_exit`; it never returns into the test harness.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            nix::unistd::alarm::set(20);
            let code = std::panic::catch_unwind(check).unwrap_or(PANICKED);
            // SAFETY: ends the child at once, without the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => wait_for_code(child),
    }
}

/// The child's exit code; a child killed by a signal fails the test.
fn wait_for_code(child: Pid) -> i32 {
    match wait_with_deadline(child) {
        WaitStatus::Exited(_, code) => code,
        other => panic!("child {child} ended abnormally: {other:?}"),
    }
}

/// Waits for `child`, killing it (and failing the test) if it outlives 30 s.
pub(crate) fn wait_with_deadline(child: Pid) -> WaitStatus {
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
