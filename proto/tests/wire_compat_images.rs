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
//! This file: content, images, leases, snapshots and diff (the image services).

use std::collections::HashMap;

use containerd_client as theirs;
use keel_proto as ours;
use prost_types::FieldMask;

#[path = "support/wire.rs"]
mod wire;
use wire::*;

#[test]
fn content() {
    use ours::content as c;
    use theirs::services::v1 as tc;

    let info = c::Info {
        digest: "sha256:aa".into(),
        size: 1 << 40,
        created_at: time(1),
        updated_at: time(2),
        labels: map("containerd.io/gc.ref.content.l.0", "sha256:bb"),
    };
    same_both_ways::<_, tc::UpdateRequest>(&c::UpdateRequest {
        info: Some(info.clone()),
        update_mask: Some(FieldMask {
            paths: vec!["labels".into()],
        }),
    });
    same_both_ways::<_, tc::ListContentResponse>(&c::ListContentResponse {
        info: vec![info.clone(), info],
    });
    same_both_ways::<_, tc::ReadContentRequest>(&c::ReadContentRequest {
        digest: "sha256:aa".into(),
        offset: 10,
        size: -1,
    });
    same_both_ways::<_, tc::ListStatusesResponse>(&c::ListStatusesResponse {
        statuses: vec![c::Status {
            started_at: time(1),
            updated_at: time(2),
            r#ref: "pull-1".into(),
            offset: 5,
            total: 10,
            expected: "sha256:aa".into(),
        }],
    });
    same_both_ways::<_, tc::AbortRequest>(&c::AbortRequest {
        r#ref: "pull-1".into(),
    });
    // Our blob bytes are `bytes::Bytes`, theirs `Vec<u8>`: Debug prints them differently,
    // so these are checked field by field.
    let read: tc::ReadContentResponse = through_theirs(&c::ReadContentResponse {
        offset: 3,
        data: b"layer bytes".to_vec().into(),
    });
    assert_eq!(
        (read.offset, read.data.as_slice()),
        (3, &b"layer bytes"[..])
    );
    let write: tc::WriteContentRequest = through_theirs(&c::WriteContentRequest {
        action: c::WriteAction::Commit.into(),
        r#ref: "pull-1".into(),
        total: 11,
        expected: "sha256:aa".into(),
        offset: 0,
        data: b"layer bytes".to_vec().into(),
        labels: map("k", "v"),
    });
    assert_eq!(write.action(), tc::WriteAction::Commit);
    assert_eq!(write.expected, "sha256:aa");
    same_both_ways::<_, tc::WriteContentResponse>(&c::WriteContentResponse {
        action: c::WriteAction::Stat.into(),
        started_at: time(1),
        updated_at: time(2),
        offset: 11,
        total: 11,
        digest: "sha256:aa".into(),
    });
}

#[test]
fn images() {
    use ours::images as im;
    use theirs::services::v1 as ti;

    let image = im::Image {
        name: "docker.io/library/busybox:latest".into(),
        labels: map("a", "b"),
        target: Some(descriptor()),
        created_at: time(1),
        updated_at: time(2),
    };
    same_both_ways::<_, ti::ListImagesResponse>(&im::ListImagesResponse {
        images: vec![image.clone()],
    });
    same_both_ways::<_, ti::GetImageResponse>(&im::GetImageResponse {
        image: Some(image.clone()),
    });
    // containerd 2 added source_date_epoch to the create and update requests and an
    // optional target to the delete request.
    let create: ti::CreateImageRequest = through_theirs(&im::CreateImageRequest {
        image: Some(image.clone()),
    });
    assert_eq!(
        create.image.expect("image").target.expect("target").size,
        4096
    );
    through_theirs::<_, ti::UpdateImageRequest>(&im::UpdateImageRequest {
        image: Some(image),
        update_mask: Some(FieldMask {
            paths: vec!["target".into(), "annotations.x".into()],
        }),
    });
    let delete: ti::DeleteImageRequest = through_theirs(&im::DeleteImageRequest {
        name: "busybox".into(),
        sync: true,
    });
    assert!(delete.sync);
}

#[test]
fn leases() {
    use ours::leases as l;
    use theirs::services::v1 as tl;

    let lease = l::Lease {
        id: "pull-1".into(),
        created_at: time(1),
        labels: map("containerd.io/gc.expire", "2030-01-01T00:00:00Z"),
    };
    same_both_ways::<_, tl::CreateRequest>(&l::CreateRequest {
        id: "pull-1".into(),
        labels: map("a", "b"),
    });
    same_both_ways::<_, tl::CreateResponse>(&l::CreateResponse {
        lease: Some(lease.clone()),
    });
    same_both_ways::<_, tl::ListResponse>(&l::ListResponse {
        leases: vec![lease],
    });
    same_both_ways::<_, tl::DeleteRequest>(&l::DeleteRequest {
        id: "pull-1".into(),
        sync: true,
    });
    let resource = l::Resource {
        id: "sha256:aa".into(),
        r#type: "content".into(),
    };
    same_both_ways::<_, tl::AddResourceRequest>(&l::AddResourceRequest {
        id: "pull-1".into(),
        resource: Some(resource.clone()),
    });
    same_both_ways::<_, tl::DeleteResourceRequest>(&l::DeleteResourceRequest {
        id: "pull-1".into(),
        resource: Some(resource.clone()),
    });
    same_both_ways::<_, tl::ListResourcesResponse>(&l::ListResourcesResponse {
        resources: vec![resource],
    });
}

#[test]
fn snapshots() {
    use ours::snapshots as s;
    use theirs::services::v1::snapshots as ts;

    same_both_ways::<_, ts::PrepareSnapshotRequest>(&s::PrepareSnapshotRequest {
        snapshotter: "overlayfs".into(),
        key: "k".into(),
        parent: "p".into(),
        labels: map("a", "b"),
    });
    same_both_ways::<_, ts::ViewSnapshotResponse>(&s::ViewSnapshotResponse {
        mounts: vec![mount()],
    });
    same_both_ways::<_, ts::CommitSnapshotRequest>(&s::CommitSnapshotRequest {
        snapshotter: "overlayfs".into(),
        name: "n".into(),
        key: "k".into(),
        labels: map("a", "b"),
    });
    let info = s::Info {
        name: "n".into(),
        parent: "p".into(),
        kind: s::Kind::Committed.into(),
        created_at: time(1),
        updated_at: time(2),
        labels: map("containerd.io/snapshot.ref", "sha256:aa"),
    };
    let update: ts::UpdateSnapshotRequest = same_both_ways(&s::UpdateSnapshotRequest {
        snapshotter: "overlayfs".into(),
        info: Some(info.clone()),
        update_mask: Some(FieldMask {
            paths: vec!["labels.containerd.io/snapshot.ref".into()],
        }),
    });
    assert_eq!(update.info.expect("info").kind(), ts::Kind::Committed);
    same_both_ways::<_, ts::ListSnapshotsResponse>(&s::ListSnapshotsResponse { info: vec![info] });
    same_both_ways::<_, ts::ListSnapshotsRequest>(&s::ListSnapshotsRequest {
        snapshotter: "overlayfs".into(),
        filters: vec!["kind==committed".into()],
    });
    same_both_ways::<_, ts::UsageResponse>(&s::UsageResponse {
        size: 1 << 33,
        inodes: 12,
    });
    same_both_ways::<_, ts::CleanupRequest>(&s::CleanupRequest {
        snapshotter: "overlayfs".into(),
    });
}

#[test]
fn diff() {
    use ours::diff as d;
    use theirs::services::v1 as td;

    // containerd 2 added sync_fs to ApplyRequest and source_date_epoch to DiffRequest.
    let apply: td::ApplyRequest = through_theirs(&d::ApplyRequest {
        diff: Some(descriptor()),
        mounts: vec![mount()],
        payloads: HashMap::from([(
            "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
            any("x", b"y"),
        )]),
    });
    assert_eq!(apply.mounts.len(), 1);
    same_both_ways::<_, td::ApplyResponse>(&d::ApplyResponse {
        applied: Some(descriptor()),
    });
    let diff: td::DiffRequest = through_theirs(&d::DiffRequest {
        left: vec![mount()],
        right: vec![mount(), mount()],
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        r#ref: "diff-1".into(),
        labels: map("a", "b"),
    });
    assert_eq!((diff.left.len(), diff.right.len()), (1, 2));
    same_both_ways::<_, td::DiffResponse>(&d::DiffResponse {
        diff: Some(descriptor()),
    });
}
