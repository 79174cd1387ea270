//! Unit tests of the namespaced content store.

use std::io::Read;

use keel_proto::content::Info;

use super::*;
use crate::metadata::Store as Metadata;

fn setup() -> (tempfile::TempDir, Metadata, Content) {
    let dir = tempfile::tempdir().unwrap();
    let meta = Metadata::open(&dir.path().join("meta")).unwrap();
    let content = Content::open(&dir.path().join("content")).unwrap();
    (dir, meta, content)
}

fn put(meta: &Metadata, content: &Content, ns: &str, reference: &str, data: &[u8]) -> String {
    let w = content.writer(meta, ns, reference, 0, None, None).unwrap();
    w.write(0, data).unwrap();
    w.commit(meta, data.len() as u64, None, Labels::new())
        .unwrap()
        .as_str()
        .to_string()
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn namespaces_see_their_own_records_of_shared_blobs() {
    let (_dir, meta, content) = setup();
    let digest = put(&meta, &content, "a", "r", b"shared bytes");
    assert_eq!(content.info(&meta, "a", &digest).unwrap().size, 12);
    assert!(matches!(
        content.info(&meta, "b", &digest),
        Err(ContentError::NotFound(_))
    ));
    assert!(matches!(
        content.blob_file(&meta, "b", &digest),
        Err(ContentError::NotFound(_))
    ));
    // b announces the digest: nothing to write, the commit records the blob a stored.
    let w = content
        .writer(&meta, "b", "r", 0, Some(&digest), None)
        .unwrap();
    assert_eq!(w.status().unwrap().offset, 12);
    w.commit(&meta, 12, Some(&digest), Labels::new()).unwrap();
    let mut text = String::new();
    content
        .blob_file(&meta, "b", &digest)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, "shared bytes");
    // Deleting a record leaves the blob (and the other namespace's record).
    content.delete_record(&meta, "a", &digest).unwrap();
    assert!(content.info(&meta, "b", &digest).is_ok());
    assert!(matches!(
        content.delete_record(&meta, "a", &digest),
        Err(ContentError::NotFound(_))
    ));
    assert_eq!(content.records(&meta, "b").unwrap().len(), 1);
    content.remove_blob(&digest).unwrap();
    assert!(matches!(
        content.blob_file(&meta, "b", &digest),
        Err(ContentError::NotFound(_))
    ));
}

#[test]
fn committing_what_the_namespace_has_is_already_exists() {
    let (_dir, meta, content) = setup();
    let digest = put(&meta, &content, "a", "r1", b"x");
    let w = content.writer(&meta, "a", "r2", 0, None, None).unwrap();
    w.write(0, b"x").unwrap();
    assert!(matches!(
        w.commit(&meta, 0, None, Labels::new()),
        Err(ContentError::AlreadyExists(_))
    ));
    assert!(matches!(
        content.writer(&meta, "a", "r3", 0, Some(&digest), None),
        Err(ContentError::AlreadyExists(_))
    ));
    assert!(matches!(
        content.writer(&meta, "a", "", 0, None, None),
        Err(ContentError::InvalidArgument(_))
    ));
}

#[test]
fn a_held_ref_is_unavailable_until_released() {
    let (_dir, meta, content) = setup();
    let w = content.writer(&meta, "a", "r", 0, None, None).unwrap();
    w.write(0, b"abc").unwrap();
    let err = content.writer(&meta, "a", "r", 0, None, None).unwrap_err();
    assert!(
        matches!(&err, ContentError::Unavailable(m) if m.contains("locked")),
        "{err}"
    );
    // The same ref in another namespace is another ingest.
    assert!(content.writer(&meta, "b", "r", 0, None, None).is_ok());
    drop(w);
    let again = content.writer(&meta, "a", "r", 0, None, None).unwrap();
    assert_eq!(again.status().unwrap().offset, 3);
    let refs: Vec<String> = content
        .list_statuses("a", &[])
        .unwrap()
        .into_iter()
        .map(|s| s.reference)
        .collect();
    assert_eq!(refs, ["r"]);
    assert!(content
        .list_statuses("a", &["ref==other".to_string()])
        .unwrap()
        .is_empty());
    content.abort("a", "r").unwrap();
    assert!(matches!(
        content.status("a", "r"),
        Err(ContentError::NotFound(_))
    ));
}

#[test]
fn a_failed_commit_shows_nothing() {
    let (_dir, meta, content) = setup();
    let w = content.writer(&meta, "a", "r", 0, None, None).unwrap();
    w.write(0, b"abc").unwrap();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let err = w.commit(&meta, 0, Some(&wrong), Labels::new()).unwrap_err();
    assert!(matches!(err, ContentError::FailedPrecondition(_)), "{err}");
    let err = w.commit(&meta, 5, None, Labels::new()).unwrap_err();
    assert!(err.to_string().contains("failed size validation"), "{err}");
    let big: Labels = [("k".to_string(), "v".repeat(5000))].into();
    assert!(matches!(
        w.commit(&meta, 0, None, big),
        Err(ContentError::InvalidArgument(_))
    ));
    assert!(content.records(&meta, "a").unwrap().is_empty());
    assert_eq!(content.status("a", "r").unwrap().offset, 3);
}

#[test]
fn update_takes_containerds_field_paths() {
    let (_dir, meta, content) = setup();
    let digest = put(&meta, &content, "a", "r", b"labelled");
    let update = |l: &[(&str, &str)], paths: &[&str]| {
        let info = Info {
            digest: digest.clone(),
            labels: labels(l),
            ..Default::default()
        };
        let paths: Vec<String> = paths.iter().map(ToString::to_string).collect();
        content.update(&meta, "a", info, &paths)
    };
    update(&[("a", "1"), ("b", "2")], &[]).unwrap();
    let info = update(&[("a", "9"), ("c", "3")], &["labels.a"]).unwrap();
    assert_eq!(info.labels, labels(&[("a", "9"), ("b", "2")]));
    let info = update(&[("b", "")], &["labels.b"]).unwrap();
    assert_eq!(info.labels, labels(&[("a", "9")]));
    assert!(matches!(
        update(&[], &["size"]),
        Err(ContentError::InvalidArgument(_))
    ));
    assert_eq!(
        content.info(&meta, "a", &digest).unwrap().labels,
        labels(&[("a", "9")]),
        "a refused update changes nothing"
    );
    let listed = |f: &str| content.list(&meta, "a", &[f.to_string()]).unwrap().len();
    assert_eq!(listed("labels.a==9"), 1);
    assert_eq!(listed("labels.a==1"), 0);
    assert_eq!(listed(&format!("digest=={digest}")), 1);
    assert!(content.list(&meta, "a", &["((".to_string()]).is_err());
}

#[test]
fn leases_get_the_ingest_then_the_content() {
    let (_dir, meta, content) = setup();
    crate::leases::create(&meta, "a", "l1", Labels::new()).unwrap();
    let w = content
        .writer(&meta, "a", "r", 0, None, Some("l1"))
        .unwrap();
    w.write(0, b"leased").unwrap();
    let digest = w.commit(&meta, 0, None, Labels::new()).unwrap();
    let resources = crate::leases::list_resources(&meta, "a", "l1").unwrap();
    let kinds: Vec<(&str, &str)> = resources
        .iter()
        .map(|r| (r.r#type.as_str(), r.id.as_str()))
        .collect();
    assert_eq!(kinds, [("content", digest.as_str()), ("ingests", "r")]);
    assert!(matches!(
        content.writer(&meta, "a", "r2", 0, None, Some("nope")),
        Err(ContentError::NotFound(_))
    ));
    assert!(
        content.list_statuses("a", &[]).unwrap().is_empty(),
        "an unknown lease starts no ingest"
    );
}

#[test]
fn store_file_moves_a_finished_file_in() {
    let (dir, meta, content) = setup();
    let tmp = dir.path().join("content/layer.tmp");
    std::fs::write(&tmp, b"a layer").unwrap();
    let (digest, size) = content
        .store_file(&meta, "a", &tmp, Labels::new(), None)
        .unwrap();
    assert_eq!(size, 7);
    assert!(!tmp.exists());
    assert_eq!(content.info(&meta, "a", &digest).unwrap().size, 7);
    // The same layer again (another diff): kept once, no error.
    std::fs::write(&tmp, b"a layer").unwrap();
    let again = content
        .store_file(&meta, "a", &tmp, Labels::new(), None)
        .unwrap();
    assert_eq!(again, (digest, 7));
    std::fs::write(&tmp, b"other").unwrap();
    assert!(matches!(
        content.store_file(&meta, "a", &tmp, Labels::new(), Some("nope")),
        Err(ContentError::NotFound(_))
    ));
    assert!(tmp.exists(), "a refused file is left to its owner");
}
