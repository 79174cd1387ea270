//! OOM kills in a container's memory cgroup, reported as TaskOOM: cgroup v1 through an eventfd
//! registered on `memory.oom_control`, cgroup v2 by watching `memory.events` (`oom_kill`).
#![allow(unsafe_code)]

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

/// Calls `on_oom` for each OOM kill in the memory cgroup of `pid`, until the cgroup is removed.
/// Errors if the cgroup cannot be found or watched.
pub fn watch<F>(pid: u32, on_oom: F) -> io::Result<()>
where
    F: Fn() + Send + 'static,
{
    match memory_cgroup(pid)? {
        Cgroup::V1(dir) => {
            let efd = register_v1(&dir)?;
            tokio::spawn(watch_v1(dir, efd, on_oom));
        }
        Cgroup::V2(dir) => {
            let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
                .map_err(io::Error::from)?;
            inotify
                .add_watch(&dir.join("memory.events"), AddWatchFlags::IN_MODIFY)
                .map_err(io::Error::from)?;
            // SAFETY: the AsyncFd owns the inotify instance, whose fd stays open and the same
            // until the AsyncFd is dropped.
            let inotify =
                unsafe { AsyncFd::register(InotifyFd(inotify)) }.map_err(io::Error::from)?;
            tokio::spawn(watch_v2(dir, inotify, on_oom));
        }
    }
    Ok(())
}

enum Cgroup {
    V1(PathBuf),
    V2(PathBuf),
}

/// The memory cgroup directory of `pid`: v1's `memory` hierarchy, else the unified one.
fn memory_cgroup(pid: u32) -> io::Result<Cgroup> {
    let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            if let Some(mount) =
                cgroup_mount(&mountinfo, |opts| opts.split(',').any(|o| o == "memory"))
            {
                return Ok(Cgroup::V1(mount.join(path.trim_start_matches('/'))));
            }
        }
    }
    let unified = cgroups.lines().find_map(|l| l.strip_prefix("0::"));
    if let (Some(path), Some(mount)) = (unified, cgroup2_mount(&mountinfo)) {
        let dir = mount.join(path.trim_start_matches('/'));
        if dir.join("memory.events").exists() {
            return Ok(Cgroup::V2(dir));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("process {pid} has no memory cgroup"),
    ))
}

/// The mount point of the v1 hierarchy whose super options match.
fn cgroup_mount(mountinfo: &str, wanted: impl Fn(&str) -> bool) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        let (fstype, _source, options) = (right.next()?, right.next()?, right.next()?);
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup" && wanted(options)).then(|| PathBuf::from(mount_point))
    })
}

fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

/// `echo "<eventfd> <oom_control fd>" > cgroup.event_control`.
fn register_v1(dir: &Path) -> io::Result<AsyncFd<EventFd>> {
    let control = fs::File::open(dir.join("memory.oom_control"))?;
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
        .map_err(io::Error::from)?;
    let mut events = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.event_control"))?;
    // One write: the kernel parses each write(2) on its own.
    let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
    events.write_all(line.as_bytes())?;
    // SAFETY: the AsyncFd owns the eventfd, whose fd stays open and the same until it is dropped.
    unsafe { AsyncFd::register(efd) }.map_err(io::Error::from)
}

async fn watch_v1<F: Fn()>(dir: PathBuf, efd: AsyncFd<EventFd>, on_oom: F) {
    loop {
        let Ok(mut guard) = efd.readable().await else {
            return;
        };
        match guard.try_io(|fd| fd.get_ref().read().map_err(io::Error::from)) {
            Err(_would_block) => continue,
            Ok(Err(_)) => return,
            // The eventfd also fires when the cgroup is removed.
            Ok(Ok(_)) if !dir.exists() => return,
            Ok(Ok(_)) => on_oom(),
        }
    }
}

/// An inotify instance as tokio registers it (nix's `Inotify` only lends its fd).
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

async fn watch_v2<F: Fn()>(dir: PathBuf, inotify: AsyncFd<InotifyFd>, on_oom: F) {
    let mut kills = oom_kills(&dir).unwrap_or(0);
    loop {
        let Ok(mut guard) = inotify.readable().await else {
            return;
        };
        match guard.try_io(|i| i.get_ref().0.read_events().map_err(io::Error::from)) {
            Err(_would_block) => continue,
            Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
        let Some(now) = oom_kills(&dir) else {
            return;
        };
        if now > kills {
            on_oom();
        }
        kills = now;
    }
}

fn oom_kills(dir: &Path) -> Option<u64> {
    let text = fs::read_to_string(dir.join("memory.events")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
34 25 0:30 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
35 25 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct";

    #[test]
    fn finds_the_memory_hierarchy() {
        assert_eq!(
            cgroup_mount(MOUNTINFO, |o| o.split(',').any(|x| x == "memory")),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(
            cgroup2_mount(MOUNTINFO),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn counts_oom_kills() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("memory.events"),
            "low 0\noom 2\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(oom_kills(dir.path()), Some(1));
    }
}
