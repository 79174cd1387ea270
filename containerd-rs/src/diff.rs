//! containerd's diff service: applies layers onto mounts (Apply) and computes a layer from two
//! mounts (Diff), as containerd 1.6's `diff/apply` and `diff/walking`. The unpacker ([`unpack`]) is
//! a plain library function, safe against hostile layers; blobs are read and stored through
//! [`LayerStore`], so this module does not depend on how content is stored.

pub mod apply;
pub mod compare;
pub mod compression;
pub mod layer_writer;
pub mod mounts;
pub mod store;
mod sys;
pub mod unpack;

pub use store::{ContentLayers, LayerStore};

/// The OCI media type of an uncompressed layer: what Apply answers as the applied descriptor.
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// The label containerd puts on a compressed layer naming its uncompressed digest.
pub const UNCOMPRESSED_LABEL: &str = "containerd.io/uncompressed";

/// A layer blob: what Apply reads and Diff answers (containerd's OCI descriptor, the parts used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// A mount, as containerd's `types.Mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Why a diff operation failed, with the kind containerd's errdefs would give it.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A blob the store does not have (containerd: NotFound).
    #[error("failed to get reader from content store: content digest {0}: not found")]
    BlobNotFound(String),
    /// A media type Apply has no processor for (containerd answers Unknown).
    #[error("failed to get stream processor for {0}: no processor for media-type")]
    NoProcessor(String),
    /// A media type Diff cannot write (containerd: NotImplemented).
    #[error("unsupported diff media type: {0}: not implemented")]
    UnsupportedMediaType(String),
    /// Bad mounts or arguments (containerd: InvalidArgument).
    #[error("{0}")]
    InvalidArgument(String),
    /// The layer could not be applied.
    #[error("failed to apply layer: {0}")]
    Unpack(#[from] unpack::UnpackError),
    /// Mounting, reading or storing failed.
    #[error("{op}: {source}")]
    Io { op: String, source: std::io::Error },
}

impl DiffError {
    /// An I/O failure while doing `op`.
    pub fn io(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> DiffError {
        let op = op.into();
        move |source| DiffError::Io { op, source }
    }
}
