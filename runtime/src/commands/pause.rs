//! `pause` / `resume`: freeze and thaw every process of a container through its freezer cgroup.
//! The status `state` reports follows from the freezer, so nothing else is recorded.

use std::path::Path;

use crate::cgroups::Cgroup;
use crate::state::{ContainerState, StateDir, Status};
use crate::{Error, Result};

/// Freezes container `id`; only a running container can be paused.
pub fn pause(root: &Path, id: &str) -> Result<()> {
    let (dir, st, _lock) = open(root, id)?;
    let status = dir.status(&st);
    if status != Status::Running {
        return Err(wrong_state(
            id,
            status,
            "only a running container can be paused",
        ));
    }
    cgroup_of(&st)?.set_frozen(true)?;
    Ok(())
}

/// Thaws container `id`; only a paused container can be resumed.
pub fn resume(root: &Path, id: &str) -> Result<()> {
    let (dir, st, _lock) = open(root, id)?;
    let status = dir.status(&st);
    if status != Status::Paused {
        return Err(wrong_state(
            id,
            status,
            "only a paused container can be resumed",
        ));
    }
    cgroup_of(&st)?.set_frozen(false)?;
    Ok(())
}

/// The container's state, read under its lock (held until the returned guard drops), so a
/// concurrent `delete` cannot remove the cgroup between the check and the freeze.
fn open(
    root: &Path,
    id: &str,
) -> Result<(StateDir, ContainerState, nix::fcntl::Flock<std::fs::File>)> {
    let dir = StateDir::open(root, id)?;
    let lock = dir.lock()?;
    let st = dir.load()?;
    Ok((dir, st, lock))
}

/// The container's cgroup; a container made without one (rootless) has no freezer.
pub(crate) fn cgroup_of(st: &ContainerState) -> Result<Cgroup> {
    if st.cgroup_path.is_empty() {
        let why = "it has no cgroup (it was created without cgroup access)";
        return Err(Error::sys(
            format!("container {}", st.id),
            std::io::Error::new(std::io::ErrorKind::Unsupported, why),
        ));
    }
    Ok(Cgroup::load(&st.cgroup_path)?)
}

fn wrong_state(id: &str, status: Status, what: &str) -> Error {
    Error::WrongState {
        id: id.into(),
        status: status.to_string(),
        what: what.into(),
    }
}
