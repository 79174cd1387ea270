//! The task API requests of a [`ShimUnderTest`], for this shim's container: each a ttrpc call
//! with [`super::RPC_TIMEOUT`] (Wait: [`WAIT`]), its answer or error returned as is.

use containerd_shim_protos::api::{
    ConnectRequest, ConnectResponse, CreateTaskRequest, DeleteRequest, DeleteResponse, KillRequest,
    ShutdownRequest, StartRequest, StartResponse, StateRequest, StateResponse, WaitRequest,
    WaitResponse,
};
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::types::mount::Mount;

use super::{ctx, ShimUnderTest, WAIT};

impl ShimUnderTest {
    /// A Create request for this shim's container and bundle (no stdio, no options).
    pub fn create_request(&self) -> CreateTaskRequest {
        CreateTaskRequest {
            id: self.id.clone(),
            bundle: self.bundle.path().display().to_string(),
            ..Default::default()
        }
    }

    /// The bind mount of the busybox image that [`super::Rootfs::Mounted`] expects in Create.
    pub fn rootfs_mounts(&self) -> Vec<Mount> {
        let mut m = Mount::new();
        m.type_ = "bind".into();
        m.source = self.state.path().join("image").display().to_string();
        m.options = vec!["rbind".into(), "rw".into()];
        vec![m]
    }

    pub fn start_process(&self, exec_id: &str) -> ttrpc::Result<StartResponse> {
        let req = StartRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.client.start(self.ctx(), &req)
    }

    pub fn state(&self, exec_id: &str) -> ttrpc::Result<StateResponse> {
        let req = StateRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.client.state(self.ctx(), &req)
    }

    /// Waits (up to [`WAIT`]) for the init (`""`) or an exec to exit.
    pub fn wait(&self, exec_id: &str) -> ttrpc::Result<WaitResponse> {
        let req = WaitRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.client.wait(ctx(WAIT), &req)
    }

    pub fn kill(&self, exec_id: &str, signal: u32) -> ttrpc::Result<Empty> {
        let req = KillRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            signal,
            ..Default::default()
        };
        self.client.kill(self.ctx(), &req)
    }

    pub fn delete(&self, exec_id: &str) -> ttrpc::Result<DeleteResponse> {
        let req = DeleteRequest {
            id: self.id.clone(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.client.delete(self.ctx(), &req)
    }

    pub fn connect(&self) -> ttrpc::Result<ConnectResponse> {
        let req = ConnectRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client.connect(self.ctx(), &req)
    }

    pub fn shutdown(&self) -> ttrpc::Result<Empty> {
        let req = ShutdownRequest {
            id: self.id.clone(),
            ..Default::default()
        };
        self.client.shutdown(self.ctx(), &req)
    }
}
