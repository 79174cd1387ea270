//! What a client command (`ctr`, `docker`) did, and transcripts of scenario steps that must
//! come out the same under runc and keel-runtime.

use std::fmt;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::exec::{exit_code, output_with_timeout};

/// How long one client command may take before it is killed.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// The decoded result of a client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Shell-style exit code (128 + signal when killed).
    pub status: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Outcome {
    /// Decodes an [`Output`].
    pub fn from_output(out: &Output) -> Self {
        Self {
            status: exit_code(&out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Itself if the status is 0, else an error naming `what` and quoting stderr.
    pub fn ok(self, what: &str) -> Result<Self> {
        if self.status != 0 {
            bail!(
                "{what} failed with status {}: {}{}",
                self.status,
                self.stderr.trim(),
                if self.stdout.trim().is_empty() {
                    String::new()
                } else {
                    format!(" (stdout: {})", self.stdout.trim())
                }
            );
        }
        Ok(self)
    }
}

/// Runs `cmd` with stdin from /dev/null, killed after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Outcome> {
    Ok(Outcome::from_output(&output_with_timeout(cmd, timeout)?))
}

/// One step of a scenario: what was done, its exit status, and the output that must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What the step did (`exec sh -c ...`).
    pub what: String,
    /// The exit status of the client command (or an observed value's stand-in).
    pub status: i32,
    /// The observed output that must be equal under both runtimes.
    pub output: String,
    /// The client's stderr: shown on a mismatch, never compared.
    pub stderr: String,
}

/// The steps of one scenario run with one runtime.
#[derive(Debug, Clone, Default)]
pub struct Transcript {
    runtime: String,
    steps: Vec<Step>,
}

impl Transcript {
    /// An empty transcript for `runtime` (`runc`, `keel`).
    pub fn new(runtime: &str) -> Self {
        Self {
            runtime: runtime.to_string(),
            steps: Vec::new(),
        }
    }

    /// The runtime this transcript is of.
    pub fn runtime(&self) -> &str {
        &self.runtime
    }

    /// Records a command's status and stdout.
    pub fn record(&mut self, what: &str, out: &Outcome) {
        self.record_output(what, out, out.stdout.clone());
    }

    /// Records a command's status with `output` in place of its stdout (for output that is
    /// not the same from run to run, such as a container id, or for stdout and stderr both).
    pub fn record_output(&mut self, what: &str, out: &Outcome, output: String) {
        self.steps.push(Step {
            what: what.to_string(),
            status: out.status,
            output,
            stderr: out.stderr.clone(),
        });
    }

    /// Records an observation that is not a command (a status read back, a count).
    pub fn observe(&mut self, what: &str, value: impl fmt::Display) {
        self.steps.push(Step {
            what: what.to_string(),
            status: 0,
            output: value.to_string(),
            stderr: String::new(),
        });
    }

    /// This transcript without the steps named in `skipped`.
    pub fn without(&self, skipped: &[&str]) -> Self {
        Self {
            runtime: self.runtime.clone(),
            steps: self
                .steps
                .iter()
                .filter(|s| !skipped.contains(&s.what.as_str()))
                .cloned()
                .collect(),
        }
    }

    /// The steps so far.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            writeln!(
                f,
                "  [{}] {} -> status {}, output {:?}",
                self.runtime, step.what, step.status, step.output
            )?;
            if !step.stderr.trim().is_empty() {
                writeln!(f, "      stderr: {}", step.stderr.trim())?;
            }
        }
        Ok(())
    }
}

/// Fails unless `keel` did what `reference` (runc) did, step by step: the same statuses and
/// outputs. The message names the first differing step with both stderrs, then both
/// transcripts and `context` (the daemon's log lines that matter).
pub fn expect_same(keel: &Transcript, reference: &Transcript, context: &str) -> Result<()> {
    let first_difference = keel.steps.iter().zip(&reference.steps).find(|(k, r)| {
        (k.what.as_str(), k.status, &k.output) != (r.what.as_str(), r.status, &r.output)
    });
    let why = match first_difference {
        Some((k, r)) => format!(
            "{:?}: {} gave status {} output {:?} (stderr: {}); {} gave status {} output {:?}",
            r.what,
            keel.runtime,
            k.status,
            k.output,
            k.stderr.trim(),
            reference.runtime,
            r.status,
            r.output
        ),
        None if keel.steps.len() != reference.steps.len() => format!(
            "{} took {} steps, {} took {}",
            keel.runtime,
            keel.steps.len(),
            reference.runtime,
            reference.steps.len()
        ),
        None => return Ok(()),
    };
    bail!(
        "{} differs from {} at {why}\n{keel}{reference}{}",
        keel.runtime,
        reference.runtime,
        if context.trim().is_empty() {
            String::new()
        } else {
            format!("daemon log:\n{context}")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(status: i32, stdout: &str) -> Outcome {
        Outcome {
            status,
            stdout: stdout.to_string(),
            stderr: "err".to_string(),
        }
    }

    #[test]
    fn equal_transcripts_pass_and_differences_are_named() {
        let mut runc = Transcript::new("runc");
        let mut keel = Transcript::new("keel");
        runc.record("exec", &outcome(5, "hi\n"));
        keel.record("exec", &outcome(5, "hi\n"));
        assert!(expect_same(&keel, &runc, "").is_ok());
        runc.observe("status", "PAUSED");
        keel.observe("status", "RUNNING");
        let err = expect_same(&keel, &runc, "log line").expect_err("differs");
        let text = format!("{err:#}");
        assert!(text.contains("\"status\""), "{text}");
        assert!(
            text.contains("RUNNING") && text.contains("log line"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_step_is_a_difference() {
        let mut runc = Transcript::new("runc");
        let keel = Transcript::new("keel");
        runc.observe("x", 1);
        assert!(expect_same(&keel, &runc, "").is_err());
    }
}
