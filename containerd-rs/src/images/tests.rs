use super::*;
use keel_proto::types::Descriptor;

use crate::test_support::supervisor;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn image(name: &str) -> Image {
    Image {
        name: name.into(),
        labels: [("app".to_string(), "web".to_string())].into(),
        target: Some(Descriptor {
            media_type: INDEX.into(),
            digest: digest('a'),
            size: 100,
            annotations: [("org.opencontainers.image.ref.name".into(), "1".into())].into(),
        }),
        ..Default::default()
    }
}

fn invalid_message(r: Result<Image>) -> String {
    match r {
        Err(MetadataError::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

fn strings(p: &[&str]) -> Vec<String> {
    p.iter().map(ToString::to_string).collect()
}

#[test]
fn create_validates_as_containerd_does() {
    let (_dir, s) = supervisor();
    type Change = fn(&mut Image);
    let cases: [(&str, Change); 7] = [
        ("Image.Name required", |i| i.name.clear()),
        (
            "Target.Digest \"\" invalid: invalid checksum digest format: invalid argument",
            |i| i.target = None,
        ),
        (
            "Target.Digest \"sha256:ab\" invalid: invalid checksum digest length: invalid argument",
            |i| {
                if let Some(t) = i.target.as_mut() {
                    t.digest = "sha256:ab".into();
                }
            },
        ),
        (
            "Target.Size must be greater than zero: invalid argument",
            |i| {
                if let Some(t) = i.target.as_mut() {
                    t.size = 0;
                }
            },
        ),
        ("Target.MediaType must be set: invalid argument", |i| {
            if let Some(t) = i.target.as_mut() {
                t.media_type.clear();
            }
        }),
        (
            "image.Labels: label key and value greater than maximum size (4096 bytes), \
             key: aaaaaaaaaa: invalid argument",
            |i| {
                i.labels.insert("a".repeat(4000), "b".repeat(100));
            },
        ),
        ("image name must not contain NUL: invalid argument", |i| {
            i.name = "a\0b".into()
        }),
    ];
    for (expected, change) in cases {
        let mut i = image("docker.io/library/busybox:latest");
        change(&mut i);
        assert_eq!(invalid_message(create(&s, "ns", i)), expected);
    }
    assert!(
        s.store.list("ns", KIND).unwrap().is_empty(),
        "nothing stored"
    );
}

#[test]
fn names_are_not_over_restricted() {
    let (_dir, s) = supervisor();
    for name in [
        "docker.io/library/busybox:latest",
        &format!("localhost:5000/x@{}", digest('b')),
        "busybox",
        "Not A Reference!",
    ] {
        create(&s, "ns", image(name)).unwrap();
        assert_eq!(get(&s, "ns", name).unwrap().name, name);
    }
}

#[test]
fn filters_see_containerds_fields() {
    let i = image("docker.io/library/busybox:latest");
    let passes = |f: &str| Filter::parse_all(&[f]).unwrap().matches(&i);
    for yes in [
        "name==docker.io/library/busybox:latest",
        "name~=busybox",
        &format!("target.digest=={}", digest('a')),
        &format!("target.mediatype=={INDEX}"),
        "labels.app==web",
        "labels.app",
        "annotations.org.opencontainers.image.ref.name==1",
    ] {
        assert!(passes(yes), "{yes}");
    }
    for no in [
        "name==busybox",
        "labels.app==db",
        "target",
        "target.size",
        "labels",
        "size",
    ] {
        assert!(!passes(no), "{no}");
    }
}

#[test]
fn lifecycle_with_events() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (_dir, s) = supervisor();
    let mut events = s.events.subscribe(Filter::default());
    let mut first = image("a:1");
    first.labels.insert("empty".into(), String::new());
    let created = create(&s, "ns", first).unwrap();
    assert!(
        !created.labels.contains_key("empty"),
        "empty labels are not stored"
    );
    assert!(created.created_at.is_some());
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(get(&s, "ns", "a:1").unwrap(), created);
    assert!(matches!(
        create(&s, "ns", image("a:1")),
        Err(MetadataError::AlreadyExists(m)) if m == "image \"a:1\": already exists"
    ));
    let mut second = image("b:1");
    second.labels.clear();
    if let Some(t) = second.target.as_mut() {
        t.digest = digest('b');
    }
    create(&s, "ns", second).unwrap();
    create(&s, "other", image("c:1")).unwrap();
    let names = |filters: &[&str]| -> Vec<String> {
        list(&s, "ns", &strings(filters))
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect()
    };
    assert_eq!(names(&[]), ["a:1", "b:1"]);
    assert_eq!(names(&["labels.app==web"]), ["a:1"]);
    assert_eq!(
        names(&[&format!("target.digest=={}", digest('b'))]),
        ["b:1"]
    );
    assert_eq!(names(&["name==b:1", "name==a:1"]), ["a:1", "b:1"]);
    assert!(matches!(
        list(&s, "ns", &strings(&["name="])),
        Err(MetadataError::InvalidArgument(_))
    ));

    let mut given = Image {
        name: "a:1".into(),
        ..Default::default()
    };
    given.labels.insert("k".into(), "v".into());
    let updated = update(&s, "ns", given.clone(), &strings(&["labels.k"])).unwrap();
    assert_eq!(updated.labels.get("k").map(String::as_str), Some("v"));
    assert_eq!(updated.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(get(&s, "ns", "a:1").unwrap(), updated);
    let removed = update(
        &s,
        "ns",
        Image {
            name: "a:1".into(),
            ..Default::default()
        },
        &strings(&["labels.k"]),
    )
    .unwrap();
    assert!(
        !removed.labels.contains_key("k"),
        "an absent value removes the label"
    );

    let before = get(&s, "ns", "a:1").unwrap();
    let no_target = update(&s, "ns", given.clone(), &strings(&["target"]));
    assert!(invalid_message(no_target).starts_with("Target.Digest \"\" invalid"));
    let no_mask = update(&s, "ns", given.clone(), &[]);
    assert!(
        invalid_message(no_mask).starts_with("Target.Digest"),
        "no mask replaces the target too"
    );
    assert_eq!(
        get(&s, "ns", "a:1").unwrap(),
        before,
        "a refused update changes nothing"
    );
    assert_eq!(
        invalid_message(update(&s, "ns", Image::default(), &[])),
        "Image.Name required"
    );
    given.name = "nope".into();
    assert!(matches!(
        update(&s, "ns", given, &strings(&["labels.k"])),
        Err(MetadataError::NotFound(m)) if m == "image \"nope\": not found"
    ));

    delete(&s, "ns", "a:1").unwrap();
    for r in [get(&s, "ns", "a:1").map(|_| ()), delete(&s, "ns", "a:1")] {
        assert!(matches!(r, Err(MetadataError::NotFound(m)) if m == "image \"a:1\": not found"));
    }

    s.publish("ns", "/marker", &ImageDelete::default());
    rt.block_on(async {
        let mut seen = Vec::new();
        loop {
            let e = events.next().await.unwrap();
            if e.topic == "/marker" {
                break;
            }
            if e.topic == topics::IMAGE_UPDATE && seen.len() == 3 {
                assert_eq!(e.type_url, "containerd.services.images.v1.ImageUpdate");
                let u = ImageUpdate::decode(e.payload.as_slice()).unwrap();
                assert_eq!(u.labels.get("k").map(String::as_str), Some("v"));
            }
            seen.push(format!("{} {}", e.namespace, e.topic));
        }
        assert_eq!(
            seen,
            [
                "ns /images/create",
                "ns /images/create",
                "other /images/create",
                "ns /images/update",
                "ns /images/update",
                "ns /images/delete",
            ]
        );
    });
}
