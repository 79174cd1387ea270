//! Processes of a task: exec (add one), delete one that exited, and its terminal and stdin.

use containerd_shim_protos::api;
use keel_proto::tasks::{
    CloseIoRequest, DeleteProcessRequest, DeleteResponse, ExecProcessRequest, ResizePtyRequest,
};

use super::{from_shim, process_name, Result, TaskError, Tasks};
use crate::identifiers;
use crate::runtime::protos::{any_to_shim, timestamp_field};

impl Tasks {
    /// Adds the process `exec_id` (its OCI process spec in `spec`) to the running task; Start
    /// starts it.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id, exec = %req.exec_id))]
    pub async fn exec(&self, namespace: &str, req: ExecProcessRequest) -> Result<()> {
        if req.exec_id.is_empty() {
            return Err(TaskError::InvalidArgument(format!(
                "exec of task {:?}: exec id must not be empty",
                req.container_id
            )));
        }
        identifiers::validate(&req.exec_id).map_err(|e| {
            TaskError::InvalidArgument(format!("exec of task {:?}: exec id: {e}", req.container_id))
        })?;
        let shim = self.task(namespace, &req.container_id)?;
        let spec = req.spec.as_ref().ok_or_else(|| {
            TaskError::InvalidArgument(format!(
                "{}: a process spec is required",
                process_name(&req.container_id, &req.exec_id)
            ))
        })?;
        let mut request = api::ExecProcessRequest::new();
        request.id = req.container_id.clone();
        request.exec_id = req.exec_id.clone();
        request.terminal = req.terminal;
        request.stdin = req.stdin;
        request.stdout = req.stdout;
        request.stderr = req.stderr;
        request.spec = Some(any_to_shim(spec)).into();
        shim.client()
            .exec(&request, None)
            .await
            .map_err(|e| from_shim(&process_name(&req.container_id, &req.exec_id), e))?;
        Ok(())
    }

    /// Deletes the exited exec `exec_id`; answers how it exited.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id, exec = %req.exec_id))]
    pub async fn delete_process(
        &self,
        namespace: &str,
        req: DeleteProcessRequest,
    ) -> Result<DeleteResponse> {
        if req.exec_id.is_empty() {
            return Err(TaskError::InvalidArgument(format!(
                "task {:?}: DeleteProcess needs an exec id (Delete deletes the task)",
                req.container_id
            )));
        }
        let shim = self.task(namespace, &req.container_id)?;
        let mut request = api::DeleteRequest::new();
        request.id = req.container_id.clone();
        request.exec_id = req.exec_id.clone();
        let deleted = shim
            .client()
            .delete(&request, None)
            .await
            .map_err(|e| from_shim(&process_name(&req.container_id, &req.exec_id), e))?;
        Ok(DeleteResponse {
            id: req.exec_id,
            pid: deleted.pid,
            exit_status: deleted.exit_status,
            exited_at: timestamp_field(&deleted.exited_at),
        })
    }

    /// Resizes the terminal of the init process or an exec.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id))]
    pub async fn resize_pty(&self, namespace: &str, req: ResizePtyRequest) -> Result<()> {
        let shim = self.task(namespace, &req.container_id)?;
        let mut request = api::ResizePtyRequest::new();
        request.id = req.container_id.clone();
        request.exec_id = req.exec_id.clone();
        request.width = req.width;
        request.height = req.height;
        shim.client()
            .resize_pty(&request, None)
            .await
            .map_err(|e| from_shim(&process_name(&req.container_id, &req.exec_id), e))?;
        Ok(())
    }

    /// Closes the stdin of the init process or an exec (if `stdin` is asked for; nothing else
    /// can be closed).
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id))]
    pub async fn close_io(&self, namespace: &str, req: CloseIoRequest) -> Result<()> {
        let shim = self.task(namespace, &req.container_id)?;
        if !req.stdin {
            return Ok(());
        }
        let mut request = api::CloseIORequest::new();
        request.id = req.container_id.clone();
        request.exec_id = req.exec_id.clone();
        request.stdin = true;
        shim.client()
            .close_io(&request, None)
            .await
            .map_err(|e| from_shim(&process_name(&req.container_id, &req.exec_id), e))?;
        Ok(())
    }
}
