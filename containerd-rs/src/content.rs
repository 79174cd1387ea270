//! Content: blobs addressed by digest (containerd's content store), seen per namespace.
//!
//! The blob files ([`store`]) are shared by all namespaces, as containerd's `content/local` store
//! under `metadata/content.go` is; what a namespace sees is its own records in the metadata
//! store (see [`crate::metadata`]): kind [`KIND`], id = the digest (`sha256:<hex>`), value = a
//! prost-encoded `containerd.services.content.v1.Info` (digest, size, created_at, updated_at,
//! labels). A blob committed in one namespace and written again in another is only recorded
//! there (containerd's "shared" policy: the bytes are not sent twice when the digest is known).
//!
//! Ingests (writes in progress, [`writer`]) are per namespace: the store's ingest ref is
//! `<namespace>/<ref>` (a namespace never holds a `/`), and one writer at a time holds a ref.
//!
//! Deleting content removes the namespace's record only: the blob file stays until the garbage
//! collector (which reads [`Content::records`] of every namespace and calls
//! [`Content::remove_blob`]) finds no namespace that still records it.

pub mod store;
pub mod writer;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use keel_proto::content::Info;
use keel_proto::events::ContentDelete;
use keel_proto::leases::Resource;
use keel_proto::prost::Message;

use crate::filters::{Fields, Filter};
use crate::leases::{self, LeaseError};
use crate::metadata::{Labels, MetadataError, Store as Metadata};
use crate::supervisor::Supervisor;

pub use store::{ContentDigest, ContentError, IngestStatus, Result, Store};
pub use writer::Writer;

/// The metadata kind of content records.
pub const KIND: &str = "content";

/// containerd's limit on a label's key and value together.
const MAX_LABEL_SIZE: usize = 4096;

/// The namespaced content store: the shared blob files plus each namespace's records.
#[derive(Debug, Clone)]
pub struct Content {
    store: Store,
    /// Ingest refs held by a live writer, and since when (containerd's ref locks).
    locks: Arc<Mutex<HashMap<String, SystemTime>>>,
    /// Blobs an open writer will record without writing them (shared from another
    /// namespace), with how many writers: the collector keeps them meanwhile.
    pins: Pins,
}

type Pins = Arc<Mutex<HashMap<String, usize>>>;

/// Keeps a blob from the collector until dropped.
#[derive(Debug)]
pub(crate) struct Pin {
    pins: Pins,
    digest: String,
}

impl Drop for Pin {
    fn drop(&mut self) {
        if let Ok(mut pins) = self.pins.lock() {
            if let Some(count) = pins.get_mut(&self.digest) {
                *count -= 1;
                if *count == 0 {
                    pins.remove(&self.digest);
                }
            }
        }
    }
}

impl Content {
    /// Opens (creating if needed) the store in `dir`, `<root>/io.containerd.content.v1.content`
    /// in containerd's layout.
    pub fn open(dir: &Path) -> Result<Content> {
        Ok(Content {
            store: Store::open(dir)?,
            locks: Arc::default(),
            pins: Arc::default(),
        })
    }

    /// Keeps the blob of `digest` from the collector while the pin lives.
    pub(crate) fn pin(&self, digest: &ContentDigest) -> Pin {
        let digest = digest.as_str().to_string();
        if let Ok(mut pins) = self.pins.lock() {
            *pins.entry(digest.clone()).or_default() += 1;
        }
        Pin {
            pins: self.pins.clone(),
            digest,
        }
    }

    /// The blobs open writers are about to record (the collector must keep them).
    pub fn in_use(&self) -> std::collections::HashSet<String> {
        self.pins
            .lock()
            .map(|pins| pins.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether a client is writing ingest `reference` of `namespace` right now.
    pub fn is_writing(&self, namespace: &str, reference: &str) -> bool {
        self.locks
            .lock()
            .map(|held| held.contains_key(&ingest_key(namespace, reference)))
            .unwrap_or(true)
    }

    /// The digests of every blob file, recorded or not (for the collector).
    pub fn blobs(&self) -> Result<Vec<String>> {
        Ok(self
            .store
            .blobs()?
            .into_iter()
            .map(|d| d.as_str().to_string())
            .collect())
    }

    /// The record of `digest` in `namespace`.
    pub fn info(&self, meta: &Metadata, namespace: &str, digest: &str) -> Result<Info> {
        let digest = ContentDigest::parse(digest)?;
        let record = meta
            .get(namespace, KIND, digest.as_str())
            .map_err(|e| named(e, &digest))?;
        decode(&digest, &record)
    }

    /// Changes the labels of a record (`paths`: `labels` or `labels.<key>`; none: all labels),
    /// as containerd's Update does; other fields are immutable.
    pub fn update(
        &self,
        meta: &Metadata,
        namespace: &str,
        info: Info,
        paths: &[String],
    ) -> Result<Info> {
        let digest = ContentDigest::parse(&info.digest)?;
        let mut updated = None;
        let mut failure = None;
        meta.update(
            namespace,
            KIND,
            digest.as_str(),
            |bytes| match apply_update(&digest, &bytes, &info, paths) {
                Ok(new) => {
                    let encoded = new.encode_to_vec();
                    updated = Some(new);
                    Ok(encoded)
                }
                Err(e) => {
                    let message = e.to_string();
                    failure = Some(e);
                    Err(MetadataError::InvalidArgument(message))
                }
            },
        )
        .map_err(|e| failure.take().unwrap_or_else(|| named(e, &digest)))?;
        updated.ok_or_else(|| ContentError::Storage("update recorded nothing".into()))
    }

    /// The records of `namespace` that pass any of `filters` (all if none): fields `digest`
    /// and `labels.<key>`.
    pub fn list(&self, meta: &Metadata, namespace: &str, filters: &[String]) -> Result<Vec<Info>> {
        let filter = Filter::parse_all(filters)
            .map_err(|e| ContentError::InvalidArgument(format!("{e}: invalid argument")))?;
        Ok(self
            .records(meta, namespace)?
            .into_iter()
            .map(|(_, info)| info)
            .filter(|info| filter.matches(&InfoFields(info)))
            .collect())
    }

    /// Every record of `namespace`, by digest (for the garbage collector and `list`).
    pub fn records(&self, meta: &Metadata, namespace: &str) -> Result<Vec<(String, Info)>> {
        let records = meta.list(namespace, KIND).map_err(storage)?;
        records
            .into_iter()
            .map(|(id, bytes)| {
                let info = Info::decode(bytes.as_slice()).map_err(|e| {
                    ContentError::Storage(format!("content {id}: record does not decode: {e}"))
                })?;
                Ok((id, info))
            })
            .collect()
    }

    /// Forgets `digest` in `namespace`; the blob file is left for the garbage collector.
    pub fn delete_record(&self, meta: &Metadata, namespace: &str, digest: &str) -> Result<()> {
        let digest = ContentDigest::parse(digest)?;
        meta.delete(namespace, KIND, digest.as_str())
            .map_err(|e| named(e, &digest))
    }

    /// Removes the blob file of `digest` (for the garbage collector, once no namespace records
    /// it).
    pub fn remove_blob(&self, digest: &str) -> Result<()> {
        self.store.delete(&ContentDigest::parse(digest)?)
    }

    /// The blob of `digest`, open for reading; NotFound unless `namespace` records it.
    pub fn blob_file(&self, meta: &Metadata, namespace: &str, digest: &str) -> Result<File> {
        let info = self.info(meta, namespace, digest)?;
        let digest = ContentDigest::parse(&info.digest)?;
        File::open(self.store.blob_path(&digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContentError::NotFound(format!(
                "blob {} expected at {}: not found",
                digest.as_str(),
                self.store.blob_path(&digest).display()
            )),
            _ => ContentError::Io {
                what: format!("opening {}", digest.as_str()),
                source: e,
            },
        })
    }

    /// Hashes a finished file (on the store's filesystem, e.g. a temp file in `dir`), moves it
    /// in as a blob and records it in `namespace` (with `labels`, under `lease` if given):
    /// how the diff service stores the layers it makes. Content the namespace already has is
    /// kept as it is. Returns the digest and size.
    pub fn store_file(
        &self,
        meta: &Metadata,
        namespace: &str,
        file: &Path,
        labels: Labels,
        lease: Option<&str>,
    ) -> Result<(String, u64)> {
        validate_labels(&labels)?;
        if let Some(lease) = lease {
            // An unknown lease fails the call before anything is stored.
            leases::list_resources(meta, namespace, lease).map_err(lease_error)?;
        }
        let (digest, size) = self.store.adopt(file)?;
        match self.record(meta, namespace, &digest, size, labels) {
            Ok(()) | Err(ContentError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
        if let Some(lease) = lease {
            add_to_lease(meta, namespace, lease, "content", digest.as_str())?;
        }
        Ok((digest.as_str().to_string(), size))
    }

    /// Where ingest `reference` of `namespace` stands.
    pub fn status(&self, namespace: &str, reference: &str) -> Result<IngestStatus> {
        let mut status = self
            .store
            .status(&ingest_key(namespace, reference))
            .map_err(|e| ingest_named(e, reference))?;
        status.reference = reference.to_string();
        Ok(status)
    }

    /// The ingests of `namespace` whose `ref` passes any of `filters` (all if none).
    pub fn list_statuses(&self, namespace: &str, filters: &[String]) -> Result<Vec<IngestStatus>> {
        let filter = Filter::parse_all(filters)
            .map_err(|e| ContentError::InvalidArgument(format!("{e}: invalid argument")))?;
        let prefix = ingest_key(namespace, "");
        let mut out: Vec<IngestStatus> = self
            .store
            .ingests()?
            .into_iter()
            .filter_map(|mut status| {
                status.reference = status.reference.strip_prefix(&prefix)?.to_string();
                Some(status)
            })
            .filter(|status| filter.matches(&StatusFields(status)))
            .collect();
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Whether ingest `reference` of `namespace` was begun under no lease (the collector keeps
    /// it for a day by itself; a leased one only as long as its lease).
    pub fn is_unleased(&self, namespace: &str, reference: &str) -> bool {
        self.store.is_unleased(&ingest_key(namespace, reference))
    }

    /// Drops ingest `reference` of `namespace`.
    pub fn abort(&self, namespace: &str, reference: &str) -> Result<()> {
        self.store
            .abort(&ingest_key(namespace, reference))
            .map_err(|e| ingest_named(e, reference))
    }

    /// Records a committed blob in `namespace`.
    fn record(
        &self,
        meta: &Metadata,
        namespace: &str,
        digest: &ContentDigest,
        size: u64,
        labels: Labels,
    ) -> Result<()> {
        let now = prost_types::Timestamp::from(SystemTime::now());
        let info = Info {
            digest: digest.as_str().to_string(),
            size: i64::try_from(size).unwrap_or(i64::MAX),
            created_at: Some(now),
            updated_at: Some(now),
            labels: labels.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        };
        meta.create(namespace, KIND, digest.as_str(), &info.encode_to_vec())
            .map_err(|e| named(e, digest))
    }
}

/// Deletes the record of `digest` in `namespace` and publishes `/content/delete`. The blob
/// file stays for the garbage collector, which runs soon: another namespace may still record
/// it.
pub fn delete(supervisor: &Supervisor, namespace: &str, digest: &str) -> Result<()> {
    {
        let _hold = supervisor.gc.hold();
        supervisor
            .content
            .delete_record(&supervisor.store, namespace, digest)?;
    }
    supervisor.gc.deleted();
    supervisor.publish(
        namespace,
        keel_proto::topics::CONTENT_DELETE,
        &ContentDelete {
            digest: digest.to_string(),
        },
    );
    Ok(())
}

/// The store's ingest ref for `reference` of `namespace`.
fn ingest_key(namespace: &str, reference: &str) -> String {
    format!("{namespace}/{reference}")
}

fn apply_update(
    digest: &ContentDigest,
    bytes: &[u8],
    info: &Info,
    paths: &[String],
) -> Result<Info> {
    let mut updated = decode(digest, bytes)?;
    if paths.is_empty() {
        updated.labels = info.labels.clone();
    }
    for path in paths {
        if let Some(key) = path.strip_prefix("labels.") {
            match info.labels.get(key) {
                Some(value) => updated.labels.insert(key.to_string(), value.clone()),
                None => updated.labels.remove(key),
            };
        } else if path == "labels" {
            updated.labels = info.labels.clone();
        } else {
            return Err(ContentError::InvalidArgument(format!(
                "cannot update {path:?} field on content info {:?}: invalid argument",
                digest.as_str()
            )));
        }
    }
    updated.labels.retain(|_, v| !v.is_empty());
    validate_labels(&updated.labels.clone().into_iter().collect::<Labels>())?;
    updated.updated_at = Some(prost_types::Timestamp::from(SystemTime::now()));
    Ok(updated)
}

/// containerd's label limit: key and value together at most 4096 bytes.
pub(crate) fn validate_labels(labels: &Labels) -> Result<()> {
    for (key, value) in labels {
        if key.len() + value.len() > MAX_LABEL_SIZE {
            return Err(ContentError::InvalidArgument(format!(
                "label key and value greater than maximum size ({MAX_LABEL_SIZE} bytes), key: {}: invalid argument",
                key.chars().take(10).collect::<String>()
            )));
        }
    }
    Ok(())
}

/// Adds a resource to a lease (an unknown lease is NotFound, as in containerd).
pub(crate) fn add_to_lease(
    meta: &Metadata,
    namespace: &str,
    lease: &str,
    kind: &str,
    id: &str,
) -> Result<()> {
    let resource = Resource {
        id: id.to_string(),
        r#type: kind.to_string(),
    };
    leases::add_resource(meta, namespace, lease, &resource).map_err(lease_error)
}

fn lease_error(e: LeaseError) -> ContentError {
    match e {
        LeaseError::Metadata(e) => storage(e),
        other => ContentError::InvalidArgument(other.to_string()),
    }
}

fn decode(digest: &ContentDigest, bytes: &[u8]) -> Result<Info> {
    Info::decode(bytes).map_err(|e| {
        ContentError::Storage(format!(
            "content {}: record does not decode: {e}",
            digest.as_str()
        ))
    })
}

/// Metadata errors keep their kind.
fn storage(e: MetadataError) -> ContentError {
    match e {
        MetadataError::NotFound(m) => ContentError::NotFound(m),
        MetadataError::AlreadyExists(m) => ContentError::AlreadyExists(m),
        MetadataError::FailedPrecondition(m) => ContentError::FailedPrecondition(m),
        MetadataError::InvalidArgument(m) => ContentError::InvalidArgument(m),
        MetadataError::Storage(m) => ContentError::Storage(m),
    }
}

/// Record errors worded as containerd words them.
fn named(e: MetadataError, digest: &ContentDigest) -> ContentError {
    match e {
        MetadataError::NotFound(_) => {
            ContentError::NotFound(format!("content digest {}: not found", digest.as_str()))
        }
        MetadataError::AlreadyExists(_) => {
            ContentError::AlreadyExists(format!("content {}: already exists", digest.as_str()))
        }
        other => storage(other),
    }
}

fn ingest_named(e: ContentError, reference: &str) -> ContentError {
    match e {
        ContentError::NotFound(_) => {
            ContentError::NotFound(format!("ingest ref {reference:?}: not found"))
        }
        other => other,
    }
}

/// containerd's content adaptor: `digest` and `labels.<key>` (`size` is named there but
/// matches nothing yet, so neither does it here).
struct InfoFields<'a>(&'a Info);

impl Fields for InfoFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "digest" => Some(self.0.digest.clone()),
            [f, key @ ..] if f == "labels" && !key.is_empty() => {
                self.0.labels.get(&key.join(".")).cloned()
            }
            _ => None,
        }
    }
}

/// containerd's ingest status adaptor: `ref`.
struct StatusFields<'a>(&'a IngestStatus);

impl Fields for StatusFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "ref" => Some(self.0.reference.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
