//! One `mounts[]` entry: option parsing (flags, propagation, data) and the mount itself, onto a
//! destination resolved inside the rootfs.
//!
//! As in runc, a destination is opened with [`safe_path::open_in_root`] and mounted on through its
//! `/proc/self/fd/N`, never through a path string. After a mount the destination is opened again:
//! the old fd still names the directory *under* the new mount, so remounts, propagation changes
//! and mount_setattr(2) need the new one; the two must name the same place, or the path was swapped
//! while we mounted.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::mount::MsFlags;
use nix::sys::stat::{fstatat, SFlag};
use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, PROC_SUPER_MAGIC};
use nix::sys::statvfs::{fstatvfs, statvfs, FsFlags, Statvfs};
use oci_spec::runtime::Mount;

use crate::safe_path::{self, fd_path, Create, SafePathError};

/// Errors of mounting one entry.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// An option this runtime does not implement (idmapped mounts, runc's `tmpcopyup`).
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

/// `MS_NOSYMFOLLOW` (Linux 5.10), which neither nix nor libc name yet.
const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);

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

const ATIME_FLAGS: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME)
    .union(MsFlags::MS_NODIRATIME);

/// What runc gives the cgroup tmpfs and the hierarchies under it.
const CGROUP_FLAGS: MsFlags = MsFlags::MS_NOEXEC
    .union(MsFlags::MS_NOSUID)
    .union(MsFlags::MS_NODEV);

// mount_setattr(2) attributes (linux/mount.h); stable kernel ABI, not in libc yet.
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x20_0000;

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

/// The parsed `options` of one mount entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for mount(2).
    pub flags: MsFlags,
    /// Flags the options turn off explicitly (`rw`, `suid`, ...); a bind remount must honour them.
    pub cleared: MsFlags,
    /// Propagation changes, applied in order after the mount.
    pub propagation: Vec<MsFlags>,
    /// `MOUNT_ATTR_*` bits to set recursively with mount_setattr(2) (`rro`, `rnosuid`, ...).
    pub attr_set: u64,
    /// `MOUNT_ATTR_*` bits to clear recursively.
    pub attr_clr: u64,
    /// Filesystem-specific options, comma-separated, for mount(2)'s data.
    pub data: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            attr_set: 0,
            attr_clr: 0,
            data: String::new(),
        }
    }
}

/// What one option string means.
enum Opt {
    Set(MsFlags),
    Clear(MsFlags),
    Propagation(MsFlags),
    AttrSet(u64),
    AttrClear(u64),
    Ignore,
    Unsupported,
    Data,
}

fn classify(option: &str) -> Opt {
    use MsFlags as F;
    use Opt::*;
    match option {
        "ro" => Set(F::MS_RDONLY),
        "rw" => Clear(F::MS_RDONLY),
        "nosuid" => Set(F::MS_NOSUID),
        "suid" => Clear(F::MS_NOSUID),
        "nodev" => Set(F::MS_NODEV),
        "dev" => Clear(F::MS_NODEV),
        "noexec" => Set(F::MS_NOEXEC),
        "exec" => Clear(F::MS_NOEXEC),
        "sync" => Set(F::MS_SYNCHRONOUS),
        "async" => Clear(F::MS_SYNCHRONOUS),
        "dirsync" => Set(F::MS_DIRSYNC),
        "remount" => Set(F::MS_REMOUNT),
        "mand" => Set(F::MS_MANDLOCK),
        "nomand" => Clear(F::MS_MANDLOCK),
        "noatime" => Set(F::MS_NOATIME),
        "atime" => Clear(F::MS_NOATIME),
        "nodiratime" => Set(F::MS_NODIRATIME),
        "diratime" => Clear(F::MS_NODIRATIME),
        "relatime" => Set(F::MS_RELATIME),
        "norelatime" => Clear(F::MS_RELATIME),
        "strictatime" => Set(F::MS_STRICTATIME),
        "nostrictatime" => Clear(F::MS_STRICTATIME),
        "silent" => Set(F::MS_SILENT),
        "loud" => Clear(F::MS_SILENT),
        "lazytime" => Set(F::MS_LAZYTIME),
        "nolazytime" => Clear(F::MS_LAZYTIME),
        "iversion" => Set(F::MS_I_VERSION),
        "noiversion" => Clear(F::MS_I_VERSION),
        "acl" => Set(F::MS_POSIXACL),
        "noacl" => Clear(F::MS_POSIXACL),
        "nosymfollow" => Set(MS_NOSYMFOLLOW),
        "symfollow" => Clear(MS_NOSYMFOLLOW),
        "bind" => Set(F::MS_BIND),
        "rbind" => Set(F::MS_BIND | F::MS_REC),
        "defaults" => Ignore,
        "private" => Propagation(F::MS_PRIVATE),
        "rprivate" => Propagation(F::MS_PRIVATE | F::MS_REC),
        "shared" => Propagation(F::MS_SHARED),
        "rshared" => Propagation(F::MS_SHARED | F::MS_REC),
        "slave" => Propagation(F::MS_SLAVE),
        "rslave" => Propagation(F::MS_SLAVE | F::MS_REC),
        "unbindable" => Propagation(F::MS_UNBINDABLE),
        "runbindable" => Propagation(F::MS_UNBINDABLE | F::MS_REC),
        "rro" => AttrSet(MOUNT_ATTR_RDONLY),
        "rrw" => AttrClear(MOUNT_ATTR_RDONLY),
        "rnosuid" => AttrSet(MOUNT_ATTR_NOSUID),
        "rsuid" => AttrClear(MOUNT_ATTR_NOSUID),
        "rnodev" => AttrSet(MOUNT_ATTR_NODEV),
        "rdev" => AttrClear(MOUNT_ATTR_NODEV),
        "rnoexec" => AttrSet(MOUNT_ATTR_NOEXEC),
        "rexec" => AttrClear(MOUNT_ATTR_NOEXEC),
        "rnodiratime" => AttrSet(MOUNT_ATTR_NODIRATIME),
        "rdiratime" => AttrClear(MOUNT_ATTR_NODIRATIME),
        "rrelatime" => AttrSet(MOUNT_ATTR_RELATIME),
        "rnorelatime" => AttrClear(MOUNT_ATTR_RELATIME),
        "rnoatime" => AttrSet(MOUNT_ATTR_NOATIME),
        "ratime" => AttrClear(MOUNT_ATTR_NOATIME),
        "rstrictatime" => AttrSet(MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => AttrClear(MOUNT_ATTR_STRICTATIME),
        "rnosymfollow" => AttrSet(MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => AttrClear(MOUNT_ATTR_NOSYMFOLLOW),
        "idmap" | "ridmap" | "tmpcopyup" => Unsupported,
        _ => Data,
    }
}

/// Parses OCI mount options as runc does: known flags (last one wins), propagation, recursive
/// attributes; anything else is filesystem data, passed on in order.
pub fn parse_options<S: AsRef<str>>(options: &[S]) -> Result<MountOptions> {
    let mut opts = MountOptions::default();
    let mut data = Vec::new();
    for option in options.iter().map(AsRef::as_ref) {
        match classify(option) {
            Opt::Set(f) => {
                opts.flags |= f;
                opts.cleared &= !f;
            }
            Opt::Clear(f) => {
                opts.flags &= !f;
                opts.cleared |= f;
            }
            Opt::Propagation(f) => opts.propagation.push(f),
            Opt::AttrSet(a) => {
                opts.attr_set |= a;
                // mount_setattr(2) takes an atime mode only with the whole atime field cleared.
                if a & MOUNT_ATTR_ATIME == a {
                    opts.attr_clr |= MOUNT_ATTR_ATIME;
                }
            }
            Opt::AttrClear(a) => opts.attr_clr |= a,
            Opt::Ignore => {}
            Opt::Unsupported => return Err(MountError::UnsupportedOption(option.to_string())),
            Opt::Data => data.push(option),
        }
    }
    opts.data = data.join(",");
    Ok(opts)
}

/// What mounting an entry needs to know beyond the entry itself.
#[derive(Debug, Clone, Copy)]
pub struct MountContext<'a> {
    /// The rootfs (canonical host path), already a mount point of its own.
    pub rootfs: &'a Path,
    /// The container has its own cgroup namespace: cgroup filesystems are then mounted fresh
    /// (showing the container's cgroup as their root) instead of bound from the host.
    pub cgroup_ns: bool,
}

/// Mounts one `mounts[]` entry inside the rootfs.
pub fn mount_entry(ctx: &MountContext<'_>, m: &Mount) -> Result<()> {
    let dest = m.destination().as_path();
    let opts = parse_options(m.options().as_deref().unwrap_or_default())?;
    let fstype = m.typ().as_deref().unwrap_or("");
    if fstype == "bind" || opts.flags.contains(MsFlags::MS_BIND) {
        let src = bind_source(dest, m.source().as_deref())?;
        let mut opts = opts;
        opts.flags |= MsFlags::MS_BIND;
        return mount_bind(ctx, dest, &src, &opts);
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

/// A bind mount source: relative ones are taken from the bundle, the runtime's working directory.
fn bind_source(dest: &Path, source: Option<&Path>) -> Result<PathBuf> {
    let src = source.ok_or_else(|| invalid(dest, "a bind mount needs a source"))?;
    std::path::absolute(src).map_err(|e| source_error(dest, src, e))
}

fn mount_bind(ctx: &MountContext<'_>, dest: &Path, src: &Path, opts: &MountOptions) -> Result<()> {
    let meta = fs::metadata(src).map_err(|e| source_error(dest, src, e))?;
    let fd = open_dest(
        ctx,
        dest,
        if meta.is_dir() {
            Create::Dir
        } else {
            Create::File
        },
    )?;
    check_proc_destination(ctx, dest, &fd, "bind", Some(src))?;
    let bind = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
    let show = src.to_string_lossy();
    mount_at(Some(src), &fd, None, bind, None).map_err(|e| syscall(dest, &show, "bind", e))?;
    let fd = reopen(ctx, dest, &fd)?;
    let plain = MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT;
    if !(opts.flags - plain).is_empty() || !opts.cleared.is_empty() {
        remount_bind(dest, src, &fd, opts)?;
    }
    set_propagation_and_attrs(dest, &show, &fd, opts)
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

/// Any filesystem by type name (proc, tmpfs, devpts, mqueue, overlay, ...).
fn mount_filesystem(
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

/// Makes the mount at `fd` read-only, keeping its other per-mount `flags`.
pub fn remount_readonly(fd: &OwnedFd, flags: MsFlags) -> nix::Result<()> {
    mount_at(None, fd, None, readonly_remount_flags(flags), None)
}

/// The flags that remount a mount whose flags are `current` read-only: a bind remount changes
/// only the mount, and carrying `current` over keeps what a user namespace may have locked.
pub fn readonly_remount_flags(current: MsFlags) -> MsFlags {
    (current & LOCKED_FLAGS) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY
}

/// A user namespace without its own network namespace may not mount sysfs: like runc's
/// rootless specs and crun, give such a container the host's `/sys`, bound recursively.
fn mount_sysfs(ctx: &MountContext<'_>, dest: &Path, src: &str, opts: &MountOptions) -> Result<()> {
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

/// A `cgroup` entry: cgroup2 on a unified host, else the v1 tree of hierarchies.
fn mount_cgroup(ctx: &MountContext<'_>, dest: &Path, opts: &MountOptions) -> Result<()> {
    let unified =
        statfs("/sys/fs/cgroup").is_ok_and(|st| st.filesystem_type() == CGROUP2_SUPER_MAGIC);
    if unified {
        return mount_cgroup2(ctx, dest, "cgroup2", opts);
    }
    mount_cgroup_v1(ctx, dest, opts)
}

/// cgroup2, or, where a user namespace without a cgroup namespace may not mount it, a bind of
/// the host's unified hierarchy (only the container's own cgroup when it has a cgroup namespace).
fn mount_cgroup2(
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

/// One line of /proc/self/mountinfo: the fields this runtime uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The directory of the filesystem that is mounted (`/` for a whole filesystem).
    pub root: PathBuf,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The filesystem type (`proc`, `cgroup`, ...).
    pub fs_type: String,
    /// The superblock options (for cgroup v1: the controllers).
    pub super_options: String,
}

/// Parses the text of a mountinfo file; lines it cannot read are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let (left, right) = line.split_once(" - ")?;
    let mut left = left.split(' ').skip(3);
    let root = unescape(left.next()?);
    let mount_point = unescape(left.next()?);
    let mut right = right.split(' ');
    let fs_type = right.next()?.to_string();
    let super_options = right.nth(1).unwrap_or_default().to_string();
    Some(MountInfo {
        root,
        mount_point,
        fs_type,
        super_options,
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, b| acc.wrapping_mul(8).wrapping_add(b - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

fn read_host_file(dest: &Path, file: &'static str) -> Result<String> {
    fs::read_to_string(file).map_err(|source| MountError::HostInfo {
        destination: dest.into(),
        file,
        source,
    })
}

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

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Applies mount attributes to the mount at `fd` and every mount under it.
#[allow(unsafe_code)]
fn mount_setattr_recursive(fd: &OwnedFd, attr_set: u64, attr_clr: u64) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set,
        attr_clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a NUL-terminated empty string and `attr` a live mount_attr whose size
    // is passed along; the kernel only reads both during the call.
    let res = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(res).map(drop)
}

fn open_dest(ctx: &MountContext<'_>, dest: &Path, create: Create) -> Result<OwnedFd> {
    safe_path::open_in_root(ctx.rootfs, dest, create).map_err(|source| MountError::Destination {
        destination: dest.into(),
        source,
    })
}

/// Opens the destination again after a mount (to reach the new mount, not the directory under
/// it) and checks it is still the same place.
fn reopen(ctx: &MountContext<'_>, dest: &Path, before: &OwnedFd) -> Result<OwnedFd> {
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
fn check_plain_directory(ctx: &MountContext<'_>, dest: &Path, fstype: &str) -> Result<()> {
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
fn check_proc_destination(
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

    fn parse(options: &[&str]) -> MountOptions {
        parse_options(options).expect("parse")
    }

    #[test]
    fn flags_set_and_clear_in_order() {
        let o = parse(&["ro", "nosuid", "nodev", "noexec", "relatime"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_RELATIME
        );
        assert!(o.cleared.is_empty());
        let o = parse(&["ro", "rw", "suid", "nosuid", "dev"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID);
        assert_eq!(o.cleared, MsFlags::MS_RDONLY | MsFlags::MS_NODEV);
    }

    #[test]
    fn every_listed_flag_is_known() {
        let all = [
            "ro",
            "rw",
            "suid",
            "nosuid",
            "dev",
            "nodev",
            "exec",
            "noexec",
            "sync",
            "async",
            "dirsync",
            "remount",
            "mand",
            "nomand",
            "atime",
            "noatime",
            "diratime",
            "nodiratime",
            "relatime",
            "norelatime",
            "strictatime",
            "nostrictatime",
            "bind",
            "rbind",
            "private",
            "rprivate",
            "shared",
            "rshared",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
            "silent",
            "loud",
            "defaults",
            "lazytime",
        ];
        for option in all {
            assert_eq!(parse(&[option]).data, "", "{option} was taken as data");
        }
    }

    #[test]
    fn bind_and_rbind() {
        assert_eq!(parse(&["bind"]).flags, MsFlags::MS_BIND);
        assert_eq!(parse(&["rbind"]).flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(parse(&["defaults"]).flags, MsFlags::empty());
        assert_eq!(
            parse(&[
                "strictatime",
                "sync",
                "dirsync",
                "silent",
                "lazytime",
                "mand",
                "remount"
            ])
            .flags,
            MsFlags::MS_STRICTATIME
                | MsFlags::MS_SYNCHRONOUS
                | MsFlags::MS_DIRSYNC
                | MsFlags::MS_SILENT
                | MsFlags::MS_LAZYTIME
                | MsFlags::MS_MANDLOCK
                | MsFlags::MS_REMOUNT
        );
    }

    #[test]
    fn propagation_is_kept_in_order() {
        let o = parse(&["rbind", "rprivate", "shared", "slave", "runbindable"]);
        assert_eq!(
            o.propagation,
            vec![
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                MsFlags::MS_SHARED,
                MsFlags::MS_SLAVE,
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            ]
        );
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
    }

    #[test]
    fn unknown_options_are_data_in_order() {
        let o = parse(&[
            "nosuid",
            "mode=755",
            "size=65536k",
            "newinstance",
            "ptmxmode=0666",
        ]);
        assert_eq!(o.data, "mode=755,size=65536k,newinstance,ptmxmode=0666");
        assert_eq!(o.flags, MsFlags::MS_NOSUID);
    }

    #[test]
    fn recursive_attributes() {
        let o = parse(&["rro", "rnosuid", "rnodev", "rnoexec"]);
        assert_eq!(
            o.attr_set,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC
        );
        assert_eq!(o.attr_clr, 0);
        let o = parse(&["rnoatime"]);
        assert_eq!(
            (o.attr_set, o.attr_clr),
            (MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME)
        );
        let o = parse(&["rrelatime"]);
        assert_eq!((o.attr_set, o.attr_clr), (0, MOUNT_ATTR_ATIME));
        let o = parse(&["ratime", "rrw"]);
        assert_eq!(
            (o.attr_set, o.attr_clr),
            (0, MOUNT_ATTR_NOATIME | MOUNT_ATTR_RDONLY)
        );
    }

    #[test]
    fn unsupported_options_are_refused() {
        for option in ["idmap", "ridmap", "tmpcopyup"] {
            let err = parse_options(&[option]).expect_err(option);
            assert!(err.to_string().contains(option));
        }
    }

    const MOUNTINFO: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 /outer /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 27 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn mountinfo_fields() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 8);
        assert_eq!(
            mounts[3].mount_point,
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(mounts[3].fs_type, "cgroup");
        assert_eq!(mounts[3].super_options, "rw,cpu,cpuacct");
        assert_eq!(mounts[4].root, Path::new("/outer"));
        assert_eq!(mounts[7].mount_point, Path::new("/mnt/with space"));
    }

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

    #[test]
    fn dev_destination() {
        assert!(is_dev(Path::new("/dev")));
        assert!(is_dev(Path::new("/dev/")));
        assert!(is_dev(Path::new("dev")));
        assert!(!is_dev(Path::new("/dev/pts")));
        assert!(!is_dev(Path::new("/")));
    }
}
