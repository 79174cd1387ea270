//! The shim's log: logfmt lines (`time=... level=... msg=... id=...`, as containerd's own log
//! reads) written to the bundle's `log` FIFO, which containerd copies into its log. A small
//! `tracing` subscriber of our own rather than tracing-subscriber's formatter: one shim stays
//! resident per container and every page of code it runs counts (it saves ~120 KB of binary).
//! Spans are not kept: a shim serves one container, whose id is on every line.

use std::fmt::{self, Write as _};
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;
use std::time::SystemTime;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Writes each event as one logfmt line.
#[derive(Debug)]
pub struct LineLogger {
    max: Level,
    context: String,
    out: Mutex<File>,
}

impl LineLogger {
    /// Events up to `max` (ERROR < WARN < INFO < DEBUG) go to `out`, each ending with `context`.
    pub fn new(max: Level, context: String, out: File) -> Self {
        Self {
            max,
            context,
            out: Mutex::new(out),
        }
    }
}

impl Subscriber for LineLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut line = Line::default();
        event.record(&mut line);
        // logrus's names, which containerd's log and its readers use.
        let level = match *event.metadata().level() {
            Level::WARN => "warning".to_string(),
            other => other.as_str().to_ascii_lowercase(),
        };
        let text = format!(
            "time=\"{}\" level={level} msg={}{} {}\n",
            humantime::format_rfc3339_nanos(SystemTime::now()),
            quote(&line.message),
            line.fields,
            self.context
        );
        if let Ok(mut out) = self.out.lock() {
            // The FIFO is non-blocking: a full pipe drops the line rather than stall the shim.
            let _ = out.write_all(text.as_bytes());
        }
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), quote(value));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            let _ = write!(
                self.fields,
                " {}={}",
                field.name(),
                quote(&format!("{value:?}"))
            );
        }
    }
}

/// A logfmt value: bare if it is one plain word, else quoted with `"` and `\` escaped.
fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if plain {
        value.to_string()
    } else {
        format!(
            "\"{}\"",
            value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("serving"), "serving");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn events_become_logfmt_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let logger = LineLogger::new(Level::INFO, "id=c1".into(), File::create(&path).unwrap());
        tracing::subscriber::with_default(logger, || {
            tracing::info!(topic = "/tasks/exit", "publishing event");
            tracing::debug!("not at info");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let line = text.lines().next().unwrap();
        assert!(line.starts_with("time=\""), "{line}");
        assert!(
            line.ends_with("level=info msg=\"publishing event\" topic=/tasks/exit id=c1"),
            "{line}"
        );
        assert_eq!(text.lines().count(), 1);
    }
}
