//! Starting `keel-runtime init` (for `create` and `exec`): from the protected binary (see
//! `clone_binary`), with its channel on the first fd after the preserved ones.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::channel::{Channel, INIT_FD_ENV};
use crate::{clone_binary, Error, Result};

/// Checks, before the runtime opens any fd of its own, that the caller really passed fds
/// 3..3+n: a gap would be filled by one of the runtime's fds, which would then be preserved
/// into the container.
pub fn check_preserved_fds(n: u32) -> Result<()> {
    for fd in 3..n.saturating_add(3) {
        if std::fs::read_link(format!("/proc/self/fd/{fd}")).is_err() {
            return Err(Error::sys(
                format!("--preserve-fds {n}: fd {fd} is not open"),
                std::io::Error::from_raw_os_error(libc::EBADF),
            ));
        }
    }
    Ok(())
}

/// Spawns init with `child_end` as its channel, in `cwd` if given (relative mount sources are
/// relative to the bundle, as in runc).
pub fn spawn_init(child_end: &Channel, preserve_fds: u32, cwd: Option<&Path>) -> Result<Child> {
    let exe = clone_binary::protected_self()?;
    let exe_path = PathBuf::from(format!("/proc/self/fd/{}", exe.as_raw_fd()));
    let target = i32::try_from(preserve_fds)
        .ok()
        .and_then(|n| n.checked_add(3))
        .ok_or_else(|| Error::sys("--preserve-fds", std::io::ErrorKind::InvalidInput))?;
    let mut cmd = Command::new(exe_path);
    cmd.arg0("keel-runtime")
        .arg("init")
        .env(INIT_FD_ENV, target.to_string());
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    set_child_fd(&mut cmd, child_end.as_raw_fd(), target);
    cmd.spawn()
        .map_err(|e| Error::sys("start container init", e))
}

#[allow(unsafe_code)]
fn set_child_fd(cmd: &mut Command, source: i32, target: i32) {
    // SAFETY: the closure runs in the forked child before exec and only calls dup2/fcntl,
    // which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if source == target {
                let r = libc::fcntl(target, libc::F_SETFD, 0);
                return if r < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                };
            }
            if libc::dup2(source, target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
