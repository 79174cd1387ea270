//! Our generated clients against the real containerd 1.6 (Debian's `containerd` package), run
//! in a temporary root with its own socket: the other direction of the interop the
//! `grpc_interop` tests check. Each service family is called through its real implementation,
//! so a wrong path, field number or type would show as an error or a lost value here.
//! Skipped, saying why, where `containerd` is not on PATH or the test does not run as root.
//!
//! This file: content, leases, images and snapshots.

use std::time::Duration;

use keel_proto::tonic::transport::Channel;
use keel_proto::*;
use sha2::{Digest, Sha256};

#[path = "support/containerd_daemon.rs"]
mod containerd_daemon;
use containerd_daemon::{in_namespace, labels, Containerd};

#[tokio::test]
async fn our_image_clients_drive_containerd_1_6() {
    let Some(daemon) = Containerd::start() else {
        return;
    };
    let checks = async {
        let channel = daemon.channel().await;
        check_content_images_and_leases(&channel).await;
        check_snapshots(&channel).await;
    };
    tokio::time::timeout(Duration::from_secs(60), checks)
        .await
        .expect("the checks against containerd finish within 60 s");
}

async fn check_content_images_and_leases(channel: &Channel) {
    let blob = b"keel layer bytes";
    let digest = format!("sha256:{:x}", Sha256::digest(blob));

    let mut leases = leases::leases_client::LeasesClient::new(channel.clone());
    let lease = leases
        .create(in_namespace(
            leases::CreateRequest {
                id: "keel-lease".into(),
                labels: labels("purpose", "test"),
            },
            "keel-test",
        ))
        .await
        .expect("Create lease")
        .into_inner()
        .lease
        .expect("lease");
    assert_eq!(lease.id, "keel-lease");

    let mut content = content::content_client::ContentClient::new(channel.clone());
    let mut write = in_namespace(
        tokio_stream::iter(vec![
            content::WriteContentRequest {
                action: content::WriteAction::Write.into(),
                r#ref: "keel-ref".into(),
                total: blob.len() as i64,
                data: blob[..4].to_vec().into(),
                ..Default::default()
            },
            content::WriteContentRequest {
                action: content::WriteAction::Commit.into(),
                r#ref: "keel-ref".into(),
                total: blob.len() as i64,
                expected: digest.clone(),
                offset: 4,
                data: blob[4..].to_vec().into(),
                labels: labels("containerd.io/uncompressed", &digest),
            },
        ]),
        "keel-test",
    );
    write
        .metadata_mut()
        .insert("containerd-lease", "keel-lease".parse().expect("ascii"));
    let mut acks = content.write(write).await.expect("Write").into_inner();
    let mut last = None;
    while let Some(ack) = acks.message().await.expect("ack") {
        last = Some(ack);
    }
    let last = last.expect("a commit ack");
    assert_eq!(last.action(), content::WriteAction::Commit);
    assert_eq!(
        (last.offset, last.digest.as_str()),
        (blob.len() as i64, digest.as_str())
    );

    let info = content
        .info(in_namespace(
            content::InfoRequest {
                digest: digest.clone(),
            },
            "keel-test",
        ))
        .await
        .expect("Info")
        .into_inner()
        .info
        .expect("info");
    assert_eq!(info.size, blob.len() as i64);
    let mut read = content
        .read(in_namespace(
            content::ReadContentRequest {
                digest: digest.clone(),
                offset: 5,
                size: 0,
            },
            "keel-test",
        ))
        .await
        .expect("Read")
        .into_inner();
    let mut got = Vec::new();
    while let Some(chunk) = read.message().await.expect("chunk") {
        got.extend_from_slice(&chunk.data);
    }
    assert_eq!(got, &blob[5..]);

    let resources = leases
        .list_resources(in_namespace(
            leases::ListResourcesRequest {
                id: "keel-lease".into(),
            },
            "keel-test",
        ))
        .await
        .expect("ListResources")
        .into_inner()
        .resources;
    assert!(
        resources
            .iter()
            .any(|r| r.id == digest && r.r#type == "content"),
        "{resources:?}"
    );

    let mut images = images::images_client::ImagesClient::new(channel.clone());
    let target = types::Descriptor {
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        digest: digest.clone(),
        size: blob.len() as i64,
        annotations: labels("a", "b"),
    };
    images
        .create(in_namespace(
            images::CreateImageRequest {
                image: Some(images::Image {
                    name: "keel.test/image:1".into(),
                    labels: labels("x", "y"),
                    target: Some(target.clone()),
                    ..Default::default()
                }),
            },
            "keel-test",
        ))
        .await
        .expect("Create image");
    let image = images
        .get(in_namespace(
            images::GetImageRequest {
                name: "keel.test/image:1".into(),
            },
            "keel-test",
        ))
        .await
        .expect("Get image")
        .into_inner()
        .image
        .expect("image");
    assert_eq!(image.target, Some(target));
    images
        .delete(in_namespace(
            images::DeleteImageRequest {
                name: "keel.test/image:1".into(),
                sync: true,
            },
            "keel-test",
        ))
        .await
        .expect("Delete image");
    leases
        .delete(in_namespace(
            leases::DeleteRequest {
                id: "keel-lease".into(),
                sync: true,
            },
            "keel-test",
        ))
        .await
        .expect("Delete lease");
}

async fn check_snapshots(channel: &Channel) {
    let mut client = snapshots::snapshots_client::SnapshotsClient::new(channel.clone());
    let mounts = client
        .prepare(in_namespace(
            snapshots::PrepareSnapshotRequest {
                snapshotter: "native".into(),
                key: "keel-active".into(),
                parent: String::new(),
                labels: labels("k", "v"),
            },
            "keel-test",
        ))
        .await
        .expect("Prepare")
        .into_inner()
        .mounts;
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0].r#type, "bind");
    let info = client
        .stat(in_namespace(
            snapshots::StatSnapshotRequest {
                snapshotter: "native".into(),
                key: "keel-active".into(),
            },
            "keel-test",
        ))
        .await
        .expect("Stat")
        .into_inner()
        .info
        .expect("info");
    assert_eq!(info.kind(), snapshots::Kind::Active);
    assert_eq!(info.labels["k"], "v");
    client
        .remove(in_namespace(
            snapshots::RemoveSnapshotRequest {
                snapshotter: "native".into(),
                key: "keel-active".into(),
            },
            "keel-test",
        ))
        .await
        .expect("Remove");
}
