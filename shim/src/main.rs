//! `containerd-shim-keel-v2`: parses containerd's command line and runs the action.

use std::io::Write;
use std::process::ExitCode;

use keel_shim::args::{Action, Args};
use keel_shim::{bootstrap, daemon};

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => return fail(&e.to_string()),
    };
    match args.action {
        Action::Version => {
            println!(
                "containerd-shim-keel-v2:\n  Version:  {}",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::SUCCESS
        }
        Action::Start => match bootstrap::start(&args) {
            Ok(address) => {
                print!("{address}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string()),
        },
        Action::Delete => match bootstrap::delete(&args) {
            Ok(bytes) => {
                let mut out = std::io::stdout();
                if out.write_all(&bytes).and_then(|()| out.flush()).is_err() {
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("{}: {e}", bootstrap::bundle_of(&args).display())),
        },
        Action::Serve => match daemon::serve(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e.to_string()),
        },
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("containerd-shim-keel-v2: {message}");
    ExitCode::FAILURE
}
