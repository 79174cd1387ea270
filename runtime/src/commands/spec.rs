//! `spec`: writes a default config.json, as `runc spec` does.

use std::path::Path;

use crate::cli::SpecArgs;
use crate::spec_default::{default_spec, rootless_spec};
use crate::{Error, Result};

/// Writes `config.json` into `args.bundle`; refuses to overwrite one.
pub fn spec(args: &SpecArgs) -> Result<()> {
    let path = Path::new(&args.bundle).join("config.json");
    if path.exists() {
        return Err(Error::sys(
            format!("{} already exists: remove it first", path.display()),
            std::io::ErrorKind::AlreadyExists,
        ));
    }
    let spec = if args.rootless {
        rootless_spec()
    } else {
        default_spec()
    };
    let text = serde_json::to_string_pretty(&spec).map_err(|e| Error::sys("spec", e))?;
    std::fs::write(&path, text + "\n")
        .map_err(|e| Error::sys(format!("write {}", path.display()), e))
}
