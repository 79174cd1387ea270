//! Wire compatibility with containerd's own bindings, message by message.
//!
//! Each test fills one of our messages in every field, encodes it, decodes the bytes with the
//! type the `containerd-client` crate (containerd's maintainers' Rust bindings, compiled from
//! containerd's `.proto` files) generates for the same message, encodes that again and decodes
//! it with ours. prost drops fields it does not know, so getting the original back proves that
//! containerd's definition knows every one of our fields under the same number and wire type.
//! Where the two generated types have the same fields, their `Debug` output is compared too,
//! which also catches a field that decodes under another name or type (say `int64` against
//! `uint64`). Maps hold one entry so that `Debug` output has a fixed order.
//!
//! This file: the services and events the supervisor core serves (issue 5); the image
//! services are in `wire_compat_images.rs`.

use std::collections::HashMap;

use containerd_client as theirs;
use keel_proto as ours;
use prost::Message;
use prost_types::FieldMask;

#[path = "support/wire.rs"]
mod wire;
use wire::*;

#[test]
fn version() {
    same_both_ways::<_, theirs::services::v1::VersionResponse>(&ours::version::VersionResponse {
        version: "v1.6.20".into(),
        revision: "abc".into(),
    });
}

#[test]
fn namespaces() {
    let ns = ours::namespaces::Namespace {
        name: "keel".into(),
        labels: map("team", "a"),
    };
    same_both_ways::<_, theirs::services::v1::UpdateNamespaceRequest>(
        &ours::namespaces::UpdateNamespaceRequest {
            namespace: Some(ns.clone()),
            update_mask: Some(FieldMask {
                paths: vec!["labels.team".into()],
            }),
        },
    );
    same_both_ways::<_, theirs::services::v1::ListNamespacesResponse>(
        &ours::namespaces::ListNamespacesResponse {
            namespaces: vec![ns.clone(), ns],
        },
    );
    same_both_ways::<_, theirs::services::v1::ListNamespacesRequest>(
        &ours::namespaces::ListNamespacesRequest {
            filter: "name==keel".into(),
        },
    );
}

#[test]
fn containers() {
    let container = ours::containers::Container {
        id: "web".into(),
        labels: map("app", "web"),
        image: "docker.io/library/busybox:latest".into(),
        runtime: Some(ours::containers::container::Runtime {
            name: "io.containerd.keel.v2".into(),
            options: Some(any("containerd.runc.v1.Options", b"\x08\x01")),
        }),
        spec: Some(any(
            "types.containerd.io/opencontainers/runtime-spec/1/Spec",
            br#"{"ociVersion":"1.0.2"}"#,
        )),
        snapshotter: "overlayfs".into(),
        snapshot_key: "web-snapshot".into(),
        created_at: time(1_700_000_000),
        updated_at: time(1_700_000_001),
        extensions: HashMap::from([("keel".to_owned(), any("keel.Ext", b"x"))]),
    };
    // containerd 2 added `sandbox` (field 11) to Container, so Debug output differs by that
    // field; the round trip still shows every field of ours survives.
    let theirs: theirs::services::v1::UpdateContainerRequest =
        through_theirs(&ours::containers::UpdateContainerRequest {
            container: Some(container.clone()),
            update_mask: Some(FieldMask {
                paths: vec!["labels".into(), "snapshotkey".into()],
            }),
        });
    let c = theirs.container.expect("container");
    assert_eq!(c.runtime.expect("runtime").name, "io.containerd.keel.v2");
    assert_eq!(c.snapshot_key, "web-snapshot");
    assert_eq!(c.extensions["keel"].type_url, "keel.Ext");
    assert_eq!(c.created_at, time(1_700_000_000));
    assert_eq!(c.sandbox, "");

    through_theirs::<_, theirs::services::v1::ListContainerMessage>(
        &ours::containers::ListContainerMessage {
            container: Some(container),
        },
    );
    same_both_ways::<_, theirs::services::v1::ListContainersRequest>(
        &ours::containers::ListContainersRequest {
            filters: vec!["labels.app==web".into(), "image~=busybox".into()],
        },
    );
}

#[test]
fn tasks() {
    use ours::tasks as t;
    use theirs::services::v1 as tt;

    same_both_ways::<_, tt::CreateTaskRequest>(&t::CreateTaskRequest {
        container_id: "web".into(),
        rootfs: vec![mount()],
        stdin: "/run/fifo/in".into(),
        stdout: "/run/fifo/out".into(),
        stderr: "/run/fifo/err".into(),
        terminal: true,
        checkpoint: Some(descriptor()),
        options: Some(any("containerd.runc.v1.CreateOptions", b"\x10\x01")),
        runtime_path: "/usr/bin/containerd-shim-keel-v2".into(),
    });
    same_both_ways::<_, tt::CreateTaskResponse>(&t::CreateTaskResponse {
        container_id: "web".into(),
        pid: 4242,
    });
    same_both_ways::<_, tt::StartRequest>(&t::StartRequest {
        container_id: "web".into(),
        exec_id: "sh".into(),
    });
    same_both_ways::<_, tt::StartResponse>(&t::StartResponse { pid: 77 });
    same_both_ways::<_, tt::DeleteTaskRequest>(&t::DeleteTaskRequest {
        container_id: "web".into(),
    });
    same_both_ways::<_, tt::DeleteResponse>(&t::DeleteResponse {
        id: "web".into(),
        pid: 4242,
        exit_status: 137,
        exited_at: time(1_700_000_002),
    });
    same_both_ways::<_, tt::DeleteProcessRequest>(&t::DeleteProcessRequest {
        container_id: "web".into(),
        exec_id: "sh".into(),
    });
    same_both_ways::<_, tt::GetRequest>(&t::GetRequest {
        container_id: "web".into(),
        exec_id: "sh".into(),
    });
    let process = ours::task_types::Process {
        container_id: "web".into(),
        id: "sh".into(),
        pid: 4242,
        status: ours::task_types::Status::Paused.into(),
        stdin: "i".into(),
        stdout: "o".into(),
        stderr: "e".into(),
        terminal: true,
        exit_status: 3,
        exited_at: time(5),
    };
    let got: tt::GetResponse = same_both_ways(&t::GetResponse {
        process: Some(process.clone()),
    });
    assert_eq!(
        got.process.expect("process").status(),
        theirs::types::v1::Status::Paused
    );
    same_both_ways::<_, tt::ListTasksResponse>(&t::ListTasksResponse {
        tasks: vec![process.clone(), process],
    });
    same_both_ways::<_, tt::ListTasksRequest>(&t::ListTasksRequest {
        filter: "status==running".into(),
    });
    same_both_ways::<_, tt::KillRequest>(&t::KillRequest {
        container_id: "web".into(),
        exec_id: "sh".into(),
        signal: 9,
        all: true,
    });
    same_both_ways::<_, tt::ExecProcessRequest>(&t::ExecProcessRequest {
        container_id: "web".into(),
        stdin: "i".into(),
        stdout: "o".into(),
        stderr: "e".into(),
        terminal: true,
        spec: Some(any(
            "types.containerd.io/opencontainers/runtime-spec/1/Process",
            br#"{"args":["sh"]}"#,
        )),
        exec_id: "sh".into(),
    });
    same_both_ways::<_, tt::ResizePtyRequest>(&t::ResizePtyRequest {
        container_id: "web".into(),
        exec_id: "sh".into(),
        width: 80,
        height: 24,
    });
    same_both_ways::<_, tt::CloseIoRequest>(&t::CloseIoRequest {
        container_id: "web".into(),
        exec_id: "sh".into(),
        stdin: true,
    });
    same_both_ways::<_, tt::PauseTaskRequest>(&t::PauseTaskRequest {
        container_id: "web".into(),
    });
    same_both_ways::<_, tt::ResumeTaskRequest>(&t::ResumeTaskRequest {
        container_id: "web".into(),
    });
    same_both_ways::<_, tt::ListPidsRequest>(&t::ListPidsRequest {
        container_id: "web".into(),
    });
    same_both_ways::<_, tt::ListPidsResponse>(&t::ListPidsResponse {
        processes: vec![ours::task_types::ProcessInfo {
            pid: 12,
            info: Some(any("containerd.runc.v1.ProcessDetails", b"\x0a\x02sh")),
        }],
    });
    same_both_ways::<_, tt::CheckpointTaskRequest>(&t::CheckpointTaskRequest {
        container_id: "web".into(),
        parent_checkpoint: "sha256:beef".into(),
        options: Some(any("containerd.runc.v1.CheckpointOptions", b"")),
    });
    same_both_ways::<_, tt::CheckpointTaskResponse>(&t::CheckpointTaskResponse {
        descriptors: vec![descriptor()],
    });
    same_both_ways::<_, tt::UpdateTaskRequest>(&t::UpdateTaskRequest {
        container_id: "web".into(),
        resources: Some(any(
            "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
            b"{}",
        )),
        annotations: map("a", "b"),
    });
    same_both_ways::<_, tt::MetricsRequest>(&t::MetricsRequest {
        filters: vec!["id==web".into()],
    });
    same_both_ways::<_, tt::MetricsResponse>(&t::MetricsResponse {
        metrics: vec![ours::types::Metric {
            timestamp: time(9),
            id: "web".into(),
            data: Some(any("io.containerd.cgroups.v2.Metrics", b"\x0a\x00")),
        }],
    });
    same_both_ways::<_, tt::WaitRequest>(&t::WaitRequest {
        container_id: "web".into(),
        exec_id: "sh".into(),
    });
    same_both_ways::<_, tt::WaitResponse>(&t::WaitResponse {
        exit_status: 1,
        exited_at: time(10),
    });
}

#[test]
fn events_service() {
    use ours::event_service as e;

    let envelope = e::Envelope {
        timestamp: time(11),
        namespace: "keel".into(),
        topic: ours::topics::TASK_EXIT.into(),
        event: Some(any("containerd.events.TaskExit", b"\x0a\x03web")),
    };
    // containerd 1.6 declares Envelope in this package, containerd 2 (which containerd-client
    // follows) as containerd.types.Envelope: same fields, same bytes.
    same_both_ways::<_, theirs::types::Envelope>(&envelope);
    same_both_ways::<_, theirs::services::v1::ForwardRequest>(&e::ForwardRequest {
        envelope: Some(envelope.clone()),
    });
    same_both_ways::<_, theirs::services::v1::PublishRequest>(&e::PublishRequest {
        topic: ours::topics::TASK_OOM.into(),
        event: Some(any("containerd.events.TaskOOM", b"\x0a\x03web")),
    });
    same_both_ways::<_, theirs::services::v1::SubscribeRequest>(&e::SubscribeRequest {
        filters: vec![r#"topic=="/tasks/exit""#.into(), "namespace==keel".into()],
    });

    // The ttrpc endpoint shims forward to carries the same envelope.
    let ttrpc = ours::containerd::services::events::ttrpc::v1::ForwardRequest {
        envelope: Some(ours::containerd::services::events::ttrpc::v1::Envelope {
            timestamp: envelope.timestamp,
            namespace: envelope.namespace.clone(),
            topic: envelope.topic.clone(),
            event: envelope.event.clone(),
        }),
    };
    assert_eq!(
        ttrpc.encode_to_vec(),
        e::ForwardRequest {
            envelope: Some(envelope)
        }
        .encode_to_vec()
    );
}

#[test]
fn events() {
    use ours::events as ev;
    use theirs::events as tev;

    same_both_ways::<_, tev::TaskCreate>(&ev::TaskCreate {
        container_id: "web".into(),
        bundle: "/run/keel/containerd/io.containerd.runtime.v2.task/keel/web".into(),
        rootfs: vec![mount()],
        io: Some(ev::TaskIo {
            stdin: "i".into(),
            stdout: "o".into(),
            stderr: "e".into(),
            terminal: true,
        }),
        checkpoint: "cp".into(),
        pid: 99,
    });
    same_both_ways::<_, tev::TaskStart>(&ev::TaskStart {
        container_id: "web".into(),
        pid: 99,
    });
    same_both_ways::<_, tev::TaskDelete>(&ev::TaskDelete {
        container_id: "web".into(),
        pid: 99,
        exit_status: 143,
        exited_at: time(12),
        id: "web".into(),
    });
    same_both_ways::<_, tev::TaskExit>(&ev::TaskExit {
        container_id: "web".into(),
        id: "sh".into(),
        pid: 100,
        exit_status: 2,
        exited_at: time(13),
    });
    same_both_ways::<_, tev::TaskOom>(&ev::TaskOom {
        container_id: "web".into(),
    });
    same_both_ways::<_, tev::TaskExecAdded>(&ev::TaskExecAdded {
        container_id: "web".into(),
        exec_id: "sh".into(),
    });
    same_both_ways::<_, tev::TaskExecStarted>(&ev::TaskExecStarted {
        container_id: "web".into(),
        exec_id: "sh".into(),
        pid: 101,
    });
    same_both_ways::<_, tev::TaskPaused>(&ev::TaskPaused {
        container_id: "web".into(),
    });
    same_both_ways::<_, tev::TaskResumed>(&ev::TaskResumed {
        container_id: "web".into(),
    });
    same_both_ways::<_, tev::TaskCheckpointed>(&ev::TaskCheckpointed {
        container_id: "web".into(),
        checkpoint: "sha256:cafe".into(),
    });
    same_both_ways::<_, tev::ContainerCreate>(&ev::ContainerCreate {
        id: "web".into(),
        image: "busybox".into(),
        runtime: Some(ev::container_create::Runtime {
            name: "io.containerd.runc.v2".into(),
            options: Some(any("containerd.runc.v1.Options", b"")),
        }),
    });
    same_both_ways::<_, tev::ContainerUpdate>(&ev::ContainerUpdate {
        id: "web".into(),
        image: "busybox".into(),
        labels: map("a", "b"),
        snapshot_key: "k".into(),
    });
    same_both_ways::<_, tev::ContainerDelete>(&ev::ContainerDelete { id: "web".into() });
    same_both_ways::<_, tev::NamespaceCreate>(&ev::NamespaceCreate {
        name: "keel".into(),
        labels: map("a", "b"),
    });
    same_both_ways::<_, tev::NamespaceUpdate>(&ev::NamespaceUpdate {
        name: "keel".into(),
        labels: map("a", "c"),
    });
    same_both_ways::<_, tev::NamespaceDelete>(&ev::NamespaceDelete {
        name: "keel".into(),
    });
    same_both_ways::<_, tev::ContentDelete>(&ev::ContentDelete {
        digest: "sha256:00".into(),
    });
    // containerd 2 added `snapshotter` to the snapshot events.
    let prepare: tev::SnapshotPrepare = through_theirs(&ev::SnapshotPrepare {
        key: "k".into(),
        parent: "p".into(),
    });
    assert_eq!((prepare.key.as_str(), prepare.parent.as_str()), ("k", "p"));
    through_theirs::<_, tev::SnapshotCommit>(&ev::SnapshotCommit {
        key: "k".into(),
        name: "n".into(),
    });
    through_theirs::<_, tev::SnapshotRemove>(&ev::SnapshotRemove { key: "k".into() });
    // Image events live in the images service's package, in containerd as here.
    same_both_ways::<_, theirs::services::v1::ImageCreate>(&ours::images::ImageCreate {
        name: "busybox".into(),
        labels: map("a", "b"),
    });
    same_both_ways::<_, theirs::services::v1::ImageUpdate>(&ours::images::ImageUpdate {
        name: "busybox".into(),
        labels: map("a", "b"),
    });
    same_both_ways::<_, theirs::services::v1::ImageDelete>(&ours::images::ImageDelete {
        name: "busybox".into(),
    });
}

#[test]
fn events_pack_into_any_as_containerd_does() {
    let exit = ours::events::TaskExit {
        container_id: "web".into(),
        id: "web".into(),
        pid: 1,
        exit_status: 0,
        exited_at: time(1),
    };
    let packed = ours::any::pack(&exit);
    let theirs_exit = theirs::events::TaskExit::decode(packed.value.as_slice()).expect("decodes");
    assert_eq!(packed, theirs::to_any(&theirs_exit));
    assert_eq!(
        ours::any::pack(&ours::images::ImageDelete::default()).type_url,
        "containerd.services.images.v1.ImageDelete"
    );
    assert_eq!(
        ours::any::unpack::<ours::events::TaskExit>(&theirs::to_any(&theirs_exit))
            .expect("unpacks"),
        exit
    );
}

#[test]
fn introspection() {
    use ours::introspection as i;
    same_both_ways::<_, theirs::services::v1::PluginsRequest>(&i::PluginsRequest {
        filters: vec!["type==io.containerd.grpc.v1".into()],
    });
    // containerd 2 added `os_version` to Platform, so Debug output differs by that field.
    let plugins: theirs::services::v1::PluginsResponse = through_theirs(&i::PluginsResponse {
        plugins: vec![i::Plugin {
            r#type: "io.containerd.snapshotter.v1".into(),
            id: "overlayfs".into(),
            requires: vec!["io.containerd.content.v1".into()],
            platforms: vec![ours::types::Platform {
                os: "linux".into(),
                architecture: "amd64".into(),
                variant: "v3".into(),
            }],
            exports: map("root", "/var/lib/keel/containerd/snapshots"),
            capabilities: vec!["remap-ids".into()],
            init_err: Some(ours::google::rpc::Status {
                code: 9,
                message: "no overlay support".into(),
                details: vec![any("google.rpc.ErrorInfo", b"")],
            }),
        }],
    });
    let plugin = &plugins.plugins[0];
    assert_eq!(plugin.platforms[0].architecture, "amd64");
    assert_eq!(plugin.exports["root"], "/var/lib/keel/containerd/snapshots");
    assert_eq!(plugin.init_err.as_ref().map(|s| s.code), Some(9));
    // containerd 2 added pid, pidns and deprecations to ServerResponse.
    let server: theirs::services::v1::ServerResponse = through_theirs(&i::ServerResponse {
        uuid: "7b8f0a1c-0000-4000-8000-000000000000".into(),
    });
    assert_eq!(server.uuid, "7b8f0a1c-0000-4000-8000-000000000000");
}
