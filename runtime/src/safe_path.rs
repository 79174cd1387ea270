//! Resolving paths inside a container's rootfs so that no symlink or `..` leads out of it.
//!
//! The rootfs belongs to the image, so any component of a mount destination or device path may be
//! a symlink crafted to point at the host (`/etc`, `../../..`): the CVE-2021-30465 class. Every
//! lookup here is done by the kernel with openat2(2) and `RESOLVE_IN_ROOT`, which resolves absolute
//! links and `..` as if the root were `/`. Missing components are created one at a time on an fd of
//! their parent and then looked up again through the kernel, so a component swapped for a symlink
//! meanwhile is still resolved inside the root. Callers get an `O_PATH` fd and act on
//! [`fd_path`], which names exactly that object whatever happens to the path afterwards.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlink, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, Mode, SFlag};

/// Errors of in-root path resolution.
#[derive(Debug, thiserror::Error)]
pub enum SafePathError {
    /// A lookup or creation failed; `path` is the host path it was meant to reach.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The object behind an fd is not (or no longer) inside the root it was resolved in.
    #[error("{path} is outside the root {root}")]
    OutsideRoot { path: PathBuf, root: PathBuf },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, SafePathError>;

/// What to create when the last component of a path is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Fail with `ENOENT` when anything is missing.
    Nothing,
    /// Create missing components as directories (mode 0755).
    Dir,
    /// Create missing parents as directories and the last component as an empty file (0644),
    /// the mount point of a file bind mount.
    File,
}

/// Bound on the creations and symlink hops of one resolution, so a crafted tree cannot loop us.
const MAX_STEPS: usize = 255;
/// How often a lookup is retried when openat2 reports a concurrent rename (`EAGAIN`).
const LOOKUP_RETRIES: usize = 16;

/// Opens `path` (absolute or relative, taken inside `root`) as an `O_PATH` fd, resolving every
/// component as if `root` were `/`, creating missing parents (and the last component per `create`).
pub fn open_in_root(root: &Path, path: &Path, create: Create) -> Result<OwnedFd> {
    let root_fd = open_root(root)?;
    let mut rel = relative(path);
    for _ in 0..MAX_STEPS {
        match lookup(root_fd.as_fd(), &rel) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) if create != Create::Nothing => {}
            Err(e) => return Err(io_error(root, &rel, e)),
        }
        rel = create_first_missing(root_fd.as_fd(), &rel, create)
            .map_err(|e| io_error(root, &rel, e))?;
    }
    Err(io_error(root, &rel, Errno::ELOOP))
}

/// Opens the parent directory of `path` inside `root` (creating it if missing) and returns it with
/// the last component, for the `*at` calls (mknodat, symlinkat) that must not follow that name.
pub fn open_parent_in_root(root: &Path, path: &Path) -> Result<(OwnedFd, OsString)> {
    let rel = relative(path);
    let name = match rel.components().next_back() {
        Some(Component::Normal(name)) => name.to_os_string(),
        _ => return Err(io_error(root, &rel, Errno::EINVAL)),
    };
    let parent = rel.parent().unwrap_or(Path::new(""));
    Ok((open_in_root(root, parent, Create::Dir)?, name))
}

/// `/proc/self/fd/N`: a path the kernel resolves to exactly the object `fd` holds.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The path the kernel currently gives the object behind `fd` (as seen from this process's root).
pub fn real_path(fd: &OwnedFd) -> Result<PathBuf> {
    let link = fd_path(fd);
    readlink(&link)
        .map(PathBuf::from)
        .map_err(|e| SafePathError::Io {
            path: link,
            source: e.into(),
        })
}

/// [`real_path`] of `fd`, checked to lie inside `root` (a canonical path); catches an object
/// moved out of the root between its lookup and its use.
pub fn real_path_in_root(root: &Path, fd: &OwnedFd) -> Result<PathBuf> {
    let path = real_path(fd)?;
    if path.starts_with(root) {
        Ok(path)
    } else {
        Err(SafePathError::OutsideRoot {
            path,
            root: root.to_path_buf(),
        })
    }
}

/// `path` without its leading `/` (and `.` components): openat2 takes it relative to the root fd.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

fn open_root(root: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| SafePathError::Io {
        path: root.to_path_buf(),
        source: e.into(),
    })
}

/// One kernel lookup of `rel` under `root`, confined to it.
fn lookup(root: BorrowedFd<'_>, rel: &Path) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut result = openat2(root, rel, how);
    for _ in 0..LOOKUP_RETRIES {
        if !matches!(result, Err(Errno::EAGAIN)) {
            break;
        }
        result = openat2(root, rel, how);
    }
    result
}

/// Finds the first missing component of `rel` and makes it exist: creates it, or, when it is a
/// dangling symlink, returns the path rewritten through the link's target so the next round
/// creates the target (inside the root, since the kernel resolves the rewritten path there).
fn create_first_missing(root: BorrowedFd<'_>, rel: &Path, create: Create) -> nix::Result<PathBuf> {
    let parts: Vec<&OsStr> = rel.iter().collect();
    let mut parent: Option<OwnedFd> = None;
    for (i, name) in parts.iter().enumerate() {
        let prefix: PathBuf = parts[..=i].iter().collect();
        match lookup(root, &prefix) {
            Ok(fd) => parent = Some(fd),
            Err(Errno::ENOENT) => {
                let dir = parent.as_ref().map_or(root, |fd| fd.as_fd());
                let last = i + 1 == parts.len();
                let kind = if last && create == Create::File {
                    Create::File
                } else {
                    Create::Dir
                };
                return create_component(dir, name, kind).map(|target| match target {
                    None => rel.to_path_buf(),
                    Some(target) => through_link(&parts[..i], &target, &parts[i + 1..]),
                });
            }
            Err(e) => return Err(e),
        }
    }
    // Everything exists now: someone created it concurrently; the caller looks it up again.
    Ok(rel.to_path_buf())
}

/// Creates `name` in `dir` as `kind`; if `name` is a (dangling) symlink, returns its target.
fn create_component(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    kind: Create,
) -> nix::Result<Option<PathBuf>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK => {
            return readlinkat(dir, name).map(|t| Some(PathBuf::from(t)));
        }
        // Created meanwhile by someone else: the next lookup sees it.
        Ok(_) => return Ok(None),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(e),
    }
    let made = match kind {
        Create::File => openat(
            dir,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop),
        Create::Dir | Create::Nothing => mkdirat(dir, name, Mode::from_bits_truncate(0o755)),
    };
    match made {
        Ok(()) | Err(Errno::EEXIST) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The path that reaches what `before/<link>/after` names, with `<link>` replaced by `target`.
fn through_link(before: &[&OsStr], target: &Path, after: &[&OsStr]) -> PathBuf {
    let mut path: PathBuf = if target.is_absolute() {
        PathBuf::new()
    } else {
        before.iter().collect()
    };
    path.push(relative(target));
    path.extend(after);
    path
}

fn io_error(root: &Path, rel: &Path, errno: Errno) -> SafePathError {
    SafePathError::Io {
        path: root.join(rel),
        source: errno.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn real(fd: &OwnedFd) -> PathBuf {
        real_path(fd).expect("readlink of fd")
    }

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        fs::create_dir_all(root.join("etc")).expect("mkdir");
        let root = root.canonicalize().expect("canonicalize");
        (dir, root)
    }

    #[test]
    fn absolute_symlink_to_etc_stays_inside() {
        let (_dir, root) = tree();
        symlink("/etc", root.join("evil")).expect("symlink");
        let fd = open_in_root(&root, Path::new("/evil"), Create::Nothing).expect("open");
        assert_eq!(real(&fd), root.join("etc"));
    }

    #[test]
    fn dotdot_is_clamped_at_the_root() {
        let (_dir, root) = tree();
        let fd = open_in_root(&root, Path::new("../../../etc"), Create::Nothing).expect("open");
        assert_eq!(real(&fd), root.join("etc"));
        symlink("../../../../..", root.join("up")).expect("symlink");
        let fd = open_in_root(&root, Path::new("/up/etc"), Create::Nothing).expect("open");
        assert_eq!(real(&fd), root.join("etc"));
    }

    #[test]
    fn missing_directories_are_created_inside() {
        let (_dir, root) = tree();
        symlink("/tmp/keel-safe-path-outside", root.join("evil")).expect("symlink");
        let fd = open_in_root(&root, Path::new("/evil/a/b"), Create::Dir).expect("create");
        assert_eq!(real(&fd), root.join("tmp/keel-safe-path-outside/a/b"));
        assert!(root.join("tmp/keel-safe-path-outside/a/b").is_dir());
        assert!(!Path::new("/tmp/keel-safe-path-outside").exists());
    }

    #[test]
    fn file_is_created_as_last_component() {
        let (_dir, root) = tree();
        let fd = open_in_root(&root, Path::new("/x/y/file"), Create::File).expect("create");
        assert_eq!(real(&fd), root.join("x/y/file"));
        assert!(root.join("x/y/file").is_file());
        assert!(root.join("x/y").is_dir());
    }

    #[test]
    fn nothing_means_not_found() {
        let (_dir, root) = tree();
        let err = open_in_root(&root, Path::new("/nope"), Create::Nothing).expect_err("missing");
        assert!(matches!(err, SafePathError::Io { ref source, .. }
            if source.raw_os_error() == Some(libc::ENOENT)));
        assert!(!root.join("nope").exists());
    }

    #[test]
    fn relative_dangling_link_gets_its_target_created() {
        let (_dir, root) = tree();
        fs::create_dir(root.join("var")).expect("mkdir");
        symlink("../run", root.join("var/run")).expect("symlink");
        let fd = open_in_root(&root, Path::new("/var/run/lock"), Create::Dir).expect("create");
        assert_eq!(real(&fd), root.join("run/lock"));
    }

    #[test]
    fn symlink_loops_fail() {
        let (_dir, root) = tree();
        symlink("b", root.join("a")).expect("symlink");
        symlink("a", root.join("b")).expect("symlink");
        assert!(open_in_root(&root, Path::new("/a/x"), Create::Dir).is_err());
    }

    #[test]
    fn parent_and_name() {
        let (_dir, root) = tree();
        let (dir, name) = open_parent_in_root(&root, Path::new("/dev/null")).expect("parent");
        assert_eq!(real(&dir), root.join("dev"));
        assert_eq!(name, "null");
        assert!(open_parent_in_root(&root, Path::new("/")).is_err());
        assert!(open_parent_in_root(&root, Path::new("/dev/..")).is_err());
    }

    #[test]
    fn real_path_is_checked_against_the_root() {
        let (dir, root) = tree();
        let fd = open_in_root(&root, Path::new("/etc"), Create::Nothing).expect("open");
        assert!(real_path_in_root(&root, &fd).is_ok());
        let other = dir
            .path()
            .canonicalize()
            .expect("canonicalize")
            .join("elsewhere");
        assert!(real_path_in_root(&other, &fd).is_err());
    }
}
