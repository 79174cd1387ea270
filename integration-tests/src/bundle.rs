//! `Bundle`: an OCI bundle in its own temp dir: `rootfs/` (busybox) and `config.json`.
//!
//! Dropping it first detaches anything still mounted under it (a runtime bug must not make the
//! cleanup recurse into a host directory), then removes the directory.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::config::Config;
use crate::host;
use crate::rootfs;

/// An OCI bundle on disk.
#[derive(Debug)]
pub struct Bundle {
    dir: TempDir,
}

impl Bundle {
    /// A bundle with a busybox rootfs and `config` as its `config.json`.
    pub fn new(config: &Config) -> Result<Self> {
        let bundle = Self::empty()?;
        write(bundle.path(), config)?;
        Ok(bundle)
    }

    /// A bundle directory with nothing in it.
    pub fn empty() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("keel-bundle-")
            .tempdir()
            .context("creating the bundle temp dir")?;
        Ok(Self { dir })
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `<bundle>/rootfs`.
    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    /// `<bundle>/config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.json")
    }

    /// (Re)writes `config.json`.
    pub fn write_config(&self, config: &Config) -> Result<()> {
        let text =
            serde_json::to_string_pretty(config.spec()).context("serializing config.json")?;
        self.write_raw_config(&text)
    }

    /// Writes `text` as `config.json` verbatim (for malformed-input tests).
    pub fn write_raw_config(&self, text: &str) -> Result<()> {
        fs::write(self.config_path(), text).context("writing config.json")
    }

    /// Writes a file inside the rootfs (parents created) with `mode`.
    pub fn write_rootfs_file(&self, path: &str, text: &str, mode: u32) -> Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let file = self.rootfs().join(path.trim_start_matches('/'));
        if let Some(parent) = file.parent() {
            fs::create_dir_all(parent).with_context(|| format!("mkdir {}", parent.display()))?;
        }
        fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        fs::set_permissions(&file, fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", file.display()))?;
        Ok(file)
    }
}

/// Writes a bundle into `dir` (created if missing): a busybox `rootfs/` and `config.json`.
pub fn write(dir: &Path, config: &Config) -> Result<()> {
    rootfs::build(&dir.join("rootfs"))?;
    let text = serde_json::to_string_pretty(config.spec()).context("serializing config.json")?;
    fs::write(dir.join("config.json"), text).context("writing config.json")
}

impl Drop for Bundle {
    fn drop(&mut self) {
        host::detach_mounts_under(self.path());
    }
}
