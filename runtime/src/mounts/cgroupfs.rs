//! The cgroup filesystem of a container: cgroup2 on a unified host (or a bind of the host's, where
//! it may not be mounted), else runc's v1 layout, a tmpfs holding one directory per hierarchy.

use std::fs;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};

use super::bind::mount_bind;
use super::destination::open_dest;
use super::filesystem::mount_filesystem;
use super::mountinfo::{parse_mountinfo, MountInfo};
use super::{invalid, remount_readonly, syscall, MountContext, MountError, MountOptions, Result};
use crate::safe_path::Create;

/// What runc gives the cgroup tmpfs and the hierarchies under it.
const CGROUP_FLAGS: MsFlags = MsFlags::MS_NOEXEC
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV);

/// A `cgroup` entry: cgroup2 on a unified host, else the v1 tree of hierarchies.
pub(super) fn mount_cgroup(ctx: &MountContext<'_>, dest: &Path, opts: &MountOptions) -> Result<()> {
    let unified =
        statfs("/sys/fs/cgroup").is_ok_and(|st| st.filesystem_type() == CGROUP2_SUPER_MAGIC);
    if unified {
        return mount_cgroup2(ctx, dest, "cgroup2", opts);
    }
    mount_cgroup_v1(ctx, dest, opts)
}

/// cgroup2, or, where a user namespace without a cgroup namespace may not mount it, a bind of
/// the host's unified hierarchy (only the container's own cgroup when it has a cgroup namespace).
pub(super) fn mount_cgroup2(
    ctx: &MountContext<'_>,
    dest: &Path,
    src: &str,
    opts: &MountOptions,
) -> Result<()> {
    match mount_filesystem(ctx, dest, src, "cgroup2", opts) {
        Err(e) if matches!(e.mount_refused(), Some(Errno::EPERM | Errno::EBUSY)) => {
            let mut source = PathBuf::from("/sys/fs/cgroup");
            if ctx.cgroup_ns {
                let own = read_host_file(dest, "/proc/self/cgroup")?;
                if let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) {
                    source.push(Path::new(path).strip_prefix("/").unwrap_or(Path::new(path)));
                }
            }
            let mut bind = opts.clone();
            bind.flags |= MsFlags::MS_BIND | MsFlags::MS_REC;
            mount_bind(ctx, dest, &source, &bind)
        }
        other => other,
    }
}

/// One v1 hierarchy of the host, as the container sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    /// The last component of the host's mount point (`cpu,cpuacct`, `systemd`).
    name: String,
    /// This process's cgroup directory in the hierarchy, on the host, if a mount shows it.
    dir: Option<PathBuf>,
    /// The controllers as /proc/self/cgroup names them (`cpu,cpuacct`, `name=systemd`).
    controllers: String,
}

/// runc's v1 layout: a tmpfs at `dest` and, for each hierarchy, the process's own cgroup
/// directory bound (or, with a cgroup namespace, the hierarchy mounted) at `dest/<name>`, plus a
/// link per controller of co-mounted hierarchies (`cpu -> cpu,cpuacct`).
fn mount_cgroup_v1(ctx: &MountContext<'_>, dest: &Path, opts: &MountOptions) -> Result<()> {
    let mountinfo = read_host_file(dest, "/proc/self/mountinfo")?;
    let own = read_host_file(dest, "/proc/self/cgroup")?;
    let hierarchies = hierarchies_from(&parse_mountinfo(&mountinfo), &own);
    let root = MountOptions {
        flags: CGROUP_FLAGS,
        data: "mode=755".into(),
        propagation: opts.propagation.clone(),
        ..MountOptions::default()
    };
    mount_filesystem(ctx, dest, "tmpfs", "tmpfs", &root)?;
    for h in &hierarchies {
        mount_hierarchy(ctx, &dest.join(&h.name), h, opts)?;
    }
    let fd = open_dest(ctx, dest, Create::Nothing)?;
    for h in hierarchies.iter().filter(|h| h.name.contains(',')) {
        for controller in h.name.split(',') {
            match nix::unistd::symlinkat(h.name.as_str(), &fd, controller) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(syscall(dest, &h.name, "symlink", e)),
            }
        }
    }
    if opts.flags.contains(MsFlags::MS_RDONLY) {
        remount_readonly(&fd, CGROUP_FLAGS)
            .map_err(|e| syscall(dest, "tmpfs", "read-only remount", e))?;
    }
    Ok(())
}

fn mount_hierarchy(
    ctx: &MountContext<'_>,
    dest: &Path,
    h: &Hierarchy,
    opts: &MountOptions,
) -> Result<()> {
    if ctx.cgroup_ns {
        let fresh = MountOptions {
            flags: CGROUP_FLAGS | (opts.flags & MsFlags::MS_RDONLY),
            data: h.controllers.clone(),
            ..MountOptions::default()
        };
        return mount_filesystem(ctx, dest, "cgroup", "cgroup", &fresh);
    }
    let Some(dir) = &h.dir else {
        return Err(invalid(
            dest,
            &format!(
                "no mount of cgroup {} shows this process's cgroup",
                h.controllers
            ),
        ));
    };
    let bind = MountOptions {
        flags: opts.flags | MsFlags::MS_BIND | MsFlags::MS_REC,
        ..opts.clone()
    };
    mount_bind(ctx, dest, dir, &bind)
}

/// Matches each v1 line of /proc/self/cgroup with the mount of its hierarchy.
fn hierarchies_from(mounts: &[MountInfo], own_cgroups: &str) -> Vec<Hierarchy> {
    let mut found = Vec::new();
    for line in own_cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            continue; // the v2 entry: runc does not show it in a v1 tree
        }
        let path = Path::new(path);
        let of_hierarchy = |m: &&MountInfo| {
            m.fs_type == "cgroup"
                && controllers
                    .split(',')
                    .all(|c| m.super_options.split(',').any(|o| o == c))
        };
        // Prefer a mount that shows our cgroup; in a cgroup namespace none may (their roots
        // read `/..`), and only the name matters there.
        let mount = mounts
            .iter()
            .filter(of_hierarchy)
            .find(|m| path.starts_with(&m.root));
        let Some(mount) = mount.or_else(|| mounts.iter().find(of_hierarchy)) else {
            tracing::debug!("cgroup hierarchy {controllers} is not mounted here; skipped");
            continue;
        };
        let Some(name) = mount.mount_point.file_name() else {
            continue;
        };
        found.push(Hierarchy {
            name: name.to_string_lossy().into_owned(),
            dir: path
                .strip_prefix(&mount.root)
                .ok()
                .map(|rel| mount.mount_point.join(rel)),
            controllers: controllers.to_string(),
        });
    }
    found
}

fn read_host_file(dest: &Path, file: &'static str) -> Result<String> {
    fs::read_to_string(file).map_err(|source| MountError::HostInfo {
        destination: dest.into(),
        file,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mounts::mountinfo::tests::MOUNTINFO;

    #[test]
    fn v1_hierarchies_of_this_process() {
        let own = "12:cpu,cpuacct:/keel/c1\n4:memory:/outer/keel/c1\n1:name=systemd:/user\n3:pids:/x\n0::/keel/c1\n";
        let found = hierarchies_from(&parse_mountinfo(MOUNTINFO), own);
        assert_eq!(
            found,
            vec![
                Hierarchy {
                    name: "cpu,cpuacct".into(),
                    dir: Some("/sys/fs/cgroup/cpu,cpuacct/keel/c1".into()),
                    controllers: "cpu,cpuacct".into(),
                },
                Hierarchy {
                    name: "memory".into(),
                    dir: Some("/sys/fs/cgroup/memory/keel/c1".into()),
                    controllers: "memory".into(),
                },
                Hierarchy {
                    name: "systemd".into(),
                    dir: Some("/sys/fs/cgroup/systemd/user".into()),
                    controllers: "name=systemd".into(),
                },
            ]
        );
    }

    #[test]
    fn hierarchy_outside_the_cgroup_namespace_keeps_its_name() {
        let found = hierarchies_from(&parse_mountinfo(MOUNTINFO), "4:memory:/\n");
        assert_eq!(
            found,
            vec![Hierarchy {
                name: "memory".into(),
                dir: None,
                controllers: "memory".into()
            }]
        );
    }
}
