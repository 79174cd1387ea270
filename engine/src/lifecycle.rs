//! A Docker container's life on containerd, as dockerd's containerd backend drives it: a
//! writable snapshot on the image's top layer and a container record holding the runtime spec
//! (create), a task with the snapshot's mounts and stdio FIFOs (start), its exit status (wait),
//! signals (kill), and the removal of task, record and snapshot. Every step is a containerd
//! API call, so it works the same on keel-containerd and on a real containerd.

pub mod stdio;

use std::collections::HashMap;

use keel_proto::containers::{
    container, Container, CreateContainerRequest, DeleteContainerRequest,
};
use keel_proto::snapshots::{MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest};
use keel_proto::tasks::{
    CreateTaskRequest, DeleteTaskRequest, KillRequest, StartRequest, WaitRequest,
};
use oci_spec::runtime::Spec;
use tonic::Code;

use crate::pull::scope::Scope;
use stdio::Fifos;

/// The type URL containerd stores a runtime spec under.
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// Why a lifecycle step failed.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("No such container: {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{what}: {}", status.message())]
    Containerd { what: String, status: tonic::Status },
    #[error("runtime spec: {0}")]
    Spec(String),
}

/// Where containers run: the shim (runtime name) and the snapshotter.
#[derive(Debug, Clone)]
pub struct Backend {
    pub scope: Scope,
    pub runtime: String,
    pub snapshotter: String,
}

/// What a container is made of.
#[derive(Debug, Clone)]
pub struct NewContainer {
    pub id: String,
    pub image: String,
    /// The image's top snapshot (its chain id).
    pub parent: String,
    pub spec: Spec,
    pub labels: HashMap<String, String>,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub status: u32,
}

impl Backend {
    /// The snapshot and the container record; the snapshot goes again if the record cannot be
    /// made. Both are made under a lease of their own, as containerd's clients do: between the
    /// two calls no record names the snapshot yet, and a collection must not take it.
    pub async fn create(&self, new: &NewContainer) -> Result<(), LifecycleError> {
        let lease = self
            .scope
            .create_lease()
            .await
            .map_err(|s| self.failed(&new.id, "creating a lease for", s))?;
        let made = self.create_under(&self.scope.under(&lease), new).await;
        if let Err(s) = self.scope.delete_lease(&lease).await {
            tracing::warn!(lease, "ending the create's lease: {}", s.message());
        }
        made
    }

    async fn create_under(&self, scope: &Scope, new: &NewContainer) -> Result<(), LifecycleError> {
        let prepare = PrepareSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: new.id.clone(),
            parent: new.parent.clone(),
            labels: HashMap::new(),
        };
        scope
            .snapshots()
            .prepare(scope.request(prepare))
            .await
            .map_err(|s| self.failed(&new.id, "preparing the rootfs", s))?;
        let spec =
            serde_json::to_vec(&new.spec).map_err(|e| LifecycleError::Spec(e.to_string()))?;
        let record = Container {
            id: new.id.clone(),
            labels: new.labels.clone(),
            image: new.image.clone(),
            runtime: Some(container::Runtime {
                name: self.runtime.clone(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.into(),
                value: spec,
            }),
            snapshotter: self.snapshotter.clone(),
            snapshot_key: new.id.clone(),
            ..Default::default()
        };
        let create = CreateContainerRequest {
            container: Some(record),
        };
        if let Err(s) = scope.containers().create(scope.request(create)).await {
            self.remove_snapshot(&new.id).await;
            return Err(self.failed(&new.id, "creating the container", s));
        }
        Ok(())
    }

    /// Starts the container's task with its stdio on `fifos`; returns its pid.
    pub async fn start(
        &self,
        id: &str,
        fifos: &Fifos,
        terminal: bool,
    ) -> Result<u32, LifecycleError> {
        let scope = &self.scope;
        let mounts = MountsRequest {
            snapshotter: self.snapshotter.clone(),
            key: id.to_string(),
        };
        let rootfs = scope
            .snapshots()
            .mounts(scope.request(mounts))
            .await
            .map_err(|s| self.failed(id, "the rootfs mounts", s))?
            .into_inner()
            .mounts;
        let (stdin, stdout, stderr) = fifos.paths();
        let create = CreateTaskRequest {
            container_id: id.to_string(),
            rootfs,
            stdin,
            stdout,
            stderr,
            terminal,
            ..Default::default()
        };
        let pid = scope
            .tasks()
            .create(scope.request(create))
            .await
            .map_err(|s| self.failed(id, "creating the task", s))?
            .into_inner()
            .pid;
        let start = StartRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        };
        if let Err(s) = scope.tasks().start(scope.request(start)).await {
            let _ = self.delete_task(id).await;
            return Err(self.failed(id, "starting the task", s));
        }
        Ok(pid)
    }

    /// Waits for the task to exit.
    pub async fn wait(&self, id: &str) -> Result<Exit, LifecycleError> {
        let scope = &self.scope;
        let wait = WaitRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        };
        let response = scope
            .tasks()
            .wait(scope.request(wait))
            .await
            .map_err(|s| self.failed(id, "waiting for the task", s))?;
        Ok(Exit {
            status: response.into_inner().exit_status,
        })
    }

    /// Sends `signal` to the task's process (every process of it with `all`).
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), LifecycleError> {
        let scope = &self.scope;
        let kill = KillRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
            signal,
            all,
        };
        scope
            .tasks()
            .kill(scope.request(kill))
            .await
            .map(drop)
            .map_err(|s| self.failed(id, "signalling the task", s))
    }

    /// Deletes the stopped task; its exit status.
    pub async fn delete_task(&self, id: &str) -> Result<Exit, LifecycleError> {
        let scope = &self.scope;
        let delete = DeleteTaskRequest {
            container_id: id.to_string(),
        };
        let response = scope
            .tasks()
            .delete(scope.request(delete))
            .await
            .map_err(|s| self.failed(id, "deleting the task", s))?;
        Ok(Exit {
            status: response.into_inner().exit_status,
        })
    }

    /// Removes the container record and its snapshot (the task must be gone).
    pub async fn remove(&self, id: &str) -> Result<(), LifecycleError> {
        let scope = &self.scope;
        let delete = DeleteContainerRequest { id: id.to_string() };
        scope
            .containers()
            .delete(scope.request(delete))
            .await
            .map_err(|s| self.failed(id, "removing the container", s))?;
        self.remove_snapshot(id).await;
        Ok(())
    }

    /// Best effort: a snapshot left is the collector's once no container names it.
    async fn remove_snapshot(&self, id: &str) {
        let scope = &self.scope;
        let remove = RemoveSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: id.to_string(),
        };
        if let Err(s) = scope.snapshots().remove(scope.request(remove)).await {
            if s.code() != Code::NotFound {
                tracing::warn!(container = id, "removing its snapshot: {}", s.message());
            }
        }
    }

    fn failed(&self, id: &str, what: &str, status: tonic::Status) -> LifecycleError {
        match status.code() {
            Code::NotFound => LifecycleError::NotFound(id.to_string()),
            Code::AlreadyExists | Code::FailedPrecondition => {
                LifecycleError::Conflict(format!("{what} {id}: {}", status.message()))
            }
            _ => LifecycleError::Containerd {
                what: format!("{what} {id}"),
                status,
            },
        }
    }
}
