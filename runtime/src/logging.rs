//! Logs to stderr or `--log`, as text or runc-style JSON lines (`{"level","msg","time"}`, which
//! containerd's shims read back to report a runtime's errors).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Starts the tracing subscriber. Errors opening the log file fall back to stderr.
pub fn init(log: Option<&Path>, format: LogFormat, debug: bool) {
    let level = if debug { "debug" } else { "warn" };
    let filter = EnvFilter::try_from_env("KEEL_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let file = log.and_then(|p| OpenOptions::new().create(true).append(true).open(p).ok());
    let result = match (file, format) {
        (Some(f), LogFormat::Json) => {
            builder.json().flatten_event(true).with_writer(Mutex::new(f)).try_init()
        }
        (Some(f), LogFormat::Text) => builder.with_ansi(false).with_writer(Mutex::new(f)).try_init(),
        (None, _) => builder.with_writer(std::io::stderr).try_init(),
    };
    drop(result);
}

/// Writes the final error of a command where runc's callers look for it: one line on stderr,
/// and, with `--log`, a log entry in the chosen format.
pub fn report_error(log: Option<&Path>, format: LogFormat, msg: &str) {
    eprintln!("keel-runtime: {msg}");
    let Some(path) = log else { return };
    let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) else { return };
    let time = crate::state::now_rfc3339();
    let line = match format {
        LogFormat::Json => {
            serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string()
        }
        LogFormat::Text => format!("time=\"{time}\" level=error msg=\"{msg}\""),
    };
    let _ = writeln!(f, "{line}");
}
