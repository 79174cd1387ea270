//! Snapshotters: the filesystems containers run on. `overlayfs` (when overlayfs works under the
//! root, checked at startup as containerd does) and `native` (plain copies, always there).
//!
//! Layout, as containerd's:
//!
//! ```text
//! <root>/io.containerd.snapshotter.v1.overlayfs/snapshots/<id>/{fs,work}
//! <root>/io.containerd.snapshotter.v1.native/snapshots/<id>
//! ```
//!
//! Schema: one record per snapshot in the metadata store (see [`crate::metadata`]), kind
//! `snapshots/<snapshotter>`, id = the snapshot's key (namespaced: two namespaces may use the
//! same key), value = [`SnapshotRecord`] as JSON:
//!
//! ```text
//! {"id": 12, "kind": "committed", "parent": "<parent key>", "labels": {...},
//!  "created_at": {"seconds": .., "nanos": ..}, "updated_at": {...}}
//! ```
//!
//! `id` is the snapshotter-wide directory name: unique across namespaces, never the key.

pub mod mounts;
pub mod record;
pub mod storage;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use keel_proto::snapshots::Info;
use keel_proto::types::Mount;

pub use self::mounts::Backend;
use self::record::{now, Named};
pub use self::record::{Kind, SnapshotRecord};
use crate::filters::Filter;
use crate::metadata::{Labels, MetadataError, Store};

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The snapshotter's directories could not be changed (Internal on the wire).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, SnapshotError>;

fn io_error(context: impl fmt::Display) -> impl FnOnce(io::Error) -> SnapshotError {
    move |source| SnapshotError::Io {
        context: context.to_string(),
        source,
    }
}

fn invalid(message: impl fmt::Display) -> SnapshotError {
    MetadataError::InvalidArgument(format!("{message}: invalid argument")).into()
}

fn not_found(message: impl fmt::Display) -> SnapshotError {
    MetadataError::NotFound(format!("{message}: not found")).into()
}

/// The snapshotters of a supervisor, by name.
#[derive(Debug)]
pub struct Snapshotters {
    by_name: BTreeMap<&'static str, Snapshotter>,
}

impl Snapshotters {
    /// Opens the snapshotters under `root`; overlayfs only if it mounts there.
    pub fn open(root: &Path) -> io::Result<Self> {
        let mut by_name = BTreeMap::new();
        let native = Snapshotter::open(Backend::Native, root, false)?;
        by_name.insert(Backend::Native.name(), native);
        let overlay_root = root.join(format!(
            "io.containerd.snapshotter.v1.{}",
            Backend::Overlay.name()
        ));
        // Checked where the snapshots will be, as containerd does: the backing filesystem
        // decides.
        if storage::overlay_works(&overlay_root) {
            let overlay = Snapshotter::open(Backend::Overlay, root, storage::overlay_has_index())?;
            by_name.insert(Backend::Overlay.name(), overlay);
        }
        Ok(Self { by_name })
    }

    /// The snapshotter called `name`, if this supervisor has it.
    pub fn get(&self, name: &str) -> Option<&Snapshotter> {
        self.by_name.get(name)
    }

    /// The names of the snapshotters this supervisor has.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }
}

/// One snapshotter: its directories and its records in the metadata store.
#[derive(Debug)]
pub struct Snapshotter {
    backend: Backend,
    /// `<root>/io.containerd.snapshotter.v1.<name>/snapshots`.
    snapshots: PathBuf,
    index_off: bool,
    /// Serialises creating and removing directories, so ids are handed out once.
    dirs: Mutex<()>,
}

impl Snapshotter {
    fn open(backend: Backend, root: &Path, index_off: bool) -> io::Result<Self> {
        let snapshots = root
            .join(format!("io.containerd.snapshotter.v1.{}", backend.name()))
            .join("snapshots");
        std::fs::create_dir_all(&snapshots)?;
        Ok(Self {
            backend,
            snapshots,
            index_off,
            dirs: Mutex::new(()),
        })
    }

    /// The snapshotter's name (`overlayfs`, `native`).
    pub fn name(&self) -> &'static str {
        self.backend.name()
    }

    /// The metadata kind of this snapshotter's records.
    pub fn kind(&self) -> String {
        format!("snapshots/{}", self.name())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding it left no half-made state the next holder could trip on.
        self.dirs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot's record.
    pub fn get(&self, store: &Store, namespace: &str, key: &str) -> Result<SnapshotRecord> {
        match store.get(namespace, &self.kind(), key) {
            Ok(bytes) => Ok(SnapshotRecord::decode(key, &bytes)?),
            Err(MetadataError::NotFound(_)) => {
                Err(not_found(format!("snapshot {key} does not exist")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every snapshot of `namespace`, by key: what the garbage collector walks.
    pub fn list(&self, store: &Store, namespace: &str) -> Result<Vec<(String, SnapshotRecord)>> {
        store
            .list(namespace, &self.kind())?
            .into_iter()
            .map(|(key, bytes)| Ok((key.clone(), SnapshotRecord::decode(&key, &bytes)?)))
            .collect()
    }

    /// A new Active or View snapshot `key` on `parent` (a committed snapshot, or empty),
    /// and the mounts to use it through.
    pub fn create(
        &self,
        store: &Store,
        namespace: &str,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: Labels,
    ) -> Result<Vec<Mount>> {
        if key.is_empty() {
            return Err(invalid("snapshot key must not be empty"));
        }
        let labels = clean_labels(labels)?;
        // Held until the record is stored: the parent cannot go meanwhile, and Cleanup never
        // sees a directory without its record.
        let _guard = self.lock();
        if store.get(namespace, &self.kind(), key).is_ok() {
            return Err(already_exists(key));
        }
        let parents = self.parent_chain(store, namespace, parent)?;
        let parent_fs = parents
            .first()
            .map(|id| self.backend.fs_dir(&self.snapshots, *id));
        let id = if self.shares_parent_dir(kind, parent) {
            storage::reserve(&self.snapshots)
        } else {
            storage::create(self.backend, &self.snapshots, parent_fs.as_deref())
        }
        .map_err(io_error(format!("creating snapshot {key:?}")))?;
        let at = now();
        let record = SnapshotRecord {
            id,
            kind,
            parent: parent.to_string(),
            labels,
            created_at: at,
            updated_at: at,
        };
        let stored = record
            .encode(key)
            .and_then(|bytes| store.create(namespace, &self.kind(), key, &bytes));
        if let Err(e) = stored {
            self.remove_dir(id);
            return Err(match e {
                MetadataError::AlreadyExists(_) => already_exists(key),
                e => e.into(),
            });
        }
        Ok(self.build_mounts(id, kind, &parents))
    }

    /// A native view of a parent is the parent's directory, read-only: it has none of its own.
    fn shares_parent_dir(&self, kind: Kind, parent: &str) -> bool {
        self.backend == Backend::Native && kind == Kind::View && !parent.is_empty()
    }

    /// The ids of `parent` and its ancestors, nearest first; `parent` must be committed.
    fn parent_chain(&self, store: &Store, namespace: &str, parent: &str) -> Result<Vec<u64>> {
        let mut chain = Vec::new();
        let mut next = parent.to_string();
        while !next.is_empty() {
            let record = match self.get(store, namespace, &next) {
                Err(SnapshotError::Metadata(MetadataError::NotFound(_))) => {
                    return Err(not_found(format!("parent snapshot {next} does not exist")))
                }
                other => other?,
            };
            if chain.is_empty() && record.kind != Kind::Committed {
                return Err(invalid(format!(
                    "parent {next:?} is not committed snapshot"
                )));
            }
            if chain.contains(&record.id) {
                return Err(
                    MetadataError::Storage(format!("snapshot {next:?}: parent loop")).into(),
                );
            }
            chain.push(record.id);
            next = record.parent;
        }
        Ok(chain)
    }

    fn build_mounts(&self, id: u64, kind: Kind, parents: &[u64]) -> Vec<Mount> {
        mounts::mounts(
            self.backend,
            &self.snapshots,
            id,
            kind,
            parents,
            self.index_off,
        )
    }

    /// The mounts of an existing snapshot.
    pub fn mounts(&self, store: &Store, namespace: &str, key: &str) -> Result<Vec<Mount>> {
        let record = self.get(store, namespace, key)?;
        let parents = self.parent_chain(store, namespace, &record.parent)?;
        Ok(self.build_mounts(record.id, record.kind, &parents))
    }

    /// Commits active snapshot `key` as `name` (with `labels`); `key` is gone afterwards.
    pub fn commit(
        &self,
        store: &Store,
        namespace: &str,
        name: &str,
        key: &str,
        labels: Labels,
    ) -> Result<()> {
        if name.is_empty() {
            return Err(invalid("snapshot name must not be empty"));
        }
        // containerd looks for the name before the key.
        if store.get(namespace, &self.kind(), name).is_ok() {
            return Err(already_exists(name));
        }
        let active = self.get(store, namespace, key)?;
        if active.kind != Kind::Active {
            return Err(MetadataError::FailedPrecondition(format!(
                "snapshot {key:?} is not active: failed precondition"
            ))
            .into());
        }
        let labels = clean_labels(labels)?;
        let at = now();
        let committed = SnapshotRecord {
            kind: Kind::Committed,
            labels,
            created_at: at,
            updated_at: at,
            ..active
        };
        let bytes = committed.encode(name)?;
        // One transaction: two records never own one directory, and a crash leaves one.
        store
            .rename(namespace, &self.kind(), key, name, &bytes)
            .map_err(|e| match e {
                MetadataError::AlreadyExists(_) => already_exists(name),
                e => e.into(),
            })
    }

    /// Removes snapshot `key`: its record, then its directory. One with children stays.
    pub fn remove(&self, store: &Store, namespace: &str, key: &str) -> Result<()> {
        // Held throughout: no child can be made on it meanwhile.
        let _guard = self.lock();
        let record = self.get(store, namespace, key)?;
        let has_child = self
            .list(store, namespace)?
            .iter()
            .any(|(_, r)| r.parent == key);
        if has_child {
            return Err(MetadataError::FailedPrecondition(
                "cannot remove snapshot with child: failed precondition".to_string(),
            )
            .into());
        }
        store.delete(namespace, &self.kind(), key)?;
        self.remove_dir(record.id);
        Ok(())
    }

    /// A directory left behind is only logged: Cleanup removes it later.
    fn remove_dir(&self, id: u64) {
        if let Err(e) = storage::remove(&self.snapshots, id) {
            tracing::warn!(
                snapshotter = self.name(),
                id,
                "removing snapshot directory: {e}"
            );
        }
    }

    /// A snapshot's Info.
    pub fn stat(&self, store: &Store, namespace: &str, key: &str) -> Result<Info> {
        Ok(self.get(store, namespace, key)?.info(key))
    }

    /// Changes a snapshot's labels: all of them (no paths, or `labels`) or `labels.<k>` ones.
    pub fn update(
        &self,
        store: &Store,
        namespace: &str,
        info: &Info,
        paths: &[String],
    ) -> Result<Info> {
        let key = info.name.as_str();
        if key.is_empty() {
            return Err(invalid("snapshot name must not be empty"));
        }
        self.get(store, namespace, key)?;
        let wanted: Labels = info.labels.clone().into_iter().collect();
        let bytes = store.update(namespace, &self.kind(), key, |old| {
            let mut record = SnapshotRecord::decode(key, &old)?;
            apply_paths(&mut record.labels, wanted, paths, key)?;
            record.labels = clean_labels(std::mem::take(&mut record.labels))?;
            record.updated_at = now();
            record.encode(key)
        })?;
        Ok(SnapshotRecord::decode(key, &bytes)?.info(key))
    }

    /// Bytes and inodes a snapshot's own files take (a committed one's are measured now;
    /// containerd measured them at commit, the same as nothing writes there since).
    pub fn usage(&self, store: &Store, namespace: &str, key: &str) -> Result<(i64, i64)> {
        let record = self.get(store, namespace, key)?;
        if record.kind == Kind::View {
            // containerd measures active snapshots, and committed ones when committing; a
            // view's usage is never measured, so zero.
            return Ok((0, 0));
        }
        let dir = self.backend.fs_dir(&self.snapshots, record.id);
        storage::usage(&dir).map_err(io_error(format!("usage of snapshot {key:?}")))
    }

    /// The Info of the snapshots of `namespace` that pass `filters`.
    pub fn infos(&self, store: &Store, namespace: &str, filters: &[String]) -> Result<Vec<Info>> {
        let filter = Filter::parse_all(filters).map_err(|e| invalid(e.to_string()))?;
        Ok(self
            .list(store, namespace)?
            .iter()
            .filter(|(key, record)| filter.matches(&Named { key, record }))
            .map(|(key, record)| record.info(key))
            .collect())
    }

    /// Removes the directories no snapshot of any namespace owns.
    pub fn cleanup(&self, store: &Store) -> Result<()> {
        let _guard = self.lock();
        let mut owned = HashSet::new();
        for (namespace, _) in store.namespaces()? {
            owned.extend(self.list(store, &namespace)?.into_iter().map(|(_, r)| r.id));
        }
        let ids = storage::ids(&self.snapshots).map_err(io_error("listing snapshots"))?;
        for id in ids.into_iter().filter(|id| !owned.contains(id)) {
            storage::remove(&self.snapshots, id)
                .map_err(io_error(format!("removing snapshot directory {id}")))?;
        }
        Ok(())
    }
}

/// containerd's label limit: key and value together.
const MAX_LABEL_SIZE: usize = 4096;

/// Labels as containerd stores them: empty values are not kept (setting one removes the
/// label), and each key with its value fits [`MAX_LABEL_SIZE`].
fn clean_labels(mut labels: Labels) -> std::result::Result<Labels, MetadataError> {
    labels.retain(|_, v| !v.is_empty());
    if let Some((key, _)) = labels
        .iter()
        .find(|(k, v)| k.len() + v.len() > MAX_LABEL_SIZE)
    {
        let short: String = key.chars().take(10).collect();
        return Err(MetadataError::InvalidArgument(format!(
            "info.Labels: label key and value greater than maximum size ({MAX_LABEL_SIZE} \
             bytes), key: {short}: invalid argument"
        )));
    }
    Ok(labels)
}

fn already_exists(key: &str) -> SnapshotError {
    MetadataError::AlreadyExists(format!("snapshot {key:?}: already exists")).into()
}

/// Applies an update's field paths to `labels`, as containerd's metadata snapshotter does.
fn apply_paths(
    labels: &mut Labels,
    wanted: Labels,
    paths: &[String],
    key: &str,
) -> std::result::Result<(), MetadataError> {
    if paths.is_empty() {
        *labels = wanted;
        return Ok(());
    }
    for path in paths {
        if let Some(label) = path.strip_prefix("labels.") {
            match wanted.get(label) {
                Some(value) => labels.insert(label.to_string(), value.clone()),
                None => labels.remove(label),
            };
        } else if path == "labels" {
            labels.clone_from(&wanted);
        } else {
            return Err(MetadataError::InvalidArgument(format!(
                "cannot update {path:?} field on snapshot {key:?}: invalid argument"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
