//! The container's cgroup, through `cgroups-rs`'s `FsManager` (cgroup v1, hybrid and v2 alike).
//!
//! A cgroup is named by its path below the hierarchy roots (`/keel/<id>`): on v1 it is
//! `/sys/fs/cgroup/<controller>/keel/<id>` in every mounted hierarchy, on v2
//! `/sys/fs/cgroup/keel/<id>`, never below the runtime's own cgroup. `FsManager::new(base)` joins
//! `base` onto each mount point (it reads `/proc/self/cgroup` only for `cgroup_path()`, unused
//! here), and joins with `PathBuf::push`, so `base` must be given without its leading `/` or it
//! would replace the mount point.
//!
//! Applying `linux.resources` is in `resources`, the errors and how cgroups-rs failures map to
//! them in `error`.

mod error;
pub mod events;
mod resources;
#[cfg(test)]
mod tests;

use std::cell::OnceCell;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::thread;
use std::time::Duration;

use cgroups_rs::fs::hierarchies;
use cgroups_rs::manager::{FsManager, Manager};
use cgroups_rs::{CgroupPid, CgroupStats, FreezerState};
use oci_spec::runtime::LinuxResources;

use error::describe;
pub use error::{CgroupError, Result};

/// The parent of containers whose config names no cgroup or a relative one.
const KEEL_PARENT: &str = "/keel";

/// Attempts to remove a cgroup directory that is busy (its last processes are still exiting).
const RMDIR_ATTEMPTS: u32 = 6;

/// Checks of the freezer state while freezing; runc allows about the same (1000 x ~1ms).
const FREEZE_POLLS: u32 = 1000;

/// One container's cgroup, named by its path relative to the cgroup mounts (`/keel/<id>`).
#[derive(Debug)]
pub struct Cgroup {
    /// Normalized: one leading `/`, no `.`/`..`/empty components, never just `/`.
    path: String,
    /// cgroups-rs's view of the hierarchies and the manager, made once: each reads
    /// /proc/self/mountinfo, which a create would otherwise parse nine times.
    fs: OnceCell<cgroups_rs::fs::Cgroup>,
    manager: OnceCell<FsManager>,
}

impl Cgroup {
    /// The cgroup for `linux.cgroupsPath`, or `/keel/<id>` when the config names none.
    /// A relative path is taken under `/keel`, as runc takes it under its own parent.
    pub fn for_container(cgroups_path: Option<&str>, id: &str) -> Result<Self> {
        let path = match cgroups_path.filter(|p| !p.is_empty()) {
            Some(p) if p.starts_with('/') => normalize(p)?,
            // Normalized on its own first, so `.` cannot name /keel itself.
            Some(p) => format!("{KEEL_PARENT}{}", normalize(p)?),
            None => format!("{KEEL_PARENT}{}", normalize(id)?),
        };
        Ok(Self::new(path))
    }

    /// The cgroup recorded in a container's state (`Cgroup::path`).
    pub fn load(path: &str) -> Result<Self> {
        Ok(Self::new(normalize(path)?))
    }

    /// Whether the cgroup exists already (in any hierarchy).
    pub fn exists(&self) -> bool {
        self.loaded().exists()
    }

    /// The path relative to the cgroup mounts, as stored in the state file.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Creates the cgroup in every hierarchy and applies `linux.resources`.
    ///
    /// If this creates the cgroup and then fails, it removes it again. Fails with
    /// [`CgroupError::NotWritable`] when a non-root caller may not create it (rootless).
    pub fn apply(&mut self, resources: Option<&LinuxResources>) -> Result<()> {
        let created = self.create()?;
        let Some(resources) = resources else {
            return Ok(());
        };
        let result = self.update(resources);
        if result.is_err() && created {
            if let Err(err) = self.destroy() {
                tracing::warn!(error = %err, "removing cgroup after failed apply");
            }
        }
        result
    }

    /// Moves a process into the cgroup.
    pub fn add_process(&mut self, pid: i32) -> Result<()> {
        let pid = u64::try_from(pid).map_err(|_| self.err(format!("invalid pid {pid}")))?;
        self.manager()?
            .add_proc(CgroupPid::from(pid))
            .map_err(|e| self.fs_err(&e))
    }

    /// The `tasks` file of the cgroup in every hierarchy when all are v1, else none: a
    /// single-threaded process joins by writing "0" to each, which skips the kernel's global
    /// threadgroup lock (and its RCU grace period) that a write to `cgroup.procs` takes.
    pub fn v1_task_files(&self) -> Vec<PathBuf> {
        let files: Vec<PathBuf> = self.dirs().into_iter().map(|d| d.join("tasks")).collect();
        if files.is_empty() || !files.iter().all(|f| f.exists()) {
            return Vec::new();
        }
        files
    }

    /// The pids in the cgroup (and its children), sorted; none when the cgroup does not exist.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut pids = Vec::new();
        for dir in self.dirs() {
            collect_procs(&dir, &mut pids).map_err(|e| self.io_err(&dir, &e))?;
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Freezes (`true`) or thaws (`false`) every process of the cgroup.
    ///
    /// Freezing waits until the kernel reports the cgroup frozen; if it never does, the cgroup
    /// is thawed again and an error returned, as runc does.
    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        self.freezer_dir()?;
        let manager = self.manager()?;
        let freeze = |state| manager.freeze(state).map_err(|e| self.fs_err(&e));
        if !frozen {
            return freeze(FreezerState::Thawed);
        }
        for attempt in 0..FREEZE_POLLS {
            // v1 can stay FREEZING when a task is busy in the kernel; writing again retries it.
            if attempt % 10 == 0 {
                freeze(FreezerState::Frozen)?;
            }
            if self.is_frozen()? {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(1));
        }
        freeze(FreezerState::Thawed)?;
        Err(self.err("timed out waiting for the freezer to freeze every process".to_string()))
    }

    /// Whether the freezer reports the cgroup frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        let dir = self.freezer_dir()?;
        if hierarchies::is_cgroup2_unified_mode() {
            // cgroup.freeze is the request; cgroup.events says whether it is done.
            let events =
                fs::read_to_string(dir.join("cgroup.events")).map_err(|e| self.io_err(&dir, &e))?;
            return Ok(events.lines().any(|l| l.trim() == "frozen 1"));
        }
        let state =
            fs::read_to_string(dir.join("freezer.state")).map_err(|e| self.io_err(&dir, &e))?;
        Ok(state.trim() == "FROZEN")
    }

    /// Removes the cgroup (and any cgroups below it) from every hierarchy.
    ///
    /// Missing cgroups are not an error. A cgroup still busy after about 300 ms (its processes
    /// have not all exited) is: this never moves processes out, so none escape their limits.
    pub fn destroy(&mut self) -> Result<()> {
        let mut pending = self.dirs();
        let mut first_err = None;
        let mut delay = Duration::from_millis(10);
        for attempt in 1..=RMDIR_ATTEMPTS {
            let mut busy = Vec::new();
            for dir in pending {
                match remove_cgroup_tree(&dir) {
                    Ok(()) => {}
                    // The kernel may still be releasing exited processes: retry all busy
                    // hierarchies together, so the wait is paid once, not once per hierarchy.
                    Err(e) if is_busy(&e) && attempt < RMDIR_ATTEMPTS => busy.push(dir),
                    Err(e) => {
                        first_err.get_or_insert_with(|| self.io_err(&dir, &e));
                    }
                }
            }
            if busy.is_empty() {
                break;
            }
            pending = busy;
            thread::sleep(delay);
            delay *= 2;
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Usage counters of the cgroup (for `events --stats`); missing controllers read as zero.
    pub fn stats(&self) -> Result<CgroupStats> {
        Ok(self.manager()?.stats())
    }

    /// The path as cgroups-rs wants it: relative to each hierarchy's mount point.
    fn relative(&self) -> &str {
        self.path.trim_start_matches('/')
    }

    fn manager(&self) -> Result<FsManager> {
        if let Some(m) = self.manager.get() {
            return Ok(m.clone());
        }
        let m = FsManager::new(self.relative()).map_err(|e| self.err(describe(&e)))?;
        Ok(self.manager.get_or_init(|| m).clone())
    }

    /// cgroups-rs's cgroup, loaded (not created) once.
    pub(super) fn loaded(&self) -> &cgroups_rs::fs::Cgroup {
        self.fs
            .get_or_init(|| cgroups_rs::fs::Cgroup::load(hierarchies::auto(), self.relative()))
    }

    fn new(path: String) -> Self {
        Self {
            path,
            fs: OnceCell::new(),
            manager: OnceCell::new(),
        }
    }

    /// The cgroup's directory in each hierarchy (one on v2).
    fn dirs(&self) -> Vec<PathBuf> {
        let cgroup = self.loaded();
        let mut dirs: Vec<PathBuf> = cgroup
            .subsystems()
            .iter()
            .map(|s| s.to_controller().path().to_path_buf())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    fn freezer_dir(&self) -> Result<PathBuf> {
        self.controller_dir("freezer")
            .ok_or_else(|| self.err("the freezer cgroup controller is not available".to_string()))
    }

    /// The cgroup's directory in the hierarchy of `controller`, if mounted.
    pub(super) fn controller_dir(&self, controller: &str) -> Option<PathBuf> {
        self.loaded()
            .subsystems()
            .iter()
            .find(|s| s.controller_name() == controller)
            .map(|s| s.to_controller().path().to_path_buf())
    }

    /// Creates the directories; true when the cgroup did not exist before.
    fn create(&self) -> Result<bool> {
        let cgroup = self.loaded();
        if cgroup.subsystems().is_empty() {
            return Err(CgroupError::NoHierarchy {
                path: self.path.clone(),
            });
        }
        let existed = cgroup.exists();
        if let Err(err) = cgroup.create() {
            if !existed {
                // Some hierarchies may have been created before the failing one.
                self.dirs().iter().for_each(|d| drop(remove_cgroup_tree(d)));
            }
            return Err(self.fs_err(&err));
        }
        Ok(!existed)
    }
}

/// Checks `path` can name a container cgroup and normalizes it to `/a/b`.
fn normalize(path: &str) -> Result<String> {
    let invalid = |reason| CgroupError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    let mut parts = Vec::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::ParentDir => return Err(invalid("\"..\" is not allowed")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if parts.is_empty() {
        return Err(invalid("it names no cgroup below the root"));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Appends the pids in `dir`'s `cgroup.procs` and in every cgroup below it.
fn collect_procs(dir: &Path, pids: &mut Vec<i32>) -> io::Result<()> {
    // Cgroups can vanish while we walk (their last process exited): that is not an error.
    let procs = match fs::read_to_string(dir.join("cgroup.procs")) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            collect_procs(&entry.path(), pids)?;
        }
    }
    Ok(())
}

/// Removes a cgroup directory, children first; a missing one is already removed.
fn remove_cgroup_tree(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn is_busy(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EBUSY)
}
