//! The engine's shared state, handed to every handler: its configuration, its client of the
//! supervisor, its own database and the facts about itself that do not change while it runs.

use crate::config::Config;
use crate::containerd::Containerd;
use crate::events::EventBus;
use crate::host::HostFacts;
use crate::store::Store;

/// Keel's version, reported as the server version.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What every request handler can reach.
#[derive(Debug)]
pub struct Engine {
    /// The settings keeld runs with.
    pub config: Config,
    /// The supervisor's client, namespace `keel`.
    pub containerd: Containerd,
    /// The engine's own records.
    pub store: Store,
    /// The engine's ID (made once, kept in the store).
    pub id: String,
    /// What happened, for `GET /events` (shared with streams that outlive a request, as a
    /// pull's).
    pub events: std::sync::Arc<EventBus>,
    /// The host, read once at start (kernel, CPUs, memory do not change under a daemon).
    pub host: HostFacts,
}
