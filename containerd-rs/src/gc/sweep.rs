//! Removing what the collector found: records first (content, snapshots children first,
//! ingests, expired leases), then the blob files no namespace records any more, then the
//! snapshot directories no record owns — containerd's metadata sweep followed by its content
//! and snapshotter cleanups.

use std::collections::HashSet;

use crate::leases;
use crate::metadata::MetadataError;
use crate::supervisor::Supervisor;

use super::{Garbage, GcError};

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub content: usize,
    pub snapshots: usize,
    pub ingests: usize,
    pub leases: usize,
    pub blobs: usize,
}

/// Removes `garbage` from `supervisor`'s stores. Something already gone (removed by a client
/// meanwhile) is not an error.
pub fn sweep(supervisor: &Supervisor, garbage: &Garbage) -> Result<Removed, GcError> {
    let store = &supervisor.store;
    let mut removed = Removed::default();
    for (ns, digest) in &garbage.content {
        if gone_or(
            supervisor
                .content
                .delete_record(store, ns, digest)
                .map_err(GcError::from),
        )? {
            removed.content += 1;
        }
    }
    let mut dirty_snapshotters = HashSet::new();
    for (ns, snapshotter, key) in &garbage.snapshots {
        let Some(s) = supervisor.snapshotters.get(snapshotter) else {
            continue;
        };
        if gone_or(s.remove(store, ns, key).map_err(GcError::from))? {
            removed.snapshots += 1;
            dirty_snapshotters.insert(snapshotter.as_str());
        }
    }
    for (ns, reference) in &garbage.ingests {
        if supervisor.content.is_writing(ns, reference) {
            continue; // A client is writing it right now: its next GC decides.
        }
        if gone_or(
            supervisor
                .content
                .abort(ns, reference)
                .map_err(GcError::from),
        )? {
            removed.ingests += 1;
        }
    }
    for (ns, id) in &garbage.expired_leases {
        if gone_or(leases::delete(store, ns, id).map_err(GcError::from))? {
            removed.leases += 1;
        }
    }
    removed.blobs = remove_unrecorded_blobs(supervisor)?;
    for name in dirty_snapshotters {
        if let Some(s) = supervisor.snapshotters.get(name) {
            s.cleanup(store)?;
        }
    }
    Ok(removed)
}

/// Removes the blob files that no namespace records, no ingest expects and no open writer is
/// about to record (containerd's content store cleanup). Returns how many went.
pub fn remove_unrecorded_blobs(supervisor: &Supervisor) -> Result<usize, GcError> {
    let content = &supervisor.content;
    let mut keep: HashSet<String> = content.in_use();
    for (ns, _) in supervisor.store.namespaces()? {
        keep.extend(
            content
                .records(&supervisor.store, &ns)?
                .into_iter()
                .map(|(d, _)| d),
        );
        keep.extend(
            content
                .list_statuses(&ns, &[])?
                .into_iter()
                .filter_map(|s| s.expected.map(|d| d.as_str().to_string())),
        );
    }
    let mut removed = 0;
    for digest in content.blobs()? {
        if !keep.contains(&digest) {
            content.remove_blob(&digest)?;
            tracing::debug!(%digest, "removed content");
            removed += 1;
        }
    }
    Ok(removed)
}

/// Ok(true) if removed, Ok(false) if it was already gone.
fn gone_or(result: Result<(), GcError>) -> Result<bool, GcError> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

fn is_not_found(e: &GcError) -> bool {
    use crate::content::ContentError;
    use crate::snapshots::SnapshotError;
    matches!(
        e,
        GcError::Metadata(MetadataError::NotFound(_))
            | GcError::Lease(leases::LeaseError::Metadata(MetadataError::NotFound(_)))
            | GcError::Content(ContentError::NotFound(_))
            | GcError::Snapshot(SnapshotError::Metadata(MetadataError::NotFound(_)))
    )
}
