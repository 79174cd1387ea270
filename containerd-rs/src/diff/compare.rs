//! Diff: the changes from a lower to an upper tree written as a layer, as containerd 1.6's
//! walking differ: added and changed entries in full, deletions as `.wh.NAME` whiteouts.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::compression::{Compression, Compressor, Digesting};
use super::mounts::{temp_dir, with_temp_mount};
use super::{Descriptor, DiffError, LayerStore, Mount, UNCOMPRESSED_LABEL};

/// What a Diff call asks for.
#[derive(Debug, Clone, Default)]
pub struct DiffRequest {
    pub left: Vec<Mount>,
    pub right: Vec<Mount>,
    /// Empty means gzip, as containerd.
    pub media_type: String,
    pub labels: BTreeMap<String, String>,
    pub lease: Option<String>,
}

/// The compression Diff writes for `media_type` (zstd is an extension: containerd 1.6's walking
/// differ answers NotImplemented for it).
fn compression_for(media_type: &str) -> Result<(String, Compression), DiffError> {
    let media_type = if media_type.is_empty() {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else {
        media_type
    };
    match media_type {
        "application/vnd.oci.image.layer.v1.tar" => {
            Ok((media_type.to_string(), Compression::Uncompressed))
        }
        "application/vnd.oci.image.layer.v1.tar+gzip" => {
            Ok((media_type.to_string(), Compression::Gzip))
        }
        "application/vnd.oci.image.layer.v1.tar+zstd" => {
            Ok((media_type.to_string(), Compression::Zstd))
        }
        other => Err(DiffError::UnsupportedMediaType(other.to_string())),
    }
}

/// Mounts both sides read-only, writes their difference as a layer and stores it.
pub fn diff(
    store: &dyn LayerStore,
    namespace: &str,
    request: &DiffRequest,
) -> Result<Descriptor, DiffError> {
    let (media_type, compression) = compression_for(&request.media_type)?;
    let base = store.temp_dir();
    with_temp_mount(&base, &request.left, true, |lower| {
        with_temp_mount(&base, &request.right, true, |upper| {
            let dir = temp_dir(&base)?;
            let result =
                write_and_store(store, namespace, request, compression, lower, upper, &dir);
            let _ = fs::remove_dir_all(&dir);
            let (digest, size) = result?;
            Ok(Descriptor {
                media_type: media_type.clone(),
                digest,
                size,
            })
        })
    })
}

fn write_and_store(
    store: &dyn LayerStore,
    namespace: &str,
    request: &DiffRequest,
    compression: Compression,
    lower: &Path,
    upper: &Path,
    dir: &Path,
) -> Result<(String, u64), DiffError> {
    let path = dir.join("layer");
    let file = File::create(&path).map_err(DiffError::io("creating the layer file"))?;
    let compressor =
        Compressor::new(compression, file).map_err(DiffError::io("starting compression"))?;
    let mut digesting = Digesting::new(compressor);
    write_diff(&mut digesting, lower, upper).map_err(DiffError::io("failed to write diff"))?;
    let uncompressed = digesting.digest();
    let file = digesting
        .inner
        .finish()
        .map_err(DiffError::io("finishing compression"))?;
    file.sync_all()
        .map_err(DiffError::io("syncing the layer file"))?;
    let mut labels = request.labels.clone();
    labels.insert(UNCOMPRESSED_LABEL.to_string(), uncompressed);
    store
        .store_blob(namespace, &path, labels, request.lease.as_deref())
        .map_err(DiffError::io("failed to commit"))
}

/// Writes, as a tar, what changed from `lower` to `upper`.
pub fn write_diff(out: impl Write, lower: &Path, upper: &Path) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    walk(&mut builder, lower, upper, Path::new(""))?;
    builder.into_inner()?.flush()
}

/// The names in `dir`, sorted so the layer is reproducible; none if it is not a directory.
fn names(dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
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

fn walk<W: Write>(
    builder: &mut tar::Builder<W>,
    lower: &Path,
    upper: &Path,
    rel: &Path,
) -> io::Result<()> {
    let upper_dir = upper.join(rel);
    for name in names(&lower.join(rel))? {
        if let Err(e) = fs::symlink_metadata(upper_dir.join(&name)) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
            let mut whiteout = std::ffi::OsString::from(".wh.");
            whiteout.push(&name);
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(0);
            header.set_mode(0o644);
            builder.append_data(&mut header, rel.join(whiteout), io::empty())?;
        }
    }
    for name in names(&upper_dir)? {
        let path: PathBuf = rel.join(&name);
        let now = fs::symlink_metadata(upper.join(&path))?;
        let before = fs::symlink_metadata(lower.join(&path)).ok();
        let changed = match &before {
            Some(before) => differs(before, &now, &lower.join(&path), &upper.join(&path))?,
            None => true,
        };
        if changed {
            builder.append_path_with_name(upper.join(&path), &path)?;
        }
        if now.is_dir() {
            walk(builder, lower, upper, &path)?;
        }
    }
    Ok(())
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
