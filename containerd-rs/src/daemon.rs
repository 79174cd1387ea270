//! The daemon: the gRPC services on a unix socket (mode 0660), until SIGTERM or SIGINT.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use keel_proto::containers::containers_server::ContainersServer;
use keel_proto::content::content_server::ContentServer;
use keel_proto::diff::diff_server::DiffServer;
use keel_proto::event_service::events_server::EventsServer;
use keel_proto::images::images_server::ImagesServer;
use keel_proto::introspection::introspection_server::IntrospectionServer;
use keel_proto::leases::leases_server::LeasesServer;
use keel_proto::namespaces::namespaces_server::NamespacesServer;
use keel_proto::snapshots::snapshots_server::SnapshotsServer;
use keel_proto::tasks::tasks_server::TasksServer;
use keel_proto::version::version_server::VersionServer;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;

use crate::config::Config;
use crate::diff::ContentLayers;
use crate::grpc::containers::ContainersService;
use crate::grpc::content::ContentService;
use crate::grpc::diff::DiffService;
use crate::grpc::events::EventsService;
use crate::grpc::images::ImagesService;
use crate::grpc::introspection::IntrospectionService;
use crate::grpc::leases::LeasesService;
use crate::grpc::namespaces::NamespacesService;
use crate::grpc::snapshots::SnapshotsService;
use crate::grpc::tasks::TasksService;
use crate::grpc::version::VersionService;
use crate::runtime::EventsEndpoint;
use crate::supervisor::Supervisor;

/// Serves until SIGTERM or SIGINT, then removes the socket.
pub async fn run(config: Config) -> Result<()> {
    for dir in [&config.root, &config.state] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let address = config.address.clone();
    let supervisor = Arc::new(Supervisor::open(config).context("opening the metadata store")?);
    let listener = bind(&address).with_context(|| format!("listening on {}", address.display()))?;
    // Shims forward events here; up before recovery, so the ones found running can resend.
    let ttrpc_address = supervisor.config.ttrpc_address.clone();
    let endpoint = EventsEndpoint::start(&ttrpc_address, supervisor.events.clone())
        .await
        .with_context(|| format!("listening on {}", ttrpc_address.display()))?;
    supervisor.runtime.recover(&supervisor.store).await;
    let collector = tokio::spawn(crate::gc::Collector::run(supervisor.clone()));
    tracing::info!(address = %address.display(), "serving");
    let result = Server::builder()
        .add_service(VersionServer::new(VersionService))
        .add_service(NamespacesServer::new(NamespacesService::new(
            supervisor.clone(),
        )))
        .add_service(IntrospectionServer::new(IntrospectionService::new(
            supervisor.clone(),
        )))
        .add_service(ContainersServer::new(ContainersService::new(
            supervisor.clone(),
        )))
        .add_service(EventsServer::new(EventsService::new(supervisor.clone())))
        .add_service(LeasesServer::new(LeasesService::new(supervisor.clone())))
        .add_service(ImagesServer::new(ImagesService::new(supervisor.clone())))
        .add_service(TasksServer::new(TasksService::new(supervisor.clone())))
        .add_service(SnapshotsServer::new(SnapshotsService::new(
            supervisor.clone(),
        )))
        .add_service(
            ContentServer::new(ContentService::new(supervisor.clone()))
                .max_decoding_message_size(16 << 20)
                .max_encoding_message_size(16 << 20),
        )
        .add_service(DiffServer::new(DiffService::new(Arc::new(ContentLayers(
            supervisor.clone(),
        )))))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop_signal())
        .await;
    collector.abort();
    let _ = fs::remove_file(&address);
    endpoint.stop().await;
    let _ = fs::remove_file(&ttrpc_address);
    tracing::info!("stopped");
    result.context("serving gRPC")
}

/// Binds `path` (mode 0660); a socket file nobody answers on is replaced, a live one is an
/// error (another daemon serves it).
fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another daemon is serving this socket",
            ));
        }
        fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

async fn stop_signal() {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
}
