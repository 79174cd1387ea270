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
    let dir = match StateDir::open(root, id) {
        // As runc: forcing the delete of what is already gone succeeds (shims rely on it).
        Err(StateError::NotFound(_)) if force => return Ok(()),
        other => other?,
    };
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
    // A rootless container may have no cgroup (empty path).
    let mut cgroup = match st.cgroup_path.as_str() {
        "" => None,
        path => Some(Cgroup::load(path)?),
    };
    kill_everything(cgroup.as_ref(), st.pid, status);
    let poststop = st.spec.hooks().as_ref().and_then(|h| h.poststop().clone());
    if let Some(cg) = cgroup.as_mut() {
        cg.destroy()?;
    }
    drop(lock);
    dir.remove()?;
    if let Some(poststop) = poststop.filter(|p| !p.is_empty()) {
        let json = oci_state_json(&st, Status::Stopped).to_string();
        hooks::run_hooks_warn(&poststop, json.as_bytes());
    }
    Ok(())
}

/// SIGKILL to init and every process of the cgroup, thawed if paused; waits until they are gone.
/// A stopped container's cgroup may still hold processes (no pid namespace of its own, and
/// init gone): they are killed too, as runc does, or the cgroup could never be removed.
fn kill_everything(cgroup: Option<&Cgroup>, pid: i32, status: Status) {
    let pids = cgroup.and_then(|c| c.pids().ok()).unwrap_or_default();
    if status != Status::Stopped {
        let _ = send_raw(pid, libc::SIGKILL);
    }
    for p in &pids {
        let _ = send_raw(*p, libc::SIGKILL);
    }
    if let (Status::Paused, Some(cg)) = (status, cgroup) {
        let _ = cg.set_frozen(false);
    }
    if status != Status::Stopped {
        wait_gone(pid);
    }
    for p in pids {
        wait_gone(p);
    }
}
