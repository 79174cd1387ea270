//! Our `.proto` definitions against containerd's own, descriptor by descriptor.
//!
//! Both sides are compiled to FileDescriptorSets with protox: ours as the build script compiles
//! them, containerd's from the `.proto` files the `containerd-client` crate ships (containerd
//! 2's API, a superset of 1.6's). Every message, enum and service of ours must exist there
//! under the same full name, with each field's number, name, label and type, each enum value
//! and each method's name, types and streaming the same. Since tonic routes a call by
//! `/<package>.<Service>/<Method>`, equal service and method names mean equal gRPC paths.
//! The differences containerd 2 introduced are listed here, so that the list documents them
//! and a new one fails the test.
//!
//! With `KEEL_CONTAINERD_1_6_API` set to the include roots (colon-separated) of containerd
//! 1.6's own `.proto` files and their gogoproto imports, the same comparison runs against 1.6
//! and must find no difference at all. Debian's `golang-github-containerd-containerd-dev` and
//! `golang-github-gogo-protobuf-dev` packages hold them:
//! `KEEL_CONTAINERD_1_6_API=/usr/share/gocode/src:/usr/share/gocode/src/github.com/gogo/protobuf`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FileDescriptorSet, ServiceDescriptorProto,
};

/// containerd's files for the packages keel-proto defines, relative to its `api/` directory.
const CONTAINERD_FILES: &[&str] = &[
    "types/descriptor.proto",
    "types/metrics.proto",
    "types/mount.proto",
    "types/platform.proto",
    "types/task/task.proto",
    "events/container.proto",
    "events/content.proto",
    "events/image.proto",
    "events/namespace.proto",
    "events/snapshot.proto",
    "events/task.proto",
    "services/containers/v1/containers.proto",
    "services/content/v1/content.proto",
    "services/diff/v1/diff.proto",
    "services/events/v1/events.proto",
    "services/images/v1/images.proto",
    "services/introspection/v1/introspection.proto",
    "services/leases/v1/leases.proto",
    "services/namespaces/v1/namespace.proto",
    "services/snapshots/v1/snapshots.proto",
    "services/tasks/v1/tasks.proto",
    "services/ttrpc/events/v1/events.proto",
    "services/version/v1/version.proto",
];

/// What containerd 2 (and so `containerd-client`) has beyond containerd 1.6 in the messages and
/// services keel-proto defines.
const CONTAINERD_2_ADDITIONS: &[&str] = &[
    "field containerd.events.SnapshotCommit.snapshotter = 5",
    "field containerd.events.SnapshotPrepare.snapshotter = 5",
    "field containerd.events.SnapshotRemove.snapshotter = 5",
    "field containerd.services.containers.v1.Container.sandbox = 11",
    "field containerd.services.diff.v1.ApplyRequest.sync_fs = 4",
    "field containerd.services.diff.v1.DiffRequest.source_date_epoch = 6",
    "field containerd.services.images.v1.CreateImageRequest.source_date_epoch = 2",
    "field containerd.services.images.v1.DeleteImageRequest.target = 3",
    "field containerd.services.images.v1.UpdateImageRequest.source_date_epoch = 3",
    "field containerd.services.introspection.v1.ServerResponse.deprecations = 4",
    "field containerd.services.introspection.v1.ServerResponse.pid = 2",
    "field containerd.services.introspection.v1.ServerResponse.pidns = 3",
    "field containerd.types.Platform.os_version = 4",
    "method containerd.services.introspection.v1.Introspection.PluginInfo",
];

/// containerd 2 moved the events Envelope (same fields) to `containerd.types`.
fn containerd_2_name(name: &str) -> &str {
    match name {
        ".containerd.services.events.v1.Envelope"
        | ".containerd.services.events.ttrpc.v1.Envelope" => ".containerd.types.Envelope",
        other => other,
    }
}

fn same_name(name: &str) -> &str {
    name
}

#[derive(Default)]
struct Index<'a> {
    messages: BTreeMap<String, &'a DescriptorProto>,
    enums: BTreeMap<String, &'a EnumDescriptorProto>,
    services: BTreeMap<String, &'a ServiceDescriptorProto>,
}

impl<'a> Index<'a> {
    fn new(set: &'a FileDescriptorSet, packages: &[String]) -> Self {
        let mut index = Index::default();
        for file in set
            .file
            .iter()
            .filter(|f| packages.iter().any(|p| p == f.package()))
        {
            let prefix = format!(".{}", file.package());
            for message in &file.message_type {
                index.add_message(&prefix, message);
            }
            for e in &file.enum_type {
                index.enums.insert(format!("{prefix}.{}", e.name()), e);
            }
            for s in &file.service {
                index.services.insert(format!("{prefix}.{}", s.name()), s);
            }
        }
        index
    }

    fn add_message(&mut self, prefix: &str, message: &'a DescriptorProto) {
        let name = format!("{prefix}.{}", message.name());
        for nested in &message.nested_type {
            self.add_message(&name, nested);
        }
        for e in &message.enum_type {
            self.enums.insert(format!("{name}.{}", e.name()), e);
        }
        self.messages.insert(name, message);
    }
}

/// Every difference between ours and theirs, as sorted lines. `rename` maps one of our full
/// type names to theirs.
fn differences(
    ours: &FileDescriptorSet,
    theirs: &FileDescriptorSet,
    rename: fn(&str) -> &str,
) -> Vec<String> {
    let packages: Vec<String> = ours
        .file
        .iter()
        .filter(|f| f.package().starts_with("containerd."))
        .map(|f| f.package().to_owned())
        .collect();
    let ours = Index::new(ours, &packages);
    let theirs = Index::new(theirs, &packages);
    let mut diffs = Vec::new();

    for (name, our) in &ours.messages {
        let Some(their) = theirs.messages.get(rename(name)) else {
            diffs.push(format!("message {} missing in containerd", &name[1..]));
            continue;
        };
        for field in &our.field {
            let Some(t) = their.field.iter().find(|t| t.number() == field.number()) else {
                diffs.push(format!(
                    "field {}.{} = {} missing in containerd",
                    &name[1..],
                    field.name(),
                    field.number()
                ));
                continue;
            };
            let ours_shape = (
                field.name(),
                field.label(),
                field.r#type(),
                rename(field.type_name()),
                field.proto3_optional(),
            );
            let theirs_shape = (
                t.name(),
                t.label(),
                t.r#type(),
                t.type_name(),
                t.proto3_optional(),
            );
            if ours_shape != theirs_shape {
                diffs.push(format!(
                    "field {}.{}: ours {ours_shape:?}, containerd's {theirs_shape:?}",
                    &name[1..],
                    field.name()
                ));
            }
        }
        for t in &their.field {
            if !our.field.iter().any(|f| f.number() == t.number()) {
                diffs.push(format!(
                    "field {}.{} = {}",
                    &name[1..],
                    t.name(),
                    t.number()
                ));
            }
        }
    }

    for (name, our) in &ours.enums {
        let values = |e: &EnumDescriptorProto| -> Vec<(String, i32)> {
            e.value
                .iter()
                .map(|v| (v.name().to_owned(), v.number()))
                .collect()
        };
        match theirs.enums.get(name) {
            None => diffs.push(format!("enum {} missing in containerd", &name[1..])),
            Some(their) if values(their) != values(our) => diffs.push(format!(
                "enum {}: ours {:?}, containerd's {:?}",
                &name[1..],
                values(our),
                values(their)
            )),
            Some(_) => {}
        }
    }

    for (name, our) in &ours.services {
        let Some(their) = theirs.services.get(name) else {
            diffs.push(format!("service {} missing in containerd", &name[1..]));
            continue;
        };
        for method in &our.method {
            let Some(t) = their.method.iter().find(|t| t.name() == method.name()) else {
                diffs.push(format!(
                    "method {}.{} missing in containerd",
                    &name[1..],
                    method.name()
                ));
                continue;
            };
            let ours_shape = (
                rename(method.input_type()),
                rename(method.output_type()),
                method.client_streaming(),
                method.server_streaming(),
            );
            let theirs_shape = (
                t.input_type(),
                t.output_type(),
                t.client_streaming(),
                t.server_streaming(),
            );
            if ours_shape != theirs_shape {
                diffs.push(format!(
                    "method {}.{}: ours {ours_shape:?}, containerd's {theirs_shape:?}",
                    &name[1..],
                    method.name()
                ));
            }
        }
        for t in &their.method {
            if !our.method.iter().any(|m| m.name() == t.name()) {
                diffs.push(format!("method {}.{}", &name[1..], t.name()));
            }
        }
    }
    diffs.sort();
    diffs
}

fn ours() -> FileDescriptorSet {
    FileDescriptorSet::decode(keel_proto::FILE_DESCRIPTOR_SET).expect("our descriptor set decodes")
}

/// The directory holding the `.proto` files the `containerd-client` crate was built from.
fn containerd_client_protos() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let manifest = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "containerd-client")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("containerd-client among the packages");
    Path::new(manifest)
        .parent()
        .expect("crate dir")
        .join("vendor")
}

fn compile_containerd(includes: &[PathBuf]) -> FileDescriptorSet {
    let files: Vec<String> = CONTAINERD_FILES
        .iter()
        .map(|f| format!("github.com/containerd/containerd/api/{f}"))
        .collect();
    protox::compile(&files, includes)
        .unwrap_or_else(|e| panic!("compile containerd's protos from {includes:?}: {e:?}"))
}

#[test]
fn every_message_enum_and_service_matches_containerd_client() {
    let theirs = compile_containerd(&[containerd_client_protos()]);
    let diffs = differences(&ours(), &theirs, containerd_2_name);
    let unexpected: Vec<&String> = diffs
        .iter()
        .filter(|d| !CONTAINERD_2_ADDITIONS.contains(&d.as_str()))
        .collect();
    let gone: Vec<&&str> = CONTAINERD_2_ADDITIONS
        .iter()
        .filter(|a| !diffs.iter().any(|d| d == *a))
        .collect();
    assert!(
        unexpected.is_empty(),
        "differences from containerd-client's protos: {unexpected:#?}"
    );
    assert!(
        gone.is_empty(),
        "containerd 2 additions no longer seen (update the list): {gone:#?}"
    );
}

#[test]
fn every_message_enum_and_service_matches_containerd_1_6() {
    let Some(roots) = std::env::var_os("KEEL_CONTAINERD_1_6_API") else {
        eprintln!(
            "skipped: KEEL_CONTAINERD_1_6_API is not set to containerd 1.6's proto include roots \
             (see this file's header); the containerd-client comparison still runs"
        );
        return;
    };
    // google/rpc/status.proto is not part of containerd's tree; containerd-client ships it.
    let mut includes: Vec<PathBuf> = std::env::split_paths(&roots).collect();
    includes.push(containerd_client_protos());
    let theirs = compile_containerd(&includes);
    let diffs = differences(&ours(), &theirs, same_name);
    assert!(
        diffs.is_empty(),
        "differences from containerd 1.6's protos: {diffs:#?}"
    );
}

#[test]
fn the_ttrpc_only_service_gets_no_grpc_code_but_is_described() {
    let ours = ours();
    let file = ours
        .file
        .iter()
        .find(|f| f.package() == "containerd.services.events.ttrpc.v1")
        .expect("ttrpc events file");
    assert_eq!(file.service[0].name(), "Events");
    // The messages are generated; a tonic client or server would not compile here.
    let _ = keel_proto::containerd::services::events::ttrpc::v1::ForwardRequest::default();
}

#[test]
fn our_fields_use_only_proto3_scalars_messages_and_enums() {
    // gogoproto's customtype/stdtime/nullable options were dropped; nothing else crept in.
    for file in ours()
        .file
        .iter()
        .filter(|f| f.package().starts_with("containerd."))
    {
        assert_eq!(file.syntax(), "proto3", "{}", file.name());
        assert!(file.options.is_none(), "{} has file options", file.name());
        for message in &file.message_type {
            for field in &message.field {
                assert!(
                    field.options.is_none(),
                    "{}.{} has options",
                    message.name(),
                    field.name()
                );
                assert_ne!(field.label(), Label::Required);
                assert_ne!(field.r#type(), Type::Group);
            }
        }
    }
}
