//! containerd's own client bindings (the `containerd-client` crate) calling servers generated
//! from our `.proto` files, in process, over a unix socket as `ctr` would reach
//! keel-containerd. A call only arrives if the gRPC path the client sends
//! (`/containerd.services.tasks.v1.Tasks/Create`) is the one our server routes, and its answer
//! only reads back if the messages agree. Covered: unary calls, the namespace header, server
//! streams (Containers.ListStream, Events.Subscribe, Content.Read) and a bidirectional stream
//! (Content.Write), and every method of Tasks, each answered by its own handler.

use std::path::Path;
use std::pin::Pin;

use containerd_client::services::v1 as theirs;
use containerd_client::with_namespace;
use keel_proto::{containers, content, event_service, tasks, version};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status, Streaming};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn namespace<T>(request: &Request<T>) -> String {
    request
        .metadata()
        .get(keel_proto::NAMESPACE_METADATA_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

struct TestVersion;

#[tonic::async_trait]
impl version::version_server::Version for TestVersion {
    async fn version(&self, _: Request<()>) -> Result<Response<version::VersionResponse>, Status> {
        Ok(Response::new(version::VersionResponse {
            version: "v0.1.0-keel".into(),
            revision: "test".into(),
        }))
    }
}

struct TestContainers;

fn container(id: &str) -> containers::Container {
    containers::Container {
        id: id.into(),
        runtime: Some(containers::container::Runtime {
            name: "io.containerd.keel.v2".into(),
            options: None,
        }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl containers::containers_server::Containers for TestContainers {
    type ListStreamStream = BoxStream<containers::ListContainerMessage>;

    async fn get(
        &self,
        request: Request<containers::GetContainerRequest>,
    ) -> Result<Response<containers::GetContainerResponse>, Status> {
        // The id says which namespace the call came in, so the client can check the header.
        let id = format!("{}/{}", namespace(&request), request.get_ref().id);
        Ok(Response::new(containers::GetContainerResponse {
            container: Some(container(&id)),
        }))
    }

    async fn list(
        &self,
        _: Request<containers::ListContainersRequest>,
    ) -> Result<Response<containers::ListContainersResponse>, Status> {
        Err(Status::unimplemented("list"))
    }

    async fn list_stream(
        &self,
        request: Request<containers::ListContainersRequest>,
    ) -> Result<Response<Self::ListStreamStream>, Status> {
        let messages: Vec<_> = request
            .into_inner()
            .filters
            .into_iter()
            .map(|id| {
                Ok(containers::ListContainerMessage {
                    container: Some(container(&id)),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn create(
        &self,
        request: Request<containers::CreateContainerRequest>,
    ) -> Result<Response<containers::CreateContainerResponse>, Status> {
        Err(Status::already_exists(
            request.into_inner().container.unwrap_or_default().id,
        ))
    }

    async fn update(
        &self,
        _: Request<containers::UpdateContainerRequest>,
    ) -> Result<Response<containers::UpdateContainerResponse>, Status> {
        Err(Status::unimplemented("update"))
    }

    async fn delete(
        &self,
        _: Request<containers::DeleteContainerRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Status::unimplemented("delete"))
    }
}

struct TestEvents;

#[tonic::async_trait]
impl event_service::events_server::Events for TestEvents {
    type SubscribeStream = BoxStream<event_service::Envelope>;

    async fn publish(
        &self,
        _: Request<event_service::PublishRequest>,
    ) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn forward(
        &self,
        _: Request<event_service::ForwardRequest>,
    ) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn subscribe(
        &self,
        request: Request<event_service::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let topic = request.into_inner().filters.join(",");
        let exit = keel_proto::events::TaskExit {
            container_id: "web".into(),
            exit_status: 3,
            ..Default::default()
        };
        let envelope = event_service::Envelope {
            timestamp: Some(prost_types::Timestamp {
                seconds: 1,
                nanos: 0,
            }),
            namespace: "keel".into(),
            topic,
            event: Some(keel_proto::any::pack(&exit)),
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(vec![Ok(
            envelope,
        )]))))
    }
}

struct TestContent;

#[tonic::async_trait]
impl content::content_server::Content for TestContent {
    type ListStream = BoxStream<content::ListContentResponse>;
    type ReadStream = BoxStream<content::ReadContentResponse>;
    type WriteStream = BoxStream<content::WriteContentResponse>;

    async fn info(
        &self,
        _: Request<content::InfoRequest>,
    ) -> Result<Response<content::InfoResponse>, Status> {
        Err(Status::not_found("info"))
    }

    async fn update(
        &self,
        _: Request<content::UpdateRequest>,
    ) -> Result<Response<content::UpdateResponse>, Status> {
        Err(Status::not_found("update"))
    }

    async fn list(
        &self,
        _: Request<content::ListContentRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        Err(Status::not_found("list"))
    }

    async fn delete(
        &self,
        _: Request<content::DeleteContentRequest>,
    ) -> Result<Response<()>, Status> {
        Err(Status::not_found("delete"))
    }

    async fn read(
        &self,
        request: Request<content::ReadContentRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        // The digest's bytes, in chunks of two.
        let blob = request.into_inner().digest.into_bytes();
        let chunks: Vec<_> = blob
            .chunks(2)
            .enumerate()
            .map(|(i, chunk)| {
                Ok(content::ReadContentResponse {
                    offset: 2 * i as i64,
                    data: chunk.to_vec().into(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn status(
        &self,
        _: Request<content::StatusRequest>,
    ) -> Result<Response<content::StatusResponse>, Status> {
        Err(Status::not_found("status"))
    }

    async fn list_statuses(
        &self,
        _: Request<content::ListStatusesRequest>,
    ) -> Result<Response<content::ListStatusesResponse>, Status> {
        Err(Status::not_found("list_statuses"))
    }

    async fn write(
        &self,
        request: Request<Streaming<content::WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        // Acknowledges each message with the offset written up to, as an ingestion would.
        let responses = request.into_inner().map(|message| {
            let message = message?;
            Ok(content::WriteContentResponse {
                action: message.action,
                offset: message.offset + message.data.len() as i64,
                total: message.total,
                digest: message.expected,
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn abort(&self, _: Request<content::AbortRequest>) -> Result<Response<()>, Status> {
        Err(Status::not_found("abort"))
    }
}

/// Answers every Tasks method with NotFound carrying the method's name, so that the client
/// can tell each call reached its own handler.
struct TestTasks;

/// Implements the Tasks trait for TestTasks; the macro writes the whole impl so that
/// `async_trait` sees the expanded methods.
macro_rules! answers_with_its_name {
    ($($method:ident($request:ty) -> $response:ty;)*) => {
        #[tonic::async_trait]
        impl tasks::tasks_server::Tasks for TestTasks {
            $(
                async fn $method(&self, _: Request<$request>) -> Result<Response<$response>, Status> {
                    Err(Status::not_found(stringify!($method)))
                }
            )*
        }
    };
}

answers_with_its_name! {
    create(tasks::CreateTaskRequest) -> tasks::CreateTaskResponse;
    start(tasks::StartRequest) -> tasks::StartResponse;
    delete(tasks::DeleteTaskRequest) -> tasks::DeleteResponse;
    delete_process(tasks::DeleteProcessRequest) -> tasks::DeleteResponse;
    get(tasks::GetRequest) -> tasks::GetResponse;
    list(tasks::ListTasksRequest) -> tasks::ListTasksResponse;
    kill(tasks::KillRequest) -> ();
    exec(tasks::ExecProcessRequest) -> ();
    resize_pty(tasks::ResizePtyRequest) -> ();
    close_io(tasks::CloseIoRequest) -> ();
    pause(tasks::PauseTaskRequest) -> ();
    resume(tasks::ResumeTaskRequest) -> ();
    list_pids(tasks::ListPidsRequest) -> tasks::ListPidsResponse;
    checkpoint(tasks::CheckpointTaskRequest) -> tasks::CheckpointTaskResponse;
    update(tasks::UpdateTaskRequest) -> ();
    metrics(tasks::MetricsRequest) -> tasks::MetricsResponse;
    wait(tasks::WaitRequest) -> tasks::WaitResponse;
}

/// Serves the test services on a unix socket in `dir` and connects containerd-client to it.
async fn serve(dir: &Path) -> Channel {
    let socket = dir.join("containerd.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind the socket");
    let server = Server::builder()
        .add_service(version::version_server::VersionServer::new(TestVersion))
        .add_service(containers::containers_server::ContainersServer::new(
            TestContainers,
        ))
        .add_service(event_service::events_server::EventsServer::new(TestEvents))
        .add_service(content::content_server::ContentServer::new(TestContent))
        .add_service(tasks::tasks_server::TasksServer::new(TestTasks))
        .serve_with_incoming(UnixListenerStream::new(listener));
    tokio::spawn(server);
    containerd_client::connect(&socket).await.expect("connect")
}

#[tokio::test]
async fn version_answers_containerd_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let channel = serve(dir.path()).await;
    let reply = theirs::version_client::VersionClient::new(channel)
        .version(())
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(
        (reply.version.as_str(), reply.revision.as_str()),
        ("v0.1.0-keel", "test")
    );
}

#[tokio::test]
async fn containers_get_carries_the_namespace_and_list_stream_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut client = theirs::containers_client::ContainersClient::new(serve(dir.path()).await);

    // containerd-client's own macro sets the header; our constant must name the same key.
    let request = with_namespace!(theirs::GetContainerRequest { id: "web".into() }, "keel");
    let got = client.get(request).await.expect("Get").into_inner();
    let got = got.container.expect("container");
    assert_eq!(got.id, "keel/web");
    assert_eq!(got.runtime.expect("runtime").name, "io.containerd.keel.v2");

    let mut stream = client
        .list_stream(theirs::ListContainersRequest {
            filters: vec!["a".into(), "b".into(), "c".into()],
        })
        .await
        .expect("ListStream")
        .into_inner();
    let mut ids = Vec::new();
    while let Some(message) = stream.message().await.expect("stream message") {
        ids.push(message.container.expect("container").id);
    }
    assert_eq!(ids, ["a", "b", "c"]);

    let err = client
        .create(theirs::CreateContainerRequest {
            container: Some(theirs::Container {
                id: "dup".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("Create is refused");
    assert_eq!((err.code(), err.message()), (Code::AlreadyExists, "dup"));
}

#[tokio::test]
async fn events_subscribe_streams_envelopes_containerd_client_decodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut client = theirs::events_client::EventsClient::new(serve(dir.path()).await);
    let mut stream = client
        .subscribe(theirs::SubscribeRequest {
            filters: vec![keel_proto::topics::TASK_EXIT.into()],
        })
        .await
        .expect("Subscribe")
        .into_inner();
    let envelope = stream
        .message()
        .await
        .expect("stream")
        .expect("one envelope");
    assert_eq!(envelope.topic, "/tasks/exit");
    assert_eq!(envelope.namespace, "keel");
    let event = envelope.event.expect("event");
    assert_eq!(event.type_url, "containerd.events.TaskExit");
    let exit =
        <containerd_client::events::TaskExit as prost::Message>::decode(event.value.as_slice())
            .expect("a TaskExit");
    assert_eq!((exit.container_id.as_str(), exit.exit_status), ("web", 3));
    assert!(stream.message().await.expect("stream end").is_none());
}

#[tokio::test]
async fn content_write_and_read_stream_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut client = theirs::content_client::ContentClient::new(serve(dir.path()).await);

    let writes = vec![
        theirs::WriteContentRequest {
            action: theirs::WriteAction::Write.into(),
            r#ref: "pull-1".into(),
            total: 6,
            data: b"abc".to_vec(),
            ..Default::default()
        },
        theirs::WriteContentRequest {
            action: theirs::WriteAction::Commit.into(),
            total: 6,
            offset: 3,
            expected: "sha256:def".into(),
            data: b"def".to_vec(),
            ..Default::default()
        },
    ];
    let mut acks = client
        .write(tokio_stream::iter(writes))
        .await
        .expect("Write")
        .into_inner();
    let first = acks.message().await.expect("ack").expect("first ack");
    assert_eq!(
        (first.action(), first.offset),
        (theirs::WriteAction::Write, 3)
    );
    let last = acks.message().await.expect("ack").expect("last ack");
    assert_eq!(
        (last.action(), last.offset, last.total),
        (theirs::WriteAction::Commit, 6, 6)
    );
    assert_eq!(last.digest, "sha256:def");

    let mut read = client
        .read(theirs::ReadContentRequest {
            digest: "sha256:abcd".into(),
            ..Default::default()
        })
        .await
        .expect("Read")
        .into_inner();
    let mut blob = Vec::new();
    while let Some(chunk) = read.message().await.expect("chunk") {
        assert_eq!(chunk.offset, blob.len() as i64);
        blob.extend_from_slice(&chunk.data);
    }
    assert_eq!(blob, b"sha256:abcd");
}

#[tokio::test]
async fn every_tasks_method_reaches_its_own_handler() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut client = theirs::tasks_client::TasksClient::new(serve(dir.path()).await);

    macro_rules! reaches {
        ($method:ident, $request:expr) => {{
            let err = client
                .$method($request)
                .await
                .expect_err(stringify!($method));
            assert_eq!(
                (err.code(), err.message()),
                (Code::NotFound, stringify!($method)),
                "Tasks {} reached another handler",
                stringify!($method)
            );
        }};
    }
    reaches!(create, theirs::CreateTaskRequest::default());
    reaches!(start, theirs::StartRequest::default());
    reaches!(delete, theirs::DeleteTaskRequest::default());
    reaches!(delete_process, theirs::DeleteProcessRequest::default());
    reaches!(get, theirs::GetRequest::default());
    reaches!(list, theirs::ListTasksRequest::default());
    reaches!(kill, theirs::KillRequest::default());
    reaches!(exec, theirs::ExecProcessRequest::default());
    reaches!(resize_pty, theirs::ResizePtyRequest::default());
    reaches!(close_io, theirs::CloseIoRequest::default());
    reaches!(pause, theirs::PauseTaskRequest::default());
    reaches!(resume, theirs::ResumeTaskRequest::default());
    reaches!(list_pids, theirs::ListPidsRequest::default());
    reaches!(checkpoint, theirs::CheckpointTaskRequest::default());
    reaches!(update, theirs::UpdateTaskRequest::default());
    reaches!(metrics, theirs::MetricsRequest::default());
    reaches!(wait, theirs::WaitRequest::default());
}

#[test]
fn generated_service_names_are_containerds() {
    use keel_proto::*;
    let names = [
        version::version_server::SERVICE_NAME,
        namespaces::namespaces_server::SERVICE_NAME,
        containers::containers_server::SERVICE_NAME,
        tasks::tasks_server::SERVICE_NAME,
        event_service::events_server::SERVICE_NAME,
        introspection::introspection_server::SERVICE_NAME,
        content::content_server::SERVICE_NAME,
        images::images_server::SERVICE_NAME,
        leases::leases_server::SERVICE_NAME,
        snapshots::snapshots_server::SERVICE_NAME,
        diff::diff_server::SERVICE_NAME,
    ];
    assert_eq!(
        names,
        [
            "containerd.services.version.v1.Version",
            "containerd.services.namespaces.v1.Namespaces",
            "containerd.services.containers.v1.Containers",
            "containerd.services.tasks.v1.Tasks",
            "containerd.services.events.v1.Events",
            "containerd.services.introspection.v1.Introspection",
            "containerd.services.content.v1.Content",
            "containerd.services.images.v1.Images",
            "containerd.services.leases.v1.Leases",
            "containerd.services.snapshots.v1.Snapshots",
            "containerd.services.diff.v1.Diff",
        ]
    );
}
