//! `events`: resource usage (`--stats` once, or every `--interval`) and OOM events, as JSON lines.
//! (Being written.)

use std::path::Path;

use crate::cli::EventsArgs;
use crate::{Error, Result};

/// Prints the events of container `args.id`.
pub fn events(_root: &Path, _args: &EventsArgs) -> Result<()> {
    Err(Error::sys("events", std::io::ErrorKind::Unsupported))
}
