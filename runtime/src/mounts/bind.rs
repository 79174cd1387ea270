//! Bind mounts: the bind itself, then the remount that applies its flags (the kernel ignores
//! them on the first step), keeping what a user namespace has locked on the source.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::destination::{check_proc_destination, open_dest, reopen};
use super::{
    invalid, mount_at, mount_flags_at, set_propagation_and_attrs, source_error, syscall,
    MountContext, MountOptions, Result, LOCKED_FLAGS,
};
use crate::safe_path::Create;

const ATIME_FLAGS: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME)
    .union(MsFlags::MS_NODIRATIME);

/// A bind mount source: relative ones are taken from the bundle, the runtime's working directory.
pub(super) fn bind_source(dest: &Path, source: Option<&Path>) -> Result<PathBuf> {
    let src = source.ok_or_else(|| invalid(dest, "a bind mount needs a source"))?;
    std::path::absolute(src).map_err(|e| source_error(dest, src, e))
}

/// A bind mount of the host path `src` (`rbind` with `MS_REC`), then its flags.
pub(super) fn mount_bind(
    ctx: &MountContext<'_>,
    dest: &Path,
    src: &Path,
    opts: &MountOptions,
) -> Result<()> {
    let meta = fs::metadata(src).map_err(|e| source_error(dest, src, e))?;
    let fd = open_dest(ctx, dest, mount_point_kind(meta.is_dir()))?;
    check_proc_destination(ctx, dest, &fd, "bind", Some(src))?;
    let bind = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
    let show = src.to_string_lossy();
    mount_at(Some(src), &fd, None, bind, None).map_err(|e| syscall(dest, &show, "bind", e))?;
    finish_bind(ctx, dest, src, &fd, opts)
}

/// What to create at the destination of a bind of a directory (`is_dir`) or of anything else.
pub(super) fn mount_point_kind(is_dir: bool) -> Create {
    if is_dir {
        Create::Dir
    } else {
        Create::File
    }
}

/// The steps after a bind (or a move of a prepared tree) onto the destination `before` held:
/// the entry's flags, propagation and recursive attributes, applied to the new mount.
pub(super) fn finish_bind(
    ctx: &MountContext<'_>,
    dest: &Path,
    src: &Path,
    before: &OwnedFd,
    opts: &MountOptions,
) -> Result<()> {
    let fd = reopen(ctx, dest, before)?;
    let plain = MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT;
    if !(opts.flags - plain).is_empty() || !opts.cleared.is_empty() {
        remount_bind(dest, src, &fd, opts)?;
    }
    set_propagation_and_attrs(dest, &src.to_string_lossy(), &fd, opts)
}

/// The second step of a bind mount, which applies its flags (the first ignores them), keeping
/// the flags locked on the source when the plain remount is refused, as runc does.
fn remount_bind(dest: &Path, src: &Path, fd: &OwnedFd, opts: &MountOptions) -> Result<()> {
    let show = src.to_string_lossy();
    let flags = opts.flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    let Err(refused) = mount_at(None, fd, None, flags, None) else {
        return Ok(());
    };
    let src_flags = mount_flags_at(src).map_err(|e| syscall(dest, &show, "statvfs", e))?;
    let atime = (opts.flags & ATIME_FLAGS) - MsFlags::MS_STRICTATIME;
    // The entry asked for a locked flag to be off, or for another atime mode: honouring it is
    // impossible and silently keeping the source's flag would be a lie.
    if !(src_flags & opts.cleared & LOCKED_FLAGS).is_empty()
        || (opts.flags.intersects(ATIME_FLAGS) && atime != src_flags & ATIME_FLAGS)
    {
        return Err(syscall(dest, &show, "bind remount", refused));
    }
    mount_at(None, fd, None, flags | (src_flags & LOCKED_FLAGS), None)
        .map_err(|e| syscall(dest, &show, "bind remount", e))
}
