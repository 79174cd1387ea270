//! Preparing the container's root filesystem inside its mount namespace, then entering it.
//!
//! The steps are runc's: `prepare` (prepareRoot, the mounts, /dev), `enter` (pivotRoot or, with
//! `--no-pivot`, msMoveRoot) and `finish` (readonlyPaths, maskedPaths, finalizeRootfs). Every path
//! inside the rootfs goes through [`safe_path`], so the image's symlinks cannot aim a step at the
//! host.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{fstat, Mode, SFlag};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::devices::{self, DeviceError};
use crate::mounts::{self, mount_at, MountContext, MountError};
use crate::safe_path::{self, Create, SafePathError};

/// Errors of rootfs preparation.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// One `mounts[]` entry failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// Populating `/dev` failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// A path of `maskedPaths`, `readonlyPaths` or `/dev` could not be resolved.
    #[error("rootfs: {path}: {source}")]
    Path {
        path: PathBuf,
        source: SafePathError,
    },
    /// A system call of a rootfs step failed.
    #[error("rootfs: {step} {path}: {source}")]
    Syscall {
        step: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// `linux.rootfsPropagation` is not a propagation mode.
    #[error("linux.rootfsPropagation {0:?} is not one of shared, slave, private, unbindable (or r-prefixed)")]
    Propagation(String),
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, RootfsError>;

/// Runs in the init process, in its new mount namespace, before hooks and pivot: root
/// propagation, the rootfs bind mount, every `mounts[]` entry, `/dev` (devices, links, ptmx).
/// The host's `/` and `/proc` must still be visible; relative bind sources are taken from the
/// working directory, which must be the bundle (as under runc).
pub fn prepare(spec: &Spec, rootfs: &Path, idmapped: Vec<(usize, OwnedFd)>) -> Result<()> {
    let propagation = rootfs_propagation(spec)?;
    set_root_propagation(propagation.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC))?;
    make_parent_mount_private(rootfs)?;
    bind_rootfs_onto_itself(rootfs)?;
    mount_all(spec, rootfs, idmapped)?;
    if !dev_is_bound(spec) {
        let devices = spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().as_deref())
            .unwrap_or_default();
        devices::populate_dev(rootfs, devices)?;
    }
    Ok(())
}

/// Makes `rootfs` the process's `/`: pivot_root, or with `no_pivot` move-mount and chroot.
pub fn enter(rootfs: &Path, no_pivot: bool) -> Result<()> {
    if no_pivot {
        move_root(rootfs)
    } else {
        pivot_root(rootfs)
    }
}

/// After entering (and after sysctls, which write to /proc/sys): `readonlyPaths`,
/// `maskedPaths`, a read-only `/dev`, `root.readonly`, and a shared `rootfsPropagation`.
/// The paths are reached through `/proc/self/fd`, so the container's `/proc` must be mounted.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for path in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or_default()
    {
        make_readonly(Path::new(path))?;
    }
    for path in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or_default()
    {
        mask(Path::new(path))?;
    }
    if dev_wants_readonly(spec) {
        remount_mount_point_readonly(Path::new("/dev"))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_mount_point_readonly(Path::new("/"))?;
    }
    share_root_if_asked(spec)
}

/// `linux.rootfsPropagation` as mount flags (`None` when unset), with runc's names.
pub fn rootfs_propagation(spec: &Spec) -> Result<Option<MsFlags>> {
    let Some(name) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    else {
        return Ok(None);
    };
    let flags = match name {
        "" => return Ok(None),
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => return Err(RootfsError::Propagation(other.to_string())),
    };
    Ok(Some(flags))
}

/// By default `/` becomes rslave, so the container's mounts never reach the host while host
/// mounts (a late USB disk) still reach the container.
fn set_root_propagation(flags: MsFlags) -> Result<()> {
    mount_path(None, Path::new("/"), flags).map_err(|e| syscall("set propagation of", "/", e))
}

/// pivot_root(2) refuses a new root whose parent mount is shared, and a shared parent would also
/// carry our mounts to the host; runc makes it private (walking up to the nearest mount point).
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let mut path = rootfs;
    loop {
        match mount_path(None, path, MsFlags::MS_PRIVATE) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) => match path.parent() {
                Some(parent) => path = parent,
                None => return Err(syscall("make private", path, Errno::EINVAL)),
            },
            Err(e) => return Err(syscall("make private", path, e)),
        }
    }
}

/// pivot_root(2) needs the new root to be a mount point; binding it onto itself makes it one.
fn bind_rootfs_onto_itself(rootfs: &Path) -> Result<()> {
    mount_path(Some(rootfs), rootfs, MsFlags::MS_BIND | MsFlags::MS_REC)
        .map_err(|e| syscall("bind onto itself", rootfs, e))
}

fn mount_all(spec: &Spec, rootfs: &Path, mut idmapped: Vec<(usize, OwnedFd)>) -> Result<()> {
    let cgroup_ns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
    let ctx = MountContext { rootfs, cgroup_ns };
    for (index, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let tree = idmapped
            .iter()
            .position(|(i, _)| *i == index)
            .map(|at| idmapped.swap_remove(at).1);
        mounts::mount_entry_with(&ctx, m, tree)?;
    }
    Ok(())
}

/// A `/dev` bound from the host already has its devices; runc leaves it alone.
fn dev_is_bound(spec: &Spec) -> bool {
    spec.mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|m| {
            let bind_option = m
                .options()
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|o| o == "bind" || o == "rbind");
            mounts::is_dev(m.destination()) && (m.typ().as_deref() == Some("bind") || bind_option)
        })
}

/// A read-only `/dev` tmpfs is mounted writable so that devices can be made in it (see
/// [`mounts`]), and made read-only here.
fn dev_wants_readonly(spec: &Spec) -> bool {
    spec.mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|m| {
            let options = m.options().as_deref().unwrap_or_default();
            mounts::is_dev(m.destination())
                && mounts::parse_options(options)
                    .is_ok_and(|o| o.flags.contains(MsFlags::MS_RDONLY))
        })
}

/// runc's pivotRoot: pivot_root(".", ".") stacks the old root on the new one, so no directory
/// for it is needed in the image; it is then detached from under us.
fn pivot_root(rootfs: &Path) -> Result<()> {
    let old_root = open_dir(Path::new("/"))?;
    let new_root = open_dir(rootfs)?;
    nix::unistd::fchdir(&new_root).map_err(|e| syscall("chdir", rootfs, e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| syscall("pivot_root", rootfs, e))?;
    // The kernel does not promise what "." is after pivot_root; go to the old root explicitly.
    nix::unistd::fchdir(&old_root).map_err(|e| syscall("chdir", "old root", e))?;
    // rslave, not rprivate, so that the unmount cannot propagate to the host while the host's
    // own unmounts still reach mounts we hold a reference to.
    mount_path(None, Path::new("."), MsFlags::MS_SLAVE | MsFlags::MS_REC)
        .map_err(|e| syscall("make rslave", "old root", e))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| syscall("unmount", "old root", e))?;
    nix::unistd::chdir("/").map_err(|e| syscall("chdir", "/", e))
}

/// runc's msMoveRoot, for `--no-pivot` (a rootfs on ramfs, where pivot_root fails).
fn move_root(rootfs: &Path) -> Result<()> {
    hide_host_proc_and_sys(rootfs)?;
    nix::unistd::chdir(rootfs).map_err(|e| syscall("chdir", rootfs, e))?;
    mount_path(Some(rootfs), Path::new("/"), MsFlags::MS_MOVE)
        .map_err(|e| syscall("move mount", rootfs, e))?;
    nix::unistd::chroot(".").map_err(|e| syscall("chroot", rootfs, e))?;
    nix::unistd::chdir("/").map_err(|e| syscall("chdir", "/", e))
}

/// Under chroot the host's procfs and sysfs stay in the namespace, reachable from outside the
/// chroot, and their being fully visible is what lets the kernel allow the container to mount
/// new ones. Unmount them (or cover them where we may not), as runc does.
fn hide_host_proc_and_sys(rootfs: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| RootfsError::Syscall {
            step: "read",
            path: "/proc/self/mountinfo".into(),
            source: e,
        })?;
    let full = mounts::parse_mountinfo(&text).into_iter().filter(|m| {
        m.root == Path::new("/")
            && (m.fs_type == "proc" || m.fs_type == "sysfs")
            && !m.mount_point.starts_with(rootfs)
    });
    for m in full {
        let at = m.mount_point.as_path();
        match mount_path(None, at, MsFlags::MS_SLAVE | MsFlags::MS_REC) {
            Ok(()) => {}
            Err(Errno::ENOENT) => continue, // under a mount already gone
            Err(e) => return Err(syscall("make rslave", at, e)),
        }
        match nix::mount::umount2(at, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(Errno::EINVAL | Errno::EPERM) => {
                let tmpfs = Path::new("tmpfs");
                nix::mount::mount(
                    Some(tmpfs),
                    at,
                    Some("tmpfs"),
                    MsFlags::empty(),
                    None::<&str>,
                )
                .map_err(|e| syscall("cover", at, e))?;
            }
            Err(e) => return Err(syscall("unmount", at, e)),
        }
    }
    Ok(())
}

/// readonlyPaths: a recursive bind of the path onto itself, remounted read-only with its other
/// flags kept (nosuid, nodev, noexec may be locked in a user namespace). Missing paths are skipped.
fn make_readonly(path: &Path) -> Result<()> {
    let Some(fd) = open_if_exists(path)? else {
        return Ok(());
    };
    let fd_source = safe_path::fd_path(&fd);
    mount_at(
        Some(&fd_source),
        &fd,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| syscall("bind onto itself", path, e))?;
    // The new mount is on top of what `fd` holds: open it again to reach it.
    let Some(fd) = open_if_exists(path)? else {
        return Ok(());
    };
    let flags = mounts::mount_flags_of(&fd).map_err(|e| syscall("statvfs", path, e))?;
    mounts::remount_readonly(&fd, flags).map_err(|e| syscall("remount read-only", path, e))
}

/// Remounts `/` or `/dev` read-only, keeping their flags. Both are mount points the runtime
/// made, so no symlink of the image can be on the way, and naming them by path spares the
/// need for a procfs in the container.
fn remount_mount_point_readonly(path: &Path) -> Result<()> {
    let flags = mounts::mount_flags_at(path).map_err(|e| syscall("statvfs", path, e))?;
    mount_path(None, path, mounts::readonly_remount_flags(flags))
        .map_err(|e| syscall("remount read-only", path, e))
}

/// maskedPaths: `/dev/null` over a file, an empty read-only tmpfs over a directory.
fn mask(path: &Path) -> Result<()> {
    let Some(fd) = open_if_exists(path)? else {
        return Ok(());
    };
    let st = fstat(&fd).map_err(|e| syscall("stat", path, e))?;
    let result = if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        mount_at(
            Some(Path::new("tmpfs")),
            &fd,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None,
        )
    } else {
        mount_at(
            Some(Path::new("/dev/null")),
            &fd,
            None,
            MsFlags::MS_BIND,
            None,
        )
    };
    result.map_err(|e| syscall("mask", path, e))
}

/// Only a shared root needs setting again after pivot_root: the new root is a bind of a private
/// mount, and pivot_root would have refused a shared one.
fn share_root_if_asked(spec: &Spec) -> Result<()> {
    match rootfs_propagation(spec)? {
        Some(flags) if flags.contains(MsFlags::MS_SHARED) => {
            mount_path(None, Path::new("/"), flags).map_err(|e| syscall("make shared", "/", e))
        }
        _ => Ok(()),
    }
}

/// Opens `path` inside the (already entered) root, `None` when it does not exist.
fn open_if_exists(path: &Path) -> Result<Option<OwnedFd>> {
    match safe_path::open_in_root(Path::new("/"), path, Create::Nothing) {
        Ok(fd) => Ok(Some(fd)),
        Err(SafePathError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            Ok(None)
        }
        Err(source) => Err(RootfsError::Path {
            path: path.into(),
            source,
        }),
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    nix::fcntl::open(path, flags, Mode::empty()).map_err(|e| syscall("open", path, e))
}

/// mount(2) on a path the runtime chose itself (`/`, the rootfs, `.`), never one from the image.
fn mount_path(source: Option<&Path>, target: &Path, flags: MsFlags) -> nix::Result<()> {
    nix::mount::mount(source, target, None::<&str>, flags, None::<&str>)
}

fn syscall(step: &'static str, path: impl Into<PathBuf>, errno: Errno) -> RootfsError {
    RootfsError::Syscall {
        step,
        path: path.into(),
        source: errno.into(),
    }
}

#[cfg(test)]
mod tests {
    //! Real mounts, each test in a forked child with a mount namespace of its own, made rprivate
    //! first: whatever the code under test mounts dies with the child and never reaches the host.

    use super::*;
    use std::fs;
    use std::io::Read;
    use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
    use std::panic::AssertUnwindSafe;

    use nix::sched::{unshare, CloneFlags};
    use nix::sys::statfs::{statfs, CGROUP_SUPER_MAGIC, TMPFS_MAGIC};
    use nix::sys::statvfs::{statvfs, FsFlags};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    type Check = std::result::Result<(), String>;

    fn ensure(ok: bool, what: &str) -> Check {
        if ok {
            Ok(())
        } else {
            Err(what.to_string())
        }
    }

    fn skip_unless_root(test: &str) -> bool {
        let root = nix::unistd::geteuid().is_root();
        if !root {
            eprintln!("{test}: skipped: needs root to make mount namespaces and mounts");
        }
        !root
    }

    /// Runs `check` in a forked child in a new, rprivate mount namespace; its error (or panic)
    /// comes back over a pipe.
    #[allow(unsafe_code)]
    fn in_child_mount_ns(check: impl FnOnce() -> Check) -> Check {
        let (read, write) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        // SAFETY: the child runs only the check, then leaves with _exit without returning into
        // the test harness; glibc keeps malloc usable in a child of a threaded process.
        match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
            ForkResult::Child => {
                drop(read);
                let outcome =
                    std::panic::catch_unwind(AssertUnwindSafe(|| isolate().and_then(|()| check())));
                let message = match outcome {
                    Ok(Ok(())) => String::new(),
                    Ok(Err(message)) => message,
                    Err(panic) => panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panicked".into()),
                };
                let _ = nix::unistd::write(&write, message.as_bytes());
                // SAFETY: _exit ends the child at once, without running the parent's atexit
                // handlers or unwinding into the harness.
                unsafe { libc::_exit(i32::from(!message.is_empty())) }
            }
            ForkResult::Parent { child } => {
                drop(write);
                let mut message = String::new();
                let _ = fs::File::from(read).read_to_string(&mut message);
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, 0)) => Ok(()),
                    status => Err(format!("child {status:?}: {message}")),
                }
            }
        }
    }

    fn isolate() -> Check {
        unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare: {e}"))?;
        mount_path(None, Path::new("/"), MsFlags::MS_REC | MsFlags::MS_PRIVATE)
            .map_err(|e| format!("rprivate: {e}"))
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        base: PathBuf,
        rootfs: PathBuf,
        /// Where rootfs/evil points: absolute, so on the host it would be outside the rootfs.
        outside: PathBuf,
    }

    fn fixture(name: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().canonicalize().expect("canonicalize");
        let rootfs = base.join("rootfs");
        for d in ["tmp", "etc", "proc", "sys", "dev"] {
            fs::create_dir_all(rootfs.join(d)).expect("mkdir");
        }
        let outside = PathBuf::from(format!("/tmp/keel-rootfs-{name}-{}", std::process::id()));
        symlink(&outside, rootfs.join("evil")).expect("symlink");
        fs::create_dir(base.join("data")).expect("mkdir");
        fs::write(base.join("data/hello"), "hello").expect("write");
        fs::write(base.join("hostfile"), "host file").expect("write");
        Fixture {
            _dir: dir,
            base,
            rootfs,
            outside,
        }
    }

    fn spec(f: &Fixture) -> Spec {
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                 "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs",
                 "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
                {"destination": "/evil", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
                {"destination": "/data", "type": "bind", "source": f.base.join("data"),
                 "options": ["rbind", "ro", "nosuid"]},
                {"destination": "/etc/hostfile", "type": "bind", "source": f.base.join("hostfile"),
                 "options": ["bind"]}
            ],
            "linux": {
                "namespaces": [{"type": "mount"}],
                "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438}],
                "maskedPaths": ["/proc/kcore", "/proc/acpi", "/proc/does-not-exist"],
                "readonlyPaths": ["/proc/sys", "/proc/does-not-exist"]
            }
        });
        serde_json::from_value(spec).expect("spec")
    }

    fn errno_of(result: io::Result<fs::File>) -> Option<i32> {
        result.err().and_then(|e| e.raw_os_error())
    }

    fn is_fs(path: &Path, magic: nix::sys::statfs::FsType) -> bool {
        statfs(path).is_ok_and(|st| st.filesystem_type() == magic)
    }

    fn host_has_cgroup_v1() -> bool {
        fs::read_to_string("/proc/self/cgroup").is_ok_and(|s| s.lines().any(|l| !l.contains("::")))
    }

    /// What prepare must have made, seen from the host side of the rootfs.
    fn check_prepared(f: &Fixture) -> Check {
        let inside = f
            .rootfs
            .join(f.outside.strip_prefix("/").map_err(|e| e.to_string())?);
        ensure(
            is_fs(&inside, TMPFS_MAGIC),
            "the tmpfs for /evil is not at rootfs/tmp/... ",
        )?;
        ensure(
            !f.outside.exists(),
            "the symlinked destination leaked to the host's /tmp",
        )?;
        let data = f.rootfs.join("data");
        ensure(
            fs::read_to_string(data.join("hello")).ok().as_deref() == Some("hello"),
            "bind content",
        )?;
        ensure(
            errno_of(fs::File::create(data.join("new"))) == Some(libc::EROFS),
            "ro bind is writable",
        )?;
        ensure(
            statvfs(&data).is_ok_and(|s| s.flags().contains(FsFlags::ST_NOSUID)),
            "nosuid bind",
        )?;
        let hostfile = fs::read_to_string(f.rootfs.join("etc/hostfile")).ok();
        ensure(hostfile.as_deref() == Some("host file"), "file bind mount")?;
        let null = fs::metadata(f.rootfs.join("dev/null")).map_err(|e| format!("dev/null: {e}"))?;
        ensure(
            null.file_type().is_char_device() && null.rdev() == nix::sys::stat::makedev(1, 3),
            "dev/null",
        )?;
        ensure(null.permissions().mode() & 0o777 == 0o666, "dev/null mode")?;
        let fuse = fs::metadata(f.rootfs.join("dev/fuse")).map_err(|e| format!("dev/fuse: {e}"))?;
        ensure(fuse.rdev() == nix::sys::stat::makedev(10, 229), "dev/fuse")?;
        ensure(
            fs::read_link(f.rootfs.join("dev/ptmx")).ok() == Some("pts/ptmx".into()),
            "ptmx link",
        )?;
        ensure(f.rootfs.join("proc/self/status").exists(), "proc")?;
        let sys_ro =
            statvfs(&f.rootfs.join("sys")).is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY));
        ensure(sys_ro, "sysfs is not read-only")?;
        if host_has_cgroup_v1() {
            let cgroup = f.rootfs.join("sys/fs/cgroup");
            ensure(is_fs(&cgroup, TMPFS_MAGIC), "cgroup tmpfs")?;
            let first = fs::read_dir(&cgroup)
                .map_err(|e| e.to_string())?
                .flatten()
                .next();
            let first = first.ok_or("no hierarchy under sys/fs/cgroup")?.path();
            ensure(
                is_fs(&first, CGROUP_SUPER_MAGIC),
                "cgroup hierarchy not mounted",
            )?;
            ensure(
                statvfs(&first).is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY)),
                "ro hierarchy",
            )?;
        }
        Ok(())
    }

    /// What enter and finish must have made, seen from inside.
    fn check_finished(f: &Fixture) -> Check {
        ensure(!f.base.exists(), "the old root is still visible")?;
        ensure(is_fs(&f.outside, TMPFS_MAGIC), "/evil's tmpfs")?;
        ensure(
            errno_of(fs::File::create("/new")) == Some(libc::EROFS),
            "root.readonly",
        )?;
        ensure(
            fs::File::create("/dev/shm-like").is_ok(),
            "/dev must stay writable",
        )?;
        ensure(
            statvfs("/proc/sys").is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY)),
            "readonly /proc/sys",
        )?;
        if let Ok(mut kcore) = fs::File::open("/proc/kcore") {
            let mut buf = [0u8; 16];
            ensure(
                kcore.read(&mut buf).ok() == Some(0),
                "/proc/kcore is not masked",
            )?;
        }
        if Path::new("/proc/acpi").is_dir() {
            ensure(
                is_fs(Path::new("/proc/acpi"), TMPFS_MAGIC),
                "/proc/acpi is not masked",
            )?;
        }
        ensure(
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/ptmx")
                .is_ok(),
            "open /dev/ptmx",
        )?;
        ensure(
            fs::read_to_string("/data/hello").ok().as_deref() == Some("hello"),
            "bind after pivot",
        )
    }

    #[test]
    fn prepare_enter_finish_with_pivot_root() {
        if skip_unless_root("prepare_enter_finish_with_pivot_root") {
            return;
        }
        let f = fixture("pivot");
        let spec = spec(&f);
        let result = in_child_mount_ns(|| {
            prepare(&spec, &f.rootfs, Vec::new()).map_err(|e| format!("prepare: {e}"))?;
            check_prepared(&f)?;
            enter(&f.rootfs, false).map_err(|e| format!("enter: {e}"))?;
            finish(&spec).map_err(|e| format!("finish: {e}"))?;
            check_finished(&f)
        });
        assert_eq!(result, Ok(()));
        assert!(!f.outside.exists(), "a mount escaped to the host");
    }

    #[test]
    fn prepare_enter_finish_without_pivot() {
        if skip_unless_root("prepare_enter_finish_without_pivot") {
            return;
        }
        let f = fixture("move");
        let spec = spec(&f);
        let result = in_child_mount_ns(|| {
            prepare(&spec, &f.rootfs, Vec::new()).map_err(|e| format!("prepare: {e}"))?;
            enter(&f.rootfs, true).map_err(|e| format!("enter: {e}"))?;
            finish(&spec).map_err(|e| format!("finish: {e}"))?;
            check_finished(&f)
        });
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn bad_bind_source_names_destination_and_source() {
        if skip_unless_root("bad_bind_source_names_destination_and_source") {
            return;
        }
        let f = fixture("badsource");
        let mut spec = spec(&f);
        let mount = serde_json::json!({"destination": "/data", "type": "bind",
            "source": "/nonexistent/keel-source", "options": ["rbind"]});
        spec.set_mounts(Some(vec![serde_json::from_value(mount).expect("mount")]));
        let result = in_child_mount_ns(|| match prepare(&spec, &f.rootfs, Vec::new()) {
            Ok(()) => Err("a missing bind source was accepted".into()),
            Err(e) => {
                let text = e.to_string();
                ensure(
                    text.contains("/data") && text.contains("/nonexistent/keel-source"),
                    &text,
                )
            }
        });
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn mounts_over_proc_files_are_refused() {
        if skip_unless_root("mounts_over_proc_files_are_refused") {
            return;
        }
        let f = fixture("proc");
        let mut spec = spec(&f);
        let mounts = serde_json::json!([
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/proc/self/attr", "type": "tmpfs", "source": "tmpfs"}
        ]);
        spec.set_mounts(Some(serde_json::from_value(mounts).expect("mounts")));
        let result = in_child_mount_ns(|| match prepare(&spec, &f.rootfs, Vec::new()) {
            Ok(()) => Err("a tmpfs over /proc/self/attr was accepted".into()),
            Err(e) => ensure(e.to_string().contains("/proc"), &e.to_string()),
        });
        assert_eq!(result, Ok(()));
    }

    /// Root of a fresh user namespace, mapped to root only, as a process may map itself.
    fn enter_user_namespace() -> Check {
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)
            .map_err(|e| format!("unshare: {e}"))?;
        for (file, text) in [
            ("uid_map", "0 0 1"),
            ("setgroups", "deny"),
            ("gid_map", "0 0 1"),
        ] {
            fs::write(format!("/proc/self/{file}"), text).map_err(|e| format!("{file}: {e}"))?;
        }
        Ok(())
    }

    fn userns_spec(f: &Fixture) -> Spec {
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                 "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/locked", "type": "bind", "source": f.base.join("locked"), "options": ["rbind", "ro"]}
            ],
            "linux": {"namespaces": [{"type": "mount"}, {"type": "user"}]}
        });
        serde_json::from_value(spec).expect("spec")
    }

    #[test]
    fn user_namespace_falls_back_to_binds_and_keeps_locked_flags() {
        if skip_unless_root("user_namespace_falls_back_to_binds_and_keeps_locked_flags") {
            return;
        }
        let f = fixture("userns");
        let spec = userns_spec(&f);
        let locked = f.base.join("locked");
        fs::create_dir(&locked).expect("mkdir");
        let result = in_child_mount_ns(|| {
            // A mount made before the user namespace: its nosuid/nodev/noexec get locked in it.
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            nix::mount::mount(Some("tmpfs"), &locked, Some("tmpfs"), flags, None::<&str>)
                .map_err(|e| format!("tmpfs: {e}"))?;
            enter_user_namespace()?;
            prepare(&spec, &f.rootfs, Vec::new()).map_err(|e| format!("prepare: {e}"))?;
            let null =
                fs::metadata(f.rootfs.join("dev/null")).map_err(|e| format!("dev/null: {e}"))?;
            ensure(
                null.file_type().is_char_device() && null.rdev() == nix::sys::stat::makedev(1, 3),
                "dev/null bind",
            )?;
            ensure(
                is_fs(&f.rootfs.join("sys"), nix::sys::statfs::SYSFS_MAGIC),
                "/sys bound from the host",
            )?;
            let sys = statvfs(&f.rootfs.join("sys")).map_err(|e| e.to_string())?;
            ensure(
                sys.flags()
                    .contains(FsFlags::ST_RDONLY | FsFlags::ST_NOSUID),
                "/sys flags",
            )?;
            let bound = statvfs(&f.rootfs.join("locked")).map_err(|e| e.to_string())?;
            let want =
                FsFlags::ST_RDONLY | FsFlags::ST_NOSUID | FsFlags::ST_NODEV | FsFlags::ST_NOEXEC;
            ensure(
                bound.flags().contains(want),
                "locked flags kept on the ro bind",
            )?;
            let suid = serde_json::json!({"destination": "/locked2", "type": "bind",
                "source": &locked, "options": ["rbind", "suid"]});
            let suid: oci_spec::runtime::Mount =
                serde_json::from_value(suid).map_err(|e| e.to_string())?;
            let ctx = MountContext {
                rootfs: &f.rootfs,
                cgroup_ns: false,
            };
            ensure(
                mounts::mount_entry(&ctx, &suid).is_err(),
                "a locked nosuid was silently kept",
            )?;
            enter(&f.rootfs, false).map_err(|e| format!("enter: {e}"))?;
            finish(&spec).map_err(|e| format!("finish: {e}"))?;
            ensure(
                errno_of(fs::File::create("/new")) == Some(libc::EROFS),
                "root.readonly",
            )?;
            ensure(
                fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/null")
                    .is_ok(),
                "open /dev/null",
            )
        });
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn cgroup_namespace_gets_fresh_v1_hierarchies() {
        if skip_unless_root("cgroup_namespace_gets_fresh_v1_hierarchies") {
            return;
        }
        if !host_has_cgroup_v1() {
            eprintln!(
                "cgroup_namespace_gets_fresh_v1_hierarchies: skipped: the host has no cgroup v1"
            );
            return;
        }
        let f = fixture("cgroupns");
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "mounts": [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}],
            "linux": {"namespaces": [{"type": "mount"}, {"type": "cgroup"}]}
        });
        let spec: Spec = serde_json::from_value(spec).expect("spec");
        let result = in_child_mount_ns(|| {
            unshare(CloneFlags::CLONE_NEWCGROUP).map_err(|e| format!("unshare: {e}"))?;
            prepare(&spec, &f.rootfs, Vec::new()).map_err(|e| format!("prepare: {e}"))?;
            let mountinfo =
                fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
            let cgroup = f.rootfs.join("sys/fs/cgroup");
            let fresh: Vec<_> = mounts::parse_mountinfo(&mountinfo)
                .into_iter()
                .filter(|m| m.fs_type == "cgroup" && m.mount_point.starts_with(&cgroup))
                .collect();
            let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
            let v1 = own.lines().filter(|l| !l.contains("::")).count();
            ensure(
                fresh.len() == v1,
                &format!("{} hierarchies mounted for {v1}", fresh.len()),
            )?;
            ensure(
                fresh.iter().all(|m| m.root == Path::new("/")),
                "a hierarchy shows more than its cgroup",
            )?;
            ensure(
                fresh.iter().all(|m| {
                    statvfs(&m.mount_point).is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY))
                }),
                "ro",
            )
        });
        assert_eq!(result, Ok(()));
    }
}
