//! A writer: one client's hold on an ingest, from the first Write message to the commit or the
//! end of the stream. It holds the ingest's ref lock (a second writer of the same ref gets
//! Unavailable, as containerd's "ref ... locked"), adds the ingest and then the committed
//! content to the call's lease, and records the commit in the namespace.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::metadata::{Labels, Store as Metadata};

use super::store::OpenIngest;
use super::{
    add_to_lease, ingest_key, named, validate_labels, Content, ContentDigest, ContentError,
    IngestStatus, Result, KIND,
};

type Locks = Arc<Mutex<HashMap<String, SystemTime>>>;

/// An open ingest of one namespace.
#[derive(Debug)]
pub struct Writer {
    content: Content,
    namespace: String,
    reference: String,
    lease: Option<String>,
    /// The blob is already in the store (another namespace committed it) and the client
    /// announced its digest: nothing needs writing, the commit only records it.
    shared: Option<(ContentDigest, u64)>,
    /// Keeps a shared blob from the collector until the commit has recorded it.
    _pin: Option<super::Pin>,
    /// The ingest's data file, open while the writer lives (`None` when shared): writes append
    /// and hash as they come, so the commit does not read the blob again.
    ingest: Mutex<Option<OpenIngest>>,
    _lock: RefLock,
}

/// Holds a ref until dropped.
#[derive(Debug)]
struct RefLock {
    locks: Locks,
    key: String,
}

impl RefLock {
    fn take(locks: &Locks, key: &str) -> Result<Self> {
        let mut held = locks
            .lock()
            .map_err(|_| ContentError::Storage("ref locks poisoned".into()))?;
        if let Some(since) = held.get(key) {
            let age = SystemTime::now().duration_since(*since).unwrap_or_default();
            let since = since.duration_since(UNIX_EPOCH).unwrap_or_default();
            return Err(ContentError::Unavailable(format!(
                "ref {key} locked for {age:?} (since {}s after the epoch): unavailable",
                since.as_secs()
            )));
        }
        held.insert(key.to_string(), SystemTime::now());
        Ok(Self {
            locks: locks.clone(),
            key: key.to_string(),
        })
    }
}

impl Drop for RefLock {
    fn drop(&mut self) {
        if let Ok(mut held) = self.locks.lock() {
            held.remove(&self.key);
        }
    }
}

impl Content {
    /// Opens (or resumes) ingest `reference` in `namespace`, as containerd's metadata writer:
    /// `expected` content the namespace already has is AlreadyExists; content another namespace
    /// committed is shared; under `lease` the ingest is added to that lease (an unknown lease
    /// is NotFound).
    pub fn writer(
        &self,
        meta: &Metadata,
        namespace: &str,
        reference: &str,
        total: u64,
        expected: Option<&str>,
        lease: Option<&str>,
    ) -> Result<Writer> {
        if reference.is_empty() {
            return Err(ContentError::InvalidArgument(
                "ref must not be empty: invalid argument".into(),
            ));
        }
        let expected = expected.map(ContentDigest::parse).transpose()?;
        let mut shared = None;
        if let Some(digest) = &expected {
            if meta.get(namespace, KIND, digest.as_str()).is_ok() {
                if let Some(lease) = lease {
                    add_to_lease(meta, namespace, lease, "content", digest.as_str())?;
                }
                return Err(ContentError::AlreadyExists(format!(
                    "content {}: already exists",
                    digest.as_str()
                )));
            }
            shared = self.shared_blob(meta, namespace, digest, total)?;
        }
        if let Some(lease) = lease {
            add_to_lease(meta, namespace, lease, "ingests", reference)?;
        }
        let key = ingest_key(namespace, reference);
        let lock = RefLock::take(&self.locks, &key)?;
        let ingest = match shared {
            Some(_) => None,
            None => {
                self.store.begin(&key, total, None)?;
                if lease.is_none() {
                    self.store.mark_unleased(&key)?;
                }
                Some(self.store.open_ingest(&key)?)
            }
        };
        Ok(Writer {
            content: self.clone(),
            namespace: namespace.to_string(),
            reference: reference.to_string(),
            lease: lease.map(str::to_string),
            _pin: shared.as_ref().map(|(digest, _)| self.pin(digest)),
            shared,
            ingest: Mutex::new(ingest),
            _lock: lock,
        })
    }
}

impl Content {
    /// The blob of `digest` if another namespace records it (with `total` bytes, if given):
    /// containerd's shared policy. A blob no namespace records any more (its records deleted,
    /// the collector not run yet) is written again, as it would be in containerd once
    /// collected.
    fn shared_blob(
        &self,
        meta: &Metadata,
        namespace: &str,
        digest: &ContentDigest,
        total: u64,
    ) -> Result<Option<(ContentDigest, u64)>> {
        let size = match self.store.size(digest) {
            Ok(size) if total == 0 || total == size => size,
            _ => return Ok(None),
        };
        let namespaces = meta.namespaces().map_err(super::storage)?;
        let recorded = namespaces
            .iter()
            .any(|(ns, _)| ns != namespace && meta.get(ns, KIND, digest.as_str()).is_ok());
        Ok(recorded.then(|| (digest.clone(), size)))
    }
}

impl Writer {
    fn key(&self) -> String {
        ingest_key(&self.namespace, &self.reference)
    }

    /// Where the ingest stands (a shared blob stands complete).
    pub fn status(&self) -> Result<IngestStatus> {
        if let Some((digest, size)) = &self.shared {
            let now = SystemTime::now();
            return Ok(IngestStatus {
                reference: self.reference.clone(),
                offset: *size,
                total: *size,
                expected: Some(digest.clone()),
                started_at: now,
                updated_at: now,
            });
        }
        let mut status = self.content.store.status(&self.key())?;
        status.reference = self.reference.clone();
        Ok(status)
    }

    /// The bytes the ingest holds (the shared blob's size if shared), without asking the
    /// filesystem: what each Write message is answered with.
    pub fn offset(&self) -> Result<u64> {
        if let Some((_, size)) = &self.shared {
            return Ok(*size);
        }
        self.with_ingest(|ingest| Ok(ingest.offset()))
    }

    /// Runs `f` on the open ingest.
    fn with_ingest<T>(&self, f: impl FnOnce(&mut OpenIngest) -> Result<T>) -> Result<T> {
        let mut guard = self
            .ingest
            .lock()
            .map_err(|_| ContentError::Storage("ingest lock poisoned".into()))?;
        match guard.as_mut() {
            Some(ingest) => f(ingest),
            None => Err(ContentError::Storage(format!(
                "ingest {:?} is not open",
                self.reference
            ))),
        }
    }

    /// Starts the ingest over (a client writing at offset 0 again).
    pub fn truncate(&self) -> Result<()> {
        if self.shared.is_some() {
            return Ok(());
        }
        self.with_ingest(OpenIngest::truncate)
    }

    /// Appends `data` at `offset`, which must be where the ingest stands; returns the new
    /// offset.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<u64> {
        if self.shared.is_some() {
            return Err(ContentError::FailedPrecondition(format!(
                "ref {:?}: the expected content is already stored, commit it instead of writing: failed precondition",
                self.reference
            )));
        }
        self.with_ingest(|ingest| ingest.write(offset, data))
    }

    /// The digest of what was written so far (of the shared blob if shared).
    pub fn digest(&self) -> Option<String> {
        self.shared.as_ref().map(|(d, _)| d.as_str().to_string())
    }

    /// Commits: the bytes must have `size` (if not 0) and hash to `expected` (if given); the
    /// blob is recorded in the namespace with `labels` (AlreadyExists if it already was) and
    /// added to the lease. On a mismatch nothing becomes visible and the ingest stays, as in
    /// containerd, for the client to fix or abort.
    pub fn commit(
        &self,
        meta: &Metadata,
        size: u64,
        expected: Option<&str>,
        labels: Labels,
    ) -> Result<ContentDigest> {
        validate_labels(&labels)?;
        let expected = expected.map(ContentDigest::parse).transpose()?;
        let (digest, size) = match &self.shared {
            Some(shared) => self.check_shared(shared, size, expected.as_ref())?,
            None => self.commit_ingest(size, expected.as_ref())?,
        };
        self.content
            .record(meta, &self.namespace, &digest, size, labels)?;
        if let Some(lease) = &self.lease {
            add_to_lease(meta, &self.namespace, lease, "content", digest.as_str())?;
        }
        Ok(digest)
    }

    fn check_shared(
        &self,
        (digest, have): &(ContentDigest, u64),
        size: u64,
        expected: Option<&ContentDigest>,
    ) -> Result<(ContentDigest, u64)> {
        if size != 0 && size != *have {
            return Err(self.size_mismatch(*have, size));
        }
        if expected.is_some_and(|e| e != digest) {
            return Err(ContentError::FailedPrecondition(format!(
                "{:?} unexpected digest: failed precondition",
                self.reference
            )));
        }
        Ok((digest.clone(), *have))
    }

    fn commit_ingest(
        &self,
        size: u64,
        expected: Option<&ContentDigest>,
    ) -> Result<(ContentDigest, u64)> {
        let store = &self.content.store;
        let (digest, offset) = self.with_ingest(|ingest| {
            if size != 0 && size != ingest.offset() {
                return Err(self.size_mismatch(ingest.offset(), size));
            }
            let digest = store
                .commit_open(ingest, ingest.offset(), expected)
                .map_err(|e| match e {
                    ContentError::FailedPrecondition(m) => {
                        ContentError::FailedPrecondition(format!("{m}: failed precondition"))
                    }
                    other => other,
                })?;
            Ok((digest, ingest.offset()))
        })?;
        Ok((digest, offset))
    }

    fn size_mismatch(&self, have: u64, want: u64) -> ContentError {
        ContentError::FailedPrecondition(format!(
            "{:?} failed size validation: {have} != {want}: failed precondition",
            self.reference
        ))
    }
}

/// Whether `namespace` records `digest` (for callers that only need to know).
pub fn recorded(meta: &Metadata, namespace: &str, digest: &str) -> Result<bool> {
    let digest = ContentDigest::parse(digest)?;
    match meta.get(namespace, KIND, digest.as_str()) {
        Ok(_) => Ok(true),
        Err(crate::metadata::MetadataError::NotFound(_)) => Ok(false),
        Err(e) => Err(named(e, &digest)),
    }
}
