//! The supervisor's metadata: an embedded ACID database (redb), the role bbolt plays in
//! containerd. Every write is one transaction, committed durably: a crash at any point leaves
//! each record either whole or absent.
//!
//! Schema (redb tables, keys are strings):
//!
//! ```text
//! namespaces   <namespace>                      → labels, JSON object
//! objects      <namespace> \0 <kind> \0 <id>    → the record, in the kind's own encoding
//!                                                 (containers: the gRPC message's bytes)
//! ```
//!
//! Kinds, each documented by the module that owns it:
//!
//! ```text
//! containers        id = container id  value = prost `containers.v1.Container`  crate::containers
//! images            id = image name    value = prost `images.v1.Image`          crate::images
//! content           id = sha256:<hex>  value = prost `content.v1.Info`          crate::content
//! snapshots/<name>  id = snapshot key  value = JSON {id, kind, parent, labels,  crate::snapshots
//!                                             created_at, updated_at}
//! leases            id = lease id      value = JSON {created_at, labels,        crate::leases
//!                                             resources: [{type, id}]}
//! ```
//!
//! A namespace is created by the first object put in it (as containerd does) and can only be
//! deleted when it holds no object but leases, which go with it.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::identifiers;

const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

/// Kinds that do not keep a namespace alive: containerd deletes a namespace's leases with it.
const DROPPED_WITH_NAMESPACE: [&str; 1] = ["leases"];

/// Labels of a namespace.
pub type Labels = BTreeMap<String, String>;

/// Why a metadata operation failed; the kinds map to containerd's errdefs.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("metadata database: {0}")]
    Storage(String),
}

pub type Result<T> = std::result::Result<T, MetadataError>;

fn storage(e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Storage(e.to_string())
}

/// The metadata database.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

fn object_key(namespace: &str, kind: &str, id: &str) -> String {
    format!("{namespace}\0{kind}\0{id}")
}

/// The key range of every object of `kind` (or of any kind, if empty) in `namespace`.
fn prefix(namespace: &str, kind: &str) -> String {
    if kind.is_empty() {
        format!("{namespace}\0")
    } else {
        format!("{namespace}\0{kind}\0")
    }
}

fn valid_namespace(namespace: &str) -> Result<()> {
    identifiers::validate(namespace)
        .map_err(|e| MetadataError::InvalidArgument(format!("namespace: {e}")))
}

impl Store {
    /// Opens (or creates) `<root>/meta.redb`.
    pub fn open(root: &Path) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(storage)?;
        let db = Database::create(root.join("meta.redb")).map_err(storage)?;
        let txn = db.begin_write().map_err(storage)?;
        txn.open_table(NAMESPACES).map_err(storage)?;
        txn.open_table(OBJECTS).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(Self { db })
    }

    /// Creates `namespace` with `labels`.
    pub fn create_namespace(&self, namespace: &str, labels: &Labels) -> Result<()> {
        valid_namespace(namespace)?;
        let value = serde_json::to_vec(labels).map_err(storage)?;
        self.write(|txn| {
            let mut table = txn.open_table(NAMESPACES).map_err(storage)?;
            if table.get(namespace).map_err(storage)?.is_some() {
                return Err(MetadataError::AlreadyExists(format!(
                    "namespace {namespace:?} already exists"
                )));
            }
            table.insert(namespace, value.as_slice()).map_err(storage)?;
            Ok(())
        })
    }

    /// The labels of `namespace`.
    pub fn namespace(&self, namespace: &str) -> Result<Labels> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(NAMESPACES).map_err(storage)?;
        let value = table
            .get(namespace)
            .map_err(storage)?
            .ok_or_else(|| MetadataError::NotFound(format!("namespace {namespace:?} not found")))?;
        serde_json::from_slice(value.value()).map_err(storage)
    }

    /// Every namespace with its labels.
    pub fn namespaces(&self) -> Result<Vec<(String, Labels)>> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(NAMESPACES).map_err(storage)?;
        let mut all = Vec::new();
        for entry in table.iter().map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            let labels = serde_json::from_slice(v.value()).map_err(storage)?;
            all.push((k.value().to_string(), labels));
        }
        Ok(all)
    }

    /// Replaces the labels of `namespace`.
    pub fn update_namespace(&self, namespace: &str, labels: &Labels) -> Result<()> {
        let value = serde_json::to_vec(labels).map_err(storage)?;
        self.write(|txn| {
            let mut table = txn.open_table(NAMESPACES).map_err(storage)?;
            if table.get(namespace).map_err(storage)?.is_none() {
                return Err(MetadataError::NotFound(format!(
                    "namespace {namespace:?} not found"
                )));
            }
            table.insert(namespace, value.as_slice()).map_err(storage)?;
            Ok(())
        })
    }

    /// Deletes `namespace`, which must hold no object.
    pub fn delete_namespace(&self, namespace: &str) -> Result<()> {
        self.write(|txn| {
            let mut objects = txn.open_table(OBJECTS).map_err(storage)?;
            let start = prefix(namespace, "");
            let mut leftovers = Vec::new();
            for entry in objects.range(start.as_str()..).map_err(storage)? {
                let (k, _) = entry.map_err(storage)?;
                let Some(rest) = k.value().strip_prefix(start.as_str()) else {
                    break;
                };
                let kind = rest.split('\0').next().unwrap_or("objects");
                if !DROPPED_WITH_NAMESPACE.contains(&kind) {
                    return Err(MetadataError::FailedPrecondition(format!(
                        "namespace {namespace:?} must be empty, but it still has {kind}"
                    )));
                }
                leftovers.push(k.value().to_string());
            }
            for key in &leftovers {
                objects.remove(key.as_str()).map_err(storage)?;
            }
            let mut table = txn.open_table(NAMESPACES).map_err(storage)?;
            if table.remove(namespace).map_err(storage)?.is_none() {
                return Err(MetadataError::NotFound(format!(
                    "namespace {namespace:?} not found"
                )));
            }
            Ok(())
        })
    }

    /// Stores a new object; its namespace is created if needed.
    pub fn create(&self, namespace: &str, kind: &str, id: &str, record: &[u8]) -> Result<()> {
        valid_namespace(namespace)?;
        let key = object_key(namespace, kind, id);
        self.write(|txn| {
            let mut namespaces = txn.open_table(NAMESPACES).map_err(storage)?;
            if namespaces.get(namespace).map_err(storage)?.is_none() {
                namespaces
                    .insert(namespace, b"{}".as_slice())
                    .map_err(storage)?;
            }
            let mut table = txn.open_table(OBJECTS).map_err(storage)?;
            if table.get(key.as_str()).map_err(storage)?.is_some() {
                return Err(MetadataError::AlreadyExists(format!(
                    "{kind} {id:?} already exists in namespace {namespace:?}"
                )));
            }
            table.insert(key.as_str(), record).map_err(storage)?;
            Ok(())
        })
    }

    /// An object's record.
    pub fn get(&self, namespace: &str, kind: &str, id: &str) -> Result<Vec<u8>> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(OBJECTS).map_err(storage)?;
        let key = object_key(namespace, kind, id);
        let value = table.get(key.as_str()).map_err(storage)?;
        value.map(|v| v.value().to_vec()).ok_or_else(|| {
            MetadataError::NotFound(format!(
                "{kind} {id:?} not found in namespace {namespace:?}"
            ))
        })
    }

    /// Every object of `kind` in `namespace`, by id.
    pub fn list(&self, namespace: &str, kind: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(OBJECTS).map_err(storage)?;
        let start = prefix(namespace, kind);
        let mut all = Vec::new();
        for entry in table.range(start.as_str()..).map_err(storage)? {
            let (k, v) = entry.map_err(storage)?;
            let Some(id) = k.value().strip_prefix(start.as_str()).map(String::from) else {
                break;
            };
            all.push((id, v.value().to_vec()));
        }
        Ok(all)
    }

    /// Rewrites an object's record with `change`, in one transaction.
    pub fn update<F>(&self, namespace: &str, kind: &str, id: &str, change: F) -> Result<Vec<u8>>
    where
        F: FnOnce(Vec<u8>) -> Result<Vec<u8>>,
    {
        let key = object_key(namespace, kind, id);
        self.write(|txn| {
            let mut table = txn.open_table(OBJECTS).map_err(storage)?;
            let old = table
                .get(key.as_str())
                .map_err(storage)?
                .map(|v| v.value().to_vec())
                .ok_or_else(|| {
                    MetadataError::NotFound(format!(
                        "{kind} {id:?} not found in namespace {namespace:?}"
                    ))
                })?;
            let new = change(old)?;
            table
                .insert(key.as_str(), new.as_slice())
                .map_err(storage)?;
            Ok(new)
        })
    }

    /// Stores `record` as `to` and deletes `from`, of the same kind, in one transaction (a
    /// snapshot's commit: the active key becomes the committed name, never both or neither).
    pub fn rename(
        &self,
        namespace: &str,
        kind: &str,
        from: &str,
        to: &str,
        record: &[u8],
    ) -> Result<()> {
        let (from_key, to_key) = (
            object_key(namespace, kind, from),
            object_key(namespace, kind, to),
        );
        self.write(|txn| {
            let mut table = txn.open_table(OBJECTS).map_err(storage)?;
            if table.get(to_key.as_str()).map_err(storage)?.is_some() {
                return Err(MetadataError::AlreadyExists(format!(
                    "{kind} {to:?} already exists in namespace {namespace:?}"
                )));
            }
            if table.remove(from_key.as_str()).map_err(storage)?.is_none() {
                return Err(MetadataError::NotFound(format!(
                    "{kind} {from:?} not found in namespace {namespace:?}"
                )));
            }
            table.insert(to_key.as_str(), record).map_err(storage)?;
            Ok(())
        })
    }

    /// Deletes an object.
    pub fn delete(&self, namespace: &str, kind: &str, id: &str) -> Result<()> {
        let key = object_key(namespace, kind, id);
        self.write(|txn| {
            let mut table = txn.open_table(OBJECTS).map_err(storage)?;
            if table.remove(key.as_str()).map_err(storage)?.is_none() {
                return Err(MetadataError::NotFound(format!(
                    "{kind} {id:?} not found in namespace {namespace:?}"
                )));
            }
            Ok(())
        })
    }

    /// Runs `f` in a write transaction, committed only if it succeeds.
    fn write<T>(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_write().map_err(storage)?;
        let out = f(&txn)?;
        txn.commit().map_err(storage)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn rename_is_all_or_nothing() {
        let (_dir, s) = store();
        s.create("ns", "k", "a", b"1").unwrap();
        s.create("ns", "k", "taken", b"2").unwrap();
        assert!(matches!(
            s.rename("ns", "k", "a", "taken", b"3"),
            Err(MetadataError::AlreadyExists(_))
        ));
        assert!(matches!(
            s.rename("ns", "k", "missing", "b", b"3"),
            Err(MetadataError::NotFound(_))
        ));
        assert!(s.get("ns", "k", "b").is_err());
        s.rename("ns", "k", "a", "b", b"3").unwrap();
        assert!(s.get("ns", "k", "a").is_err());
        assert_eq!(s.get("ns", "k", "b").unwrap(), b"3");
        assert_eq!(s.get("ns", "k", "taken").unwrap(), b"2");
    }

    #[test]
    fn namespaces_lifecycle() {
        let (_dir, s) = store();
        let labels: Labels = [("a".to_string(), "1".to_string())].into_iter().collect();
        s.create_namespace("n1", &labels).unwrap();
        assert!(matches!(
            s.create_namespace("n1", &labels),
            Err(MetadataError::AlreadyExists(_))
        ));
        assert!(matches!(
            s.create_namespace("bad/ns", &labels),
            Err(MetadataError::InvalidArgument(_))
        ));
        assert_eq!(s.namespace("n1").unwrap(), labels);
        s.update_namespace("n1", &Labels::new()).unwrap();
        assert!(s.namespace("n1").unwrap().is_empty());
        assert!(matches!(
            s.namespace("nope"),
            Err(MetadataError::NotFound(_))
        ));
        s.create("n1", "containers", "c1", b"x").unwrap();
        let err = s.delete_namespace("n1").unwrap_err();
        assert!(matches!(err, MetadataError::FailedPrecondition(_)), "{err}");
        assert!(err.to_string().contains("containers"));
        s.delete("n1", "containers", "c1").unwrap();
        s.create("n1", "leases", "l1", b"{}").unwrap();
        s.delete_namespace("n1").unwrap();
        assert!(
            matches!(s.get("n1", "leases", "l1"), Err(MetadataError::NotFound(_))),
            "leases go with it"
        );
        assert!(s.namespaces().unwrap().is_empty());
    }

    #[test]
    fn objects_by_namespace_and_kind() {
        let (_dir, s) = store();
        s.create("n1", "containers", "a", b"1").unwrap();
        s.create("n1", "containers", "b", b"2").unwrap();
        s.create("n1", "images", "a", b"3").unwrap();
        s.create("n10", "containers", "a", b"4").unwrap();
        assert_eq!(s.namespaces().unwrap().len(), 2, "created on first use");
        let ids: Vec<String> = s
            .list("n1", "containers")
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(matches!(
            s.create("n1", "containers", "a", b"x"),
            Err(MetadataError::AlreadyExists(_))
        ));
        assert_eq!(s.get("n10", "containers", "a").unwrap(), b"4");
        let new = s
            .update("n1", "containers", "a", |old| {
                Ok([old, b"+".to_vec()].concat())
            })
            .unwrap();
        assert_eq!(new, b"1+");
        let failed = s.update("n1", "containers", "a", |_| {
            Err(MetadataError::InvalidArgument("no".into()))
        });
        assert!(failed.is_err());
        assert_eq!(
            s.get("n1", "containers", "a").unwrap(),
            b"1+",
            "a failed update changes nothing"
        );
        assert!(matches!(
            s.delete("n1", "containers", "zz"),
            Err(MetadataError::NotFound(_))
        ));
    }

    const WRITER_ENV: &str = "KEEL_METADATA_CRASH_WRITER";

    fn payload(i: u64) -> Vec<u8> {
        i.to_le_bytes().repeat(512)
    }

    /// Run by [`a_killed_writer_leaves_whole_records`] in a child process: writes records and
    /// acknowledges each commit on stdout until it is killed. Does nothing otherwise.
    #[test]
    fn writer_until_killed() {
        use std::io::Write;
        let Some(dir) = std::env::var_os(WRITER_ENV) else {
            return;
        };
        let s = Store::open(Path::new(&dir)).unwrap();
        let mut out = std::io::stdout();
        for i in 0u64.. {
            s.create("n", "containers", &format!("c{i}"), &payload(i))
                .unwrap();
            writeln!(out, "committed {i}").unwrap();
            out.flush().unwrap();
        }
    }

    #[test]
    fn a_killed_writer_leaves_whole_records() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "metadata::tests::writer_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut acked = None;
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            if let Some(i) = line
                .unwrap()
                .strip_prefix("committed ")
                .and_then(|n| n.parse::<u64>().ok())
            {
                acked = Some(i);
                if i >= 40 {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = acked.expect("the writer committed nothing");
        let s = Store::open(dir.path()).unwrap();
        let records = s.list("n", "containers").unwrap();
        assert!(
            records.len() as u64 > acked,
            "{} records, {acked} acknowledged",
            records.len()
        );
        for (id, record) in records {
            let i: u64 = id.trim_start_matches('c').parse().unwrap();
            assert_eq!(record, payload(i), "record {id} is whole");
        }
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path())
            .unwrap()
            .create("n", "containers", "c", b"rec")
            .unwrap();
        let again = Store::open(dir.path()).unwrap();
        assert_eq!(again.get("n", "containers", "c").unwrap(), b"rec");
    }
}
