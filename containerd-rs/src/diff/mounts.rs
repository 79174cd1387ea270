//! Mounting a snapshot's mounts on a temp dir for the time of one operation, as containerd's
//! `mount.WithTempMount`: the mounts are always undone and the dir removed, even on failure.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::{DiffError, Mount};

/// The upperdir of `mounts` if they are a single overlay mount with one: Apply unpacks straight
/// into it. Without an upperdir (a read-only view), containerd falls back to a temp mount.
pub fn overlay_upperdir(mounts: &[Mount]) -> Option<PathBuf> {
    let [mount] = mounts else { return None };
    if mount.kind != "overlay" {
        return None;
    }
    mount
        .options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="))
        .filter(|upper| !upper.is_empty())
        .map(PathBuf::from)
}

/// `mounts` mounted (read-only if `readonly`) on a fresh dir under `base` while `f` runs.
pub fn with_temp_mount<T>(
    base: &Path,
    mounts: &[Mount],
    readonly: bool,
    f: impl FnOnce(&Path) -> Result<T, DiffError>,
) -> Result<T, DiffError> {
    let mut guard = TempMount {
        dir: temp_dir(base)?,
        mounted: 0,
        mounts_asked: mounts.len(),
    };
    for m in mounts {
        mount_one(m, &guard.dir, readonly, &mut guard.mounted)?;
    }
    f(&guard.dir)
}

/// A temp mount point: unmounted and removed when dropped.
struct TempMount {
    dir: PathBuf,
    /// Mounts stacked on `dir`, each undone on drop.
    mounted: usize,
    /// Mounts asked for: with none, the dir itself was written to.
    mounts_asked: usize,
}

impl Drop for TempMount {
    fn drop(&mut self) {
        for _ in 0..self.mounted {
            if let Err(e) = umount2(&self.dir, MntFlags::MNT_DETACH) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "unmounting a diff temp mount");
            }
        }
        // Only a dir that nothing was ever to be mounted on may hold files (Apply onto no
        // mounts unpacks into the dir itself); a mounted one is only ever rmdir'ed.
        let removed = if self.mounts_asked == 0 {
            std::fs::remove_dir_all(&self.dir)
        } else {
            std::fs::remove_dir(&self.dir)
        };
        if let Err(e) = removed {
            tracing::warn!(dir = %self.dir.display(), error = %e, "removing a diff temp mount dir");
        }
    }
}

/// A new empty directory under `base`, named uniquely within this process and across processes.
pub fn temp_dir(base: &Path) -> Result<PathBuf, DiffError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(base).map_err(DiffError::io(format!("creating {}", base.display())))?;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("diff-mount-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(DiffError::io(format!("creating {}", dir.display()))(e)),
        }
    }
}

/// Mounts one containerd mount on `target`: bind mounts as real bind mounts (read-only by a
/// remount, which a bind mount needs), others by type with their options as data.
fn mount_one(
    m: &Mount,
    target: &Path,
    readonly: bool,
    mounted: &mut usize,
) -> Result<(), DiffError> {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in &m.options {
        match option.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            other => data.push(other),
        }
    }
    if readonly {
        flags |= MsFlags::MS_RDONLY;
    }
    let fail = |e: nix::Error| DiffError::Io {
        op: format!("mounting {} ({}) on {}", m.source, m.kind, target.display()),
        source: e.into(),
    };
    let bind = flags.contains(MsFlags::MS_BIND) || m.kind == "bind";
    if bind {
        mount(
            Some(m.source.as_str()),
            target,
            None::<&str>,
            flags | MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(fail)?;
        // Counted now, so the guard undoes it even if the remount fails.
        *mounted += 1;
        if flags.contains(MsFlags::MS_RDONLY) {
            let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, target, None::<&str>, remount, None::<&str>).map_err(fail)?;
        }
        return Ok(());
    }
    let data = data.join(",");
    let data = (!data.is_empty()).then_some(data.as_str());
    mount(
        Some(m.source.as_str()),
        target,
        Some(m.kind.as_str()),
        flags,
        data,
    )
    .map_err(fail)?;
    *mounted += 1;
    Ok(())
}
