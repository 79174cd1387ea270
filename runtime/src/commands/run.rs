//! `run`: create and start, then (unless `--detach`) stay as the container's reaper, forward
//! signals to its init, copy its terminal, and exit with its status (128+n if killed by n).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::cli::RunArgs;
use crate::commands::create::{create, Attach};
use crate::commands::{delete, kill::send_raw, start};
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

/// Runs the container; returns the exit status to exit with.
pub fn run(root: &Path, args: &RunArgs) -> Result<i32> {
    let id = &args.create.id;
    if args.detach {
        create(root, &args.create, Attach::Detached)?;
        start_or_clean(root, id)?;
        return Ok(0);
    }
    // The container's init is our grandchild: as subreaper we get it when its parent exits.
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| Error::sys("set subreaper", e))?;
    let created = create(root, &args.create, Attach::Foreground)?;
    let mask = forwarded_mask();
    mask.thread_block()
        .map_err(|e| Error::sys("block signals", e))?;
    start_or_clean(root, id)?;
    if let Some(master) = created.console {
        copy_console(master);
    }
    let status = wait_forwarding(created.state.pid, &mask)?;
    if !args.keep {
        delete::delete(root, id, true)?;
    }
    Ok(status)
}

fn start_or_clean(root: &Path, id: &str) -> Result<()> {
    start::start(root, id).inspect_err(|_| {
        let _ = delete::delete(root, id, true);
    })
}

fn forwarded_mask() -> SigSet {
    let mut mask = SigSet::empty();
    FORWARDED.iter().for_each(|s| mask.add(*s));
    mask.add(Signal::SIGCHLD);
    mask
}

/// Waits for `pid`, reaping every other orphan, passing signals on; returns its exit status.
fn wait_forwarding(pid: i32, mask: &SigSet) -> Result<i32> {
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
fn copy_console(master: OwnedFd) {
    let Ok(reader) = master.try_clone() else {
        return;
    };
    let mut from_pty = File::from(reader);
    let mut to_pty = File::from(master);
    std::thread::spawn(move || std::io::copy(&mut from_pty, &mut std::io::stdout()));
    std::thread::spawn(move || std::io::copy(&mut std::io::stdin(), &mut to_pty));
}
