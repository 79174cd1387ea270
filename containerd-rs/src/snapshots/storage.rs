//! A snapshotter's directories: allocating snapshot ids, making and removing their
//! directories, measuring them, and checking that overlayfs works under the root.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::mounts::Backend;

/// A new snapshot's directory, made under `snapshots` with the next id of the snapshotter's
/// sequence: ids are never reused, as containerd's bolt sequence never is (a client that
/// cached a mount of a removed snapshot must not find another's files there).
pub fn create(backend: Backend, snapshots: &Path, parent_fs: Option<&Path>) -> io::Result<u64> {
    let sequence = sequence_file(snapshots);
    let mut id = next_id(snapshots, &sequence)?;
    let dir = loop {
        let dir = snapshots.join(id.to_string());
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => break dir,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => id += 1,
            Err(e) => return Err(e),
        }
    };
    if let Err(e) = fill(backend, &dir, parent_fs).and_then(|()| write_sequence(&sequence, id)) {
        let _ = fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(id)
}

/// An id of the sequence for a snapshot without a directory of its own (a native view of a
/// parent uses the parent's).
pub fn reserve(snapshots: &Path) -> io::Result<u64> {
    let sequence = sequence_file(snapshots);
    let id = next_id(snapshots, &sequence)?;
    write_sequence(&sequence, id)?;
    Ok(id)
}

fn next_id(snapshots: &Path, sequence: &Path) -> io::Result<u64> {
    Ok(highest_id(snapshots)?.max(read_sequence(sequence)?) + 1)
}

/// `<snapshotter dir>/sequence`: the last id handed out.
fn sequence_file(snapshots: &Path) -> PathBuf {
    snapshots.parent().unwrap_or(snapshots).join("sequence")
}

fn read_sequence(path: &Path) -> io::Result<u64> {
    match fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|e| io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

fn write_sequence(path: &Path, id: u64) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, id.to_string())?;
    fs::rename(&tmp, path)
}

fn fill(backend: Backend, dir: &Path, parent_fs: Option<&Path>) -> io::Result<()> {
    match backend {
        Backend::Overlay => {
            // fs is where the snapshot's files are (overlay's upper layer), 0755 as containerd.
            fs::DirBuilder::new().mode(0o755).create(dir.join("fs"))?;
            fs::DirBuilder::new().mode(0o711).create(dir.join("work"))
        }
        Backend::Native => match parent_fs {
            Some(parent) => copy_tree(parent, dir),
            None => fs::set_permissions(dir, fs::Permissions::from_mode(0o755)),
        },
    }
}

/// Copies `from`'s contents into `to`, keeping owners, modes, times, links and xattrs, as the
/// native snapshotter does (coreutils' `cp -a` knows every file type).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let out = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "copying {}: {}",
            from.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The ids of the directories under `snapshots`.
pub fn ids(snapshots: &Path) -> io::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(snapshots)? {
        if let Some(id) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

fn highest_id(snapshots: &Path) -> io::Result<u64> {
    Ok(ids(snapshots)?.into_iter().max().unwrap_or(0))
}

/// Removes snapshot `id`'s directory (already gone is fine).
pub fn remove(snapshots: &Path, id: u64) -> io::Result<()> {
    match fs::remove_dir_all(snapshots.join(id.to_string())) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Disk usage of a tree as containerd's `fs.DiskUsage` counts it: bytes of allocated blocks
/// and inodes, each hard-linked inode once.
pub fn usage(dir: &Path) -> io::Result<(i64, i64)> {
    let mut seen = HashSet::new();
    let mut size = 0i64;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path)?;
        if seen.insert((meta.dev(), meta.ino())) {
            size = size.saturating_add(i64::try_from(meta.blocks() * 512).unwrap_or(i64::MAX));
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok((size, i64::try_from(seen.len()).unwrap_or(i64::MAX)))
}

/// Whether overlayfs with two lower layers mounts under `root` (containerd's
/// `supportsMultipleLowerDir`): a kernel or a backing filesystem without it leaves native.
pub fn overlay_works(root: &Path) -> bool {
    match try_overlay(root) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("overlayfs does not work under {}: {e}", root.display());
            false
        }
    }
}

fn try_overlay(root: &Path) -> io::Result<()> {
    fs::create_dir_all(root)?;
    let dir = root.join(format!(".overlay-check-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let result = mount_and_unmount(&dir);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn mount_and_unmount(dir: &Path) -> io::Result<()> {
    for sub in ["lower1", "lower2", "upper", "work", "merged"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let options = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        dir.join("lower2").display(),
        dir.join("lower1").display(),
        dir.join("upper").display(),
        dir.join("work").display()
    );
    let merged = dir.join("merged");
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(io::Error::from)?;
    nix::mount::umount(&merged).map_err(io::Error::from)
}

/// Whether the kernel's overlayfs has the `index` feature, which containerd turns off.
pub fn overlay_has_index() -> bool {
    Path::new("/sys/module/overlay/parameters/index").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshots_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let snapshots = dir.path().join("snapshots");
        fs::create_dir(&snapshots).unwrap();
        (dir, snapshots)
    }

    #[test]
    fn ids_grow_are_never_reused_and_overlay_dirs_are_made() {
        let (_dir, s) = snapshots_dir();
        let a = create(Backend::Overlay, &s, None).unwrap();
        let b = create(Backend::Overlay, &s, None).unwrap();
        assert_eq!((a, b), (1, 2));
        assert!(s.join("2/fs").is_dir());
        assert!(s.join("2/work").is_dir());
        remove(&s, 1).unwrap();
        remove(&s, 1).unwrap();
        assert_eq!(ids(&s).unwrap(), vec![2]);
        remove(&s, 2).unwrap();
        assert_eq!(create(Backend::Overlay, &s, None).unwrap(), 3);
        assert_eq!(reserve(&s).unwrap(), 4);
        assert_eq!(create(Backend::Overlay, &s, None).unwrap(), 5);
    }

    #[test]
    fn native_copies_the_parent_and_usage_counts_it() {
        let (_dir, s) = snapshots_dir();
        let parent = create(Backend::Native, &s, None).unwrap();
        let pdir = s.join(parent.to_string());
        fs::write(pdir.join("f"), vec![1u8; 10_000]).unwrap();
        fs::hard_link(pdir.join("f"), pdir.join("g")).unwrap();
        let child = create(Backend::Native, &s, Some(&pdir)).unwrap();
        let cdir = s.join(child.to_string());
        assert_eq!(fs::read(cdir.join("f")).unwrap().len(), 10_000);
        let (size, inodes) = usage(&cdir).unwrap();
        assert_eq!(inodes, 2, "the directory and one hard-linked file");
        assert!(size >= 10_000, "{size}");
    }

    #[test]
    fn a_failed_copy_leaves_no_directory() {
        let (dir, s) = snapshots_dir();
        let missing = dir.path().join("nope");
        assert!(create(Backend::Native, &s, Some(&missing)).is_err());
        assert!(ids(&s).unwrap().is_empty());
    }
}
