//! Writing one blob into containerd's content store through Content.Write, as containerd's
//! remote writer does: a STAT under the blob's ref opens the ingest (AlreadyExists if the
//! namespace has the blob: then nothing is fetched, and the call's lease now holds it), WRITE
//! messages of about 1 MiB carry the bytes as they arrive, and COMMIT with the expected size
//! and digest makes the blob visible only if it verifies.

use std::collections::HashMap;
use std::future::Future;
use std::io;

use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use keel_proto::content::{WriteAction, WriteContentRequest, WriteContentResponse};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use super::scope::Scope;
use super::PullError;

/// Bytes per WRITE message (containerd's client sends 1 MiB).
const CHUNK: usize = 1 << 20;

/// A blob to write: what its descriptor says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// Whether the blob was written now or was already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    New,
    Existed,
}

/// Writes `blob` under ingest ref `reference` with `labels`, reading its bytes from the
/// stream `open` gives (called only if the blob is not there yet); `progress` hears the
/// offset after each chunk.
pub async fn write<F, Fut>(
    scope: &Scope,
    blob: &Blob,
    reference: &str,
    labels: HashMap<String, String>,
    open: F,
    mut progress: impl FnMut(u64),
) -> Result<Written, PullError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<BoxStream<'static, io::Result<Bytes>>, PullError>>,
{
    let mut session = match Session::open(scope, blob, reference).await? {
        Some(session) => session,
        None => return Ok(Written::Existed),
    };
    let mut data = open().await?;
    let mut pending = BytesMut::with_capacity(CHUNK);
    while let Some(chunk) = data.next().await {
        let chunk = chunk.map_err(|e| PullError::Fetch {
            what: blob.digest.clone(),
            message: e.to_string(),
        })?;
        pending.extend_from_slice(&chunk);
        if pending.len() >= CHUNK {
            session.write(pending.split().freeze()).await?;
            progress(session.offset);
        }
    }
    if !pending.is_empty() {
        session.write(pending.freeze()).await?;
        progress(session.offset);
    }
    session.commit(labels).await
}

/// One Content.Write stream.
struct Session {
    blob: Blob,
    reference: String,
    requests: mpsc::Sender<WriteContentRequest>,
    responses: Streaming<WriteContentResponse>,
    offset: u64,
}

impl Session {
    /// Opens the ingest; `None` if the namespace already has the blob.
    async fn open(scope: &Scope, blob: &Blob, reference: &str) -> Result<Option<Self>, PullError> {
        let (requests, rx) = mpsc::channel(2);
        let stat = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.to_string(),
            total: to_i64(blob.size),
            expected: blob.digest.clone(),
            ..Default::default()
        };
        let closed = |_| containerd_error(&blob.digest, Status::unavailable("stream closed"));
        requests.send(stat).await.map_err(closed)?;
        let responses = match scope
            .content()
            .write(scope.request(ReceiverStream::new(rx)))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => return Ok(None),
            Err(s) => return Err(containerd_error(&blob.digest, s)),
        };
        let mut session = Self {
            blob: blob.clone(),
            reference: reference.to_string(),
            requests,
            responses,
            offset: 0,
        };
        match session.next().await {
            Ok(_) => Ok(Some(session)),
            Err(s) if s.code() == Code::AlreadyExists => Ok(None),
            Err(s) => Err(containerd_error(&blob.digest, s)),
        }
    }

    /// Sends `data` at the current offset (from 0, an ingest left by an earlier try starts
    /// over).
    async fn write(&mut self, data: Bytes) -> Result<(), PullError> {
        let len = data.len() as u64;
        let request = WriteContentRequest {
            action: WriteAction::Write as i32,
            r#ref: self.reference.clone(),
            offset: to_i64(self.offset),
            data,
            ..Default::default()
        };
        self.send(request).await?;
        self.next()
            .await
            .map_err(|s| containerd_error(&self.blob.digest, s))?;
        self.offset += len;
        Ok(())
    }

    async fn commit(mut self, labels: HashMap<String, String>) -> Result<Written, PullError> {
        let request = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: self.reference.clone(),
            offset: to_i64(self.offset),
            total: to_i64(self.blob.size),
            expected: self.blob.digest.clone(),
            labels,
            ..Default::default()
        };
        self.send(request).await?;
        match self.next().await {
            Ok(_) => Ok(Written::New),
            Err(s) if s.code() == Code::AlreadyExists => Ok(Written::Existed),
            Err(s) if s.code() == Code::FailedPrecondition => Err(PullError::Verify {
                what: self.blob.digest.clone(),
                message: s.message().to_string(),
            }),
            Err(s) => Err(containerd_error(&self.blob.digest, s)),
        }
    }

    async fn send(&self, request: WriteContentRequest) -> Result<(), PullError> {
        self.requests.send(request).await.map_err(|_| {
            containerd_error(
                &self.blob.digest,
                Status::unavailable("content stream closed"),
            )
        })
    }

    async fn next(&mut self) -> Result<WriteContentResponse, Status> {
        self.responses
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("content stream ended"))
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn containerd_error(digest: &str, status: Status) -> PullError {
    PullError::Containerd {
        what: format!("writing {digest}"),
        status,
    }
}
