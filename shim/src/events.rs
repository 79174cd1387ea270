//! Task events back to the supervisor, the way containerd 1.6 receives them from its shims:
//! `containerd.services.events.ttrpc.v1.Events/Forward` on containerd's ttrpc socket
//! (`$TTRPC_ADDRESS`, else `<address>.ttrpc`). Events are queued and sent in order by one task,
//! which reconnects and retries while the supervisor restarts.

use std::time::{Duration, SystemTime};

use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::EventsClient;
use containerd_shim_protos::topics;
use tokio::sync::{mpsc, oneshot};

/// How often, and how far apart, a failed forward is retried before the event is dropped.
const ATTEMPTS: u32 = 20;
const RETRY_DELAY: Duration = Duration::from_millis(250);
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// One task event.
#[derive(Debug, Clone)]
pub struct Event {
    pub topic: &'static str,
    pub payload: Any,
}

/// A task event type, its topic, and its type URL as containerd's typeurl writes it (the
/// message's full name, no prefix). Written out rather than read from the protobuf descriptor:
/// building descriptors costs a shim more heap than all its containers' state.
pub trait TaskEvent: Message {
    const TOPIC: &'static str;
    const TYPE_URL: &'static str;
}

macro_rules! task_events {
    ($($ty:ident => $topic:ident),* $(,)?) => {
        $(impl TaskEvent for $ty {
            const TOPIC: &'static str = topics::$topic;
            const TYPE_URL: &'static str = concat!("containerd.events.", stringify!($ty));
        })*
    };
}

task_events! {
    TaskCreate => TASK_CREATE_EVENT_TOPIC,
    TaskStart => TASK_START_EVENT_TOPIC,
    TaskExit => TASK_EXIT_EVENT_TOPIC,
    TaskDelete => TASK_DELETE_EVENT_TOPIC,
    TaskOOM => TASK_OOM_EVENT_TOPIC,
    TaskExecAdded => TASK_EXEC_ADDED_EVENT_TOPIC,
    TaskExecStarted => TASK_EXEC_STARTED_EVENT_TOPIC,
    TaskPaused => TASK_PAUSED_EVENT_TOPIC,
    TaskResumed => TASK_RESUMED_EVENT_TOPIC,
}

impl Event {
    /// Wraps `event` in an `Any`.
    pub fn new<E: TaskEvent>(event: &E) -> Self {
        let mut payload = Any::new();
        payload.type_url = E::TYPE_URL.to_string();
        payload.value = event.write_to_bytes().unwrap_or_default();
        Self {
            topic: E::TOPIC,
            payload,
        }
    }
}

/// What the forwarding task is given: an event, or a request to say when all before it are
/// sent.
#[derive(Debug)]
enum Item {
    Event(Event),
    Flush(oneshot::Sender<()>),
}

/// The sending end of the event queue.
#[derive(Debug, Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<Item>,
}

impl Publisher {
    /// Starts the forwarding task for events of `namespace` to the ttrpc socket `ttrpc_address`
    /// (a path or `unix://` address); `None` only logs them (no supervisor to tell).
    pub fn start(namespace: String, ttrpc_address: Option<String>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(forward_all(rx, namespace, ttrpc_address));
        Self { tx }
    }

    /// Queues `event`.
    pub fn publish<E: TaskEvent>(&self, event: &E) {
        let event = Event::new(event);
        tracing::debug!(topic = event.topic, "publishing");
        let _ = self.tx.send(Item::Event(event));
    }

    /// Waits, up to `limit`, until every event queued so far has been sent (or dropped).
    pub async fn flush(&self, limit: Duration) {
        let (done, sent) = oneshot::channel();
        if self.tx.send(Item::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(limit, sent).await;
        }
    }
}

/// The address containerd's shims publish to: `$TTRPC_ADDRESS`, else `<address>.ttrpc`.
pub fn ttrpc_address(containerd_address: &str) -> Option<String> {
    match std::env::var("TTRPC_ADDRESS") {
        Ok(a) if !a.is_empty() => Some(a),
        _ if !containerd_address.is_empty() => Some(format!("{containerd_address}.ttrpc")),
        _ => None,
    }
}

async fn forward_all(
    mut rx: mpsc::UnboundedReceiver<Item>,
    namespace: String,
    address: Option<String>,
) {
    let Some(address) = address else {
        while let Some(item) = rx.recv().await {
            if let Item::Flush(done) = item {
                let _ = done.send(());
            }
        }
        return;
    };
    let address = if address.starts_with("unix://") {
        address
    } else {
        format!("unix://{address}")
    };
    let mut client: Option<EventsClient> = None;
    while let Some(item) = rx.recv().await {
        let event = match item {
            Item::Event(event) => event,
            Item::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let request = envelope(&namespace, &event);
        for attempt in 1..=ATTEMPTS {
            if client.is_none() {
                client = ttrpc::asynchronous::Client::connect(&address)
                    .await
                    .ok()
                    .map(EventsClient::new);
            }
            let sent = match &client {
                Some(c) => c
                    .forward(
                        ttrpc::context::with_timeout(FORWARD_TIMEOUT.as_nanos() as i64),
                        &request,
                    )
                    .await
                    .map_err(|e| e.to_string()),
                None => Err(format!("cannot connect to {address}")),
            };
            match sent {
                Ok(_) => break,
                Err(e) if attempt == ATTEMPTS => {
                    tracing::error!(topic = event.topic, "dropping event: {e}");
                }
                Err(_) => {
                    client = None;
                    tokio::time::sleep(RETRY_DELAY).await;
                }
            }
        }
    }
}

fn envelope(namespace: &str, event: &Event) -> ForwardRequest {
    let mut envelope = Envelope::new();
    envelope.timestamp = Some(timestamp(SystemTime::now())).into();
    envelope.namespace = namespace.to_string();
    envelope.topic = event.topic.to_string();
    envelope.event = Some(event.payload.clone()).into();
    let mut request = ForwardRequest::new();
    request.envelope = Some(envelope).into();
    request
}

/// A protobuf timestamp.
pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = since.as_secs() as i64;
    ts.nanos = since.subsec_nanos() as i32;
    ts
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::MessageFull;

    #[test]
    fn events_carry_containerds_type_urls_and_topics() {
        let mut exit = TaskExit::new();
        exit.container_id = "c".into();
        exit.exit_status = 3;
        let event = Event::new(&exit);
        assert_eq!(event.topic, "/tasks/exit");
        assert_eq!(event.payload.type_url, "containerd.events.TaskExit");
        // The written-out type URLs are the descriptors' full names.
        assert_eq!(TaskExit::descriptor().full_name(), TaskExit::TYPE_URL);
        assert_eq!(TaskOOM::descriptor().full_name(), TaskOOM::TYPE_URL);
        assert_eq!(
            TaskExecStarted::descriptor().full_name(),
            TaskExecStarted::TYPE_URL
        );
        let back = TaskExit::parse_from_bytes(&event.payload.value).unwrap();
        assert_eq!(back.exit_status, 3);
        let request = envelope("ns", &event);
        assert_eq!(request.envelope.namespace, "ns");
        assert_eq!(request.envelope.topic, "/tasks/exit");
    }

    #[test]
    fn timestamps_split_seconds_and_nanos() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(5, 7);
        let ts = timestamp(at);
        assert_eq!((ts.seconds, ts.nanos), (5, 7));
    }
}
