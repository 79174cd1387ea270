//! One task's shim as the manager holds it: its bundle, its client, its binary (for cleaning
//! up after it), and what is known of its fate.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::binary::ShimBinary;
use super::bundle::Bundle;
use super::client::ShimClient;

/// How long a call waits for the cleanup of a shim that died under it (`shim delete` may take
/// up to its own timeout).
const DEATH_TIMEOUT: Duration = Duration::from_secs(40);

/// How a task's init process ended, as a supervisor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: u32,
    pub status: u32,
    pub at: SystemTime,
}

/// A task's shim.
#[derive(Debug)]
pub struct Shim {
    pub bundle: Bundle,
    pub binary: ShimBinary,
    client: ShimClient,
    /// The init process's pid (0 until created).
    pid: AtomicU32,
    /// Set once the supervisor itself is taking the shim down: its connection closing is then
    /// expected, not a death to clean up after.
    deleting: AtomicBool,
    /// The exit the dead-shim cleanup reported, for calls that were waiting on the shim when it
    /// died.
    death: watch::Sender<Option<Exit>>,
    log: Mutex<Option<JoinHandle<()>>>,
}

impl Shim {
    pub fn new(bundle: Bundle, binary: ShimBinary, client: ShimClient) -> Self {
        Self {
            bundle,
            binary,
            client,
            pid: AtomicU32::new(0),
            deleting: AtomicBool::new(false),
            death: watch::channel(None).0,
            log: Mutex::new(None),
        }
    }

    pub fn namespace(&self) -> &str {
        &self.bundle.namespace
    }

    /// The task's id (its container's).
    pub fn id(&self) -> &str {
        &self.bundle.id
    }

    pub fn client(&self) -> &ShimClient {
        &self.client
    }

    /// The init process's pid.
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    pub fn set_pid(&self, pid: u32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    /// Marks the shim as being taken down on purpose; true if it already was.
    pub fn start_deleting(&self) -> bool {
        self.deleting.swap(true, Ordering::SeqCst)
    }

    pub fn is_deleting(&self) -> bool {
        self.deleting.load(Ordering::SeqCst)
    }

    /// Records the exit the dead-shim cleanup found.
    pub fn record_death(&self, exit: Exit) {
        self.death.send_replace(Some(exit));
    }

    /// The exit of a shim that died, once its cleanup has run (`None` if that takes longer
    /// than the cleanup may).
    pub async fn death(&self) -> Option<Exit> {
        let mut rx = self.death.subscribe();
        let exit = match tokio::time::timeout(DEATH_TIMEOUT, rx.wait_for(Option::is_some)).await {
            Ok(Ok(exit)) => *exit,
            _ => None,
        };
        exit
    }

    /// Keeps the copier of the shim's log, to stop it with the shim.
    pub fn set_log(&self, copier: JoinHandle<()>) {
        if let Ok(mut log) = self.log.lock() {
            if let Some(old) = log.replace(copier) {
                old.abort();
            }
        }
    }

    /// Stops copying the shim's log.
    pub fn stop_log(&self) {
        if let Ok(mut log) = self.log.lock() {
            if let Some(copier) = log.take() {
                copier.abort();
            }
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        self.stop_log();
    }
}
