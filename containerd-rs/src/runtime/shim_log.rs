//! A shim's log: the shim writes logfmt lines (`time=... level=... msg=...`) to the bundle's
//! `log` FIFO, and we copy each line into our own log at its level, as containerd copies its
//! shims' logs to its output. The FIFO is opened read-write so that it never reports end of
//! file between writers (a shim restarting its log, or none yet); the copier stops when it is
//! aborted.

use std::io;
use std::path::Path;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

/// Starts copying the FIFO at `path` into our log, tagged with the task.
pub fn copy(path: &Path, namespace: &str, id: &str) -> io::Result<JoinHandle<()>> {
    let receiver = pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)?;
    let (namespace, id) = (namespace.to_string(), id.to_string());
    Ok(tokio::spawn(async move {
        let mut lines = BufReader::new(receiver).lines();
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => emit(&namespace, &id, &line),
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(%namespace, %id, "reading the shim's log: {e}");
                    return;
                }
            }
        }
    }))
}

/// The level of a logfmt line (`level=warning`); lines without one are informational.
fn level(line: &str) -> &str {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix("level="))
        .map(|l| l.trim_matches('"'))
        .unwrap_or("info")
}

fn emit(namespace: &str, id: &str, line: &str) {
    let line = line.trim_end();
    if line.is_empty() {
        return;
    }
    match level(line) {
        "error" | "fatal" | "panic" => tracing::error!(target: "shim", %namespace, %id, "{line}"),
        "warning" | "warn" => tracing::warn!(target: "shim", %namespace, %id, "{line}"),
        "debug" => tracing::debug!(target: "shim", %namespace, %id, "{line}"),
        "trace" => tracing::trace!(target: "shim", %namespace, %id, "{line}"),
        _ => tracing::info!(target: "shim", %namespace, %id, "{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_come_from_the_logfmt_field() {
        assert_eq!(
            level(r#"time="2024-01-01T00:00:00Z" level=warning msg="x y""#),
            "warning"
        );
        assert_eq!(level(r#"time="t" level="debug" msg=a"#), "debug");
        assert_eq!(level("plain text"), "info");
    }
}
