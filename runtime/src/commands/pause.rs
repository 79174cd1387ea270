//! `pause` / `resume`: the freezer cgroup. (Being written.)

use std::path::Path;

use crate::{Error, Result};

/// Freezes container `id`.
pub fn pause(_root: &Path, _id: &str) -> Result<()> {
    Err(Error::sys("pause", std::io::ErrorKind::Unsupported))
}

/// Thaws container `id`.
pub fn resume(_root: &Path, _id: &str) -> Result<()> {
    Err(Error::sys("resume", std::io::ErrorKind::Unsupported))
}
