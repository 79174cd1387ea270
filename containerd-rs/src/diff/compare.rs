//! Diff: the changes from a lower to an upper tree written as a layer and stored, as containerd
//! 1.6's walking differ (the tar itself: [`super::layer_writer`]).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::Path;

use super::compression::{Compression, Compressor, Digesting};
use super::layer_writer::write_diff;
use super::mounts::{temp_dir, with_temp_mount};
use super::{Descriptor, DiffError, LayerStore, Mount, UNCOMPRESSED_LABEL};

/// What a Diff call asks for.
#[derive(Debug, Clone, Default)]
pub struct DiffRequest {
    pub left: Vec<Mount>,
    pub right: Vec<Mount>,
    /// Empty means gzip, as containerd.
    pub media_type: String,
    pub labels: BTreeMap<String, String>,
    pub lease: Option<String>,
}

/// The compression Diff writes for `media_type` (zstd is an extension: containerd 1.6's walking
/// differ answers NotImplemented for it).
fn compression_for(media_type: &str) -> Result<(String, Compression), DiffError> {
    let media_type = if media_type.is_empty() {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    } else {
        media_type
    };
    match media_type {
        "application/vnd.oci.image.layer.v1.tar" => {
            Ok((media_type.to_string(), Compression::Uncompressed))
        }
        "application/vnd.oci.image.layer.v1.tar+gzip" => {
            Ok((media_type.to_string(), Compression::Gzip))
        }
        "application/vnd.oci.image.layer.v1.tar+zstd" => {
            Ok((media_type.to_string(), Compression::Zstd))
        }
        other => Err(DiffError::UnsupportedMediaType(other.to_string())),
    }
}

/// Mounts both sides read-only, writes their difference as a layer and stores it.
pub fn diff(
    store: &dyn LayerStore,
    namespace: &str,
    request: &DiffRequest,
) -> Result<Descriptor, DiffError> {
    let (media_type, compression) = compression_for(&request.media_type)?;
    let base = store.temp_dir();
    with_temp_mount(&base, &request.left, true, |lower| {
        with_temp_mount(&base, &request.right, true, |upper| {
            let dir = temp_dir(&base)?;
            let result =
                write_and_store(store, namespace, request, compression, lower, upper, &dir);
            let _ = fs::remove_dir_all(&dir);
            let (digest, size) = result?;
            Ok(Descriptor {
                media_type: media_type.clone(),
                digest,
                size,
            })
        })
    })
}

fn write_and_store(
    store: &dyn LayerStore,
    namespace: &str,
    request: &DiffRequest,
    compression: Compression,
    lower: &Path,
    upper: &Path,
    dir: &Path,
) -> Result<(String, u64), DiffError> {
    let path = dir.join("layer");
    let file = File::create(&path).map_err(DiffError::io("creating the layer file"))?;
    let compressor =
        Compressor::new(compression, file).map_err(DiffError::io("starting compression"))?;
    let mut digesting = Digesting::new(compressor);
    write_diff(&mut digesting, lower, upper).map_err(DiffError::io("failed to write diff"))?;
    let uncompressed = digesting.digest();
    let file = digesting
        .inner
        .finish()
        .map_err(DiffError::io("finishing compression"))?;
    file.sync_all()
        .map_err(DiffError::io("syncing the layer file"))?;
    let mut labels = request.labels.clone();
    labels.insert(UNCOMPRESSED_LABEL.to_string(), uncompressed);
    store
        .store_blob(namespace, &path, labels, request.lease.as_deref())
        .map_err(DiffError::io("failed to commit"))
}
