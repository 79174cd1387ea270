//! keeld from start to stop, in order: open the engine's database (a bad data root fails
//! before anything is started), make sure a supervisor answers (starting keel-containerd if
//! none does), bind the API socket, serve until SIGTERM or SIGINT, then stop serving and stop
//! the supervisor keeld started.

use std::sync::Arc;

use tracing::info;

use crate::config::Config;
use crate::containerd::{Containerd, ContainerdError};
use crate::engine::{Engine, ENGINE_VERSION};
use crate::host::HostFacts;
use crate::server::{self, ServerError};
use crate::store::{Store, StoreError};
use crate::supervisor_process::{Supervisor, SupervisorError};

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The engine's database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bringing the supervisor up.
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// The supervisor's client.
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    /// The API socket.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The signal handlers cannot be installed.
    #[error("installing the signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Runs keeld with `config` until it is told to stop.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    info!(version = ENGINE_VERSION, data_root = %config.data_root.display(), "keeld starting");
    let store = Store::open(&config.data_root)?;
    let id = store.engine_id()?;
    let shutdown = shutdown_signal()?;
    let supervisor = Supervisor::ensure(&config).await?;
    let result = match prepare(config, store, id).await {
        Ok(serving) => {
            serving.run(shutdown).await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    supervisor.stop().await;
    info!("keeld stopped");
    result
}

/// Everything bound and ready to serve.
struct Serving {
    engine: Arc<Engine>,
    listener: tokio::net::UnixListener,
}

impl Serving {
    async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let path = self.engine.config.socket.clone();
        server::serve(self.engine, self.listener, &path, shutdown).await;
    }
}

async fn prepare(config: Config, store: Store, id: String) -> Result<Serving, DaemonError> {
    let containerd = Containerd::lazy(&config.containerd, &config.containerd_namespace)?;
    let listener = server::bind(&config.socket).await?;
    let engine = Engine {
        config,
        containerd,
        store,
        id,
        events: std::sync::Arc::new(crate::events::EventBus::new()),
        host: HostFacts::read(),
    };
    Ok(Serving {
        engine: Arc::new(engine),
        listener,
    })
}

/// Resolves on the first SIGTERM or SIGINT; installed before anything is started so that a
/// signal during startup is not lost.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    })
}
