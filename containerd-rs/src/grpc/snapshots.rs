//! `containerd.services.snapshots.v1.Snapshots` over [`crate::snapshots`]: picks the
//! snapshotter, adds what a call creates to its lease, publishes the snapshot events. Disk work
//! (copies, walks, removals) runs on tokio's blocking threads.

use std::sync::Arc;

use keel_proto::events::{SnapshotCommit, SnapshotPrepare, SnapshotRemove};
use keel_proto::leases::Resource;
use keel_proto::snapshots::snapshots_server::Snapshots;
use keel_proto::snapshots::{
    CleanupRequest, CommitSnapshotRequest, ListSnapshotsRequest, ListSnapshotsResponse,
    MountsRequest, MountsResponse, PrepareSnapshotRequest, PrepareSnapshotResponse,
    RemoveSnapshotRequest, StatSnapshotRequest, StatSnapshotResponse, UpdateSnapshotRequest,
    UpdateSnapshotResponse, UsageRequest, UsageResponse, ViewSnapshotRequest, ViewSnapshotResponse,
};
use keel_proto::topics;
use keel_proto::types::Mount;
use tonic::{Request, Response, Status};

use super::{gc_status, lease, namespace, status};
use crate::leases::{self, LeaseError};
use crate::metadata::Labels;
use crate::snapshots::{Kind, SnapshotError, Snapshotter};
use crate::supervisor::Supervisor;

/// How many Infos one List message carries, as containerd batches them.
const LIST_BATCH: usize = 100;

#[derive(Debug, Clone)]
pub struct SnapshotsService {
    supervisor: Arc<Supervisor>,
}

impl SnapshotsService {
    pub fn new(supervisor: Arc<Supervisor>) -> Self {
        Self { supervisor }
    }

    /// Runs `f` with the snapshotter `name` on a blocking thread.
    async fn with<T, F>(&self, name: &str, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Supervisor, &Snapshotter) -> Result<T, Status> + Send + 'static,
    {
        snapshotter(&self.supervisor, name)?;
        let supervisor = self.supervisor.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            let snapshotter = snapshotter(&supervisor, &name)?;
            f(&supervisor, snapshotter)
        })
        .await
        .map_err(|e| Status::internal(format!("snapshot operation: {e}")))?
    }

    /// Prepare and View: the same but for the kind they make.
    async fn create(
        &self,
        request: Request<(String, String, String, Labels)>,
        kind: Kind,
    ) -> Result<Vec<Mount>, Status> {
        let ns = namespace(&request)?;
        let lease = lease(&request)?;
        let (name, key, parent, labels) = request.into_inner();
        let mounts = self
            .with(&name, move |sup, s| {
                let _hold = sup.gc.hold();
                let mounts = s
                    .create(&sup.store, &ns, kind, &key, &parent, labels)
                    .map_err(snapshot_status)?;
                keep_in_lease(sup, s, &ns, lease.as_deref(), &key)?;
                if kind == Kind::Active {
                    let event = SnapshotPrepare { key, parent };
                    sup.publish(&ns, topics::SNAPSHOT_PREPARE, &event);
                }
                Ok(mounts)
            })
            .await?;
        Ok(mounts)
    }
}

fn snapshotter<'a>(supervisor: &'a Supervisor, name: &str) -> Result<&'a Snapshotter, Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument(
            "snapshotter argument missing: invalid argument",
        ));
    }
    supervisor.snapshotters.get(name).ok_or_else(|| {
        Status::invalid_argument(format!("snapshotter not loaded: {name}: invalid argument"))
    })
}

/// containerd's errdefs on the wire.
fn snapshot_status(e: SnapshotError) -> Status {
    match e {
        SnapshotError::Metadata(e) => status(e),
        e @ SnapshotError::Io { .. } => Status::internal(e.to_string()),
    }
}

fn lease_status(e: LeaseError) -> Status {
    match e {
        LeaseError::Metadata(e) => status(e),
        e @ LeaseError::UnknownType(_) => Status::unimplemented(e.to_string()),
    }
}

/// Adds snapshot `key` to `lease`, if the call has one.
fn add_to_lease(
    sup: &Supervisor,
    s: &Snapshotter,
    ns: &str,
    lease: Option<&str>,
    key: &str,
) -> Result<(), Status> {
    let Some(lease) = lease else {
        return Ok(());
    };
    let resource = Resource {
        id: key.to_string(),
        r#type: s.kind(),
    };
    leases::add_resource(&sup.store, ns, lease, &resource).map_err(lease_status)
}

/// Fails unless the call's lease (if any) exists: checked before a commit, which cannot be
/// undone.
fn lease_exists(sup: &Supervisor, ns: &str, lease: Option<&str>) -> Result<(), Status> {
    match lease {
        Some(lease) => leases::list_resources(&sup.store, ns, lease)
            .map(drop)
            .map_err(lease_status),
        None => Ok(()),
    }
}

/// [`add_to_lease`] for a snapshot just made: one the lease cannot keep is not left behind.
fn keep_in_lease(
    sup: &Supervisor,
    s: &Snapshotter,
    ns: &str,
    lease: Option<&str>,
    key: &str,
) -> Result<(), Status> {
    add_to_lease(sup, s, ns, lease, key).inspect_err(|_| {
        if let Err(undo) = s.remove(&sup.store, ns, key) {
            tracing::warn!("removing snapshot {key:?} after its lease refused it: {undo}");
        }
    })
}

fn labels(map: std::collections::HashMap<String, String>) -> Labels {
    map.into_iter().collect()
}

/// List's answer: the Infos in batches.
pub type ListStream = tokio_stream::Iter<std::vec::IntoIter<Result<ListSnapshotsResponse, Status>>>;

#[tonic::async_trait]
impl Snapshots for SnapshotsService {
    async fn prepare(
        &self,
        request: Request<PrepareSnapshotRequest>,
    ) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let request = request.map(|r| (r.snapshotter, r.key, r.parent, labels(r.labels)));
        let mounts = self.create(request, Kind::Active).await?;
        Ok(Response::new(PrepareSnapshotResponse { mounts }))
    }

    async fn view(
        &self,
        request: Request<ViewSnapshotRequest>,
    ) -> Result<Response<ViewSnapshotResponse>, Status> {
        let request = request.map(|r| (r.snapshotter, r.key, r.parent, labels(r.labels)));
        let mounts = self.create(request, Kind::View).await?;
        Ok(Response::new(ViewSnapshotResponse { mounts }))
    }

    async fn mounts(
        &self,
        request: Request<MountsRequest>,
    ) -> Result<Response<MountsResponse>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        let mounts = self
            .with(&req.snapshotter, move |sup, s| {
                s.mounts(&sup.store, &ns, &req.key).map_err(snapshot_status)
            })
            .await?;
        Ok(Response::new(MountsResponse { mounts }))
    }

    async fn commit(
        &self,
        request: Request<CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        let lease = lease(&request)?;
        let req = request.into_inner();
        self.with(&req.snapshotter, move |sup, s| {
            let _hold = sup.gc.hold();
            lease_exists(sup, &ns, lease.as_deref())?;
            s.commit(&sup.store, &ns, &req.name, &req.key, labels(req.labels))
                .map_err(snapshot_status)?;
            add_to_lease(sup, s, &ns, lease.as_deref(), &req.name)?;
            let event = SnapshotCommit {
                key: req.key,
                name: req.name,
            };
            sup.publish(&ns, topics::SNAPSHOT_COMMIT, &event);
            Ok(())
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        request: Request<RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        self.with(&req.snapshotter, move |sup, s| {
            {
                let _hold = sup.gc.hold();
                s.remove(&sup.store, &ns, &req.key)
                    .map_err(snapshot_status)?;
            }
            sup.gc.deleted();
            sup.publish(
                &ns,
                topics::SNAPSHOT_REMOVE,
                &SnapshotRemove { key: req.key },
            );
            Ok(())
        })
        .await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        request: Request<StatSnapshotRequest>,
    ) -> Result<Response<StatSnapshotResponse>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        let info = self
            .with(&req.snapshotter, move |sup, s| {
                s.stat(&sup.store, &ns, &req.key).map_err(snapshot_status)
            })
            .await?;
        Ok(Response::new(StatSnapshotResponse { info: Some(info) }))
    }

    async fn update(
        &self,
        request: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        let info = req.info.unwrap_or_default();
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        let info = self
            .with(&req.snapshotter, move |sup, s| {
                let _hold = sup.gc.hold();
                s.update(&sup.store, &ns, &info, &paths)
                    .map_err(snapshot_status)
            })
            .await?;
        Ok(Response::new(UpdateSnapshotResponse { info: Some(info) }))
    }

    type ListStream = ListStream;

    async fn list(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        let infos = self
            .with(&req.snapshotter, move |sup, s| {
                s.infos(&sup.store, &ns, &req.filters)
                    .map_err(snapshot_status)
            })
            .await?;
        let batches: Vec<_> = infos
            .chunks(LIST_BATCH)
            .map(|chunk| {
                Ok(ListSnapshotsResponse {
                    info: chunk.to_vec(),
                })
            })
            .collect();
        Ok(Response::new(tokio_stream::iter(batches)))
    }

    async fn usage(
        &self,
        request: Request<UsageRequest>,
    ) -> Result<Response<UsageResponse>, Status> {
        let ns = namespace(&request)?;
        let req = request.into_inner();
        let (size, inodes) = self
            .with(&req.snapshotter, move |sup, s| {
                s.usage(&sup.store, &ns, &req.key).map_err(snapshot_status)
            })
            .await?;
        Ok(Response::new(UsageResponse { size, inodes }))
    }

    async fn cleanup(&self, request: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        namespace(&request)?;
        let req = request.into_inner();
        // As containerd's: what no root keeps goes first, then the directories no snapshot owns.
        self.with(&req.snapshotter, move |sup, s| {
            sup.gc.collect_now(sup).map_err(gc_status)?;
            s.cleanup(&sup.store).map_err(snapshot_status)
        })
        .await?;
        Ok(Response::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{in_namespace, shared_supervisor};

    fn prepare(key: &str, parent: &str) -> PrepareSnapshotRequest {
        PrepareSnapshotRequest {
            snapshotter: "native".into(),
            key: key.into(),
            parent: parent.into(),
            labels: Default::default(),
        }
    }

    #[tokio::test]
    async fn prepare_under_a_lease_adds_the_snapshot_to_it() {
        let (_dir, sup) = shared_supervisor();
        let service = SnapshotsService::new(sup.clone());
        leases::create(&sup.store, "ns", "l1", Labels::new()).unwrap();
        let mut request = in_namespace("ns", prepare("k", ""));
        request
            .metadata_mut()
            .insert(super::super::LEASE_METADATA_KEY, "l1".parse().unwrap());
        service.prepare(request).await.unwrap();
        let resources = leases::list_resources(&sup.store, "ns", "l1").unwrap();
        assert_eq!(resources.len(), 1);
        assert_eq!(resources[0].r#type, "snapshots/native");
        assert_eq!(resources[0].id, "k");

        let mut request = in_namespace("ns", prepare("k2", ""));
        request
            .metadata_mut()
            .insert(super::super::LEASE_METADATA_KEY, "nope".parse().unwrap());
        let err = service.prepare(request).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let stat = service
            .stat(in_namespace(
                "ns",
                StatSnapshotRequest {
                    snapshotter: "native".into(),
                    key: "k2".into(),
                },
            ))
            .await;
        assert_eq!(
            stat.unwrap_err().code(),
            tonic::Code::NotFound,
            "nothing left behind"
        );
    }

    #[tokio::test]
    async fn unknown_snapshotters_and_missing_namespaces_are_refused() {
        let (_dir, sup) = shared_supervisor();
        let service = SnapshotsService::new(sup);
        let mut req = prepare("k", "");
        req.snapshotter = "zfs".into();
        let err = service.prepare(in_namespace("ns", req)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("snapshotter not loaded: zfs"));
        let err = service
            .prepare(Request::new(prepare("k", "")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    }

    #[tokio::test]
    async fn prepare_commit_and_remove_publish_their_events() {
        use keel_proto::prost::Message;
        let (_dir, sup) = shared_supervisor();
        let mut events = sup.events.subscribe(crate::filters::Filter::default());
        let service = SnapshotsService::new(sup.clone());
        service
            .prepare(in_namespace("ns", prepare("a", "")))
            .await
            .unwrap();
        let commit = CommitSnapshotRequest {
            snapshotter: "native".into(),
            name: "base".into(),
            key: "a".into(),
            labels: Default::default(),
        };
        service.commit(in_namespace("ns", commit)).await.unwrap();
        let remove = RemoveSnapshotRequest {
            snapshotter: "native".into(),
            key: "base".into(),
        };
        service.remove(in_namespace("ns", remove)).await.unwrap();

        let e = events.next().await.unwrap();
        assert_eq!(
            (e.namespace.as_str(), e.topic.as_str()),
            ("ns", topics::SNAPSHOT_PREPARE)
        );
        assert_eq!(
            SnapshotPrepare::decode(e.payload.as_slice()).unwrap().key,
            "a"
        );
        let e = events.next().await.unwrap();
        assert_eq!(e.topic, topics::SNAPSHOT_COMMIT);
        let commit = SnapshotCommit::decode(e.payload.as_slice()).unwrap();
        assert_eq!((commit.key.as_str(), commit.name.as_str()), ("a", "base"));
        let e = events.next().await.unwrap();
        assert_eq!(e.topic, topics::SNAPSHOT_REMOVE);
        assert_eq!(
            SnapshotRemove::decode(e.payload.as_slice()).unwrap().key,
            "base"
        );
    }
}
