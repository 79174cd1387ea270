//! The layer unpacker: applies a tar stream onto a root directory, safely against hostile layers.
//!
//! Every path is resolved from a descriptor of the root with `openat2(RESOLVE_IN_ROOT)`, so a
//! symlink met on the way (absolute or `..`-laden) is resolved as if the root were `/`: nothing
//! outside the root can be named. The last component of an entry is always a single name acted on
//! with an `*at` call relative to its resolved parent and never followed. What each hostile case
//! does:
//! - a `..` component in a name or a hardlink target: refused ([`UnpackError::ParentComponent`]);
//! - an absolute name (`/etc/passwd`): taken relative to the root, as containerd and GNU tar do;
//! - a write through a symlink (`a -> /etc`, then `a/passwd`): contained, the symlink resolves
//!   inside the root (`root/etc/passwd`), or the entry is refused if that directory is missing;
//! - a hardlink to a target outside the root or through a symlink: resolved inside the root, so
//!   it links a file of the root or is refused (`ENOENT`);
//! - a whiteout of `/`, `.` or `..` (`.wh.`, `.wh..`, `.wh...`): refused ([`UnpackError::BadWhiteout`]);
//! - an entry replacing a directory with a file: the directory is removed first (legitimate in
//!   layers), removal never following symlinks;
//! - huge sparse files: written sparse (runs of zeros become holes), refused past
//!   [`UnpackOptions::max_file_size`] so the time spent is bounded;
//! - absurdly long names: refused by the kernel (`ENAMETOOLONG`), reported with the entry.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmodat, fstatat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::sys;

/// How OCI whiteouts (`.wh.NAME`, `.wh..wh..opq`) are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// The root is an overlay upperdir: whiteouts become overlay's own (a 0/0 character device,
    /// the `trusted.overlay.opaque=y` xattr) so they hide the lower layers.
    Overlay,
    /// The root is a plain, merged tree: whiteouts delete what they name.
    Delete,
}

/// Limits that keep a hostile layer's cost bounded.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// The largest apparent size of one file; a sparse file declaring more is refused.
    pub max_file_size: u64,
    /// The largest apparent size of all files together, so many huge sparse files are refused too.
    pub max_total_size: u64,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        // 64 GiB: past any real image file, and a hole that size still reads in seconds.
        Self {
            max_file_size: 64 << 30,
            max_total_size: 256 << 30,
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries applied (whiteouts included).
    pub entries: u64,
    /// Bytes of regular-file content written (holes included).
    pub bytes: u64,
}

/// Why an unpack failed; each entry error names the entry.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("opening the root {root}: {source}")]
    Root { root: PathBuf, source: io::Error },
    #[error("reading the layer: {0}")]
    Read(io::Error),
    #[error("entry {entry:?}: a \"..\" component is not allowed")]
    ParentComponent { entry: String },
    #[error("entry {entry:?}: invalid whiteout")]
    BadWhiteout { entry: String },
    #[error("entry {entry:?}: unhandled tar header type {kind}")]
    Unsupported { entry: String, kind: u8 },
    #[error("entry {entry:?}: size {size} exceeds the limit of {limit} bytes")]
    TooLarge {
        entry: String,
        size: u64,
        limit: u64,
    },
    #[error("entry {entry:?}: {op}: {source}")]
    Entry {
        entry: String,
        op: &'static str,
        source: io::Error,
    },
}

/// Applies the tar stream `reader` onto `root` with the default limits.
pub fn unpack(
    reader: impl Read,
    root: &Path,
    whiteouts: WhiteoutMode,
) -> Result<UnpackStats, UnpackError> {
    unpack_with(reader, root, whiteouts, &UnpackOptions::default())
}

/// Applies the tar stream `reader` onto `root`.
pub fn unpack_with(
    reader: impl Read,
    root: &Path,
    whiteouts: WhiteoutMode,
    options: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Root {
        root: root.to_path_buf(),
        source: e.into(),
    })?;
    let mut unpacker = Unpacker {
        root: root_fd,
        mode: whiteouts,
        options,
        unpacked: HashSet::new(),
        dirs: Vec::new(),
        stats: UnpackStats::default(),
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        unpacker.apply(&mut entry)?;
    }
    unpacker.finish()
}

/// A path inside the root, as its clean components.
type Components = Vec<Vec<u8>>;

/// Extended attributes of an entry: (name, value).
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

struct Unpacker<'a> {
    root: OwnedFd,
    mode: WhiteoutMode,
    options: &'a UnpackOptions,
    /// What this layer created, which an opaque whiteout in delete mode must keep.
    unpacked: HashSet<Components>,
    /// Directories whose times are set last, since creating their children changes them.
    dirs: Vec<(Components, String, i64)>,
    stats: UnpackStats,
}

/// A short printable form of a raw entry name, for errors (names can be absurdly long).
fn display(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text.into_owned()
    }
}

/// The components of `raw`, without empty and `.` ones; `None` if one is `..`.
fn clean(raw: &[u8]) -> Option<Components> {
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            c => out.push(c.to_vec()),
        }
    }
    Some(out)
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Opens the directory `comps` resolved inside the root (as an `O_PATH` descriptor).
fn resolve_dir(root: &OwnedFd, comps: &[Vec<u8>]) -> Result<OwnedFd, Errno> {
    let path = if comps.is_empty() {
        b".".to_vec()
    } else {
        comps.join(&b'/')
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root.as_fd(), path.as_slice(), how)
}

/// Opens the directory `comps` inside the root, creating what is missing (mode 0755, as
/// containerd's MkdirAll).
fn ensure_dir(root: &OwnedFd, comps: &[Vec<u8>]) -> Result<OwnedFd, Errno> {
    match resolve_dir(root, comps) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let mut current = resolve_dir(root, &[])?;
    for i in 0..comps.len() {
        current = match resolve_dir(root, &comps[..=i]) {
            Err(Errno::ENOENT) => {
                mkdirat(
                    current.as_fd(),
                    comps[i].as_slice(),
                    Mode::from_bits_truncate(0o755),
                )?;
                resolve_dir(root, &comps[..=i])?
            }
            other => other?,
        };
    }
    Ok(current)
}

/// Removes `name` in `dir` and, if it is a directory, everything under it, never following a
/// symlink.
fn remove_all_at(dir: &OwnedFd, name: &[u8]) -> Result<(), Errno> {
    match unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e),
    }
    let sub = openat(
        dir.as_fd(),
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for child in children(&sub)? {
        remove_all_at(&sub, &child)?;
    }
    unlinkat(dir.as_fd(), name, UnlinkatFlags::RemoveDir)
}

/// The names in the directory `dir` (but `.` and `..`).
fn children(dir: &OwnedFd) -> Result<Vec<Vec<u8>>, Errno> {
    let fd = openat(
        dir.as_fd(),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut listing = nix::dir::Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    Ok(names)
}

impl Unpacker<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let name = display(&raw);
        let kind = entry.header().entry_type();
        // Checked before anything is touched, so an unhandled entry changes nothing.
        use tar::EntryType as T;
        match kind {
            T::XGlobalHeader => return Ok(()),
            T::Regular | T::Continuous | T::GNUSparse | T::Directory | T::Symlink | T::Link => {}
            T::Char | T::Block | T::Fifo => {}
            other => {
                return Err(UnpackError::Unsupported {
                    entry: name,
                    kind: other.as_byte(),
                })
            }
        }
        let comps = clean(&raw).ok_or_else(|| UnpackError::ParentComponent {
            entry: name.clone(),
        })?;
        self.stats.entries += 1;
        let Some((base, parent)) = comps.split_last() else {
            return self.apply_root(entry, &name);
        };
        if base.starts_with(b".wh.") {
            return self.whiteout(parent, base, &name);
        }
        let fail = |op: &'static str| {
            let name = name.clone();
            move |e: Errno| UnpackError::Entry {
                entry: name,
                op,
                source: errno(e),
            }
        };
        let dir = ensure_dir(&self.root, parent).map_err(fail("creating parent directories"))?;
        match fstatat(dir.as_fd(), base.as_slice(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st)
                if kind.is_dir()
                    && SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
                        == SFlag::S_IFDIR => {}
            Ok(_) => remove_all_at(&dir, base).map_err(fail("removing the existing entry"))?,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(fail("inspecting the existing entry")(e)),
        }
        let xattrs = pax_xattrs(entry, &name)?;
        let header = entry.header().clone();
        match kind {
            T::Regular | T::Continuous | T::GNUSparse => {
                self.write_file(&dir, base, entry, &name)?
            }
            T::Directory => match mkdirat(
                dir.as_fd(),
                base.as_slice(),
                Mode::from_bits_truncate(0o700),
            ) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(fail("creating the directory")(e)),
            },
            T::Symlink => {
                let target = link_name(entry, &name)?;
                symlinkat(target.as_slice(), dir.as_fd(), base.as_slice())
                    .map_err(fail("creating the symlink"))?;
            }
            T::Link => {
                let target = link_name(entry, &name)?;
                self.hardlink(&dir, base, &target, &name)?;
                self.unpacked.insert(comps);
                return Ok(());
            }
            T::Char | T::Block | T::Fifo => {
                let (flag, dev) = match kind {
                    T::Char => (SFlag::S_IFCHR, device(&header)),
                    T::Block => (SFlag::S_IFBLK, device(&header)),
                    _ => (SFlag::S_IFIFO, 0),
                };
                mknodat(
                    dir.as_fd(),
                    base.as_slice(),
                    flag,
                    Mode::from_bits_truncate(0o600),
                    dev,
                )
                .map_err(fail("creating the node"))?;
            }
            other => {
                return Err(UnpackError::Unsupported {
                    entry: name,
                    kind: other.as_byte(),
                })
            }
        }
        self.metadata(&dir, base, &header, &xattrs, &name)?;
        if kind.is_dir() {
            let mtime = header.mtime().unwrap_or(0) as i64;
            self.dirs.push((comps.clone(), name, mtime));
        }
        self.unpacked.insert(comps);
        Ok(())
    }

    /// An entry naming the root itself (`./`): only a directory makes sense there.
    fn apply_root<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<(), UnpackError> {
        if !entry.header().entry_type().is_dir() {
            return Err(UnpackError::Entry {
                entry: name.to_string(),
                op: "replacing the root",
                source: io::Error::from_raw_os_error(libc::EISDIR),
            });
        }
        let xattrs = pax_xattrs(entry, name)?;
        let header = entry.header().clone();
        let root = resolve_dir(&self.root, &[]).map_err(|e| UnpackError::Entry {
            entry: name.to_string(),
            op: "opening the root",
            source: errno(e),
        })?;
        self.metadata(&root, b".", &header, &xattrs, name)?;
        self.dirs.push((
            Vec::new(),
            name.to_string(),
            header.mtime().unwrap_or(0) as i64,
        ));
        Ok(())
    }

    fn write_file<R: Read>(
        &mut self,
        dir: &OwnedFd,
        base: &[u8],
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<(), UnpackError> {
        let size = entry.size();
        if size > self.options.max_file_size
            || self.stats.bytes.saturating_add(size) > self.options.max_total_size
        {
            return Err(UnpackError::TooLarge {
                entry: name.to_string(),
                size,
                limit: self.options.max_file_size,
            });
        }
        let fail = |op: &'static str| {
            move |source: io::Error| UnpackError::Entry {
                entry: name.to_string(),
                op,
                source,
            }
        };
        let fd = openat(
            dir.as_fd(),
            base,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| fail("creating the file")(errno(e)))?;
        let mut file = File::from(fd);
        let written = copy_sparse(entry, &mut file).map_err(fail("writing the file"))?;
        self.stats.bytes += written;
        Ok(())
    }

    fn hardlink(
        &self,
        dir: &OwnedFd,
        base: &[u8],
        target: &[u8],
        name: &str,
    ) -> Result<(), UnpackError> {
        let comps = clean(target).ok_or_else(|| UnpackError::ParentComponent {
            entry: name.to_string(),
        })?;
        let fail = |op: &'static str| {
            move |e: Errno| UnpackError::Entry {
                entry: name.to_string(),
                op,
                source: errno(e),
            }
        };
        let Some((target_base, target_parent)) = comps.split_last() else {
            return Err(fail("linking to the root")(Errno::EPERM));
        };
        let target_dir =
            resolve_dir(&self.root, target_parent).map_err(fail("resolving the link target"))?;
        linkat(
            target_dir.as_fd(),
            target_base.as_slice(),
            dir.as_fd(),
            base,
            AtFlags::empty(),
        )
        .map_err(fail("creating the hardlink"))
    }

    /// Ownership, mode, xattrs and (but for directories) times, in the order that keeps setuid
    /// bits and file capabilities (chown clears both).
    fn metadata(
        &self,
        dir: &OwnedFd,
        base: &[u8],
        header: &tar::Header,
        xattrs: &Xattrs,
        name: &str,
    ) -> Result<(), UnpackError> {
        let fail = |op: &'static str| {
            move |e: Errno| UnpackError::Entry {
                entry: name.to_string(),
                op,
                source: errno(e),
            }
        };
        let read = |e: io::Error| UnpackError::Entry {
            entry: name.to_string(),
            op: "reading the header",
            source: e,
        };
        let uid = header.uid().map_err(read)? as u32;
        let gid = header.gid().map_err(read)? as u32;
        fchownat(
            dir.as_fd(),
            base,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(fail("changing ownership"))?;
        let kind = header.entry_type();
        if !kind.is_symlink() {
            let mode = Mode::from_bits_truncate(header.mode().map_err(read)? & 0o7777);
            // Not a symlink (just created or checked above), so following the last component
            // cannot leave the parent.
            fchmodat(dir.as_fd(), base, mode, FchmodatFlags::FollowSymlink)
                .map_err(fail("changing mode"))?;
        }
        for (key, value) in xattrs {
            match sys::set_xattr_at(dir.as_fd(), base, key, value) {
                Ok(()) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP)) => {}
                Err(e) => {
                    return Err(UnpackError::Entry {
                        entry: name.to_string(),
                        op: "setting an xattr",
                        source: e,
                    })
                }
            }
        }
        if !kind.is_dir() {
            let mtime = TimeSpec::new(header.mtime().map_err(read)? as i64, 0);
            utimensat(
                dir.as_fd(),
                base,
                &mtime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(fail("setting times"))?;
        }
        Ok(())
    }

    fn whiteout(&mut self, parent: &[Vec<u8>], base: &[u8], name: &str) -> Result<(), UnpackError> {
        let fail = |op: &'static str| {
            move |e: Errno| UnpackError::Entry {
                entry: name.to_string(),
                op,
                source: errno(e),
            }
        };
        let opaque = base == b".wh..wh..opq";
        let target = &base[4..];
        if !opaque && matches!(target, b"" | b"." | b"..") {
            return Err(UnpackError::BadWhiteout {
                entry: name.to_string(),
            });
        }
        let dir = match (self.mode, resolve_dir(&self.root, parent)) {
            (_, Ok(dir)) => dir,
            (WhiteoutMode::Delete, Err(Errno::ENOENT)) => return Ok(()),
            (WhiteoutMode::Overlay, Err(Errno::ENOENT)) => {
                ensure_dir(&self.root, parent).map_err(fail("creating parent directories"))?
            }
            (_, Err(e)) => return Err(fail("resolving the parent")(e)),
        };
        match (self.mode, opaque) {
            (WhiteoutMode::Overlay, true) => {
                sys::set_xattr_at(dir.as_fd(), b".", b"trusted.overlay.opaque", b"y").map_err(
                    |source| UnpackError::Entry {
                        entry: name.to_string(),
                        op: "marking the directory opaque",
                        source,
                    },
                )
            }
            (WhiteoutMode::Overlay, false) => {
                remove_all_at(&dir, target).map_err(fail("removing the whited-out entry"))?;
                mknodat(dir.as_fd(), target, SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(fail("creating the whiteout"))
            }
            (WhiteoutMode::Delete, true) => {
                for child in children(&dir).map_err(fail("listing the opaque directory"))? {
                    let mut path = parent.to_vec();
                    path.push(child.clone());
                    if !self.unpacked.contains(&path) {
                        remove_all_at(&dir, &child)
                            .map_err(fail("emptying the opaque directory"))?;
                    }
                }
                Ok(())
            }
            (WhiteoutMode::Delete, false) => {
                remove_all_at(&dir, target).map_err(fail("removing the whited-out entry"))
            }
        }
    }

    /// Sets the times of directories, deepest last-created first, once their content is in.
    fn finish(mut self) -> Result<UnpackStats, UnpackError> {
        for (comps, name, mtime) in self.dirs.drain(..).rev() {
            let fail = |op: &'static str| {
                let name = name.clone();
                move |e: Errno| UnpackError::Entry {
                    entry: name,
                    op,
                    source: errno(e),
                }
            };
            let (dir, base): (OwnedFd, &[u8]) = match comps.split_last() {
                Some((base, parent)) => (
                    resolve_dir(&self.root, parent).map_err(fail("resolving the directory"))?,
                    base,
                ),
                None => (
                    resolve_dir(&self.root, &[]).map_err(fail("resolving the root"))?,
                    b".",
                ),
            };
            let t = TimeSpec::new(mtime, 0);
            utimensat(dir.as_fd(), base, &t, &t, UtimensatFlags::NoFollowSymlink)
                .map_err(fail("setting times"))?;
        }
        Ok(self.stats)
    }
}

/// The major/minor device of a device entry.
fn device(header: &tar::Header) -> libc::dev_t {
    let major = header.device_major().ok().flatten().unwrap_or(0);
    let minor = header.device_minor().ok().flatten().unwrap_or(0);
    libc::makedev(major, minor)
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>, name: &str) -> Result<Vec<u8>, UnpackError> {
    match entry.link_name_bytes() {
        Some(target) if !target.is_empty() => Ok(target.into_owned()),
        _ => Err(UnpackError::Entry {
            entry: name.to_string(),
            op: "reading the link target",
            source: io::Error::from(io::ErrorKind::InvalidData),
        }),
    }
}

/// The xattrs a PAX header carries (`SCHILY.xattr.NAME`), as the Go archive/tar writes them.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Xattrs, UnpackError> {
    let read = |source: io::Error| UnpackError::Entry {
        entry: name.to_string(),
        op: "reading PAX headers",
        source,
    };
    let Some(extensions) = entry.pax_extensions().map_err(read)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for ext in extensions {
        let ext = ext.map_err(read)?;
        if let Some(key) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
            out.push((key.to_vec(), ext.value_bytes().to_vec()));
        }
    }
    Ok(out)
}

/// Copies `reader` into `file`, turning blocks of zeros into holes, and returns the bytes copied.
/// Runs of data blocks go out in one `write` each: a syscall per 4 KiB block made writing a
/// file cost several times the copy itself.
fn copy_sparse(reader: &mut impl Read, file: &mut File) -> io::Result<u64> {
    const BLOCK: usize = 4096;
    let mut buf = vec![0u8; 256 * BLOCK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        write_sparse(file, &buf[..n], BLOCK)?;
        total += n as u64;
    }
    file.set_len(total)?;
    Ok(total)
}

/// Writes `data` at the file's position: each run of data blocks in one write, each run of
/// all-zero `block`-sized blocks skipped (a hole once the file's length is set).
fn write_sparse(file: &mut File, data: &[u8], block: usize) -> io::Result<()> {
    let mut blocks = data.chunks(block).peekable();
    let mut at = 0;
    while let Some(first) = blocks.next() {
        let zero = is_zero(first);
        let mut end = at + first.len();
        while let Some(next) = blocks.next_if(|b| is_zero(b) == zero) {
            end += next.len();
        }
        if zero {
            file.seek(SeekFrom::Current((end - at) as i64))?;
        } else {
            file.write_all(&data[at..end])?;
        }
        at = end;
    }
    Ok(())
}

/// Whether `block` is all zeros: OR-folded 64 bytes at a time (vectorized), stopping at the
/// first chunk with data, which for real file content is the first.
fn is_zero(block: &[u8]) -> bool {
    block
        .chunks(64)
        .all(|c| c.iter().fold(0u8, |acc, b| acc | b) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_drops_dots_and_slashes_and_refuses_dotdot() {
        assert_eq!(clean(b"/a//./b/"), Some(vec![b"a".to_vec(), b"b".to_vec()]));
        assert_eq!(clean(b"./"), Some(Vec::new()));
        assert_eq!(clean(b"a/../b"), None);
        assert_eq!(clean(b".."), None);
        assert_eq!(clean(b"a/..b"), Some(vec![b"a".to_vec(), b"..b".to_vec()]));
    }

    #[test]
    fn display_shortens_absurd_names() {
        assert_eq!(display(b"etc/passwd"), "etc/passwd");
        assert_eq!(display(&[b'x'; 5000]).chars().count(), 201);
    }

    #[test]
    fn copy_sparse_keeps_content_and_makes_holes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut data = vec![0u8; 8 << 20];
        data[5] = 1;
        let last = data.len() - 1;
        data[last] = 2;
        let mut file = File::create(&path).expect("create");
        assert_eq!(
            copy_sparse(&mut data.as_slice(), &mut file).expect("copy"),
            data.len() as u64
        );
        assert_eq!(std::fs::read(&path).expect("read"), data);
        use std::os::unix::fs::MetadataExt;
        assert!(std::fs::metadata(&path).expect("stat").blocks() * 512 < 1 << 20);
    }

    #[test]
    fn write_sparse_coalesces_runs_and_keeps_holes_and_tails() {
        const BLOCK: usize = 4096;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        // data, data, zero, zero, zero, data, then a short zero tail and a short data tail.
        let mut data = vec![7u8; 2 * BLOCK];
        data.extend(vec![0u8; 3 * BLOCK]);
        data.extend(vec![9u8; BLOCK]);
        data.extend(vec![0u8; 100]);
        let mut file = File::create(&path).expect("create");
        write_sparse(&mut file, &data, BLOCK).expect("write");
        write_sparse(&mut file, &[5u8; 10], BLOCK).expect("write tail");
        file.set_len((data.len() + 10) as u64).expect("len");
        let mut want = data.clone();
        want.extend([5u8; 10]);
        assert_eq!(std::fs::read(&path).expect("read"), want);
        assert!(is_zero(&[0u8; 130]));
        assert!(!is_zero(&[0, 0, 0, 1]));
        assert!(is_zero(&[]));
    }

    #[test]
    fn remove_all_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        std::fs::write(outside.join("keep"), b"k").expect("write");
        let victim = dir.path().join("victim");
        std::fs::create_dir_all(victim.join("sub")).expect("mkdir");
        std::os::unix::fs::symlink(&outside, victim.join("sub/link")).expect("symlink");
        let fd = nix::fcntl::open(
            dir.path(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            Mode::empty(),
        )
        .expect("open");
        remove_all_at(&fd, b"victim").expect("remove");
        assert!(!victim.exists());
        assert_eq!(std::fs::read(outside.join("keep")).expect("read"), b"k");
    }

    #[test]
    fn a_missing_root_is_a_typed_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = unpack(&b""[..], &dir.path().join("missing"), WhiteoutMode::Delete);
        assert!(matches!(err, Err(UnpackError::Root { .. })), "{err:?}");
    }

    #[test]
    fn garbage_is_a_read_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = unpack(&[0xffu8; 1024][..], dir.path(), WhiteoutMode::Delete);
        assert!(err.is_err(), "{err:?}");
    }

    /// A layer mixing hostile entries: the seed the property test below mutates.
    fn hostile_seed() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |kind: tar::EntryType, name: &[u8], link: &[u8], data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o755);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            h.set_cksum();
            b.append(&h, data).expect("append");
        };
        add(tar::EntryType::Directory, b"d/", b"", b"");
        add(tar::EntryType::Symlink, b"d/up", b"../../sentinel", b"");
        add(tar::EntryType::Symlink, b"abs", b"/", b"");
        add(tar::EntryType::Regular, b"abs/y", b"", b"data");
        add(tar::EntryType::Link, b"h", b"abs/y", b"");
        add(tar::EntryType::Regular, b"d/.wh..wh..opq", b"", b"");
        add(tar::EntryType::Regular, b"d/.wh.up", b"", b"");
        add(tar::EntryType::Regular, b"d", b"", b"file now");
        add(tar::EntryType::Symlink, b"e", b"../sentinel", b"");
        add(tar::EntryType::Regular, b"e/x", b"", b"data");
        add(tar::EntryType::Regular, b"abs/../sentinel/y", b"", b"data");
        b.into_inner().expect("tar")
    }

    #[test]
    fn the_seed_applies_until_its_first_escape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = unpack(hostile_seed().as_slice(), dir.path(), WhiteoutMode::Delete);
        assert!(
            matches!(&err, Err(UnpackError::Entry { entry, .. }) if entry == "e/x"),
            "{err:?}"
        );
        assert_eq!(std::fs::read(dir.path().join("y")).expect("y"), b"data");
        assert_eq!(std::fs::read(dir.path().join("h")).expect("h"), b"data");
        assert_eq!(std::fs::read(dir.path().join("d")).expect("d"), b"file now");
    }

    proptest::proptest! {
        /// Mutated hostile layers never change anything beside the root.
        #[test]
        fn mutated_layers_never_escape(
            flips in proptest::collection::vec((0usize..1 << 14, proptest::prelude::any::<u8>()), 1..16),
            overlay in proptest::prelude::any::<bool>(),
        ) {
            let mut data = hostile_seed();
            for (at, byte) in flips {
                let at = at % data.len();
                data[at] = byte;
            }
            let dir = tempfile::tempdir().expect("tempdir");
            let root = dir.path().join("root");
            let sentinel = dir.path().join("sentinel");
            std::fs::create_dir(&root).expect("root");
            std::fs::create_dir(&sentinel).expect("sentinel");
            std::fs::write(sentinel.join("canary"), b"canary").expect("canary");
            let mode = if overlay { WhiteoutMode::Overlay } else { WhiteoutMode::Delete };
            let options = UnpackOptions { max_file_size: 1 << 20, max_total_size: 1 << 22 };
            let _ = unpack_with(data.as_slice(), &root, mode, &options);
            let beside = std::fs::read_dir(dir.path()).expect("list").count();
            proptest::prop_assert_eq!(beside, 2);
            let names: Vec<_> = std::fs::read_dir(&sentinel).expect("list").map(|e| e.expect("entry").file_name()).collect();
            proptest::prop_assert_eq!(names, vec!["canary"]);
            proptest::prop_assert_eq!(std::fs::read(sentinel.join("canary")).expect("read"), b"canary".to_vec());
            use std::os::unix::fs::MetadataExt;
            proptest::prop_assert_eq!(std::fs::metadata(sentinel.join("canary")).expect("stat").nlink(), 1);
        }
    }
}
