//! The event exchange: what the services publish (container created, namespace deleted, ...) and
//! what shims forward (task events), handed to every subscriber whose filters pass it, as
//! containerd's `events.Exchange` does. Subscribers that fall behind lose the oldest events
//! rather than slow the publishers down.

use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::filters::{Fields, Filter};

/// How many events a slow subscriber may lag behind before it misses some.
const BACKLOG: usize = 1024;

/// One event: where it happened, its topic, and its payload (an `Any`: type URL and bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub timestamp: SystemTime,
    pub namespace: String,
    pub topic: String,
    pub type_url: String,
    pub payload: Vec<u8>,
}

impl Fields for Envelope {
    /// Filters see `namespace`, `topic` and `event` (the payload's type URL, containerd's
    /// adaptor exposes the decoded fields; ours stops at the type).
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "namespace" => Some(self.namespace.clone()),
            [f] if f == "topic" => Some(self.topic.clone()),
            [f] if f == "event" => Some(self.type_url.clone()),
            _ => None,
        }
    }
}

/// Why an event was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("event topic {0:?} must be '/' and '/'-separated identifiers")]
    Topic(String),
}

/// The exchange.
#[derive(Debug, Clone)]
pub struct Exchange {
    tx: broadcast::Sender<Envelope>,
}

impl Default for Exchange {
    fn default() -> Self {
        Self::new()
    }
}

impl Exchange {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(BACKLOG);
        Self { tx }
    }

    /// Publishes an event (from a service, or forwarded by a shim).
    pub fn publish(&self, envelope: Envelope) -> Result<(), EventError> {
        validate_topic(&envelope.topic)?;
        tracing::debug!(namespace = %envelope.namespace, topic = %envelope.topic, "event");
        // No subscriber is not an error.
        let _ = self.tx.send(envelope);
        Ok(())
    }

    /// Every event from now on that passes `filter`.
    pub fn subscribe(&self, filter: Filter) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            filter,
        }
    }
}

/// A subscriber's view of the exchange.
#[derive(Debug)]
pub struct Subscription {
    rx: broadcast::Receiver<Envelope>,
    filter: Filter,
}

impl Subscription {
    /// The next event that passes the filter; `None` when the exchange is gone.
    pub async fn next(&mut self) -> Option<Envelope> {
        loop {
            match self.rx.recv().await {
                Ok(e) if self.filter.matches(&e) => return Some(e),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("a slow event subscriber missed {n} events");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// containerd's topic rule: `/` then `/`-separated identifiers.
fn validate_topic(topic: &str) -> Result<(), EventError> {
    let bad = || EventError::Topic(topic.to_string());
    let rest = topic.strip_prefix('/').ok_or_else(bad)?;
    if rest
        .split('/')
        .any(|e| crate::identifiers::validate(e).is_err())
    {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(namespace: &str, topic: &str) -> Envelope {
        Envelope {
            timestamp: SystemTime::now(),
            namespace: namespace.into(),
            topic: topic.into(),
            type_url: "containerd.events.TaskStart".into(),
            payload: vec![1],
        }
    }

    #[test]
    fn subscribers_get_what_their_filters_pass() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let exchange = Exchange::new();
            let mut all = exchange.subscribe(Filter::default());
            let filter = Filter::parse_all(&["topic~=^/tasks/", "namespace==ns2"]).unwrap();
            let mut tasks = exchange.subscribe(filter);
            exchange
                .publish(event("ns1", "/containers/create"))
                .unwrap();
            exchange.publish(event("ns1", "/tasks/start")).unwrap();
            exchange
                .publish(event("ns2", "/namespaces/update"))
                .unwrap();
            assert_eq!(all.next().await.unwrap().topic, "/containers/create");
            assert_eq!(tasks.next().await.unwrap().topic, "/tasks/start");
            assert_eq!(tasks.next().await.unwrap().topic, "/namespaces/update");
        });
    }

    #[test]
    fn topics_are_checked() {
        let exchange = Exchange::new();
        for bad in [
            "tasks/start",
            "/",
            "/tasks//start",
            "/tasks/st art",
            "",
            "/tasks/-x",
        ] {
            assert!(exchange.publish(event("n", bad)).is_err(), "{bad:?}");
        }
        assert!(exchange.publish(event("n", "/tasks/exit")).is_ok());
    }
}
