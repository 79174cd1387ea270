//! A `containerd-client` session on a daemon speaking containerd's API (keel-containerd or
//! containerd itself), for the `supervisor_client*` tests: the unix-socket channel, requests
//! with the namespace header (`with_namespace!`), containers of an OCI spec for a busybox
//! rootfs run through our shim, tasks with FIFOs for stdio.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::{
    containers_client::ContainersClient, namespaces_client::NamespacesClient,
    tasks_client::TasksClient, Container, CreateContainerRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteTaskRequest, ExecProcessRequest, KillRequest, StartRequest,
    WaitRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Request, Status};
use containerd_client::with_namespace;
use keel_integration_tests::peers::containerd::Containerd;
use keel_integration_tests::peers::keel_shim::KEEL_SHIM_RUNTIME;
use keel_integration_tests::{rootfs, Config};
use prost_types::Any;
use serde_json::json;

/// The type URL containerd gives an OCI runtime spec.
pub const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/// The type URL of an OCI process (an exec's spec).
pub const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// How long a call or a task may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// SIGKILL.
pub const SIGKILL: u32 = 9;

/// A client session on one daemon, in one namespace: the channel, the rootfs and a dir for
/// the FIFOs.
pub struct Session {
    pub channel: Channel,
    pub namespace: String,
    pub rootfs: PathBuf,
    pub fifos: PathBuf,
}

impl Session {
    /// Connects to `ctrd`'s socket with `containerd_client::connect`; makes the rootfs.
    pub async fn connect(ctrd: &Containerd) -> Result<Self> {
        let rootfs = ctrd.subdir("rootfs")?;
        rootfs::build(&rootfs)?;
        let channel = containerd_client::connect(ctrd.address())
            .await
            .with_context(|| format!("connecting to {}", ctrd.address().display()))?;
        Ok(Self {
            channel,
            namespace: ctrd.namespace().to_string(),
            rootfs,
            fifos: ctrd.subdir("fifo")?,
        })
    }

    pub fn namespaces(&self) -> NamespacesClient<Channel> {
        NamespacesClient::new(self.channel.clone())
    }

    pub fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    pub fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    /// `message` with the session's namespace in its metadata.
    pub fn req<T>(&self, message: T) -> Request<T> {
        self.req_in(&self.namespace, message)
    }

    /// `message` with `namespace` in its metadata.
    pub fn req_in<T>(&self, namespace: &str, message: T) -> Request<T> {
        with_namespace!(message, namespace)
    }

    /// A container `id` running `args` in the busybox rootfs, through our shim; its spec is
    /// `spec` if given, else the one built here.
    pub fn container(&self, id: &str, args: &[&str], spec: Option<Any>) -> Result<Container> {
        let spec = match spec {
            Some(spec) => spec,
            None => {
                let config = Config::new()
                    .args(args)
                    .cgroups_path(&format!("/{}/{id}", self.namespace))
                    .merge(json!({"root": {"path": self.rootfs}}))?;
                Any {
                    type_url: SPEC_TYPE.into(),
                    value: serde_json::to_vec(config.spec())?,
                }
            }
        };
        Ok(Container {
            id: id.into(),
            runtime: Some(Runtime {
                name: KEEL_SHIM_RUNTIME.into(),
                options: None,
            }),
            spec: Some(spec),
            ..Default::default()
        })
    }

    pub async fn create_container(&self, container: Container) -> Result<(), Status> {
        let request = CreateContainerRequest {
            container: Some(container),
        };
        self.containers().create(self.req(request)).await?;
        Ok(())
    }

    /// Creates the task of container `id` with `stdio`'s FIFOs (none if `None`); its pid.
    pub async fn create_task(&self, id: &str, stdio: Option<&Stdio>) -> Result<u32, Status> {
        let path = |p: Option<&PathBuf>| p.map(|p| p.display().to_string()).unwrap_or_default();
        let request = CreateTaskRequest {
            container_id: id.into(),
            stdout: path(stdio.map(|s| &s.stdout.path)),
            stderr: path(stdio.map(|s| &s.stderr.path)),
            ..Default::default()
        };
        Ok(self
            .tasks()
            .create(self.req(request))
            .await?
            .into_inner()
            .pid)
    }

    pub async fn start(&self, id: &str, exec_id: &str) -> Result<u32, Status> {
        let request = StartRequest {
            container_id: id.into(),
            exec_id: exec_id.into(),
        };
        Ok(self
            .tasks()
            .start(self.req(request))
            .await?
            .into_inner()
            .pid)
    }

    pub async fn kill(&self, id: &str, signal: u32) -> Result<(), Status> {
        let request = KillRequest {
            container_id: id.into(),
            signal,
            ..Default::default()
        };
        self.tasks().kill(self.req(request)).await?;
        Ok(())
    }

    /// Waits (up to [`WAIT`]) for the task's exit; its exit status, which must come with
    /// the time of the exit.
    pub async fn wait(&self, id: &str) -> Result<u32, Status> {
        let request = WaitRequest {
            container_id: id.into(),
            exec_id: String::new(),
        };
        let mut tasks = self.tasks();
        let Ok(reply) = tokio::time::timeout(WAIT, tasks.wait(self.req(request))).await else {
            let why = format!("task {id} did not exit within {}s", WAIT.as_secs());
            return Err(Status::deadline_exceeded(why));
        };
        let reply = reply?.into_inner();
        if reply.exited_at.is_none() {
            return Err(Status::internal(format!(
                "Tasks.Wait {id} has no exited_at"
            )));
        }
        Ok(reply.exit_status)
    }

    pub async fn delete_task(&self, id: &str) -> Result<u32, Status> {
        let request = DeleteTaskRequest {
            container_id: id.into(),
        };
        Ok(self
            .tasks()
            .delete(self.req(request))
            .await?
            .into_inner()
            .exit_status)
    }

    pub async fn delete_container(&self, id: &str) -> Result<(), Status> {
        let request = DeleteContainerRequest { id: id.into() };
        self.containers().delete(self.req(request)).await?;
        Ok(())
    }

    /// Exec `exec_id` of `args` in task `id` (no stdio).
    pub async fn exec(&self, id: &str, exec_id: &str, args: &[&str]) -> Result<(), Status> {
        let process = json!({"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0},
                             "env": ["PATH=/bin"]});
        let request = ExecProcessRequest {
            container_id: id.into(),
            exec_id: exec_id.into(),
            spec: Some(Any {
                type_url: PROCESS_TYPE.into(),
                value: process.to_string().into_bytes(),
            }),
            ..Default::default()
        };
        self.tasks().exec(self.req(request)).await?;
        Ok(())
    }
}

/// A FIFO for a task's stdout or stderr, read to its end by a thread of its own.
pub struct Fifo {
    pub path: PathBuf,
    text: mpsc::Receiver<String>,
}

impl Fifo {
    pub fn make(path: &Path) -> Result<Self> {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .with_context(|| format!("mkfifo {}", path.display()))?;
        let (tx, text) = mpsc::channel();
        let reader = path.to_path_buf();
        // Blocks in open until the shim opens the FIFO, then reads until the shim closes it.
        thread::spawn(move || {
            let _ = tx.send(fs::read_to_string(&reader).unwrap_or_default());
        });
        Ok(Self {
            path: path.to_path_buf(),
            text,
        })
    }

    /// What was written to the FIFO, once its writer closed it (or after [`WAIT`]: then the
    /// reader is released by a writer of our own, and what it read so far is returned).
    pub fn read(&self) -> String {
        if let Ok(text) = self.text.recv_timeout(WAIT) {
            return text;
        }
        let _ = fs::OpenOptions::new().write(true).open(&self.path);
        self.text
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default()
    }
}

/// A task's stdout and stderr FIFOs.
pub struct Stdio {
    pub stdout: Fifo,
    pub stderr: Fifo,
}

impl Stdio {
    pub fn make(dir: &Path, id: &str) -> Result<Self> {
        Ok(Self {
            stdout: Fifo::make(&dir.join(format!("{id}-stdout")))?,
            stderr: Fifo::make(&dir.join(format!("{id}-stderr")))?,
        })
    }
}
