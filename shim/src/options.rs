//! The runtime options containerd passes with a task (runc's `containerd.runc.v1.Options`):
//! which runc-compatible binary to run and where its state lives. Kept in the bundle as
//! `options.json` so `shim delete` after a crash uses the same binary and root.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use protobuf::rt::WireType;
use protobuf::CodedInputStream;
use serde::{Deserialize, Serialize};

/// The type URLs of runc's options (runtime v2, and the older v1 name).
const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
const LINUX_RUNC_OPTIONS: &str = "containerd.linux.runc.RuncOptions";

/// Env var naming the default runtime binary.
pub const RUNTIME_ENV: &str = "KEEL_SHIM_RUNTIME";

/// The default runtime binary.
pub const DEFAULT_RUNTIME: &str = "keel-runtime";

/// The options that change how the runtime is run.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    #[serde(default)]
    pub binary_name: String,
    #[serde(default)]
    pub root: String,
    #[serde(default)]
    pub systemd_cgroup: bool,
    #[serde(default)]
    pub no_pivot_root: bool,
    #[serde(default)]
    pub no_new_keyring: bool,
}

/// Options that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("malformed runtime options {type_url}: {source}")]
    Malformed {
        type_url: String,
        source: protobuf::Error,
    },
    #[error("{path}: {source}")]
    File { path: PathBuf, source: io::Error },
}

impl Options {
    /// Decodes the options `Any` of a create request; other option types are ignored (as the
    /// runc shim ignores what it does not know).
    pub fn decode(type_url: &str, value: &[u8]) -> Result<Self, OptionsError> {
        let name = type_url.rsplit('/').next().unwrap_or(type_url);
        let malformed = |source| OptionsError::Malformed {
            type_url: type_url.to_string(),
            source,
        };
        match name {
            RUNC_OPTIONS => decode_runc(value).map_err(malformed),
            LINUX_RUNC_OPTIONS => decode_linux_runc(value).map_err(malformed),
            _ => Ok(Self::default()),
        }
    }

    /// The runtime binary: the options', else `$KEEL_SHIM_RUNTIME`, else `keel-runtime`.
    pub fn binary(&self) -> String {
        if !self.binary_name.is_empty() {
            return self.binary_name.clone();
        }
        std::env::var(RUNTIME_ENV)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_RUNTIME.to_string())
    }

    /// The runtime's state root for `namespace`: `<root>/<namespace>`, the root being the
    /// options' or `<state dir>/runtime`.
    pub fn runtime_root(&self, state_dir: &Path, namespace: &str) -> PathBuf {
        let base = if self.root.is_empty() {
            state_dir.join("runtime")
        } else {
            PathBuf::from(&self.root)
        };
        base.join(namespace)
    }

    /// Writes `bundle/options.json`.
    pub fn save(&self, bundle: &Path) -> Result<(), OptionsError> {
        let path = bundle.join("options.json");
        let text = serde_json::to_vec(self).map_err(io::Error::other);
        text.and_then(|t| fs::write(&path, t))
            .map_err(|source| OptionsError::File { path, source })
    }

    /// Reads `bundle/options.json`; defaults when there is none.
    pub fn load(bundle: &Path) -> Result<Self, OptionsError> {
        let path = bundle.join("options.json");
        match fs::read(&path) {
            Ok(text) => serde_json::from_slice(&text).map_err(|e| OptionsError::File {
                path,
                source: io::Error::other(e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(OptionsError::File { path, source }),
        }
    }
}

/// `containerd.runc.v1.Options`: 1 no_pivot_root, 2 no_new_keyring, 6 binary_name, 7 root,
/// 9 systemd_cgroup (the others are for checkpointing and the shim's own cgroup).
fn decode_runc(value: &[u8]) -> protobuf::Result<Options> {
    let mut opts = Options::default();
    let mut input = CodedInputStream::from_bytes(value);
    while let Some(tag) = input.read_raw_tag_or_eof()? {
        match (tag >> 3, tag & 7) {
            (1, 0) => opts.no_pivot_root = input.read_bool()?,
            (2, 0) => opts.no_new_keyring = input.read_bool()?,
            (6, 2) => opts.binary_name = input.read_string()?,
            (7, 2) => opts.root = input.read_string()?,
            (9, 0) => opts.systemd_cgroup = input.read_bool()?,
            (_, wire) => skip(&mut input, wire)?,
        }
    }
    Ok(opts)
}

/// `containerd.linux.runc.RuncOptions`: 1 runtime (binary), 2 runtime_root, 4 systemd_cgroup.
fn decode_linux_runc(value: &[u8]) -> protobuf::Result<Options> {
    let mut opts = Options::default();
    let mut input = CodedInputStream::from_bytes(value);
    while let Some(tag) = input.read_raw_tag_or_eof()? {
        match (tag >> 3, tag & 7) {
            (1, 2) => opts.binary_name = input.read_string()?,
            (2, 2) => opts.root = input.read_string()?,
            (4, 0) => opts.systemd_cgroup = input.read_bool()?,
            (_, wire) => skip(&mut input, wire)?,
        }
    }
    Ok(opts)
}

fn skip(input: &mut CodedInputStream, wire: u32) -> protobuf::Result<()> {
    let wire = WireType::new(wire).ok_or_else(|| {
        protobuf::Error::from(io::Error::new(
            io::ErrorKind::InvalidData,
            "unknown wire type",
        ))
    })?;
    input.skip_field(wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Field 6 "runc", field 7 "/r", field 9 true, and an unknown field 3 "x".
    const RUNC_BYTES: &[u8] = &[
        0x32, 4, b'r', b'u', b'n', b'c', 0x3a, 2, b'/', b'r', 0x48, 1, 0x1a, 1, b'x',
    ];

    #[test]
    fn decodes_runc_options() {
        let opts = Options::decode("containerd.runc.v1.Options", RUNC_BYTES).unwrap();
        assert_eq!(opts.binary_name, "runc");
        assert_eq!(opts.root, "/r");
        assert!(opts.systemd_cgroup);
        assert_eq!(
            opts.runtime_root(Path::new("/s"), "ns"),
            PathBuf::from("/r/ns")
        );
    }

    #[test]
    fn other_types_and_empty_are_defaults() {
        assert_eq!(Options::decode("x.Y", b"\xff").unwrap(), Options::default());
        let opts = Options::decode("containerd.runc.v1.Options", b"").unwrap();
        assert_eq!(
            opts.runtime_root(Path::new("/s"), "ns"),
            PathBuf::from("/s/runtime/ns")
        );
    }

    #[test]
    fn truncated_options_are_refused() {
        assert!(Options::decode("containerd.runc.v1.Options", &RUNC_BYTES[..4]).is_err());
    }

    #[test]
    fn saved_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Options::load(dir.path()).unwrap(), Options::default());
        let opts = Options::decode("containerd.runc.v1.Options", RUNC_BYTES).unwrap();
        opts.save(dir.path()).unwrap();
        assert_eq!(Options::load(dir.path()).unwrap(), opts);
    }
}
