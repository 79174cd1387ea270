//! The API's listener: HTTP/1.1 (hyper) on a unix socket, one task per connection, one
//! tracing span per request. Binding removes a stale socket left by a keeld that died (but
//! refuses to steal one a live daemon answers on) and makes the socket mode 0660, as dockerd's;
//! shutdown stops accepting, removes the socket and lets requests in flight finish (for at
//! most [`DRAIN_TIMEOUT`]).

use std::convert::Infallible;
use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::UnixListener;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::engine::{Engine, ENGINE_VERSION};
use crate::errors::ApiError;
use crate::handlers;
use crate::http::{self, Body};
use crate::router::{self, MAX_API_VERSION};

/// How long requests in flight may take to finish once shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket's mode: owner and group (dockerd's `docker` group) only.
pub const SOCKET_MODE: u32 = 0o660;

/// The API socket cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another daemon answers on the socket.
    #[error("{} is in use by another daemon; stop it or choose another --host", path.display())]
    InUse { path: PathBuf },
    /// Something that is not a socket is in the way.
    #[error("{} exists and is not a socket; remove it or choose another --host", path.display())]
    NotASocket { path: PathBuf },
    /// The socket (or its directory) cannot be made.
    #[error("listening on {}: {source}", path.display())]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Binds the API socket at `path`: parent made, stale socket removed, mode 0660.
pub async fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let bind_error = |source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(bind_error)?;
    }
    remove_stale(path).await?;
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(bind_error)?;
    Ok(listener)
}

async fn remove_stale(path: &Path) -> Result<(), ServerError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(ServerError::NotASocket {
            path: path.to_path_buf(),
        });
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(ServerError::InUse {
            path: path.to_path_buf(),
        });
    }
    info!(socket = %path.display(), "removing a stale socket");
    std::fs::remove_file(path).map_err(|source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    })
}

/// Serves the API on `listener` until `shutdown` resolves; then removes the socket at `path`
/// and drains the connections.
pub async fn serve(
    engine: Arc<Engine>,
    listener: UnixListener,
    path: &Path,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    info!(socket = %path.display(), api_version = MAX_API_VERSION, "API listening");
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let engine = engine.clone();
                    let service = service_fn(move |request| {
                        let engine = engine.clone();
                        async move { Ok::<_, Infallible>(handle(&engine, request).await) }
                    });
                    let connection = http1::Builder::new()
                        .title_case_headers(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(path);
    // Event streams would otherwise hold their connections open until the drain times out.
    engine.events.close();
    info!("shutting down: draining connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            "connections still open after {}s; closing them",
            DRAIN_TIMEOUT.as_secs()
        );
    }
}

/// Every request's path: a span, the route, the handler, the error mapped once, the headers.
async fn handle(engine: &Engine, request: Request<Incoming>) -> Response<Body> {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let span = info_span!(
        "request",
        id,
        method = %request.method(),
        path = %request.uri().path()
    );
    async move {
        let started = Instant::now();
        let routed = router::resolve(request.method(), request.uri().path());
        let matched = !matches!(&routed, Err(e) if *e == ApiError::page_not_found());
        let result = match routed {
            Ok(routed) => handlers::dispatch(engine, &routed, request).await,
            Err(e) => Err(e),
        };
        let mut response = match result {
            Ok(response) => response,
            Err(e) => {
                log_error(&e);
                http::error(&e)
            }
        };
        if matched {
            add_engine_headers(&mut response);
        }
        debug!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis(),
            "done"
        );
        response
    }
    .instrument(span)
    .await
}

/// Errors of the engine's own making are logged as errors; the client's mistakes at debug.
fn log_error(e: &ApiError) {
    if e.status().is_server_error() {
        error!(status = e.status().as_u16(), error = %e, "request failed");
    } else {
        debug!(status = e.status().as_u16(), error = %e, "request refused");
    }
}

/// The headers dockerd's middleware puts on every routed response.
fn add_engine_headers(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.insert("Api-Version", HeaderValue::from_static(MAX_API_VERSION));
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    headers.insert("Ostype", HeaderValue::from_static("linux"));
    if let Ok(server) = HeaderValue::from_str(&format!("Keel/{ENGINE_VERSION} (linux)")) {
        headers.insert(hyper::header::SERVER, server);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_makes_a_0660_socket_and_replaces_a_stale_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/keel.sock");
        let first = bind(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        drop(first); // The file stays behind, as after a crash.
        assert!(path.exists());
        let _second = bind(&path).await.unwrap();
    }

    #[tokio::test]
    async fn a_live_socket_is_not_stolen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.sock");
        let _live = bind(&path).await.unwrap();
        let err = bind(&path).await.unwrap_err();
        assert!(matches!(err, ServerError::InUse { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_regular_file_is_not_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.sock");
        std::fs::write(&path, "data").unwrap();
        let err = bind(&path).await.unwrap_err();
        assert!(matches!(err, ServerError::NotASocket { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
