//! Reading and checking a bundle's `config.json` before anything is created.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

/// Errors in a bundle or its config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("bundle {0}: {1}")]
    Bundle(PathBuf, std::io::Error),
    #[error("{path}: invalid config: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("rootfs {0} does not exist or is not a directory")]
    MissingRootfs(PathBuf),
    #[error("invalid container id {0:?}: use 1-1024 characters of [A-Za-z0-9_+.-], not starting with '.'")]
    InvalidId(String),
}

pub type Result<T> = std::result::Result<T, ConfigError>;

/// A bundle's config with its absolute paths resolved.
#[derive(Debug)]
pub struct Bundle {
    /// Absolute path of the bundle directory.
    pub dir: PathBuf,
    /// Absolute, symlink-free path of the root filesystem.
    pub rootfs: PathBuf,
    pub spec: Spec,
}

/// Checks a container id the way runc does: it names a directory, so no `/`, no `..`.
pub fn validate_id(id: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.');
    if id.is_empty() || id.len() > 1024 || id.starts_with('.') || !id.chars().all(ok_char) {
        return Err(ConfigError::InvalidId(id.to_string()));
    }
    Ok(())
}

/// Loads `bundle/config.json` and resolves and checks the rootfs.
pub fn load_bundle(bundle: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(bundle).map_err(|e| ConfigError::Bundle(bundle.into(), e))?;
    let path = dir.join("config.json");
    let text = std::fs::read(&path).map_err(|e| ConfigError::Bundle(path.clone(), e))?;
    let mut doc: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            msg: e.to_string(),
        })?;
    // oci-spec 0.10 spells two scheduler flags unlike the spec: rewrite before parsing.
    crate::scheduling::normalize_config_json(&mut doc);
    check_capability_names(&doc, &path)?;
    // Parsed from bytes, not from the Value: one deserializer for the whole crate's oci-spec
    // types keeps ~300 KB of duplicate derive code out of the binary (and of every RSS).
    let normalized = serde_json::to_vec(&doc).map_err(|e| ConfigError::Invalid {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    let spec: Spec = serde_json::from_slice(&normalized).map_err(|e| ConfigError::Invalid {
        path: path.clone(),
        msg: e.to_string(),
    })?;
    check_spec(&spec, &path)?;
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| "rootfs".into());
    let rootfs = resolve_rootfs(&dir, &root)?;
    Ok(Bundle { dir, rootfs, spec })
}

fn resolve_rootfs(dir: &Path, root: &Path) -> Result<PathBuf> {
    let joined = if root.is_absolute() {
        root.to_path_buf()
    } else {
        dir.join(root)
    };
    match std::fs::canonicalize(&joined) {
        Ok(p) if p.is_dir() => Ok(p),
        _ => Err(ConfigError::MissingRootfs(joined)),
    }
}

/// Names every unknown capability plainly (the parser's own message is about enum variants).
fn check_capability_names(doc: &serde_json::Value, path: &Path) -> Result<()> {
    let Some(sets) = doc
        .pointer("/process/capabilities")
        .and_then(|c| c.as_object())
    else {
        return Ok(());
    };
    for (set, names) in sets {
        for name in names
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str())
        {
            if name.parse::<caps::Capability>().is_err() {
                return Err(ConfigError::Invalid {
                    path: path.into(),
                    msg: format!("unknown capability {name:?} in process.capabilities.{set}"),
                });
            }
        }
    }
    Ok(())
}

/// The checks runc makes before it creates anything.
fn check_spec(spec: &Spec, path: &Path) -> Result<()> {
    let invalid = |msg: &str| ConfigError::Invalid {
        path: path.into(),
        msg: msg.into(),
    };
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("process is missing"))?;
    let args = process.args().as_ref().filter(|a| !a.is_empty());
    if args.is_none() {
        return Err(invalid("process.args must not be empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid("process.cwd must be an absolute path"));
    }
    let Some(linux) = spec.linux() else {
        return Err(invalid("linux section is missing"));
    };
    if let Some(sysctls) = linux.sysctl() {
        let namespaces = linux.namespaces().clone().unwrap_or_default();
        crate::sysctl::check(sysctls.keys(), &namespaces).map_err(|e| invalid(&e.to_string()))?;
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            let d = m.destination().display();
            return Err(invalid(&format!("mount destination {d} is not absolute")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1_2.3+x").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b", "x\n"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_id(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn unknown_capability_is_named() {
        let doc = serde_json::json!({"process": {"capabilities": {"ambient": ["CAP_CHOWN", "CAP_NOPE"]}}});
        let err = check_capability_names(&doc, Path::new("c.json")).expect_err("unknown cap");
        assert!(
            err.to_string()
                .contains("\"CAP_NOPE\" in process.capabilities.ambient"),
            "{err}"
        );
        let ok = serde_json::json!({"process": {"capabilities": {"bounding": ["CAP_KILL"]}}});
        assert!(check_capability_names(&ok, Path::new("c.json")).is_ok());
    }

    #[test]
    fn missing_and_malformed() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            load_bundle(dir.path()),
            Err(ConfigError::Bundle(..))
        ));
        std::fs::write(dir.path().join("config.json"), "{not json").expect("write");
        let err = load_bundle(dir.path()).expect_err("malformed");
        assert!(err.to_string().contains("invalid config"), "{err}");
    }
}
