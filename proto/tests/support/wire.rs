//! Helpers the wire-compatibility tests share: the round trip through containerd-client's
//! types, and sample values.

use std::collections::HashMap;
use std::fmt::Debug;

use keel_proto as ours;
use prost::Message;
use prost_types::{Any, Timestamp};

/// Our message → their type → our message; returns their decoded value for spot checks.
pub fn through_theirs<O, T>(original: &O) -> T
where
    O: Message + Default + PartialEq + Debug,
    T: Message + Default,
{
    let theirs = T::decode(original.encode_to_vec().as_slice())
        .expect("containerd's type decodes our bytes");
    let back =
        O::decode(theirs.encode_to_vec().as_slice()).expect("our type decodes containerd's bytes");
    assert_eq!(&back, original, "a field did not survive containerd's type");
    theirs
}

/// [`through_theirs`], and both sides print the same fields with the same values.
pub fn same_both_ways<O, T>(original: &O) -> T
where
    O: Message + Default + PartialEq + Debug,
    T: Message + Default + Debug,
{
    let theirs: T = through_theirs(original);
    assert_eq!(format!("{theirs:?}"), format!("{original:?}"));
    theirs
}

pub fn map(key: &str, value: &str) -> HashMap<String, String> {
    HashMap::from([(key.to_owned(), value.to_owned())])
}

pub fn any(type_url: &str, value: &[u8]) -> Any {
    Any {
        type_url: type_url.to_owned(),
        value: value.to_vec(),
    }
}

pub fn time(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 7 })
}

pub fn mount() -> ours::types::Mount {
    ours::types::Mount {
        r#type: "overlay".into(),
        source: "overlay".into(),
        target: "/".into(),
        options: vec![
            "lowerdir=/a:/b".into(),
            "upperdir=/u".into(),
            "workdir=/w".into(),
        ],
    }
}

pub fn descriptor() -> ours::types::Descriptor {
    ours::types::Descriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: "sha256:0123".into(),
        size: 4096,
        annotations: map("org.opencontainers.image.ref.name", "latest"),
    }
}
