//! What goes over the wire between the tests and the shim: the events the fake containerd
//! records, request contexts, the `Any`s containerd sends (runc options, process specs), and
//! the error codes it branches on.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_sync::Events;

use super::{PROCESS_SPEC, RUNC_OPTIONS};
use crate::Config;

/// One event the shim forwarded.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    pub namespace: String,
    pub topic: String,
    pub type_url: String,
    pub value: Vec<u8>,
}

impl RecordedEvent {
    /// The event's payload, decoded.
    pub fn decode<M: Message>(&self) -> Result<M> {
        M::parse_from_bytes(&self.value)
            .with_context(|| format!("decoding the {} event ({})", self.topic, self.type_url))
    }
}

/// containerd's events service, as far as a shim sees it: records every forwarded event.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    pub(super) events: Mutex<Vec<RecordedEvent>>,
}

impl Events for Recorder {
    fn forward(&self, _ctx: &ttrpc::TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        let envelope = req.envelope.unwrap_or_default();
        let event = envelope.event.clone().unwrap_or_default();
        if let Ok(mut events) = self.events.lock() {
            events.push(RecordedEvent {
                namespace: envelope.namespace,
                topic: envelope.topic,
                type_url: event.type_url,
                value: event.value,
            });
        }
        Ok(Empty::new())
    }
}

/// A request context that gives up after `timeout`.
pub fn ctx(timeout: Duration) -> ttrpc::context::Context {
    ttrpc::context::with_timeout(i64::try_from(timeout.as_nanos()).unwrap_or(i64::MAX))
}

/// A socket whose peer is gone, for the client before the daemon is up.
pub(super) fn placeholder_socket() -> Result<std::os::fd::RawFd> {
    use std::os::fd::IntoRawFd;
    let (a, _b) = std::os::unix::net::UnixStream::pair().context("socketpair")?;
    Ok(a.into_raw_fd())
}

/// `containerd.runc.v1.Options { binary_name = binary, root = root }`.
pub fn runc_options(binary: &Path, root: Option<&Path>) -> Any {
    let mut value = Vec::new();
    let mut field = |tag: u8, text: &str| {
        value.push(tag);
        encode_varint(text.len() as u64, &mut value);
        value.extend_from_slice(text.as_bytes());
    };
    field(0x32, &binary.display().to_string());
    if let Some(root) = root {
        field(0x3a, &root.display().to_string());
    }
    let mut any = Any::new();
    any.type_url = RUNC_OPTIONS.into();
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

/// An exec's process spec: the config's process with `args`, as containerd sends it.
pub fn process_spec(config: &Config, args: &[&str]) -> Result<Any> {
    let mut process = serde_json::to_value(config.spec().process())
        .context("serializing the config's process")?;
    process["args"] = serde_json::json!(args);
    let mut any = Any::new();
    any.type_url = PROCESS_SPEC.into();
    any.value = serde_json::to_vec(&process).context("serializing the process spec")?;
    Ok(any)
}

/// The ttrpc status code of a failed request (None for a transport error).
pub fn code_of(err: &ttrpc::Error) -> Option<ttrpc::Code> {
    match err {
        ttrpc::Error::RpcStatus(s) => Some(s.code.enum_value_or_default()),
        _ => None,
    }
}

/// The message of the error `result` must be, with `code`; `what` names the request.
pub fn expect_code<T: std::fmt::Debug>(
    result: ttrpc::Result<T>,
    code: ttrpc::Code,
    what: &str,
) -> Result<String> {
    match result {
        Err(ttrpc::Error::RpcStatus(s)) if s.code.enum_value_or_default() == code => Ok(s.message),
        other => bail!("{what}: expected {code:?}, got {other:?}"),
    }
}
