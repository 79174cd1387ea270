//! Scenarios of `ctr` commands on a [`ShimHost`], recorded step by step in a [`Transcript`],
//! and the two ways they are checked: against a transcript written down in the test (what the
//! stock shim gives), and against the same scenario run on the stock shim
//! ([`expect_same_on_every_stack`]). The step recorders here name each step the same way on
//! every stack, so that transcripts compare.

use anyhow::{bail, Context, Result};

use super::ctr_events::CtrEvents;
use super::keel_containerd::Supervisor;
use super::keel_shim::{ShimHost, Stack, WAIT};
use super::outcome::{expect_same, Outcome, Transcript};
use super::Peer;
use crate::binary;

/// A scenario: steps on one host, recorded.
pub type Scenario = fn(&mut ShimHost, &mut Transcript) -> Result<()>;

/// Runs `scenario` on a new host for `stack`: its transcript and containerd's problems. A
/// failed step is an error naming the stack, with the steps so far and containerd's log;
/// `None` when containerd cannot run here (the calling test is skipped).
pub fn run_scenario(stack: Stack, scenario: Scenario) -> Result<Option<(Transcript, String)>> {
    run_scenario_on(Supervisor::Containerd, stack, scenario)
}

/// [`run_scenario`] on `supervisor`; the transcript is named after both (unless the supervisor
/// is containerd, the shim tests' setting).
pub fn run_scenario_on(
    supervisor: Supervisor,
    stack: Stack,
    scenario: Scenario,
) -> Result<Option<(Transcript, String)>> {
    let name = match supervisor {
        Supervisor::Containerd => stack.name().to_string(),
        Supervisor::KeelContainerd => format!("{} on {}", stack.name(), supervisor.name()),
    };
    let mut h = match ShimHost::start_on(supervisor, stack)? {
        Peer::Ready(h) => h,
        Peer::Unavailable(why) => {
            crate::skip::skip(module_path!(), &why);
            return Ok(None);
        }
    };
    let mut t = Transcript::new(&name);
    scenario(&mut h, &mut t).with_context(|| {
        format!(
            "on {name}, after:\n{t}{}'s log:\n{}",
            supervisor.name(),
            h.problems()
        )
    })?;
    let problems = h.problems();
    Ok(Some((t, problems)))
}

/// Runs `scenario` on our shim with keel-runtime; its transcript must be `golden`.
pub fn expect_golden(scenario: Scenario, golden: &[(&str, i32, &str)]) -> Result<()> {
    crate::require_root!();
    let Some((t, problems)) = run_scenario(Stack::KeelShim, scenario)? else {
        return Ok(());
    };
    expect_same(&t, &expected(golden), &problems)?;
    // Shown with --nocapture.
    println!("{t}");
    Ok(())
}

/// Steps where the stock containerd 1.6 shim is not a stable reference, left out of the
/// comparison (our shim's results for them are pinned by the goldens): with `--log-uri file://`
/// it opens the file once per stream, truncating, so one stream's lines may be lost; and under
/// load it may miss the OOM event of a task killed at once.
const UNSTABLE_IN_THE_REFERENCE: [&str; 2] = ["the log file's lines", "ctr events for oom"];

/// Runs `scenario` on every [`Stack`], each on a containerd of its own; our shim's
/// transcripts must be the stock shim's. Each of our stacks' first difference is reported
/// (a failure on one does not hide the other's).
pub fn expect_same_on_every_stack(scenario: Scenario) -> Result<()> {
    crate::require_root!();
    crate::require!(
        binary::has_runc(),
        "runc is not installed (the reference to compare with)"
    );
    let mut runs = Vec::new();
    for stack in Stack::ALL {
        match run_scenario(stack, scenario) {
            Ok(Some(run)) => runs.push(Ok(run)),
            Ok(None) => return Ok(()),
            Err(e) => runs.push(Err(e)),
        }
    }
    let mut runs = runs.into_iter();
    let reference = match runs.next() {
        Some(Ok((t, _))) => t.without(&UNSTABLE_IN_THE_REFERENCE),
        Some(Err(e)) => return Err(e.context("the reference (stock shim on runc) failed")),
        None => return Ok(()),
    };
    let failures: Vec<String> = runs
        .filter_map(|run| match run {
            Ok((t, problems)) => expect_same(
                &t.without(&UNSTABLE_IN_THE_REFERENCE),
                &reference,
                &problems,
            )
            .err()
            .map(|e| format!("{e:#}")),
            Err(e) => Some(format!("{e:#}")),
        })
        .collect();
    if !failures.is_empty() {
        bail!("{}", failures.join("\n\n"));
    }
    println!("{reference}");
    Ok(())
}

/// `out` with stdout and stderr cut to their last 100 bytes, quoted, for the transcript of a
/// step whose output is large (a summary of it is what is compared).
pub fn abridged(out: &Outcome) -> Outcome {
    let cut = |text: &str| {
        let mut start = text.len().saturating_sub(100);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        if start == 0 {
            text.to_string()
        } else {
            format!("[{} bytes, ending:] {:?}", text.len(), &text[start..])
        }
    };
    Outcome {
        status: out.status,
        stdout: cut(&out.stdout),
        stderr: cut(&out.stderr),
    }
}

/// The exit code in `ctr task delete`'s "task X exit with non-zero exit code N" warning,
/// else 0.
pub fn reported_exit(out: &Outcome) -> i64 {
    out.stderr
        .split("exit code ")
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

/// A transcript of what a scenario must give: `(step, status, output)` in order.
pub fn expected(steps: &[(&str, i32, &str)]) -> Transcript {
    let mut t = Transcript::new("expected");
    for (what, status, output) in steps {
        let out = Outcome {
            status: *status,
            stdout: (*output).to_string(),
            stderr: String::new(),
        };
        t.record(what, &out);
    }
    t
}

/// Records the task's status once it is `status`, or whatever it is after [`WAIT`].
pub fn observe_status(h: &ShimHost, t: &mut Transcript, id: &str, status: &str) -> Result<()> {
    h.ctrd().wait_task_status(id, status, WAIT);
    let now = h.ctrd().task_status(id)?;
    t.observe(
        "ctr task ls: status",
        now.unwrap_or_else(|| "no task".into()),
    );
    Ok(())
}

/// `ctr <args>`, recorded with its status and stdout.
pub fn ctr(h: &ShimHost, t: &mut Transcript, args: &[&str]) -> Result<Outcome> {
    let out = h.ctrd().ctr(args)?;
    t.record(&format!("ctr {}", args.join(" ")), &out);
    Ok(out)
}

/// `ctr task delete` (its status, and the exit code it reports), then `ctr containers delete`.
pub fn delete(h: &ShimHost, t: &mut Transcript, id: &str) -> Result<()> {
    let out = h.ctrd().ctr(&["task", "delete", id])?;
    t.record_output(&format!("ctr task delete {id}"), &out, String::new());
    t.observe("exit code reported by delete", reported_exit(&out));
    ctr(h, t, &["containers", "delete", id])?;
    Ok(())
}

/// Records what is left of `id` once it should all be gone (see [`ShimHost::leftovers`]).
pub fn observe_nothing_left(h: &ShimHost, t: &mut Transcript, id: &str) -> Result<()> {
    let left = h.wait_nothing_left(id)?;
    t.observe(&format!("left of {id}"), format!("{left:?}"));
    Ok(())
}

/// Records the task events of `id` once its `last` event came (or after `timeout`), each as
/// [`super::ctr_events::Event::describe`] puts it; sorted if `sorted` (events from different
/// sources, such as an OOM and the exit it causes, come in either order).
pub fn observe_events(t: &mut Transcript, events: &CtrEvents, id: &str, last: &str, sorted: bool) {
    events.wait_for(id, last, WAIT);
    let mut seen: Vec<String> = events
        .task_events(id)
        .iter()
        .map(|e| e.describe())
        .collect();
    if sorted {
        seen.sort();
    }
    t.observe(&format!("ctr events for {id}"), seen.join(", "));
}

/// What a process printed on a terminal, as `ctr` on a pty of its own shows it: the lines
/// that are `keep` or name a pty (`/dev/pts/N`, whatever N), without the `\r`s; ctr's own
/// messages on the same terminal are left out.
pub fn terminal_lines(text: &str, keep: &[&str]) -> String {
    text.lines()
        .map(|l| l.trim_end_matches('\r').trim_start_matches("^@"))
        .filter_map(|l| match l.strip_prefix("/dev/pts/") {
            Some(_) => Some("/dev/pts/N"),
            None => keep.contains(&l).then_some(l),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The output of `yes`, summed up: its size and whether it is all `y` lines.
pub fn yes_output(text: &str) -> String {
    let all_y = text.lines().all(|l| l == "y") && text.ends_with('\n');
    format!("{} bytes, all \"y\" lines: {all_y}", text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_exit_code_from_ctrs_warning() {
        let out = Outcome {
            status: 0,
            stdout: String::new(),
            stderr: "time=\"x\" level=warning msg=\"task r2 exit with non-zero exit code 42\"\n"
                .into(),
        };
        assert_eq!(reported_exit(&out), 42);
    }

    #[test]
    fn keeps_a_terminals_lines() {
        let text = "^@/dev/pts/1\r\r\nhi\r\r\n^@\u{1b}[31mERRO\u{1b}[0m resize pty\r\n";
        assert_eq!(terminal_lines(text, &["hi"]), "/dev/pts/N hi");
    }

    #[test]
    fn sums_up_yes_output() {
        assert_eq!(yes_output("y\ny\n"), "4 bytes, all \"y\" lines: true");
        assert_eq!(yes_output("y\nn\n"), "4 bytes, all \"y\" lines: false");
    }
}
