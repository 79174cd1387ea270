//! The layer unpacker against hostile layers (nothing outside the root may change; each case is
//! refused with an error naming the entry, or contained inside the root) and on real layers:
//! whiteouts on a real overlay mount, gzip and zstd, links, and Diff round-tripping through Apply.
//! Pure Rust, no daemon: the library is called directly.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{ensure, Context, Result};
use keel_containerd::diff::apply::apply;
use keel_containerd::diff::compare::{diff, DiffRequest};
use keel_containerd::diff::unpack::{
    unpack, unpack_with, UnpackError, UnpackOptions, WhiteoutMode,
};
use keel_containerd::diff::{Descriptor, DiffError, LayerStore, Mount};
use keel_integration_tests::require_root;
use sha2::{Digest, Sha256};

/// A root to unpack into, with a sentinel directory beside it that must never change.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        fs::create_dir(dir.path().join("root"))?;
        fs::create_dir(dir.path().join("sentinel"))?;
        fs::write(dir.path().join("sentinel/canary"), b"canary")?;
        Ok(Self { dir })
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn sentinel(&self) -> PathBuf {
        self.dir.path().join("sentinel")
    }
    /// Fails if anything beside the root changed.
    fn check_untouched(&self) -> Result<()> {
        let names: BTreeSet<_> = fs::read_dir(self.dir.path())?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        ensure!(
            names.len() == 2,
            "something appeared beside the root: {names:?}"
        );
        let sentinel: Vec<_> = fs::read_dir(self.sentinel())?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        ensure!(
            sentinel == vec!["canary"],
            "the sentinel changed: {sentinel:?}"
        );
        let canary = self.sentinel().join("canary");
        ensure!(fs::read(&canary)? == b"canary", "the canary was written");
        ensure!(
            fs::metadata(&canary)?.nlink() == 1,
            "the canary was hardlinked"
        );
        Ok(())
    }
}

/// Builds tars entry by entry with raw names, bypassing the tar crate's path checks.
struct RawTar {
    builder: tar::Builder<Vec<u8>>,
}

impl RawTar {
    fn new() -> Self {
        Self {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    fn entry(
        &mut self,
        kind: tar::EntryType,
        name: &[u8],
        link: &[u8],
        data: &[u8],
        mode: u32,
    ) -> Result<&mut Self> {
        if name.len() > 99 {
            self.long(tar::EntryType::GNULongName, name)?;
        }
        if link.len() > 99 {
            self.long(tar::EntryType::GNULongLink, link)?;
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(1_600_000_000);
        let old = header.as_old_mut();
        let n = name.len().min(99);
        old.name[..n].copy_from_slice(&name[..n]);
        let n = link.len().min(99);
        old.linkname[..n].copy_from_slice(&link[..n]);
        header.set_cksum();
        self.builder.append(&header, data)?;
        Ok(self)
    }

    fn long(&mut self, kind: tar::EntryType, value: &[u8]) -> Result<()> {
        let mut data = value.to_vec();
        data.push(0);
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        header.set_cksum();
        self.builder.append(&header, data.as_slice())?;
        Ok(())
    }

    fn file(&mut self, name: &[u8], data: &[u8]) -> Result<&mut Self> {
        self.entry(tar::EntryType::Regular, name, b"", data, 0o644)
    }
    fn dir(&mut self, name: &[u8]) -> Result<&mut Self> {
        self.entry(tar::EntryType::Directory, name, b"", b"", 0o755)
    }
    fn symlink(&mut self, name: &[u8], target: &[u8]) -> Result<&mut Self> {
        self.entry(tar::EntryType::Symlink, name, target, b"", 0o777)
    }
    fn hardlink(&mut self, name: &[u8], target: &[u8]) -> Result<&mut Self> {
        self.entry(tar::EntryType::Link, name, target, b"", 0o644)
    }
    fn finish(self) -> Result<Vec<u8>> {
        Ok(self.builder.into_inner()?)
    }
}

fn unpack_bytes(
    tar: &[u8],
    root: &Path,
    mode: WhiteoutMode,
) -> Result<keel_containerd::diff::unpack::UnpackStats, UnpackError> {
    unpack(tar, root, mode)
}

/// The absolute path of the sentinel as bytes, for entries aiming at it.
fn abs(path: &Path) -> Vec<u8> {
    path.as_os_str().as_encoded_bytes().to_vec()
}

#[test]
fn dotdot_names_are_refused() -> Result<()> {
    require_root!();
    let sandbox = Sandbox::new()?;
    for name in [
        &b"../sentinel/pwned"[..],
        b"a/../../sentinel/pwned",
        b"./../sentinel/canary",
        b"..",
    ] {
        let mut tar = RawTar::new();
        tar.file(name, b"pwned")?;
        let err = unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete);
        ensure!(
            matches!(err, Err(UnpackError::ParentComponent { .. })),
            "{:?}: {err:?}",
            String::from_utf8_lossy(name)
        );
    }
    sandbox.check_untouched()
}

#[test]
fn absolute_names_are_contained() -> Result<()> {
    require_root!();
    let sandbox = Sandbox::new()?;
    let mut name = abs(&sandbox.sentinel());
    name.extend_from_slice(b"/pwned");
    let mut tar = RawTar::new();
    tar.file(&name, b"pwned")?;
    unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete)?;
    let inside = sandbox
        .root()
        .join(sandbox.sentinel().strip_prefix("/")?)
        .join("pwned");
    ensure!(
        fs::read(&inside)? == b"pwned",
        "the absolute entry was not put inside the root"
    );
    sandbox.check_untouched()
}

#[test]
fn writes_through_symlinks_stay_inside() -> Result<()> {
    require_root!();
    let sandbox = Sandbox::new()?;
    // A symlink to the sentinel's absolute path, then a write through it: refused (the target
    // does not exist inside the root).
    let mut tar = RawTar::new();
    tar.symlink(b"a", &abs(&sandbox.sentinel()))?
        .file(b"a/pwned", b"pwned")?;
    let err = unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete);
    ensure!(
        matches!(&err, Err(UnpackError::Entry { entry, .. }) if entry == "a/pwned"),
        "{err:?}"
    );
    // A relative symlink climbing out, then a write through it: contained at the root.
    let mut tar = RawTar::new();
    tar.symlink(b"up", b"../../../../../../..")?
        .file(b"up/inside", b"x")?;
    unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete)?;
    ensure!(
        fs::read(sandbox.root().join("inside"))? == b"x",
        "the write through `up` was not put at the root"
    );
    // A symlink to `/etc`, then `etc`-relative writes: land in the root's own etc.
    fs::create_dir(sandbox.root().join("etc"))?;
    let mut tar = RawTar::new();
    tar.symlink(b"e", b"/etc")?
        .file(b"e/passwd", b"root::0:0")?;
    unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete)?;
    ensure!(
        fs::read(sandbox.root().join("etc/passwd"))? == b"root::0:0",
        "e/passwd did not land in root/etc"
    );
    sandbox.check_untouched()
}

#[test]
fn hardlinks_cannot_reach_outside() -> Result<()> {
    require_root!();
    let sandbox = Sandbox::new()?;
    let mut canary = abs(&sandbox.sentinel());
    canary.extend_from_slice(b"/canary");
    let mut tar = RawTar::new();
    tar.hardlink(b"h", b"../sentinel/canary")?;
    let err = unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete);
    ensure!(
        matches!(err, Err(UnpackError::ParentComponent { .. })),
        "{err:?}"
    );
    let mut tar = RawTar::new();
    tar.hardlink(b"h", &canary)?;
    let err = unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete);
    ensure!(
        matches!(&err, Err(UnpackError::Entry { entry, .. }) if entry == "h"),
        "{err:?}"
    );
    let mut tar = RawTar::new();
    tar.symlink(b"s", &abs(&sandbox.sentinel()))?
        .hardlink(b"h", b"s/canary")?;
    let err = unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete);
    ensure!(
        matches!(&err, Err(UnpackError::Entry { entry, .. }) if entry == "h"),
        "{err:?}"
    );
    sandbox.check_untouched()
}

#[test]
fn hostile_whiteouts_are_refused_or_contained() -> Result<()> {
    require_root!();
    let sandbox = Sandbox::new()?;
    for mode in [WhiteoutMode::Delete, WhiteoutMode::Overlay] {
        for name in [&b".wh."[..], b".wh..", b"a/.wh..", b"/.wh."] {
            let mut tar = RawTar::new();
            tar.file(name, b"")?;
            let err = unpack_bytes(&tar.finish()?, &sandbox.root(), mode);
            ensure!(
                matches!(err, Err(UnpackError::BadWhiteout { .. })),
                "{:?}: {err:?}",
                String::from_utf8_lossy(name)
            );
        }
        let mut tar = RawTar::new();
        tar.file(b".wh...", b"")?;
        let err = unpack_bytes(&tar.finish()?, &sandbox.root(), mode);
        ensure!(err.is_err(), ".wh... was accepted");
    }
    let mut tar = RawTar::new();
    tar.file(b"../sentinel/.wh.canary", b"")?;
    ensure!(
        unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete).is_err(),
        "whiteout through .. accepted"
    );
    // A whiteout through a symlink to the sentinel: resolved inside the root, where there is
    // nothing to delete.
    let mut tar = RawTar::new();
    tar.symlink(b"s", &abs(&sandbox.sentinel()))?
        .file(b"s/.wh.canary", b"")?;
    unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete)?;
    let mut tar = RawTar::new();
    tar.symlink(b"t", b"../sentinel")?
        .file(b"t/.wh..wh..opq", b"")?;
    unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete)?;
    sandbox.check_untouched()
}

/// A GNU sparse entry of apparent size `real_size` holding 512 bytes of data at its end.
fn sparse_tar(real_size: u64) -> Result<Vec<u8>> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::GNUSparse);
    header.set_path("sparse")?;
    header.set_size(512);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_600_000_000);
    let gnu = header.as_gnu_mut().context("not a GNU header")?;
    binary(&mut gnu.sparse[0].offset, real_size - 512);
    binary(&mut gnu.sparse[0].numbytes, 512);
    binary(&mut gnu.realsize, real_size);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, &[7u8; 512][..])?;
    Ok(builder.into_inner()?)
}

/// A tar number field in base-256, which holds any size.
fn binary(field: &mut [u8; 12], value: u64) {
    field.fill(0);
    field[0] = 0x80;
    field[4..].copy_from_slice(&value.to_be_bytes());
}

#[test]
fn sparse_files_are_written_sparse_and_huge_ones_refused() -> Result<()> {
    require_root!();
    let sandbox = Sandbox::new()?;
    let started = std::time::Instant::now();
    unpack_bytes(&sparse_tar(1 << 30)?, &sandbox.root(), WhiteoutMode::Delete)?;
    let meta = fs::metadata(sandbox.root().join("sparse"))?;
    ensure!(meta.len() == 1 << 30, "apparent size {}", meta.len());
    ensure!(
        meta.blocks() * 512 < 1 << 20,
        "{} blocks allocated: not sparse",
        meta.blocks()
    );
    ensure!(
        started.elapsed().as_secs() < 60,
        "a 1 GiB hole took {:?}",
        started.elapsed()
    );
    let huge = sparse_tar(1 << 50)?;
    let err = unpack_with(
        huge.as_slice(),
        &sandbox.root(),
        WhiteoutMode::Delete,
        &UnpackOptions::default(),
    );
    ensure!(matches!(err, Err(UnpackError::TooLarge { .. })), "{err:?}");
    sandbox.check_untouched()
}

#[test]
fn files_replace_directories_without_following_symlinks() -> Result<()> {
    require_root!();
    let sandbox = Sandbox::new()?;
    let mut tar = RawTar::new();
    tar.dir(b"d/")?
        .file(b"d/f", b"f")?
        .symlink(b"d/out", &abs(&sandbox.sentinel()))?
        .file(b"d", b"now a file")?;
    unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete)?;
    ensure!(
        fs::read(sandbox.root().join("d"))? == b"now a file",
        "d was not replaced"
    );
    sandbox.check_untouched()
}

#[test]
fn absurd_names_are_refused() -> Result<()> {
    require_root!();
    let sandbox = Sandbox::new()?;
    for name in [vec![b'a'; 300], vec![b'b'; 70_000], b"x/".repeat(3000)] {
        let mut tar = RawTar::new();
        tar.file(&name, b"x")?;
        let err = unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete);
        ensure!(
            matches!(&err, Err(UnpackError::Entry { .. })),
            "{} bytes: {err:?}",
            name.len()
        );
    }
    // An entry of an unhandled type is refused before anything is touched.
    fs::create_dir(sandbox.root().join("etc"))?;
    let mut tar = RawTar::new();
    tar.entry(tar::EntryType::new(b'V'), b"etc", b"", b"", 0o644)?;
    let err = unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete);
    ensure!(
        matches!(err, Err(UnpackError::Unsupported { kind: b'V', .. })),
        "{err:?}"
    );
    ensure!(
        sandbox.root().join("etc").is_dir(),
        "an unhandled entry removed etc"
    );
    let mut tar = RawTar::new();
    tar.file(b"./", b"")?;
    ensure!(
        unpack_bytes(&tar.finish()?, &sandbox.root(), WhiteoutMode::Delete).is_err(),
        "the root replaced by a file"
    );
    sandbox.check_untouched()
}

/// A layer with all kinds of entries, made with the tar crate's ordinary API.
fn rich_layer() -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |kind: tar::EntryType,
                   path: &str,
                   link: Option<&str>,
                   data: &[u8],
                   mode: u32,
                   uid: u64|
     -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid + 1);
        h.set_mtime(1_500_000_000);
        if let Some(link) = link {
            h.set_link_name(link)?;
        }
        if kind == tar::EntryType::Char {
            h.set_device_major(1)?;
            h.set_device_minor(3)?;
        }
        b.append_data(&mut h, path, data)?;
        Ok(())
    };
    add(tar::EntryType::Directory, "bin", None, b"", 0o755, 0)?;
    add(
        tar::EntryType::Regular,
        "bin/su",
        None,
        b"#!/bin/true\n",
        0o4755,
        0,
    )?;
    add(
        tar::EntryType::Regular,
        "bin/owned",
        None,
        b"mine",
        0o640,
        1234,
    )?;
    add(
        tar::EntryType::Link,
        "bin/su-link",
        Some("bin/su"),
        b"",
        0o4755,
        0,
    )?;
    add(tar::EntryType::Symlink, "sh", Some("bin/su"), b"", 0o777, 0)?;
    add(tar::EntryType::Char, "null", None, b"", 0o666, 0)?;
    add(tar::EntryType::Fifo, "fifo", None, b"", 0o600, 0)?;
    Ok(b.into_inner()?)
}

#[test]
fn links_devices_modes_and_owners_are_kept() -> Result<()> {
    require_root!();
    let sandbox = Sandbox::new()?;
    let root = sandbox.root();
    let stats = unpack_bytes(&rich_layer()?, &root, WhiteoutMode::Delete)?;
    ensure!(stats.entries == 7, "{stats:?}");
    let su = fs::metadata(root.join("bin/su"))?;
    ensure!(
        su.permissions().mode() & 0o7777 == 0o4755,
        "setuid lost: {:o}",
        su.permissions().mode()
    );
    ensure!(
        su.nlink() == 2 && fs::metadata(root.join("bin/su-link"))?.ino() == su.ino(),
        "hardlink not kept"
    );
    ensure!(su.mtime() == 1_500_000_000, "mtime {}", su.mtime());
    let owned = fs::metadata(root.join("bin/owned"))?;
    ensure!(
        owned.uid() == 1234 && owned.gid() == 1235 && owned.permissions().mode() & 0o777 == 0o640,
        "owner or mode lost"
    );
    ensure!(
        fs::read_link(root.join("sh"))? == Path::new("bin/su"),
        "symlink target"
    );
    let null = fs::symlink_metadata(root.join("null"))?;
    ensure!(
        null.file_type().is_char_device() && null.rdev() == libc::makedev(1, 3),
        "device node"
    );
    ensure!(
        fs::symlink_metadata(root.join("fifo"))?
            .file_type()
            .is_fifo(),
        "fifo"
    );
    ensure!(
        fs::metadata(root.join("bin"))?.mtime() == 1_500_000_000,
        "directory mtime not set last"
    );
    sandbox.check_untouched()
}

fn whiteout_layers() -> Result<(Vec<u8>, Vec<u8>)> {
    let mut lower = RawTar::new();
    lower
        .dir(b"etc/")?
        .file(b"etc/a", b"a")?
        .file(b"etc/b", b"b")?
        .dir(b"opq/")?
        .file(b"opq/x", b"x")?;
    let mut upper = RawTar::new();
    upper
        .file(b"etc/.wh.a", b"")?
        .dir(b"opq/")?
        .file(b"opq/y", b"y")?
        .file(b"opq/.wh..wh..opq", b"")?;
    Ok((lower.finish()?, upper.finish()?))
}

fn check_whiteouts(merged: &Path) -> Result<()> {
    ensure!(!merged.join("etc/a").exists(), "etc/a not whited out");
    ensure!(fs::read(merged.join("etc/b"))? == b"b", "etc/b lost");
    ensure!(!merged.join("opq/x").exists(), "opq not opaque");
    ensure!(fs::read(merged.join("opq/y"))? == b"y", "opq/y lost");
    Ok(())
}

#[test]
fn whiteouts_delete_in_a_plain_tree() -> Result<()> {
    require_root!();
    let sandbox = Sandbox::new()?;
    let (lower, upper) = whiteout_layers()?;
    unpack_bytes(&lower, &sandbox.root(), WhiteoutMode::Delete)?;
    unpack_bytes(&upper, &sandbox.root(), WhiteoutMode::Delete)?;
    check_whiteouts(&sandbox.root())?;
    sandbox.check_untouched()
}

/// An overlay mount, unmounted when dropped.
struct OverlayMount(PathBuf);

impl OverlayMount {
    /// Mounts overlay on `merged` with `options` (`lowerdir=...,upperdir=...,workdir=...`).
    fn mount(merged: &Path, options: &str) -> Result<Self> {
        nix::mount::mount(
            Some("overlay"),
            merged,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(options),
        )
        .context("mounting overlay")?;
        Ok(Self(merged.to_path_buf()))
    }

    /// [`OverlayMount::mount`] of one lower, one upper and a workdir.
    fn layers(merged: &Path, lower: &Path, upper: &Path, work: &Path) -> Result<Self> {
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        Self::mount(merged, &options)
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn whiteouts_and_opaque_dirs_on_a_real_overlay() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let [lower, upper, work, merged] =
        ["lower", "upper", "work", "merged"].map(|n| dir.path().join(n));
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d)?;
    }
    let (lower_layer, upper_layer) = whiteout_layers()?;
    unpack_bytes(&lower_layer, &lower, WhiteoutMode::Delete)?;
    unpack_bytes(&upper_layer, &upper, WhiteoutMode::Overlay)?;
    let whiteout = fs::symlink_metadata(upper.join("etc/a"))?;
    ensure!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "etc/a is not an overlay whiteout"
    );
    let guard = OverlayMount::layers(&merged, &lower, &upper, &work)?;
    check_whiteouts(&merged)?;
    drop(guard);
    Ok(())
}

/// A content store in a directory, for the diff service's tests.
struct DirStore {
    dir: PathBuf,
    labels: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl DirStore {
    fn new(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir.join("blobs"))?;
        fs::create_dir_all(dir.join("tmp"))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            labels: Mutex::new(BTreeMap::new()),
        })
    }
    fn put(&self, data: &[u8]) -> Result<String> {
        let digest = sha256(data);
        fs::write(self.blob(&digest), data)?;
        Ok(digest)
    }
    fn blob(&self, digest: &str) -> PathBuf {
        self.dir
            .join("blobs")
            .join(digest.trim_start_matches("sha256:"))
    }
}

fn sha256(data: &[u8]) -> String {
    format!(
        "sha256:{}",
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

impl LayerStore for DirStore {
    fn open_blob(&self, _namespace: &str, digest: &str) -> std::io::Result<fs::File> {
        fs::File::open(self.blob(digest))
    }
    fn store_blob(
        &self,
        _namespace: &str,
        path: &Path,
        labels: BTreeMap<String, String>,
        _lease: Option<&str>,
    ) -> std::io::Result<(String, u64)> {
        let data = fs::read(path)?;
        let digest = sha256(&data);
        fs::rename(path, self.blob(&digest))?;
        self.labels
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .insert(digest.clone(), labels);
        Ok((digest, data.len() as u64))
    }
    fn temp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }
}

fn bind(path: &Path) -> Vec<Mount> {
    vec![Mount {
        kind: "bind".into(),
        source: path.display().to_string(),
        options: vec!["rbind".into(), "rw".into()],
    }]
}

#[test]
fn apply_gzip_and_zstd_layers_onto_bind_mounts() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let store = DirStore::new(&dir.path().join("store"))?;
    let layer = rich_layer()?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&layer)?;
    let gz = gz.finish()?;
    let zst = zstd::encode_all(layer.as_slice(), 3)?;
    for (media_type, blob) in [
        ("application/vnd.oci.image.layer.v1.tar+gzip", &gz),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", &gz),
        ("application/vnd.oci.image.layer.v1.tar+zstd", &zst),
        ("application/vnd.oci.image.layer.v1.tar", &layer),
    ] {
        let target = tempfile::tempdir()?;
        let desc = Descriptor {
            media_type: media_type.into(),
            digest: store.put(blob)?,
            size: blob.len() as u64,
        };
        let applied = apply(&store, "ns", &desc, &bind(target.path()))?;
        ensure!(
            applied.digest == sha256(&layer) && applied.size == layer.len() as u64,
            "{media_type}: {applied:?}"
        );
        ensure!(
            applied.media_type == "application/vnd.oci.image.layer.v1.tar",
            "{applied:?}"
        );
        ensure!(
            fs::read(target.path().join("bin/owned"))? == b"mine",
            "{media_type}: not unpacked"
        );
        ensure!(
            fs::read_dir(store.temp_dir())?.next().is_none(),
            "a temp mount dir was left behind"
        );
    }
    let desc = Descriptor {
        media_type: "application/x-unknown".into(),
        digest: store.put(&layer)?,
        size: 0,
    };
    let err = apply(&store, "ns", &desc, &bind(dir.path()));
    ensure!(matches!(err, Err(DiffError::NoProcessor(_))), "{err:?}");
    let desc = Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        digest: sha256(b"none"),
        size: 0,
    };
    ensure!(
        matches!(
            apply(&store, "ns", &desc, &bind(dir.path())),
            Err(DiffError::BlobNotFound(_))
        ),
        "missing blob"
    );
    Ok(())
}

/// Every path under `root` with its type, mode, owner, size, link target and content.
fn tree(root: &Path) -> Result<BTreeMap<PathBuf, String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let meta = fs::symlink_metadata(&path)?;
            let mut content = String::new();
            if meta.is_file() {
                fs::File::open(&path)?.read_to_string(&mut content)?;
            } else if meta.file_type().is_symlink() {
                content = fs::read_link(&path)?.display().to_string();
            } else if meta.is_dir() {
                stack.push(path.clone());
            }
            let summary = format!(
                "{:o} {}:{} {}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                content
            );
            out.insert(path.strip_prefix(root)?.to_path_buf(), summary);
        }
    }
    Ok(out)
}

#[test]
fn diff_round_trips_through_apply() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let store = DirStore::new(&dir.path().join("store"))?;
    let [lower, upper, applied] = ["lower", "upper", "applied"].map(|n| dir.path().join(n));
    for d in [&lower, &upper, &applied] {
        fs::create_dir(d)?;
        let mut base = RawTar::new();
        base.dir(b"etc/")?
            .file(b"etc/keep", b"keep")?
            .file(b"etc/gone", b"gone")?
            .dir(b"old/")?
            .file(b"old/f", b"f")?;
        unpack_bytes(&base.finish()?, d, WhiteoutMode::Delete)?;
    }
    fs::write(upper.join("etc/new"), b"new")?;
    fs::remove_file(upper.join("etc/gone"))?;
    fs::remove_dir_all(upper.join("old"))?;
    std::os::unix::fs::symlink("etc/keep", upper.join("link"))?;
    fs::write(upper.join("etc/hard1"), b"h")?;
    fs::hard_link(upper.join("etc/hard1"), upper.join("etc/hard2"))?;
    for media_type in [
        "",
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+zstd",
    ] {
        let request = DiffRequest {
            left: bind(&lower),
            right: bind(&upper),
            media_type: media_type.into(),
            ..Default::default()
        };
        let layer = diff(&store, "ns", &request)?;
        let labels = store
            .labels
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .get(&layer.digest)
            .cloned()
            .unwrap_or_default();
        ensure!(
            labels.contains_key("containerd.io/uncompressed"),
            "no uncompressed label: {labels:?}"
        );
        let target = tempfile::tempdir()?;
        let copy = target.path().join("copy");
        fs::create_dir(&copy)?;
        let mut base = RawTar::new();
        base.dir(b"etc/")?
            .file(b"etc/keep", b"keep")?
            .file(b"etc/gone", b"gone")?
            .dir(b"old/")?
            .file(b"old/f", b"f")?;
        unpack_bytes(&base.finish()?, &copy, WhiteoutMode::Delete)?;
        let applied_desc = apply(&store, "ns", &layer, &bind(&copy))?;
        ensure!(
            Some(&applied_desc.digest) == labels.get("containerd.io/uncompressed"),
            "uncompressed digest mismatch"
        );
        ensure!(
            tree(&copy)? == tree(&upper)?,
            "{media_type:?}: the applied diff differs: {:?} vs {:?}",
            tree(&copy)?,
            tree(&upper)?
        );
        let inode = |name: &str| fs::metadata(copy.join(name)).map(|m| m.ino());
        ensure!(
            inode("etc/hard1")? == inode("etc/hard2")?,
            "{media_type:?}: the hard link came back as a copy"
        );
    }
    let request = DiffRequest {
        left: bind(&lower),
        right: bind(&upper),
        media_type: "application/x-foo".into(),
        ..Default::default()
    };
    ensure!(
        matches!(
            diff(&store, "ns", &request),
            Err(DiffError::UnsupportedMediaType(_))
        ),
        "unknown media type accepted"
    );
    Ok(())
}

#[test]
fn apply_onto_a_single_overlay_mount_writes_overlay_whiteouts_in_its_upperdir() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let store = DirStore::new(&dir.path().join("store"))?;
    let [lower, upper, work, merged] =
        ["lower", "upper", "work", "merged"].map(|n| dir.path().join(n));
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d)?;
    }
    let (lower_layer, upper_layer) = whiteout_layers()?;
    unpack_bytes(&lower_layer, &lower, WhiteoutMode::Delete)?;
    let desc = Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        digest: store.put(&upper_layer)?,
        size: 0,
    };
    let options = vec![
        format!("workdir={}", work.display()),
        format!("upperdir={}", upper.display()),
        format!("lowerdir={}", lower.display()),
    ];
    let mounts = vec![Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        options: options.clone(),
    }];
    let applied = apply(&store, "ns", &desc, &mounts)?;
    ensure!(applied.digest == sha256(&upper_layer), "{applied:?}");
    let whiteout = fs::symlink_metadata(upper.join("etc/a"))?;
    ensure!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "no overlay whiteout in the upperdir"
    );
    let guard = OverlayMount::mount(&merged, &options.join(","))?;
    check_whiteouts(&merged)?;
    drop(guard);
    Ok(())
}

/// A PAX record `LEN key=value\n`, whose length counts its own digits.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

#[test]
fn pax_xattrs_are_set() -> Result<()> {
    require_root!();
    // Seen through overlay: a directory given trusted.overlay.opaque by a PAX xattr (not by a
    // `.wh..wh..opq` entry) hides what the lower layer has in it.
    let dir = tempfile::tempdir()?;
    let [lower, upper, work, merged] =
        ["lower", "upper", "work", "merged"].map(|n| dir.path().join(n));
    for d in [&lower, &upper, &work, &merged] {
        fs::create_dir(d)?;
    }
    let (lower_layer, _) = whiteout_layers()?;
    unpack_bytes(&lower_layer, &lower, WhiteoutMode::Delete)?;
    let mut tar = RawTar::new();
    tar.entry(
        tar::EntryType::XHeader,
        b"PaxHeaders/opq",
        b"",
        &pax_record("SCHILY.xattr.trusted.overlay.opaque", "y"),
        0o644,
    )?
    .dir(b"opq/")?
    .file(b"opq/y", b"y")?
    .file(b"etc/.wh.a", b"")?;
    unpack_bytes(&tar.finish()?, &upper, WhiteoutMode::Overlay)?;
    let guard = OverlayMount::layers(&merged, &lower, &upper, &work)?;
    check_whiteouts(&merged)?;
    drop(guard);
    Ok(())
}
