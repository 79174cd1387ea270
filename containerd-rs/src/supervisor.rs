//! What every service shares: the settings, the metadata store, the event exchange and the
//! server's stable identity.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::SystemTime;

use keel_proto::prost::{Message, Name};

use crate::config::Config;
use crate::events::{Envelope, Exchange};
use crate::metadata::{MetadataError, Store};
use crate::runtime::Manager;

/// The supervisor's shared state.
#[derive(Debug)]
pub struct Supervisor {
    pub config: Config,
    pub store: Store,
    pub events: Exchange,
    /// The tasks and their shims (the runtime v2 manager).
    pub runtime: Manager,
    /// Stable across restarts (kept in `<root>/uuid`), as containerd's server uuid is.
    pub uuid: String,
    /// The snapshotters (overlayfs where it works, native), under `config.root`.
    pub snapshotters: crate::snapshots::Snapshotters,
    /// The content store, in containerd's layout under the root.
    pub content: crate::content::Content,
    /// The garbage collector's schedule and lock.
    pub gc: crate::gc::Collector,
}

impl Supervisor {
    /// Opens the store under `config.root`.
    pub fn open(config: Config) -> Result<Self, MetadataError> {
        let store = Store::open(&config.root)?;
        let uuid = load_or_create_uuid(&config.root.join("uuid"))
            .map_err(|e| MetadataError::Storage(format!("server uuid: {e}")))?;
        let snapshotters = crate::snapshots::Snapshotters::open(&config.root)
            .map_err(|e| MetadataError::Storage(format!("snapshotters: {e}")))?;
        let content =
            crate::content::Content::open(&config.root.join("io.containerd.content.v1.content"))
                .map_err(|e| MetadataError::Storage(format!("content store: {e}")))?;
        let events = Exchange::new();
        let runtime = Manager::new(&config, events.clone());
        Ok(Self {
            config,
            store,
            events,
            runtime,
            uuid,
            snapshotters,
            content,
            gc: crate::gc::Collector::default(),
        })
    }

    /// Publishes `event` on `topic` in `namespace`.
    pub fn publish<M: Message + Name>(&self, namespace: &str, topic: &str, event: &M) {
        let any = keel_proto::any::pack(event);
        let envelope = Envelope {
            timestamp: SystemTime::now(),
            namespace: namespace.to_string(),
            topic: topic.to_string(),
            type_url: any.type_url,
            payload: any.value,
        };
        if let Err(e) = self.events.publish(envelope) {
            tracing::error!("{e}");
        }
    }
}

fn load_or_create_uuid(path: &Path) -> io::Result<String> {
    match fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut bytes = [0u8; 16];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    // A version 4 UUID.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, &uuid)?;
    fs::rename(&tmp, path)?;
    Ok(uuid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uuid_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uuid");
        let first = load_or_create_uuid(&path).unwrap();
        assert_eq!(first.len(), 36);
        assert_eq!(&first[14..15], "4");
        assert_eq!(load_or_create_uuid(&path).unwrap(), first);
    }
}
