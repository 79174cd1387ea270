//! `containerd.services.version.v1.Version`.

use keel_proto::version::version_server::Version;
use keel_proto::version::VersionResponse;
use tonic::{Request, Response, Status};

/// The version containerd clients see: our crate's, prefixed so `ctr version` says whose.
#[derive(Debug, Default, Clone)]
pub struct VersionService;

/// What `Version` answers.
pub const VERSION: &str = concat!("keel-", env!("CARGO_PKG_VERSION"));

#[tonic::async_trait]
impl Version for VersionService {
    async fn version(&self, _request: Request<()>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: VERSION.to_string(),
            revision: String::new(),
        }))
    }
}
