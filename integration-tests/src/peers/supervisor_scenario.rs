//! Scenarios of `ctr` commands run on keel-containerd and on a real containerd 1.6, compared
//! step by step: the reference is containerd with its stock shim on runc; keel-containerd runs
//! the same scenario with our shim on keel-runtime and with the stock shim on runc
//! ([`expect_same_as_containerd`]), and its transcript with our shim must also be the one
//! written down in the test ([`expect_golden`]).
//!
//! What legitimately differs between the daemons and between runs is normalised before it is
//! recorded ([`normalise`]): the namespace's and temp dir's names, the runtime's name
//! (`io.containerd.keel.v2` or `io.containerd.runc.v2`), timestamps, versions, uuids, pids.

use anyhow::{bail, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ctr_events::{CtrEvents, Event};
use super::keel_containerd::Supervisor;
use super::keel_shim::{ShimHost, Stack, KEEL_SHIM_RUNTIME, RUNC_SHIM_RUNTIME, WAIT};
use super::outcome::{expect_same, Outcome, Transcript};
use super::shim_scenario::{run_scenario_on, Scenario};
use crate::binary;

/// Where the reference transcript comes from: containerd 1.6 with its stock shim on runc.
pub const REFERENCE: (Supervisor, Stack) = (Supervisor::Containerd, Stack::RuncShim);

/// What is compared with the reference: keel-containerd with our shim on keel-runtime, and
/// with the stock shim on runc.
pub const CANDIDATES: [(Supervisor, Stack); 2] = [
    (Supervisor::KeelContainerd, Stack::KeelShim),
    (Supervisor::KeelContainerd, Stack::RuncShim),
];

/// Runs `scenario` on keel-containerd with our shim on keel-runtime; its transcript must be
/// `golden` (what containerd gives).
pub fn expect_golden(scenario: Scenario, golden: &[(&str, i32, &str)]) -> Result<()> {
    crate::require_root!();
    let Some((t, problems)) =
        run_scenario_on(Supervisor::KeelContainerd, Stack::KeelShim, scenario)?
    else {
        return Ok(());
    };
    expect_same(&t, &super::shim_scenario::expected(golden), &problems)?;
    // Shown with --nocapture.
    println!("{t}");
    Ok(())
}

/// Runs `scenario` on the [`REFERENCE`] and on each of the [`CANDIDATES`], each on a daemon of
/// its own; every candidate's transcript must be the reference's. Each candidate's first
/// difference is reported (a failure on one does not hide the other's).
pub fn expect_same_as_containerd(scenario: Scenario) -> Result<()> {
    crate::require_root!();
    crate::require!(
        binary::has_runc(),
        "runc is not installed (the stock shim's runtime, for the reference)"
    );
    let (supervisor, stack) = REFERENCE;
    let reference = match run_scenario_on(supervisor, stack, scenario) {
        Ok(Some((t, _))) => t,
        Ok(None) => return Ok(()),
        Err(e) => return Err(e.context("the reference (containerd, stock shim on runc) failed")),
    };
    let failures: Vec<String> = CANDIDATES
        .iter()
        .filter_map(|&(supervisor, stack)| {
            match run_scenario_on(supervisor, stack, scenario) {
                Ok(Some((t, problems))) => expect_same(&t, &reference, &problems).err(),
                Ok(None) => None,
                Err(e) => Some(e),
            }
            .map(|e| format!("{e:#}"))
        })
        .collect();
    if !failures.is_empty() {
        bail!("{}", failures.join("\n\n"));
    }
    println!("{reference}");
    Ok(())
}

/// `text` with what differs from daemon to daemon and run to run replaced: the test's
/// namespace by `NS`, the temp dir by `DIR`, the runtime's name by `RUNTIME`.
pub fn normalise(h: &ShimHost, text: &str) -> String {
    let dir = h.ctrd().dir().display().to_string();
    text.replace(&dir, "DIR")
        .replace(h.ctrd().namespace(), "NS")
        .replace(KEEL_SHIM_RUNTIME, "RUNTIME")
        .replace(RUNC_SHIM_RUNTIME, "RUNTIME")
}

/// `ctr <args>`, recorded with its status and its stdout [`normalise`]d.
pub fn ctr(h: &ShimHost, t: &mut Transcript, args: &[&str]) -> Result<Outcome> {
    let out = h.ctrd().ctr(args)?;
    let what = normalise(h, &format!("ctr {}", args.join(" ")));
    t.record_output(&what, &out, normalise(h, &out.stdout));
    Ok(out)
}

/// The rows of a `ctr ... ls` table (header included), each cut to its first `columns` columns
/// and [`normalise`]d, sorted after the header.
pub fn table(h: &ShimHost, text: &str, columns: usize) -> String {
    let mut rows: Vec<String> = text
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().take(columns).collect();
            normalise(h, &cols.join(" "))
        })
        .collect();
    if rows.len() > 1 {
        rows[1..].sort();
    }
    rows.join("\n")
}

/// `ctr containers info` [`normalise`]d for comparison: the times only checked to be set,
/// `Runtime.Options` left out (`ctr` gives the stock shim options and ours none), and the spec
/// (which `ctr` builds, the daemon stores and gives back) as the digest of its normalised
/// JSON, which the returned outcome's stderr holds whole (shown on a mismatch).
pub fn container_info(h: &ShimHost, out: &Outcome) -> (Outcome, String) {
    let mut shown = out.clone();
    let Ok(mut info) = serde_json::from_str::<Value>(&out.stdout) else {
        return (shown, format!("not JSON: {}", normalise(h, &out.stdout)));
    };
    let Some(map) = info.as_object_mut() else {
        return (
            shown,
            format!("not an object: {}", normalise(h, &out.stdout)),
        );
    };
    for key in ["CreatedAt", "UpdatedAt"] {
        if let Some(time) = map.get_mut(key) {
            let set = time
                .as_str()
                .is_some_and(|t| !t.is_empty() && !t.starts_with("0001-01-01"));
            *time = Value::String(if set { "set" } else { "not set" }.into());
        }
    }
    if let Some(runtime) = map.get_mut("Runtime").and_then(Value::as_object_mut) {
        runtime.remove("Options");
    }
    if let Some(spec) = map.get_mut("Spec") {
        let text = normalise(h, &spec.to_string());
        let digest: String = Sha256::digest(text.as_bytes())
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        shown.stderr = format!("{}\nnormalised spec: {text}", out.stderr.trim());
        *spec = Value::String(format!("sha256:{digest}"));
    }
    // serde_json's maps are sorted by key.
    (shown, normalise(h, &info.to_string()))
}

/// An event as it is compared: its container (the task's, or the container's own id for
/// `/containers/*`), then [`Event::describe`].
pub fn describe(event: &Event) -> String {
    match event.container_id() {
        Some(container) => format!("{container} {}", event.describe()),
        None => {
            let id = event.payload.get("id").and_then(Value::as_str);
            format!("{} {}", id.unwrap_or("-"), event.topic)
        }
    }
}

/// Records every event `ctr events` printed in the test's namespace once the `last` event of
/// container `id` came, or after [`WAIT`]; each as [`describe`] puts it, sorted if `sorted`.
/// Namespace events are left out: [`CtrEvents::watch`] makes and removes namespaces until it
/// sees one (see [`observe_namespace_changes`]).
pub fn observe_namespace_events(
    h: &ShimHost,
    t: &mut Transcript,
    events: &CtrEvents,
    (id, last): (&str, &str),
    sorted: bool,
) {
    let ns = h.ctrd().namespace();
    let ours = || {
        events
            .events()
            .into_iter()
            .filter(|e| e.namespace == ns && !e.topic.starts_with("/namespaces/"))
            .collect::<Vec<_>>()
    };
    crate::host::wait_until(WAIT, || {
        ours()
            .iter()
            .any(|e| e.topic == last && describe(e).starts_with(&format!("{id} ")))
    });
    let mut seen: Vec<String> = ours().iter().map(describe).collect();
    if sorted {
        seen.sort();
    }
    t.observe("ctr events in the namespace", seen.join(", "));
}

/// Records the namespace events (`/namespaces/*`, in whichever namespace they were published)
/// about the namespaces `names`, in order, once `count` of them came (or after [`WAIT`]):
/// each as `<namespace published in> <topic> <name> <labels>`, [`normalise`]d.
pub fn observe_namespace_changes(
    h: &ShimHost,
    t: &mut Transcript,
    events: &CtrEvents,
    names: &[&str],
    count: usize,
) {
    let ours = || -> Vec<String> {
        events
            .events()
            .into_iter()
            .filter(|e| e.topic.starts_with("/namespaces/"))
            .filter_map(|e| {
                let name = e.payload.get("name").and_then(Value::as_str)?;
                names.contains(&name).then(|| {
                    let labels = e.payload.get("labels").map(|l| format!(" {l}"));
                    let labels = labels.unwrap_or_default();
                    normalise(h, &format!("{} {} {name}{labels}", e.namespace, e.topic))
                })
            })
            .collect()
    };
    crate::host::wait_until(WAIT, || ours().len() >= count);
    t.observe("ctr events: namespaces", ours().join(", "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_container_and_task_events() {
        let create = Event::parse(
            "2026-11-25 11:46:43 +0000 UTC t1 /containers/create \
             {\"id\":\"c1\",\"runtime\":{\"name\":\"io.containerd.runc.v2\"}}",
        )
        .expect("an event");
        assert_eq!(describe(&create), "c1 /containers/create");
        let exit = Event::parse(
            "2026-11-25 11:46:44 +0000 UTC t1 /tasks/exit \
             {\"container_id\":\"c1\",\"id\":\"c1\",\"exit_status\":137}",
        )
        .expect("an event");
        assert_eq!(describe(&exit), "c1 /tasks/exit init 137");
    }
}
