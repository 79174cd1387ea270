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

/// The supervisor's content store as the diff service sees it; temp files and temp mounts go
/// under `<root>/tmpmounts` (containerd's name), on the store's filesystem.
pub struct ContentLayers(pub std::sync::Arc<crate::supervisor::Supervisor>);

impl LayerStore for ContentLayers {
    fn open_blob(&self, namespace: &str, digest: &str) -> std::io::Result<std::fs::File> {
        let s = &self.0;
        s.content
            .blob_file(&s.store, namespace, digest)
            .map_err(content_io_error)
    }

    fn store_blob(
        &self,
        namespace: &str,
        path: &Path,
        labels: BTreeMap<String, String>,
        lease: Option<&str>,
    ) -> std::io::Result<(String, u64)> {
        let s = &self.0;
        let _hold = s.gc.hold();
        s.content
            .store_file(&s.store, namespace, path, labels, lease)
            .map_err(content_io_error)
    }

    fn temp_dir(&self) -> PathBuf {
        self.0.config.root.join("tmpmounts")
    }
}

/// A content error as the diff service's I/O errors carry it, keeping what decides the gRPC
/// code (not found, already exists, invalid).
fn content_io_error(e: crate::content::ContentError) -> std::io::Error {
    use crate::content::ContentError as E;
    use std::io::ErrorKind;
    let kind = match &e {
        E::NotFound(_) => ErrorKind::NotFound,
        E::AlreadyExists(_) => ErrorKind::AlreadyExists,
        E::InvalidArgument(_) => ErrorKind::InvalidInput,
        _ => ErrorKind::Other,
    };
    std::io::Error::new(kind, e.to_string())
}
