//! `keel-containerd`: parses the command line and runs the daemon.

use std::process::ExitCode;

use clap::Parser;
use keel_containerd::config::{Cli, Config};
use keel_containerd::daemon;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(e) => return fail(&e.to_string()),
    };
    init_logging(&config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("starting the runtime: {e}")),
    };
    match runtime.block_on(daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("{e:#}")),
    }
}

/// Logs to stderr at `level`; the HTTP/2 and gRPC libraries' own debug output stays out.
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

fn fail(message: &str) -> ExitCode {
    eprintln!("keel-containerd: {message}");
    ExitCode::FAILURE
}
