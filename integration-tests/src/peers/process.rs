//! Daemons under guard, their logs, and sweeping up what they leave: processes that refer to a
//! temp dir (shims outlive their containerd), and cgroups in every hierarchy.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::host;

/// A daemon started by a test: stdout and stderr go to its log file; dropping it stops it
/// (SIGTERM, then SIGKILL after a grace period) and reaps it.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` in its own process group, stdin from /dev/null, output appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("dup the log file")?)
            .stderr(file)
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawning {name} ({:?})", cmd.get_program()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The daemon's pid.
    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(-1)
    }

    /// The daemon's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Some("exited with ...")` once the daemon has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited ({status})", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("{} cannot be waited for: {e}", self.name)),
        }
    }

    /// Sends SIGTERM, waits up to `grace` for the exit, then SIGKILLs and reaps. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// The last `n` lines of a log file (or why it cannot be read).
pub fn log_tail(log: &Path, n: usize) -> String {
    log_lines(log, |_| true, n)
}

/// The last `n` lines of a log file for which `keep` holds, joined by newlines.
pub fn log_lines(log: &Path, keep: impl Fn(&str) -> bool, n: usize) -> String {
    let text = match fs::read(log) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return format!("(cannot read {}: {e})", log.display()),
    };
    let kept: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
    kept[kept.len().saturating_sub(n)..].join("\n")
}

/// Polls `check` every 50 ms until it holds or `timeout` passes; fails early with the
/// daemon's exit if it dies meanwhile. `Ok(false)` on timeout.
pub fn wait_for(
    daemon: &mut Daemon,
    timeout: Duration,
    mut check: impl FnMut() -> bool,
) -> std::result::Result<bool, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return Ok(true);
        }
        if let Some(exit) = daemon.exited() {
            return Err(exit);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The argv of a process (empty if it is gone).
pub fn argv_of(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes (not this one, not pid 1) whose command line names something under `dir`,
/// or whose working directory or root is under it.
pub fn processes_referring_to(dir: &Path) -> Vec<i32> {
    if !is_sweepable(dir) {
        return Vec::new();
    }
    let needle = dir.to_string_lossy().into_owned();
    let ours = i32::try_from(std::process::id()).unwrap_or(0);
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|&pid| pid > 1 && pid != ours && host::pid_alive(pid))
        .filter(|&pid| {
            argv_of(pid).iter().any(|a| a.contains(&needle))
                || ["cwd", "root"].iter().any(|link| {
                    fs::read_link(format!("/proc/{pid}/{link}"))
                        .is_ok_and(|target| target.starts_with(dir))
                })
        })
        .collect()
}

/// SIGKILLs every process referring to `dir` (see [`processes_referring_to`]), a few rounds
/// for the ones forked meanwhile, and waits (bounded) for them to go. Returns the argv of
/// each process killed. Does nothing for a directory too near the root to be a temp dir.
pub fn sweep(dir: &Path) -> Vec<Vec<String>> {
    let mut killed = Vec::new();
    for _ in 0..5 {
        let pids = processes_referring_to(dir);
        if pids.is_empty() {
            break;
        }
        for &pid in &pids {
            killed.push(argv_of(pid));
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        host::wait_until(Duration::from_secs(2), || {
            pids.iter().all(|&p| !host::pid_alive(p))
        });
    }
    killed
}

/// Whether `dir` is absolute and at least two levels deep (`/tmp/x`), so that sweeping or
/// unmounting under it cannot reach the host's own processes or mounts.
pub fn is_sweepable(dir: &Path) -> bool {
    dir.is_absolute() && dir.components().count() >= 3
}

/// Thaws, empties (SIGKILL) and removes `cgroup_path`, children first, in every mounted
/// hierarchy (cgroup v1 controllers, named hierarchies such as `name=systemd`, or the v2
/// root). Refuses paths that are not [`host::is_safe_cgroup_path`]. Errors are ignored.
pub fn remove_cgroup_everywhere(cgroup_path: &str) {
    if !host::is_safe_cgroup_path(cgroup_path) {
        return;
    }
    let relative = cgroup_path.trim_start_matches('/');
    let root = Path::new(host::CGROUP_ROOT);
    let mut hierarchies = vec![];
    if root.join("cgroup.procs").exists() {
        hierarchies.push(root.to_path_buf());
    } else if let Ok(entries) = fs::read_dir(root) {
        hierarchies.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists()),
        );
    }
    for hierarchy in hierarchies {
        remove_cgroup_dir(&hierarchy.join(relative));
    }
}

fn remove_cgroup_dir(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    // A frozen task takes no SIGKILL: thaw first (v1 freezer, v2 cgroup.freeze).
    let _ = fs::write(dir.join("freezer.state"), "THAWED");
    let _ = fs::write(dir.join("cgroup.freeze"), "0");
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_dir(&entry.path());
            }
        }
    }
    let ours = i32::try_from(std::process::id()).unwrap_or(0);
    for _ in 0..100 {
        let pids: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|&p| p > 1 && p != ours)
            .collect();
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `cgroup_path` exists in any mounted hierarchy.
pub fn cgroup_exists_anywhere(cgroup_path: &str) -> bool {
    let relative = cgroup_path.trim_start_matches('/');
    let root = Path::new(host::CGROUP_ROOT);
    if root.join("cgroup.procs").exists() {
        return root.join(relative).is_dir();
    }
    fs::read_dir(root).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().join("cgroup.procs").exists() && e.path().join(relative).is_dir())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_sweeps_near_the_root() {
        for dir in ["/", "/tmp", "tmp/x", ""] {
            assert!(!is_sweepable(Path::new(dir)), "{dir}");
            assert!(processes_referring_to(Path::new(dir)).is_empty());
        }
        assert!(is_sweepable(Path::new("/tmp/keel-ctrd-x")));
    }

    #[test]
    fn finds_a_process_by_its_command_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new("sleep")
            .arg("30")
            .current_dir(dir.path())
            .spawn()
            .expect("spawn sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        // Until its exec the child is a fork of this test binary, already in `dir`.
        let exec_done = || argv_of(pid).first().is_some_and(|a| a.ends_with("sleep"));
        assert!(host::wait_until(Duration::from_secs(5), exec_done));
        assert!(processes_referring_to(dir.path()).contains(&pid));
        let killed = sweep(dir.path());
        assert!(killed
            .iter()
            .any(|argv| argv.first().is_some_and(|a| a.ends_with("sleep"))));
        let _ = child.wait();
    }

    #[test]
    fn tails_a_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        fs::write(&log, "a\nb error\nc\nd error\n").expect("write");
        assert_eq!(log_tail(&log, 2), "c\nd error");
        assert_eq!(
            log_lines(&log, |l| l.contains("error"), 5),
            "b error\nd error"
        );
    }
}
