//! `containerd.services.tasks.v1.Tasks`: the namespace from the header, the call to
//! [`crate::tasks`], its errors as containerd's codes.

use std::sync::Arc;

use keel_proto::tasks::tasks_server::Tasks;
use keel_proto::tasks::{
    CheckpointTaskRequest, CheckpointTaskResponse, CloseIoRequest, CreateTaskRequest,
    CreateTaskResponse, DeleteProcessRequest, DeleteResponse, DeleteTaskRequest,
    ExecProcessRequest, GetRequest, GetResponse, KillRequest, ListPidsRequest, ListPidsResponse,
    ListTasksRequest, ListTasksResponse, MetricsRequest, MetricsResponse, PauseTaskRequest,
    ResizePtyRequest, ResumeTaskRequest, StartRequest, StartResponse, UpdateTaskRequest,
    WaitRequest, WaitResponse,
};
use tonic::{Code, Request, Response, Status};

use super::namespace;
use crate::supervisor::Supervisor;
use crate::tasks::{self, TaskError};

/// The Tasks gRPC service.
#[derive(Debug, Clone)]
pub struct TasksService {
    tasks: tasks::Tasks,
}

impl TasksService {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self {
            tasks: tasks::Tasks::new(supervisor),
        }
    }
}

/// A task error on the wire: its kind as the gRPC code, its message as it is.
pub fn status(e: TaskError) -> Status {
    let code = match &e {
        TaskError::NotFound(_) => Code::NotFound,
        TaskError::AlreadyExists(_) => Code::AlreadyExists,
        TaskError::FailedPrecondition(_) => Code::FailedPrecondition,
        TaskError::InvalidArgument(_) => Code::InvalidArgument,
        TaskError::Unimplemented(_) => Code::Unimplemented,
        TaskError::Unavailable(_) => Code::Unavailable,
        TaskError::DeadlineExceeded(_) => Code::DeadlineExceeded,
        TaskError::Unknown(_) => Code::Unknown,
        TaskError::Internal(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

fn reply<T>(result: tasks::Result<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(status)
}

fn empty(result: tasks::Result<()>) -> Result<Response<()>, Status> {
    reply(result)
}

#[tonic::async_trait]
impl Tasks for TasksService {
    async fn create(
        &self,
        request: Request<CreateTaskRequest>,
    ) -> Result<Response<CreateTaskResponse>, Status> {
        let ns = namespace(&request)?;
        reply(self.tasks.create(&ns, request.into_inner()).await)
    }

    async fn start(
        &self,
        request: Request<StartRequest>,
    ) -> Result<Response<StartResponse>, Status> {
        let ns = namespace(&request)?;
        reply(self.tasks.start(&ns, request.into_inner()).await)
    }

    async fn delete(
        &self,
        request: Request<DeleteTaskRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let ns = namespace(&request)?;
        reply(self.tasks.delete(&ns, request.into_inner()).await)
    }

    async fn delete_process(
        &self,
        request: Request<DeleteProcessRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let ns = namespace(&request)?;
        reply(self.tasks.delete_process(&ns, request.into_inner()).await)
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let ns = namespace(&request)?;
        reply(self.tasks.get(&ns, request.into_inner()).await)
    }

    async fn list(
        &self,
        request: Request<ListTasksRequest>,
    ) -> Result<Response<ListTasksResponse>, Status> {
        let ns = namespace(&request)?;
        reply(self.tasks.list(&ns, request.into_inner()).await)
    }

    async fn kill(&self, request: Request<KillRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        empty(self.tasks.kill(&ns, request.into_inner()).await)
    }

    async fn exec(&self, request: Request<ExecProcessRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        empty(self.tasks.exec(&ns, request.into_inner()).await)
    }

    async fn resize_pty(&self, request: Request<ResizePtyRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        empty(self.tasks.resize_pty(&ns, request.into_inner()).await)
    }

    async fn close_io(&self, request: Request<CloseIoRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        empty(self.tasks.close_io(&ns, request.into_inner()).await)
    }

    async fn pause(&self, request: Request<PauseTaskRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        empty(self.tasks.pause(&ns, request.into_inner()).await)
    }

    async fn resume(&self, request: Request<ResumeTaskRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        empty(self.tasks.resume(&ns, request.into_inner()).await)
    }

    async fn list_pids(
        &self,
        request: Request<ListPidsRequest>,
    ) -> Result<Response<ListPidsResponse>, Status> {
        let ns = namespace(&request)?;
        reply(self.tasks.list_pids(&ns, request.into_inner()).await)
    }

    async fn checkpoint(
        &self,
        request: Request<CheckpointTaskRequest>,
    ) -> Result<Response<CheckpointTaskResponse>, Status> {
        let ns = namespace(&request)?;
        reply(self.tasks.checkpoint(&ns, request.into_inner()).await)
    }

    async fn update(&self, request: Request<UpdateTaskRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        empty(self.tasks.update(&ns, request.into_inner()).await)
    }

    async fn metrics(
        &self,
        request: Request<MetricsRequest>,
    ) -> Result<Response<MetricsResponse>, Status> {
        let ns = namespace(&request)?;
        reply(self.tasks.metrics(&ns, request.into_inner()).await)
    }

    async fn wait(&self, request: Request<WaitRequest>) -> Result<Response<WaitResponse>, Status> {
        let ns = namespace(&request)?;
        reply(self.tasks.wait(&ns, request.into_inner()).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_become_containerds_codes_and_keep_the_message() {
        let cases = [
            (
                TaskError::NotFound("task \"t\" not found".into()),
                Code::NotFound,
            ),
            (TaskError::AlreadyExists("a".into()), Code::AlreadyExists),
            (
                TaskError::FailedPrecondition("f".into()),
                Code::FailedPrecondition,
            ),
            (
                TaskError::InvalidArgument("i".into()),
                Code::InvalidArgument,
            ),
            (TaskError::Unimplemented("u".into()), Code::Unimplemented),
            (TaskError::Unavailable("u".into()), Code::Unavailable),
            (
                TaskError::DeadlineExceeded("d".into()),
                Code::DeadlineExceeded,
            ),
            (TaskError::Unknown("u".into()), Code::Unknown),
            (TaskError::Internal("i".into()), Code::Internal),
        ];
        for (err, code) in cases {
            let message = err.to_string();
            let s = status(err);
            assert_eq!((s.code(), s.message()), (code, message.as_str()));
        }
    }
}
