//! Leases: a lease keeps the content, ingests and snapshots it names from garbage collection
//! until it is deleted (or expires, by its `containerd.io/gc.expire` label; the collector reads
//! that). `ctr run` and containerd's client wrap everything they do in one.
//!
//! Schema: one record per lease in the metadata store (see [`crate::metadata`]), kind [`KIND`],
//! id = the lease id, value = [`LeaseRecord`] as JSON:
//!
//! ```text
//! {
//!   "created_at": {"seconds": 1764074076, "nanos": 616229066},
//!   "labels":     {"containerd.io/gc.expire": "2026-11-26T12:34:36Z"},
//!   "resources":  [{"type": "content",            "id": "sha256:<hex>"},
//!                  {"type": "ingests",            "id": "<ingest ref>"},
//!                  {"type": "snapshots/overlayfs", "id": "<snapshot key>"}]
//! }
//! ```
//!
//! `resources` is sorted by type then id (content, ingests, snapshots/<snapshotter>, as
//! containerd lists them) and holds each resource once. The garbage collector takes every
//! resource of every live lease of a namespace as a root ([`records`]). A whole lease is one
//! record, so adding a resource and deleting the lease are each one transaction.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use keel_proto::leases::{Lease, Resource};
use serde::{Deserialize, Serialize};

use crate::filters::{Fields, Filter};
use crate::metadata::{Labels, MetadataError, Store};

/// The metadata kind of lease records.
pub const KIND: &str = "leases";

/// A lease as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub created_at: Timestamp,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub resources: BTreeSet<LeasedResource>,
}

/// When a lease was created, as protobuf's Timestamp counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

/// One resource a lease keeps; ordered by type, then id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LeasedResource {
    /// `content`, `ingests` or `snapshots/<snapshotter>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A digest, an ingest ref or a snapshot key.
    pub id: String,
}

impl LeasedResource {
    /// The snapshotter of a snapshot resource.
    pub fn snapshotter(&self) -> Option<&str> {
        self.kind.strip_prefix("snapshots/")
    }
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A resource type containerd does not know either (NotImplemented on the wire).
    #[error("resource type {0} not supported yet: not implemented")]
    UnknownType(String),
}

pub type Result<T> = std::result::Result<T, LeaseError>;

fn invalid(message: impl fmt::Display) -> LeaseError {
    MetadataError::InvalidArgument(format!("{message}: invalid argument")).into()
}

fn not_found(id: &str) -> LeaseError {
    MetadataError::NotFound(format!("lease {id:?}: not found")).into()
}

fn named(e: MetadataError, id: &str) -> LeaseError {
    match e {
        MetadataError::NotFound(_) => not_found(id),
        MetadataError::AlreadyExists(_) => {
            MetadataError::AlreadyExists(format!("lease {id:?}: already exists")).into()
        }
        other => other.into(),
    }
}

fn storage(id: &str, e: impl fmt::Display) -> MetadataError {
    MetadataError::Storage(format!("lease {id:?}: {e}"))
}

fn decode(id: &str, record: &[u8]) -> std::result::Result<LeaseRecord, MetadataError> {
    serde_json::from_slice(record).map_err(|e| storage(id, format!("record does not decode: {e}")))
}

fn encode(id: &str, record: &LeaseRecord) -> std::result::Result<Vec<u8>, MetadataError> {
    serde_json::to_vec(record).map_err(|e| storage(id, e))
}

fn to_proto(id: String, record: LeaseRecord) -> Lease {
    Lease {
        id,
        created_at: Some(prost_types::Timestamp {
            seconds: record.created_at.seconds,
            nanos: record.created_at.nanos,
        }),
        labels: record.labels.into_iter().collect(),
    }
}

/// containerd's `leases.WithRandomID`: the nanoseconds of now and three random bytes,
/// URL-safe base64 (`699282397-Bvoo`).
fn random_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut bytes = [0u8; 3];
    if let Err(e) = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
    {
        // The clock's nanoseconds still make a collision unlikely; Create reports one.
        tracing::warn!("reading /dev/urandom: {e}");
    }
    const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let n = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
    let suffix: String = [18, 12, 6, 0]
        .iter()
        .map(|shift| char::from(URL_SAFE[((n >> shift) & 63) as usize]))
        .collect();
    format!("{}-{suffix}", now.subsec_nanos())
}

/// Creates a lease with `id` (a random one if empty) and `labels`.
pub fn create(store: &Store, namespace: &str, id: &str, labels: Labels) -> Result<Lease> {
    let id = if id.is_empty() {
        random_id()
    } else {
        id.to_string()
    };
    if id.contains('\0') {
        return Err(invalid(format!("lease id {id:?} contains a NUL byte")));
    }
    let now = prost_types::Timestamp::from(SystemTime::now());
    let record = LeaseRecord {
        created_at: Timestamp {
            seconds: now.seconds,
            nanos: now.nanos,
        },
        labels: labels.into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        resources: BTreeSet::new(),
    };
    store
        .create(namespace, KIND, &id, &encode(&id, &record)?)
        .map_err(|e| named(e, &id))?;
    tracing::debug!(namespace, lease = %id, "lease created");
    Ok(to_proto(id, record))
}

/// Ends a lease; what only it kept becomes collectable.
pub fn delete(store: &Store, namespace: &str, id: &str) -> Result<()> {
    store
        .delete(namespace, KIND, id)
        .map_err(|e| named(e, id))?;
    tracing::debug!(namespace, lease = %id, "lease deleted");
    Ok(())
}

/// The leases of `namespace` that pass any of `filters` (all of them if none).
pub fn list(store: &Store, namespace: &str, filters: &[String]) -> Result<Vec<Lease>> {
    let filter = Filter::parse_all(filters).map_err(invalid)?;
    Ok(records(store, namespace)?
        .into_iter()
        .map(|(id, record)| to_proto(id, record))
        .filter(|lease| filter.matches(lease))
        .collect())
}

/// Every lease of `namespace` with what it keeps: the garbage collector's roots.
pub fn records(store: &Store, namespace: &str) -> Result<Vec<(String, LeaseRecord)>> {
    store
        .list(namespace, KIND)?
        .into_iter()
        .map(|(id, record)| Ok((id.clone(), decode(&id, &record)?)))
        .collect()
}

/// containerd's `parseLeaseResource`: `content` (the id must be a digest), `ingests`, or
/// `snapshots/<snapshotter>`; a malformed type is InvalidArgument, an unknown one
/// NotImplemented.
pub fn parse_resource(resource: &Resource) -> Result<LeasedResource> {
    let kind = resource.r#type.as_str();
    let parts: Vec<&str> = kind.split('/').collect();
    match parts[..] {
        ["content"] => {
            validate_digest(&resource.id).map_err(|e| {
                invalid(format!("invalid content resource id {}: {e}", resource.id))
            })?;
        }
        ["ingests"] => {}
        ["content" | "ingests", ..] => {
            return Err(invalid(format!("invalid resource type {kind}")))
        }
        ["snapshots", name] if !name.is_empty() => {}
        ["snapshots", ..] => return Err(invalid(format!("invalid snapshot resource type {kind}"))),
        _ => return Err(LeaseError::UnknownType(kind.to_string())),
    }
    if resource.id.is_empty() || resource.id.contains('\0') {
        return Err(invalid(format!(
            "resource id {:?} must be non-empty without NUL bytes",
            resource.id
        )));
    }
    Ok(LeasedResource {
        kind: kind.to_string(),
        id: resource.id.clone(),
    })
}

/// go-digest's `Digest.Validate` for the algorithms containerd has: `sha256:<64 hex>`,
/// `sha384:<96 hex>`, `sha512:<128 hex>`, lowercase.
fn validate_digest(digest: &str) -> std::result::Result<(), &'static str> {
    let Some((algorithm, hex)) = digest
        .split_once(':')
        .filter(|(a, h)| !a.is_empty() && !h.is_empty())
    else {
        return Err("invalid checksum digest format");
    };
    let length = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm"),
    };
    if hex.len() != length {
        return Err("invalid checksum digest length");
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("invalid checksum digest format");
    }
    Ok(())
}

/// Rewrites lease `id` with `change`, in one transaction.
fn change(
    store: &Store,
    namespace: &str,
    id: &str,
    change: impl FnOnce(&mut LeaseRecord),
) -> Result<()> {
    store
        .update(namespace, KIND, id, |old| {
            let mut record = decode(id, &old)?;
            change(&mut record);
            encode(id, &record)
        })
        .map_err(|e| named(e, id))?;
    Ok(())
}

/// Makes lease `id` keep `resource` (again: nothing changes).
pub fn add_resource(store: &Store, namespace: &str, id: &str, resource: &Resource) -> Result<()> {
    // containerd looks the lease up before it parses the resource.
    lease_exists(store, namespace, id)?;
    let resource = parse_resource(resource)?;
    change(store, namespace, id, |r| {
        r.resources.insert(resource);
    })
}

/// Makes lease `id` stop keeping `resource` (one it does not keep is no error).
pub fn delete_resource(
    store: &Store,
    namespace: &str,
    id: &str,
    resource: &Resource,
) -> Result<()> {
    lease_exists(store, namespace, id)?;
    let resource = parse_resource(resource)?;
    change(store, namespace, id, |r| {
        r.resources.remove(&resource);
    })
}

/// What lease `id` keeps.
pub fn list_resources(store: &Store, namespace: &str, id: &str) -> Result<Vec<Resource>> {
    let record = store.get(namespace, KIND, id).map_err(|e| named(e, id))?;
    Ok(decode(id, &record)?
        .resources
        .into_iter()
        .map(|r| Resource {
            id: r.id,
            r#type: r.kind,
        })
        .collect())
}

fn lease_exists(store: &Store, namespace: &str, id: &str) -> Result<()> {
    store.get(namespace, KIND, id).map_err(|e| named(e, id))?;
    Ok(())
}

/// containerd's lease adaptor: `id` and `labels.<key>`.
impl Fields for Lease {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [f] if f == "id" => (!self.id.is_empty()).then(|| self.id.clone()),
            [f, key @ ..] if f == "labels" && !key.is_empty() => {
                self.labels.get(&key.join(".")).cloned()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn resource(kind: &str, id: &str) -> Resource {
        Resource {
            id: id.into(),
            r#type: kind.into(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const DIGEST: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn random_ids_look_like_containerds() {
        let re = regex::Regex::new("^[0-9]{1,9}-[A-Za-z0-9_-]{4}$").unwrap();
        let a = random_id();
        assert!(re.is_match(&a), "{a}");
        assert_ne!(a, random_id());
    }

    #[test]
    fn lifecycle() {
        let (_dir, s) = store();
        let lease = create(&s, "ns", "l1", labels(&[("a", "1"), ("empty", "")])).unwrap();
        assert_eq!(lease.id, "l1");
        assert!(lease.created_at.is_some());
        assert_eq!(lease.labels.len(), 1, "empty label values are not kept");
        let random = create(&s, "ns", "", Labels::new()).unwrap();
        assert!(!random.id.is_empty());
        let err = create(&s, "ns", "l1", Labels::new()).unwrap_err();
        assert!(
            matches!(&err, LeaseError::Metadata(MetadataError::AlreadyExists(m)) if m == "lease \"l1\": already exists"),
            "{err}"
        );
        create(&s, "other", "l1", Labels::new()).unwrap();

        let ids = |filters: &[&str]| -> Vec<String> {
            let filters: Vec<String> = filters.iter().map(ToString::to_string).collect();
            let mut ids: Vec<String> = list(&s, "ns", &filters)
                .unwrap()
                .into_iter()
                .map(|l| l.id)
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&[]).len(), 2);
        assert_eq!(ids(&["id==l1"]), ["l1"]);
        assert_eq!(ids(&["labels.a==1"]), ["l1"]);
        assert_eq!(ids(&["labels.a==2"]), Vec::<String>::new());
        assert!(matches!(
            list(&s, "ns", &["labels.a=1".to_string()]),
            Err(LeaseError::Metadata(MetadataError::InvalidArgument(_)))
        ));

        delete(&s, "ns", "l1").unwrap();
        let err = delete(&s, "ns", "l1").unwrap_err();
        assert!(
            matches!(&err, LeaseError::Metadata(MetadataError::NotFound(m)) if m == "lease \"l1\": not found"),
            "{err}"
        );
        assert_eq!(ids(&[]), [random.id]);
        assert_eq!(list(&s, "other", &[]).unwrap().len(), 1, "per namespace");
    }

    #[test]
    fn resources() {
        let (_dir, s) = store();
        create(&s, "ns", "l", Labels::new()).unwrap();
        for r in [
            resource("snapshots/overlayfs", "k2"),
            resource("snapshots/native", "k1"),
            resource("ingests", "ref-1"),
            resource("content", DIGEST),
            resource("snapshots/overlayfs", "k1"),
            resource("content", DIGEST),
        ] {
            add_resource(&s, "ns", "l", &r).unwrap();
        }
        let listed: Vec<(String, String)> = list_resources(&s, "ns", "l")
            .unwrap()
            .into_iter()
            .map(|r| (r.r#type, r.id))
            .collect();
        let expected = [
            ("content", DIGEST),
            ("ingests", "ref-1"),
            ("snapshots/native", "k1"),
            ("snapshots/overlayfs", "k1"),
            ("snapshots/overlayfs", "k2"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(t, i)| (t.to_string(), i.to_string()))
            .collect();
        assert_eq!(
            listed, expected,
            "sorted as containerd lists them, no duplicates"
        );

        delete_resource(&s, "ns", "l", &resource("snapshots/overlayfs", "k1")).unwrap();
        delete_resource(&s, "ns", "l", &resource("snapshots/overlayfs", "absent")).unwrap();
        assert_eq!(list_resources(&s, "ns", "l").unwrap().len(), 4);

        let (_, record) = records(&s, "ns").unwrap().remove(0);
        assert!(record
            .resources
            .iter()
            .any(|r| r.snapshotter() == Some("overlayfs") && r.id == "k2"));

        for call in [
            add_resource(&s, "ns", "nope", &resource("ingests", "x")),
            delete_resource(&s, "ns", "nope", &resource("ingests", "x")),
            list_resources(&s, "ns", "nope").map(|_| ()),
        ] {
            assert!(matches!(
                call,
                Err(LeaseError::Metadata(MetadataError::NotFound(m))) if m == "lease \"nope\": not found"
            ));
        }
    }

    #[test]
    fn resource_types_as_containerd_parses_them() {
        let invalid = |r: Resource| match parse_resource(&r) {
            Err(LeaseError::Metadata(MetadataError::InvalidArgument(m))) => m,
            other => panic!("{r:?}: expected InvalidArgument, got {other:?}"),
        };
        assert_eq!(
            invalid(resource("content/x", DIGEST)),
            "invalid resource type content/x: invalid argument"
        );
        assert_eq!(
            invalid(resource("snapshots", "k")),
            "invalid snapshot resource type snapshots: invalid argument"
        );
        invalid(resource("snapshots/a/b", "k"));
        invalid(resource("snapshots/", "k"));
        invalid(resource("ingests", ""));
        for (id, why) in [
            ("abc", "invalid checksum digest format"),
            ("md5:abc", "unsupported digest algorithm"),
            ("sha256:abc", "invalid checksum digest length"),
            (
                &DIGEST.to_uppercase().replace("SHA256", "sha256"),
                "invalid checksum digest format",
            ),
        ] {
            assert_eq!(
                invalid(resource("content", id)),
                format!("invalid content resource id {id}: {why}: invalid argument")
            );
        }
        for unknown in ["images", "containers", "", "leases/x"] {
            let err = parse_resource(&resource(unknown, "x")).unwrap_err();
            assert!(
                matches!(err, LeaseError::UnknownType(_)),
                "{unknown}: {err}"
            );
        }
        assert_eq!(
            LeaseError::UnknownType("images".into()).to_string(),
            "resource type images not supported yet: not implemented"
        );
        let (_dir, s) = store();
        create(&s, "ns", "l", Labels::new()).unwrap();
        assert!(add_resource(&s, "ns", "l", &resource("images", "x")).is_err());
        assert!(
            list_resources(&s, "ns", "l").unwrap().is_empty(),
            "nothing added"
        );
    }

    #[test]
    fn records_are_json_in_the_documented_shape() {
        let (_dir, s) = store();
        create(
            &s,
            "ns",
            "l",
            labels(&[("containerd.io/gc.expire", "2026-11-26T12:34:36Z")]),
        )
        .unwrap();
        add_resource(&s, "ns", "l", &resource("snapshots/overlayfs", "key")).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&s.get("ns", KIND, "l").unwrap()).unwrap();
        assert!(json["created_at"]["seconds"].as_i64().unwrap() > 0);
        assert_eq!(
            json["labels"]["containerd.io/gc.expire"],
            "2026-11-26T12:34:36Z"
        );
        assert_eq!(
            json["resources"][0],
            serde_json::json!({"type": "snapshots/overlayfs", "id": "key"})
        );
    }
}
