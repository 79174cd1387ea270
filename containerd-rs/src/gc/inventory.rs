//! Gathering the collector's [`Inventory`] from the metadata store: what each namespace's
//! leases and containers hold. (Content, images and snapshots join as their stores land.)

use crate::containers;
use crate::leases;
use crate::metadata::Store;

use super::{GcError, LeaseEntry, Namespace, Node, RootEntry};

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
