//! Controlling a running task: pause and resume (the freezer), update (resources,
//! annotations), checkpoint (not supported).

use containerd_shim_protos::api;
use keel_proto::tasks::{
    CheckpointTaskRequest, CheckpointTaskResponse, PauseTaskRequest, ResumeTaskRequest,
    UpdateTaskRequest,
};

use super::{from_shim, process_name, Result, TaskError, Tasks};
use crate::runtime::protos::any_to_shim;

impl Tasks {
    /// Freezes every process of the task.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id))]
    pub async fn pause(&self, namespace: &str, req: PauseTaskRequest) -> Result<()> {
        let shim = self.task(namespace, &req.container_id)?;
        let mut request = api::PauseRequest::new();
        request.id = req.container_id.clone();
        shim.client()
            .pause(&request, None)
            .await
            .map_err(|e| from_shim(&process_name(&req.container_id, ""), e))?;
        Ok(())
    }

    /// Thaws the task.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id))]
    pub async fn resume(&self, namespace: &str, req: ResumeTaskRequest) -> Result<()> {
        let shim = self.task(namespace, &req.container_id)?;
        let mut request = api::ResumeRequest::new();
        request.id = req.container_id.clone();
        shim.client()
            .resume(&request, None)
            .await
            .map_err(|e| from_shim(&process_name(&req.container_id, ""), e))?;
        Ok(())
    }

    /// Changes the task's resources (a packed OCI `LinuxResources`) or annotations.
    #[tracing::instrument(level = "info", skip_all, fields(%namespace, id = %req.container_id))]
    pub async fn update(&self, namespace: &str, req: UpdateTaskRequest) -> Result<()> {
        let shim = self.task(namespace, &req.container_id)?;
        let mut request = api::UpdateTaskRequest::new();
        request.id = req.container_id.clone();
        request.resources = req.resources.as_ref().map(any_to_shim).into();
        request.annotations = req.annotations.into_iter().collect();
        shim.client()
            .update(&request, None)
            .await
            .map_err(|e| from_shim(&process_name(&req.container_id, ""), e))?;
        Ok(())
    }

    /// Checkpoints are not supported (no CRIU here); the task must exist all the same.
    pub async fn checkpoint(
        &self,
        namespace: &str,
        req: CheckpointTaskRequest,
    ) -> Result<CheckpointTaskResponse> {
        self.task(namespace, &req.container_id)?;
        Err(TaskError::Unimplemented(format!(
            "task {:?}: checkpoint is not supported",
            req.container_id
        )))
    }
}
