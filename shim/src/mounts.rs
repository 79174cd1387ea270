//! The rootfs mounts containerd gives with a task (an overlay of the image's snapshots, or a
//! bind), mounted onto the bundle's `rootfs` and unmounted on delete. Options are split into
//! mount flags and filesystem data as containerd's `mount_linux.go` does.

use std::io;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// One mount of a task's rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Mounts `mounts` in order onto `target`; on failure unmounts what was mounted.
pub fn mount_all(mounts: &[RootfsMount], target: &Path) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    for (done, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..done {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "mounting {} {} on {}: {e}",
                    m.kind,
                    m.source,
                    target.display()
                ),
            ));
        }
    }
    Ok(())
}

fn mount_one(m: &RootfsMount, target: &Path) -> io::Result<()> {
    let (flags, data) = parse_options(&m.options);
    let bind = flags.contains(MsFlags::MS_BIND);
    let kind = if bind { None } else { Some(m.kind.as_str()) };
    let data = (!data.is_empty()).then_some(data.as_str());
    let propagation =
        MsFlags::MS_SHARED | MsFlags::MS_PRIVATE | MsFlags::MS_SLAVE | MsFlags::MS_UNBINDABLE;
    mount(
        Some(m.source.as_str()),
        target,
        kind,
        flags - propagation,
        data,
    )
    .map_err(io::Error::from)?;
    if bind && flags.contains(MsFlags::MS_RDONLY) {
        // A bind mount ignores MS_RDONLY until remounted.
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | (flags - propagation);
        mount(None::<&str>, target, None::<&str>, remount, None::<&str>)
            .map_err(io::Error::from)?;
    }
    if flags.intersects(propagation) {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            flags & (propagation | MsFlags::MS_REC),
            None::<&str>,
        )
        .map_err(io::Error::from)?;
    }
    Ok(())
}

/// containerd's option names → flags; anything else is filesystem data (`lowerdir=...`).
pub fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options {
        let (clear, flag) = match opt.as_str() {
            "bind" => (false, MsFlags::MS_BIND),
            "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
            "ro" => (false, MsFlags::MS_RDONLY),
            "rw" => (true, MsFlags::MS_RDONLY),
            "nosuid" => (false, MsFlags::MS_NOSUID),
            "suid" => (true, MsFlags::MS_NOSUID),
            "nodev" => (false, MsFlags::MS_NODEV),
            "dev" => (true, MsFlags::MS_NODEV),
            "noexec" => (false, MsFlags::MS_NOEXEC),
            "exec" => (true, MsFlags::MS_NOEXEC),
            "sync" => (false, MsFlags::MS_SYNCHRONOUS),
            "async" => (true, MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (false, MsFlags::MS_DIRSYNC),
            "remount" => (false, MsFlags::MS_REMOUNT),
            "noatime" => (false, MsFlags::MS_NOATIME),
            "atime" => (true, MsFlags::MS_NOATIME),
            "nodiratime" => (false, MsFlags::MS_NODIRATIME),
            "diratime" => (true, MsFlags::MS_NODIRATIME),
            "relatime" => (false, MsFlags::MS_RELATIME),
            "norelatime" => (true, MsFlags::MS_RELATIME),
            "strictatime" => (false, MsFlags::MS_STRICTATIME),
            "private" => (false, MsFlags::MS_PRIVATE),
            "rprivate" => (false, MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            "shared" => (false, MsFlags::MS_SHARED),
            "rshared" => (false, MsFlags::MS_SHARED | MsFlags::MS_REC),
            "slave" => (false, MsFlags::MS_SLAVE),
            "rslave" => (false, MsFlags::MS_SLAVE | MsFlags::MS_REC),
            "unbindable" => (false, MsFlags::MS_UNBINDABLE),
            "runbindable" => (false, MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            "defaults" => continue,
            other => {
                data.push(other);
                continue;
            }
        };
        if clear {
            flags.remove(flag);
        } else {
            flags.insert(flag);
        }
    }
    (flags, data.join(","))
}

/// Unmounts everything stacked on `target` (lazily: a process may still hold it).
pub fn unmount_all(target: &Path) {
    for _ in 0..64 {
        if umount2(target, MntFlags::MNT_DETACH).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_are_data() {
        let (flags, data) = parse_options(&opts(&[
            "index=off",
            "lowerdir=/a:/b",
            "upperdir=/u",
            "workdir=/w",
        ]));
        assert!(flags.is_empty());
        assert_eq!(data, "index=off,lowerdir=/a:/b,upperdir=/u,workdir=/w");
    }

    #[test]
    fn bind_options_are_flags() {
        let (flags, data) = parse_options(&opts(&["rbind", "ro", "nosuid", "rw"]));
        assert_eq!(
            flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert!(data.is_empty());
    }
}
