//! Garbage collection as containerd does it (metadata/gc.go): a mark over what every namespace
//! holds, from its roots along its references; what is not reached is garbage.
//!
//! Roots, per namespace: every live lease (not past its `containerd.io/gc.expire`) with the
//! content, snapshots and ingests it holds; every image's target and label references; every
//! container's snapshot and label references; content and snapshots labelled
//! `containerd.io/gc.root`; ingests not expired. References: a content's or snapshot's labels
//! `containerd.io/gc.ref.content[.|/name]` (a digest) and `containerd.io/gc.ref.snapshot.<snapshotter>[/name]`
//! (a key), a snapshot's parent, an ingest's expected digest. A lease labelled
//! `containerd.io/gc.flat` holds its resources without what they reference (parents still).
//!
//! [`collect`] only decides: [`Inventory`] is what the stores hold ([`inventory`] gathers it),
//! [`Garbage`] what to remove. [`sweep`] removes it (records, then blobs no namespace records
//! any more, then snapshot directories); [`Collector`] decides when, and keeps writers out
//! while it runs.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use crate::metadata::Labels;

pub mod collector;
pub mod inventory;
pub mod sweep;
#[cfg(test)]
mod sweep_tests;

pub use collector::Collector;

/// Marks a content or snapshot as a root by itself.
pub const LABEL_ROOT: &str = "containerd.io/gc.root";
/// Prefix of labels naming content a resource needs.
pub const LABEL_CONTENT_REF: &str = "containerd.io/gc.ref.content";
/// Prefix of labels naming a snapshot a resource needs (`...snapshot.<snapshotter>`).
pub const LABEL_SNAPSHOT_REF: &str = "containerd.io/gc.ref.snapshot.";
/// When a lease or ingest stops being a root (RFC 3339).
pub const LABEL_EXPIRE: &str = "containerd.io/gc.expire";
/// A lease whose resources are held without what they reference.
pub const LABEL_FLAT: &str = "containerd.io/gc.flat";

/// Why a collection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Metadata(#[from] crate::metadata::MetadataError),
    #[error(transparent)]
    Lease(#[from] crate::leases::LeaseError),
    #[error(transparent)]
    Content(#[from] crate::content::ContentError),
    #[error(transparent)]
    Snapshot(#[from] crate::snapshots::SnapshotError),
}

/// One resource of one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    Content(String),
    Snapshot { snapshotter: String, key: String },
    Ingest(String),
}

/// A snapshot as the collector sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotEntry {
    pub parent: Option<String>,
    pub labels: Labels,
}

/// A lease as the collector sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseEntry {
    pub labels: Labels,
    pub resources: Vec<Node>,
}

/// An image or a container: roots, with what they point at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootEntry {
    /// An image's target digest; a container's snapshot.
    pub points_at: Option<Node>,
    pub labels: Labels,
}

/// What one namespace holds.
#[derive(Debug, Clone, Default)]
pub struct Namespace {
    pub content: BTreeMap<String, Labels>,
    /// By snapshotter, then key.
    pub snapshots: BTreeMap<String, BTreeMap<String, SnapshotEntry>>,
    /// Active ingests: their expected digest (if given) and expiry.
    pub ingests: BTreeMap<String, (Option<String>, Option<SystemTime>)>,
    pub leases: BTreeMap<String, LeaseEntry>,
    pub images: Vec<RootEntry>,
    pub containers: Vec<RootEntry>,
}

/// What every namespace holds.
pub type Inventory = BTreeMap<String, Namespace>;

/// What to remove, by namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Garbage {
    pub content: Vec<(String, String)>,
    /// (namespace, snapshotter, key), children before their parents.
    pub snapshots: Vec<(String, String, String)>,
    pub ingests: Vec<(String, String)>,
    pub expired_leases: Vec<(String, String)>,
}

impl Garbage {
    pub fn is_empty(&self) -> bool {
        self.content.is_empty()
            && self.snapshots.is_empty()
            && self.ingests.is_empty()
            && self.expired_leases.is_empty()
    }
}

/// Decides what in `inventory` is garbage at `now`.
pub fn collect(inventory: &Inventory, now: SystemTime) -> Garbage {
    let mut garbage = Garbage::default();
    for (ns_name, ns) in inventory {
        let live = mark(ns, now);
        for digest in ns.content.keys() {
            if !live.contains(&Node::Content(digest.clone())) {
                garbage.content.push((ns_name.clone(), digest.clone()));
            }
        }
        for (snapshotter, keys) in &ns.snapshots {
            for key in children_first(keys) {
                let node = Node::Snapshot {
                    snapshotter: snapshotter.clone(),
                    key: key.clone(),
                };
                if !live.contains(&node) {
                    garbage
                        .snapshots
                        .push((ns_name.clone(), snapshotter.clone(), key));
                }
            }
        }
        for reference in ns.ingests.keys() {
            if !live.contains(&Node::Ingest(reference.clone())) {
                garbage.ingests.push((ns_name.clone(), reference.clone()));
            }
        }
        for (id, lease) in &ns.leases {
            if expired(&lease.labels, now) {
                garbage.expired_leases.push((ns_name.clone(), id.clone()));
            }
        }
    }
    garbage
}

/// Every node of `ns` reachable from its roots.
fn mark(ns: &Namespace, now: SystemTime) -> HashSet<Node> {
    let mut live = HashSet::new();
    // Nodes reached through a flat lease: kept, their label references not followed.
    let mut flat = Vec::new();
    let mut pending = Vec::new();
    for lease in ns.leases.values().filter(|l| !expired(&l.labels, now)) {
        if lease.labels.contains_key(LABEL_FLAT) {
            flat.extend(lease.resources.iter().cloned());
        } else {
            pending.extend(lease.resources.iter().cloned());
        }
    }
    for entry in ns.images.iter().chain(&ns.containers) {
        pending.extend(entry.points_at.iter().cloned());
        pending.extend(label_refs(&entry.labels));
    }
    pending.extend(
        ns.content
            .iter()
            .filter(|(_, labels)| labels.contains_key(LABEL_ROOT))
            .map(|(digest, _)| Node::Content(digest.clone())),
    );
    for (snapshotter, keys) in &ns.snapshots {
        pending.extend(
            keys.iter()
                .filter(|(_, s)| s.labels.contains_key(LABEL_ROOT))
                .map(|(key, _)| snapshot(snapshotter, key)),
        );
    }
    pending.extend(
        ns.ingests
            .iter()
            .filter(|(_, (_, expires))| expires.is_some_and(|at| at > now))
            .map(|(reference, _)| Node::Ingest(reference.clone())),
    );
    for node in flat {
        // Parents of a flatly held snapshot are still needed to mount it.
        let mut next = Some(node);
        while let Some(node) = next.take() {
            if let Node::Snapshot { snapshotter, key } = &node {
                next = parent(ns, snapshotter, key).map(|p| snapshot(snapshotter, &p));
            }
            live.insert(node);
        }
    }
    while let Some(node) = pending.pop() {
        if live.insert(node.clone()) {
            pending.extend(references(ns, &node));
        }
    }
    live
}

/// What `node` keeps alive.
fn references(ns: &Namespace, node: &Node) -> Vec<Node> {
    match node {
        Node::Content(digest) => ns.content.get(digest).map(label_refs).unwrap_or_default(),
        Node::Snapshot { snapshotter, key } => {
            let Some(entry) = ns.snapshots.get(snapshotter).and_then(|s| s.get(key)) else {
                return Vec::new();
            };
            let mut refs = label_refs(&entry.labels);
            refs.extend(entry.parent.iter().map(|p| snapshot(snapshotter, p)));
            refs
        }
        Node::Ingest(reference) => ns
            .ingests
            .get(reference)
            .and_then(|(expected, _)| expected.clone())
            .map(Node::Content)
            .into_iter()
            .collect(),
    }
}

fn parent(ns: &Namespace, snapshotter: &str, key: &str) -> Option<String> {
    ns.snapshots.get(snapshotter)?.get(key)?.parent.clone()
}

fn snapshot(snapshotter: &str, key: &str) -> Node {
    Node::Snapshot {
        snapshotter: snapshotter.to_string(),
        key: key.to_string(),
    }
}

/// The resources `labels` reference: `containerd.io/gc.ref.content` alone or followed by `.`
/// or `/` and a name, and `containerd.io/gc.ref.snapshot.<snapshotter>[/name]`.
pub fn label_refs(labels: &Labels) -> Vec<Node> {
    let mut refs = Vec::new();
    for (key, value) in labels {
        if let Some(rest) = key.strip_prefix(LABEL_CONTENT_REF) {
            if rest.is_empty() || rest.starts_with('.') || rest.starts_with('/') {
                refs.push(Node::Content(value.clone()));
            }
        } else if let Some(rest) = key.strip_prefix(LABEL_SNAPSHOT_REF) {
            let snapshotter = rest.split('/').next().unwrap_or(rest);
            refs.push(snapshot(snapshotter, value));
        }
    }
    refs
}

/// Whether `labels` carry a `containerd.io/gc.expire` in the past (an unreadable one does not
/// count, as in containerd).
fn expired(labels: &Labels, now: SystemTime) -> bool {
    labels
        .get(LABEL_EXPIRE)
        .and_then(|v| humantime::parse_rfc3339_weak(v).ok())
        .is_some_and(|at| at <= now)
}

/// The keys of one snapshotter's snapshots, each after every snapshot whose parent it is, so
/// removing in this order never removes a parent before its child.
fn children_first(keys: &BTreeMap<String, SnapshotEntry>) -> Vec<String> {
    let depth = |key: &String| {
        let mut depth = 0usize;
        let mut at = keys.get(key).and_then(|s| s.parent.as_ref());
        while let Some(parent) = at {
            depth += 1;
            if depth > keys.len() {
                break; // A cycle: not made by us, but do not loop.
            }
            at = keys.get(parent).and_then(|s| s.parent.as_ref());
        }
        depth
    };
    let mut ordered: Vec<(usize, String)> = keys.keys().map(|k| (depth(k), k.clone())).collect();
    ordered.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    ordered.into_iter().map(|(_, k)| k).collect()
}

#[cfg(test)]
mod tests;
