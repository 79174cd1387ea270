//! A snapshot as the metadata store keeps it (JSON), and what filters see of it.

use std::time::SystemTime;

use keel_proto::snapshots::{Info, Kind as ProtoKind};
use serde::{Deserialize, Serialize};

use crate::filters::Fields;
use crate::leases::Timestamp;
use crate::metadata::{Labels, MetadataError};

/// What a snapshot is: writable (Prepare), read-only (View) or a parent (Commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Active,
    View,
    Committed,
}

impl Kind {
    /// The name filters compare (`kind==committed`), as containerd spells it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
        }
    }

    fn to_proto(self) -> ProtoKind {
        match self {
            Kind::Active => ProtoKind::Active,
            Kind::View => ProtoKind::View,
            Kind::Committed => ProtoKind::Committed,
        }
    }
}

/// One snapshot of one namespace; the key is the record's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// The snapshotter-wide directory name (`snapshots/<id>`), shared by no other namespace.
    pub id: u64,
    pub kind: Kind,
    /// The parent's key in the same namespace; empty for none.
    #[serde(default)]
    pub parent: String,
    #[serde(default)]
    pub labels: Labels,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A timestamp for now.
pub fn now() -> Timestamp {
    let t = prost_types::Timestamp::from(SystemTime::now());
    Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    }
}

fn proto_time(t: Timestamp) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.seconds,
        nanos: t.nanos,
    }
}

impl SnapshotRecord {
    /// The wire form of this record under `name`.
    pub fn info(&self, name: &str) -> Info {
        Info {
            name: name.to_string(),
            parent: self.parent.clone(),
            kind: self.kind.to_proto() as i32,
            created_at: Some(proto_time(self.created_at)),
            updated_at: Some(proto_time(self.updated_at)),
            labels: self.labels.clone().into_iter().collect(),
        }
    }

    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, MetadataError> {
        serde_json::from_slice(bytes).map_err(|e| {
            MetadataError::Storage(format!("snapshot {key:?}: record does not decode: {e}"))
        })
    }

    pub fn encode(&self, key: &str) -> Result<Vec<u8>, MetadataError> {
        serde_json::to_vec(self)
            .map_err(|e| MetadataError::Storage(format!("snapshot {key:?}: {e}")))
    }
}

/// A record with its key, as filters look at it (containerd's snapshot adaptor: `name`,
/// `parent`, `kind`, `labels.<k>`).
pub struct Named<'a> {
    pub key: &'a str,
    pub record: &'a SnapshotRecord,
}

impl Fields for Named<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        let present = |v: &str| (!v.is_empty()).then(|| v.to_string());
        match path {
            [f] if f == "name" => present(self.key),
            [f] if f == "parent" => present(&self.record.parent),
            [f] if f == "kind" => Some(self.record.kind.name().to_string()),
            [f, key @ ..] if f == "labels" && !key.is_empty() => {
                self.record.labels.get(&key.join(".")).cloned()
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filters::Filter;

    fn record(kind: Kind, parent: &str) -> SnapshotRecord {
        SnapshotRecord {
            id: 7,
            kind,
            parent: parent.to_string(),
            labels: [("a.b".to_string(), "x".to_string())].into_iter().collect(),
            created_at: now(),
            updated_at: now(),
        }
    }

    #[test]
    fn round_trips_as_json() {
        let r = record(Kind::Committed, "base");
        let bytes = r.encode("k").unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains("\"committed\""));
        assert_eq!(SnapshotRecord::decode("k", &bytes).unwrap(), r);
        assert!(SnapshotRecord::decode("k", b"{").is_err());
    }

    #[test]
    fn filters_see_name_parent_kind_and_labels() {
        let r = record(Kind::Active, "base");
        let named = Named {
            key: "k1",
            record: &r,
        };
        let matches = |f: &str| Filter::parse_all(&[f]).unwrap().matches(&named);
        assert!(matches("name==k1"));
        assert!(matches("parent==base"));
        assert!(matches("kind==active"));
        assert!(!matches("kind==committed"));
        assert!(matches("labels.\"a.b\"==x"));
        let orphan = record(Kind::View, "");
        let named = Named {
            key: "k2",
            record: &orphan,
        };
        assert!(!Filter::parse_all(&["parent"]).unwrap().matches(&named));
    }

    #[test]
    fn info_carries_the_kind() {
        let info = record(Kind::View, "p").info("v");
        assert_eq!(info.kind, ProtoKind::View as i32);
        assert_eq!(info.parent, "p");
        assert_eq!(info.labels.get("a.b").map(String::as_str), Some("x"));
    }
}
