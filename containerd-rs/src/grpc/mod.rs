//! The gRPC side: one thin adapter per containerd service, converting requests and answers and
//! mapping errors to containerd's codes. The logic lives in the crate's other modules.

pub mod containers;
pub mod content;
pub mod diff;
pub mod events;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespaces;
pub mod snapshots;
pub mod tasks;
pub mod version;

use std::time::SystemTime;

use tonic::{Request, Status};

use crate::identifiers;
use crate::metadata::MetadataError;

/// The namespace of a call, from the `containerd-namespace` header; containerd refuses calls
/// without one as a failed precondition.
pub fn namespace<T>(request: &Request<T>) -> Result<String, Status> {
    let value = request
        .metadata()
        .get(keel_proto::NAMESPACE_METADATA_KEY)
        .ok_or_else(|| Status::failed_precondition("namespace is required"))?;
    let namespace = value
        .to_str()
        .map_err(|_| Status::invalid_argument("namespace header is not text"))?;
    identifiers::validate(namespace)
        .map_err(|e| Status::invalid_argument(format!("namespace {namespace:?}: {e}")))?;
    Ok(namespace.to_string())
}

/// The lease a call works under, from the `containerd-lease` header: what it creates (content,
/// ingests, snapshots) is added to that lease.
pub fn lease<T>(request: &Request<T>) -> Result<Option<String>, Status> {
    let Some(value) = request.metadata().get(LEASE_METADATA_KEY) else {
        return Ok(None);
    };
    let lease = value
        .to_str()
        .map_err(|_| Status::invalid_argument("lease header is not text"))?;
    Ok(Some(lease.to_string()))
}

/// The gRPC metadata key that carries the lease of a call.
pub const LEASE_METADATA_KEY: &str = "containerd-lease";

/// containerd's errdefs on the wire.
pub fn status(e: MetadataError) -> Status {
    match e {
        MetadataError::NotFound(m) => Status::not_found(m),
        MetadataError::AlreadyExists(m) => Status::already_exists(m),
        MetadataError::FailedPrecondition(m) => Status::failed_precondition(m),
        MetadataError::InvalidArgument(m) => Status::invalid_argument(m),
        MetadataError::Storage(m) => Status::internal(m),
    }
}

/// A protobuf timestamp.
pub fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(at)
}

/// A collection failure on the wire (containerd answers Unknown with its message).
pub fn gc_status(e: crate::gc::GcError) -> Status {
    Status::unknown(format!("garbage collection failed: {e}"))
}

/// Runs a collection now, off the async threads (for `sync` deletes).
pub async fn collect_now(
    supervisor: &std::sync::Arc<crate::supervisor::Supervisor>,
) -> Result<(), Status> {
    let sup = supervisor.clone();
    tokio::task::spawn_blocking(move || sup.gc.collect_now(&sup))
        .await
        .map_err(|e| Status::internal(format!("garbage collection: {e}")))?
        .map(drop)
        .map_err(gc_status)
}
