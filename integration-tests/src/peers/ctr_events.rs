//! `ctr events` in the background: what containerd published (the shims' task events
//! included), read back from the file its output goes to.
//!
//! A line of `ctr events` is `<timestamp> <namespace> <topic> <event as JSON>`, the timestamp
//! being Go's `time.String()` (`2026-01-02 03:04:05.123 +0000 UTC`, spaces inside).

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::containerd::Containerd;
use crate::host;
use crate::ids::unique_id;

/// How long `ctr events` may take to subscribe.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(15);

/// One event as `ctr events` printed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The namespace it was published in.
    pub namespace: String,
    /// `/tasks/create`, `/tasks/exit`, ...
    pub topic: String,
    /// The event's fields (`container_id`, `exec_id`, `exit_status`, ...); `Null` if none.
    pub payload: Value,
}

impl Event {
    /// Parses one line of `ctr events`; `None` for anything else.
    pub fn parse(line: &str) -> Option<Self> {
        let (head, rest) = line.split_once(" /")?;
        let namespace = head.rsplit(' ').next()?.to_string();
        let (topic, json) = rest.split_once(' ').unwrap_or((rest, ""));
        Some(Self {
            namespace,
            topic: format!("/{topic}"),
            payload: serde_json::from_str(json.trim()).unwrap_or(Value::Null),
        })
    }

    fn text(&self, field: &str) -> Option<&str> {
        self.payload.get(field).and_then(Value::as_str)
    }

    /// The container a task event is about.
    pub fn container_id(&self) -> Option<&str> {
        self.text("container_id")
    }

    /// The exit status an exit or delete event carries (0 when absent, as Go omits it).
    pub fn exit_status(&self) -> i64 {
        self.payload
            .get("exit_status")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }

    /// The event in a form that does not change from run to run: the topic, the exec id of
    /// an exec's event, and the exit status of an exit or delete (`/tasks/exit probe 4`,
    /// `/tasks/exit init 137`, `/tasks/delete 137`).
    pub fn describe(&self) -> String {
        let mut text = self.topic.clone();
        let process = self.text("exec_id").or_else(|| self.text("id"));
        if let Some(process) = process {
            if self.container_id() == Some(process) {
                if self.topic == "/tasks/exit" {
                    text.push_str(" init");
                }
            } else {
                text.push(' ');
                text.push_str(process);
            }
        }
        if matches!(self.topic.as_str(), "/tasks/exit" | "/tasks/delete") {
            text.push_str(&format!(" {}", self.exit_status()));
        }
        text
    }
}

/// `ctr events` running on a containerd, killed on drop.
#[derive(Debug)]
pub struct CtrEvents {
    child: Child,
    file: PathBuf,
}

impl CtrEvents {
    /// Starts `ctr events` with its output in a file under containerd's temp dir, and returns
    /// once it is subscribed: once it has seen a namespace created for the purpose.
    pub fn watch(ctrd: &Containerd) -> Result<Self> {
        let probe = unique_id("events-probe");
        let file = ctrd.dir().join(format!("{probe}.events"));
        let out =
            fs::File::create(&file).with_context(|| format!("creating {}", file.display()))?;
        let mut cmd = ctrd.ctr_command_here();
        cmd.arg("events")
            .stdin(Stdio::null())
            .stdout(out.try_clone().context("dup the events file")?)
            .stderr(out);
        let child = cmd.spawn().context("spawning ctr events")?;
        let this = Self { child, file };
        // Namespaces made meanwhile are not seen: make them until one is.
        let mut n = 0;
        let subscribed = host::wait_until(SUBSCRIBE_TIMEOUT, || {
            n += 1;
            let name = format!("{probe}-{n}");
            let _ = ctrd.ctr(&["namespaces", "create", &name]);
            let _ = ctrd.ctr(&["namespaces", "remove", &name]);
            this.events()
                .iter()
                .any(|e| e.topic == "/namespaces/create")
        });
        if !subscribed {
            bail!(
                "ctr events showed no event within {}s; it printed: {}",
                SUBSCRIBE_TIMEOUT.as_secs(),
                fs::read_to_string(&this.file).unwrap_or_default()
            );
        }
        Ok(this)
    }

    /// Every event printed so far.
    pub fn events(&self) -> Vec<Event> {
        fs::read_to_string(&self.file)
            .unwrap_or_default()
            .lines()
            .filter_map(Event::parse)
            .collect()
    }

    /// The task events (`/tasks/...`) of container `id`, in order.
    pub fn task_events(&self, id: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.topic.starts_with("/tasks/") && e.container_id() == Some(id))
            .collect()
    }

    /// Waits up to `timeout` for a `topic` event of container `id`.
    pub fn wait_for(&self, id: &str, topic: &str, timeout: Duration) -> bool {
        host::wait_until(timeout, || {
            self.task_events(id).iter().any(|e| e.topic == topic)
        })
    }
}

impl Drop for CtrEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ctr_events_lines() {
        let line = "2026-11-25 11:46:43.505715684 +0000 UTC t1 /tasks/exit \
                    {\"container_id\":\"r1\",\"id\":\"r1\",\"pid\":23295,\"exit_status\":3}";
        let e = Event::parse(line).expect("an event");
        assert_eq!(e.namespace, "t1");
        assert_eq!(e.topic, "/tasks/exit");
        assert_eq!(e.container_id(), Some("r1"));
        assert_eq!(e.describe(), "/tasks/exit init 3");
        let exec = Event::parse(
            "2026-11-25 11:46:44 +0000 UTC t1 /tasks/exec-added \
             {\"container_id\":\"r2\",\"exec_id\":\"probe\"}",
        )
        .expect("an event");
        assert_eq!(exec.describe(), "/tasks/exec-added probe");
        let delete = Event::parse(
            "2026-11-25 11:46:45 +0000 UTC t1 /tasks/delete {\"container_id\":\"r2\",\"pid\":7}",
        )
        .expect("an event");
        assert_eq!(delete.describe(), "/tasks/delete 0");
        assert!(Event::parse("ctr: connection refused").is_none());
    }
}
