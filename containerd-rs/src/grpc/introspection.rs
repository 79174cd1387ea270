//! `containerd.services.introspection.v1.Introspection`: the plugins this supervisor has (in
//! containerd's plugin types and ids, so clients that look for a service find it) and a stable
//! server uuid.

use std::sync::Arc;

use keel_proto::introspection::introspection_server::Introspection;
use keel_proto::introspection::{Plugin, PluginsRequest, PluginsResponse, ServerResponse};
use tonic::{Request, Response, Status};

use crate::filters::{Fields, Filter};
use crate::supervisor::Supervisor;

/// The plugins this supervisor always has, as (type, id); the snapshotters are added as found.
const PLUGINS: &[(&str, &str)] = &[
    ("io.containerd.content.v1", "content"),
    ("io.containerd.metadata.v1", "redb"),
    ("io.containerd.differ.v1", "walking"),
    ("io.containerd.event.v1", "exchange"),
    ("io.containerd.gc.v1", "scheduler"),
    ("io.containerd.runtime.v2", "task"),
    ("io.containerd.service.v1", "containers-service"),
    ("io.containerd.service.v1", "content-service"),
    ("io.containerd.service.v1", "diff-service"),
    ("io.containerd.service.v1", "images-service"),
    ("io.containerd.service.v1", "leases-service"),
    ("io.containerd.service.v1", "namespaces-service"),
    ("io.containerd.service.v1", "snapshots-service"),
    ("io.containerd.service.v1", "tasks-service"),
    ("io.containerd.grpc.v1", "containers"),
    ("io.containerd.grpc.v1", "content"),
    ("io.containerd.grpc.v1", "diff"),
    ("io.containerd.grpc.v1", "events"),
    ("io.containerd.grpc.v1", "images"),
    ("io.containerd.grpc.v1", "introspection"),
    ("io.containerd.grpc.v1", "leases"),
    ("io.containerd.grpc.v1", "namespaces"),
    ("io.containerd.grpc.v1", "snapshots"),
    ("io.containerd.grpc.v1", "tasks"),
    ("io.containerd.grpc.v1", "version"),
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

/// Every plugin this supervisor has: the fixed ones, and each snapshotter that works here
/// (with its root exported, as containerd does), so a client looking for `overlayfs` finds it
/// only where it can be used.
pub fn plugins(supervisor: &Supervisor) -> Vec<Plugin> {
    let plugin = |t: &str, id: &str| Plugin {
        r#type: t.to_string(),
        id: id.to_string(),
        ..Default::default()
    };
    let mut all: Vec<Plugin> = PLUGINS.iter().map(|(t, id)| plugin(t, id)).collect();
    for name in supervisor.snapshotters.names() {
        let mut snapshotter = plugin("io.containerd.snapshotter.v1", name);
        let root = supervisor
            .config
            .root
            .join(format!("io.containerd.snapshotter.v1.{name}"));
        snapshotter
            .exports
            .insert("root".into(), root.display().to_string());
        all.push(snapshotter);
    }
    all
}

#[tonic::async_trait]
impl Introspection for IntrospectionService {
    async fn plugins(
        &self,
        request: Request<PluginsRequest>,
    ) -> Result<Response<PluginsResponse>, Status> {
        let filter = Filter::parse_all(&request.into_inner().filters)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let plugins = plugins(&self.supervisor)
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
