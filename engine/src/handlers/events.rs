//! `GET /events` (`docker events`): the engine's events as a stream of JSON lines, as dockerd
//! sends them: past events from `since` on, then live ones, until `until` (or until the client
//! goes away), filtered by `type`, `event` and `image`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::engine::Engine;
use crate::errors::{ApiError, ApiResult};
use crate::events::{Event, Subscription};
use crate::http::Body;

type Line = Result<Frame<Bytes>, Infallible>;

/// `GET /events?since=&until=&filters=`.
pub async fn events(
    engine: &Engine,
    params: &HashMap<String, String>,
) -> ApiResult<Response<Body>> {
    let now = now_nanos();
    let since = params
        .get("since")
        .map(|v| parse_time(v, now))
        .transpose()?;
    let until = params
        .get("until")
        .map(|v| parse_time(v, now))
        .transpose()?;
    let filters = EventFilters::parse(params.get("filters").map(String::as_str))?;
    let subscription = engine.events.subscribe();
    let (sender, receiver) = mpsc::channel::<Line>(64);
    let window = Window { since, until };
    tokio::spawn(stream_events(subscription, sender, window, filters));
    let mut response = Response::new(StreamBody::new(ReceiverStream::new(receiver)).boxed());
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// The time range asked for, in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy)]
struct Window {
    since: Option<i64>,
    until: Option<i64>,
}

async fn stream_events(
    subscription: Subscription,
    sender: mpsc::Sender<Line>,
    window: Window,
    filters: EventFilters,
) {
    let Subscription {
        past,
        mut live,
        mut closed,
    } = subscription;
    if let Some(since) = window.since {
        for event in past.iter().filter(|e| e.time_nano >= since) {
            if window.until.is_some_and(|u| event.time_nano > u) {
                return;
            }
            if filters.matches(event) && !send(&sender, event).await {
                return;
            }
        }
    }
    let deadline = window.until.map(|until| {
        let wait = u64::try_from(until.saturating_sub(now_nanos())).unwrap_or(0);
        tokio::time::Instant::now() + Duration::from_nanos(wait)
    });
    loop {
        let next = tokio::select! {
            received = live.recv() => received,
            () = sleep_until(deadline) => return,
            () = sender.closed() => return,
            _ = closed.wait_for(|closed| *closed) => return,
        };
        match next {
            Ok(event) if window.until.is_some_and(|u| event.time_nano > u) => return,
            Ok(event) => {
                if filters.matches(&event) && !send(&sender, &event).await {
                    return;
                }
            }
            // A subscriber too slow to keep up misses events rather than stalling the others.
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends one JSON line; false when the client is gone.
async fn send(sender: &mpsc::Sender<Line>, event: &Event) -> bool {
    let Ok(mut line) = serde_json::to_vec(&event.to_message()) else {
        return true;
    };
    line.push(b'\n');
    sender
        .send(Ok(Frame::data(Bytes::from(line))))
        .await
        .is_ok()
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A time as dockerd's `timetypes.GetTimestamp` reads it: Unix seconds (with an optional
/// fraction), RFC 3339, or a duration before `now` (`10m`); in nanoseconds.
fn parse_time(value: &str, now: i64) -> ApiResult<i64> {
    let invalid = || {
        ApiError::InvalidParameter(format!(
            "failed to parse value as time or duration: {value:?}"
        ))
    };
    if let Some(nanos) = unix_seconds(value) {
        return Ok(nanos);
    }
    if let Ok(ago) = humantime::parse_duration(value) {
        let ago = i64::try_from(ago.as_nanos()).map_err(|_| invalid())?;
        return Ok(now.saturating_sub(ago));
    }
    let time = humantime::parse_rfc3339_weak(value.trim_end_matches('Z')).map_err(|_| invalid())?;
    let since_epoch = time.duration_since(UNIX_EPOCH).map_err(|_| invalid())?;
    i64::try_from(since_epoch.as_nanos()).map_err(|_| invalid())
}

/// `1700000000` or `1700000000.123456789`, in nanoseconds.
fn unix_seconds(value: &str) -> Option<i64> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 9 {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let nanos: i64 = format!("{frac:0<9}").parse().ok()?;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// `type`, `event` and `image` filters; others are 400 as dockerd rejects unknown keys.
#[derive(Debug, Default)]
struct EventFilters {
    types: Vec<String>,
    actions: Vec<String>,
    images: Vec<String>,
}

impl EventFilters {
    fn parse(json: Option<&str>) -> ApiResult<Self> {
        let mut filters = Self::default();
        for (key, values) in crate::http::filters(json)? {
            match key.as_str() {
                "type" => filters.types = values,
                "event" => filters.actions = values,
                "image" => filters.images = values,
                _ => return Err(crate::http::unknown_filter(&key)),
            }
        }
        Ok(filters)
    }

    fn matches(&self, event: &Event) -> bool {
        let any =
            |wanted: &[String], have: &str| wanted.is_empty() || wanted.iter().any(|w| w == have);
        let image_ok = self.images.is_empty()
            || self.images.iter().any(|w| {
                *w == event.id
                    || event
                        .id
                        .strip_prefix("sha256:")
                        .is_some_and(|h| h.starts_with(w.as_str()))
                    || event.attributes.get("name").is_some_and(|n| n == w)
            });
        any(&self.types, event.kind.name()) && any(&self.actions, &event.action) && image_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[test]
    fn times_parse_as_dockerd_reads_them() {
        let now = 2_000_000_000_000_000_000;
        assert_eq!(
            parse_time("1700000000", now).unwrap(),
            1_700_000_000_000_000_000
        );
        assert_eq!(
            parse_time("1700000000.5", now).unwrap(),
            1_700_000_000_500_000_000
        );
        assert_eq!(parse_time("10s", now).unwrap(), now - 10_000_000_000);
        assert_eq!(
            parse_time("1970-01-01T00:00:01Z", now).unwrap(),
            1_000_000_000
        );
        for bad in [
            "",
            "soon",
            "1.2.3",
            "1.1234567890",
            "-5",
            "99999999999999999999",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn filters_select_by_type_action_and_image() {
        let e = Event::now(EventKind::Image, "tag", "sha256:abcdef", &[("name", "x:1")]);
        let f = |json: &str| EventFilters::parse(Some(json)).unwrap();
        assert!(f("{}").matches(&e));
        assert!(f(r#"{"type":{"image":true}}"#).matches(&e));
        assert!(!f(r#"{"type":{"container":true}}"#).matches(&e));
        assert!(f(r#"{"event":["tag","untag"]}"#).matches(&e));
        assert!(!f(r#"{"event":{"delete":true}}"#).matches(&e));
        assert!(f(r#"{"image":{"abc":true}}"#).matches(&e));
        assert!(f(r#"{"image":{"x:1":true}}"#).matches(&e));
        assert!(!f(r#"{"image":{"y":true}}"#).matches(&e));
        assert!(EventFilters::parse(Some(r#"{"color":{"red":true}}"#)).is_err());
        assert!(EventFilters::parse(Some("{")).is_err());
    }

    #[tokio::test]
    async fn a_stream_with_until_in_the_past_ends_after_the_past_events() {
        let bus = crate::events::EventBus::new();
        bus.publish(Event::now(EventKind::Image, "tag", "sha256:a", &[]));
        let subscription = bus.subscribe();
        let (sender, mut receiver) = mpsc::channel(8);
        let window = Window {
            since: Some(0),
            until: Some(now_nanos()),
        };
        stream_events(subscription, sender, window, EventFilters::default()).await;
        let first = receiver.recv().await.unwrap().unwrap();
        let line = first.into_data().unwrap();
        assert!(String::from_utf8_lossy(&line).contains("\"Action\":\"tag\""));
        assert!(receiver.recv().await.is_none(), "the stream ended");
    }

    #[tokio::test]
    async fn closing_the_bus_ends_live_streams() {
        let bus = crate::events::EventBus::new();
        let subscription = bus.subscribe();
        let (sender, mut receiver) = mpsc::channel(8);
        let window = Window {
            since: None,
            until: None,
        };
        let stream = tokio::spawn(stream_events(
            subscription,
            sender,
            window,
            EventFilters::default(),
        ));
        bus.publish(Event::now(EventKind::Image, "tag", "sha256:a", &[]));
        assert!(receiver.recv().await.is_some());
        bus.close();
        tokio::time::timeout(Duration::from_secs(5), stream)
            .await
            .expect("the stream ends on close")
            .unwrap();
        assert!(receiver.recv().await.is_none());
    }
}
