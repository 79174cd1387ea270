//! The snapshot metadata rules, on both backends, without mounting anything.

use super::*;

fn setup(backend: Backend) -> (tempfile::TempDir, Store, Snapshotter) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let snapshotter = Snapshotter::open(backend, dir.path(), false).unwrap();
    (dir, store, snapshotter)
}

fn code(e: SnapshotError) -> &'static str {
    match e {
        SnapshotError::Metadata(MetadataError::NotFound(_)) => "NotFound",
        SnapshotError::Metadata(MetadataError::AlreadyExists(_)) => "AlreadyExists",
        SnapshotError::Metadata(MetadataError::FailedPrecondition(_)) => "FailedPrecondition",
        SnapshotError::Metadata(MetadataError::InvalidArgument(_)) => "InvalidArgument",
        _ => "other",
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn prepare_commit_view_and_remove_follow_containerds_rules() {
    let (_dir, store, s) = setup(Backend::Overlay);
    let m = s
        .create(&store, "ns", Kind::Active, "a", "", Labels::new())
        .unwrap();
    assert_eq!(m[0].r#type, "bind");
    let again = s.create(&store, "ns", Kind::Active, "a", "", Labels::new());
    assert_eq!(code(again.unwrap_err()), "AlreadyExists");
    let on_active = s.create(&store, "ns", Kind::Active, "b", "a", Labels::new());
    assert_eq!(code(on_active.unwrap_err()), "InvalidArgument");
    let on_missing = s.create(&store, "ns", Kind::Active, "b", "zz", Labels::new());
    assert_eq!(code(on_missing.unwrap_err()), "NotFound");

    s.commit(&store, "ns", "base", "a", labels(&[("l", "1")]))
        .unwrap();
    assert_eq!(code(s.get(&store, "ns", "a").unwrap_err()), "NotFound");
    let base = s.get(&store, "ns", "base").unwrap();
    assert_eq!(base.kind, Kind::Committed);
    assert_eq!(base.labels, labels(&[("l", "1")]));
    let commit_again = s.commit(&store, "ns", "x", "base", Labels::new());
    assert_eq!(code(commit_again.unwrap_err()), "FailedPrecondition");
    let onto_existing = s.commit(&store, "ns", "base", "gone", Labels::new());
    assert_eq!(
        code(onto_existing.unwrap_err()),
        "AlreadyExists",
        "the name is checked first"
    );

    let m = s
        .create(&store, "ns", Kind::Active, "c", "base", Labels::new())
        .unwrap();
    assert_eq!(m[0].r#type, "overlay");
    let v = s
        .create(&store, "ns", Kind::View, "v", "base", Labels::new())
        .unwrap();
    assert_eq!(v[0].options, ["ro", "rbind"]);
    assert_eq!(s.mounts(&store, "ns", "c").unwrap(), m);

    assert_eq!(
        code(s.remove(&store, "ns", "base").unwrap_err()),
        "FailedPrecondition"
    );
    s.remove(&store, "ns", "c").unwrap();
    s.remove(&store, "ns", "v").unwrap();
    s.remove(&store, "ns", "base").unwrap();
    assert_eq!(
        code(s.remove(&store, "ns", "base").unwrap_err()),
        "NotFound"
    );
    assert!(
        storage::ids(&s.snapshots).unwrap().is_empty(),
        "directories go too"
    );
}

#[test]
fn keys_are_per_namespace_and_ids_are_global() {
    let (_dir, store, s) = setup(Backend::Native);
    s.create(&store, "one", Kind::Active, "k", "", Labels::new())
        .unwrap();
    s.create(&store, "two", Kind::Active, "k", "", Labels::new())
        .unwrap();
    let a = s.get(&store, "one", "k").unwrap().id;
    let b = s.get(&store, "two", "k").unwrap().id;
    assert_ne!(a, b);
    assert_eq!(s.list(&store, "one").unwrap().len(), 1);
}

#[test]
fn native_children_start_as_copies_of_their_parent() {
    let (_dir, store, s) = setup(Backend::Native);
    let m = s
        .create(&store, "ns", Kind::Active, "a", "", Labels::new())
        .unwrap();
    std::fs::write(Path::new(&m[0].source).join("hello"), "hi").unwrap();
    s.commit(&store, "ns", "base", "a", Labels::new()).unwrap();
    let c = s
        .create(&store, "ns", Kind::Active, "c", "base", Labels::new())
        .unwrap();
    let copy = Path::new(&c[0].source).join("hello");
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), "hi");
    std::fs::write(&copy, "changed").unwrap();
    let v = s
        .create(&store, "ns", Kind::View, "v", "base", Labels::new())
        .unwrap();
    let seen = std::fs::read_to_string(Path::new(&v[0].source).join("hello")).unwrap();
    assert_eq!(seen, "hi", "the view is the parent, not the child's copy");
    let (size, inodes) = s.usage(&store, "ns", "c").unwrap();
    assert_eq!(inodes, 2);
    assert!(size > 0);
    assert_eq!(s.usage(&store, "ns", "v").unwrap(), (0, 0));
    s.remove(&store, "ns", "v").unwrap();
    assert!(
        Path::new(&v[0].source).is_dir(),
        "removing the view keeps the parent's files"
    );
}

#[test]
fn update_takes_label_paths_only() {
    let (_dir, store, s) = setup(Backend::Native);
    s.create(
        &store,
        "ns",
        Kind::Active,
        "a",
        "",
        labels(&[("x", "1"), ("y", "2")]),
    )
    .unwrap();
    let mut info = s.stat(&store, "ns", "a").unwrap();
    info.labels = [("x".to_string(), "9".to_string())].into_iter().collect();
    let out = s
        .update(&store, "ns", &info, &["labels.y".to_string()])
        .unwrap();
    assert_eq!(
        out.labels.len(),
        1,
        "y removed, x untouched: {:?}",
        out.labels
    );
    assert_eq!(out.labels["x"], "1");
    let out = s.update(&store, "ns", &info, &[]).unwrap();
    assert_eq!(out.labels["x"], "9");
    let bad = s.update(&store, "ns", &info, &["parent".to_string()]);
    assert_eq!(code(bad.unwrap_err()), "InvalidArgument");
    info.name = "nope".into();
    assert_eq!(
        code(s.update(&store, "ns", &info, &[]).unwrap_err()),
        "NotFound"
    );
}

#[test]
fn list_filters_and_cleanup_keeps_owned_directories() {
    let (_dir, store, s) = setup(Backend::Overlay);
    s.create(
        &store,
        "ns",
        Kind::Active,
        "a",
        "",
        labels(&[("app", "web")]),
    )
    .unwrap();
    s.commit(&store, "ns", "base", "a", Labels::new()).unwrap();
    s.create(
        &store,
        "ns",
        Kind::Active,
        "c",
        "base",
        labels(&[("app", "web")]),
    )
    .unwrap();
    let names = |f: &str| -> Vec<String> {
        s.infos(&store, "ns", &[f.to_string()])
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect()
    };
    assert_eq!(names("kind==committed"), ["base"]);
    assert_eq!(names("parent==base"), ["c"]);
    assert_eq!(names("labels.app==web"), ["c"]);
    assert_eq!(names(""), ["base", "c"]);
    assert_eq!(
        code(s.infos(&store, "ns", &["==".into()]).unwrap_err()),
        "InvalidArgument"
    );

    std::fs::create_dir(s.snapshots.join("999")).unwrap();
    s.cleanup(&store).unwrap();
    let mut ids = storage::ids(&s.snapshots).unwrap();
    ids.sort();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&999));
}
