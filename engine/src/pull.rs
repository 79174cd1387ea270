//! Pulling an image as a containerd client does (containerd's `client.Pull` with unpack): the
//! engine resolves the reference at the registry, picks the host's manifest from an index,
//! writes every blob through containerd's content service (under a lease, with the
//! `containerd.io/gc.ref.*` labels that keep an image's tree together), unpacks the layers
//! through the snapshot and diff services while later ones still download, and records the
//! image. Nothing here is Keel-specific: it works the same against a real containerd.

pub mod content_writer;
pub mod manifest;
pub mod platform;
pub mod progress;
pub mod registry;
pub mod scope;
pub mod unpack;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use keel_proto::images::{CreateImageRequest, GetImageRequest, Image, UpdateImageRequest};
use keel_proto::types::Descriptor;
use oci_client::Reference;
use oci_spec::image::ImageManifest;
use tokio::sync::{oneshot, Semaphore};
use tonic::transport::Channel;
use tonic::Code;

use content_writer::{Blob, Written};
use manifest::Document;
use platform::Platform;
use progress::{LayerStatus, Progress, Reporter};
use registry::Registry;
use scope::Scope;
use unpack::{chain_id, Unpacker};

/// Why a pull failed, worded as Docker words it where Docker has words for it.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("invalid reference format: {0}")]
    Reference(String),
    #[error("manifest for {0} not found: manifest unknown: manifest unknown")]
    NotFound(String),
    #[error("pull access denied for {0}, repository does not exist or may require 'docker login'")]
    Denied(String),
    #[error("no matching manifest for {platform} in the manifest list entries")]
    NoMatchingPlatform { platform: String },
    #[error("{what}: unsupported media type {media_type}")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error("{what}: {message}")]
    BadManifest { what: String, message: String },
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("fetching {what}: {message}")]
    Fetch { what: String, message: String },
    #[error("{what}: {message}")]
    Verify { what: String, message: String },
    #[error("{what}: {}", status.message())]
    Containerd { what: String, status: tonic::Status },
}

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The snapshotter to unpack into.
    pub snapshotter: String,
    pub platform: Platform,
    /// Layers downloaded at once (Docker's default is 3).
    pub max_downloads: usize,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            snapshotter: "overlayfs".into(),
            platform: Platform::host(),
            max_downloads: 3,
        }
    }
}

/// What a pull recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The image's full name (`docker.io/library/busybox:latest`).
    pub name: String,
    /// What the name points at: the index or the manifest.
    pub target: Blob,
    /// The config of the host's manifest.
    pub config: Blob,
    /// The snapshot of the top layer.
    pub chain_id: String,
    /// Whether the name points somewhere new.
    pub updated: bool,
}

/// Pulls `reference` into `namespace` of the containerd behind `channel`, unpacked.
pub async fn pull(
    channel: Channel,
    namespace: &str,
    reference: &str,
    options: &PullOptions,
    progress: &Reporter,
) -> Result<Pulled, PullError> {
    let parsed = parse_reference(reference)?;
    let scope = Scope::new(channel, namespace);
    let lease = scope
        .create_lease()
        .await
        .map_err(|status| PullError::Containerd {
            what: "creating the pull's lease".into(),
            status,
        })?;
    let job = Job {
        registry: Registry::for_reference(&parsed),
        reference: parsed,
        scope: scope.under(&lease),
        options: options.clone(),
        progress: progress.clone(),
    };
    let result = job.run().await;
    if let Err(e) = scope.delete_lease(&lease).await {
        tracing::warn!(lease, "ending the pull's lease: {}", e.message());
    }
    result
}

/// One pull in progress.
struct Job {
    reference: Reference,
    registry: Registry,
    scope: Scope,
    options: PullOptions,
    progress: Reporter,
}

/// The host's manifest, found.
struct Resolved {
    /// The index, if the reference named one: its bytes and descriptor.
    index: Option<(Bytes, Blob)>,
    manifest: Box<ImageManifest>,
    manifest_bytes: Bytes,
    manifest_blob: Blob,
}

impl Job {
    async fn run(&self) -> Result<Pulled, PullError> {
        let name = self.reference.whole();
        self.progress
            .send(Progress::Resolving { name: name.clone() });
        let resolved = self.resolve().await?;
        let layers = self.layers(&resolved.manifest)?;
        let config_blob = blob(resolved.manifest.config());
        let config_bytes = self.fetch_small(&config_blob).await?;
        let config = manifest::config(&config_bytes, &format!("config {}", config_blob.digest))?;
        let diff_ids: Vec<String> = config.rootfs().diff_ids().clone();
        if diff_ids.len() != layers.len() {
            return Err(PullError::BadManifest {
                what: format!("config {}", config_blob.digest),
                message: format!(
                    "number of layers and diffIDs don't match: {} != {}",
                    layers.len(),
                    diff_ids.len()
                ),
            });
        }
        self.store_bytes(&config_blob, "config", config_bytes, HashMap::new())
            .await?;
        let chain = self.fetch_and_unpack(&layers, &diff_ids).await?;
        let snapshot_ref = format!("containerd.io/gc.ref.snapshot.{}", self.options.snapshotter);
        unpack::set_label(&self.scope, &config_blob.digest, &snapshot_ref, &chain).await?;
        self.store_tree(&resolved, &config_blob, &layers).await?;
        let target = resolved
            .index
            .as_ref()
            .map_or(&resolved.manifest_blob, |(_, b)| b)
            .clone();
        let updated = self.record(&name, &target).await?;
        self.progress.send(Progress::Digest(target.digest.clone()));
        self.progress.send(Progress::Done {
            name: name.clone(),
            updated,
        });
        Ok(Pulled {
            name,
            target,
            config: config_blob,
            chain_id: chain,
            updated,
        })
    }

    /// The host's manifest: the reference's document, or the host's entry of its index.
    async fn resolve(&self) -> Result<Resolved, PullError> {
        let (bytes, digest) = self.registry.manifest(&self.reference).await?;
        let what = format!("manifest of {}", self.reference.whole());
        let (document, media_type) = manifest::parse(&bytes, &what)?;
        let top = Blob {
            media_type,
            digest,
            size: bytes.len() as u64,
        };
        match document {
            Document::Manifest(manifest) => Ok(Resolved {
                index: None,
                manifest,
                manifest_bytes: bytes,
                manifest_blob: top,
            }),
            Document::Index(index) => {
                let entry = blob(platform::select(&index, &self.options.platform)?);
                let by_digest = self.reference.clone_with_digest(entry.digest.clone());
                let (child, _) = self.registry.manifest(&by_digest).await?;
                let what = format!("manifest {}", entry.digest);
                match manifest::parse(&child, &what)? {
                    (Document::Manifest(manifest), _) => Ok(Resolved {
                        index: Some((bytes, top)),
                        manifest,
                        manifest_bytes: child,
                        manifest_blob: entry,
                    }),
                    (Document::Index(_), _) => Err(PullError::BadManifest {
                        what,
                        message: "an index inside an index is not supported".into(),
                    }),
                }
            }
        }
    }

    /// The manifest's layers, each of a media type we can unpack.
    fn layers(&self, manifest: &ImageManifest) -> Result<Vec<Blob>, PullError> {
        manifest
            .layers()
            .iter()
            .map(|layer| manifest::check_layer(layer).map(|()| blob(layer)))
            .collect()
    }

    /// Fetches every layer (up to `max_downloads` at once) and unpacks each in order as soon
    /// as it is stored; returns the top layer's chain id.
    async fn fetch_and_unpack(
        &self,
        layers: &[Blob],
        diff_ids: &[String],
    ) -> Result<String, PullError> {
        let fetched = self.start_fetches(layers);
        let unpacker = Unpacker {
            scope: &self.scope,
            snapshotter: &self.options.snapshotter,
        };
        let mut parent: Option<String> = None;
        for ((layer, diff_id), done) in layers.iter().zip(diff_ids).zip(fetched) {
            let chain = chain_id(parent.as_deref(), diff_id);
            let written = done.await.unwrap_or_else(|_| {
                Err(PullError::Fetch {
                    what: layer.digest.clone(),
                    message: "the download stopped".into(),
                })
            })?;
            if written == Written::Existed && unpacker.exists(&chain).await? {
                self.progress
                    .layer(&layer.digest, LayerStatus::AlreadyExists);
            } else {
                self.progress.layer(&layer.digest, LayerStatus::Extracting);
                unpacker
                    .apply(layer, parent.as_deref(), &chain, diff_id)
                    .await?;
                self.progress
                    .layer(&layer.digest, LayerStatus::PullComplete);
            }
            parent = Some(chain);
        }
        parent.ok_or_else(|| PullError::BadManifest {
            what: format!("manifest of {}", self.reference.whole()),
            message: "no layers".into(),
        })
    }

    /// Starts a download per layer; each answers once its blob is stored.
    fn start_fetches(&self, layers: &[Blob]) -> Vec<oneshot::Receiver<Result<Written, PullError>>> {
        let limit = Arc::new(Semaphore::new(self.options.max_downloads.max(1)));
        layers
            .iter()
            .map(|layer| {
                let (tx, rx) = oneshot::channel();
                let (layer, limit) = (layer.clone(), limit.clone());
                let (scope, registry) = (self.scope.clone(), self.registry.clone());
                let (reference, progress) = (self.reference.clone(), self.progress.clone());
                let labels = self.source_labels();
                progress.layer(&layer.digest, LayerStatus::PullingFsLayer);
                tokio::spawn(async move {
                    let _permit = limit.acquire_owned().await;
                    let report = |current| {
                        let total = layer.size;
                        progress.layer(&layer.digest, LayerStatus::Downloading { current, total });
                    };
                    let open = || registry.blob(&reference, &layer.digest);
                    let reference_key = format!("layer-{}", layer.digest);
                    let written =
                        content_writer::write(&scope, &layer, &reference_key, labels, open, report)
                            .await;
                    if written.is_ok() {
                        progress.layer(&layer.digest, LayerStatus::DownloadComplete);
                    }
                    let _ = tx.send(written);
                });
                rx
            })
            .collect()
    }

    /// A small blob (a config), whole, checked against its digest by the content store when
    /// it is written.
    async fn fetch_small(&self, blob: &Blob) -> Result<Bytes, PullError> {
        let mut stream = self.registry.blob(&self.reference, &blob.digest).await?;
        let mut bytes = Vec::with_capacity(usize::try_from(blob.size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| PullError::Fetch {
                what: blob.digest.clone(),
                message: e.to_string(),
            })?;
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes.into())
    }

    /// Writes bytes already in hand as `blob`.
    async fn store_bytes(
        &self,
        blob: &Blob,
        kind: &str,
        bytes: Bytes,
        mut labels: HashMap<String, String>,
    ) -> Result<Written, PullError> {
        labels.extend(self.source_labels());
        let open = || async move {
            let stream = futures_util::stream::once(async move { Ok(bytes) });
            Ok(stream.boxed())
        };
        let reference = format!("{kind}-{}", blob.digest);
        content_writer::write(&self.scope, blob, &reference, labels, open, |_| {}).await
    }

    /// Writes the manifest (and index) with the labels that keep their children.
    async fn store_tree(
        &self,
        resolved: &Resolved,
        config: &Blob,
        layers: &[Blob],
    ) -> Result<(), PullError> {
        let mut labels: HashMap<String, String> = [(
            "containerd.io/gc.ref.content.config".to_string(),
            config.digest.clone(),
        )]
        .into();
        for (i, layer) in layers.iter().enumerate() {
            labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                layer.digest.clone(),
            );
        }
        let manifest = &resolved.manifest_blob;
        self.store_bytes(
            manifest,
            "manifest",
            resolved.manifest_bytes.clone(),
            labels,
        )
        .await?;
        if let Some((bytes, index)) = &resolved.index {
            let labels = [(
                "containerd.io/gc.ref.content.m.0".to_string(),
                manifest.digest.clone(),
            )]
            .into();
            self.store_bytes(index, "index", bytes.clone(), labels)
                .await?;
        }
        Ok(())
    }

    /// Points the image name at `target`; whether it pointed elsewhere (or nowhere) before.
    async fn record(&self, name: &str, target: &Blob) -> Result<bool, PullError> {
        let scope = &self.scope;
        let image = Image {
            name: name.to_string(),
            target: Some(Descriptor {
                media_type: target.media_type.clone(),
                digest: target.digest.clone(),
                size: i64::try_from(target.size).unwrap_or(i64::MAX),
                annotations: HashMap::new(),
            }),
            ..Default::default()
        };
        let failed = |status| PullError::Containerd {
            what: format!("recording image {name}"),
            status,
        };
        let get = GetImageRequest { name: name.into() };
        let before = match scope.images().get(scope.request(get)).await {
            Ok(r) => r.into_inner().image,
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => return Err(failed(s)),
        };
        let before_digest = before.and_then(|i| i.target).map(|t| t.digest);
        if before_digest.as_deref() == Some(target.digest.as_str()) {
            return Ok(false);
        }
        let request = CreateImageRequest {
            image: Some(image.clone()),
        };
        match scope.images().create(scope.request(request)).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::AlreadyExists => {
                let update = UpdateImageRequest {
                    image: Some(image),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".into()],
                    }),
                };
                scope
                    .images()
                    .update(scope.request(update))
                    .await
                    .map(|_| true)
                    .map_err(failed)
            }
            Err(s) => Err(failed(s)),
        }
    }

    /// containerd's `containerd.io/distribution.source.<registry>=<repository>` label.
    fn source_labels(&self) -> HashMap<String, String> {
        [(
            format!(
                "containerd.io/distribution.source.{}",
                self.reference.registry()
            ),
            self.reference.repository().to_string(),
        )]
        .into()
    }
}

/// A Docker image reference (`busybox`, `localhost:5000/a/b:tag`, `name@sha256:...`); the
/// repository must be lowercase, as Docker requires.
pub fn parse_reference(reference: &str) -> Result<Reference, PullError> {
    let parsed: Reference = reference
        .parse()
        .map_err(|e| PullError::Reference(format!("{reference}: {e}")))?;
    if parsed.repository().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(PullError::Reference(format!(
            "repository name ({}) must be lowercase",
            parsed.repository()
        )));
    }
    Ok(parsed)
}

/// A descriptor's media type, digest and size.
fn blob(descriptor: &oci_spec::image::Descriptor) -> Blob {
    Blob {
        media_type: descriptor.media_type().to_string(),
        digest: descriptor.digest().to_string(),
        size: descriptor.size(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalised_as_docker_does() {
        let r = parse_reference("busybox").unwrap();
        assert_eq!(r.whole(), "docker.io/library/busybox:latest");
        let r = parse_reference("localhost:5000/a/b:v1").unwrap();
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("localhost:5000", "a/b", Some("v1"))
        );
        for bad in ["UPPER/case", "a b", ":tag", ""] {
            let e = parse_reference(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("invalid reference format"),
                "{bad}: {e}"
            );
        }
    }
}
