//! Images as the Docker API shows them, read from containerd: an image record (name → root
//! descriptor) is resolved through the content store, an index to the host platform's
//! manifest, the manifest to its config; the config's digest is the image ID (as dockerd's
//! classic store has it), and records sharing it are one image with several tags. Lookup by
//! name, by full ID or by a unique ID prefix follows dockerd's `GetImage`.

use keel_proto::images::Image as Record;
use keel_proto::types::Descriptor;
use serde::Deserialize;
use tracing::warn;

use crate::containerd::{Containerd, ContainerdError};
use crate::handlers::system::go_arch;
use crate::reference::{Reference, ReferenceError};

/// The largest manifest, index or config the engine reads.
const MAX_METADATA_BLOB: usize = 4 * 1024 * 1024;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// An image that cannot be listed, found or changed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image by that name or ID (dockerd's wording).
    #[error("No such image: {0}")]
    NotFound(String),
    /// A reference that does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// An ID prefix that matches more than one image.
    #[error("multiple IDs found with provided prefix: {0}")]
    Ambiguous(String),
    /// The supervisor failed.
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    /// The content is not an image for this host.
    #[error("image {name}: {why}")]
    Unusable { name: String, why: String },
}

/// The result of an image operation.
pub type Result<T> = std::result::Result<T, ImageError>;

/// `{"mediaType","digest","size","platform"}` in an index or manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlobRef {
    digest: String,
    #[serde(default)]
    size: i64,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Debug, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<BlobRef>,
}

#[derive(Debug, Deserialize)]
struct Manifest {
    config: BlobRef,
    #[serde(default)]
    layers: Vec<BlobRef>,
}

/// The parts of an image config (OCI / Docker) the API shows.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfigFile {
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created: Option<String>,
    /// The author field.
    #[serde(default)]
    pub author: Option<String>,
    /// e.g. `amd64`.
    #[serde(default)]
    pub architecture: String,
    /// e.g. `linux`.
    #[serde(default)]
    pub os: String,
    /// The container defaults (Env, Cmd, Entrypoint, Labels, ...), in the API's own field names.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// The layers' diff IDs.
    #[serde(default)]
    pub rootfs: RootFs,
    /// How the image was built, oldest step first.
    #[serde(default)]
    pub history: Vec<HistoryStep>,
}

/// One step of an image config's `history`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HistoryStep {
    /// RFC 3339.
    #[serde(default)]
    pub created: Option<String>,
    /// The command that made the step.
    #[serde(default)]
    pub created_by: Option<String>,
    /// A free-form comment.
    #[serde(default)]
    pub comment: Option<String>,
    /// Whether the step made no layer (ENV, CMD, ...).
    #[serde(default)]
    pub empty_layer: bool,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    /// The uncompressed layers' digests, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One image record resolved through the content store.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The record's (normalized) name.
    pub name: String,
    /// The record's root descriptor (manifest or index).
    pub target: Descriptor,
    /// The image ID: the config's digest.
    pub id: String,
    /// The config.
    pub config: ImageConfigFile,
    /// The manifest's, config's and layers' sizes together (what the registry holds).
    pub size: i64,
    /// Each layer's (compressed) size, bottom first.
    pub layer_sizes: Vec<i64>,
    /// When the record was last changed (tagged), RFC 3339.
    pub updated_at: Option<String>,
}

impl ResolvedImage {
    /// `busybox:latest` for the record's name, when it is a tag (not a digest-only name).
    pub fn repo_tag(&self) -> Option<String> {
        let reference = Reference::parse(&self.name).ok()?;
        reference.tag.is_some().then(|| reference.familiar())
    }

    /// `busybox@sha256:<root digest>`.
    pub fn repo_digest(&self) -> Option<String> {
        let reference = Reference::parse(&self.name).ok()?;
        Some(format!(
            "{}@{}",
            reference.familiar_repository(),
            self.target.digest
        ))
    }
}

/// What a name or ID given to the API designates.
#[derive(Debug, Clone)]
pub enum Found {
    /// One tag (record) of an image.
    Tag(Box<ResolvedImage>),
    /// An image by ID: all its records (at least one).
    Id(Vec<ResolvedImage>),
}

impl Found {
    /// Any one record of the image (they share the config).
    pub fn image(&self) -> Option<&ResolvedImage> {
        match self {
            Found::Tag(image) => Some(image),
            Found::Id(images) => images.first(),
        }
    }
}

/// Image operations over the supervisor.
#[derive(Debug)]
pub struct Images<'a> {
    containerd: &'a Containerd,
}

impl<'a> Images<'a> {
    /// Images of the engine's namespace on `containerd`.
    pub fn new(containerd: &'a Containerd) -> Self {
        Self { containerd }
    }

    /// Every record that resolves for this host (the others are logged and skipped, as a
    /// half-pulled image is not listed by dockerd either).
    pub async fn list(&self) -> Result<Vec<ResolvedImage>> {
        let mut resolved = Vec::new();
        for record in self.containerd.images().await? {
            match self.resolve(&record).await {
                Ok(image) => resolved.push(image),
                Err(e) => warn!(image = %record.name, error = %e, "skipping an image"),
            }
        }
        Ok(resolved)
    }

    /// What `name_or_id` designates: the record tagged so, else every record of the one
    /// image whose ID (or unique ID prefix) it is.
    pub async fn find(&self, name_or_id: &str) -> Result<Found> {
        if let Some(image) = self.by_name(name_or_id).await? {
            return Ok(Found::Tag(Box::new(image)));
        }
        let all = self.list().await?;
        if let Some(id) = full_id(name_or_id, &all)? {
            return Ok(Found::Id(all.into_iter().filter(|i| i.id == id).collect()));
        }
        Err(ImageError::NotFound(not_found_name(name_or_id)))
    }

    /// The record tagged `text`, if `text` is a reference and such a record exists.
    async fn by_name(&self, text: &str) -> Result<Option<ResolvedImage>> {
        let Ok(reference) = Reference::parse(text) else {
            return Ok(None);
        };
        let name = reference.with_default_tag().to_string();
        match self.containerd.image(&name).await {
            Ok(record) => Ok(Some(self.resolve(&record).await?)),
            Err(ContainerdError::Call { status, .. }) if status.code() == tonic::Code::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Follows `record`'s target to its config.
    pub async fn resolve(&self, record: &Record) -> Result<ResolvedImage> {
        let unusable = |why: String| ImageError::Unusable {
            name: record.name.clone(),
            why,
        };
        let target = record
            .target
            .clone()
            .ok_or_else(|| unusable("the record has no target".into()))?;
        let (manifest_bytes, manifest_size) = self.platform_manifest(&target, &record.name).await?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| unusable(format!("malformed manifest: {e}")))?;
        let config_bytes = self
            .containerd
            .read_blob(&manifest.config.digest, MAX_METADATA_BLOB)
            .await?;
        let config: ImageConfigFile = serde_json::from_slice(&config_bytes)
            .map_err(|e| unusable(format!("malformed config: {e}")))?;
        let layers: i64 = manifest.layers.iter().map(|l| l.size.max(0)).sum();
        Ok(ResolvedImage {
            name: record.name.clone(),
            target,
            id: manifest.config.digest.clone(),
            config,
            size: manifest_size + manifest.config.size.max(0) + layers,
            layer_sizes: manifest.layers.iter().map(|l| l.size.max(0)).collect(),
            updated_at: record.updated_at.as_ref().map(timestamp),
        })
    }

    /// The manifest for this host: `target` itself, or its index's entry for linux/<arch>.
    async fn platform_manifest(&self, target: &Descriptor, name: &str) -> Result<(Vec<u8>, i64)> {
        let bytes = self
            .containerd
            .read_blob(&target.digest, MAX_METADATA_BLOB)
            .await?;
        if !INDEX_TYPES.contains(&target.media_type.as_str()) {
            return Ok((bytes, target.size));
        }
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| ImageError::Unusable {
            name: name.to_string(),
            why: format!("malformed index: {e}"),
        })?;
        let arch = go_arch(std::env::consts::ARCH);
        let entry = index
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            })
            .ok_or_else(|| ImageError::Unusable {
                name: name.to_string(),
                why: format!("no matching manifest for linux/{arch} in the manifest list entries"),
            })?;
        let manifest = self
            .containerd
            .read_blob(&entry.digest, MAX_METADATA_BLOB)
            .await?;
        Ok((manifest, entry.size))
    }
}

/// The full ID `text` designates among `images`: `sha256:<hex>`, `<hex>` or a unique prefix.
fn full_id(text: &str, images: &[ResolvedImage]) -> Result<Option<String>> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let mut ids: Vec<&String> = images
        .iter()
        .map(|i| &i.id)
        .filter(|id| {
            id.strip_prefix("sha256:")
                .is_some_and(|h| h.starts_with(hex))
        })
        .collect();
    ids.sort();
    ids.dedup();
    match ids.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        _ => Err(ImageError::Ambiguous(text.to_string())),
    }
}

/// dockerd names a missing image by its familiar reference with the tag filled in.
fn not_found_name(text: &str) -> String {
    match Reference::parse(text) {
        Ok(reference) => reference.with_default_tag().familiar(),
        Err(_) => text.to_string(),
    }
}

/// A protobuf timestamp as RFC 3339.
fn timestamp(ts: &keel_proto::prost_types::Timestamp) -> String {
    let secs = u64::try_from(ts.seconds).unwrap_or(0);
    let nanos = u32::try_from(ts.nanos).unwrap_or(0);
    let time = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
    humantime::format_rfc3339_nanos(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id_hex: &str, name: &str) -> ResolvedImage {
        ResolvedImage {
            name: name.to_string(),
            target: Descriptor {
                digest: format!("sha256:{}", "f".repeat(64)),
                ..Default::default()
            },
            id: format!("sha256:{id_hex}"),
            config: ImageConfigFile::default(),
            size: 0,
            layer_sizes: Vec::new(),
            updated_at: None,
        }
    }

    #[test]
    fn ids_match_in_full_and_by_unique_prefix() {
        let a = "ab".repeat(32);
        let b = "ac".repeat(32);
        let images = [image(&a, "x"), image(&b, "y"), image(&a, "z")];
        assert_eq!(
            full_id(&format!("sha256:{a}"), &images).unwrap(),
            Some(format!("sha256:{a}"))
        );
        assert_eq!(
            full_id("abab", &images).unwrap(),
            Some(format!("sha256:{a}"))
        );
        assert!(matches!(
            full_id("a", &images),
            Err(ImageError::Ambiguous(_))
        ));
        assert_eq!(full_id("ff", &images).unwrap(), None);
        assert_eq!(full_id("busybox", &images).unwrap(), None);
        assert_eq!(full_id("", &images).unwrap(), None);
    }

    #[test]
    fn missing_images_are_named_as_dockerd_names_them() {
        assert_eq!(not_found_name("busybox"), "busybox:latest");
        assert_eq!(not_found_name("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(not_found_name("abc123"), "abc123:latest");
        assert_eq!(not_found_name("Bad Name"), "Bad Name");
    }

    #[test]
    fn tags_and_digests_are_familiar() {
        let i = image(&"a".repeat(64), "docker.io/library/busybox:latest");
        assert_eq!(i.repo_tag().as_deref(), Some("busybox:latest"));
        assert_eq!(
            i.repo_digest(),
            Some(format!("busybox@sha256:{}", "f".repeat(64)))
        );
        let pinned = image(
            &"a".repeat(64),
            &format!("127.0.0.1:5000/b@sha256:{}", "f".repeat(64)),
        );
        assert_eq!(pinned.repo_tag(), None);
    }

    #[test]
    fn configs_parse_with_missing_fields() {
        let c: ImageConfigFile = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:1"]}}"#,
        )
        .unwrap();
        assert_eq!(c.rootfs.diff_ids, ["sha256:1"]);
        assert!(c.created.is_none());
        let empty: ImageConfigFile = serde_json::from_str("{}").unwrap();
        assert!(empty.config.is_none());
    }
}
