//! The destination of a mount, opened inside the rootfs with [`safe_path`] and checked before
//! and after mounting: it must stay the same place, and must not cover what `/proc` protects.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, SFlag};
use nix::sys::statfs::{statfs, PROC_SUPER_MAGIC};

use super::{invalid, MountContext, MountError, Result};
use crate::safe_path::{self, Create};

/// The places under `/proc` that may be bind-mounted over (lxcfs emulates these), as in runc.
const PROC_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/pressure/cpu",
    "/proc/pressure/io",
    "/proc/pressure/memory",
    "/proc/sys/kernel/ns_last_pid",
];

pub(super) fn open_dest(ctx: &MountContext<'_>, dest: &Path, create: Create) -> Result<OwnedFd> {
    safe_path::open_in_root(ctx.rootfs, dest, create).map_err(|source| MountError::Destination {
        destination: dest.into(),
        source,
    })
}

/// Opens the destination again after a mount (to reach the new mount, not the directory under
/// it) and checks it is still the same place.
pub(super) fn reopen(ctx: &MountContext<'_>, dest: &Path, before: &OwnedFd) -> Result<OwnedFd> {
    let after = open_dest(ctx, dest, Create::Nothing)?;
    let was = safe_path::real_path(before);
    let is = safe_path::real_path(&after);
    match (was, is) {
        (Ok(was), Ok(is)) if was == is => Ok(after),
        (Err(source), _) | (_, Err(source)) => Err(MountError::Destination {
            destination: dest.into(),
            source,
        }),
        _ => Err(invalid(
            dest,
            "the mount point was moved while it was being mounted",
        )),
    }
}

/// runc refuses proc and sysfs on a symlink or a file: such a destination could be aimed
/// elsewhere in the rootfs by the image.
pub(super) fn check_plain_directory(
    ctx: &MountContext<'_>,
    dest: &Path,
    fstype: &str,
) -> Result<()> {
    let (dir, name) = safe_path::open_parent_in_root(ctx.rootfs, dest).map_err(|source| {
        MountError::Destination {
            destination: dest.into(),
            source,
        }
    })?;
    match fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR => {
            Err(invalid(
                dest,
                &format!("{fstype} must be mounted on a plain directory"),
            ))
        }
        _ => Ok(()),
    }
}

/// Keeps mounts off `/proc` and what is under it, except procfs itself and lxcfs's files:
/// covering e.g. /proc/self/attr would defeat the kernel's protections (runc's checkProcMount).
pub(super) fn check_proc_destination(
    ctx: &MountContext<'_>,
    dest: &Path,
    fd: &OwnedFd,
    fstype: &str,
    bind_src: Option<&Path>,
) -> Result<()> {
    let real =
        safe_path::real_path_in_root(ctx.rootfs, fd).map_err(|source| MountError::Destination {
            destination: dest.into(),
            source,
        })?;
    let inside = Path::new("/").join(real.strip_prefix(ctx.rootfs).unwrap_or(&real));
    if !inside.starts_with("/proc") {
        return Ok(());
    }
    let allowed = if inside == Path::new("/proc") {
        fstype == "proc"
            || bind_src
                .is_some_and(|s| statfs(s).is_ok_and(|st| st.filesystem_type() == PROC_SUPER_MAGIC))
    } else {
        PROC_ALLOWED.iter().any(|p| inside == Path::new(p))
    };
    if allowed {
        Ok(())
    } else {
        Err(invalid(
            dest,
            &format!(
                "{} is in /proc, where only procfs may be mounted",
                inside.display()
            ),
        ))
    }
}
