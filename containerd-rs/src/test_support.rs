//! What the unit tests of several services need: a supervisor in a temp dir, and a request in a
//! namespace.

use std::sync::Arc;

use tonic::Request;

use crate::config::Config;
use crate::supervisor::Supervisor;

/// A supervisor whose root, state and sockets are in a new temp dir (kept alive by the caller).
pub fn supervisor() -> (tempfile::TempDir, Supervisor) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = Config {
        root: dir.path().join("root"),
        state: dir.path().join("state"),
        address: dir.path().join("c.sock"),
        ttrpc_address: dir.path().join("c.sock.ttrpc"),
        log_level: "info".into(),
    };
    let supervisor = Supervisor::open(config).expect("opening the supervisor");
    (dir, supervisor)
}

/// [`supervisor`], shared.
pub fn shared_supervisor() -> (tempfile::TempDir, Arc<Supervisor>) {
    let (dir, supervisor) = supervisor();
    (dir, Arc::new(supervisor))
}

/// `message` as a request with the `containerd-namespace` header.
pub fn in_namespace<T>(namespace: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        keel_proto::NAMESPACE_METADATA_KEY,
        namespace.parse().expect("a valid header value"),
    );
    request
}
