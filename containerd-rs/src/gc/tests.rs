use std::time::{Duration, SystemTime};

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn content(ns: &mut Namespace, digest: &str, pairs: &[(&str, &str)]) {
    ns.content.insert(digest.to_string(), labels(pairs));
}

fn snap(ns: &mut Namespace, key: &str, parent: Option<&str>, pairs: &[(&str, &str)]) {
    ns.snapshots.entry("overlayfs".into()).or_default().insert(
        key.to_string(),
        SnapshotEntry {
            parent: parent.map(str::to_string),
            labels: labels(pairs),
        },
    );
}

fn garbage_of(ns: Namespace) -> Garbage {
    let inventory: Inventory = [("ns".to_string(), ns)].into_iter().collect();
    collect(&inventory, SystemTime::now())
}

fn digests(g: &Garbage) -> Vec<&str> {
    g.content.iter().map(|(_, d)| d.as_str()).collect()
}

fn keys(g: &Garbage) -> Vec<&str> {
    g.snapshots.iter().map(|(_, _, k)| k.as_str()).collect()
}

/// An image: index → manifest → config + layer, the config naming the unpacked snapshot.
fn pulled_image(ns: &mut Namespace) {
    content(
        ns,
        "index",
        &[("containerd.io/gc.ref.content.m.0", "manifest")],
    );
    content(
        ns,
        "manifest",
        &[
            ("containerd.io/gc.ref.content.config", "config"),
            ("containerd.io/gc.ref.content.l.0", "layer"),
        ],
    );
    content(
        ns,
        "config",
        &[("containerd.io/gc.ref.snapshot.overlayfs", "chain1")],
    );
    content(ns, "layer", &[]);
    snap(ns, "chain0", None, &[]);
    snap(ns, "chain1", Some("chain0"), &[]);
}

#[test]
fn an_image_keeps_its_whole_tree_and_unpacked_snapshots() {
    let mut ns = Namespace::default();
    pulled_image(&mut ns);
    ns.images.push(RootEntry {
        points_at: Some(Node::Content("index".into())),
        labels: Labels::new(),
    });
    content(&mut ns, "stray", &[]);
    snap(&mut ns, "stray-snap", Some("chain1"), &[]);
    let g = garbage_of(ns);
    assert_eq!(digests(&g), ["stray"]);
    assert_eq!(keys(&g), ["stray-snap"]);
}

#[test]
fn without_the_image_everything_goes_children_first() {
    let mut ns = Namespace::default();
    pulled_image(&mut ns);
    let g = garbage_of(ns);
    assert_eq!(digests(&g).len(), 4);
    assert_eq!(keys(&g), ["chain1", "chain0"]);
}

#[test]
fn a_container_keeps_its_snapshot_and_parents() {
    let mut ns = Namespace::default();
    pulled_image(&mut ns);
    snap(&mut ns, "rootfs", Some("chain1"), &[]);
    ns.containers.push(RootEntry {
        points_at: Some(Node::Snapshot {
            snapshotter: "overlayfs".into(),
            key: "rootfs".into(),
        }),
        labels: Labels::new(),
    });
    let g = garbage_of(ns);
    assert!(keys(&g).is_empty(), "{g:?}");
    assert_eq!(
        digests(&g).len(),
        4,
        "the image's content is not needed by the container"
    );
}

#[test]
fn leases_hold_until_they_expire_and_flat_ones_hold_only_what_they_name() {
    let mut ns = Namespace::default();
    pulled_image(&mut ns);
    ns.leases.insert(
        "live".into(),
        LeaseEntry {
            labels: Labels::new(),
            resources: vec![Node::Content("manifest".into())],
        },
    );
    let past = humantime::format_rfc3339(SystemTime::now() - Duration::from_secs(60)).to_string();
    ns.leases.insert(
        "old".into(),
        LeaseEntry {
            labels: labels(&[(LABEL_EXPIRE, &past)]),
            resources: vec![Node::Content("index".into())],
        },
    );
    ns.leases.insert(
        "flat".into(),
        LeaseEntry {
            labels: labels(&[(LABEL_FLAT, "")]),
            resources: vec![
                Node::Content("index".into()),
                Node::Snapshot {
                    snapshotter: "overlayfs".into(),
                    key: "top".into(),
                },
            ],
        },
    );
    snap(&mut ns, "top", Some("chain1"), &[]);
    let g = garbage_of(ns);
    // index held flat (its manifest reference not followed, but "live" holds the manifest);
    // the snapshot chain under "top" is kept as its parents.
    assert!(digests(&g).is_empty(), "{g:?}");
    assert!(keys(&g).is_empty(), "{g:?}");
    assert_eq!(g.expired_leases, [("ns".to_string(), "old".to_string())]);
}

#[test]
fn root_labels_ingests_and_namespaces_are_separate() {
    let mut ns = Namespace::default();
    content(&mut ns, "rooted", &[(LABEL_ROOT, "")]);
    content(&mut ns, "expected", &[]);
    let later = SystemTime::now() + Duration::from_secs(3600);
    ns.ingests
        .insert("fresh".into(), (Some("expected".into()), Some(later)));
    ns.ingests.insert("forever".into(), (None, None));
    let mut other = Namespace::default();
    content(&mut other, "rooted", &[]);
    let inventory: Inventory = [("a".to_string(), ns), ("b".to_string(), other)]
        .into_iter()
        .collect();
    let g = collect(&inventory, SystemTime::now());
    assert_eq!(g.content, [("b".to_string(), "rooted".to_string())]);
    assert_eq!(g.ingests, [("a".to_string(), "forever".to_string())]);
}

#[test]
fn label_refs_follow_containerds_key_rules() {
    let refs = label_refs(&labels(&[
        ("containerd.io/gc.ref.content", "a"),
        ("containerd.io/gc.ref.content.x", "b"),
        ("containerd.io/gc.ref.content/y", "c"),
        ("containerd.io/gc.ref.contentious", "no"),
        ("containerd.io/gc.ref.snapshot.overlayfs", "k1"),
        ("containerd.io/gc.ref.snapshot.native/extra", "k2"),
    ]));
    assert_eq!(
        refs,
        [
            Node::Content("a".into()),
            Node::Content("b".into()),
            Node::Content("c".into()),
            snapshot("native", "k2"),
            snapshot("overlayfs", "k1"),
        ]
    );
}

#[test]
fn a_parent_cycle_does_not_hang() {
    let mut ns = Namespace::default();
    snap(&mut ns, "a", Some("b"), &[]);
    snap(&mut ns, "b", Some("a"), &[]);
    assert_eq!(garbage_of(ns).snapshots.len(), 2);
}

#[test]
fn a_flat_lease_does_not_follow_label_references() {
    let mut ns = Namespace::default();
    pulled_image(&mut ns);
    ns.leases.insert(
        "flat".into(),
        LeaseEntry {
            labels: labels(&[(LABEL_FLAT, "")]),
            resources: vec![Node::Content("index".into())],
        },
    );
    let g = garbage_of(ns);
    assert_eq!(digests(&g), ["config", "layer", "manifest"]);
}
