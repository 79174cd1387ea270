//! Resolving paths inside a container's rootfs so that no symlink or `..` leads out of it.
//!
//! STUB: interface fixed; implementation being written.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Errors of in-root path resolution.
#[derive(Debug, thiserror::Error)]
pub enum SafePathError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, SafePathError>;

/// What to create when the last component of a path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Nothing,
    Dir,
    File,
}

/// Opens `path` (absolute or relative, taken inside `root`) as an `O_PATH` fd, resolving every
/// component as if `root` were `/`, creating missing parents (and the last component per `create`).
pub fn open_in_root(root: &Path, path: &Path, create: Create) -> Result<OwnedFd> {
    let _ = (root, create);
    Err(SafePathError::Io { path: path.into(), source: std::io::ErrorKind::Unsupported.into() })
}

/// `/proc/self/fd/N`: a path the kernel resolves to exactly the object `fd` holds.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}
