//! `features`: the runtime-spec features document. (Being written.)

use crate::{Error, Result};

/// Prints the features JSON.
pub fn features() -> Result<()> {
    Err(Error::sys("features", std::io::ErrorKind::Unsupported))
}
