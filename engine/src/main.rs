//! `keeld`: parses the command line and runs the engine.

use std::process::ExitCode;

use clap::Parser;
use keel_engine::config::{Cli, Config};
use keel_engine::daemon;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each error's message already names its cause: one line, not the chain again.
            eprintln!("keeld: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let config = Config::load(&Cli::parse())?;
    init_logging(&config.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("starting the async runtime: {e}"))?;
    runtime.block_on(daemon::run(config))?;
    Ok(())
}

/// Logs to stderr at `level`; the HTTP and gRPC libraries' own debug output stays out.
fn init_logging(level: &str) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let level: LevelFilter = level.parse().unwrap_or(LevelFilter::INFO);
    let quiet = LevelFilter::WARN.min(level);
    let filter = Targets::new().with_default(level).with_targets([
        ("h2", quiet),
        ("hyper", quiet),
        ("tower", quiet),
        ("tonic", quiet),
    ]);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    tracing_subscriber::registry().with(fmt).with(filter).init();
}
