//! The ttrpc adapter of `containerd.task.v2.Task` (and its v3 copy, which containerd 2 calls):
//! converts requests into the shim's own types, calls [`Shim`], converts answers and errors.
//! No logic lives here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, Empty, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest,
    StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim_async::{create_task, Task};
use containerd_shim_protos::types::task::{ProcessInfo, Status as ApiStatus};
use ttrpc::r#async::{Service, TtrpcContext};

use crate::container::{CreateSpec, Shim};
use crate::error::ShimError;
use crate::events::timestamp;
use crate::mounts::RootfsMount;
use crate::options::Options;
use crate::process::Status;
use crate::stdio::StdioPaths;

/// The service names the task API is served under: containerd 1.6/1.7 call v2; v3 is 2.x's
/// name for the same messages.
const SERVICE_NAMES: [&str; 2] = ["containerd.task.v2.Task", "containerd.task.v3.Task"];

/// The type URL of the exec details in a Pids answer (runc shim's `ProcessDetails`).
const PROCESS_DETAILS: &str = "containerd.runc.v1.ProcessDetails";

/// The task API of one shim.
#[derive(Debug, Clone)]
pub struct TaskService {
    shim: Arc<Shim>,
}

impl TaskService {
    pub fn new(shim: Arc<Shim>) -> Self {
        Self { shim }
    }

    /// The ttrpc services to register, under both task API names.
    pub fn services(self) -> HashMap<String, Service> {
        let service: Arc<dyn Task + Send + Sync> = Arc::new(self);
        let mut all = HashMap::new();
        for name in SERVICE_NAMES {
            for (_, s) in create_task(service.clone()) {
                all.insert(name.to_string(), s);
            }
        }
        all
    }
}

type TtrpcResult<T> = ttrpc::Result<T>;

fn status(s: Status) -> ApiStatus {
    match s {
        Status::Created => ApiStatus::CREATED,
        Status::Running => ApiStatus::RUNNING,
        Status::Paused => ApiStatus::PAUSED,
        Status::Stopped => ApiStatus::STOPPED,
    }
}

fn any_value(any: &MessageField<Any>) -> Option<&Any> {
    any.as_ref()
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        let options = match any_value(&req.options) {
            Some(any) => Options::decode(&any.type_url, &any.value)
                .map_err(|e| ShimError::InvalidArgument(e.to_string()))?,
            None => Options::default(),
        };
        let spec = CreateSpec {
            id: req.id.clone(),
            bundle: PathBuf::from(&req.bundle),
            rootfs: req
                .rootfs
                .iter()
                .map(|m| RootfsMount {
                    kind: m.type_.clone(),
                    source: m.source.clone(),
                    options: m.options.clone(),
                })
                .collect(),
            stdio: StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            options,
        };
        tracing::debug!(request = "create", id = %req.id);
        let pid = self.shim.create(spec).await?;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        tracing::debug!(request = "start", id = %req.id, exec = %req.exec_id);
        let pid = self.shim.start(&req.id, &req.exec_id).await?;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let view = self.shim.state(&req.id, &req.exec_id)?;
        let mut resp = StateResponse {
            id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            bundle: view.bundle.display().to_string(),
            pid: view.pid,
            status: status(view.status).into(),
            stdin: view.stdio.stdin,
            stdout: view.stdio.stdout,
            stderr: view.stdio.stderr,
            terminal: view.stdio.terminal,
            ..Default::default()
        };
        if let Some(exit) = view.exit {
            resp.exit_status = exit.status;
            resp.exited_at = Some(timestamp(exit.at)).into();
        }
        Ok(resp)
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        tracing::debug!(request = "kill", id = %req.id, exec = %req.exec_id, signal = req.signal);
        self.shim
            .kill(&req.id, &req.exec_id, req.signal, req.all)
            .await?;
        Ok(Empty::new())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let exit = self.shim.wait(&req.id, &req.exec_id).await?;
        Ok(WaitResponse {
            exit_status: exit.status,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        tracing::debug!(request = "delete", id = %req.id, exec = %req.exec_id);
        let (pid, exit) = self.shim.delete(&req.id, &req.exec_id).await?;
        Ok(DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let spec = any_value(&req.spec)
            .map(|a| a.value.clone())
            .ok_or_else(|| {
                ShimError::InvalidArgument(format!("exec {:?} has no process spec", req.exec_id))
            })?;
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        tracing::debug!(request = "exec", id = %req.id, exec = %req.exec_id);
        self.shim.exec(&req.id, &req.exec_id, stdio, spec).await?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        self.shim
            .resize_pty(&req.id, &req.exec_id, req.width, req.height)?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        self.shim.close_io(&req.id, &req.exec_id, req.stdin)?;
        Ok(Empty::new())
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let pids = self.shim.pids(&req.id).await?;
        let processes = pids
            .into_iter()
            .map(|(pid, exec_id)| ProcessInfo {
                pid,
                info: exec_id.map(process_details).into(),
                ..Default::default()
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        self.shim.pause(&req.id, true).await?;
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.shim.pause(&req.id, false).await?;
        Ok(Empty::new())
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let stats = self.shim.stats(&req.id).await?;
        Ok(StatsResponse {
            stats: Some(stats).into(),
            ..Default::default()
        })
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let resources = any_value(&req.resources)
            .map(|a| a.value.clone())
            .ok_or_else(|| ShimError::InvalidArgument("update without resources".into()))?;
        self.shim.update(&req.id, &resources).await?;
        Ok(Empty::new())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        req: CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        let why = format!("checkpoint of {:?}: not supported by this shim", req.id);
        Err(ShimError::Unimplemented(why).into())
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        _req: ConnectRequest,
    ) -> TtrpcResult<ConnectResponse> {
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: self.shim.task_pid(),
            ..Default::default()
        })
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        self.shim.shutdown();
        Ok(Empty::new())
    }
}

/// `containerd.runc.v1.ProcessDetails { exec_id = 1 }`.
fn process_details(exec_id: String) -> Any {
    let mut value = Vec::with_capacity(exec_id.len() + 2);
    value.push(0x0a);
    encode_varint(exec_id.len() as u64, &mut value);
    value.extend_from_slice(exec_id.as_bytes());
    let mut any = Any::new();
    any.type_url = PROCESS_DETAILS.to_string();
    any.value = value;
    any
}

fn encode_varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_details_encode_the_exec_id() {
        let any = process_details("e1".into());
        assert_eq!(any.value, vec![0x0a, 2, b'e', b'1']);
        let mut long = Vec::new();
        encode_varint(300, &mut long);
        assert_eq!(long, vec![0xac, 0x02]);
    }
}
