//! The shim daemon: detached from whoever started it, a subreaper, serving the task API on the
//! socket `start` bound (handed over as its stdin) until a Shutdown finds no container left.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use ttrpc::asynchronous::transport::Listener;

use crate::args::Args;
use crate::container::Shim;
use crate::events::{self, Publisher};
use crate::logging::LineLogger;
use crate::reaper::Reaper;
use crate::service::TaskService;
use crate::socket;

/// How long the last events may take to reach the supervisor before the shim exits.
const FLUSH_LIMIT: Duration = Duration::from_secs(3);

/// Why the daemon could not serve.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("the listening socket (stdin): {0}")]
    Listener(io::Error),
    #[error("building the runtime: {0}")]
    Runtime(io::Error),
    #[error("starting the reaper: {0}")]
    Reaper(io::Error),
    #[error("serving ttrpc: {0}")]
    Serve(ttrpc::Error),
}

/// Runs the daemon until shutdown.
pub fn serve(args: Args) -> Result<(), DaemonError> {
    // A new session: signals to containerd's process group do not reach the shim.
    let _ = nix::unistd::setsid();
    init_logging(&args);
    let listener = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(UnixListener::from)
        .map_err(DaemonError::Listener)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    runtime.block_on(run(args, listener))
}

async fn run(args: Args, listener: UnixListener) -> Result<(), DaemonError> {
    let reaper = Reaper::start().map_err(DaemonError::Reaper)?;
    let state_dir = socket::state_dir();
    let socket_path = socket::socket_path(&state_dir, &args.address, &args.namespace, &args.id);
    let events = Publisher::start(args.namespace.clone(), events::ttrpc_address(&args.address));
    let shim = Shim::new(
        args.id.clone(),
        args.namespace.clone(),
        state_dir,
        reaper,
        events.clone(),
    );
    let mut shutdown = shim.shutdown_requested();
    listener
        .set_nonblocking(true)
        .map_err(DaemonError::Listener)?;
    let listener = Listener::try_from(listener).map_err(DaemonError::Listener)?;
    let mut server = ttrpc::asynchronous::Server::new()
        .add_listener(listener)
        .register_service(TaskService::new(shim).services());
    server.start().await.map_err(DaemonError::Serve)?;
    tracing::info!(id = %args.id, namespace = %args.namespace, "serving");
    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Runtime)?;
    tokio::select! {
        _ = shutdown.wait_for(|done| *done) => {}
        _ = sigterm.recv() => tracing::info!("SIGTERM"),
    }
    events.flush(FLUSH_LIMIT).await;
    // Lets the Shutdown reply go out before the connection is closed.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _ = server.shutdown().await;
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("shut down");
    Ok(())
}

/// Logs to the bundle's `log` FIFO, which containerd reads into its own log; nowhere if there
/// is none (the daemon has no stderr).
fn init_logging(args: &Args) {
    let fifo = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(PathBuf::from("log"));
    let Ok(fifo) = fifo else { return };
    let level = if args.debug {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    let context = format!("id={} namespace={}", args.id, args.namespace);
    let _ = tracing::subscriber::set_global_default(LineLogger::new(level, context, fifo));
}
