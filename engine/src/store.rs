//! The engine's own records, in an embedded ACID database (redb) at `<data-root>/engine.redb`,
//! the role dockerd's files under `/var/lib/docker` play. Containerd keeps what containerd
//! knows (containers, images, content); this database keeps what only the engine knows.
//!
//! Schema (one table per concept, keys and values UTF-8):
//!
//! ```text
//! engine / "id"  → the engine's ID, made once (dockerd's `engine-id`), shown by /info
//! ```
//!
//! Later tables (container names, Docker-level config, restart policies, log paths) go here.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

/// Facts about the engine itself.
const ENGINE: TableDefinition<&str, &str> = TableDefinition::new("engine");

/// The database file under the data root.
pub const DB_FILE: &str = "engine.redb";

/// The database cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data root cannot be made.
    #[error("creating the data root {}: {source}", path.display())]
    DataRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    /// redb failed (opened by another keeld, corrupt, disk full...).
    #[error("the engine database {}: {message}", path.display())]
    Database { path: PathBuf, message: String },
    /// The system's random source failed.
    #[error("reading /dev/urandom for the engine ID: {0}")]
    Random(std::io::Error),
}

/// The engine's database.
#[derive(Debug)]
pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) `<data_root>/engine.redb`, creating the data root (mode 0710 as
    /// dockerd's) if needed.
    pub fn open(data_root: &Path) -> Result<Self, StoreError> {
        create_data_root(data_root)?;
        let path = data_root.join(DB_FILE);
        let db = Database::create(&path).map_err(|e| db_error(&path, e))?;
        Ok(Self { db, path })
    }

    /// The engine's ID, made (random, UUID-shaped) and stored on first use.
    pub fn engine_id(&self) -> Result<String, StoreError> {
        if let Some(id) = self.get("id")? {
            return Ok(id);
        }
        let id = new_id()?;
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut table = txn.open_table(ENGINE).map_err(|e| self.error(e))?;
            table.insert("id", id.as_str()).map_err(|e| self.error(e))?;
        }
        txn.commit().map_err(|e| self.error(e))?;
        Ok(id)
    }

    fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = match txn.open_table(ENGINE) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.error(e)),
        };
        let value = table.get(key).map_err(|e| self.error(e))?;
        Ok(value.map(|v| v.value().to_string()))
    }

    fn error(&self, e: impl std::fmt::Display) -> StoreError {
        db_error(&self.path, e)
    }
}

fn db_error(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Database {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn create_data_root(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o710)
        .create(path)
        .map_err(|source| StoreError::DataRoot {
            path: path.to_path_buf(),
            source,
        })
}

/// A random version-4 UUID, as dockerd's engine ID is.
fn new_id() -> Result<String, StoreError> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(StoreError::Random)?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        let first = Store::open(&root).unwrap().engine_id().unwrap();
        let again = Store::open(&root).unwrap().engine_id().unwrap();
        assert_eq!(first, again);
        assert_eq!(first.len(), 36, "{first}");
        assert_eq!(first.as_bytes()[14], b'4', "version 4: {first}");
    }

    #[test]
    fn ids_differ_between_engines() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let id_a = Store::open(a.path()).unwrap().engine_id().unwrap();
        let id_b = Store::open(b.path()).unwrap().engine_id().unwrap();
        assert_ne!(id_a, id_b);
    }

    #[test]
    fn an_unusable_data_root_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = Store::open(&file.join("data")).unwrap_err();
        assert!(matches!(err, StoreError::DataRoot { .. }), "{err}");
    }
}
