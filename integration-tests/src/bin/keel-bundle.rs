//! keel-bundle: writes a busybox OCI bundle (`rootfs/` + `config.json`) to a directory.
//!
//! The config is `runc spec`'s defaults (writable root): `keel-bundle DIR --args sh -c 'echo hi'`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use keel_integration_tests::config::Config;
use keel_integration_tests::{bundle, seccomp_profile};

/// Write a busybox OCI bundle to DIR.
#[derive(Debug, Parser)]
#[command(name = "keel-bundle", version, about)]
struct Cli {
    /// Bundle directory (created if missing).
    dir: PathBuf,
    /// Put Docker's default seccomp profile in linux.seccomp.
    #[arg(long = "seccomp-default")]
    seccomp_default: bool,
    /// Set process.terminal (for a runtime given --console-socket).
    #[arg(long)]
    terminal: bool,
    /// The container's process.args; must come last (default: sh).
    #[arg(long, num_args = 1.., allow_hyphen_values = true)]
    args: Vec<String>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut config = Config::runc_default().terminal(cli.terminal);
    if !cli.args.is_empty() {
        config = config.args(&cli.args);
    }
    if cli.seccomp_default {
        config = config.seccomp(seccomp_profile::docker_default_profile());
    }
    std::fs::create_dir_all(&cli.dir).with_context(|| format!("creating {}", cli.dir.display()))?;
    bundle::write(&cli.dir, &config)
        .with_context(|| format!("writing the bundle in {}", cli.dir.display()))
}
