//! `containerd.services.events.v1.Events` over the exchange: Publish (an event in the caller's
//! namespace), Forward (an envelope as it is) and Subscribe (a stream of envelopes that pass
//! the filters, in every namespace unless a filter says otherwise).

use std::sync::Arc;
use std::time::SystemTime;

use keel_proto::event_service::events_server::Events;
use keel_proto::event_service::{Envelope, ForwardRequest, PublishRequest, SubscribeRequest};
use prost_types::Any;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{namespace, timestamp};
use crate::events::{self, EventError};
use crate::filters::Filter;
use crate::identifiers;
use crate::supervisor::Supervisor;

/// How many envelopes may wait for a slow subscriber's connection before the exchange's own
/// backlog takes over.
const STREAM_BUFFER: usize = 64;

#[derive(Debug, Clone)]
pub struct EventsService {
    supervisor: Arc<Supervisor>,
}

impl EventsService {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self { supervisor }
    }
}

fn invalid(e: EventError) -> Status {
    Status::invalid_argument(format!("{e}: invalid argument"))
}

/// containerd's topic rule, which is stricter than the exchange's own: every element is an
/// identifier (`/tasks/exec-added`). Worded as containerd's exchange words it.
fn validate_topic(topic: &str) -> Result<(), Status> {
    let bad = |why: String| {
        Status::invalid_argument(format!("envelope topic {topic:?}: {why}: invalid argument"))
    };
    let rest = match topic.strip_prefix('/') {
        _ if topic.is_empty() => return Err(bad("must not be empty".into())),
        None => return Err(bad("must start with '/'".into())),
        Some("") => return Err(bad("must have at least one component".into())),
        Some(rest) => rest,
    };
    for component in rest.split('/') {
        identifiers::validate(component)
            .map_err(|e| bad(format!("failed validation on component {component:?}: {e}")))?;
    }
    Ok(())
}

/// The event of a Publish or Forward; containerd 1.6 dies of a nil pointer without one.
fn required(event: Option<Any>) -> Result<Any, Status> {
    event.ok_or_else(|| Status::invalid_argument("event must be set: invalid argument"))
}

fn to_proto(e: events::Envelope) -> Envelope {
    Envelope {
        timestamp: Some(timestamp(e.timestamp)),
        namespace: e.namespace,
        topic: e.topic,
        event: Some(Any {
            type_url: e.type_url,
            value: e.payload,
        }),
    }
}

/// A forwarded envelope, checked as containerd's `validateEnvelope` does.
fn from_proto(envelope: Envelope) -> Result<events::Envelope, Status> {
    identifiers::validate(&envelope.namespace).map_err(|e| {
        Status::invalid_argument(format!(
            "event envelope has invalid namespace: {e}: invalid argument"
        ))
    })?;
    validate_topic(&envelope.topic)?;
    let at = envelope
        .timestamp
        .and_then(|t| SystemTime::try_from(t).ok())
        .ok_or_else(|| {
            Status::invalid_argument("timestamp must be set on forwarded event: invalid argument")
        })?;
    let event = required(envelope.event)?;
    Ok(events::Envelope {
        timestamp: at,
        namespace: envelope.namespace,
        topic: envelope.topic,
        type_url: event.type_url,
        payload: event.value,
    })
}

#[tonic::async_trait]
impl Events for EventsService {
    type SubscribeStream = ReceiverStream<Result<Envelope, Status>>;

    async fn publish(&self, request: Request<PublishRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        validate_topic(&req.topic)?;
        let event = required(req.event)?;
        self.supervisor
            .events
            .publish(events::Envelope {
                timestamp: SystemTime::now(),
                namespace: ns,
                topic: req.topic,
                type_url: event.type_url,
                payload: event.value,
            })
            .map_err(invalid)?;
        Ok(Response::new(()))
    }

    async fn forward(&self, request: Request<ForwardRequest>) -> Result<Response<()>, Status> {
        let envelope = request
            .into_inner()
            .envelope
            .ok_or_else(|| Status::invalid_argument("no envelope to forward: invalid argument"))?;
        self.supervisor
            .events
            .publish(from_proto(envelope)?)
            .map_err(invalid)?;
        Ok(Response::new(()))
    }

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let filter = Filter::parse_all(&request.into_inner().filters)
            .map_err(|e| Status::invalid_argument(format!("{e}: invalid argument")))?;
        // Subscribed before answering, so every event published after the call returns is seen.
        let mut subscription = self.supervisor.events.subscribe(filter);
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    // The client went away: stop, even if no event ever comes.
                    () = tx.closed() => break,
                    event = subscription.next() => {
                        let Some(event) = event else { break };
                        if tx.send(Ok(to_proto(event))).await.is_err() {
                            break;
                        }
                    }
                }
            }
            tracing::debug!("event subscriber gone");
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;
    use tonic::Code;

    fn service() -> (tempfile::TempDir, EventsService) {
        let (dir, supervisor) = crate::test_support::shared_supervisor();
        (dir, EventsService::new(supervisor))
    }

    use crate::test_support::in_namespace;

    fn event(type_url: &str) -> Option<Any> {
        Some(Any {
            type_url: type_url.into(),
            value: vec![1, 2],
        })
    }

    #[test]
    fn topics_as_containerd_checks_them() {
        for good in ["/tasks/exit", "/tasks/exec-added", "/a", "/x.y/z_1"] {
            assert!(validate_topic(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "must not be empty"),
            ("tasks", "must start with '/'"),
            ("/", "must have at least one component"),
            ("/a//b", "failed validation on component \"\""),
            ("/a b", "failed validation on component \"a b\""),
            ("/a/b/", "failed validation on component \"\""),
        ] {
            let status = validate_topic(bad).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(
                status.message().contains(why),
                "{bad:?}: {}",
                status.message()
            );
        }
    }

    #[test]
    fn forwarded_envelopes_are_checked() {
        let good = Envelope {
            timestamp: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 5,
            }),
            namespace: "n".into(),
            topic: "/tasks/exit".into(),
            event: event("containerd.events.TaskExit"),
        };
        let e = from_proto(good.clone()).unwrap();
        assert_eq!(e.namespace, "n");
        assert_eq!(e.type_url, "containerd.events.TaskExit");
        assert_eq!(
            e.timestamp.duration_since(SystemTime::UNIX_EPOCH).unwrap(),
            std::time::Duration::new(1, 5),
            "a forwarded event keeps its time"
        );
        type Change = fn(&mut Envelope);
        let bad: [(Change, &str); 4] = [
            (|e| e.namespace = "a/b".into(), "invalid namespace"),
            (|e| e.topic = "x".into(), "must start with '/'"),
            (|e| e.timestamp = None, "timestamp must be set"),
            (|e| e.event = None, "event must be set"),
        ];
        for (change, why) in bad {
            let mut envelope = good.clone();
            change(&mut envelope);
            let status = from_proto(envelope).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(status.message().contains(why), "{}", status.message());
        }
    }

    #[tokio::test]
    async fn subscribers_get_published_and_forwarded_events_through_their_filters() {
        let (_dir, service) = service();
        let filters = vec![
            "namespace==n2,topic~=^/keel/".to_string(),
            r#"topic=="/other""#.to_string(),
        ];
        let mut stream = service
            .subscribe(Request::new(SubscribeRequest { filters }))
            .await
            .unwrap()
            .into_inner();
        for (namespace, topic) in [
            ("n1", "/keel/a"),
            ("n2", "/keel/b"),
            ("n2", "/nope"),
            ("n1", "/other"),
        ] {
            let request = in_namespace(
                namespace,
                PublishRequest {
                    topic: topic.into(),
                    event: event("containerd.events.TaskStart"),
                },
            );
            service.publish(request).await.unwrap();
        }
        let forwarded = Envelope {
            timestamp: Some(prost_types::Timestamp {
                seconds: 7,
                nanos: 0,
            }),
            namespace: "n9".into(),
            topic: "/other".into(),
            event: event("containerd.events.TaskExit"),
        };
        service
            .forward(Request::new(ForwardRequest {
                envelope: Some(forwarded.clone()),
            }))
            .await
            .unwrap();
        let mut got = Vec::new();
        for _ in 0..3 {
            let e = stream.next().await.unwrap().unwrap();
            assert!(e.timestamp.is_some());
            got.push(format!("{} {}", e.namespace, e.topic));
            if e.namespace == "n9" {
                assert_eq!(e, forwarded, "forwarded as it came");
            }
        }
        assert_eq!(got, ["n2 /keel/b", "n1 /other", "n9 /other"]);
    }

    #[tokio::test]
    async fn bad_calls_are_refused() {
        let (_dir, service) = service();
        let publish = |ns: &str, topic: &str, event: Option<Any>| {
            let mut request = Request::new(PublishRequest {
                topic: topic.into(),
                event,
            });
            if !ns.is_empty() {
                request = in_namespace(ns, request.into_inner());
            }
            service.publish(request)
        };
        let code = |r: Result<Response<()>, Status>| r.unwrap_err().code();
        assert_eq!(
            code(publish("", "/a", event("x")).await),
            Code::FailedPrecondition
        );
        assert_eq!(
            code(publish("n", "a", event("x")).await),
            Code::InvalidArgument
        );
        assert_eq!(code(publish("n", "/a", None).await), Code::InvalidArgument);
        let forward = service.forward(Request::new(ForwardRequest { envelope: None }));
        assert_eq!(code(forward.await), Code::InvalidArgument);
        let subscribe = service.subscribe(Request::new(SubscribeRequest {
            filters: vec!["topic=".into()],
        }));
        assert_eq!(subscribe.await.unwrap_err().code(), Code::InvalidArgument);
    }
}
