//! The Tasks service's logic, containerd's `services/tasks/local.go`: a task is a container's
//! running instance, served by its shim through the runtime v2 [`Manager`]. Every call names
//! the container; the container must exist (else NotFound naming it), then its task (NotFound
//! naming the task), then the shim does the work and its errors keep their kind.
//!
//! Task events (`/tasks/create`, `/tasks/start`, `/tasks/exit`, ...) are published by the
//! shims themselves and forwarded through the ttrpc endpoint; this service publishes none, or
//! clients would see each twice. Only for a shim that died does the manager publish what it
//! could no longer send.
//!
//! The operations are split by what they touch: [`lifecycle`] (create, start, kill, wait,
//! delete), [`processes`] (exec and what is done to one process), [`inspect`] (get, list,
//! pids, metrics), [`control`] (pause, resume, update, checkpoint).

mod control;
mod inspect;
mod lifecycle;
mod processes;

use std::sync::Arc;

use keel_proto::containers::Container;
use keel_proto::prost::Message;

use crate::metadata::MetadataError;
use crate::runtime::{Manager, RuntimeError, Shim, ShimError};
use crate::supervisor::Supervisor;

/// Why a task call failed; the kinds are containerd's errdefs, and each message names the
/// object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unimplemented(String),
    /// The shim is gone or cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unknown(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, TaskError>;

/// The Tasks service.
#[derive(Debug, Clone)]
pub struct Tasks {
    supervisor: Arc<Supervisor>,
}

impl Tasks {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self { supervisor }
    }

    fn manager(&self) -> &Manager {
        &self.supervisor.runtime
    }

    /// The container `id`, which must exist.
    fn container(&self, namespace: &str, id: &str) -> Result<Container> {
        if id.is_empty() {
            return Err(TaskError::InvalidArgument(
                "container id must not be empty".into(),
            ));
        }
        let bytes = self
            .supervisor
            .store
            .get(namespace, "containers", id)
            .map_err(|e| match e {
                MetadataError::NotFound(_) => TaskError::NotFound(format!(
                    "container {id:?} not found in namespace {namespace:?}"
                )),
                MetadataError::InvalidArgument(m) => TaskError::InvalidArgument(m),
                other => TaskError::Internal(other.to_string()),
            })?;
        Container::decode(bytes.as_slice()).map_err(|e| {
            TaskError::Internal(format!("the record of container {id:?} is damaged: {e}"))
        })
    }

    /// The task of container `id`: the container must exist, then its task.
    fn task(&self, namespace: &str, id: &str) -> Result<Arc<Shim>> {
        self.container(namespace, id)?;
        self.manager()
            .get(namespace, id)
            .ok_or_else(|| TaskError::NotFound(format!("task {id:?} not found")))
    }
}

/// How a call names the process it is about: the task, or one of its execs.
fn process_name(id: &str, exec_id: &str) -> String {
    if exec_id.is_empty() {
        format!("task {id:?}")
    } else {
        format!("exec {exec_id:?} of task {id:?}")
    }
}

/// A shim's error, its kind kept, its message prefixed with what it was about.
fn from_shim(what: &str, e: ShimError) -> TaskError {
    use ttrpc::Code;
    let message = format!("{what}: {e}");
    match e {
        ShimError::Status { code, .. } => match code {
            Code::NOT_FOUND => TaskError::NotFound(message),
            Code::ALREADY_EXISTS => TaskError::AlreadyExists(message),
            Code::FAILED_PRECONDITION => TaskError::FailedPrecondition(message),
            Code::INVALID_ARGUMENT | Code::OUT_OF_RANGE => TaskError::InvalidArgument(message),
            Code::UNIMPLEMENTED => TaskError::Unimplemented(message),
            Code::UNAVAILABLE => TaskError::Unavailable(message),
            Code::DEADLINE_EXCEEDED => TaskError::DeadlineExceeded(message),
            Code::INTERNAL | Code::DATA_LOSS => TaskError::Internal(message),
            _ => TaskError::Unknown(message),
        },
        ShimError::Closed | ShimError::Connect { .. } => TaskError::Unavailable(message),
        ShimError::Timeout { .. } => TaskError::DeadlineExceeded(message),
        ShimError::Transport { .. } => TaskError::Unknown(message),
    }
}

/// A manager's error, its kind kept.
fn from_runtime(what: &str, e: RuntimeError) -> TaskError {
    let message = format!("{what}: {e}");
    match e {
        RuntimeError::InvalidRuntime(_) => TaskError::InvalidArgument(message),
        RuntimeError::BinaryNotFound(_) => TaskError::FailedPrecondition(message),
        RuntimeError::AlreadyExists(_) => TaskError::AlreadyExists(message),
        RuntimeError::Bundle { source, .. }
            if source.kind() == std::io::ErrorKind::AlreadyExists =>
        {
            TaskError::AlreadyExists(message)
        }
        RuntimeError::Bundle { .. } => TaskError::Internal(message),
        RuntimeError::Start { .. } => TaskError::Unknown(message),
        RuntimeError::Shim(e) => from_shim(what, e),
        RuntimeError::Internal(_) => TaskError::Internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: ttrpc::Code) -> ShimError {
        ShimError::Status {
            code,
            message: "process e1 does not exist".into(),
        }
    }

    #[test]
    fn shim_codes_keep_their_kind_and_name_the_object() {
        use ttrpc::Code;
        let what = process_name("t1", "e1");
        assert_eq!(
            from_shim(&what, status(Code::NOT_FOUND)),
            TaskError::NotFound("exec \"e1\" of task \"t1\": process e1 does not exist".into())
        );
        let kinds = [
            (Code::ALREADY_EXISTS, "AlreadyExists"),
            (Code::FAILED_PRECONDITION, "FailedPrecondition"),
            (Code::INVALID_ARGUMENT, "InvalidArgument"),
            (Code::UNIMPLEMENTED, "Unimplemented"),
            (Code::UNAVAILABLE, "Unavailable"),
            (Code::DEADLINE_EXCEEDED, "DeadlineExceeded"),
            (Code::INTERNAL, "Internal"),
            (Code::UNKNOWN, "Unknown"),
            (Code::PERMISSION_DENIED, "Unknown"),
        ];
        for (code, kind) in kinds {
            let err = from_shim("task \"t1\"", status(code));
            assert!(format!("{err:?}").starts_with(kind), "{code:?}: {err:?}");
            assert!(err.to_string().starts_with("task \"t1\": "), "{err}");
        }
        assert!(matches!(
            from_shim("task \"t1\"", ShimError::Closed),
            TaskError::Unavailable(_)
        ));
    }

    #[test]
    fn runtime_errors_keep_their_kind() {
        let what = "task \"t1\"";
        assert!(matches!(
            from_runtime(what, RuntimeError::InvalidRuntime("bad".into())),
            TaskError::InvalidArgument(_)
        ));
        assert!(matches!(
            from_runtime(what, RuntimeError::BinaryNotFound("none".into())),
            TaskError::FailedPrecondition(_)
        ));
        assert!(matches!(
            from_runtime(what, RuntimeError::AlreadyExists("t1".into())),
            TaskError::AlreadyExists(_)
        ));
        assert!(matches!(
            from_runtime(what, RuntimeError::Shim(status(ttrpc::Code::NOT_FOUND))),
            TaskError::NotFound(_)
        ));
        assert_eq!(process_name("t1", ""), "task \"t1\"");
    }

    /// A service over a fresh store in temp dirs (no shim is ever started by these tests).
    fn service(dir: &std::path::Path) -> Tasks {
        let config = crate::config::Config {
            root: dir.join("root"),
            state: dir.join("state"),
            address: dir.join("c.sock"),
            ttrpc_address: dir.join("c.sock.ttrpc"),
            log_level: "info".into(),
        };
        Tasks::new(Arc::new(Supervisor::open(config).unwrap()))
    }

    fn add_container(tasks: &Tasks, id: &str, runtime: &str, spec: bool) {
        let container = Container {
            id: id.into(),
            runtime: Some(keel_proto::containers::container::Runtime {
                name: runtime.into(),
                options: None,
            }),
            spec: spec.then(|| prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: b"{}".to_vec(),
            }),
            ..Default::default()
        };
        tasks
            .supervisor
            .store
            .create("ns", "containers", id, &container.encode_to_vec())
            .unwrap();
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn unknown_containers_and_tasks_are_not_found_by_name() {
        use keel_proto::tasks::{GetRequest, KillRequest, ListTasksRequest};
        let dir = tempfile::tempdir().unwrap();
        let tasks = service(dir.path());
        add_container(&tasks, "c1", "io.containerd.keel.v2", true);
        block_on(async {
            let get = |id: &str| GetRequest {
                container_id: id.into(),
                exec_id: String::new(),
            };
            let err = tasks.get("ns", get("nope")).await.unwrap_err();
            assert_eq!(
                err,
                TaskError::NotFound("container \"nope\" not found in namespace \"ns\"".into())
            );
            let err = tasks.get("ns", get("c1")).await.unwrap_err();
            assert_eq!(err, TaskError::NotFound("task \"c1\" not found".into()));
            let kill = KillRequest {
                container_id: "c1".into(),
                signal: 9,
                ..Default::default()
            };
            assert!(matches!(
                tasks.kill("ns", kill).await,
                Err(TaskError::NotFound(_))
            ));
            let err = tasks.get("ns", get("")).await.unwrap_err();
            assert!(matches!(err, TaskError::InvalidArgument(_)), "{err:?}");
            let listed = tasks.list("ns", ListTasksRequest::default()).await.unwrap();
            assert!(listed.tasks.is_empty());
            let bad = ListTasksRequest {
                filter: "id==".into(),
            };
            assert!(matches!(
                tasks.list("ns", bad).await,
                Err(TaskError::InvalidArgument(_))
            ));
        });
    }

    #[test]
    fn bad_creates_say_why_and_leave_nothing() {
        use keel_proto::tasks::CreateTaskRequest;
        let dir = tempfile::tempdir().unwrap();
        let tasks = service(dir.path());
        add_container(&tasks, "badname", "runc", true);
        add_container(&tasks, "nobinary", "io.containerd.nope-nope.v9", true);
        add_container(&tasks, "nospec", "io.containerd.keel.v2", false);
        block_on(async {
            let create = |id: &str| CreateTaskRequest {
                container_id: id.into(),
                ..Default::default()
            };
            let err = tasks.create("ns", create("badname")).await.unwrap_err();
            assert!(matches!(err, TaskError::InvalidArgument(_)), "{err:?}");
            assert!(err.to_string().contains("\"runc\""), "{err}");
            let err = tasks.create("ns", create("nobinary")).await.unwrap_err();
            assert!(matches!(err, TaskError::FailedPrecondition(_)), "{err:?}");
            assert!(
                err.to_string().contains("containerd-shim-nope-nope-v9"),
                "{err}"
            );
            let err = tasks.create("ns", create("nospec")).await.unwrap_err();
            assert!(matches!(err, TaskError::InvalidArgument(_)), "{err:?}");
            let err = tasks.create("ns", create("missing")).await.unwrap_err();
            assert!(matches!(err, TaskError::NotFound(_)), "{err:?}");
            let err = tasks.create("ns", create("bad id")).await.unwrap_err();
            assert!(matches!(err, TaskError::InvalidArgument(_)), "{err:?}");
        });
        // No bundle, no work directory, no task.
        let bundles = dir.path().join("state/io.containerd.runtime.v2.task/ns");
        let leftover = std::fs::read_dir(&bundles).map(|d| d.count()).unwrap_or(0);
        assert_eq!(leftover, 0);
        assert!(tasks.manager().list("ns").is_empty());
    }

    #[test]
    fn execs_need_an_id_and_checkpoints_are_unimplemented() {
        use keel_proto::tasks::{CheckpointTaskRequest, DeleteProcessRequest, ExecProcessRequest};
        let dir = tempfile::tempdir().unwrap();
        let tasks = service(dir.path());
        add_container(&tasks, "c1", "io.containerd.keel.v2", true);
        block_on(async {
            for exec_id in ["", "bad id"] {
                let exec = ExecProcessRequest {
                    container_id: "c1".into(),
                    exec_id: exec_id.into(),
                    ..Default::default()
                };
                let err = tasks.exec("ns", exec).await.unwrap_err();
                assert!(matches!(err, TaskError::InvalidArgument(_)), "{err:?}");
                assert!(err.to_string().contains("task \"c1\""), "{err}");
            }
            let delete = DeleteProcessRequest {
                container_id: "c1".into(),
                exec_id: String::new(),
            };
            let err = tasks.delete_process("ns", delete).await.unwrap_err();
            assert!(matches!(err, TaskError::InvalidArgument(_)), "{err:?}");
            let checkpoint = CheckpointTaskRequest {
                container_id: "c1".into(),
                ..Default::default()
            };
            // No task yet: NotFound comes first.
            let err = tasks.checkpoint("ns", checkpoint).await.unwrap_err();
            assert!(matches!(err, TaskError::NotFound(_)), "{err:?}");
        });
    }
}
