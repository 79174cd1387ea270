//! What a test observes on the host: mounts, cgroup directories, processes, file digests.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

/// Where the cgroup v1 hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The cgroup v1 controllers a container's cgroup is made in.
pub const CONTROLLERS: [&str; 8] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
];

/// The mount points of the calling process's mount namespace, in mountinfo order.
pub fn mount_points() -> Result<Vec<String>> {
    let text =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .collect())
}

/// Mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape_mount_path(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Lazily unmounts everything mounted at or under `dir`, deepest first. Errors are ignored: this
/// is cleanup.
pub fn detach_mounts_under(dir: &Path) {
    let Ok(points) = mount_points() else { return };
    let mut under: Vec<_> = points
        .into_iter()
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    under.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in under {
        let _ = umount2(point.as_str(), MntFlags::MNT_DETACH);
    }
}

/// `/sys/fs/cgroup/<controller>/<cgroup_path>`.
pub fn cgroup_dir(controller: &str, cgroup_path: &str) -> PathBuf {
    Path::new(CGROUP_ROOT)
        .join(controller)
        .join(cgroup_path.trim_start_matches('/'))
}

/// Whether the cgroup v1 `controller` is mounted.
pub fn has_controller(controller: &str) -> bool {
    Path::new(CGROUP_ROOT)
        .join(controller)
        .join("cgroup.procs")
        .exists()
}

/// The controllers in which `cgroup_path` exists.
pub fn cgroup_present_in(cgroup_path: &str) -> Vec<&'static str> {
    CONTROLLERS
        .into_iter()
        .filter(|c| cgroup_dir(c, cgroup_path).is_dir())
        .collect()
}

/// Reads one cgroup file, trimmed.
pub fn read_cgroup_file(controller: &str, cgroup_path: &str, file: &str) -> Result<String> {
    let path = cgroup_dir(controller, cgroup_path).join(file);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.trim().to_string())
}

/// Whether `cgroup_path` names a cgroup below the root: at least one component, none empty,
/// `.` or `..`. Anything else could resolve to the root cgroup, where every process lives.
pub fn is_safe_cgroup_path(cgroup_path: &str) -> bool {
    let trimmed = cgroup_path.trim_start_matches('/');
    !trimmed.is_empty()
        && trimmed
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Kills every process in `cgroup_path` and removes it (children first) from every controller.
/// Refuses (does nothing for) a path that is not [`is_safe_cgroup_path`]. Errors are ignored:
/// this is cleanup.
pub fn remove_cgroup(cgroup_path: &str) {
    if !is_safe_cgroup_path(cgroup_path) {
        return;
    }
    for controller in CONTROLLERS {
        remove_cgroup_dir(&cgroup_dir(controller, cgroup_path));
    }
}

fn remove_cgroup_dir(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroup_dir(&entry.path());
        }
    }
    for _ in 0..50 {
        kill_all(&cgroup_pids(dir));
        if fs::remove_dir(dir).is_ok() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

fn cgroup_pids(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn kill_all(pids: &[i32]) {
    let ours = i32::try_from(std::process::id()).unwrap_or(0);
    for &pid in pids.iter().filter(|&&p| p > 1 && p != ours) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Whether `pid` is a live (not zombie) process.
pub fn pid_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the first field after the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

/// Sends SIGKILL to `pid` if it is a process of container `id`: one whose cgroup path names
/// the id. A runtime reporting a wrong pid (1, the test's own) must not make cleanup kill it.
pub fn kill_container_pid(pid: i32, id: &str) {
    let ours = i32::try_from(std::process::id()).unwrap_or(0);
    if pid <= 1 || pid == ours || id.is_empty() {
        return;
    }
    if cgroups_of(pid).iter().any(|(_, path)| path.contains(id)) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// The hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Polls `check` every 20 ms until it returns true or `timeout` passes; returns its last answer.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// `readlink /proc/<pid>/ns/<ns>` (e.g. `net:[4026531840]`).
pub fn namespace_of(pid: i32, ns: &str) -> Result<String> {
    let link = format!("/proc/{pid}/ns/{ns}");
    let target = fs::read_link(&link).with_context(|| format!("readlink {link}"))?;
    Ok(target.to_string_lossy().into_owned())
}

/// A tmpfs mounted on the host for the duration of a test, lazily unmounted on drop.
#[derive(Debug)]
pub struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    /// Mounts a small tmpfs at `path` (which must exist).
    pub fn mount(path: &Path) -> Result<Self> {
        use nix::mount::{mount, MsFlags};
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=1m"),
        )
        .with_context(|| format!("mounting a tmpfs on {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = umount2(&self.path, MntFlags::MNT_DETACH);
    }
}

/// A host child process, killed and reaped on drop.
#[derive(Debug)]
pub struct ChildGuard {
    child: std::process::Child,
}

impl ChildGuard {
    /// Spawns `cmd` with null stdio.
    pub fn spawn(cmd: &mut std::process::Command) -> Result<Self> {
        use std::process::Stdio;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
        Ok(Self { child })
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(-1)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cgroup v1 paths of `pid`, as `(controller, path)` from `/proc/<pid>/cgroup`.
pub fn cgroups_of(pid: i32) -> Vec<(String, String)> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers.to_string(), path.to_string()))
        })
        .filter(|(c, _)| !c.is_empty())
        .collect()
}

/// The cgroup path of `pid` in `controller` (v1).
pub fn cgroup_of(pid: i32, controller: &str) -> Option<String> {
    cgroups_of(pid)
        .into_iter()
        .find(|(c, _)| c.split(',').any(|n| n == controller))
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_never_targets_the_root_cgroup() {
        for bad in [
            "",
            "/",
            "/.",
            "/..",
            "/keel/.",
            "/keel/../x",
            "//",
            "/keel//x",
        ] {
            assert!(!is_safe_cgroup_path(bad), "{bad:?}");
        }
        assert!(is_safe_cgroup_path("/keel/abc-1-2"));
        assert!(is_safe_cgroup_path("keel-it/abc"));
    }

    #[test]
    fn parses_proc_pid_cgroup() {
        let me = i32::try_from(std::process::id()).expect("pid");
        assert!(cgroups_of(me)
            .iter()
            .any(|(c, _)| c.split(',').any(|n| n == "memory")));
    }
}
