//! The runtime v2 manager, containerd's `io.containerd.runtime.v2.task` plugin: one shim per
//! task, started from the container's runtime name (`io.containerd.keel.v2` →
//! `containerd-shim-keel-v2` on PATH), driven over ttrpc with the `containerd.task.v2.Task`
//! API, cleaned up after when it dies, and found again when the supervisor restarts. Shims
//! send their task events back to the ttrpc endpoint ([`events_endpoint`]).

pub mod binary;
pub mod bundle;
pub mod client;
pub mod connection;
pub mod events_endpoint;
pub mod manager;
pub mod protos;
mod recovery;
pub mod shim;
mod shim_log;

pub use client::{ShimClient, ShimError};
pub use events_endpoint::EventsEndpoint;
pub use manager::{CreateOpts, Manager};
pub use shim::{Exit, Shim};

/// Why the manager could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime name gives no shim binary.
    #[error("{0}")]
    InvalidRuntime(String),
    /// The shim binary is not installed.
    #[error("{0}")]
    BinaryNotFound(String),
    #[error("task {0:?} already exists")]
    AlreadyExists(String),
    #[error("bundle of task {id:?}: {source}")]
    Bundle { id: String, source: std::io::Error },
    /// Running the shim binary (`start`, `delete`) failed.
    #[error("{what}: {message}")]
    Start { what: String, message: String },
    #[error(transparent)]
    Shim(#[from] ShimError),
    /// A bug or a panic on our side.
    #[error("{0}")]
    Internal(String),
}
