//! Mounts of a filesystem by type (proc, tmpfs, devpts, mqueue, overlay, sysfs, ...), with
//! runc's adjustments: a tmpfs takes the mode of what it covers and is made read-only only after
//! it is filled, and sysfs falls back to a bind of the host's `/sys` where it may not be mounted.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;

use super::bind::mount_bind;
use super::destination::{check_plain_directory, check_proc_destination, open_dest, reopen};
use super::{
    is_dev, mount_at, remount_readonly, set_propagation_and_attrs, syscall, MountContext,
    MountOptions, Result,
};
use crate::safe_path::Create;

/// Any filesystem by type name (proc, tmpfs, devpts, mqueue, overlay, ...).
pub(super) fn mount_filesystem(
    ctx: &MountContext<'_>,
    dest: &Path,
    src: &str,
    fstype: &str,
    opts: &MountOptions,
) -> Result<()> {
    if fstype == "proc" || fstype == "sysfs" {
        check_plain_directory(ctx, dest, fstype)?;
    }
    let fd = open_dest(ctx, dest, Create::Dir)?;
    check_proc_destination(ctx, dest, &fd, fstype, None)?;
    // A tmpfs and /dev get files made in them first (devices, the cgroup tree), so they are
    // mounted writable and made read-only afterwards: tmpfs below, /dev in rootfs::finish.
    let delay_ro = fstype == "tmpfs" || is_dev(dest);
    let flags = if delay_ro {
        opts.flags - MsFlags::MS_RDONLY
    } else {
        opts.flags
    };
    let data = if fstype == "tmpfs" {
        with_covered_mode(&fd, &opts.data)
    } else {
        opts.data.clone()
    };
    mount_at(Some(Path::new(src)), &fd, Some(fstype), flags, Some(&data))
        .map_err(|e| syscall(dest, src, &format!("mount {fstype}"), e))?;
    let fd = reopen(ctx, dest, &fd)?;
    if fstype == "tmpfs" && opts.flags.contains(MsFlags::MS_RDONLY) && !is_dev(dest) {
        remount_readonly(&fd, flags).map_err(|e| syscall(dest, src, "read-only remount", e))?;
    }
    set_propagation_and_attrs(dest, src, &fd, opts)
}

/// A user namespace without its own network namespace may not mount sysfs: like runc's
/// rootless specs and crun, give such a container the host's `/sys`, bound recursively.
pub(super) fn mount_sysfs(
    ctx: &MountContext<'_>,
    dest: &Path,
    src: &str,
    opts: &MountOptions,
) -> Result<()> {
    match mount_filesystem(ctx, dest, src, "sysfs", opts) {
        Err(e) if e.mount_refused() == Some(Errno::EPERM) => {
            tracing::debug!("sysfs on {} refused, binding /sys instead", dest.display());
            let mut bind = opts.clone();
            bind.flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
            mount_bind(ctx, dest, Path::new("/sys"), &bind)
        }
        other => other,
    }
}

/// A tmpfs takes the mode of the directory it covers unless the options say otherwise (later
/// `mode=` options win), as in runc.
fn with_covered_mode(fd: &OwnedFd, data: &str) -> String {
    let Ok(st) = nix::sys::stat::fstat(fd) else {
        return data.to_string();
    };
    let mode = format!("mode={:04o}", st.st_mode & 0o7777);
    if data.is_empty() {
        mode
    } else {
        format!("{mode},{data}")
    }
}
