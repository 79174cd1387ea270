//! One `mounts[]` entry: option parsing (flags, propagation, data) and the mount itself, onto a
//! destination resolved inside the rootfs.
//!
//! As in runc, a destination is opened with [`safe_path::open_in_root`] and mounted on through its
//! `/proc/self/fd/N`, never through a path string. After a mount the destination is opened again:
//! the old fd still names the directory *under* the new mount, so remounts, propagation changes
//! and mount_setattr(2) need the new one; the two must name the same place, or the path was swapped
//! while we mounted.
//!
//! One concept per file: `options` parses an entry's options; `bind` and `filesystem` are the two
//! kinds of mount, onto a destination opened and checked by `destination`; `idmap` makes idmapped
//! binds (prepared by the runtime's parent, moved into place by init); `cgroupfs` builds the
//! cgroup tree (cgroup2, or runc's v1 layout from the host's `mountinfo`). This file holds what
//! they share: the errors, the context, the entry point, and the mount(2) primitives that the rest
//! of the runtime uses too.
//!
//! [`safe_path::open_in_root`]: crate::safe_path::open_in_root

mod bind;
mod cgroupfs;
mod destination;
mod filesystem;
mod idmap;
mod mountinfo;
mod options;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::statvfs::{fstatvfs, statvfs, FsFlags, Statvfs};
use oci_spec::runtime::Mount;

use crate::safe_path::{fd_path, SafePathError};

use bind::{bind_source, mount_bind};
use cgroupfs::{mount_cgroup, mount_cgroup2};
use filesystem::{mount_filesystem, mount_sysfs};
pub use idmap::{is_idmapped, prepare_idmapped_mounts};
pub use mountinfo::{parse_mountinfo, MountInfo};
pub use options::{parse_options, IdmapOption, MountOptions};

/// Errors of mounting one entry.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// An option this runtime does not implement (runc's `tmpcopyup`).
    #[error("mount option {0:?} is not supported by keel-runtime")]
    UnsupportedOption(String),
    /// An entry that cannot be carried out as written.
    #[error("mount {destination}: {reason}")]
    Invalid {
        destination: PathBuf,
        reason: String,
    },
    /// The source of a bind mount is missing or unreadable.
    #[error("mount {destination}: bad source {src}: {source}")]
    Source {
        destination: PathBuf,
        src: PathBuf,
        source: io::Error,
    },
    /// The destination could not be resolved or created inside the rootfs.
    #[error("mount {destination}: {source}")]
    Destination {
        destination: PathBuf,
        source: SafePathError,
    },
    /// mount(2) or a related call failed.
    #[error("mount {src:?} on {destination}: {step}: {source}")]
    Syscall {
        destination: PathBuf,
        src: String,
        step: String,
        source: io::Error,
    },
    /// The kernel or the source's filesystem refused to idmap a bind mount (procfs, sysfs,
    /// devtmpfs and older kernels do).
    #[error("mount {destination}: idmapped mounts are not supported for source {src} (the kernel refused: {source})")]
    IdmapUnsupported {
        destination: PathBuf,
        src: PathBuf,
        source: io::Error,
    },
    /// The user namespace that carries an idmapped mount's mappings could not be made or opened.
    #[error("mount {destination}: user namespace for the id mappings: {step}: {source}")]
    IdmapUserns {
        destination: PathBuf,
        step: String,
        source: io::Error,
    },
    /// The host's cgroup mounts could not be read.
    #[error("mount {destination}: reading {file}: {source}")]
    HostInfo {
        destination: PathBuf,
        file: &'static str,
        source: io::Error,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, MountError>;

impl MountError {
    /// The errno of a refused mount(2) of a filesystem (not of a later step), which some
    /// filesystems answer with a fallback.
    fn mount_refused(&self) -> Option<Errno> {
        match self {
            Self::Syscall { step, source, .. } if step.starts_with("mount ") => {
                source.raw_os_error().map(Errno::from_raw)
            }
            _ => None,
        }
    }
}

/// Flags a less privileged user namespace cannot clear on a mount it inherited (runc's
/// `mntLockFlags`): a bind remount must carry them over from the source.
pub const LOCKED_FLAGS: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NOATIME)
    .union(MsFlags::MS_NODIRATIME)
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);

/// What mounting an entry needs to know beyond the entry itself.
#[derive(Debug, Clone, Copy)]
pub struct MountContext<'a> {
    /// The rootfs (canonical host path), already a mount point of its own.
    pub rootfs: &'a Path,
    /// The container has its own cgroup namespace: cgroup filesystems are then mounted fresh
    /// (showing the container's cgroup as their root) instead of bound from the host.
    pub cgroup_ns: bool,
}

/// Mounts one `mounts[]` entry inside the rootfs (an idmapped one needs
/// [`mount_entry_with`]).
pub fn mount_entry(ctx: &MountContext<'_>, m: &Mount) -> Result<()> {
    mount_entry_with(ctx, m, None)
}

/// Mounts one `mounts[]` entry inside the rootfs; `tree` is the detached mount that
/// [`prepare_idmapped_mounts`] made for it if it is idmapped, and is moved into place (init can
/// no longer idmap a mount itself: it is in the container's user namespace by now).
pub fn mount_entry_with(ctx: &MountContext<'_>, m: &Mount, tree: Option<OwnedFd>) -> Result<()> {
    let dest = m.destination().as_path();
    let opts = parse_options(m.options().as_deref().unwrap_or_default())?;
    let fstype = m.typ().as_deref().unwrap_or("");
    if is_bind(fstype, &opts) {
        let src = bind_source(dest, m.source().as_deref())?;
        let mut opts = opts;
        opts.flags |= MsFlags::MS_BIND;
        return match (is_idmapped(m), tree) {
            (false, None) => mount_bind(ctx, dest, &src, &opts),
            (true, Some(tree)) => idmap::mount_idmapped(ctx, dest, &src, tree, &opts),
            (true, None) => Err(invalid(
                dest,
                "the idmapped mount was not prepared by the runtime",
            )),
            (false, Some(_)) => Err(invalid(
                dest,
                "a prepared mount was given for an entry that is not idmapped",
            )),
        };
    }
    if is_idmapped(m) || tree.is_some() {
        return Err(invalid(
            dest,
            "idmapped mounts are only supported for bind mounts",
        ));
    }
    let src = m
        .source()
        .as_deref()
        .map_or_else(|| fstype.into(), |s| s.to_string_lossy());
    match fstype {
        "" => Err(invalid(
            dest,
            "the mount has no type and is not a bind mount",
        )),
        "cgroup" => mount_cgroup(ctx, dest, &opts),
        "cgroup2" => mount_cgroup2(ctx, dest, &src, &opts),
        "sysfs" => mount_sysfs(ctx, dest, &src, &opts),
        _ => mount_filesystem(ctx, dest, &src, fstype, &opts),
    }
}

/// Whether an entry of type `fstype` with options `opts` is a bind mount (the type is ignored
/// then, as in runc).
fn is_bind(fstype: &str, opts: &MountOptions) -> bool {
    fstype == "bind" || opts.flags.contains(MsFlags::MS_BIND)
}

/// mount(2) onto the object `target` holds, through its `/proc/self/fd/N`.
pub fn mount_at(
    source: Option<&Path>,
    target: &OwnedFd,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> nix::Result<()> {
    nix::mount::mount(
        source,
        &fd_path(target),
        fstype,
        flags,
        data.filter(|d| !d.is_empty()),
    )
}

/// The mount flags of the mount holding `fd` (from statvfs), in `MS_*` terms.
pub fn mount_flags_of(fd: &OwnedFd) -> nix::Result<MsFlags> {
    fstatvfs(fd).map(|st| ms_flags(&st))
}

/// The mount flags of the mount holding `path`, for paths the runtime chose itself.
pub fn mount_flags_at(path: &Path) -> nix::Result<MsFlags> {
    statvfs(path).map(|st| ms_flags(&st))
}

/// Makes the mount at `fd` read-only, keeping its other per-mount `flags`.
pub fn remount_readonly(fd: &OwnedFd, flags: MsFlags) -> nix::Result<()> {
    mount_at(None, fd, None, readonly_remount_flags(flags), None)
}

/// The flags that remount a mount whose flags are `current` read-only: a bind remount changes
/// only the mount, and carrying `current` over keeps what a user namespace may have locked.
pub fn readonly_remount_flags(current: MsFlags) -> MsFlags {
    (current & LOCKED_FLAGS) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY
}

/// Applies the entry's propagation changes, then its recursive attributes, to the mount at `fd`.
fn set_propagation_and_attrs(
    dest: &Path,
    src: &str,
    fd: &OwnedFd,
    opts: &MountOptions,
) -> Result<()> {
    for &flag in &opts.propagation {
        mount_at(None, fd, None, flag, None).map_err(|e| syscall(dest, src, "propagation", e))?;
    }
    if opts.attr_set != 0 || opts.attr_clr != 0 {
        mount_setattr_recursive(fd, opts.attr_set, opts.attr_clr)
            .map_err(|e| syscall(dest, src, "mount_setattr", e))?;
    }
    Ok(())
}

/// Makes the (detached or attached) mount tree of `fd` read-only, nosuid and nodev.
pub(crate) fn make_readonly(fd: &OwnedFd) -> nix::Result<()> {
    use options::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
    mount_setattr_recursive(
        fd,
        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        0,
    )
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Applies mount attributes to the mount at `fd` and every mount under it.
fn mount_setattr_recursive(fd: &OwnedFd, attr_set: u64, attr_clr: u64) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set,
        attr_clr,
        propagation: 0,
        userns_fd: 0,
    };
    mount_setattr(fd, true, &attr)
}

/// mount_setattr(2) on the (detached or attached) mount at `fd`, and on every mount under it
/// if `recursive`.
#[allow(unsafe_code)]
fn mount_setattr(fd: &OwnedFd, recursive: bool, attr: &MountAttr) -> nix::Result<()> {
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: the path is a NUL-terminated empty string and `attr` a live mount_attr whose size
    // is passed along; the kernel only reads both during the call.
    let res = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(res).map(drop)
}

/// Whether `dest` names the container's `/dev`.
pub fn is_dev(dest: &Path) -> bool {
    let mut normal = dest
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir));
    normal.next() == Some(Component::Normal("dev".as_ref())) && normal.next().is_none()
}

fn ms_flags(st: &Statvfs) -> MsFlags {
    const PAIRS: [(FsFlags, MsFlags); 9] = [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_SYNCHRONOUS, MsFlags::MS_SYNCHRONOUS),
        (FsFlags::ST_MANDLOCK, MsFlags::MS_MANDLOCK),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    let flags = st.flags();
    PAIRS
        .iter()
        .filter(|(st, _)| flags.contains(*st))
        .fold(MsFlags::empty(), |acc, (_, ms)| acc | *ms)
}

fn invalid(dest: &Path, reason: &str) -> MountError {
    MountError::Invalid {
        destination: dest.into(),
        reason: reason.into(),
    }
}

fn source_error(dest: &Path, src: &Path, source: io::Error) -> MountError {
    MountError::Source {
        destination: dest.into(),
        src: src.into(),
        source,
    }
}

fn syscall(dest: &Path, src: &str, step: &str, errno: Errno) -> MountError {
    MountError::Syscall {
        destination: dest.into(),
        src: src.into(),
        step: step.into(),
        source: errno.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_destination() {
        assert!(is_dev(Path::new("/dev")));
        assert!(is_dev(Path::new("/dev/")));
        assert!(is_dev(Path::new("dev")));
        assert!(!is_dev(Path::new("/dev/pts")));
        assert!(!is_dev(Path::new("/")));
    }
}
