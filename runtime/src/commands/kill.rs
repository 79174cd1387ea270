//! `kill`: a signal to the container's init, or with `--all` to every process of its cgroup.

use std::path::Path;

use nix::sys::signal::{kill as send, Signal};
use nix::unistd::Pid;

use crate::cgroups::Cgroup;
use crate::signal::parse_signal;
use crate::state::{StateDir, Status};
use crate::{Error, Result};

/// Sends `signal` to container `id`.
pub fn kill(root: &Path, id: &str, signal: &str, all: bool) -> Result<()> {
    let sig = parse_signal(signal)?;
    let dir = StateDir::open(root, id)?;
    let st = dir.load()?;
    let status = dir.status(&st);
    // A stopped container may still have processes in its cgroup: `--all` reaches them.
    let reaches_cgroup = all && !st.cgroup_path.is_empty();
    if status == Status::Stopped && !reaches_cgroup {
        return Err(Error::WrongState {
            id: id.into(),
            status: status.to_string(),
            what: "there is no process to signal".into(),
        });
    }
    if all && !st.cgroup_path.is_empty() {
        return signal_all(&st.cgroup_path, sig, status == Status::Paused);
    }
    send_raw(st.pid, sig).map_err(|e| Error::sys(format!("signal {signal} to pid {}", st.pid), e))
}

fn signal_all(cgroup_path: &str, sig: i32, paused: bool) -> Result<()> {
    let cg = Cgroup::load(cgroup_path)?;
    for pid in cg.pids()? {
        // A process may exit between listing and signalling: not an error.
        let _ = send_raw(pid, sig);
    }
    if paused && sig == libc::SIGKILL {
        // A frozen process only dies once thawed.
        cg.set_frozen(false)?;
    }
    Ok(())
}

/// kill(2) with a raw signal number (realtime signals included).
pub fn send_raw(pid: i32, sig: i32) -> nix::Result<()> {
    match Signal::try_from(sig) {
        Ok(s) => send(Pid::from_raw(pid), s),
        Err(_) => send_realtime(pid, sig),
    }
}

#[allow(unsafe_code)]
fn send_realtime(pid: i32, sig: i32) -> nix::Result<()> {
    // SAFETY: kill(2) takes integers only.
    let r = unsafe { libc::kill(pid, sig) };
    nix::Error::result(r).map(drop)
}
