//! Logs to stderr or `--log`, as text or runc-style JSON lines (`{"level","msg","time"}`, which
//! containerd's shims read back to report a runtime's errors).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::filter::LevelFilter;

use crate::cli::LogFormat;

/// Starts the tracing subscriber. Errors opening the log file fall back to stderr.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) {
    // A plain level filter: env-filter's regex engine would add ~1 MB to the binary.
    let level = if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::WARN
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    let file = log.and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
    let result = match (file, format) {
        (Some(f), LogFormat::Json) => builder
            .json()
            .flatten_event(true)
            .with_writer(Mutex::new(f))
            .try_init(),
        (Some(f), LogFormat::Text) => builder
            .with_ansi(false)
            .with_writer(Mutex::new(f))
            .try_init(),
        (None, _) => builder.with_writer(std::io::stderr).try_init(),
    };
    drop(result);
}

/// Writes the final error of a command where runc's callers look for it: one line on stderr,
/// and, with `--log`, a log entry in the chosen format.
pub fn report_error(log: Option<&Path>, format: LogFormat, msg: &str) {
    eprintln!("keel-runtime: {msg}");
    let Some(path) = log else { return };
    let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) else {
        return;
    };
    let time = crate::state::now_rfc3339();
    let line = match format {
        LogFormat::Json => {
            serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
        }
        LogFormat::Text => format!("time=\"{time}\" level=error msg=\"{msg}\""),
    };
    let _ = writeln!(f, "{line}");
}
