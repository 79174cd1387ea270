//! Preparing the container's root filesystem inside its mount namespace, then entering it.
//!
//! STUB: interface fixed; implementation being written.

use std::path::Path;

use oci_spec::runtime::Spec;

/// Errors of rootfs preparation.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs: {0}")]
    Setup(String),
}

pub type Result<T> = std::result::Result<T, RootfsError>;

/// Runs in the init process, in its new mount namespace, before hooks and pivot: root
/// propagation, the rootfs bind mount, every `mounts[]` entry, `/dev` (devices, links, ptmx).
pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<()> {
    let _ = (spec, rootfs);
    Ok(())
}

/// Makes `rootfs` the process's `/`: pivot_root, or with `no_pivot` move-mount and chroot.
pub fn enter(rootfs: &Path, no_pivot: bool) -> Result<()> {
    let _ = (rootfs, no_pivot);
    Ok(())
}

/// After entering: `maskedPaths`, `readonlyPaths`, and `root.readonly`.
pub fn finish(spec: &Spec) -> Result<()> {
    let _ = spec;
    Ok(())
}
