//! The container's cgroup, through `cgroups-rs`'s `FsManager` (cgroup v1, hybrid and v2 alike).
//!
//! A cgroup is named by its path below the hierarchy roots (`/keel/<id>`): on v1 it is
//! `/sys/fs/cgroup/<controller>/keel/<id>` in every mounted hierarchy, on v2
//! `/sys/fs/cgroup/keel/<id>`, never below the runtime's own cgroup. `FsManager::new(base)` joins
//! `base` onto each mount point (it reads `/proc/self/cgroup` only for `cgroup_path()`, unused
//! here), and joins with `PathBuf::push`, so `base` must be given without its leading `/` or it
//! would replace the mount point.
//!
//! Resources are applied one `linux.resources` section at a time so a failure names the section,
//! and a section is checked against the mounted controllers first so a missing one (hugetlb is
//! often not mounted) is a clear error rather than cgroups-rs's "subsystems is empty".

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::thread;
use std::time::Duration;

use cgroups_rs::fs::hierarchies;
use cgroups_rs::fs::hugetlb::HugeTlbController;
use cgroups_rs::manager::{Error as ManagerError, FsManager, Manager};
use cgroups_rs::{CgroupPid, CgroupStats, FreezerState};
use oci_spec::runtime::{LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxResources};

/// The parent of containers whose config names no cgroup or a relative one.
const KEEL_PARENT: &str = "/keel";

/// Attempts to remove a cgroup directory that is busy (its last processes are still exiting).
const RMDIR_ATTEMPTS: u32 = 6;

/// Checks of the freezer state while freezing; runc allows about the same (1000 x ~1ms).
const FREEZE_POLLS: u32 = 1000;

/// Errors of cgroup management.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `linux.cgroupsPath` (or a stored path) cannot name a container cgroup.
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// No cgroup hierarchy is mounted, so there is nowhere to create the cgroup.
    #[error("cgroup {path}: no cgroup hierarchy is mounted under /sys/fs/cgroup")]
    NoHierarchy { path: String },
    /// The caller is not root and may not create cgroups here (rootless without delegation).
    #[error("cgroup {path}: not writable by this user: {msg}")]
    NotWritable { path: String, msg: String },
    /// A resource section needs a controller that is not mounted or not enabled.
    #[error(
        "cgroup {path}: linux.resources.{resource} needs the {controller} cgroup controller, \
         which is not available on this host"
    )]
    Unsupported {
        path: String,
        resource: &'static str,
        controller: String,
    },
    /// Writing a resource section failed.
    #[error("cgroup {path}: setting linux.resources.{resource}: {msg}")]
    Resource {
        path: String,
        resource: &'static str,
        msg: String,
    },
    /// Any other failure of the cgroup filesystem.
    #[error("cgroup {path}: {msg}")]
    Manager { path: String, msg: String },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, CgroupError>;

/// One container's cgroup, named by its path relative to the cgroup mounts (`/keel/<id>`).
#[derive(Debug)]
pub struct Cgroup {
    /// Normalized: one leading `/`, no `.`/`..`/empty components, never just `/`.
    path: String,
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
        Ok(Self { path })
    }

    /// The cgroup recorded in a container's state (`Cgroup::path`).
    pub fn load(path: &str) -> Result<Self> {
        Ok(Self {
            path: normalize(path)?,
        })
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

    /// Applies `resources` to the existing cgroup (`runc update`).
    pub fn update(&self, resources: &LinuxResources) -> Result<()> {
        let mut manager = self.manager()?;
        let available = available_controllers();
        let v2 = manager.v2();
        for (section, part) in self.sections(resources, v2)? {
            let missing = required_controllers(section, &part, v2)
                .into_iter()
                .find(|c| !available.contains(*c));
            if let Some(controller) = missing {
                return Err(self.unsupported(section, controller));
            }
            self.check_hugepage_sizes(&part)?;
            manager
                .set(&part)
                .map_err(|e| self.resource_err(section, describe(&e)))?;
        }
        if let Some(unified) = resources.unified().as_ref().filter(|u| !u.is_empty()) {
            self.set_unified(unified, v2)?;
        }
        Ok(())
    }

    /// Moves a process into the cgroup.
    pub fn add_process(&mut self, pid: i32) -> Result<()> {
        let pid = u64::try_from(pid).map_err(|_| self.err(format!("invalid pid {pid}")))?;
        self.manager()?
            .add_proc(CgroupPid::from(pid))
            .map_err(|e| self.fs_err(&e))
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
        FsManager::new(self.relative()).map_err(|e| self.err(describe(&e)))
    }

    /// The cgroup's directory in each hierarchy (one on v2).
    fn dirs(&self) -> Vec<PathBuf> {
        let cgroup = cgroups_rs::fs::Cgroup::load(hierarchies::auto(), self.relative());
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
        let cgroup = cgroups_rs::fs::Cgroup::load(hierarchies::auto(), self.relative());
        cgroup
            .subsystems()
            .iter()
            .find(|s| s.controller_name() == "freezer")
            .map(|s| s.to_controller().path().to_path_buf())
            .ok_or_else(|| self.err("the freezer cgroup controller is not available".to_string()))
    }

    /// Creates the directories; true when the cgroup did not exist before.
    fn create(&self) -> Result<bool> {
        let cgroup = cgroups_rs::fs::Cgroup::load(hierarchies::auto(), self.relative());
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

    /// Splits `resources` into single-section `LinuxResources`, skipping empty sections.
    fn sections(
        &self,
        res: &LinuxResources,
        v2: bool,
    ) -> Result<Vec<(&'static str, LinuxResources)>> {
        let mut parts = Vec::new();
        if let Some(cpu) = res.cpu().as_ref().filter(|c| !cpu_is_empty(c)) {
            parts.push(("cpu", only(|r| r.set_cpu(Some(cpu.clone())))));
        }
        if let Some(memory) = res.memory().as_ref().filter(|m| !memory_is_empty(m)) {
            let memory = self.fit_memory(memory)?;
            parts.push(("memory", only(|r| r.set_memory(Some(memory)))));
        }
        if let Some(pids) = res.pids() {
            parts.push(("pids", only(|r| r.set_pids(Some(*pids)))));
        }
        if let Some(blkio) = res.block_io().as_ref().filter(|b| !blkio_is_empty(b)) {
            parts.push(("blockIO", only(|r| r.set_block_io(Some(blkio.clone())))));
        }
        if let Some(limits) = res.hugepage_limits().as_ref().filter(|l| !l.is_empty()) {
            parts.push((
                "hugepageLimits",
                only(|r| r.set_hugepage_limits(Some(limits.clone()))),
            ));
        }
        if let Some(net) = res.network() {
            parts.push(("network", only(|r| r.set_network(Some(net.clone())))));
        }
        if let Some(devices) = res.devices().as_ref().filter(|d| !d.is_empty()) {
            if v2 {
                // cgroup v2 controls devices with eBPF programs, which cgroups-rs does not load.
                tracing::warn!(cgroup = %self.path, "device rules not enforced on cgroup v2");
            } else {
                parts.push((
                    "devices",
                    only(|r| r.set_devices(Some(device_rules(devices)))),
                ));
            }
        }
        if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(self.resource_err("rdma", "not supported by keel-runtime".to_string()));
        }
        Ok(parts)
    }

    /// Adapts memory settings to a v1 kernel without swap accounting (`memory.memsw.*` absent),
    /// where cgroups-rs would fail writing the swap limit even when it only means "unlimited".
    fn fit_memory(&self, memory: &LinuxMemory) -> Result<LinuxMemory> {
        let mut memory = *memory;
        let memory_dir = self
            .dirs()
            .into_iter()
            .find(|d| d.join("memory.limit_in_bytes").exists());
        // Only v1 has memory.limit_in_bytes: v2 needs no adapting.
        let Some(dir) = memory_dir.filter(|d| !d.join("memory.memsw.limit_in_bytes").exists())
        else {
            return Ok(memory);
        };
        if memory.swap().is_some_and(|s| s > 0) {
            let msg = "swap limit set but the kernel has no swap accounting (swapaccount=1)";
            return Err(self.resource_err("memory", msg.to_string()));
        }
        memory.set_swap(None);
        if memory.limit() == Some(-1) {
            // cgroups-rs pairs limit -1 with a swap limit of -1, which it cannot write here.
            fs::write(dir.join("memory.limit_in_bytes"), "-1")
                .map_err(|e| self.resource_err("memory", format!("limit -1: {e}")))?;
            memory.set_limit(None);
        }
        Ok(memory)
    }

    /// hugetlb page sizes the kernel lacks, which cgroups-rs would skip silently.
    fn check_hugepage_sizes(&self, part: &LinuxResources) -> Result<()> {
        let Some(limits) = part.hugepage_limits() else {
            return Ok(());
        };
        let cgroup = cgroups_rs::fs::Cgroup::load(hierarchies::auto(), self.relative());
        let Some(hugetlb) = cgroup.controller_of::<HugeTlbController>() else {
            return Err(self.unsupported("hugepageLimits", "hugetlb"));
        };
        match limits
            .iter()
            .find(|l| !hugetlb.size_supported(l.page_size()))
        {
            Some(l) => Err(self.resource_err(
                "hugepageLimits",
                format!(
                    "page size {} not supported (have {:?})",
                    l.page_size(),
                    hugetlb.get_sizes()
                ),
            )),
            None => Ok(()),
        }
    }

    /// `linux.resources.unified`: cgroup v2 files written as given.
    fn set_unified(&self, unified: &HashMap<String, String>, v2: bool) -> Result<()> {
        if !v2 {
            let msg = "needs cgroup v2, but this host uses cgroup v1".to_string();
            return Err(self.resource_err("unified", msg));
        }
        let dir = hierarchies::auto().root().join(self.relative());
        for (key, value) in unified {
            if key.is_empty() || key.contains('/') || key.starts_with('.') {
                return Err(self.resource_err("unified", format!("invalid file name {key:?}")));
            }
            fs::write(dir.join(key), value)
                .map_err(|e| self.resource_err("unified", format!("{key}: {e}")))?;
        }
        Ok(())
    }

    fn err(&self, msg: String) -> CgroupError {
        CgroupError::Manager {
            path: self.path.clone(),
            msg,
        }
    }

    fn io_err(&self, dir: &Path, err: &io::Error) -> CgroupError {
        let hint = if is_busy(err) {
            " (processes still in it)"
        } else {
            ""
        };
        self.err(format!("{}: {err}{hint}", dir.display()))
    }

    fn resource_err(&self, resource: &'static str, msg: String) -> CgroupError {
        CgroupError::Resource {
            path: self.path.clone(),
            resource,
            msg,
        }
    }

    fn unsupported(&self, resource: &'static str, controller: &str) -> CgroupError {
        let controller = controller.to_string();
        CgroupError::Unsupported {
            path: self.path.clone(),
            resource,
            controller,
        }
    }

    /// A failure to create or join, told apart when it is a rootless caller lacking permission.
    fn fs_err(&self, err: &(dyn std::error::Error + 'static)) -> CgroupError {
        let msg = describe(err);
        if !nix::unistd::geteuid().is_root() && is_permission_error(err) {
            return CgroupError::NotWritable {
                path: self.path.clone(),
                msg,
            };
        }
        self.err(msg)
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

/// Names of the controllers mounted (v1) or available (v2), as cgroups-rs names them.
fn available_controllers() -> HashSet<String> {
    hierarchies::auto()
        .subsystems()
        .iter()
        .map(|s| s.controller_name())
        .collect()
}

/// The controllers cgroups-rs needs to apply one section. It looks up the cpuset and cpu
/// controllers for any cpu section, whatever fields are set, so both are required.
fn required_controllers(section: &str, part: &LinuxResources, v2: bool) -> Vec<&'static str> {
    match section {
        "cpu" => vec!["cpuset", "cpu"],
        "memory" => vec!["memory"],
        "pids" => vec!["pids"],
        "blockIO" => vec!["blkio"],
        "hugepageLimits" => vec!["hugetlb"],
        "devices" if !v2 => vec!["devices"],
        "network" => {
            let net = part.network().as_ref();
            let mut needed = Vec::new();
            if net.is_some_and(|n| n.class_id().is_some()) {
                needed.push("net_cls");
            }
            if net.is_some_and(|n| n.priorities().as_ref().is_some_and(|p| !p.is_empty())) {
                needed.push("net_prio");
            }
            needed
        }
        _ => Vec::new(),
    }
}

fn cpu_is_empty(cpu: &LinuxCpu) -> bool {
    cpu.shares().unwrap_or(0) == 0
        && cpu.quota().is_none()
        && cpu.period().is_none()
        && cpu.realtime_runtime().is_none()
        && cpu.realtime_period().is_none()
        && cpu.cpus().as_ref().is_none_or(|s| s.is_empty())
        && cpu.mems().as_ref().is_none_or(|s| s.is_empty())
}

fn memory_is_empty(memory: &LinuxMemory) -> bool {
    memory.limit().is_none()
        && memory.reservation().is_none()
        && memory.swap().is_none()
        && memory.swappiness().is_none()
        && !memory.disable_oom_killer().unwrap_or(false)
}

fn blkio_is_empty(blkio: &oci_spec::runtime::LinuxBlockIo) -> bool {
    serde_json::to_value(blkio).is_ok_and(|v| v.as_object().is_some_and(|o| o.is_empty()))
}

/// Device rules with the spec's defaults made explicit: cgroups-rs writes a missing major or
/// minor as 0 where the spec means "any" (`c 136:* rwm` would become `c 136:0 rwm`).
fn device_rules(rules: &[LinuxDeviceCgroup]) -> Vec<LinuxDeviceCgroup> {
    let mut rules = rules.to_vec();
    for rule in &mut rules {
        rule.set_major(Some(rule.major().unwrap_or(-1)));
        rule.set_minor(Some(rule.minor().unwrap_or(-1)));
        if rule.access().as_ref().is_none_or(|a| a.is_empty()) {
            rule.set_access(Some("rwm".to_string()));
        }
    }
    rules
}

/// A cgroups-rs error as one line: what failed, then the OS error under it.
fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    if let Some(ManagerError::Cgroupfs(inner)) = err.downcast_ref::<ManagerError>() {
        return describe(inner);
    }
    if let Some(fs_err) = err.downcast_ref::<cgroups_rs::fs::error::Error>() {
        return match std::error::Error::source(fs_err) {
            Some(cause) => format!("{}: {cause}", fs_err.kind()),
            None => fs_err.kind().to_string(),
        };
    }
    err.to_string()
}

/// Whether an OS permission error (EACCES, EPERM, EROFS) is anywhere in the chain.
fn is_permission_error(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            let code = io.raw_os_error();
            if io.kind() == io::ErrorKind::PermissionDenied || code == Some(libc::EROFS) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

/// A `LinuxResources` with only what `set` puts in it.
fn only(set: impl FnOnce(&mut LinuxResources) -> &mut LinuxResources) -> LinuxResources {
    let mut resources = LinuxResources::default();
    set(&mut resources);
    resources
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

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxHugepageLimitBuilder,
        LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };
    use std::process::{Child, Command};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Removes the test cgroup whatever happens to the test.
    struct Guard(Cgroup);

    impl Drop for Guard {
        fn drop(&mut self) {
            if let Err(err) = self.0.destroy() {
                eprintln!("cleanup of {}: {err}", self.0.path());
            }
        }
    }

    /// Kills and reaps a child whatever happens to the test.
    struct Reaped(Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// A fresh `/keel-test-<pid>-<n>` cgroup, or None (with the reason) when not root.
    fn test_cgroup() -> Option<Guard> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: creating cgroups needs root");
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = format!("/keel-test-{}-{n}{nanos}", std::process::id());
        Some(Guard(Cgroup::load(&path).unwrap()))
    }

    fn v1() -> bool {
        !hierarchies::is_cgroup2_unified_mode()
    }

    /// The cgroup's file `name` (in whichever hierarchy has it), trimmed.
    fn read_file(cg: &Cgroup, name: &str) -> String {
        let dir = cg
            .dirs()
            .into_iter()
            .find(|d| d.join(name).exists())
            .unwrap();
        fs::read_to_string(dir.join(name))
            .unwrap()
            .trim()
            .to_string()
    }

    fn sleeper() -> Reaped {
        Reaped(Command::new("sleep").arg("100").spawn().unwrap())
    }

    #[test]
    fn paths_for_containers() {
        let path = |p: Option<&str>| Cgroup::for_container(p, "c1").map(|c| c.path().to_string());
        assert_eq!(path(None).unwrap(), "/keel/c1");
        assert_eq!(path(Some("")).unwrap(), "/keel/c1");
        assert_eq!(path(Some("/docker/abc")).unwrap(), "/docker/abc");
        assert_eq!(path(Some("pod1/c1")).unwrap(), "/keel/pod1/c1");
        assert_eq!(path(Some("//a/./b/")).unwrap(), "/a/b");
        for bad in ["/a/../../etc", "../x", "/", "."] {
            let err = path(Some(bad)).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidPath { .. }),
                "{bad}: {err}"
            );
        }
        assert!(Cgroup::for_container(None, "..").is_err());
        assert!(Cgroup::for_container(None, "").is_err());
        assert_eq!(Cgroup::load("/keel/x").unwrap().path(), "/keel/x");
    }

    #[test]
    fn device_rules_make_wildcards_explicit() {
        let rule = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(136)
            .build()
            .unwrap();
        let rules = device_rules(&[rule]);
        assert_eq!(rules[0].major(), Some(136));
        assert_eq!(rules[0].minor(), Some(-1));
        assert_eq!(rules[0].access().as_deref(), Some("rwm"));
    }

    #[test]
    fn limits_are_written_at_the_hierarchy_root() {
        let Some(mut guard) = test_cgroup() else {
            return;
        };
        let resources = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64 << 20)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(32).build().unwrap())
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000)
                    .period(100_000u64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        guard.0.apply(Some(&resources)).unwrap();
        let cg = &guard.0;
        if v1() {
            // Absolute in each hierarchy, not below this process's own cgroup.
            let dir = Path::new("/sys/fs/cgroup/memory").join(cg.relative());
            assert!(dir.is_dir(), "{} missing", dir.display());
            assert_eq!(
                read_file(cg, "memory.limit_in_bytes"),
                (64u64 << 20).to_string()
            );
            assert_eq!(read_file(cg, "cpu.shares"), "512");
            assert_eq!(read_file(cg, "cpu.cfs_quota_us"), "50000");
            assert_eq!(read_file(cg, "cpu.cfs_period_us"), "100000");
        } else {
            assert!(Path::new("/sys/fs/cgroup").join(cg.relative()).is_dir());
            assert_eq!(read_file(cg, "memory.max"), (64u64 << 20).to_string());
            assert_eq!(read_file(cg, "cpu.max"), "50000 100000");
        }
        assert_eq!(read_file(cg, "pids.max"), "32");
    }

    #[test]
    fn process_lifecycle_pids_freeze_destroy() {
        let Some(mut guard) = test_cgroup() else {
            return;
        };
        guard.0.apply(None).unwrap();
        let mut child = sleeper();
        let pid = i32::try_from(child.0.id()).unwrap();
        guard.0.add_process(pid).unwrap();
        assert_eq!(guard.0.pids().unwrap(), [pid]);

        guard.0.set_frozen(true).unwrap();
        assert!(guard.0.is_frozen().unwrap());
        guard.0.set_frozen(false).unwrap();
        assert!(!guard.0.is_frozen().unwrap());

        // A live process keeps the cgroup: destroy fails rather than move it out.
        let err = guard.0.destroy().unwrap_err();
        assert!(err.to_string().contains("processes still in it"), "{err}");
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        guard.0.destroy().unwrap();
        assert!(guard.0.dirs().iter().all(|d| !d.exists()));
        assert!(guard.0.pids().unwrap().is_empty());
        // Destroying what is gone is fine.
        guard.0.destroy().unwrap();
    }

    #[test]
    fn pids_include_child_cgroups() {
        let Some(mut guard) = test_cgroup() else {
            return;
        };
        guard.0.apply(None).unwrap();
        let mut nested = Cgroup::load(&format!("{}/inner", guard.0.path())).unwrap();
        nested.apply(None).unwrap();
        let child = sleeper();
        let pid = i32::try_from(child.0.id()).unwrap();
        nested.add_process(pid).unwrap();
        assert_eq!(guard.0.pids().unwrap(), [pid]);
        drop(child);
        // The outer destroy removes the inner cgroup too (after the guard's retry on EBUSY).
        guard.0.destroy().unwrap();
        assert!(nested.dirs().iter().all(|d| !d.exists()));
    }

    #[test]
    fn device_rules_are_written_in_order() {
        let Some(mut guard) = test_cgroup() else {
            return;
        };
        if !v1() {
            eprintln!("skipped: device rules need cgroup v1 here");
            return;
        }
        let rule = |allow, typ, major, minor: Option<i64>| {
            let b = LinuxDeviceCgroupBuilder::default()
                .allow(allow)
                .typ(typ)
                .access("rwm");
            let b = if let Some(m) = major { b.major(m) } else { b };
            let b = if let Some(m) = minor { b.minor(m) } else { b };
            b.build().unwrap()
        };
        let devices = vec![
            rule(false, LinuxDeviceType::A, None, None),
            rule(true, LinuxDeviceType::C, Some(1), Some(3)),
            rule(true, LinuxDeviceType::C, Some(136), None),
        ];
        let resources = LinuxResourcesBuilder::default()
            .devices(devices)
            .build()
            .unwrap();
        guard.0.apply(Some(&resources)).unwrap();
        let list = read_file(&guard.0, "devices.list");
        assert_eq!(
            list.lines().collect::<Vec<_>>(),
            ["c 1:3 rwm", "c 136:* rwm"]
        );
    }

    #[test]
    fn missing_controller_is_named() {
        let Some(mut guard) = test_cgroup() else {
            return;
        };
        let limit = LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(1 << 21)
            .build();
        let resources = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![limit.unwrap()])
            .build()
            .unwrap();
        let result = guard.0.apply(Some(&resources));
        if available_controllers().contains("hugetlb") {
            eprintln!("hugetlb is mounted here: checking it applies instead");
            result.unwrap();
            return;
        }
        let err = result.unwrap_err();
        assert!(matches!(
            err,
            CgroupError::Unsupported {
                resource: "hugepageLimits",
                ..
            }
        ));
        assert!(err.to_string().contains("hugetlb"), "{err}");
        // apply created the cgroup, so its failure removed it.
        assert!(guard.0.dirs().iter().all(|d| !d.exists()));
    }

    /// Run by `rootless_apply_is_not_writable` as an unprivileged user; does nothing otherwise.
    #[test]
    fn unprivileged_child() {
        let Ok(path) = std::env::var("KEEL_CGROUP_TEST_CHILD") else {
            return;
        };
        let err = Cgroup::load(&path).unwrap().apply(None).unwrap_err();
        assert!(matches!(err, CgroupError::NotWritable { .. }), "{err}");
    }

    #[test]
    fn rootless_apply_is_not_writable() {
        let Some(guard) = test_cgroup() else { return };
        let exe = std::env::current_exe().unwrap();
        let status = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(exe)
            .args([
                "--exact",
                "cgroups::tests::unprivileged_child",
                "--test-threads=1",
            ])
            .env("KEEL_CGROUP_TEST_CHILD", guard.0.path())
            .status();
        match status {
            Ok(status) => assert!(status.success(), "unprivileged child failed: {status}"),
            Err(err) => eprintln!("skipped: cannot run setpriv: {err}"),
        }
    }
}
