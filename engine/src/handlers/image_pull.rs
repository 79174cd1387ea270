//! `POST /images/create?fromImage=NAME&tag=TAG`: `docker pull`. The engine pulls as a
//! containerd client ([`crate::pull`]) and streams Docker's JSON progress messages. A failure
//! before anything was fetched is an HTTP error (404 for an unknown image, 400 for a bad
//! reference) as dockerd answers it; one after is the stream's last message.

use std::collections::HashMap;
use std::convert::Infallible;

use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc::{self, UnboundedReceiver};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::engine::Engine;
use crate::errors::{ApiError, ApiResult};
use crate::events::{Event, EventKind};
use crate::http::Body;
use crate::pull::progress::{LayerStatus, Progress, Reporter};
use crate::pull::{self, PullError, PullOptions, Pulled};
use crate::reference::Reference;

type Line = Result<Frame<Bytes>, Infallible>;
type PullTask = JoinHandle<Result<Pulled, PullError>>;

/// Starts the pull; answers with its progress stream once it got past resolving the image.
pub async fn create(
    engine: &Engine,
    params: &HashMap<String, String>,
) -> ApiResult<Response<Body>> {
    if params.get("fromSrc").is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::NotImplemented(
            "importing an image (fromSrc) is not supported yet: pull it from a registry".into(),
        ));
    }
    let reference = reference(params)?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (channel, namespace) = (
        engine.containerd.channel(),
        engine.containerd.namespace().to_string(),
    );
    let target = reference.clone();
    let task: PullTask = tokio::spawn(async move {
        let options = PullOptions::default();
        pull::pull(channel, &namespace, &target, &options, &Reporter::new(tx)).await
    });
    // Until a layer is seen, a failure is still the request's answer.
    let mut first = Vec::new();
    while let Some(progress) = rx.recv().await {
        let resolving = matches!(progress, Progress::Resolving { .. });
        first.push(progress);
        if !resolving {
            break;
        }
    }
    if task.is_finished()
        || first
            .iter()
            .all(|p| matches!(p, Progress::Resolving { .. }))
    {
        let result = task
            .await
            .map_err(|e| ApiError::Internal(format!("the pull stopped: {e}")))?;
        if let Err(e) = &result {
            return Err(api_error(e));
        }
        return Ok(stream_response(
            engine,
            first,
            rx,
            Box::pin(async { result }),
        ));
    }
    let done = async move {
        task.await.unwrap_or_else(|e| {
            Err(PullError::Fetch {
                what: "the image".into(),
                message: e.to_string(),
            })
        })
    };
    Ok(stream_response(engine, first, rx, Box::pin(done)))
}

/// `fromImage` with `tag` (a tag, or a digest) as the docker CLI sends them.
fn reference(params: &HashMap<String, String>) -> ApiResult<String> {
    let from = params
        .get("fromImage")
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ApiError::InvalidParameter("fromImage is required".into()))?;
    Ok(match params.get("tag").filter(|t| !t.is_empty()) {
        Some(digest) if digest.starts_with("sha256:") => format!("{from}@{digest}"),
        Some(tag) => format!("{from}:{tag}"),
        None => from.clone(),
    })
}

fn stream_response(
    engine: &Engine,
    first: Vec<Progress>,
    rest: UnboundedReceiver<Progress>,
    done: std::pin::Pin<Box<dyn std::future::Future<Output = Result<Pulled, PullError>> + Send>>,
) -> Response<Body> {
    let (sender, receiver) = mpsc::channel::<Line>(64);
    let events = engine.events.clone();
    tokio::spawn(async move {
        let mut rest = rest;
        for progress in first {
            send(&sender, message(&progress)).await;
        }
        while let Some(progress) = rest.recv().await {
            send(&sender, message(&progress)).await;
        }
        match done.await {
            Ok(pulled) => {
                let name = familiar(&pulled.name);
                events.publish(Event::now(
                    EventKind::Image,
                    "pull",
                    &name,
                    &[("name", name.as_str())],
                ));
            }
            Err(e) => {
                let text = e.to_string();
                send(
                    &sender,
                    json!({"errorDetail": {"message": text}, "error": text}),
                )
                .await;
            }
        }
    });
    let mut response = Response::new(StreamBody::new(ReceiverStream::new(receiver)).boxed());
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn send(sender: &mpsc::Sender<Line>, value: Value) {
    let mut line = value.to_string();
    line.push_str("\r\n");
    // A client gone away does not stop the pull: the image is still recorded.
    let _ = sender.send(Ok(Frame::data(Bytes::from(line)))).await;
}

/// One of dockerd's JSON progress messages.
pub fn message(progress: &Progress) -> Value {
    match progress {
        Progress::Resolving { name } => {
            let (repository, tag) = split_name(name);
            json!({"status": format!("Pulling from {repository}"), "id": tag})
        }
        Progress::Layer { id, status } => match status {
            LayerStatus::Downloading { current, total } => json!({
                "status": status.text(),
                "progressDetail": {"current": current, "total": total},
                "progress": bar(*current, *total),
                "id": id,
            }),
            _ => json!({"status": status.text(), "progressDetail": {}, "id": id}),
        },
        Progress::Digest(digest) => json!({"status": format!("Digest: {digest}")}),
        Progress::Done { name, updated } => {
            let name = familiar(name);
            let status = if *updated {
                format!("Status: Downloaded newer image for {name}")
            } else {
                format!("Status: Image is up to date for {name}")
            };
            json!({ "status": status })
        }
    }
}

/// Docker's text bar: `[=====>      ]  1.2MB/2.3MB`.
fn bar(current: u64, total: u64) -> String {
    const WIDTH: u64 = 50;
    let filled = (current.saturating_mul(WIDTH))
        .checked_div(total)
        .unwrap_or(0)
        .min(WIDTH);
    let mut bar = "=".repeat(filled as usize);
    if filled < WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat((WIDTH - filled - 1) as usize));
    }
    format!("[{bar}] {}/{}", human(current), human(total))
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.3}GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.3}MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.3}kB", b as f64 / 1e3),
        b => format!("{b}B"),
    }
}

/// `docker.io/library/busybox:latest` → `busybox:latest`, as Docker shows names.
fn familiar(name: &str) -> String {
    Reference::parse(name).map_or_else(|_| name.to_string(), |r| r.familiar())
}

/// The repository path and the tag (or digest) of a full name, for "Pulling from".
fn split_name(name: &str) -> (String, String) {
    let Ok(reference) = Reference::parse(name) else {
        return (name.to_string(), String::new());
    };
    let familiar = reference.familiar_repository();
    let path = if familiar.contains('/') && !familiar.starts_with("docker.io") {
        name.split_once('/').map_or(familiar.clone(), |(_, rest)| {
            rest.split([':', '@']).next().unwrap_or(rest).to_string()
        })
    } else {
        format!("library/{familiar}")
    };
    let tag = name
        .rsplit_once(':')
        .map(|(_, t)| t.to_string())
        .unwrap_or_default();
    (path, tag)
}

/// A failure before anything was pulled, as dockerd answers it.
fn api_error(e: &PullError) -> ApiError {
    let text = e.to_string();
    match e {
        PullError::Reference(_) => ApiError::InvalidParameter(text),
        PullError::NotFound(_) | PullError::Denied(_) | PullError::NoMatchingPlatform { .. } => {
            ApiError::NotFound(text)
        }
        PullError::Containerd { status, .. } if status.code() == tonic::Code::Unavailable => {
            ApiError::Unavailable(text)
        }
        _ => ApiError::Internal(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_joins_image_and_tag() {
        let params = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            reference(&params(&[("fromImage", "busybox"), ("tag", "1.36")])).unwrap(),
            "busybox:1.36"
        );
        assert_eq!(
            reference(&params(&[("fromImage", "a/b"), ("tag", "sha256:abc")])).unwrap(),
            "a/b@sha256:abc"
        );
        assert_eq!(reference(&params(&[("fromImage", "a")])).unwrap(), "a");
        assert!(reference(&params(&[("tag", "x")])).is_err());
    }

    #[test]
    fn messages_are_dockerds() {
        let m = message(&Progress::Layer {
            id: "0123456789ab".into(),
            status: LayerStatus::Downloading {
                current: 50,
                total: 100,
            },
        });
        assert_eq!(m["status"], "Downloading");
        assert_eq!(m["progressDetail"]["total"], 100);
        assert!(m["progress"]
            .as_str()
            .unwrap()
            .starts_with("[=========================>"));
        let m = message(&Progress::Done {
            name: "docker.io/library/busybox:latest".into(),
            updated: true,
        });
        assert_eq!(
            m["status"],
            "Status: Downloaded newer image for busybox:latest"
        );
        let m = message(&Progress::Resolving {
            name: "127.0.0.1:5000/keel/busybox:oci".into(),
        });
        assert_eq!(m["status"], "Pulling from keel/busybox");
        assert_eq!(m["id"], "oci");
    }
}
