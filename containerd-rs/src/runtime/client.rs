//! The task API of one shim over ttrpc, as containerd 1.6 speaks it: service
//! `containerd.task.v2.Task`, the namespace in the `containerd-namespace-ttrpc` metadata.
//! containerd-shim-protos' generated client calls `containerd.task.v3.Task` (containerd 2's
//! name), which the stock 1.6 shims do not serve, so requests are sent raw here with the
//! crate's messages.

use std::time::Duration;

use containerd_shim_protos::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, ExecProcessRequest, KillRequest, PauseRequest, PidsRequest,
    PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest, StartResponse,
    StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest, WaitRequest,
    WaitResponse,
};
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::Message;
use ttrpc::asynchronous::transport::Socket;
use ttrpc::proto::KeyValue;

use super::connection::{self, Closed};

/// The service every runtime v2 shim of containerd 1.6 serves.
pub const TASK_SERVICE: &str = "containerd.task.v2.Task";

/// The ttrpc metadata key containerd sends the namespace in.
pub const NAMESPACE_KEY: &str = "containerd-namespace-ttrpc";

/// What a shim call failed with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShimError {
    /// The shim answered with an error status.
    #[error("{message}")]
    Status { code: ttrpc::Code, message: String },
    /// The connection is gone: the shim exited or was killed.
    #[error("the shim is gone (its connection closed)")]
    Closed,
    #[error("the shim did not answer {method} within {limit:?}")]
    Timeout {
        method: &'static str,
        limit: Duration,
    },
    #[error("connecting to the shim at {address}: {message}")]
    Connect { address: String, message: String },
    /// Anything else the transport reports.
    #[error("ttrpc {method}: {message}")]
    Transport {
        method: &'static str,
        message: String,
    },
}

/// A ttrpc client of one shim's task service.
#[derive(Clone)]
pub struct ShimClient {
    client: ttrpc::asynchronous::Client,
    namespace: String,
    closed: Closed,
}

impl std::fmt::Debug for ShimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShimClient")
            .field("namespace", &self.namespace)
            .field("closed", &self.closed.is_closed())
            .finish()
    }
}

macro_rules! calls {
    ($($(#[$doc:meta])* $name:ident($method:literal, $req:ty) -> $resp:ty;)*) => {
        impl ShimClient {
            $(
                $(#[$doc])*
                pub async fn $name(
                    &self,
                    request: &$req,
                    limit: Option<Duration>,
                ) -> Result<$resp, ShimError> {
                    self.call($method, request, limit).await
                }
            )*
        }
    };
}

calls! {
    create("Create", CreateTaskRequest) -> CreateTaskResponse;
    start("Start", StartRequest) -> StartResponse;
    delete("Delete", DeleteRequest) -> DeleteResponse;
    state("State", StateRequest) -> StateResponse;
    kill("Kill", KillRequest) -> Empty;
    exec("Exec", ExecProcessRequest) -> Empty;
    resize_pty("ResizePty", ResizePtyRequest) -> Empty;
    close_io("CloseIO", CloseIORequest) -> Empty;
    pids("Pids", PidsRequest) -> PidsResponse;
    pause("Pause", PauseRequest) -> Empty;
    resume("Resume", ResumeRequest) -> Empty;
    update("Update", UpdateTaskRequest) -> Empty;
    stats("Stats", StatsRequest) -> StatsResponse;
    /// Blocks until the process has exited.
    wait("Wait", WaitRequest) -> WaitResponse;
    /// The shim's and the task's pids: how a supervisor checks a shim it found still answers.
    connect("Connect", ConnectRequest) -> ConnectResponse;
    shutdown("Shutdown", ShutdownRequest) -> Empty;
}

impl ShimClient {
    /// Connects to the shim at `address` for calls in `namespace`.
    pub async fn dial(address: &str, namespace: &str) -> Result<Self, ShimError> {
        let (stream, closed) =
            connection::connect(address)
                .await
                .map_err(|e| ShimError::Connect {
                    address: address.to_string(),
                    message: e.to_string(),
                })?;
        let client = ttrpc::asynchronous::Client::new(Socket::new(stream));
        Ok(Self {
            client,
            namespace: namespace.to_string(),
            closed,
        })
    }

    /// Tells when the connection closes.
    pub fn closed(&self) -> Closed {
        self.closed.clone()
    }

    /// Sends `method` with `request` and decodes the answer, giving up after `limit` (none:
    /// wait as long as it takes, for Wait).
    async fn call<Q: Message, P: Message>(
        &self,
        method: &'static str,
        request: &Q,
        limit: Option<Duration>,
    ) -> Result<P, ShimError> {
        let transport = |message: String| ShimError::Transport { method, message };
        let payload = request
            .write_to_bytes()
            .map_err(|e| transport(format!("encoding the request: {e}")))?;
        let mut req = ttrpc::Request::new();
        req.service = TASK_SERVICE.to_string();
        req.method = method.to_string();
        let mut namespace = KeyValue::new();
        namespace.key = NAMESPACE_KEY.to_string();
        namespace.value = self.namespace.clone();
        req.metadata = vec![namespace];
        req.payload = payload;
        let answer = match limit {
            Some(limit) => tokio::time::timeout(limit, self.client.request(req))
                .await
                .map_err(|_| ShimError::Timeout { method, limit })?,
            None => self.client.request(req).await,
        };
        let response = answer.map_err(|e| self.error(method, e))?;
        P::parse_from_bytes(&response.payload)
            .map_err(|e| transport(format!("decoding the answer: {e}")))
    }

    fn error(&self, method: &'static str, e: ttrpc::Error) -> ShimError {
        match e {
            ttrpc::Error::RpcStatus(status) => ShimError::Status {
                code: status.code.enum_value_or_default(),
                message: status.message,
            },
            ttrpc::Error::RemoteClosed
            | ttrpc::Error::LocalClosed
            | ttrpc::Error::Eof
            | ttrpc::Error::Socket(_) => ShimError::Closed,
            _ if self.closed.is_closed() => ShimError::Closed,
            other => ShimError::Transport {
                method,
                message: other.to_string(),
            },
        }
    }
}

impl ShimError {
    /// The shim's status code, if it answered with one.
    pub fn code(&self) -> Option<ttrpc::Code> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}
