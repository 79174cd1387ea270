//! keel-proto: containerd 1.6's gRPC API as Keel's own `.proto` files (in `proto/`), compiled
//! with prost and tonic into messages, clients and servers.
//!
//! Package, service, method and message names and field numbers are containerd's, so
//! containerd's clients (`ctr`, the `containerd-client` crate) talk to Keel's servers and Keel's
//! clients talk to containerd. Modules nest as the protobuf packages do
//! (`containerd::services::tasks::v1`); the short aliases below name the ones used most.
//! The well-known `google.protobuf` types are `prost_types`'.

pub mod any;
pub mod topics;

/// Generated code, one module per protobuf package. Lints are prost's and tonic's business;
/// rustdoc still checks the doc comments, which come from our `.proto` files.
#[allow(clippy::all, clippy::pedantic, clippy::unwrap_used)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/containerd_api.rs"));
}

pub use generated::{containerd, google};
pub use {prost, prost_types, tonic};

/// `containerd.events`: the events shims and services publish (image events are in
/// [`images`], where containerd declares them).
pub use containerd::events;
/// `containerd.types`: Mount, Descriptor, Metric, Platform.
pub use containerd::types;
/// `containerd.v1.types`: the task Status enum, Process, ProcessInfo.
pub use containerd::v1::types as task_types;

pub use containerd::services::containers::v1 as containers;
pub use containerd::services::content::v1 as content;
pub use containerd::services::diff::v1 as diff;
pub use containerd::services::events::v1 as event_service;
pub use containerd::services::images::v1 as images;
pub use containerd::services::introspection::v1 as introspection;
pub use containerd::services::leases::v1 as leases;
pub use containerd::services::namespaces::v1 as namespaces;
pub use containerd::services::snapshots::v1 as snapshots;
pub use containerd::services::tasks::v1 as tasks;
pub use containerd::services::version::v1 as version;

/// The gRPC metadata key that carries the namespace of a call.
pub const NAMESPACE_METADATA_KEY: &str = "containerd-namespace";

/// The encoded `google.protobuf.FileDescriptorSet` of every `.proto` file in this crate,
/// services included (for gRPC reflection and for comparing with containerd's definitions).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/file_descriptor_set.bin"));
