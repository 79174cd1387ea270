//! `start`: releases a created container's init to exec the user's process.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::commands::delete;
use crate::state::{self, StateDir, Status};
use crate::{hooks, Error, Result};

/// Starts container `id`, then runs its poststart hooks.
pub fn start(root: &Path, id: &str) -> Result<()> {
    let dir = StateDir::open(root, id)?;
    let lock = dir.lock()?;
    let st = dir.load()?;
    let status = dir.status(&st);
    if status != Status::Created {
        return Err(Error::WrongState {
            id: id.into(),
            status: status.to_string(),
            what: "only a created container can be started".into(),
        });
    }
    release_init(&dir.fifo_path())?;
    let _ = std::fs::remove_file(dir.fifo_path());
    let poststart = st
        .spec
        .hooks()
        .as_ref()
        .and_then(|h| h.poststart().clone())
        .unwrap_or_default();
    if poststart.is_empty() {
        return Ok(());
    }
    let json = state::oci_state_json(&st, Status::Running).to_string();
    if let Err(e) = hooks::run_hooks(&poststart, json.as_bytes()) {
        // The runtime-spec: a failing poststart hook stops and removes the container.
        drop(lock);
        let _ = delete::delete(root, id, true);
        return Err(e.into());
    }
    Ok(())
}

/// Writes the byte init waits for. Opening without blocking fails (ENXIO) if init is gone.
fn release_init(fifo: &Path) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(fifo)
        .map_err(|e| Error::sys("container init is not waiting (exec fifo)", e))?;
    f.write_all(&[0])
        .map_err(|e| Error::sys("release container init", e))
}
