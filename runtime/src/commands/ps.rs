//! `ps`: the processes of a container's cgroup. (Being written.)

use std::path::Path;

use crate::cli::PsArgs;
use crate::{Error, Result};

/// Prints the processes of container `args.id`.
pub fn ps(_root: &Path, _args: &PsArgs) -> Result<()> {
    Err(Error::sys("ps", std::io::ErrorKind::Unsupported))
}
