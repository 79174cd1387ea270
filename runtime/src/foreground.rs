//! A runtime that stays with the process it started (`run`, `exec` without `--detach`): it is
//! the process's reaper, passes signals on, copies its terminal, and returns its exit status
//! (128+n when it was killed by signal n).

use std::fs::File;
use std::os::fd::OwnedFd;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::commands::kill::send_raw;
use crate::{Error, Result};

/// Signals a foreground `run` passes on to the container instead of dying of them.
const FORWARDED: [Signal; 8] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
];

/// Blocks the forwarded signals and SIGCHLD, to receive them with `wait_forwarding`.
pub fn block_forwarded() -> Result<SigSet> {
    let mask = forwarded_mask();
    mask.thread_block()
        .map_err(|e| Error::sys("block signals", e))?;
    Ok(mask)
}

fn forwarded_mask() -> SigSet {
    let mut mask = SigSet::empty();
    FORWARDED.iter().for_each(|s| mask.add(*s));
    mask.add(Signal::SIGCHLD);
    mask
}

/// Waits for `pid`, reaping every other orphan, passing signals on; returns its exit status.
pub fn wait_forwarding(pid: i32, mask: &SigSet) -> Result<i32> {
    loop {
        if let Some(code) = reap(pid)? {
            return Ok(code);
        }
        match mask.wait() {
            Ok(Signal::SIGCHLD) | Err(_) => continue,
            Ok(sig) => drop(send_raw(pid, sig as i32)),
        }
    }
}

/// Reaps every exited child; returns the status of `pid` once it has exited.
fn reap(pid: i32) -> Result<Option<i32>> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return Ok(Some(code)),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                return Ok(Some(128 + sig as i32))
            }
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return Ok(None),
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::sys("wait for container", e)),
        }
    }
}

/// Copies between our stdio and the container's pty in two threads, for the container's life.
pub fn copy_console(master: OwnedFd) -> ConsoleCopy {
    let (done_tx, done) = std::sync::mpsc::channel();
    let Ok(reader) = master.try_clone() else {
        return ConsoleCopy { done };
    };
    let mut from_pty = File::from(reader);
    let mut to_pty = File::from(master);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_pty, &mut std::io::stdout());
        let _ = done_tx.send(());
    });
    std::thread::spawn(move || std::io::copy(&mut std::io::stdin(), &mut to_pty));
    ConsoleCopy { done }
}

/// The output side of a terminal copy, to drain once the process has exited.
#[derive(Debug)]
pub struct ConsoleCopy {
    done: std::sync::mpsc::Receiver<()>,
}

impl ConsoleCopy {
    /// Waits (bounded: a background process may still hold the terminal) until everything the
    /// process wrote has been copied out.
    pub fn drain(self) {
        let _ = self
            .done
            .recv_timeout(std::time::Duration::from_millis(500));
    }
}
