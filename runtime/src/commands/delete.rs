//! `delete`: removes a container and everything create made (cgroup, state dir); with
//! `--force` kills it first. Poststop hooks run last; their failures are only warned about.

use std::path::Path;

use crate::cgroups::Cgroup;
use crate::commands::create::wait_gone;
use crate::commands::kill::send_raw;
use crate::state::{oci_state_json, StateDir, StateError, Status};
use crate::{hooks, Error, Result};

/// Deletes container `id`.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let dir = StateDir::open(root, id)?;
    let lock = dir.lock()?;
    let st = match dir.load() {
        Ok(st) => st,
        // A directory without state is what a crashed create leaves: nothing else to undo.
        Err(StateError::NotFound(_)) => {
            drop(lock);
            return Ok(dir.remove()?);
        }
        Err(e) => return Err(e.into()),
    };
    let status = dir.status(&st);
    match status {
        Status::Stopped | Status::Created => {}
        _ if force => {}
        _ => {
            return Err(Error::WrongState {
                id: id.into(),
                status: status.to_string(),
                what: "stop it first or use delete --force".into(),
            })
        }
    }
    let mut cgroup = Cgroup::load(&st.cgroup_path)?;
    kill_everything(&cgroup, st.pid, status);
    let poststop = st.spec.hooks().as_ref().and_then(|h| h.poststop().clone()).unwrap_or_default();
    cgroup.destroy()?;
    drop(lock);
    dir.remove()?;
    if !poststop.is_empty() {
        let json = oci_state_json(&st, Status::Stopped).to_string();
        hooks::run_hooks_warn(&poststop, json.as_bytes());
    }
    Ok(())
}

/// SIGKILL to init and every process of the cgroup, thawed if paused; waits until they are gone.
fn kill_everything(cgroup: &Cgroup, pid: i32, status: Status) {
    if status == Status::Stopped {
        return;
    }
    let pids = cgroup.pids().unwrap_or_default();
    let _ = send_raw(pid, libc::SIGKILL);
    for p in &pids {
        let _ = send_raw(*p, libc::SIGKILL);
    }
    if status == Status::Paused {
        let _ = cgroup.set_frozen(false);
    }
    wait_gone(pid);
    for p in pids {
        wait_gone(p);
    }
}
