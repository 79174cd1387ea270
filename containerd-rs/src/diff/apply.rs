//! Apply: a layer blob unpacked onto a snapshot's mounts, as containerd 1.6's `diff/apply`.

use std::io::{self, BufReader};

use super::compression::{decompress, Digesting};
use super::mounts::{overlay_upperdir, with_temp_mount};
use super::unpack::{unpack, WhiteoutMode};
use super::{Descriptor, DiffError, LayerStore, Mount, MEDIA_TYPE_LAYER};

/// Applies the layer `desc` of `namespace` onto `mounts` and returns the applied (uncompressed)
/// layer's descriptor. Nothing is verified, as in containerd: the caller compares digests.
pub fn apply(
    store: &dyn LayerStore,
    namespace: &str,
    desc: &Descriptor,
    mounts: &[Mount],
) -> Result<Descriptor, DiffError> {
    let blob = store
        .open_blob(namespace, &desc.digest)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => DiffError::BlobNotFound(desc.digest.clone()),
            _ => DiffError::io(format!(
                "failed to get reader from content store: {}",
                desc.digest
            ))(e),
        })?;
    let mut stream = Digesting::new(decompress(&desc.media_type, BufReader::new(blob))?);
    match overlay_upperdir(mounts) {
        Some(upper) => {
            unpack(&mut stream, &upper, WhiteoutMode::Overlay)?;
        }
        None => {
            with_temp_mount(&store.temp_dir(), mounts, false, |root| {
                Ok(unpack(&mut stream, root, WhiteoutMode::Delete)?)
            })?;
        }
    }
    // The digest covers the whole stream, padding after the tar's end included.
    io::copy(&mut stream, &mut io::sink()).map_err(DiffError::io("reading the layer"))?;
    Ok(Descriptor {
        media_type: MEDIA_TYPE_LAYER.to_string(),
        digest: stream.digest(),
        size: stream.size,
    })
}
