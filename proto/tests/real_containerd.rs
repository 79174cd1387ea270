//! Our generated clients against the real containerd 1.6 (Debian's `containerd` package), run
//! in a temporary root with its own socket: the other direction of the interop the
//! `grpc_interop` tests check. Each service family is called through its real implementation,
//! so a wrong path, field number or type would show as an error or a lost value here.
//! Skipped, saying why, where `containerd` is not on PATH or the test does not run as root.
//!
//! This file: the supervisor core services and events; the image services are in
//! `real_containerd_images.rs`.

use std::time::Duration;

use keel_proto::tonic::transport::Channel;
use keel_proto::tonic::Code;
use keel_proto::*;
use prost_types::FieldMask;

#[path = "support/containerd_daemon.rs"]
mod containerd_daemon;
use containerd_daemon::{in_namespace, labels, Containerd};

#[tokio::test]
async fn our_clients_drive_containerd_1_6() {
    let Some(daemon) = Containerd::start() else {
        return;
    };
    let checks = async {
        let channel = daemon.channel().await;
        check_version(&channel).await;
        check_introspection(&channel).await;
        check_namespaces_and_their_events(&channel).await;
        check_containers(&channel).await;
        check_tasks(&channel).await;
    };
    tokio::time::timeout(Duration::from_secs(60), checks)
        .await
        .expect("the checks against containerd finish within 60 s");
}

async fn check_version(channel: &Channel) {
    let reply = version::version_client::VersionClient::new(channel.clone())
        .version(())
        .await
        .expect("Version")
        .into_inner();
    assert!(reply.version.contains("1.6"), "version {reply:?}");
}

async fn check_introspection(channel: &Channel) {
    let mut client = introspection::introspection_client::IntrospectionClient::new(channel.clone());
    let server = client.server(()).await.expect("Server").into_inner();
    assert_eq!(server.uuid.len(), 36, "uuid {:?}", server.uuid);
    let plugins = client
        .plugins(introspection::PluginsRequest {
            filters: vec!["type==io.containerd.grpc.v1".into()],
        })
        .await
        .expect("Plugins")
        .into_inner()
        .plugins;
    let ids: Vec<&str> = plugins.iter().map(|p| p.id.as_str()).collect();
    for id in [
        "tasks",
        "containers",
        "events",
        "namespaces",
        "version",
        "introspection",
    ] {
        assert!(ids.contains(&id), "no grpc plugin {id} in {ids:?}");
    }
}

async fn check_namespaces_and_their_events(channel: &Channel) {
    // containerd sends a subscription's response headers only with its first event, so the
    // stream is read in a task; probe events published until one comes back show that the
    // subscription is in place before the namespace is created.
    let probe_topic = "/keel/probe";
    let mut subscriber = event_service::events_client::EventsClient::new(channel.clone());
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let filters = vec![
        format!(r#"topic=="{}""#, topics::NAMESPACE_CREATE),
        format!(r#"topic=="{probe_topic}""#),
    ];
    tokio::spawn(async move {
        let mut stream = subscriber
            .subscribe(event_service::SubscribeRequest { filters })
            .await
            .expect("Subscribe")
            .into_inner();
        while let Ok(Some(envelope)) = stream.message().await {
            if tx.send(envelope).is_err() {
                break;
            }
        }
    });
    let mut publisher = event_service::events_client::EventsClient::new(channel.clone());
    loop {
        publisher
            .publish(in_namespace(
                event_service::PublishRequest {
                    topic: probe_topic.into(),
                    event: Some(any::pack(&events::TaskOom {
                        container_id: "probe".into(),
                    })),
                },
                "default",
            ))
            .await
            .expect("Publish");
        match tokio::time::timeout(Duration::from_millis(100), events.recv()).await {
            Ok(Some(envelope)) => {
                assert_eq!(
                    (envelope.topic.as_str(), envelope.namespace.as_str()),
                    (probe_topic, "default")
                );
                let oom: events::TaskOom =
                    any::unpack(&envelope.event.expect("event")).expect("a TaskOOM");
                assert_eq!(oom.container_id, "probe");
                break;
            }
            Ok(None) => panic!("the subscription ended"),
            Err(_) => continue,
        }
    }

    // containerd wants a namespace header even here (it publishes the event in it); ctr
    // always sends one.
    let mut client = namespaces::namespaces_client::NamespacesClient::new(channel.clone());
    client
        .create(in_namespace(
            namespaces::CreateNamespaceRequest {
                namespace: Some(namespaces::Namespace {
                    name: "keel-test".into(),
                    labels: labels("team", "a"),
                }),
            },
            "default",
        ))
        .await
        .expect("Create namespace");
    let err = client
        .create(in_namespace(
            namespaces::CreateNamespaceRequest {
                namespace: Some(namespaces::Namespace {
                    name: "keel-test".into(),
                    labels: Default::default(),
                }),
            },
            "default",
        ))
        .await
        .expect_err("a second create");
    assert_eq!(err.code(), Code::AlreadyExists);

    // containerd 1.6 answers Update with an empty namespace; Get shows the result.
    client
        .update(in_namespace(
            namespaces::UpdateNamespaceRequest {
                namespace: Some(namespaces::Namespace {
                    name: "keel-test".into(),
                    labels: labels("team", "b"),
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["labels.team".into()],
                }),
            },
            "default",
        ))
        .await
        .expect("Update namespace");
    let got = client
        .get(namespaces::GetNamespaceRequest {
            name: "keel-test".into(),
        })
        .await
        .expect("Get namespace")
        .into_inner();
    assert_eq!(got.namespace.expect("namespace").labels["team"], "b");
    let listed = client
        .list(namespaces::ListNamespacesRequest::default())
        .await
        .expect("List namespaces")
        .into_inner();
    assert!(listed.namespaces.iter().any(|n| n.name == "keel-test"));

    // The event containerd published for the create, in containerd's Any convention.
    let envelope = loop {
        let envelope = events.recv().await.expect("an event");
        if envelope.topic != probe_topic {
            break envelope;
        }
    };
    assert_eq!(envelope.topic, topics::NAMESPACE_CREATE);
    let event = envelope.event.expect("event");
    let created: events::NamespaceCreate = any::unpack(&event).expect("a NamespaceCreate");
    assert_eq!(created.name, "keel-test");
    assert_eq!(created.labels["team"], "a");
    assert!(envelope.timestamp.is_some());
}

async fn check_containers(channel: &Channel) {
    let mut client = containers::containers_client::ContainersClient::new(channel.clone());
    let spec = prost_types::Any {
        type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
        value: br#"{"ociVersion":"1.0.2","root":{"path":"/tmp"},"process":{"args":["true"],"cwd":"/"}}"#.to_vec(),
    };
    let container = containers::Container {
        id: "web".into(),
        labels: labels("app", "web"),
        image: "busybox".into(),
        runtime: Some(containers::container::Runtime {
            name: "io.containerd.keel.v2".into(),
            options: None,
        }),
        spec: Some(spec.clone()),
        snapshotter: "overlayfs".into(),
        snapshot_key: "web-key".into(),
        extensions: [(
            "keel".to_owned(),
            prost_types::Any {
                type_url: "keel.test".into(),
                value: b"x".to_vec(),
            },
        )]
        .into(),
        ..Default::default()
    };
    client
        .create(in_namespace(
            containers::CreateContainerRequest {
                container: Some(container.clone()),
            },
            "keel-test",
        ))
        .await
        .expect("Create container");

    let got = client
        .get(in_namespace(
            containers::GetContainerRequest { id: "web".into() },
            "keel-test",
        ))
        .await
        .expect("Get container")
        .into_inner()
        .container
        .expect("container");
    assert_eq!(got.spec, Some(spec));
    assert_eq!(got.runtime, container.runtime);
    assert_eq!(
        (got.snapshotter.as_str(), got.snapshot_key.as_str()),
        ("overlayfs", "web-key")
    );
    assert_eq!(got.extensions["keel"].value, b"x");
    assert!(got.created_at.is_some() && got.updated_at.is_some());

    let err = client
        .get(in_namespace(
            containers::GetContainerRequest { id: "web".into() },
            "default",
        ))
        .await
        .expect_err("another namespace has no such container");
    assert_eq!(err.code(), Code::NotFound);

    let updated = client
        .update(in_namespace(
            containers::UpdateContainerRequest {
                container: Some(containers::Container {
                    id: "web".into(),
                    labels: labels("tier", "front"),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["labels.tier".into()],
                }),
            },
            "keel-test",
        ))
        .await
        .expect("Update container")
        .into_inner()
        .container
        .expect("container");
    assert_eq!(updated.labels.len(), 2);

    let mut stream = client
        .list_stream(in_namespace(
            containers::ListContainersRequest {
                filters: vec!["labels.tier==front".into()],
            },
            "keel-test",
        ))
        .await
        .expect("ListStream")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("stream")
        .expect("one container");
    assert_eq!(first.container.expect("container").id, "web");
    assert!(stream.message().await.expect("stream end").is_none());

    // A namespace that holds a container cannot be deleted.
    let err = namespaces::namespaces_client::NamespacesClient::new(channel.clone())
        .delete(in_namespace(
            namespaces::DeleteNamespaceRequest {
                name: "keel-test".into(),
            },
            "default",
        ))
        .await
        .expect_err("delete a namespace in use");
    assert_eq!(err.code(), Code::FailedPrecondition);

    client
        .delete(in_namespace(
            containers::DeleteContainerRequest { id: "web".into() },
            "keel-test",
        ))
        .await
        .expect("Delete container");
}

async fn check_tasks(channel: &Channel) {
    let mut client = tasks::tasks_client::TasksClient::new(channel.clone());
    let listed = client
        .list(in_namespace(
            tasks::ListTasksRequest::default(),
            "keel-test",
        ))
        .await
        .expect("List tasks")
        .into_inner();
    assert!(listed.tasks.is_empty());
    let err = client
        .get(in_namespace(
            tasks::GetRequest {
                container_id: "nothing".into(),
                exec_id: String::new(),
            },
            "keel-test",
        ))
        .await
        .expect_err("no such task");
    assert_eq!(err.code(), Code::NotFound);
}
