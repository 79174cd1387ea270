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

/// Writes the byte init waits for, then waits until init has exec'ed (or died): the runtime-
/// spec runs poststart hooks only after the user's process is executed.
///
/// How: a reader opened before our writer sees POLLHUP once every writer is gone; the last one
/// is init's own fd on the fifo, closed on exec (close-on-exec) or on exit.
fn release_init(fifo: &Path) -> Result<()> {
    let open = |write: bool| {
        std::fs::OpenOptions::new()
            .read(!write)
            .write(write)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(fifo)
    };
    let reader = open(false).map_err(|e| Error::sys("open exec fifo", e))?;
    // Opening a writer without blocking fails (ENXIO) if no reader is there: init is gone.
    let mut writer =
        open(true).map_err(|e| Error::sys("container init is not waiting (exec fifo)", e))?;
    writer
        .write_all(&[0])
        .map_err(|e| Error::sys("release container init", e))?;
    drop(writer);
    wait_for_hangup(&reader)
}

fn wait_for_hangup(reader: &std::fs::File) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    loop {
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) if fds[0].any().unwrap_or(true) => return Ok(()),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(Error::sys("wait for container exec", e)),
        }
    }
}
