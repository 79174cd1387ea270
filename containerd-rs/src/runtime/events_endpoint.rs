//! The ttrpc endpoint shims forward their task events to: containerd's
//! `containerd.services.events.ttrpc.v1.Events/Forward` on its ttrpc socket (`TTRPC_ADDRESS`
//! for the shims we start). Each forwarded envelope goes into the event exchange as it came:
//! its namespace, topic, timestamp and payload.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use containerd_shim_protos::api::ForwardRequest;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::shim_async::{create_events, Events};
use ttrpc::asynchronous::transport::Listener;
use ttrpc::asynchronous::{Server, TtrpcContext};

use super::protos;
use crate::events::{Envelope, Exchange};
use crate::identifiers;

/// The running endpoint.
pub struct EventsEndpoint {
    server: Server,
}

impl std::fmt::Debug for EventsEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsEndpoint").finish_non_exhaustive()
    }
}

impl EventsEndpoint {
    /// Serves on the unix socket `path` (mode 0660; a stale socket is replaced, a live one is
    /// an error), publishing into `events`.
    pub async fn start(path: &Path, events: Exchange) -> io::Result<Self> {
        let listener = bind(path)?;
        let service = create_events(Arc::new(Forwarder { events }));
        let mut server = Server::new()
            .add_listener(Listener::from(listener))
            .register_service(service);
        server.start().await.map_err(io::Error::other)?;
        Ok(Self { server })
    }

    /// Stops accepting and closes the connections.
    pub async fn stop(mut self) {
        if let Err(e) = self.server.shutdown().await {
            tracing::debug!("stopping the ttrpc endpoint: {e}");
        }
    }
}

fn bind(path: &Path) -> io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{}: another daemon is serving this socket", path.display()),
            ));
        }
        fs::remove_file(path)?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o660))?;
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}

struct Forwarder {
    events: Exchange,
}

#[async_trait]
impl Events for Forwarder {
    async fn forward(&self, _ctx: &TtrpcContext, request: ForwardRequest) -> ttrpc::Result<Empty> {
        let envelope = envelope(request).map_err(|message| {
            ttrpc::Error::RpcStatus(ttrpc::get_status(ttrpc::Code::INVALID_ARGUMENT, message))
        })?;
        self.events.publish(envelope).map_err(|e| {
            ttrpc::Error::RpcStatus(ttrpc::get_status(ttrpc::Code::INVALID_ARGUMENT, e))
        })?;
        Ok(Empty::new())
    }
}

/// The exchange's envelope for a forwarded one; its namespace must be a valid one.
fn envelope(request: ForwardRequest) -> Result<Envelope, String> {
    let envelope = request
        .envelope
        .into_option()
        .ok_or("the forwarded request has no envelope")?;
    identifiers::validate(&envelope.namespace)
        .map_err(|e| format!("event namespace {:?}: {e}", envelope.namespace))?;
    let event = envelope.event.into_option().unwrap_or_default();
    let timestamp = if envelope.timestamp.is_some() {
        protos::system_time(&envelope.timestamp)
    } else {
        SystemTime::now()
    };
    Ok(Envelope {
        timestamp,
        namespace: envelope.namespace,
        topic: envelope.topic,
        type_url: event.type_url,
        payload: event.value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::well_known_types::any::Any;
    use containerd_shim_protos::shim::event::Envelope as ShimEnvelope;
    use containerd_shim_protos::shim_async::EventsClient;

    fn request(namespace: &str, topic: &str) -> ForwardRequest {
        let mut event = Any::new();
        event.type_url = "containerd.events.TaskStart".into();
        event.value = vec![0x0a, 1, b'c'];
        let mut envelope = ShimEnvelope::new();
        envelope.namespace = namespace.into();
        envelope.topic = topic.into();
        envelope.event = Some(event).into();
        envelope.timestamp = Some(protos::timestamp_to_shim(SystemTime::now())).into();
        let mut req = ForwardRequest::new();
        req.envelope = Some(envelope).into();
        req
    }

    #[test]
    fn forwarded_events_reach_subscribers() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("c.sock.ttrpc");
            // A stale socket file is replaced.
            drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
            let exchange = Exchange::new();
            let mut events = exchange.subscribe(crate::filters::Filter::default());
            let endpoint = EventsEndpoint::start(&path, exchange.clone()).await.unwrap();
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o660);
            assert!(EventsEndpoint::start(&path, exchange.clone()).await.is_err());

            let address = format!("unix://{}", path.display());
            let client = EventsClient::new(ttrpc::asynchronous::Client::connect(&address).await.unwrap());
            let ctx = ttrpc::context::with_timeout(5_000_000_000);
            client.forward(ctx.clone(), &request("ns1", "/tasks/start")).await.unwrap();
            let got = events.next().await.unwrap();
            assert_eq!(
                (got.namespace.as_str(), got.topic.as_str(), got.type_url.as_str()),
                ("ns1", "/tasks/start", "containerd.events.TaskStart")
            );
            assert_eq!(got.payload, vec![0x0a, 1, b'c']);
            for bad in [request("bad ns", "/tasks/start"), request("ns1", "tasks")] {
                let err = client.forward(ctx.clone(), &bad).await.unwrap_err();
                assert!(
                    matches!(&err, ttrpc::Error::RpcStatus(s) if s.code.enum_value_or_default() == ttrpc::Code::INVALID_ARGUMENT),
                    "{err:?}"
                );
            }
            endpoint.stop().await;
        });
    }
}
