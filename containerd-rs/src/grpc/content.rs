//! `containerd.services.content.v1.Content` over [`crate::content`]: converts messages, maps
//! errors to containerd's codes, and runs the Read and Write streams.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use keel_proto::content::content_server::Content as ContentApi;
use keel_proto::content::{
    AbortRequest, DeleteContentRequest, InfoRequest, InfoResponse, ListContentRequest,
    ListContentResponse, ListStatusesRequest, ListStatusesResponse, ReadContentRequest,
    ReadContentResponse, Status as IngestStatusProto, StatusRequest, StatusResponse, UpdateRequest,
    UpdateResponse, WriteAction, WriteContentRequest, WriteContentResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{lease, namespace, timestamp};
use crate::content::{self, ContentError, IngestStatus, Writer};
use crate::supervisor::Supervisor;

/// The largest Read chunk (containerd's messages stay well under the 16 MiB limit).
const READ_CHUNK: usize = 1 << 20;

/// How many infos one List message carries (containerd batches them too).
const LIST_BATCH: usize = 100;

#[derive(Debug, Clone)]
pub struct ContentService {
    supervisor: Arc<Supervisor>,
}

impl ContentService {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self { supervisor }
    }
}

/// containerd's errdefs on the wire.
pub fn content_status(e: ContentError) -> Status {
    match e {
        ContentError::NotFound(m) => Status::not_found(m),
        ContentError::AlreadyExists(m) => Status::already_exists(m),
        ContentError::InvalidArgument(m) => Status::invalid_argument(m),
        ContentError::FailedPrecondition(m) => Status::failed_precondition(m),
        ContentError::Unavailable(m) => Status::unavailable(m),
        ContentError::OutOfRange(m) => Status::out_of_range(m),
        e @ (ContentError::Storage(_) | ContentError::Io { .. }) => Status::internal(e.to_string()),
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn status_proto(s: IngestStatus) -> IngestStatusProto {
    IngestStatusProto {
        started_at: Some(timestamp(s.started_at)),
        updated_at: Some(timestamp(s.updated_at)),
        r#ref: s.reference,
        offset: to_i64(s.offset),
        total: to_i64(s.total),
        expected: s
            .expected
            .map(|d| d.as_str().to_string())
            .unwrap_or_default(),
    }
}

type Sender<T> = mpsc::Sender<Result<T, Status>>;

#[tonic::async_trait]
impl ContentApi for ContentService {
    async fn info(&self, request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let ns = namespace(&request)?;
        let s = &self.supervisor;
        let info = s
            .content
            .info(&s.store, &ns, &request.into_inner().digest)
            .map_err(content_status)?;
        Ok(Response::new(InfoResponse { info: Some(info) }))
    }

    async fn update(
        &self,
        request: Request<UpdateRequest>,
    ) -> Result<Response<UpdateResponse>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        let info = req.info.unwrap_or_default();
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let s = &self.supervisor;
        let _hold = s.gc.hold();
        let info = s
            .content
            .update(&s.store, &ns, info, &paths)
            .map_err(content_status)?;
        Ok(Response::new(UpdateResponse { info: Some(info) }))
    }

    type ListStream = ReceiverStream<Result<ListContentResponse, Status>>;

    async fn list(
        &self,
        request: Request<ListContentRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let ns = namespace(&request)?;
        let s = &self.supervisor;
        let infos = s
            .content
            .list(&s.store, &ns, &request.into_inner().filters)
            .map_err(content_status)?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for batch in infos.chunks(LIST_BATCH) {
                let message = ListContentResponse {
                    info: batch.to_vec(),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delete(&self, request: Request<DeleteContentRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        content::delete(&self.supervisor, &ns, &request.into_inner().digest)
            .map_err(content_status)?;
        Ok(Response::new(()))
    }

    type ReadStream = ReceiverStream<Result<ReadContentResponse, Status>>;

    async fn read(
        &self,
        request: Request<ReadContentRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        let s = &self.supervisor;
        let info = s
            .content
            .info(&s.store, &ns, &req.digest)
            .map_err(content_status)?;
        let file = s
            .content
            .blob_file(&s.store, &ns, &req.digest)
            .map_err(content_status)?;
        let (offset, len) = read_range(info.size, req.offset, req.size)?;
        let (tx, rx) = mpsc::channel(4);
        tokio::task::spawn_blocking(move || send_chunks(file, offset, len, &tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let ns = namespace(&request)?;
        let status = self
            .supervisor
            .content
            .status(&ns, &request.into_inner().r#ref)
            .map_err(content_status)?;
        Ok(Response::new(StatusResponse {
            status: Some(status_proto(status)),
        }))
    }

    async fn list_statuses(
        &self,
        request: Request<ListStatusesRequest>,
    ) -> Result<Response<ListStatusesResponse>, Status> {
        let ns = namespace(&request)?;
        let statuses = self
            .supervisor
            .content
            .list_statuses(&ns, &request.into_inner().filters)
            .map_err(content_status)?;
        Ok(Response::new(ListStatusesResponse {
            statuses: statuses.into_iter().map(status_proto).collect(),
        }))
    }

    type WriteStream = ReceiverStream<Result<WriteContentResponse, Status>>;

    async fn write(
        &self,
        request: Request<Streaming<WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let ns = namespace(&request)?;
        let lease = lease(&request)?;
        let mut stream = request.into_inner();
        let supervisor = self.supervisor.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let session = Session {
                supervisor,
                namespace: ns,
                lease,
            };
            if let Err(status) = session.run(&mut stream, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn abort(&self, request: Request<AbortRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        self.supervisor
            .content
            .abort(&ns, &request.into_inner().r#ref)
            .map_err(content_status)?;
        Ok(Response::new(()))
    }
}

/// containerd's Read range: a negative offset reads from 0, past the end is OutOfRange, a size
/// of 0 (or one past the end) reads to the end.
fn read_range(blob: i64, offset: i64, size: i64) -> Result<(u64, u64), Status> {
    let offset = offset.max(0);
    if offset > blob {
        return Err(Status::out_of_range(format!(
            "read past object length {blob} bytes"
        )));
    }
    let size = if size <= 0 || offset.saturating_add(size) > blob {
        blob - offset
    } else {
        size
    };
    Ok((offset.unsigned_abs(), size.unsigned_abs()))
}

fn send_chunks(mut file: std::fs::File, offset: u64, len: u64, tx: &Sender<ReadContentResponse>) {
    if let Err(e) = file.seek(SeekFrom::Start(offset)) {
        let _ = tx.blocking_send(Err(Status::internal(format!("seeking: {e}"))));
        return;
    }
    let mut reader = file.take(len);
    let mut at = offset;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) => {
                let _ = tx.blocking_send(Err(Status::internal(format!("reading: {e}"))));
                return;
            }
        };
        let message = ReadContentResponse {
            offset: to_i64(at),
            data: buf[..n].to_vec().into(),
        };
        if tx.blocking_send(Ok(message)).is_err() {
            return;
        }
        at += n as u64;
    }
}

/// One Write stream.
struct Session {
    supervisor: Arc<Supervisor>,
    namespace: String,
    lease: Option<String>,
}

/// What the stream has announced so far.
#[derive(Default)]
struct Expectation {
    total: u64,
    expected: Option<String>,
}

impl Session {
    /// containerd's Write loop: the first message names the ref (and opens the writer), then
    /// each message is answered with where the ingest stands, until a commit or the end.
    async fn run(
        &self,
        stream: &mut Streaming<WriteContentRequest>,
        tx: &Sender<WriteContentResponse>,
    ) -> Result<(), Status> {
        let Some(mut req) = stream.message().await? else {
            return Ok(());
        };
        if req.r#ref.is_empty() {
            return Err(Status::invalid_argument(
                "first message must have a reference",
            ));
        }
        let mut want = Expectation {
            total: u64::try_from(req.total).unwrap_or(0),
            expected: (!req.expected.is_empty()).then(|| req.expected.clone()),
        };
        let s = &self.supervisor;
        let hold = s.gc.hold();
        let writer = s
            .content
            .writer(
                &s.store,
                &self.namespace,
                &req.r#ref,
                want.total,
                want.expected.as_deref(),
                self.lease.as_deref(),
            )
            .map_err(content_status)?;
        drop(hold);
        loop {
            let response = self.handle(&writer, &req, &mut want)?;
            if tx.send(Ok(response)).await.is_err() {
                return Ok(());
            }
            if req.action == WriteAction::Commit as i32 {
                return Ok(());
            }
            // A client that goes away mid-stream lets go of the ref at once.
            let next = tokio::select! {
                next = stream.message() => next?,
                () = tx.closed() => None,
            };
            match next {
                Some(next) => req = next,
                None => return Ok(()),
            }
        }
    }

    fn handle(
        &self,
        writer: &Writer,
        req: &WriteContentRequest,
        want: &mut Expectation,
    ) -> Result<WriteContentResponse, Status> {
        let s = &self.supervisor;
        if !req.expected.is_empty() {
            want.expected = Some(req.expected.clone());
            let known = content::writer::recorded(&s.store, &self.namespace, &req.expected)
                .map_err(content_status)?;
            if known {
                let _ = s.content.abort(&self.namespace, &req.r#ref);
                return Err(Status::already_exists(format!(
                    "blob with expected digest {} exists",
                    req.expected
                )));
            }
        }
        if req.total > 0 {
            want.total = req.total.unsigned_abs();
        }
        let mut response = WriteContentResponse {
            action: req.action,
            ..Default::default()
        };
        match WriteAction::try_from(req.action) {
            Ok(WriteAction::Stat) => {
                // The full status reads the ingest's files; writes only need the offset the
                // writer keeps (one stat and three reads per 1 MiB message otherwise).
                let status = writer.status().map_err(content_status)?;
                response.offset = to_i64(status.offset);
                response.digest = writer.digest().unwrap_or_default();
                response.started_at = Some(timestamp(status.started_at));
                response.updated_at = Some(timestamp(status.updated_at));
                response.total = to_i64(want.total);
            }
            Ok(action @ (WriteAction::Write | WriteAction::Commit)) => {
                let at = writer.offset().map_err(content_status)?;
                response.offset = self.write(writer, req, at)?;
                if action == WriteAction::Commit {
                    let _hold = s.gc.hold();
                    let digest = writer
                        .commit(
                            &s.store,
                            want.total,
                            want.expected.as_deref(),
                            req.labels.clone().into_iter().collect(),
                        )
                        .map_err(content_status)?;
                    response.digest = digest.as_str().to_string();
                }
            }
            Err(_) => {
                return Err(Status::invalid_argument(format!(
                    "unknown write action {}",
                    req.action
                )))
            }
        }
        Ok(response)
    }

    /// Writes the message's data: at the current offset, or at 0 (which starts over).
    fn write(&self, writer: &Writer, req: &WriteContentRequest, at: u64) -> Result<i64, Status> {
        let offset = if req.offset > 0 {
            if req.offset.unsigned_abs() != at {
                return Err(Status::out_of_range(format!(
                    "write @{} must occur at current offset {at}",
                    req.offset
                )));
            }
            at
        } else if req.offset < 0 {
            return Err(Status::out_of_range(format!(
                "write @{} must occur at current offset {at}",
                req.offset
            )));
        } else {
            if at > 0 {
                writer.truncate().map_err(content_status)?;
            }
            0
        };
        if req.data.is_empty() {
            return Ok(to_i64(offset));
        }
        let end = writer.write(offset, &req.data).map_err(content_status)?;
        Ok(to_i64(end))
    }
}
