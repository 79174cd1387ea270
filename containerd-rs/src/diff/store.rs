//! What the diff service needs from the content store, kept small so the service does not depend
//! on the store's implementation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What the diff service needs from the content store.
pub trait LayerStore: Send + Sync {
    /// The blob `digest` as this namespace sees it (NotFound if it has none).
    fn open_blob(&self, namespace: &str, digest: &str) -> std::io::Result<std::fs::File>;
    /// Moves the finished file `path` into the store, recorded in `namespace` with `labels` and
    /// added to `lease`; returns (digest, size).
    fn store_blob(
        &self,
        namespace: &str,
        path: &Path,
        labels: BTreeMap<String, String>,
        lease: Option<&str>,
    ) -> std::io::Result<(String, u64)>;
    /// A directory on the store's filesystem for temp files.
    fn temp_dir(&self) -> PathBuf;
}
