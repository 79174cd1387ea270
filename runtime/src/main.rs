//! keel-runtime: parses runc's command line and calls the library.

use clap::Parser;
use keel_runtime::cli::{Cli, Command};
use keel_runtime::{commands, logging};

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Init) {
        logging::init(cli.log.as_deref(), cli.log_format, cli.debug);
    }
    let code = match commands::dispatch(&cli) {
        Ok(code) => code,
        Err(e) => {
            logging::report_error(cli.log.as_deref(), cli.log_format, &e.to_string());
            1
        }
    };
    std::process::exit(code);
}
