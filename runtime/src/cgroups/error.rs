//! Errors of cgroup management, and how cgroups-rs failures become them: one line each, with a
//! rootless caller's missing permission told apart.

use std::io;
use std::path::Path;

use cgroups_rs::manager::Error as ManagerError;

use super::{is_busy, Cgroup};

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

impl Cgroup {
    pub(super) fn err(&self, msg: String) -> CgroupError {
        CgroupError::Manager {
            path: self.path.clone(),
            msg,
        }
    }

    pub(super) fn io_err(&self, dir: &Path, err: &io::Error) -> CgroupError {
        let hint = if is_busy(err) {
            " (processes still in it)"
        } else {
            ""
        };
        self.err(format!("{}: {err}{hint}", dir.display()))
    }

    pub(super) fn resource_err(&self, resource: &'static str, msg: String) -> CgroupError {
        CgroupError::Resource {
            path: self.path.clone(),
            resource,
            msg,
        }
    }

    pub(super) fn unsupported(&self, resource: &'static str, controller: &str) -> CgroupError {
        let controller = controller.to_string();
        CgroupError::Unsupported {
            path: self.path.clone(),
            resource,
            controller,
        }
    }

    /// A failure to create or join, told apart when it is a rootless caller lacking permission.
    pub(super) fn fs_err(&self, err: &(dyn std::error::Error + 'static)) -> CgroupError {
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

/// A cgroups-rs error as one line: what failed, then the OS error under it.
pub(super) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
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
