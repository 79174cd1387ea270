//! `run`: create and start, then (unless `--detach`) stay as the container's reaper, forward
//! signals to its init, copy its terminal, and exit with its status (128+n if killed by n).

use std::path::Path;

use crate::cli::RunArgs;
use crate::commands::create::{create, Attach};
use crate::commands::{delete, start};
use crate::{foreground, Error, Result};

/// Runs the container; returns the exit status to exit with.
pub fn run(root: &Path, args: &RunArgs) -> Result<i32> {
    let id = &args.create.id;
    if args.detach {
        create(root, &args.create, Attach::Detached)?;
        start_or_clean(root, id)?;
        return Ok(0);
    }
    // The container's init is our grandchild: as subreaper we get it when its parent exits.
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| Error::sys("set subreaper", e))?;
    let created = create(root, &args.create, Attach::Foreground)?;
    let mask = foreground::block_forwarded()?;
    start_or_clean(root, id)?;
    let copy = created.console.map(foreground::copy_console);
    let status = foreground::wait_forwarding(created.state.pid, &mask)?;
    if let Some(c) = copy {
        c.drain();
    }
    if !args.keep {
        delete::delete(root, id, true)?;
    }
    Ok(status)
}

fn start_or_clean(root: &Path, id: &str) -> Result<()> {
    start::start(root, id).inspect_err(|_| {
        let _ = delete::delete(root, id, true);
    })
}
