//! The container's cgroup, through `cgroups-rs` (v1 here, v2 with the same code).
//!
//! STUB: interface fixed; implementation being written.

use oci_spec::runtime::LinuxResources;

/// Errors of cgroup management.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {msg}")]
    Manager { path: String, msg: String },
}

pub type Result<T> = std::result::Result<T, CgroupError>;

/// One container's cgroup, named by its path relative to the cgroup mounts (`/keel/<id>`).
#[derive(Debug)]
pub struct Cgroup {
    path: String,
}

impl Cgroup {
    /// The cgroup for `linux.cgroupsPath`, or `/keel/<id>` when the config names none.
    /// A relative path is taken under `/keel`, as runc takes it under its own parent.
    pub fn for_container(cgroups_path: Option<&str>, id: &str) -> Result<Self> {
        let path = match cgroups_path {
            Some(p) if p.starts_with('/') => p.to_string(),
            Some(p) => format!("/keel/{p}"),
            None => format!("/keel/{id}"),
        };
        Ok(Self { path })
    }

    /// The cgroup recorded in a container's state (`Cgroup::path`).
    pub fn load(path: &str) -> Result<Self> {
        Ok(Self { path: path.to_string() })
    }

    /// The path relative to the cgroup mounts, as stored in the state file.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Creates the cgroup in every hierarchy and applies `linux.resources`.
    pub fn apply(&mut self, _resources: Option<&LinuxResources>) -> Result<()> {
        Ok(())
    }

    /// Moves a process into the cgroup.
    pub fn add_process(&mut self, _pid: i32) -> Result<()> {
        Ok(())
    }

    /// The pids in the cgroup (and its children).
    pub fn pids(&self) -> Result<Vec<i32>> {
        Ok(Vec::new())
    }

    /// Freezes (`true`) or thaws (`false`) every process of the cgroup.
    pub fn set_frozen(&self, _frozen: bool) -> Result<()> {
        Ok(())
    }

    /// Whether the freezer reports the cgroup frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        Ok(false)
    }

    /// Removes the cgroup from every hierarchy. Missing cgroups are not an error.
    pub fn destroy(&mut self) -> Result<()> {
        Ok(())
    }
}
