//! OCI image layouts built in Rust for the pull tests: a busybox rootfs (the host's static
//! `/bin/busybox` with every applet a symlink to it, and the [`rootfs`] `/etc` files) as one
//! layer, compressed with gzip and with zstd, described by OCI and Docker schema 2 manifests
//! and by a multi-platform OCI index; and [`push`], which copies a layout's tag to a registry
//! with `skopeo`, digests preserved.
//!
//! The layout (`oci-layout`, `index.json`, `blobs/sha256/...`) holds one tagged entry per
//! [`Tag`]. Builds are deterministic (fixed mtimes and owners), so two layouts of the same host
//! busybox have the same digests.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::rootfs;

/// OCI media types.
pub mod media {
    /// An OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// An OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// An OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// An OCI layer, gzip.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// An OCI layer, zstd.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// A Docker schema 2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// A Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// A Docker layer (gzip).
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// The tagged entries of a built layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// OCI manifest, gzip layer, linux/amd64.
    OciGzip,
    /// OCI manifest, zstd layer, linux/amd64.
    OciZstd,
    /// Docker schema 2 manifest, gzip layer, linux/amd64.
    Docker,
    /// OCI index: linux/amd64 (the [`Tag::OciGzip`] manifest) and a linux/arm64 entry (the
    /// same busybox layer, for amd64: an entry to be listed and skipped, not run).
    Multi,
}

impl Tag {
    /// Every tag a layout holds.
    pub const ALL: [Tag; 4] = [Tag::OciGzip, Tag::OciZstd, Tag::Docker, Tag::Multi];

    /// The tag's name in the layout and in the registry.
    pub fn name(self) -> &'static str {
        match self {
            Tag::OciGzip => "oci-gzip",
            Tag::OciZstd => "oci-zstd",
            Tag::Docker => "docker",
            Tag::Multi => "multi",
        }
    }
}

/// A content descriptor: what a manifest or index points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The blob's size in bytes.
    pub size: u64,
}

impl Descriptor {
    fn to_json(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// A built layout: its directory and the root descriptor of each tag.
#[derive(Debug)]
pub struct Layout {
    /// The layout's directory.
    pub dir: PathBuf,
    /// Each tag's root (manifest or index), in [`Tag::ALL`] order.
    pub roots: Vec<(Tag, Descriptor)>,
    /// The uncompressed layer's digest (the images' only diff ID).
    pub diff_id: String,
}

impl Layout {
    /// The Docker schema 2 image in the layout of skopeo's `dir:` transport (`manifest.json`,
    /// `version`, blobs named by their hex digest), beside the OCI layout's blobs.
    pub fn docker_dir(&self) -> PathBuf {
        self.dir.join(DOCKER_DIR)
    }

    /// The root descriptor of `tag`.
    pub fn root(&self, tag: Tag) -> Option<&Descriptor> {
        self.roots.iter().find(|(t, _)| *t == tag).map(|(_, d)| d)
    }
}

/// Builds the layout in `dir` (created if missing).
pub fn build(dir: &Path) -> Result<Layout> {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let layer = layer_tar()?;
    let diff_id = sha256(&layer);
    let gzip = gzip(&layer)?;
    let zstd = zstd::encode_all(layer.as_slice(), 3).context("zstd-compressing the layer")?;
    let put = |media_type: &str, bytes: &[u8]| write_blob(&blobs, media_type, bytes);

    let oci_gzip = manifest(
        &put,
        Format::Oci,
        "amd64",
        &diff_id,
        &gzip,
        media::OCI_LAYER_GZIP,
    )?;
    let oci_zstd = manifest(
        &put,
        Format::Oci,
        "amd64",
        &diff_id,
        &zstd,
        media::OCI_LAYER_ZSTD,
    )?;
    let docker = manifest(
        &put,
        Format::Docker,
        "amd64",
        &diff_id,
        &gzip,
        media::DOCKER_LAYER,
    )?;
    let arm64 = manifest(
        &put,
        Format::Oci,
        "arm64",
        &diff_id,
        &gzip,
        media::OCI_LAYER_GZIP,
    )?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [
            platformed(&oci_gzip, "amd64", None),
            platformed(&arm64, "arm64", Some("v8")),
        ],
    });
    let multi = put(media::OCI_INDEX, &to_bytes(&index)?)?;
    let roots = vec![
        (Tag::OciGzip, oci_gzip),
        (Tag::OciZstd, oci_zstd),
        (Tag::Docker, docker),
        (Tag::Multi, multi),
    ];
    write_top(dir, &roots)?;
    write_docker_dir(dir, &roots)?;
    Ok(Layout {
        dir: dir.to_path_buf(),
        roots,
        diff_id,
    })
}

/// Copies `tag` of `layout` (an index with all its manifests) to `reference`
/// (`HOST:PORT/NAME:TAG`) over plain HTTP with skopeo, keeping every digest. The Docker
/// manifest goes from its `dir:` copy: skopeo's OCI layout reader sees only OCI media types.
pub fn push(layout: &Layout, tag: Tag, reference: &str) -> Result<()> {
    let source = match tag {
        Tag::Docker => format!("dir:{}", layout.docker_dir().display()),
        _ => format!("oci:{}:{}", layout.dir.display(), tag.name()),
    };
    let out = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--all", "--preserve-digests"])
        .args(["--dest-tls-verify=false", "--quiet"])
        .arg(&source)
        .arg(format!("docker://{reference}"))
        .output()
        .context("running skopeo (Debian package skopeo)")?;
    if !out.status.success() {
        bail!(
            "skopeo copy {source} docker://{reference} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether `skopeo` can be run (the skip message otherwise).
pub fn skopeo_available() -> std::result::Result<(), String> {
    match Command::new("skopeo").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("skopeo is not installed (Debian package skopeo)".into()),
    }
}

/// A descriptor of `bytes` as `media_type`, for images assembled by hand.
pub fn describe(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: sha256(bytes),
        size: bytes.len() as u64,
    }
}

/// An uncompressed layer tar of regular files `(path, contents)` (mode 0644, the builder's
/// fixed owner and mtime): small layers of a test's own, distinct from the busybox layer.
pub fn files_tar(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, data) in files {
        append(&mut tar, path, tar::EntryType::Regular, 0o644, data, None)?;
    }
    tar.into_inner().context("finishing the layer tar")
}

/// `bytes` gzip-compressed (a layer as `tar+gzip`).
pub fn gzip_bytes(bytes: &[u8]) -> Result<Vec<u8>> {
    gzip(bytes)
}

/// An OCI linux/amd64 image config whose rootfs has `diff_ids`.
pub fn config_json(diff_ids: &[&str]) -> Result<Vec<u8>> {
    let mut value = config("amd64", "");
    value["rootfs"]["diff_ids"] = json!(diff_ids);
    to_bytes(&value)
}

/// An OCI image manifest over `config` and `layers`.
pub fn oci_manifest_json(config: &Descriptor, layers: &[Descriptor]) -> Result<Vec<u8>> {
    let layers: Vec<Value> = layers.iter().map(Descriptor::to_json).collect();
    to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": config.to_json(),
        "layers": layers,
    }))
}

/// An OCI image index whose entries are `manifests`, each for linux/amd64.
pub fn oci_index_json(manifests: &[Descriptor]) -> Result<Vec<u8>> {
    let entries: Vec<Value> = manifests
        .iter()
        .map(|m| platformed(m, "amd64", None))
        .collect();
    to_bytes(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": entries,
    }))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Oci,
    Docker,
}

/// A config and a manifest over one compressed layer, written as blobs; the manifest's
/// descriptor.
fn manifest(
    put: &impl Fn(&str, &[u8]) -> Result<Descriptor>,
    format: Format,
    architecture: &str,
    diff_id: &str,
    layer: &[u8],
    layer_type: &str,
) -> Result<Descriptor> {
    let (manifest_type, config_type) = match format {
        Format::Oci => (media::OCI_MANIFEST, media::OCI_CONFIG),
        Format::Docker => (media::DOCKER_MANIFEST, media::DOCKER_CONFIG),
    };
    let config = put(config_type, &to_bytes(&config(architecture, diff_id))?)?;
    let layer = put(layer_type, layer)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config.to_json(),
        "layers": [layer.to_json()],
    });
    put(manifest_type, &to_bytes(&manifest)?)
}

/// An image config: busybox's shell as the command, one diff ID.
fn config(architecture: &str, diff_id: &str) -> Value {
    json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "keel image_builder"}],
    })
}

fn platformed(manifest: &Descriptor, architecture: &str, variant: Option<&str>) -> Value {
    let mut d = manifest.to_json();
    let mut platform = json!({"architecture": architecture, "os": "linux"});
    if let Some(v) = variant {
        platform["variant"] = json!(v);
    }
    d["platform"] = platform;
    d
}

/// `oci-layout` and `index.json`, one entry per tag named by `org.opencontainers.image.ref.name`.
fn write_top(dir: &Path, roots: &[(Tag, Descriptor)]) -> Result<()> {
    let manifests: Vec<Value> = roots
        .iter()
        .map(|(tag, d)| {
            let mut entry = d.to_json();
            entry["annotations"] = json!({"org.opencontainers.image.ref.name": tag.name()});
            entry
        })
        .collect();
    let index = json!({"schemaVersion": 2, "manifests": manifests});
    fs::write(dir.join("index.json"), to_bytes(&index)?).context("writing index.json")?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .context("writing oci-layout")
}

/// Where [`Layout::docker_dir`] is, under the layout's directory.
const DOCKER_DIR: &str = "docker-dir";

/// The Docker image as skopeo's `dir:` transport reads it: its manifest as `manifest.json`
/// and the config and layer blobs (hard links to the OCI layout's) named by hex digest.
fn write_docker_dir(dir: &Path, roots: &[(Tag, Descriptor)]) -> Result<()> {
    let Some((_, docker)) = roots.iter().find(|(t, _)| *t == Tag::Docker) else {
        bail!("no Docker manifest was built");
    };
    let blobs = dir.join("blobs/sha256");
    let out = dir.join(DOCKER_DIR);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let manifest = fs::read(blobs.join(hex(&docker.digest))).context("reading the manifest")?;
    fs::write(out.join("manifest.json"), &manifest).context("writing manifest.json")?;
    fs::write(out.join("version"), "Directory Transport Version: 1.1\n")
        .context("writing version")?;
    let parsed: Value = serde_json::from_slice(&manifest).context("parsing the manifest")?;
    let layers = parsed["layers"].as_array().cloned().unwrap_or_default();
    for d in layers.iter().chain(std::iter::once(&parsed["config"])) {
        let digest = hex(d["digest"].as_str().unwrap_or_default());
        fs::hard_link(blobs.join(&digest), out.join(&digest))
            .with_context(|| format!("linking blob {digest}"))?;
    }
    Ok(())
}

fn write_blob(blobs: &Path, media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
    let digest = sha256(bytes);
    let path = blobs.join(digest.trim_start_matches("sha256:"));
    fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(Descriptor {
        media_type: media_type.to_string(),
        digest,
        size: bytes.len() as u64,
    })
}

fn to_bytes(value: &Value) -> Result<Vec<u8>> {
    serde_json::to_vec(value).context("encoding JSON")
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(bytes)
        .context("gzip-compressing the layer")?;
    encoder.finish().context("gzip-compressing the layer")
}

/// The busybox rootfs as an uncompressed tar: directories, `/bin/busybox`, one symlink per
/// applet, `/etc/{passwd,group,hostname}`.
fn layer_tar() -> Result<Vec<u8>> {
    let busybox = fs::read(rootfs::HOST_BUSYBOX)
        .with_context(|| format!("reading {} (install busybox-static)", rootfs::HOST_BUSYBOX))?;
    let mut tar = tar::Builder::new(Vec::new());
    for dir in [
        "bin", "sbin", "usr", "usr/bin", "usr/sbin", "proc", "sys", "dev", "etc", "root", "tmp",
        "var", "run",
    ] {
        let mode = if dir == "tmp" { 0o1777 } else { 0o755 };
        append(&mut tar, dir, tar::EntryType::Directory, mode, &[], None)?;
    }
    append(
        &mut tar,
        "bin/busybox",
        tar::EntryType::Regular,
        0o755,
        &busybox,
        None,
    )?;
    for applet in rootfs::applets()? {
        let path = applet.to_string_lossy();
        append(
            &mut tar,
            &path,
            tar::EntryType::Symlink,
            0o777,
            &[],
            Some("/bin/busybox"),
        )?;
    }
    for (name, text) in [
        ("etc/passwd", rootfs::PASSWD),
        ("etc/group", rootfs::GROUP),
        ("etc/hostname", rootfs::HOSTNAME),
    ] {
        append(
            &mut tar,
            name,
            tar::EntryType::Regular,
            0o644,
            text.as_bytes(),
            None,
        )?;
    }
    tar.into_inner().context("finishing the layer tar")
}

fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
    link: Option<&str>,
) -> Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(1_704_067_200);
    header.set_size(data.len() as u64);
    if let Some(target) = link {
        header.set_link_name(target)?;
    }
    tar.append_data(&mut header, path, data)
        .with_context(|| format!("adding {path} to the layer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_complete_and_deterministic() -> Result<()> {
        if !Path::new(rootfs::HOST_BUSYBOX).is_file() {
            crate::skip::skip(module_path!(), "busybox-static is not installed");
            return Ok(());
        }
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let layout = build(a.path())?;
        assert_eq!(
            build(b.path())?.roots,
            layout.roots,
            "same input, same digests"
        );
        let index: Value = serde_json::from_slice(&fs::read(a.path().join("index.json"))?)?;
        assert_eq!(index["manifests"].as_array().map(Vec::len), Some(4));
        // Every blob is named by its digest, and every descriptor reached from a root exists.
        let mut pending: Vec<Descriptor> = layout.roots.iter().map(|(_, d)| d.clone()).collect();
        let mut seen = 0;
        while let Some(d) = pending.pop() {
            let bytes = fs::read(a.path().join("blobs/sha256").join(&d.digest[7..]))?;
            assert_eq!(sha256(&bytes), d.digest);
            assert_eq!(bytes.len() as u64, d.size);
            seen += 1;
            let parent = [
                media::OCI_INDEX,
                media::OCI_MANIFEST,
                media::DOCKER_MANIFEST,
            ];
            if parent.contains(&d.media_type.as_str()) {
                let v: Value = serde_json::from_slice(&bytes)?;
                assert_eq!(v["mediaType"], json!(d.media_type));
                let children = v["manifests"].as_array().cloned().unwrap_or_default();
                let layers = v["layers"].as_array().cloned().unwrap_or_default();
                for c in children
                    .iter()
                    .chain(&layers)
                    .chain(std::iter::once(&v["config"]))
                {
                    if c.is_null() {
                        continue;
                    }
                    pending.push(Descriptor {
                        media_type: c["mediaType"].as_str().unwrap_or_default().into(),
                        digest: c["digest"].as_str().unwrap_or_default().into(),
                        size: c["size"].as_u64().unwrap_or_default(),
                    });
                }
            }
        }
        assert!(
            seen >= 4 + 2 * 4,
            "roots, configs and layers walked: {seen}"
        );
        // The layer unpacks to a busybox with its applets.
        let zstd_manifest: Value = serde_json::from_slice(&fs::read(
            a.path()
                .join("blobs/sha256")
                .join(&layout.root(Tag::OciZstd).unwrap().digest[7..]),
        )?)?;
        let layer = zstd_manifest["layers"][0]["digest"].as_str().unwrap();
        let tar = zstd::decode_all(fs::File::open(
            a.path().join("blobs/sha256").join(&layer[7..]),
        )?)?;
        assert_eq!(sha256(&tar), layout.diff_id);
        let mut names = Vec::new();
        for entry in tar::Archive::new(tar.as_slice()).entries()? {
            names.push(entry?.path()?.to_string_lossy().into_owned());
        }
        assert!(names.contains(&"bin/busybox".to_string()));
        assert!(names.contains(&"bin/sh".to_string()));
        Ok(())
    }

    #[test]
    fn hand_made_parts_describe_themselves() -> Result<()> {
        let tar = files_tar(&[("hello", b"hi\n")])?;
        let layer = describe(media::OCI_LAYER_GZIP, &gzip_bytes(&tar)?);
        let config = describe(media::OCI_CONFIG, &config_json(&[&sha256(&tar)])?);
        let parsed: Value = serde_json::from_slice(&config_json(&[&sha256(&tar)])?)?;
        assert_eq!(parsed["rootfs"]["diff_ids"], json!([sha256(&tar)]));
        let manifest: Value =
            serde_json::from_slice(&oci_manifest_json(&config, std::slice::from_ref(&layer))?)?;
        assert_eq!(manifest["layers"][0]["digest"], json!(layer.digest));
        assert_eq!(manifest["config"]["size"], json!(config.size));
        let m = describe(media::OCI_MANIFEST, b"{}");
        let index: Value = serde_json::from_slice(&oci_index_json(std::slice::from_ref(&m))?)?;
        assert_eq!(index["manifests"][0]["digest"], json!(m.digest));
        assert_eq!(
            index["manifests"][0]["platform"]["architecture"],
            json!("amd64")
        );
        Ok(())
    }
}
