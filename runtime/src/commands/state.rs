//! `state`: the OCI state JSON of one container.

use std::path::Path;

use crate::state::{oci_state_json, StateDir};
use crate::{Error, Result};

/// Prints the state of container `id` as indented JSON, as runc does.
pub fn state(root: &Path, id: &str) -> Result<()> {
    let dir = StateDir::open(root, id)?;
    let st = dir.load()?;
    let json = oci_state_json(&st, dir.status(&st));
    let text = serde_json::to_string_pretty(&json).map_err(|e| Error::sys("state", e))?;
    println!("{text}");
    Ok(())
}
