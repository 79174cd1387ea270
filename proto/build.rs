//! Compiles `proto/**/*.proto` with protox (pure Rust, so no system `protoc` is needed) into a
//! FileDescriptorSet, and generates prost messages and tonic clients and servers from it.

use std::{env, fs, path::PathBuf};

use prost_types::FileDescriptorSet;

/// The files to compile, relative to `proto/`; their imports are found from there too.
const PROTOS: &[&str] = &[
    "containerd/types/descriptor.proto",
    "containerd/types/metrics.proto",
    "containerd/types/mount.proto",
    "containerd/types/platform.proto",
    "containerd/types/task/task.proto",
    "containerd/events/container.proto",
    "containerd/events/content.proto",
    "containerd/events/image.proto",
    "containerd/events/namespace.proto",
    "containerd/events/snapshot.proto",
    "containerd/events/task.proto",
    "containerd/services/containers/v1/containers.proto",
    "containerd/services/content/v1/content.proto",
    "containerd/services/diff/v1/diff.proto",
    "containerd/services/events/v1/events.proto",
    "containerd/services/images/v1/images.proto",
    "containerd/services/introspection/v1/introspection.proto",
    "containerd/services/leases/v1/leases.proto",
    "containerd/services/namespaces/v1/namespace.proto",
    "containerd/services/snapshots/v1/snapshots.proto",
    "containerd/services/tasks/v1/tasks.proto",
    "containerd/services/ttrpc/events/v1/events.proto",
    "containerd/services/version/v1/version.proto",
    "google/rpc/status.proto",
];

/// Packages whose services are served over ttrpc, not gRPC: only their messages are generated.
const TTRPC_PACKAGES: &[&str] = &["containerd.services.events.ttrpc.v1"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let fds = protox::compile(PROTOS, ["proto"])?;
    // The whole set, services included, for reflection and for the tests that compare it
    // with containerd's.
    fs::write(
        out_dir.join("file_descriptor_set.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;

    let mut config = tonic_prost_build::Config::new();
    // `prost::Name` impls give each message its full protobuf name, which containerd uses as
    // the type URL of events packed in an Any.
    config.enable_type_names();
    // Blob bytes are passed on without a copy.
    config.bytes([".containerd.services.content.v1"]);

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Clients are built on any tower service (a unix-socket channel); no TCP `connect`.
        .build_transport(false)
        // One file that nests every package's module as its dotted name says, so that
        // references across packages (`super::super::...`) resolve.
        .include_file("containerd_api.rs")
        .compile_fds_with_config(without_ttrpc_services(fds), config)?;
    Ok(())
}

fn without_ttrpc_services(mut fds: FileDescriptorSet) -> FileDescriptorSet {
    for file in &mut fds.file {
        if TTRPC_PACKAGES.contains(&file.package()) {
            file.service.clear();
        }
    }
    fds
}
