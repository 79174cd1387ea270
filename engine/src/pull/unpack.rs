//! Unpacking fetched layers into snapshots, as containerd's unpacker: for each layer, the
//! snapshot named by its chain id is prepared on its parent's, the layer applied by the diff
//! service, its uncompressed digest checked against the config's diff id, and the snapshot
//! committed under the chain id; a chain id already there is skipped.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use keel_proto::content::{Info, UpdateRequest};
use keel_proto::diff::ApplyRequest;
use keel_proto::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use keel_proto::types::Descriptor;
use sha2::{Digest, Sha256};
use tonic::Code;

use super::content_writer::Blob;
use super::scope::Scope;
use super::PullError;

/// Where a snapshot is labelled with the chain id it is unpacked for.
const SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";
/// The uncompressed digest of a layer, set on its content once verified.
pub const UNCOMPRESSED: &str = "containerd.io/uncompressed";

/// The chain id of a layer on `parent` (OCI image spec: the diff id alone for the first).
pub fn chain_id(parent: Option<&str>, diff_id: &str) -> String {
    match parent {
        None => diff_id.to_string(),
        Some(parent) => {
            let digest = Sha256::digest(format!("{parent} {diff_id}").as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("sha256:{hex}")
        }
    }
}

/// Unpacks into one snapshotter.
#[derive(Debug)]
pub struct Unpacker<'a> {
    pub scope: &'a Scope,
    pub snapshotter: &'a str,
}

impl Unpacker<'_> {
    /// Whether the snapshot `chain_id` is already there.
    pub async fn exists(&self, chain_id: &str) -> Result<bool, PullError> {
        let request = StatSnapshotRequest {
            snapshotter: self.snapshotter.to_string(),
            key: chain_id.to_string(),
        };
        match self
            .scope
            .snapshots()
            .stat(self.scope.request(request))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(status) => Err(PullError::Containerd {
                what: format!("stat of snapshot {chain_id}"),
                status,
            }),
        }
    }

    /// Unpacks `layer` as snapshot `chain_id` on `parent`; its uncompressed digest must be
    /// `diff_id`. A failure leaves no snapshot behind.
    pub async fn apply(
        &self,
        layer: &Blob,
        parent: Option<&str>,
        chain_id: &str,
        diff_id: &str,
    ) -> Result<(), PullError> {
        let labels: HashMap<String, String> =
            [(SNAPSHOT_REF.to_string(), chain_id.to_string())].into();
        let key = format!("extract-{} {chain_id}", unique());
        let prepare = PrepareSnapshotRequest {
            snapshotter: self.snapshotter.to_string(),
            key: key.clone(),
            parent: parent.unwrap_or_default().to_string(),
            labels: labels.clone(),
        };
        let mounts = match self
            .scope
            .snapshots()
            .prepare(self.scope.request(prepare))
            .await
        {
            Ok(r) => r.into_inner().mounts,
            // Another pull unpacked it meanwhile.
            Err(s) if s.code() == Code::AlreadyExists && self.exists(chain_id).await? => {
                return Ok(())
            }
            Err(status) => return Err(failed(format!("preparing snapshot {key:?}"), status)),
        };
        let applied = self.apply_onto(layer, mounts, diff_id).await;
        let committed = match applied {
            Ok(()) => self.commit(&key, chain_id, labels).await,
            Err(e) => Err(e),
        };
        if committed.is_err() {
            self.remove(&key).await;
        }
        committed?;
        self.label_uncompressed(layer, diff_id).await
    }

    async fn apply_onto(
        &self,
        layer: &Blob,
        mounts: Vec<keel_proto::types::Mount>,
        diff_id: &str,
    ) -> Result<(), PullError> {
        let request = ApplyRequest {
            diff: Some(Descriptor {
                media_type: layer.media_type.clone(),
                digest: layer.digest.clone(),
                size: i64::try_from(layer.size).unwrap_or(i64::MAX),
                annotations: HashMap::new(),
            }),
            mounts,
            payloads: HashMap::new(),
        };
        let applied = self
            .scope
            .diff()
            .apply(self.scope.request(request))
            .await
            .map_err(|s| failed(format!("failed to extract layer {diff_id}"), s))?
            .into_inner()
            .applied
            .map(|d| d.digest)
            .unwrap_or_default();
        if applied != diff_id {
            return Err(PullError::Verify {
                what: layer.digest.clone(),
                message: format!(
                    "wrong diff id calculated on extraction {diff_id:?} (got {applied:?})"
                ),
            });
        }
        Ok(())
    }

    async fn commit(
        &self,
        key: &str,
        chain_id: &str,
        labels: HashMap<String, String>,
    ) -> Result<(), PullError> {
        let request = CommitSnapshotRequest {
            snapshotter: self.snapshotter.to_string(),
            name: chain_id.to_string(),
            key: key.to_string(),
            labels,
        };
        match self
            .scope
            .snapshots()
            .commit(self.scope.request(request))
            .await
        {
            Ok(_) => Ok(()),
            // Committed by another pull meanwhile: ours is not needed.
            Err(s) if s.code() == Code::AlreadyExists => {
                self.remove(key).await;
                Ok(())
            }
            Err(status) => Err(failed(format!("failed to commit snapshot {key}"), status)),
        }
    }

    /// Best effort: a leftover is the collector's once the pull's lease ends.
    async fn remove(&self, key: &str) {
        let request = RemoveSnapshotRequest {
            snapshotter: self.snapshotter.to_string(),
            key: key.to_string(),
        };
        if let Err(e) = self
            .scope
            .snapshots()
            .remove(self.scope.request(request))
            .await
        {
            tracing::warn!("removing extraction snapshot {key:?}: {}", e.message());
        }
    }

    /// Records the verified uncompressed digest on the layer's content, as containerd does.
    async fn label_uncompressed(&self, layer: &Blob, diff_id: &str) -> Result<(), PullError> {
        set_label(self.scope, &layer.digest, UNCOMPRESSED, diff_id).await
    }
}

/// Sets one label of a content record (`labels.<key>` field path: the others stay).
pub async fn set_label(
    scope: &Scope,
    digest: &str,
    key: &str,
    value: &str,
) -> Result<(), PullError> {
    let request = UpdateRequest {
        info: Some(Info {
            digest: digest.to_string(),
            labels: [(key.to_string(), value.to_string())].into(),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec![format!("labels.{key}")],
        }),
    };
    scope
        .content()
        .update(scope.request(request))
        .await
        .map(drop)
        .map_err(|s| failed(format!("labelling {digest}"), s))
}

fn failed(what: String, status: tonic::Status) -> PullError {
    PullError::Containerd { what, status }
}

/// A part of an extraction key no other pull uses at the same time.
fn unique() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", now.as_nanos(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = "sha256:aaaa";
        assert_eq!(chain_id(None, a), a);
        // sha256("sha256:aaaa sha256:bbbb")
        let expected = format!(
            "sha256:{}",
            Sha256::digest(b"sha256:aaaa sha256:bbbb")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        assert_eq!(chain_id(Some(a), "sha256:bbbb"), expected);
    }
}
