//! `containerd.services.introspection.v1.Introspection`: the plugins this supervisor has (in
//! containerd's plugin types and ids, so clients that look for a service find it) and a stable
//! server uuid.

use std::sync::Arc;

use keel_proto::introspection::introspection_server::Introspection;
use keel_proto::introspection::{Plugin, PluginsRequest, PluginsResponse, ServerResponse};
use tonic::{Request, Response, Status};

use crate::filters::{Fields, Filter};
use crate::supervisor::Supervisor;

/// The plugins served, as (type, id).
const PLUGINS: &[(&str, &str)] = &[
    ("io.containerd.grpc.v1", "version"),
    ("io.containerd.grpc.v1", "namespaces"),
    ("io.containerd.grpc.v1", "introspection"),
    ("io.containerd.grpc.v1", "containers"),
    ("io.containerd.grpc.v1", "events"),
    ("io.containerd.grpc.v1", "leases"),
    ("io.containerd.lease.v1", "manager"),
    ("io.containerd.metadata.v1", "redb"),
    ("io.containerd.event.v1", "exchange"),
];

#[derive(Debug, Clone)]
pub struct IntrospectionService {
    supervisor: Arc<Supervisor>,
}

impl IntrospectionService {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self { supervisor }
    }
}

impl Fields for Plugin {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "type" => Some(self.r#type.clone()),
            [f] if f == "id" => Some(self.id.clone()),
            _ => None,
        }
    }
}

/// Every plugin this supervisor has.
pub fn plugins() -> Vec<Plugin> {
    PLUGINS
        .iter()
        .map(|(t, id)| Plugin {
            r#type: t.to_string(),
            id: id.to_string(),
            ..Default::default()
        })
        .collect()
}

#[tonic::async_trait]
impl Introspection for IntrospectionService {
    async fn plugins(
        &self,
        request: Request<PluginsRequest>,
    ) -> Result<Response<PluginsResponse>, Status> {
        let filter = Filter::parse_all(&request.into_inner().filters)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let plugins = plugins()
            .into_iter()
            .filter(|p| filter.matches(p))
            .collect();
        Ok(Response::new(PluginsResponse { plugins }))
    }

    async fn server(&self, _request: Request<()>) -> Result<Response<ServerResponse>, Status> {
        Ok(Response::new(ServerResponse {
            uuid: self.supervisor.uuid.clone(),
        }))
    }
}
