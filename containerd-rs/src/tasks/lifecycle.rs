//! A task's life: create (the shim started, the init process created), start, kill, wait,
//! delete.

use containerd_shim_protos::api;
use keel_proto::tasks::{
    CreateTaskRequest, CreateTaskResponse, DeleteResponse, DeleteTaskRequest, KillRequest,
    StartRequest, StartResponse, WaitRequest, WaitResponse,
};

use super::{from_runtime, from_shim, process_name, Result, TaskError, Tasks};
use crate::identifiers;
use crate::runtime::protos::{any_to_shim, mount_to_shim, timestamp_field};
use crate::runtime::{CreateOpts, ShimError};

impl Tasks {
    /// Starts the container's shim and creates its init process (not started); answers its
    /// pid. The options are the request's, else the container's runtime options.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id))]
    pub async fn create(
        &self,
        namespace: &str,
        req: CreateTaskRequest,
    ) -> Result<CreateTaskResponse> {
        let id = req.container_id;
        identifiers::validate(&id)
            .map_err(|e| TaskError::InvalidArgument(format!("container id: {e}")))?;
        let container = self.container(namespace, &id)?;
        if self.manager().get(namespace, &id).is_some() {
            return Err(TaskError::AlreadyExists(format!(
                "task {id:?} already exists"
            )));
        }
        if req.checkpoint.is_some() {
            return Err(TaskError::Unimplemented(format!(
                "task {id:?}: restoring from a checkpoint is not supported"
            )));
        }
        let spec = container
            .spec
            .ok_or_else(|| TaskError::InvalidArgument(format!("container {id:?} has no spec")))?
            .value;
        let runtime = container.runtime.unwrap_or_default();
        let runtime_name = if req.runtime_path.is_empty() {
            runtime.name
        } else {
            req.runtime_path
        };
        let options = req.options.or(runtime.options);
        let mut request = api::CreateTaskRequest::new();
        request.rootfs = req.rootfs.iter().map(mount_to_shim).collect();
        request.stdin = req.stdin;
        request.stdout = req.stdout;
        request.stderr = req.stderr;
        request.terminal = req.terminal;
        request.options = options.as_ref().map(any_to_shim).into();
        let opts = CreateOpts {
            runtime: runtime_name,
            spec,
            request,
        };
        let shim = self
            .manager()
            .create(namespace, &id, opts)
            .await
            .map_err(|e| from_runtime(&format!("task {id:?}"), e))?;
        tracing::info!(pid = shim.pid(), "task created");
        Ok(CreateTaskResponse {
            container_id: id,
            pid: shim.pid(),
        })
    }

    /// Starts the init process, or the exec `exec_id`.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id))]
    pub async fn start(&self, namespace: &str, req: StartRequest) -> Result<StartResponse> {
        let shim = self.task(namespace, &req.container_id)?;
        let mut request = api::StartRequest::new();
        request.id = req.container_id.clone();
        request.exec_id = req.exec_id.clone();
        let started = shim
            .client()
            .start(&request, None)
            .await
            .map_err(|e| from_shim(&process_name(&req.container_id, &req.exec_id), e))?;
        Ok(StartResponse { pid: started.pid })
    }

    /// Signals the init process or an exec; with `all`, every process of the task.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id))]
    pub async fn kill(&self, namespace: &str, req: KillRequest) -> Result<()> {
        let shim = self.task(namespace, &req.container_id)?;
        let mut request = api::KillRequest::new();
        request.id = req.container_id.clone();
        request.exec_id = req.exec_id.clone();
        request.signal = req.signal;
        request.all = req.all;
        shim.client()
            .kill(&request, None)
            .await
            .map_err(|e| from_shim(&process_name(&req.container_id, &req.exec_id), e))?;
        Ok(())
    }

    /// Waits (as long as it takes) for the init process or an exec to exit. If the shim dies
    /// meanwhile, the init process's wait answers the exit its cleanup reports.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id))]
    pub async fn wait(&self, namespace: &str, req: WaitRequest) -> Result<WaitResponse> {
        let shim = self.task(namespace, &req.container_id)?;
        let mut request = api::WaitRequest::new();
        request.id = req.container_id.clone();
        request.exec_id = req.exec_id.clone();
        let what = process_name(&req.container_id, &req.exec_id);
        match shim.client().wait(&request, None).await {
            Ok(waited) => Ok(WaitResponse {
                exit_status: waited.exit_status,
                exited_at: timestamp_field(&waited.exited_at),
            }),
            Err(ShimError::Closed) if req.exec_id.is_empty() => match shim.death().await {
                Some(exit) => Ok(WaitResponse {
                    exit_status: exit.status,
                    exited_at: Some(exit.at.into()),
                }),
                None => Err(from_shim(&what, ShimError::Closed)),
            },
            Err(e) => Err(from_shim(&what, e)),
        }
    }

    /// Deletes the stopped task: its init process, its shim, its bundle; answers how it
    /// exited. A running task stays (FailedPrecondition, as its shim says).
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id))]
    pub async fn delete(&self, namespace: &str, req: DeleteTaskRequest) -> Result<DeleteResponse> {
        let id = req.container_id;
        let shim = self.task(namespace, &id)?;
        let exit = self
            .manager()
            .delete(&shim)
            .await
            .map_err(|e| from_runtime(&format!("task {id:?}"), e))?;
        tracing::info!(status = exit.status, "task deleted");
        Ok(DeleteResponse {
            id,
            pid: exit.pid,
            exit_status: exit.status,
            exited_at: Some(exit.at.into()),
        })
    }
}
