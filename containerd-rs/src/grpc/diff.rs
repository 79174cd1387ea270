//! `containerd.services.diff.v1.Diff` over [`crate::diff`]. The work (unpacking, walking trees,
//! compressing) is blocking, so each call runs on tokio's blocking pool.

use std::sync::Arc;

use keel_proto::diff::diff_server::Diff;
use keel_proto::diff::{ApplyRequest, ApplyResponse, DiffRequest, DiffResponse};
use tonic::{Request, Response, Status};

use super::{lease, namespace};
use crate::diff::{self, DiffError, LayerStore};

/// The diff service over a content store.
#[derive(Clone)]
pub struct DiffService {
    store: Arc<dyn LayerStore>,
}

impl DiffService {
    pub fn new(store: Arc<dyn LayerStore>) -> Self {
        Self { store }
    }
}

/// containerd's errdefs on the wire; errors without a kind are Unknown, as containerd's
/// `errdefs.ToGRPC` leaves them.
fn diff_status(e: DiffError) -> Status {
    match e {
        e @ DiffError::BlobNotFound(_) => Status::not_found(e.to_string()),
        e @ DiffError::UnsupportedMediaType(_) => Status::unimplemented(e.to_string()),
        e @ DiffError::InvalidArgument(_) => Status::invalid_argument(e.to_string()),
        e => Status::unknown(e.to_string()),
    }
}

fn mounts(mounts: Vec<keel_proto::types::Mount>) -> Vec<diff::Mount> {
    mounts
        .into_iter()
        .map(|m| diff::Mount {
            kind: m.r#type,
            source: m.source,
            options: m.options,
        })
        .collect()
}

fn descriptor(d: diff::Descriptor) -> keel_proto::types::Descriptor {
    keel_proto::types::Descriptor {
        media_type: d.media_type,
        digest: d.digest,
        size: i64::try_from(d.size).unwrap_or(i64::MAX),
        ..Default::default()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DiffError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map_err(diff_status),
        Err(e) => Err(Status::internal(format!("diff worker failed: {e}"))),
    }
}

#[tonic::async_trait]
impl Diff for DiffService {
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        let ns = namespace(&request)?;
        let request = request.into_inner();
        let desc = request
            .diff
            .ok_or_else(|| Status::invalid_argument("diff descriptor is required"))?;
        let desc = diff::Descriptor {
            media_type: desc.media_type,
            digest: desc.digest,
            size: u64::try_from(desc.size).unwrap_or(0),
        };
        let mounts = mounts(request.mounts);
        let store = self.store.clone();
        let applied =
            blocking(move || diff::apply::apply(store.as_ref(), &ns, &desc, &mounts)).await?;
        Ok(Response::new(ApplyResponse {
            applied: Some(descriptor(applied)),
        }))
    }

    async fn diff(&self, request: Request<DiffRequest>) -> Result<Response<DiffResponse>, Status> {
        let ns = namespace(&request)?;
        let lease = lease(&request)?;
        let request = request.into_inner();
        let request = diff::compare::DiffRequest {
            left: mounts(request.left),
            right: mounts(request.right),
            media_type: request.media_type,
            labels: request.labels.into_iter().collect(),
            lease,
        };
        let store = self.store.clone();
        let layer = blocking(move || diff::compare::diff(store.as_ref(), &ns, &request)).await?;
        Ok(Response::new(DiffResponse {
            diff: Some(descriptor(layer)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn errors_keep_containerds_codes() {
        assert_eq!(
            diff_status(DiffError::BlobNotFound("sha256:x".into())).code(),
            Code::NotFound
        );
        assert_eq!(
            diff_status(DiffError::UnsupportedMediaType("x".into())).code(),
            Code::Unimplemented
        );
        assert_eq!(
            diff_status(DiffError::InvalidArgument("x".into())).code(),
            Code::InvalidArgument
        );
        let status = diff_status(DiffError::NoProcessor("application/x".into()));
        assert_eq!(status.code(), Code::Unknown);
        assert_eq!(
            status.message(),
            "failed to get stream processor for application/x: no processor for media-type"
        );
    }
}
