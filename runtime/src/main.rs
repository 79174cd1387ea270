//! keel-runtime: parses runc's command line and calls the library.

use clap::Parser;
use keel_runtime::cli::{Cli, Command};
use keel_runtime::{commands, logging};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => usage_error(e),
    };
    // Before logging opens its file: that fd must not pose as a preserved one.
    if let Err(e) = keel_runtime::launch::check_preserved_fds(cli.command.preserve_fds()) {
        logging::report_error(None, cli.log_format, &e.to_string());
        std::process::exit(1);
    }
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

/// Help and version print as clap prints them; a usage error is one line and exit status 1,
/// as every other failure.
fn usage_error(e: clap::Error) -> ! {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("keel-runtime: {}", line.trim_start_matches("error: "));
            std::process::exit(1);
        }
    }
}
