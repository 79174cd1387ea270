//! When to collect, and the lock that keeps writers out while a collection runs: containerd's
//! gc scheduler (a collection soon after anything is deleted, one shortly after startup, one
//! on demand for a `sync` delete) and its metadata database's write lock.
//!
//! A collection reads the whole inventory, decides and removes under the lock held
//! exclusively; every call that changes content, snapshots, images, leases or containers holds
//! it shared ([`Collector::hold`]), so a multi-step change (a blob committed then added to its
//! lease) is never seen half done, and nothing is removed that a change just made referenced.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use super::sweep::{self, Removed};
use super::{collect, inventory, GcError};
use crate::supervisor::Supervisor;

/// containerd's scheduler startup delay.
const STARTUP_DELAY: Duration = Duration::from_millis(100);

/// Schedules collections and holds the collection lock.
#[derive(Debug, Default)]
pub struct Collector {
    lock: RwLock<()>,
    wake: Notify,
}

/// Keeps collections out while it lives.
pub type Hold<'a> = RwLockReadGuard<'a, ()>;

impl Collector {
    /// Held by a call while it changes what the collector reads (shared with other calls).
    pub fn hold(&self) -> Hold<'_> {
        // A poisoned lock only means a holder panicked; the data it guards is `()`.
        self.lock.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Something was deleted: a collection runs soon (a burst of deletes makes one).
    pub fn deleted(&self) {
        self.wake.notify_one();
    }

    /// Collects now, waiting for the lock (for `sync` deletes and Cleanup). The caller must
    /// not hold [`Collector::hold`].
    pub fn collect_now(&self, supervisor: &Supervisor) -> Result<Removed, GcError> {
        let _exclusive = self.lock.write().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let inventory = inventory::gather(supervisor)?;
        let garbage = collect(&inventory, SystemTime::now());
        let removed = sweep::sweep(supervisor, &garbage)?;
        tracing::debug!(d = ?started.elapsed(), ?removed, "garbage collected");
        Ok(removed)
    }

    /// Runs the scheduled collections until the process ends: one shortly after startup, then
    /// one after each wake-up.
    pub async fn run(supervisor: Arc<Supervisor>) {
        tokio::time::sleep(STARTUP_DELAY).await;
        loop {
            let sup = supervisor.clone();
            let done = tokio::task::spawn_blocking(move || sup.gc.collect_now(&sup)).await;
            match done {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!("garbage collection failed: {e}"),
                Err(e) => tracing::error!("garbage collection stopped: {e}"),
            }
            supervisor.gc.wake.notified().await;
        }
    }
}
