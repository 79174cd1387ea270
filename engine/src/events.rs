//! The engine's event log, what `GET /events` streams: every change the engine makes is
//! published here as a Docker event (type, action, actor); subscribers get the recent past
//! (for `since`) and everything after, with no gap and no duplicate between the two, because
//! publishing and subscribing take the same lock. Only the last [`KEPT_EVENTS`] are kept, in
//! memory, as dockerd keeps its last 256.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bollard_stubs::models::{
    EventActor, EventMessage, EventMessageScopeEnum, EventMessageTypeEnum,
};
use tokio::sync::{broadcast, watch};

/// How many past events a new subscriber can ask for with `since`.
pub const KEPT_EVENTS: usize = 1024;

/// How many events a slow subscriber may fall behind before it misses some.
const CHANNEL_CAPACITY: usize = 1024;

/// One thing that happened, as Docker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `image`, `container`, ...
    pub kind: EventKind,
    /// `tag`, `untag`, `delete`, `prune`, ...
    pub action: String,
    /// The object's ID (an image ID for image events).
    pub id: String,
    /// `name` and the like.
    pub attributes: HashMap<String, String>,
    /// When, in nanoseconds since the epoch.
    pub time_nano: i64,
}

/// The object types the engine reports on so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Images: tag, untag, delete, prune.
    Image,
}

impl EventKind {
    /// The API's name for the type.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Image => "image",
        }
    }
}

impl Event {
    /// An event of now.
    pub fn now(kind: EventKind, action: &str, id: &str, attributes: &[(&str, &str)]) -> Self {
        let time_nano = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self {
            kind,
            action: action.to_string(),
            id: id.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            time_nano,
        }
    }

    /// The API's `EventMessage`.
    pub fn to_message(&self) -> EventMessage {
        EventMessage {
            typ: Some(match self.kind {
                EventKind::Image => EventMessageTypeEnum::IMAGE,
            }),
            action: Some(self.action.clone()),
            actor: Some(EventActor {
                id: Some(self.id.clone()),
                attributes: Some(self.attributes.clone()),
            }),
            scope: Some(EventMessageScopeEnum::LOCAL),
            time: Some(self.time_nano / 1_000_000_000),
            time_nano: Some(self.time_nano),
        }
    }
}

/// Where events are published and subscribed to.
#[derive(Debug)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
    recent: Mutex<VecDeque<Arc<Event>>>,
    closed: watch::Sender<bool>,
}

/// What a subscriber gets: the kept past, the live events, and word of the engine closing.
#[derive(Debug)]
pub struct Subscription {
    /// The kept past events, oldest first.
    pub past: Vec<Arc<Event>>,
    /// Every event published after `past`.
    pub live: broadcast::Receiver<Arc<Event>>,
    /// Becomes true when the engine shuts down: streams end then.
    pub closed: watch::Receiver<bool>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// An empty log.
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        Self {
            sender,
            recent: Mutex::new(VecDeque::with_capacity(KEPT_EVENTS)),
            closed: watch::channel(false).0,
        }
    }

    /// Records `event` and sends it to the subscribers.
    pub fn publish(&self, event: Event) {
        let event = Arc::new(event);
        let mut recent = self.recent();
        if recent.len() == KEPT_EVENTS {
            recent.pop_front();
        }
        recent.push_back(event.clone());
        // No subscriber is not an error.
        let _ = self.sender.send(event);
    }

    /// The kept past events and a receiver of all later ones.
    pub fn subscribe(&self) -> Subscription {
        let recent = self.recent();
        Subscription {
            past: recent.iter().cloned().collect(),
            live: self.sender.subscribe(),
            closed: self.closed.subscribe(),
        }
    }

    /// Ends every subscriber's stream (the engine is shutting down).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// The log, even if a publisher panicked holding it (the deque is still consistent).
    fn recent(&self) -> MutexGuard<'_, VecDeque<Arc<Event>>> {
        self.recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_get_the_past_then_the_future_once() {
        let bus = EventBus::new();
        bus.publish(Event::now(
            EventKind::Image,
            "tag",
            "sha256:a",
            &[("name", "x:1")],
        ));
        let Subscription {
            past,
            mut live,
            closed,
            ..
        } = bus.subscribe();
        bus.publish(Event::now(EventKind::Image, "untag", "sha256:a", &[]));
        assert!(!*closed.borrow());
        bus.close();
        assert!(*closed.borrow());
        assert_eq!(past.len(), 1);
        assert_eq!(past[0].action, "tag");
        assert_eq!(live.try_recv().unwrap().action, "untag");
        assert!(live.try_recv().is_err());
    }

    #[test]
    fn only_the_last_events_are_kept() {
        let bus = EventBus::new();
        for i in 0..KEPT_EVENTS + 5 {
            bus.publish(Event::now(EventKind::Image, &i.to_string(), "id", &[]));
        }
        let past = bus.subscribe().past;
        assert_eq!(past.len(), KEPT_EVENTS);
        assert_eq!(past[0].action, "5");
    }

    #[test]
    fn messages_carry_type_actor_and_times() {
        let e = Event::now(
            EventKind::Image,
            "delete",
            "sha256:b",
            &[("name", "sha256:b")],
        );
        let m = serde_json::to_value(e.to_message()).unwrap();
        assert_eq!(m["Type"], "image");
        assert_eq!(m["Action"], "delete");
        assert_eq!(m["Actor"]["ID"], "sha256:b");
        assert_eq!(m["Actor"]["Attributes"]["name"], "sha256:b");
        assert_eq!(m["scope"], "local");
        assert_eq!(m["time"].as_i64().unwrap(), e.time_nano / 1_000_000_000);
    }
}
