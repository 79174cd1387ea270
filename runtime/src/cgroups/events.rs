//! What `events` needs from a cgroup beyond cgroups-rs's `stats()`: the raw text of controller
//! files (cgroups-rs leaves out `memory.stat` as a whole, per-CPU user/kernel time, cpuset) and
//! OOM notifications.
//!
//! OOM kills are watched as runc watches them: on cgroup v1 with an eventfd registered on
//! `memory.oom_control` through `cgroup.event_control`; on v2 through the `oom_kill` counter of
//! `memory.events`.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{Cgroup, Result};

/// What one wait of an [`OomWatcher`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomWait {
    /// Nothing happened before the timeout.
    Timeout,
    /// The cgroup ran out of memory (once or more since the last wait).
    Oom,
    /// The cgroup was removed: no more events will come.
    Gone,
}

/// A registration for the OOM events of one cgroup.
#[derive(Debug)]
pub struct OomWatcher {
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// v1: the eventfd the kernel signals; the registration lasts while `oom_control` is open.
    EventFd {
        eventfd: OwnedFd,
        _oom_control: File,
        event_control: PathBuf,
    },
    /// v2: `memory.events` and the `oom_kill` count last seen in it.
    Counter { events: PathBuf, seen: u64 },
}

impl Cgroup {
    /// The text of `file` in the cgroup's directory for `controller` (its v1 hierarchy, or the
    /// unified directory on v2); `None` when the controller or the file does not exist.
    pub fn read_file(&self, controller: &str, file: &str) -> Result<Option<String>> {
        let Some(dir) = self.controller_dir(controller) else {
            return Ok(None);
        };
        match fs::read_to_string(dir.join(file)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_err(&dir.join(file), &e)),
        }
    }

    /// Starts watching the cgroup for OOM events; fails without a memory controller.
    pub fn watch_oom(&self) -> Result<OomWatcher> {
        let dir = self
            .controller_dir("memory")
            .filter(|d| d.is_dir())
            .ok_or_else(|| self.err("no memory cgroup to watch for OOM events".to_string()))?;
        let source = if dir.join("memory.oom_control").exists() {
            self.register_eventfd(&dir)?
        } else {
            let events = dir.join("memory.events");
            let seen = oom_kill_count(&events).map_err(|e| self.io_err(&events, &e))?;
            Source::Counter { events, seen }
        };
        Ok(OomWatcher { source })
    }

    /// cgroup v1: `<eventfd> <fd of memory.oom_control>` written to `cgroup.event_control`.
    fn register_eventfd(&self, dir: &Path) -> Result<Source> {
        let oom_control = dir.join("memory.oom_control");
        let file = File::open(&oom_control).map_err(|e| self.io_err(&oom_control, &e))?;
        let eventfd = new_eventfd().map_err(|e| self.io_err(dir, &e))?;
        let event_control = dir.join("cgroup.event_control");
        let line = format!("{} {}", eventfd.as_raw_fd(), file.as_raw_fd());
        fs::write(&event_control, line).map_err(|e| self.io_err(&event_control, &e))?;
        Ok(Source::EventFd {
            eventfd,
            _oom_control: file,
            event_control,
        })
    }
}

impl OomWatcher {
    /// Waits up to `timeout` for an OOM event.
    pub fn wait(&mut self, timeout: Duration) -> io::Result<OomWait> {
        match &mut self.source {
            Source::EventFd {
                eventfd,
                event_control,
                ..
            } => wait_eventfd(eventfd, event_control, timeout),
            Source::Counter { events, seen } => wait_counter(events, seen, timeout),
        }
    }
}

/// The kernel signals the eventfd on OOM and also when the cgroup is removed, which tells the
/// two apart only by whether the cgroup's control file is still there.
fn wait_eventfd(eventfd: &OwnedFd, event_control: &Path, timeout: Duration) -> io::Result<OomWait> {
    let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(eventfd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
        Ok(0) | Err(Errno::EINTR) => return Ok(OomWait::Timeout),
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    let mut count = [0u8; 8];
    nix::unistd::read(eventfd, &mut count)?;
    if !event_control.exists() {
        return Ok(OomWait::Gone);
    }
    Ok(OomWait::Oom)
}

/// cgroup v2 has no eventfd: the `oom_kill` counter is read after each pause.
fn wait_counter(events: &Path, seen: &mut u64, timeout: Duration) -> io::Result<OomWait> {
    thread::sleep(timeout);
    let count = match oom_kill_count(events) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(OomWait::Gone),
        other => other?,
    };
    if count > *seen {
        *seen = count;
        return Ok(OomWait::Oom);
    }
    Ok(OomWait::Timeout)
}

/// The `oom_kill` line of a v2 `memory.events` file (0 when absent).
fn oom_kill_count(events: &Path) -> io::Result<u64> {
    let text = fs::read_to_string(events)?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}

/// A close-on-exec eventfd.
#[allow(unsafe_code)]
fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd(2) takes integers only and returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created by eventfd(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_counter_parses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = dir.path().join("memory.events");
        fs::write(&events, "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n").expect("write");
        assert_eq!(oom_kill_count(&events).expect("read"), 2);
        let mut seen = 1;
        assert_eq!(
            wait_counter(&events, &mut seen, Duration::ZERO).expect("wait"),
            OomWait::Oom
        );
        assert_eq!(seen, 2);
        assert_eq!(
            wait_counter(&events, &mut seen, Duration::ZERO).expect("wait"),
            OomWait::Timeout
        );
        fs::remove_file(&events).expect("rm");
        assert_eq!(
            wait_counter(&events, &mut seen, Duration::ZERO).expect("wait"),
            OomWait::Gone
        );
    }

    #[test]
    fn eventfd_times_out_quietly() {
        let fd = new_eventfd().expect("eventfd");
        let wait = wait_eventfd(&fd, Path::new("/"), Duration::from_millis(1)).expect("poll");
        assert_eq!(wait, OomWait::Timeout);
    }
}
