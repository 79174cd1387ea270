//! `update`: new cgroup limits for a running container. (Being written.)

use std::path::Path;

use crate::cli::UpdateArgs;
use crate::{Error, Result};

/// Applies the new resources to container `args.id`.
pub fn update(_root: &Path, _args: &UpdateArgs) -> Result<()> {
    Err(Error::sys("update", std::io::ErrorKind::Unsupported))
}
