//! Gathering the collector's [`Inventory`]: what each namespace's leases, containers, images,
//! content records, ingests and snapshots hold, read while the collector keeps writers out.

use std::time::Duration;

use crate::containers;
use crate::content::Content;
use crate::images;
use crate::leases;
use crate::metadata::Store;
use crate::snapshots::Snapshotters;
use crate::supervisor::Supervisor;

use super::{GcError, Inventory, LeaseEntry, Namespace, Node, RootEntry, SnapshotEntry};

/// How long an ingest no lease holds stays a root (containerd: 24 hours from its start).
pub const INGEST_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// What every namespace of `supervisor` holds.
pub fn gather(supervisor: &Supervisor) -> Result<Inventory, GcError> {
    let store = &supervisor.store;
    let mut inventory = Inventory::new();
    for (name, _) in store.namespaces()? {
        let mut ns = Namespace::default();
        add_leases(store, &name, &mut ns)?;
        add_containers(store, &name, &mut ns)?;
        add_images(supervisor, &name, &mut ns)?;
        add_content(&supervisor.content, store, &name, &mut ns)?;
        add_ingests(&supervisor.content, &name, &mut ns)?;
        add_snapshots(&supervisor.snapshotters, store, &name, &mut ns)?;
        inventory.insert(name, ns);
    }
    Ok(inventory)
}

/// Adds the images of `namespace`: each keeps its target and what its labels reference.
pub fn add_images(
    supervisor: &Supervisor,
    namespace: &str,
    into: &mut Namespace,
) -> Result<(), GcError> {
    for image in images::list(supervisor, namespace, &[])? {
        let points_at = image
            .target
            .as_ref()
            .filter(|t| !t.digest.is_empty())
            .map(|t| Node::Content(t.digest.clone()));
        into.images.push(RootEntry {
            points_at,
            labels: image.labels.into_iter().collect(),
        });
    }
    Ok(())
}

/// Adds the content records of `namespace` with their labels.
pub fn add_content(
    content: &Content,
    store: &Store,
    namespace: &str,
    into: &mut Namespace,
) -> Result<(), GcError> {
    for (digest, info) in content.records(store, namespace)? {
        into.content
            .insert(digest, info.labels.into_iter().collect());
    }
    Ok(())
}

/// Adds the ingests of `namespace`. One begun under a lease lives as long as the lease holds
/// it; one begun under none is a root for [`INGEST_EXPIRY`] from its start, as containerd
/// marks it.
pub fn add_ingests(
    content: &Content,
    namespace: &str,
    into: &mut Namespace,
) -> Result<(), GcError> {
    for status in content.list_statuses(namespace, &[])? {
        let expires = content
            .is_unleased(namespace, &status.reference)
            .then(|| status.started_at + INGEST_EXPIRY);
        let expected = status.expected.map(|d| d.as_str().to_string());
        into.ingests.insert(status.reference, (expected, expires));
    }
    Ok(())
}

/// Adds the snapshots of `namespace`, by snapshotter.
pub fn add_snapshots(
    snapshotters: &Snapshotters,
    store: &Store,
    namespace: &str,
    into: &mut Namespace,
) -> Result<(), GcError> {
    for name in snapshotters.names() {
        let Some(snapshotter) = snapshotters.get(name) else {
            continue;
        };
        let keys = into.snapshots.entry(name.to_string()).or_default();
        for (key, record) in snapshotter.list(store, namespace)? {
            let entry = SnapshotEntry {
                parent: (!record.parent.is_empty()).then_some(record.parent),
                labels: record.labels,
            };
            keys.insert(key, entry);
        }
    }
    Ok(())
}

/// Adds the leases of `namespace` to `into`.
pub fn add_leases(store: &Store, namespace: &str, into: &mut Namespace) -> Result<(), GcError> {
    for (id, record) in leases::records(store, namespace)? {
        let resources = record
            .resources
            .iter()
            .filter_map(|r| match (r.kind.as_str(), r.snapshotter()) {
                ("content", _) => Some(Node::Content(r.id.clone())),
                ("ingests", _) => Some(Node::Ingest(r.id.clone())),
                (_, Some(snapshotter)) => Some(Node::Snapshot {
                    snapshotter: snapshotter.to_string(),
                    key: r.id.clone(),
                }),
                _ => None,
            })
            .collect();
        into.leases.insert(
            id,
            LeaseEntry {
                labels: record.labels,
                resources,
            },
        );
    }
    Ok(())
}

/// Adds the containers of `namespace` to `into`: each keeps its snapshot and what its labels
/// reference.
pub fn add_containers(store: &Store, namespace: &str, into: &mut Namespace) -> Result<(), GcError> {
    for container in containers::records(store, namespace)? {
        let points_at = (!container.snapshotter.is_empty() && !container.snapshot_key.is_empty())
            .then(|| Node::Snapshot {
                snapshotter: container.snapshotter.clone(),
                key: container.snapshot_key.clone(),
            });
        into.containers.push(RootEntry {
            points_at,
            labels: container.labels.into_iter().collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_proto::containers::Container;
    use keel_proto::leases::Resource;
    use keel_proto::prost::Message;

    #[test]
    fn leases_and_containers_become_roots() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_namespace("ns", &Default::default()).unwrap();
        leases::create(&store, "ns", "l1", Default::default()).unwrap();
        for (kind, id) in [
            ("content", "sha256:".to_string() + &"a".repeat(64)),
            ("ingests", "ref-1".to_string()),
            ("snapshots/overlayfs", "key-1".to_string()),
        ] {
            let resource = Resource {
                id,
                r#type: kind.into(),
            };
            leases::add_resource(&store, "ns", "l1", &resource).unwrap();
        }
        let container = Container {
            id: "c1".into(),
            snapshotter: "overlayfs".into(),
            snapshot_key: "rootfs-1".into(),
            ..Default::default()
        };
        store
            .create("ns", containers::KIND, "c1", &container.encode_to_vec())
            .unwrap();

        let mut ns = Namespace::default();
        add_leases(&store, "ns", &mut ns).unwrap();
        add_containers(&store, "ns", &mut ns).unwrap();
        assert_eq!(ns.leases["l1"].resources.len(), 3);
        assert_eq!(
            ns.containers[0].points_at,
            Some(Node::Snapshot {
                snapshotter: "overlayfs".into(),
                key: "rootfs-1".into()
            })
        );
    }
}
