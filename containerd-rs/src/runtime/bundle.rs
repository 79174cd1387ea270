//! A task's bundle, laid out as containerd 1.6 lays it out:
//!
//! ```text
//! <state>/io.containerd.runtime.v2.task/<ns>/<id>/    0711, the shim's working directory
//!     config.json          the container's OCI spec
//!     rootfs/              where the shim mounts the task's rootfs mounts
//!     work -> <root>/io.containerd.runtime.v2.task/<ns>/<id>   persistent scratch space
//!     log                  FIFO the shim writes its log to
//!     shim-binary-path     the shim binary, for cleaning up after it (containerd 1.7's name)
//!     address, shim.pid, ... written by the shim itself
//! ```
//!
//! Deleting unmounts `rootfs` first, then renames the directory to a hidden name and removes
//! it (so a half-removed bundle is never taken for a task), then the work directory.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};
use nix::sys::stat::Mode;

/// The runtime v2 plugin's directory under both `--root` and `--state`.
pub const TASK_DIR: &str = "io.containerd.runtime.v2.task";

const CONFIG: &str = "config.json";
const ROOTFS: &str = "rootfs";
const WORK: &str = "work";
const LOG: &str = "log";
const ADDRESS: &str = "address";
const SHIM_BINARY: &str = "shim-binary-path";

/// One task's bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub namespace: String,
    pub id: String,
    pub path: PathBuf,
}

/// `<base>/io.containerd.runtime.v2.task/<ns>/<id>`.
pub fn task_path(base: &Path, namespace: &str, id: &str) -> PathBuf {
    base.join(TASK_DIR).join(namespace).join(id)
}

impl Bundle {
    /// The bundle of `namespace/id` under `state`, whether or not it exists.
    pub fn at(state: &Path, namespace: &str, id: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            id: id.to_string(),
            path: task_path(state, namespace, id),
        }
    }

    /// Creates the bundle with `spec` as its `config.json`, its `rootfs/`, its `work` link to
    /// a fresh directory under `root`, and its `log` FIFO. Fails if the bundle exists; a
    /// failure leaves nothing behind.
    pub fn create(
        root: &Path,
        state: &Path,
        namespace: &str,
        id: &str,
        spec: &[u8],
    ) -> io::Result<Self> {
        let bundle = Self::at(state, namespace, id);
        let work = task_path(root, namespace, id);
        for dir in [&bundle.path, &work] {
            if let Some(parent) = dir.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o711)
                    .create(parent)?;
            }
        }
        fs::DirBuilder::new().mode(0o700).create(&bundle.path)?;
        let result = bundle.fill(&work, spec);
        if result.is_err() {
            let _ = fs::remove_dir_all(&bundle.path);
            let _ = fs::remove_dir_all(&work);
        }
        result.map(|()| bundle)
    }

    fn fill(&self, work: &Path, spec: &[u8]) -> io::Result<()> {
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o711))?;
        fs::DirBuilder::new().mode(0o711).create(self.rootfs())?;
        // A work directory left by an earlier task of the same id is stale.
        match fs::DirBuilder::new().mode(0o711).create(work) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_dir_all(work)?;
                fs::DirBuilder::new().mode(0o711).create(work)?;
            }
            other => other?,
        }
        std::os::unix::fs::symlink(work, self.path.join(WORK))?;
        fs::write(self.path.join(CONFIG), spec)?;
        nix::unistd::mkfifo(&self.log(), Mode::from_bits_truncate(0o700)).map_err(io::Error::from)
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path.join(ROOTFS)
    }

    /// The FIFO the shim logs to.
    pub fn log(&self) -> PathBuf {
        self.path.join(LOG)
    }

    /// The shim's address, as it wrote it in `address`.
    pub fn address(&self) -> io::Result<String> {
        let text = fs::read_to_string(self.path.join(ADDRESS))?;
        let address = text.trim();
        if address.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the bundle's address file is empty",
            ));
        }
        Ok(address.to_string())
    }

    /// Records the shim binary that serves this bundle.
    pub fn save_shim_binary(&self, binary: &Path) -> io::Result<()> {
        let path = self.path.join(SHIM_BINARY);
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, binary.as_os_str().as_encoded_bytes())?;
        fs::rename(&tmp, &path)
    }

    /// The shim binary recorded by [`Bundle::save_shim_binary`].
    pub fn shim_binary(&self) -> Option<PathBuf> {
        let text = fs::read_to_string(self.path.join(SHIM_BINARY)).ok()?;
        let text = text.trim();
        (!text.is_empty()).then(|| PathBuf::from(text))
    }

    /// Whether the bundle directory has nothing in it (a task that never got going).
    pub fn is_empty(&self) -> bool {
        fs::read_dir(&self.path)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(true)
    }

    /// Unmounts the rootfs and removes the bundle and its work directory. A bundle already
    /// gone is not an error.
    pub fn delete(&self) -> io::Result<()> {
        let work = fs::read_link(self.path.join(WORK)).ok();
        let rootfs = self.rootfs();
        unmount_all(&rootfs)?;
        match fs::remove_dir(&rootfs) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("removing {}: {e}", rootfs.display()),
                ))
            }
            _ => {}
        }
        atomic_delete(&self.path)?;
        match work {
            Some(work) => atomic_delete(&work),
            None => Ok(()),
        }
    }
}

/// Unmounts everything mounted on `target`, top first, until nothing is.
pub fn unmount_all(target: &Path) -> io::Result<()> {
    // Bounded: a mount that keeps coming back is an error, not a hang.
    for _ in 0..64 {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            // Not mounted (EINVAL), gone, or not ours to unmount (EPERM: not root, where
            // nothing could have been mounted there by us).
            Err(Errno::EINVAL | Errno::ENOENT | Errno::EPERM) => return Ok(()),
            Err(e) => {
                return Err(io::Error::new(
                    io::Error::from(e).kind(),
                    format!("unmounting {}: {e}", target.display()),
                ))
            }
        }
    }
    Err(io::Error::other(format!(
        "unmounting {}: still mounted after 64 unmounts",
        target.display()
    )))
}

/// Renames `path` to a hidden sibling, then removes it: the name disappears at once.
fn atomic_delete(path: &Path) -> io::Result<()> {
    let Some(name) = path.file_name() else {
        return Ok(());
    };
    let mut hidden = std::ffi::OsString::from(".");
    hidden.push(name);
    let hidden = path.with_file_name(hidden);
    match fs::rename(path, &hidden) {
        Ok(()) => fs::remove_dir_all(&hidden),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("removing {}: {e}", path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn paths_are_containerds() {
        let bundle = Bundle::at(Path::new("/run/k"), "default", "web");
        assert_eq!(
            bundle.path,
            PathBuf::from("/run/k/io.containerd.runtime.v2.task/default/web")
        );
        assert_eq!(
            bundle.rootfs(),
            PathBuf::from("/run/k/io.containerd.runtime.v2.task/default/web/rootfs")
        );
        assert_eq!(
            task_path(Path::new("/var/lib/k"), "ns", "id"),
            PathBuf::from("/var/lib/k/io.containerd.runtime.v2.task/ns/id")
        );
    }

    #[test]
    fn create_lays_the_bundle_out_and_delete_removes_it() {
        let root = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let bundle = Bundle::create(root.path(), state.path(), "ns", "t1", b"{}").unwrap();
        let meta = fs::metadata(&bundle.path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o711);
        assert_eq!(fs::read(bundle.path.join("config.json")).unwrap(), b"{}");
        assert!(bundle.rootfs().is_dir());
        let work = task_path(root.path(), "ns", "t1");
        assert_eq!(fs::read_link(bundle.path.join("work")).unwrap(), work);
        assert!(work.is_dir());
        assert!(fs::metadata(bundle.log()).unwrap().file_type().is_fifo());
        assert!(Bundle::create(root.path(), state.path(), "ns", "t1", b"{}").is_err());

        bundle.save_shim_binary(Path::new("/usr/bin/shim")).unwrap();
        assert_eq!(bundle.shim_binary(), Some(PathBuf::from("/usr/bin/shim")));
        assert!(bundle.address().is_err());
        fs::write(bundle.path.join("address"), "unix:///s/x\n").unwrap();
        assert_eq!(bundle.address().unwrap(), "unix:///s/x");

        bundle.delete().unwrap();
        assert!(!bundle.path.exists());
        assert!(!work.exists());
        assert_eq!(
            fs::read_dir(bundle.path.parent().unwrap()).unwrap().count(),
            0,
            "nothing hidden left behind"
        );
        bundle.delete().unwrap();
    }
}
