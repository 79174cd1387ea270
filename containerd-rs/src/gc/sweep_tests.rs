//! The whole collection on a supervisor in a temp dir: what is gathered, kept and removed
//! (records, blob files, snapshot directories), and what an open writer keeps.

use std::path::PathBuf;

use keel_proto::images::Image;
use keel_proto::types::Descriptor;

use crate::images;
use crate::leases;
use crate::metadata::Labels;
use crate::snapshots::Kind;
use crate::supervisor::Supervisor;
use crate::test_support;

const NS: &str = "ns";

fn setup() -> (tempfile::TempDir, Supervisor) {
    let (dir, sup) = test_support::supervisor();
    sup.store.create_namespace(NS, &Labels::new()).unwrap();
    (dir, sup)
}

/// Writes `data` as content of `ns`, under `lease` if given; returns its digest.
fn put(sup: &Supervisor, ns: &str, data: &[u8], lease: Option<&str>, labels: Labels) -> String {
    let reference = format!("ref-{}", data.len());
    let w = sup
        .content
        .writer(&sup.store, ns, &reference, 0, None, lease)
        .unwrap();
    w.write(0, data).unwrap();
    w.commit(&sup.store, data.len() as u64, None, labels)
        .unwrap()
        .as_str()
        .to_string()
}

fn blob_path(dir: &tempfile::TempDir, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    dir.path()
        .join("root/io.containerd.content.v1.content/blobs/sha256")
        .join(hex)
}

fn recorded(sup: &Supervisor, ns: &str, digest: &str) -> bool {
    sup.content.info(&sup.store, ns, digest).is_ok()
}

fn lease(sup: &Supervisor, id: &str, labels: Labels) {
    leases::create(&sup.store, NS, id, labels).unwrap();
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn image(sup: &Supervisor, name: &str, target: &str, labels: Labels) {
    let image = Image {
        name: name.into(),
        labels: labels.into_iter().collect(),
        target: Some(Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: target.into(),
            size: 1,
            annotations: Default::default(),
        }),
        ..Default::default()
    };
    images::create(sup, NS, image).unwrap();
}

#[test]
fn unreferenced_content_goes_with_its_blob_and_leased_content_stays() {
    let (dir, sup) = setup();
    lease(&sup, "l1", Labels::new());
    let loose = put(&sup, NS, b"loose", None, Labels::new());
    let leased = put(&sup, NS, b"leased!", Some("l1"), Labels::new());

    let removed = sup.gc.collect_now(&sup).unwrap();
    assert_eq!((removed.content, removed.blobs), (1, 1));
    assert!(!recorded(&sup, NS, &loose) && !blob_path(&dir, &loose).exists());
    assert!(recorded(&sup, NS, &leased) && blob_path(&dir, &leased).exists());

    leases::delete(&sup.store, NS, "l1").unwrap();
    sup.gc.collect_now(&sup).unwrap();
    assert!(!recorded(&sup, NS, &leased) && !blob_path(&dir, &leased).exists());
}

#[test]
fn an_image_keeps_its_target_and_what_the_labels_reference() {
    let (dir, sup) = setup();
    let layer = put(&sup, NS, b"layer", None, Labels::new());
    let config = put(&sup, NS, b"config", None, Labels::new());
    let refs = labels(&[
        ("containerd.io/gc.ref.content.l.0", layer.as_str()),
        ("containerd.io/gc.ref.content.config", config.as_str()),
    ]);
    let manifest = put(&sup, NS, b"manifest", None, refs);
    let other = put(&sup, NS, b"other", None, Labels::new());
    image(&sup, "img", &manifest, Labels::new());

    sup.gc.collect_now(&sup).unwrap();
    for kept in [&layer, &config, &manifest] {
        assert!(recorded(&sup, NS, kept) && blob_path(&dir, kept).exists());
    }
    assert!(!recorded(&sup, NS, &other));

    images::delete(&sup, NS, "img").unwrap();
    sup.gc.collect_now(&sup).unwrap();
    for gone in [&layer, &config, &manifest] {
        assert!(!recorded(&sup, NS, gone) && !blob_path(&dir, gone).exists());
    }
}

#[test]
fn a_blob_stays_while_another_namespace_records_it() {
    let (dir, sup) = setup();
    sup.store.create_namespace("other", &Labels::new()).unwrap();
    lease(&sup, "l1", Labels::new());
    let digest = put(&sup, NS, b"shared", None, Labels::new());
    leases::create(&sup.store, "other", "keep", Labels::new()).unwrap();
    put(&sup, "other", b"shared", Some("keep"), Labels::new());

    sup.gc.collect_now(&sup).unwrap();
    assert!(!recorded(&sup, NS, &digest));
    assert!(recorded(&sup, "other", &digest) && blob_path(&dir, &digest).exists());
}

#[test]
fn an_open_writer_keeps_the_shared_blob_it_will_record() {
    let (dir, sup) = setup();
    sup.store.create_namespace("other", &Labels::new()).unwrap();
    let digest = put(&sup, "other", b"shared", None, Labels::new());
    // The writer in NS finds the blob shared; then the only record of it goes.
    let w = sup
        .content
        .writer(&sup.store, NS, "late", 6, Some(&digest), None)
        .unwrap();
    sup.gc.collect_now(&sup).unwrap();
    assert!(!recorded(&sup, "other", &digest));
    assert!(blob_path(&dir, &digest).exists(), "the writer's blob went");
    w.commit(&sup.store, 6, Some(&digest), Labels::new())
        .unwrap();
    drop(w);
    assert!(recorded(&sup, NS, &digest));
}

#[test]
fn an_expired_lease_is_removed_with_what_it_held() {
    let (_dir, sup) = setup();
    lease(
        &sup,
        "old",
        labels(&[("containerd.io/gc.expire", "2000-01-01T00:00:00Z")]),
    );
    let digest = put(&sup, NS, b"held", Some("old"), Labels::new());
    let removed = sup.gc.collect_now(&sup).unwrap();
    assert_eq!((removed.leases, removed.content), (1, 1));
    assert!(leases::list(&sup.store, NS, &[]).unwrap().is_empty());
    assert!(!recorded(&sup, NS, &digest));
}

#[test]
fn ingests_stay_for_a_day_or_as_long_as_their_lease() {
    let (_dir, sup) = setup();
    lease(&sup, "l1", Labels::new());
    for (reference, lease) in [("loose", None), ("leased", Some("l1"))] {
        let w = sup
            .content
            .writer(&sup.store, NS, reference, 0, None, lease)
            .unwrap();
        w.write(0, b"part").unwrap();
    }
    sup.gc.collect_now(&sup).unwrap();
    assert_eq!(sup.content.list_statuses(NS, &[]).unwrap().len(), 2);

    leases::delete(&sup.store, NS, "l1").unwrap();
    sup.gc.collect_now(&sup).unwrap();
    let left: Vec<String> = sup
        .content
        .list_statuses(NS, &[])
        .unwrap()
        .into_iter()
        .map(|s| s.reference)
        .collect();
    assert_eq!(left, ["loose"]);
}

#[test]
fn snapshots_go_children_first_and_a_labelled_chain_stays() {
    let (dir, sup) = setup();
    let native = sup.snapshotters.get("native").unwrap();
    let create = |kind, key: &str, parent: &str, labels: Labels| {
        native
            .create(&sup.store, NS, kind, key, parent, labels)
            .unwrap();
    };
    create(Kind::Active, "a", "", Labels::new());
    native
        .commit(&sup.store, NS, "base", "a", Labels::new())
        .unwrap();
    create(Kind::Active, "b", "base", Labels::new());
    native
        .commit(&sup.store, NS, "layer", "b", Labels::new())
        .unwrap();
    create(Kind::Active, "loose", "layer", Labels::new());
    // Content that names the top layer keeps the chain (an image config, as unpacking leaves it).
    let config = put(
        &sup,
        NS,
        b"config",
        None,
        labels(&[("containerd.io/gc.ref.snapshot.native", "layer")]),
    );
    image(&sup, "img", &config, Labels::new());

    let removed = sup.gc.collect_now(&sup).unwrap();
    assert_eq!(removed.snapshots, 1);
    let keys: Vec<String> = native
        .list(&sup.store, NS)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["base", "layer"]);

    images::delete(&sup, NS, "img").unwrap();
    let removed = sup.gc.collect_now(&sup).unwrap();
    assert_eq!(removed.snapshots, 2);
    let dirs = dir
        .path()
        .join("root/io.containerd.snapshotter.v1.native/snapshots");
    assert_eq!(std::fs::read_dir(dirs).unwrap().count(), 0);
}
