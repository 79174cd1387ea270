//! Writing the changes from a lower to an upper tree as a tar layer, as containerd 1.6's
//! `archive.ChangeWriter`: added and changed entries in full, deletions as `.wh.NAME`
//! whiteouts, the parent directories of every entry written before it, hard links kept as
//! links (an unchanged name of a changed inode included, so the link survives), the
//! `security.capability` xattr as a PAX record, sockets left out.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::sys;

/// The one xattr containerd carries into a layer.
const CAPABILITY_XATTR: &str = "security.capability";

/// Writes, as a tar, what changed from `lower` to `upper`.
pub fn write_diff(out: impl Write, lower: &Path, upper: &Path) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut writer = LayerWriter {
        builder,
        upper,
        written_dirs: HashSet::new(),
        link_source: HashMap::new(),
        link_waiting: HashMap::new(),
    };
    writer.walk(lower, Path::new(""))?;
    writer.builder.into_inner()?.flush()
}

/// A file's identity, for hard links.
type Inode = (u64, u64);

struct LayerWriter<'a, W: Write> {
    builder: tar::Builder<W>,
    upper: &'a Path,
    /// Directories already in the layer (so each parent is written once).
    written_dirs: HashSet<PathBuf>,
    /// The first name written of each multiply-linked inode: later names link to it.
    link_source: HashMap<Inode, PathBuf>,
    /// Unchanged names of multiply-linked inodes not written yet: linked once one is.
    link_waiting: HashMap<Inode, Vec<PathBuf>>,
}

impl<W: Write> LayerWriter<'_, W> {
    fn walk(&mut self, lower: &Path, rel: &Path) -> io::Result<()> {
        let upper_dir = self.upper.join(rel);
        for name in names(&lower.join(rel))? {
            if let Err(e) = fs::symlink_metadata(upper_dir.join(&name)) {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(e);
                }
                self.whiteout(rel, &name)?;
            }
        }
        for name in names(&upper_dir)? {
            let path = rel.join(&name);
            let now = fs::symlink_metadata(self.upper.join(&path))?;
            let changed = match fs::symlink_metadata(lower.join(&path)) {
                Ok(before) => differs(&before, &now, &lower.join(&path), &self.upper.join(&path))?,
                Err(_) => true,
            };
            self.entry(&path, &now, changed)?;
            if now.is_dir() {
                self.walk(lower, &path)?;
            }
        }
        Ok(())
    }

    /// Writes one upper entry if it changed, or if it is a name of an inode written.
    fn entry(&mut self, path: &Path, meta: &Metadata, changed: bool) -> io::Result<()> {
        if meta.file_type().is_socket() {
            return Ok(());
        }
        let inode = (meta.nlink() > 1 && !meta.is_dir()).then(|| (meta.dev(), meta.ino()));
        if let Some(inode) = inode {
            if let Some(source) = self.link_source.get(&inode).cloned() {
                self.include_parents(path)?;
                return self.link(path, &source);
            }
            if !changed {
                self.link_waiting
                    .entry(inode)
                    .or_default()
                    .push(path.into());
                return Ok(());
            }
        } else if !changed {
            return Ok(());
        }
        self.include_parents(path)?;
        self.write(path)?;
        if let Some(inode) = inode {
            self.link_source.insert(inode, path.into());
            for waiting in self.link_waiting.remove(&inode).unwrap_or_default() {
                self.include_parents(&waiting)?;
                self.link(&waiting, path)?;
            }
        }
        Ok(())
    }

    /// Writes every ancestor directory of `path` not written yet, outermost first, so an
    /// unpacker finds them with their own mode and owner.
    fn include_parents(&mut self, path: &Path) -> io::Result<()> {
        let parents: Vec<PathBuf> = path
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .collect();
        for parent in parents.into_iter().rev() {
            if !self.written_dirs.contains(&parent) {
                self.write(&parent)?;
            }
        }
        Ok(())
    }

    fn write(&mut self, path: &Path) -> io::Result<()> {
        let source = self.upper.join(path);
        if let Some(capability) = sys::get_xattr(&source, CAPABILITY_XATTR)? {
            let key = format!("SCHILY.xattr.{CAPABILITY_XATTR}");
            self.pax(path, &[(key.as_str(), capability.as_slice())])?;
        }
        self.builder.append_path_with_name(&source, path)?;
        if fs::symlink_metadata(&source)?.is_dir() {
            self.written_dirs.insert(path.to_path_buf());
        }
        Ok(())
    }

    fn link(&mut self, path: &Path, source: &Path) -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Link);
        header.set_size(0);
        self.builder.append_link(&mut header, path, source)
    }

    fn whiteout(&mut self, rel: &Path, name: &OsString) -> io::Result<()> {
        let mut whiteout = OsString::from(".wh.");
        whiteout.push(name);
        let path = rel.join(whiteout);
        self.include_parents(&path)?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(0);
        header.set_mode(0o644);
        self.builder.append_data(&mut header, path, io::empty())
    }

    /// A PAX extended header with `records`, applying to the entry written next.
    fn pax(&mut self, path: &Path, records: &[(&str, &[u8])]) -> io::Result<()> {
        let mut data = Vec::new();
        for (key, value) in records {
            data.extend(pax_record(key, value));
        }
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        let name = Path::new("PaxHeaders.0").join(path.file_name().unwrap_or_default());
        self.builder.append_data(&mut header, name, data.as_slice())
    }
}

/// One PAX record: `<length> <key>=<value>\n`, the length counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// The names in `dir`, sorted so the layer is reproducible; none if it is not a directory.
fn names(dir: &Path) -> io::Result<Vec<OsString>> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let mut names = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

/// Whether an entry changed, from its metadata (and a symlink's target), as containerd's
/// walking differ compares: content of same-size, same-mtime files is taken as unchanged.
fn differs(
    before: &Metadata,
    now: &Metadata,
    before_path: &Path,
    now_path: &Path,
) -> io::Result<bool> {
    if before.mode() != now.mode()
        || before.uid() != now.uid()
        || before.gid() != now.gid()
        || before.rdev() != now.rdev()
    {
        return Ok(true);
    }
    if now.is_dir() {
        return Ok(false);
    }
    if before.size() != now.size()
        || before.mtime() != now.mtime()
        || before.mtime_nsec() != now.mtime_nsec()
    {
        return Ok(true);
    }
    if now.file_type().is_symlink() {
        return Ok(fs::read_link(before_path)? != fs::read_link(now_path)?);
    }
    Ok(false)
}

#[cfg(test)]
mod tests;
