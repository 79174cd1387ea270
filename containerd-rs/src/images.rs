//! Images: named references to a target descriptor (a manifest or an index in the content
//! store), with labels. Changes are published as `/images/{create,update,delete}` in the
//! image's namespace, with containerd's `ImageCreate`/`ImageUpdate`/`ImageDelete`.
//!
//! Record (see the schema in [`crate::metadata`]): kind [`KIND`], id = the image name, value
//! = the prost encoding of `keel_proto::images::Image`, with `created_at`/`updated_at` set
//! here and empty label and annotation values dropped (containerd's bolt store never writes
//! those, which is how `ctr images label NAME key=` removes a label).
//!
//! Names are not parsed as references: containerd 1.6's store takes any non-empty name (its
//! clients parse references before they call), so we do too, refusing only NUL, which our
//! record keys use as a separator.
//!
//! Messages carry containerd's errdefs suffix (`: not found`, ...) so they read on the wire
//! exactly as containerd's do.

use std::time::SystemTime;

use keel_proto::images::{Image, ImageCreate, ImageDelete, ImageUpdate};
use keel_proto::prost::Message;
use keel_proto::topics;

use crate::filters::{Fields, Filter};
use crate::metadata::{MetadataError, Result};
use crate::supervisor::Supervisor;

mod update;
pub mod validate;

pub use update::apply_update;

/// The metadata kind of image records.
pub const KIND: &str = "images";

fn invalid(message: impl std::fmt::Display) -> MetadataError {
    MetadataError::InvalidArgument(format!("{message}: invalid argument"))
}

/// Store errors worded as containerd's image store words them: `image "NAME": not found`.
fn named(e: MetadataError, name: &str) -> MetadataError {
    match e {
        MetadataError::NotFound(_) => MetadataError::NotFound(format!("image {name:?}: not found")),
        MetadataError::AlreadyExists(_) => {
            MetadataError::AlreadyExists(format!("image {name:?}: already exists"))
        }
        other => other,
    }
}

/// containerd's images service refuses a nameless Create or Update before its store sees it,
/// with a message that has no errdefs suffix.
fn require_name(image: &Image) -> Result<()> {
    if image.name.is_empty() {
        return Err(MetadataError::InvalidArgument("Image.Name required".into()));
    }
    Ok(())
}

fn decode(name: &str, record: &[u8]) -> Result<Image> {
    Image::decode(record)
        .map_err(|e| MetadataError::Storage(format!("image {name:?}: record does not decode: {e}")))
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}

/// What containerd's bolt store keeps: no empty label or annotation values.
fn drop_empty_values(image: &mut Image) {
    image.labels.retain(|_, v| !v.is_empty());
    if let Some(target) = image.target.as_mut() {
        target.annotations.retain(|_, v| !v.is_empty());
    }
}

/// Stores a new image and publishes `/images/create`.
pub fn create(supervisor: &Supervisor, namespace: &str, mut image: Image) -> Result<Image> {
    require_name(&image)?;
    let _span = tracing::info_span!("create", image = %image.name).entered();
    validate::image(&image)?;
    drop_empty_values(&mut image);
    let at = now();
    image.created_at = Some(at);
    image.updated_at = Some(at);
    let _hold = supervisor.gc.hold();
    supervisor
        .store
        .create(namespace, KIND, &image.name, &image.encode_to_vec())
        .map_err(|e| named(e, &image.name))?;
    tracing::debug!("created");
    supervisor.publish(
        namespace,
        topics::IMAGE_CREATE,
        &ImageCreate {
            name: image.name.clone(),
            labels: image.labels.clone(),
        },
    );
    Ok(image)
}

/// One image.
pub fn get(supervisor: &Supervisor, namespace: &str, name: &str) -> Result<Image> {
    let record = supervisor
        .store
        .get(namespace, KIND, name)
        .map_err(|e| named(e, name))?;
    decode(name, &record)
}

/// The images of `namespace` that pass any of `filters` (all of them if none), by name.
pub fn list(supervisor: &Supervisor, namespace: &str, filters: &[String]) -> Result<Vec<Image>> {
    let filter = Filter::parse_all(filters).map_err(invalid)?;
    let mut all = Vec::new();
    for (name, record) in supervisor.store.list(namespace, KIND)? {
        let image = decode(&name, &record)?;
        if filter.matches(&image) {
            all.push(image);
        }
    }
    Ok(all)
}

/// Changes an image through the field mask `paths` (see [`apply_update`]) in one metadata
/// transaction, validates the result, and publishes `/images/update`.
pub fn update(
    supervisor: &Supervisor,
    namespace: &str,
    given: Image,
    paths: &[String],
) -> Result<Image> {
    require_name(&given)?;
    let _span = tracing::info_span!("update", image = %given.name).entered();
    let _hold = supervisor.gc.hold();
    let record = supervisor
        .store
        .update(namespace, KIND, &given.name, |old| {
            let current = decode(&given.name, &old)?;
            let created_at = current.created_at;
            let mut updated = apply_update(current, &given, paths)?;
            updated.name.clone_from(&given.name);
            validate::image(&updated)?;
            drop_empty_values(&mut updated);
            updated.created_at = created_at;
            updated.updated_at = Some(now());
            Ok(updated.encode_to_vec())
        })
        .map_err(|e| named(e, &given.name))?;
    let updated = decode(&given.name, &record)?;
    tracing::debug!(?paths, "updated");
    supervisor.publish(
        namespace,
        topics::IMAGE_UPDATE,
        &ImageUpdate {
            name: updated.name.clone(),
            labels: updated.labels.clone(),
        },
    );
    Ok(updated)
}

/// Deletes an image's record and publishes `/images/delete`; a collection follows soon (what
/// only the image kept goes with it).
pub fn delete(supervisor: &Supervisor, namespace: &str, name: &str) -> Result<()> {
    let _span = tracing::info_span!("delete", image = %name).entered();
    {
        let _hold = supervisor.gc.hold();
        supervisor
            .store
            .delete(namespace, KIND, name)
            .map_err(|e| named(e, name))?;
    }
    supervisor.gc.deleted();
    tracing::debug!("deleted");
    supervisor.publish(
        namespace,
        topics::IMAGE_DELETE,
        &ImageDelete {
            name: name.to_string(),
        },
    );
    Ok(())
}

/// containerd's image adaptor: `name`, `target.digest`, `target.mediatype`, `labels.<key>` and
/// `annotations.<key>` (the target's; a key with dots is the rest of the path joined).
impl Fields for Image {
    fn field(&self, path: &[String]) -> Option<String> {
        let present = |v: &str| (!v.is_empty()).then(|| v.to_string());
        let target = self.target.as_ref();
        match path {
            [f] if f == "name" => present(&self.name),
            [f, g] if f == "target" && g == "digest" => target.and_then(|t| present(&t.digest)),
            [f, g] if f == "target" && g == "mediatype" => {
                target.and_then(|t| present(&t.media_type))
            }
            [f, key @ ..] if f == "labels" => self.labels.get(&key.join(".")).cloned(),
            [f, key @ ..] if f == "annotations" => {
                target.and_then(|t| t.annotations.get(&key.join(".")).cloned())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
