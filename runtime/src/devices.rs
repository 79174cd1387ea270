//! `/dev` in the container: the default devices, `linux.devices`, and the std* and fd links.
//!
//! Every node and link is made with an `*at` call on a parent directory resolved by
//! [`safe_path`], so a `/dev` that is a symlink in the image cannot put nodes on the host.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::mount::MsFlags;
use nix::sys::stat::{makedev, mknodat, umask, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use crate::mounts;
use crate::safe_path::{self, Create, SafePathError};

/// Errors of populating `/dev`.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A `linux.devices` entry that cannot be created as written.
    #[error("device {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// The path could not be resolved inside the rootfs.
    #[error("device {path}: {source}")]
    Path {
        path: PathBuf,
        source: SafePathError,
    },
    /// A system call on the node failed.
    #[error("device {path}: {step}: {source}")]
    Syscall {
        path: PathBuf,
        step: &'static str,
        source: io::Error,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, DeviceError>;

/// One device node to make, in the container's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    /// Path inside the container (`/dev/null`); the host node of the same path is bound when
    /// mknod(2) is not permitted.
    pub path: PathBuf,
    /// `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
    pub kind: SFlag,
    /// Device major number.
    pub major: u64,
    /// Device minor number.
    pub minor: u64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl DeviceNode {
    /// The node a `linux.devices` entry describes (mode 0666 and root owner when unset).
    pub fn from_spec(device: &LinuxDevice) -> Result<Self> {
        let path = device.path().clone();
        let kind = match device.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(DeviceError::Invalid {
                    path,
                    reason: "type \"a\" is not a node type".into(),
                })
            }
        };
        let number = |n: i64, what: &str| {
            u64::try_from(n).map_err(|_| DeviceError::Invalid {
                path: device.path().clone(),
                reason: format!("negative {what} number {n}"),
            })
        };
        Ok(Self {
            kind,
            major: number(device.major(), "major")?,
            minor: number(device.minor(), "minor")?,
            mode: device.file_mode().unwrap_or(0o666) & 0o7777,
            uid: device.uid().unwrap_or(0),
            gid: device.gid().unwrap_or(0),
            path,
        })
    }

    fn char_device(path: &str, major: u64, minor: u64) -> Self {
        let (mode, uid, gid) = (0o666, 0, 0);
        Self {
            path: path.into(),
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode,
            uid,
            gid,
        }
    }
}

/// runc's default devices, made in every container whose `/dev` is not bound from the host.
pub fn default_devices() -> Vec<DeviceNode> {
    vec![
        DeviceNode::char_device("/dev/null", 1, 3),
        DeviceNode::char_device("/dev/zero", 1, 5),
        DeviceNode::char_device("/dev/full", 1, 7),
        DeviceNode::char_device("/dev/random", 1, 8),
        DeviceNode::char_device("/dev/urandom", 1, 9),
        DeviceNode::char_device("/dev/tty", 5, 0),
    ]
}

/// The default devices, except those `linux.devices` redefines, followed by `linux.devices`.
pub fn device_list(spec_devices: &[LinuxDevice]) -> Result<Vec<DeviceNode>> {
    let mut nodes: Vec<DeviceNode> = default_devices()
        .into_iter()
        .filter(|d| {
            !spec_devices
                .iter()
                .any(|s| Path::new("/").join(s.path()) == d.path)
        })
        .collect();
    for device in spec_devices {
        nodes.push(DeviceNode::from_spec(device)?);
    }
    Ok(nodes)
}

/// Fills the container's `/dev`: the devices, the std* and fd links, and `/dev/ptmx`.
pub fn populate_dev(rootfs: &Path, spec_devices: &[LinuxDevice]) -> Result<()> {
    create_devices(rootfs, &device_list(spec_devices)?)?;
    create_links(rootfs)?;
    link_ptmx(rootfs)
}

/// Makes each node inside `rootfs` with its exact mode; an existing node is left as it is.
pub fn create_devices(rootfs: &Path, nodes: &[DeviceNode]) -> Result<()> {
    let _umask = ClearedUmask::new();
    nodes.iter().try_for_each(|node| create_node(rootfs, node))
}

fn create_node(rootfs: &Path, node: &DeviceNode) -> Result<()> {
    let (dir, name) = parent(rootfs, &node.path)?;
    let mode = Mode::from_bits_truncate(node.mode);
    let dev = makedev(node.major, node.minor);
    match mknodat(&dir, name.as_os_str(), node.kind, mode, dev) {
        Ok(()) => chown(&dir, &name, node),
        Err(Errno::EEXIST) => Ok(()),
        // In a user namespace devices cannot be made: bind the host's node instead.
        Err(Errno::EPERM) => bind_host_device(rootfs, node),
        Err(e) => Err(syscall(&node.path, "mknod", e)),
    }
}

fn chown(dir: &OwnedFd, name: &OsStr, node: &DeviceNode) -> Result<()> {
    let (uid, gid) = (Some(Uid::from_raw(node.uid)), Some(Gid::from_raw(node.gid)));
    fchownat(dir, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|e| syscall(&node.path, "chown", e))
}

fn bind_host_device(rootfs: &Path, node: &DeviceNode) -> Result<()> {
    let host = Path::new("/").join(&node.path);
    let fd = safe_path::open_in_root(rootfs, &node.path, Create::File).map_err(|source| {
        DeviceError::Path {
            path: node.path.clone(),
            source,
        }
    })?;
    mounts::mount_at(Some(&host), &fd, None, MsFlags::MS_BIND, None)
        .map_err(|e| syscall(&node.path, "bind mount of the host device", e))
}

/// The links every container has; `/dev/core` only where the kernel has `/proc/kcore`.
const LINKS: [(&str, &str); 4] = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
];

/// Makes `/dev/fd`, `/dev/std{in,out,err}` and `/dev/core`; existing entries are kept.
pub fn create_links(rootfs: &Path) -> Result<()> {
    for (target, link) in LINKS {
        make_link(rootfs, target, Path::new(link))?;
    }
    if Path::new("/proc/kcore").exists() {
        make_link(rootfs, "/proc/kcore", Path::new("/dev/core"))?;
    }
    Ok(())
}

/// Replaces `/dev/ptmx` with a link to `pts/ptmx`, so the container's devpts instance (mounted
/// with `newinstance`) serves its ptys, not the host's.
pub fn link_ptmx(rootfs: &Path) -> Result<()> {
    let link = Path::new("/dev/ptmx");
    let (dir, name) = parent(rootfs, link)?;
    match unlinkat(&dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(syscall(link, "unlink", e)),
    }
    symlinkat("pts/ptmx", &dir, name.as_os_str()).map_err(|e| syscall(link, "symlink", e))
}

fn make_link(rootfs: &Path, target: &str, link: &Path) -> Result<()> {
    let (dir, name) = parent(rootfs, link)?;
    match symlinkat(target, &dir, name.as_os_str()) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(syscall(link, "symlink", e)),
    }
}

fn parent(rootfs: &Path, path: &Path) -> Result<(OwnedFd, std::ffi::OsString)> {
    safe_path::open_parent_in_root(rootfs, path).map_err(|source| DeviceError::Path {
        path: path.into(),
        source,
    })
}

fn syscall(path: &Path, step: &'static str, errno: Errno) -> DeviceError {
    DeviceError::Syscall {
        path: path.into(),
        step,
        source: errno.into(),
    }
}

/// Clears the umask while nodes are made (their modes are exact, as in runc) and restores it.
struct ClearedUmask(Mode);

impl ClearedUmask {
    fn new() -> Self {
        Self(umask(Mode::empty()))
    }
}

impl Drop for ClearedUmask {
    fn drop(&mut self) {
        umask(self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceBuilder;

    fn spec_device(path: &str, typ: LinuxDeviceType, major: i64, minor: i64) -> LinuxDevice {
        LinuxDeviceBuilder::default()
            .path(path)
            .typ(typ)
            .major(major)
            .minor(minor)
            .build()
            .expect("device")
    }

    #[test]
    fn spec_devices_replace_defaults_of_the_same_path() {
        let mut null = spec_device("/dev/null", LinuxDeviceType::C, 1, 3);
        null.set_file_mode(Some(0o600));
        let fuse = spec_device("/dev/fuse", LinuxDeviceType::C, 10, 229);
        let list = device_list(&[null, fuse]).expect("list");
        assert_eq!(list.len(), 7);
        let nulls: Vec<_> = list
            .iter()
            .filter(|d| d.path == Path::new("/dev/null"))
            .collect();
        assert_eq!(nulls.len(), 1);
        assert_eq!(nulls[0].mode, 0o600);
        assert!(list
            .iter()
            .any(|d| d.path == Path::new("/dev/fuse") && d.mode == 0o666));
    }

    #[test]
    fn device_types() {
        let fifo =
            DeviceNode::from_spec(&spec_device("/dev/f", LinuxDeviceType::P, 0, 0)).expect("p");
        assert_eq!(fifo.kind, SFlag::S_IFIFO);
        let block =
            DeviceNode::from_spec(&spec_device("/dev/b", LinuxDeviceType::B, 8, 0)).expect("b");
        assert_eq!(block.kind, SFlag::S_IFBLK);
        let unbuf =
            DeviceNode::from_spec(&spec_device("/dev/u", LinuxDeviceType::U, 1, 3)).expect("u");
        assert_eq!(unbuf.kind, SFlag::S_IFCHR);
        assert!(DeviceNode::from_spec(&spec_device("/dev/a", LinuxDeviceType::A, 1, 3)).is_err());
        assert!(DeviceNode::from_spec(&spec_device("/dev/n", LinuxDeviceType::C, -1, 3)).is_err());
    }

    #[test]
    fn links_and_fifo_without_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonicalize");
        let mut fifo =
            DeviceNode::from_spec(&spec_device("/dev/fifo", LinuxDeviceType::P, 0, 0)).expect("p");
        // Owned by whoever runs the test, so that chown works without root.
        fifo.uid = nix::unistd::geteuid().as_raw();
        fifo.gid = nix::unistd::getegid().as_raw();
        create_devices(&root, &[fifo]).expect("fifo");
        create_links(&root).expect("links");
        link_ptmx(&root).expect("ptmx");
        let read = |p: &str| std::fs::read_link(root.join(p)).expect("link");
        assert_eq!(read("dev/fd"), Path::new("/proc/self/fd"));
        assert_eq!(read("dev/stderr"), Path::new("/proc/self/fd/2"));
        assert_eq!(read("dev/ptmx"), Path::new("pts/ptmx"));
        use std::os::unix::fs::FileTypeExt;
        let meta = std::fs::symlink_metadata(root.join("dev/fifo")).expect("stat");
        assert!(meta.file_type().is_fifo());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o7777, 0o666);
    }
}
