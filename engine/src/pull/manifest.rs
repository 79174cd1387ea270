//! The documents a pull reads: an index (OCI image index or Docker manifest list), a manifest
//! (OCI or Docker schema 2) and an image config, parsed with oci-spec's types, which Docker's
//! documents also fit. Which media types are accepted is decided here.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use super::PullError;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What a registry may answer for a manifest request, in the order we prefer.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Layer media types Diff.Apply can unpack.
const LAYERS: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// A manifest document: an index of manifests, or one image's manifest.
#[derive(Debug)]
pub enum Document {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// Parses a manifest document, telling its media type (the `mediaType` field, else its shape:
/// OCI documents may leave the field out).
pub fn parse(bytes: &[u8], what: &str) -> Result<(Document, String), PullError> {
    let bad = |message: String| PullError::BadManifest {
        what: what.to_string(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    if value.get("schemaVersion").and_then(|v| v.as_i64()) == Some(1) {
        return Err(PullError::UnsupportedMediaType {
            what: what.to_string(),
            media_type: "Docker image manifest version 2, schema 1".into(),
        });
    }
    let media_type = match value.get("mediaType").and_then(|v| v.as_str()) {
        Some(m) => m.to_string(),
        None if value.get("manifests").is_some() => OCI_INDEX.to_string(),
        None => OCI_MANIFEST.to_string(),
    };
    let document = match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => Document::Index(Box::new(
            serde_json::from_value(value).map_err(|e| bad(format!("not an image index: {e}")))?,
        )),
        OCI_MANIFEST | DOCKER_MANIFEST => Document::Manifest(Box::new(
            serde_json::from_value(value).map_err(|e| bad(format!("not a manifest: {e}")))?,
        )),
        other => {
            return Err(PullError::UnsupportedMediaType {
                what: what.to_string(),
                media_type: other.to_string(),
            })
        }
    };
    Ok((document, media_type))
}

/// Parses an image config.
pub fn config(bytes: &[u8], what: &str) -> Result<ImageConfiguration, PullError> {
    serde_json::from_slice(bytes).map_err(|e| PullError::BadManifest {
        what: what.to_string(),
        message: format!("not an image config: {e}"),
    })
}

/// Refuses a layer whose media type no unpacker knows, before anything is fetched.
pub fn check_layer(layer: &Descriptor) -> Result<(), PullError> {
    let media_type = layer.media_type().to_string();
    if LAYERS.contains(&media_type.as_str()) {
        Ok(())
    } else {
        Err(PullError::UnsupportedMediaType {
            what: format!("layer {}", layer.digest()),
            media_type,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_told_apart_with_or_without_a_media_type() {
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(parse(index, "x").unwrap(), (Document::Index(_), m) if m == OCI_INDEX));
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,
            "digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},"layers":[]}"#;
        assert!(
            matches!(parse(manifest, "x").unwrap(), (Document::Manifest(_), m) if m == DOCKER_MANIFEST)
        );
    }

    #[test]
    fn bad_documents_are_refused_by_name() {
        let e = parse(b"{not json", "manifest of r:t").unwrap_err();
        assert!(
            e.to_string().starts_with("manifest of r:t: not JSON"),
            "{e}"
        );
        let e = parse(br#"{"schemaVersion":1,"fsLayers":[]}"#, "m").unwrap_err();
        assert!(e.to_string().contains("schema 1"), "{e}");
        let e = parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, "m").unwrap_err();
        assert!(e.to_string().contains("text/plain"), "{e}");
    }

    #[test]
    fn unknown_layer_types_are_refused() {
        let layer: Descriptor = serde_json::from_value(serde_json::json!({
            "mediaType": "application/vnd.example.unknown",
            "digest": format!("sha256:{}", "a".repeat(64)),
            "size": 1
        }))
        .unwrap();
        let e = check_layer(&layer).unwrap_err();
        assert!(
            e.to_string().contains("application/vnd.example.unknown"),
            "{e}"
        );
    }
}
