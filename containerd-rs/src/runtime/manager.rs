//! The runtime v2 manager: the tasks of every namespace, one shim each. It starts a shim for a
//! new task (bundle, `shim start`, ttrpc connection, Create), takes it down when the task is
//! deleted (Delete, Shutdown, bundle removed), and cleans up after a shim that dies under it
//! (`shim delete`, then the TaskExit and TaskDelete events the shim could no longer send), as
//! containerd 1.6's `TaskManager` does.
//!
//! The task map is only locked for lookups and updates, never across a call to a shim: calls
//! like Wait block for as long as the process runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use containerd_shim_protos::api::{CreateTaskRequest, DeleteRequest, KillRequest, ShutdownRequest};
use containerd_shim_protos::protobuf::well_known_types::any::Any as ShimAny;
use keel_proto::events::{TaskDelete, TaskExit};
use keel_proto::prost::{Message, Name};
use keel_proto::topics;
use tracing::Instrument;

use super::binary::{self, ShimBinary};
use super::bundle::Bundle;
use super::client::{ShimClient, ShimError};
use super::connection;
use super::protos;
use super::shim::{Exit, Shim};
use super::{shim_log, RuntimeError};
use crate::config::Config;
use crate::events::{Envelope, Exchange};

/// How long a shim may take to shut down, and to answer the calls of a teardown.
pub(super) const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// containerd's exit status for a task whose shim died and could not say how it ended.
const UNKNOWN_EXIT: u32 = 255;

type Key = (String, String);

#[derive(Debug)]
enum Entry {
    /// Being created: the id is taken, but there is no task to call yet.
    Creating,
    Running(Arc<Shim>),
}

/// What a new task is made of.
#[derive(Debug, Clone)]
pub struct CreateOpts {
    /// The container's runtime name, or a shim binary's absolute path.
    pub runtime: String,
    /// The OCI spec, JSON (the bundle's `config.json`).
    pub spec: Vec<u8>,
    /// The shim's Create request; the manager fills in the id and the bundle.
    pub request: CreateTaskRequest,
}

/// The tasks and their shims.
#[derive(Debug, Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) root: PathBuf,
    pub(super) state: PathBuf,
    address: PathBuf,
    ttrpc_address: PathBuf,
    debug: bool,
    events: Exchange,
    tasks: Mutex<HashMap<Key, Entry>>,
}

fn key(namespace: &str, id: &str) -> Key {
    (namespace.to_string(), id.to_string())
}

impl Manager {
    /// A manager with no tasks, for the daemon `config` describes; it publishes on `events`.
    pub fn new(config: &Config, events: Exchange) -> Self {
        Self {
            inner: Arc::new(Inner {
                root: config.root.clone(),
                state: config.state.clone(),
                address: config.address.clone(),
                ttrpc_address: config.ttrpc_address.clone(),
                debug: matches!(config.log_level.as_str(), "debug" | "trace"),
                events,
                tasks: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub(super) fn inner(&self) -> &Inner {
        &self.inner
    }

    fn tasks(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        // A panic elsewhere while holding the lock leaves the map itself consistent.
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The task `namespace/id`, if it exists.
    pub fn get(&self, namespace: &str, id: &str) -> Option<Arc<Shim>> {
        match self.tasks().get(&key(namespace, id)) {
            Some(Entry::Running(shim)) => Some(shim.clone()),
            _ => None,
        }
    }

    /// Every task of `namespace`, by id.
    pub fn list(&self, namespace: &str) -> Vec<Arc<Shim>> {
        let mut shims: Vec<Arc<Shim>> = self
            .tasks()
            .iter()
            .filter_map(|((ns, _), entry)| match entry {
                Entry::Running(shim) if ns == namespace => Some(shim.clone()),
                _ => None,
            })
            .collect();
        shims.sort_by(|a, b| a.id().cmp(b.id()));
        shims
    }

    /// The binary invocation for a task's shim at `path`.
    pub(super) fn shim_binary(&self, path: PathBuf, namespace: &str, id: &str) -> ShimBinary {
        ShimBinary {
            path,
            namespace: namespace.to_string(),
            id: id.to_string(),
            address: self.inner.address.clone(),
            ttrpc_address: self.inner.ttrpc_address.clone(),
            debug: self.inner.debug,
        }
    }

    /// Starts a shim for the task `namespace/id` and creates its init process; returns the
    /// task. A failure leaves no shim, bundle or task behind.
    pub async fn create(
        &self,
        namespace: &str,
        id: &str,
        opts: CreateOpts,
    ) -> Result<Arc<Shim>, RuntimeError> {
        {
            let mut tasks = self.tasks();
            if tasks.contains_key(&key(namespace, id)) {
                return Err(RuntimeError::AlreadyExists(id.to_string()));
            }
            tasks.insert(key(namespace, id), Entry::Creating);
        }
        // Run to the end even if the caller goes away (a cancelled gRPC call drops its
        // future): half a create would leave the id taken and a shim running.
        let manager = self.clone();
        let (ns, task_id) = (namespace.to_string(), id.to_string());
        let creating = tokio::spawn(
            async move {
                let result = manager.start_and_create(&ns, &task_id, opts).await;
                let mut tasks = manager.tasks();
                match &result {
                    Ok(shim) => {
                        tasks.insert(key(&ns, &task_id), Entry::Running(shim.clone()));
                    }
                    Err(_) => {
                        tasks.remove(&key(&ns, &task_id));
                    }
                }
                result
            }
            .instrument(tracing::Span::current()),
        );
        creating
            .await
            .map_err(|e| RuntimeError::Internal(format!("creating task {id:?}: {e}")))?
    }

    async fn start_and_create(
        &self,
        namespace: &str,
        id: &str,
        opts: CreateOpts,
    ) -> Result<Arc<Shim>, RuntimeError> {
        let path = binary::resolve_here(&opts.runtime)?;
        let binary = self.shim_binary(path, namespace, id);
        let bundle = Bundle::create(
            &self.inner.root,
            &self.inner.state,
            namespace,
            id,
            &opts.spec,
        )
        .map_err(|source| RuntimeError::Bundle {
            id: id.to_string(),
            source,
        })?;
        let shim = match self.start_shim(bundle.clone(), binary, &opts).await {
            Ok(shim) => shim,
            Err(e) => {
                if let Err(err) = bundle.delete() {
                    tracing::warn!(%namespace, %id, "removing the bundle: {err}");
                }
                return Err(e);
            }
        };
        let mut request = opts.request;
        request.id = id.to_string();
        request.bundle = bundle.path.display().to_string();
        match shim.client().create(&request, None).await {
            Ok(created) => {
                shim.set_pid(created.pid);
                Ok(shim)
            }
            Err(e) => {
                self.teardown(&shim).await;
                Err(e.into())
            }
        }
    }

    /// `shim start` in the bundle, the connection to it, and the watch on it.
    async fn start_shim(
        &self,
        bundle: Bundle,
        binary: ShimBinary,
        opts: &CreateOpts,
    ) -> Result<Arc<Shim>, RuntimeError> {
        let (namespace, id) = (bundle.namespace.clone(), bundle.id.clone());
        let log = match shim_log::copy(&bundle.log(), &namespace, &id) {
            Ok(copier) => Some(copier),
            Err(e) => {
                tracing::warn!(%namespace, %id, "not copying the shim's log: {e}");
                None
            }
        };
        let options: Option<ShimAny> = opts.request.options.as_ref().cloned();
        let address = match binary.start(&bundle.path, options.as_ref()).await {
            Ok(address) => address,
            Err(e) => {
                if let Some(log) = log {
                    log.abort();
                }
                return Err(e);
            }
        };
        if let Err(e) = bundle.save_shim_binary(&binary.path) {
            tracing::warn!(%namespace, %id, "recording the shim binary in the bundle: {e}");
        }
        let client = match ShimClient::dial(&address, &namespace).await {
            Ok(client) => client,
            Err(e) => {
                // A shim we cannot talk to: its `delete` undoes what it may have made.
                if let Some(log) = log {
                    log.abort();
                }
                if let Err(err) = binary.delete(&bundle.path).await {
                    tracing::warn!(%namespace, %id, "cleaning up the shim: {err}");
                }
                return Err(e.into());
            }
        };
        tracing::debug!(%namespace, %id, %address, "shim started");
        let shim = Arc::new(Shim::new(bundle, binary, client));
        if let Some(log) = log {
            shim.set_log(log);
        }
        self.watch(&shim);
        Ok(shim)
    }

    /// Registers a shim found running (restart recovery).
    pub(super) fn adopt(&self, shim: Arc<Shim>) {
        self.watch(&shim);
        self.tasks().insert(
            key(shim.namespace(), shim.id()),
            Entry::Running(shim.clone()),
        );
    }

    /// Deletes the task's init process and takes its shim down; answers how it exited. A task
    /// still running stays, with the shim's error (FailedPrecondition).
    pub async fn delete(&self, shim: &Arc<Shim>) -> Result<Exit, RuntimeError> {
        // Like create, run to the end even if the caller goes away.
        let (manager, task) = (self.clone(), shim.clone());
        tokio::spawn(
            async move { manager.delete_task(&task).await }.instrument(tracing::Span::current()),
        )
        .await
        .map_err(|e| RuntimeError::Internal(format!("deleting task {:?}: {e}", shim.id())))?
    }

    async fn delete_task(&self, shim: &Arc<Shim>) -> Result<Exit, RuntimeError> {
        let mut request = DeleteRequest::new();
        request.id = shim.id().to_string();
        let deleted = match shim.client().delete(&request, None).await {
            Ok(deleted) => Ok(deleted),
            Err(ShimError::Closed) => {
                // It died under us: its cleanup reports the exit (and publishes the events).
                return shim.death().await.ok_or(ShimError::Closed.into());
            }
            // The shim no longer has the task: take it down all the same, as containerd does.
            Err(e) if e.code() == Some(ttrpc::Code::NOT_FOUND) => Err(e),
            Err(e) => return Err(e.into()),
        };
        shim.start_deleting();
        self.remove(shim);
        // As containerd 1.6: the Shutdown answer is enough; the shim's exit is its business.
        self.shutdown(shim, false).await;
        shim.stop_log();
        if let Err(e) = shim.bundle.delete() {
            tracing::warn!(
                namespace = shim.namespace(),
                id = shim.id(),
                "removing the bundle: {e}"
            );
        }
        let deleted = deleted?;
        Ok(Exit {
            pid: deleted.pid,
            status: deleted.exit_status,
            at: protos::system_time(&deleted.exited_at),
        })
    }

    /// Takes down a shim whose task is not wanted (a failed create, an orphan): every process
    /// killed, the task deleted, the shim shut down, the bundle removed. Best effort.
    pub(super) async fn teardown(&self, shim: &Arc<Shim>) {
        shim.start_deleting();
        self.remove(shim);
        let mut kill = KillRequest::new();
        kill.id = shim.id().to_string();
        kill.signal = 9;
        kill.all = true;
        let _ = shim.client().kill(&kill, Some(SHUTDOWN_TIMEOUT)).await;
        let mut request = DeleteRequest::new();
        request.id = shim.id().to_string();
        if let Err(e) = shim.client().delete(&request, Some(SHUTDOWN_TIMEOUT)).await {
            tracing::debug!(
                namespace = shim.namespace(),
                id = shim.id(),
                "deleting the task: {e}"
            );
        }
        self.shutdown(shim, true).await;
        if !shim.client().closed().is_closed() {
            // Still there: its own `delete` forces the container down.
            if let Err(e) = shim.binary.delete(&shim.bundle.path).await {
                tracing::warn!(namespace = shim.namespace(), id = shim.id(), "{e}");
            }
        }
        shim.stop_log();
        if let Err(e) = shim.bundle.delete() {
            tracing::warn!(
                namespace = shim.namespace(),
                id = shim.id(),
                "removing the bundle: {e}"
            );
        }
    }

    /// Asks the shim to exit; with `wait`, waits (a little) for its connection to close.
    async fn shutdown(&self, shim: &Shim, wait: bool) {
        let mut request = ShutdownRequest::new();
        request.id = shim.id().to_string();
        match shim
            .client()
            .shutdown(&request, Some(SHUTDOWN_TIMEOUT))
            .await
        {
            Ok(_) | Err(ShimError::Closed) => {}
            Err(e) => tracing::warn!(
                namespace = shim.namespace(),
                id = shim.id(),
                "shutting the shim down: {e}"
            ),
        }
        if !wait {
            return;
        }
        let mut closed = shim.client().closed();
        if tokio::time::timeout(SHUTDOWN_TIMEOUT, closed.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                namespace = shim.namespace(),
                id = shim.id(),
                "the shim is still running after Shutdown"
            );
        }
    }

    /// Removes `shim` from the map if it is still there; true if it was.
    fn remove(&self, shim: &Arc<Shim>) -> bool {
        let mut tasks = self.tasks();
        let k = key(shim.namespace(), shim.id());
        match tasks.get(&k) {
            Some(Entry::Running(held)) if Arc::ptr_eq(held, shim) => {
                tasks.remove(&k);
                true
            }
            _ => false,
        }
    }

    /// Cleans up after the shim when its connection closes, unless we are the ones closing
    /// it. Holds the shim weakly: a shim dropped by the manager needs no watching.
    fn watch(&self, shim: &Arc<Shim>) {
        let mut closed = shim.client().closed();
        let weak: Weak<Shim> = Arc::downgrade(shim);
        let manager = self.clone();
        tokio::spawn(async move {
            closed.wait().await;
            let Some(shim) = weak.upgrade() else {
                return;
            };
            if !shim.is_deleting() {
                manager.cleanup_dead(&shim).await;
            }
        });
    }

    /// containerd's `cleanupAfterDeadShim`: `shim delete` (which force-deletes the container
    /// and reports an exit), the bundle removed, and, if the task was still ours, TaskExit and
    /// TaskDelete published.
    async fn cleanup_dead(&self, shim: &Arc<Shim>) {
        let (namespace, id) = (shim.namespace().to_string(), shim.id().to_string());
        tracing::warn!(%namespace, %id, "shim disconnected; cleaning up after it");
        shim.start_deleting();
        let exit = self.delete_dead(&shim.binary, &shim.bundle).await;
        shim.stop_log();
        let mut exit = exit.unwrap_or(Exit {
            pid: 0,
            status: UNKNOWN_EXIT,
            at: SystemTime::now(),
        });
        if exit.pid == 0 {
            // Not every shim's `delete` knows the pid; we do.
            exit.pid = shim.pid();
        }
        if self.remove(shim) {
            self.publish_exit(&namespace, &id, exit);
        }
        shim.record_death(exit);
    }

    /// Runs the shim's `delete` for a shim that is gone and removes the bundle; the exit it
    /// reports, if it could.
    pub(super) async fn delete_dead(&self, binary: &ShimBinary, bundle: &Bundle) -> Option<Exit> {
        let exit = match binary.delete(&bundle.path).await {
            Ok(deleted) => Some(Exit {
                pid: deleted.pid,
                status: deleted.exit_status,
                at: protos::system_time(&deleted.exited_at),
            }),
            Err(e) => {
                tracing::warn!(namespace = %bundle.namespace, id = %bundle.id, "{e}");
                None
            }
        };
        remove_dead_socket(bundle);
        if let Err(e) = bundle.delete() {
            tracing::warn!(namespace = %bundle.namespace, id = %bundle.id, "removing the bundle: {e}");
        }
        exit
    }

    /// What containerd publishes for a task whose shim died: TaskExit, then TaskDelete.
    pub(super) fn publish_exit(&self, namespace: &str, id: &str, exit: Exit) {
        let exited_at = Some(prost_types::Timestamp::from(exit.at));
        self.publish(
            namespace,
            topics::TASK_EXIT,
            &TaskExit {
                container_id: id.to_string(),
                id: id.to_string(),
                pid: exit.pid,
                exit_status: exit.status,
                exited_at,
            },
        );
        self.publish(
            namespace,
            topics::TASK_DELETE,
            &TaskDelete {
                container_id: id.to_string(),
                pid: exit.pid,
                exit_status: exit.status,
                exited_at,
                id: String::new(),
            },
        );
    }

    fn publish<M: Message + Name>(&self, namespace: &str, topic: &str, event: &M) {
        let any = keel_proto::any::pack(event);
        let envelope = Envelope {
            timestamp: SystemTime::now(),
            namespace: namespace.to_string(),
            topic: topic.to_string(),
            type_url: any.type_url,
            payload: any.value,
        };
        if let Err(e) = self.inner.events.publish(envelope) {
            tracing::error!("{e}");
        }
    }
}

/// Removes the socket of a dead shim (the stock shims' `delete` leaves it), if nothing serves
/// it any more.
fn remove_dead_socket(bundle: &Bundle) {
    let Ok(address) = bundle.address() else {
        return;
    };
    let Some(path) = connection::socket_path(&address) else {
        return;
    };
    if std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}
