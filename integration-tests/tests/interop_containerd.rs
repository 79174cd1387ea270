//! keel-runtime as runc's drop-in under a real containerd 1.6 (Debian `containerd`): the stock
//! `containerd-shim-runc-v2` runs it through `ctr run --runc-binary`, and every scenario gives
//! the same observable results as with the real runc on the same containerd: run, exec, kill,
//! pause/resume, `ctr task metrics`, `ctr task ps`, delete.
//!
//! Each test starts a containerd of its own (temp dir, own socket, CRI off) and drives it with
//! `ctr`; containers use a busybox rootfs directory (`ctr run --rootfs`), so no image is needed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use keel_integration_tests::binary::{self, has_runc};
use keel_integration_tests::peers::containerd::Containerd;
use keel_integration_tests::peers::outcome::expect_same;
use keel_integration_tests::peers::process;
use keel_integration_tests::peers::{Outcome, Transcript};
use keel_integration_tests::{host, require, require_peer, require_root, rootfs};
use serde_json::Value;

/// How long a task may take to reach a state.
const WAIT: Duration = Duration::from_secs(15);

/// One runtime under the shared containerd: its binary, `--runc-root`, rootfs and fifo dir.
struct Runner<'a> {
    ctrd: &'a Containerd,
    name: &'static str,
    binary: PathBuf,
    runc_root: PathBuf,
    rootfs: PathBuf,
    fifos: PathBuf,
}

/// runc first (the reference), then keel-runtime, each with a rootfs of its own.
fn runners(ctrd: &Containerd) -> Result<[Runner<'_>; 2]> {
    let make = |name: &'static str, binary: PathBuf| -> Result<Runner<'_>> {
        let rootfs = ctrd.subdir(&format!("rootfs-{name}"))?;
        rootfs::build(&rootfs)?;
        Ok(Runner {
            ctrd,
            name,
            binary,
            runc_root: ctrd.subdir(&format!("runtime-root-{name}"))?,
            rootfs,
            fifos: ctrd.subdir(&format!("fifo-{name}"))?,
        })
    };
    Ok([
        make("runc", binary::runc()?)?,
        make("keel", binary::keel_runtime()?)?,
    ])
}

impl Runner<'_> {
    fn id(&self, scenario: &str) -> String {
        format!("{}-{scenario}", self.name)
    }

    /// `ctr run <mode> --runc-binary B --runc-root R --fifo-dir F [--log-uri L] --rootfs DIR id cmd`.
    fn run(&self, mode: &str, id: &str, cmd: &[&str]) -> Result<Outcome> {
        let mut args: Vec<String> = vec!["run".into(), mode.into()];
        args.extend(self.runtime_flags());
        if mode == "-d" {
            args.push("--log-uri".into());
            args.push(format!("file://{}", self.log_path(id).display()));
        }
        args.push("--rootfs".into());
        args.push(self.rootfs.display().to_string());
        args.push(id.into());
        args.extend(cmd.iter().map(|s| s.to_string()));
        self.ctrd.ctr(&args)
    }

    fn runtime_flags(&self) -> Vec<String> {
        vec![
            "--runc-binary".into(),
            self.binary.display().to_string(),
            "--runc-root".into(),
            self.runc_root.display().to_string(),
            "--fifo-dir".into(),
            self.fifos.display().to_string(),
        ]
    }

    /// `ctr run -d` of `sh -c script`, its output to a log file; records the step.
    fn run_detached(&self, t: &mut Transcript, id: &str, script: &str) -> Result<()> {
        let out = self.run("-d", id, &["/bin/sh", "-c", script])?;
        t.record("ctr run -d", &out);
        Ok(())
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.ctrd.dir().join(format!("{id}.out"))
    }

    /// Waits for `needle` in the detached task's output; records whether it came.
    fn wait_output(&self, t: &mut Transcript, id: &str, needle: &str) {
        let log = self.log_path(id);
        let came = host::wait_until(WAIT, || {
            fs::read_to_string(&log).is_ok_and(|text| text.contains(needle))
        });
        t.observe(&format!("task printed {needle:?}"), came);
    }

    /// `ctr` for a step that prints: the stock shim reports an exit before its output is read
    /// and ctr 1.6 closes its FIFOs on the exit, so under load the output is lost now and then
    /// whatever the runtime; such a step gets two more tries while it printed nothing.
    fn ctr_printing(&self, t: &mut Transcript, args: &[&str]) -> Result<Outcome> {
        let mut out = self.ctrd.ctr(args)?;
        for _ in 1..3 {
            if !out.stdout.is_empty() {
                break;
            }
            out = self.ctrd.ctr(args)?;
        }
        self.record(t, args, &out);
        Ok(out)
    }

    fn ctr(&self, t: &mut Transcript, args: &[&str]) -> Result<Outcome> {
        let out = self.ctrd.ctr(args)?;
        self.record(t, args, &out);
        Ok(out)
    }

    /// Records a ctr step named without the runtime's container id, so that both transcripts
    /// name it alike.
    fn record(&self, t: &mut Transcript, args: &[&str], out: &Outcome) {
        let prefix = format!("{}-", self.name);
        let what: Vec<&str> = args
            .iter()
            .map(|a| if a.starts_with(&prefix) { "<id>" } else { a })
            .collect();
        t.record(&format!("ctr {}", what.join(" ")), out);
    }

    /// Records the task's status column once it is `status` (or whatever it is after `WAIT`).
    fn observe_status(&self, t: &mut Transcript, id: &str, status: &str) -> Result<()> {
        self.ctrd.wait_task_status(id, status, WAIT);
        let now = self.ctrd.task_status(id)?;
        t.observe("task status", now.unwrap_or_else(|| "no task".into()));
        Ok(())
    }

    /// `ctr task delete` and the exit status it reports (containerd logs non-zero ones).
    fn delete_task(&self, t: &mut Transcript, id: &str) -> Result<()> {
        let out = self.ctrd.ctr(&["task", "delete", id])?;
        t.record_output("ctr task delete", &out, String::new());
        t.observe("exit status reported by delete", reported_exit(&out));
        Ok(())
    }

    /// Kills and deletes whatever is left of `id` (for the steps after a failure).
    fn remove(&self, id: &str) {
        let _ = self.ctrd.ctr(&["task", "resume", id]);
        let _ = self.ctrd.ctr(&["task", "kill", "-a", "-s", "SIGKILL", id]);
        self.ctrd.wait_task_status(id, "STOPPED", WAIT);
        let _ = self.ctrd.ctr(&["task", "delete", "-f", id]);
        let _ = self.ctrd.ctr(&["containers", "delete", id]);
    }

    /// Records what is left of a deleted container: task, container record, runtime state,
    /// cgroup, mounts under the rootfs.
    fn observe_nothing_left(&self, t: &mut Transcript, id: &str) -> Result<()> {
        let ns = self.ctrd.namespace();
        let tasks = self.ctrd.ctr(&["task", "ls", "-q"])?.stdout;
        let containers = self.ctrd.ctr(&["containers", "ls", "-q"])?.stdout;
        let mut left = Vec::new();
        if tasks.lines().any(|l| l.trim() == id) {
            left.push("task".to_string());
        }
        if containers.lines().any(|l| l.trim() == id) {
            left.push("container".to_string());
        }
        if self.runc_root.join(ns).join(id).exists() {
            left.push("runtime state dir".to_string());
        }
        if process::cgroup_exists_anywhere(&format!("/{ns}/{id}")) {
            left.push("cgroup".to_string());
        }
        let mounts = host::mount_points()?
            .into_iter()
            .filter(|m| Path::new(m).starts_with(&self.rootfs))
            .count();
        if mounts > 0 {
            left.push(format!("{mounts} mounts under the rootfs"));
        }
        t.observe("left after delete", format!("{left:?}"));
        Ok(())
    }
}

/// The exit code in containerd's "task X exit with non-zero exit code N" warning, else 0.
fn reported_exit(out: &Outcome) -> i64 {
    out.stderr
        .split("exit code ")
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0)
}

/// Runs `scenario` with runc then keel on one containerd, and compares the transcripts.
fn compare(
    ctrd: &Containerd,
    scenario: impl Fn(&Runner<'_>, &mut Transcript) -> Result<()>,
) -> Result<()> {
    let [runc, keel] = runners(ctrd)?;
    let mut transcripts = Vec::new();
    for runner in [&runc, &keel] {
        let mut t = Transcript::new(runner.name);
        scenario(runner, &mut t)?;
        transcripts.push(t);
    }
    let same = expect_same(&transcripts[1], &transcripts[0], &ctrd.problems(25));
    if same.is_ok() {
        // Shown with --nocapture: what both runtimes did.
        println!("{}{}", transcripts[0], transcripts[1]);
    }
    same
}

macro_rules! containerd_test {
    () => {{
        require_root!();
        require!(
            has_runc(),
            "runc is not installed (the reference to compare with)"
        );
        require_peer!(Containerd::start())
    }};
}

#[test]
fn ctr_run_rm_gives_runcs_output_and_exit_status() -> Result<()> {
    let ctrd = containerd_test!();
    compare(&ctrd, |r, t| {
        let id = r.id("run");
        let script = "echo hello; echo to-stderr >&2; exit 3";
        let out = r.run("--rm", &id, &["/bin/sh", "-c", script])?;
        t.record("ctr run --rm sh -c 'echo; exit 3'", &out);
        t.observe("stderr passed through", out.stderr.contains("to-stderr"));
        let out = r.run("--rm", &id, &["/bin/true"])?;
        t.record("ctr run --rm true", &out);
        r.observe_nothing_left(t, &id)
    })
}

#[test]
fn ctr_task_exec_in_a_running_task() -> Result<()> {
    let ctrd = containerd_test!();
    compare(&ctrd, |r, t| {
        let id = r.id("exec");
        // Not `exec sleep`: busybox re-execs its applets through /proc/self/exe and names
        // itself only afterwards, so a probe racing that sees "exe" as PID 1's name.
        r.run_detached(t, &id, "sleep 1000 & echo ready; wait")?;
        r.wait_output(t, &id, "ready");
        let probe = "echo in-exec; cat /proc/1/comm; exit 5";
        r.ctr_printing(
            t,
            &[
                "task",
                "exec",
                "--exec-id",
                "probe",
                &id,
                "/bin/sh",
                "-c",
                probe,
            ],
        )?;
        r.ctr_printing(
            t,
            &[
                "task",
                "exec",
                "--cwd",
                "/tmp",
                "--exec-id",
                "cwd",
                &id,
                "/bin/pwd",
            ],
        )?;
        r.ctr(
            t,
            &[
                "task",
                "exec",
                "--exec-id",
                "missing",
                &id,
                "/no/such/binary",
            ],
        )?;
        r.observe_status(t, &id, "RUNNING")?;
        r.remove(&id);
        r.observe_nothing_left(t, &id)
    })
}

#[test]
fn ctr_task_kill_and_delete() -> Result<()> {
    let ctrd = containerd_test!();
    compare(&ctrd, |r, t| {
        let id = r.id("kill");
        let script = "trap 'exit 42' TERM; echo ready; while :; do sleep 0.1; done";
        r.run_detached(t, &id, script)?;
        r.wait_output(t, &id, "ready");
        r.ctr(t, &["task", "kill", &id])?;
        r.observe_status(t, &id, "STOPPED")?;
        r.delete_task(t, &id)?;
        r.ctr(t, &["containers", "delete", &id])?;
        r.observe_nothing_left(t, &id)?;

        let id = r.id("killall");
        r.run_detached(t, &id, "sleep 1000 & sleep 1000 & echo ready; wait")?;
        r.wait_output(t, &id, "ready");
        r.ctr(t, &["task", "kill", "--all", "--signal", "SIGKILL", &id])?;
        r.observe_status(t, &id, "STOPPED")?;
        r.delete_task(t, &id)?;
        r.ctr(t, &["containers", "delete", &id])?;
        r.observe_nothing_left(t, &id)
    })
}

#[test]
fn ctr_task_pause_and_resume() -> Result<()> {
    let ctrd = containerd_test!();
    compare(&ctrd, |r, t| {
        let id = r.id("pause");
        let cgroup = format!("/{}/{id}", r.ctrd.namespace());
        let freezer = || {
            host::read_cgroup_file("freezer", &cgroup, "freezer.state")
                .unwrap_or_else(|_| "no freezer.state".into())
        };
        r.run_detached(t, &id, "echo ready; exec sleep 1000")?;
        r.wait_output(t, &id, "ready");
        r.ctr(t, &["task", "pause", &id])?;
        r.observe_status(t, &id, "PAUSED")?;
        t.observe("freezer.state", freezer());
        r.ctr(t, &["task", "resume", &id])?;
        r.observe_status(t, &id, "RUNNING")?;
        t.observe("freezer.state", freezer());
        r.ctr(t, &["task", "kill", "-s", "SIGKILL", &id])?;
        r.observe_status(t, &id, "STOPPED")?;
        r.delete_task(t, &id)?;
        r.ctr(t, &["containers", "delete", &id])?;
        r.observe_nothing_left(t, &id)
    })
}

#[test]
fn ctr_task_metrics() -> Result<()> {
    let ctrd = containerd_test!();
    compare(&ctrd, |r, t| {
        let id = r.id("metrics");
        r.run_detached(t, &id, "echo ready; exec sleep 1000")?;
        r.wait_output(t, &id, "ready");
        let out = r.ctrd.ctr(&["task", "metrics", "--format", "json", &id])?;
        t.record_output("ctr task metrics --format json", &out, String::new());
        let metrics: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        let keys: Vec<&String> = metrics
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        t.observe("metric groups", format!("{keys:?}"));
        t.observe("pids.current", &metrics["pids"]["current"]);
        let memory = metrics["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
        t.observe("memory usage > 0", memory > 0);
        let cpu = metrics["cpu"]["usage"]["total"].as_u64().unwrap_or(0);
        t.observe("cpu usage > 0", cpu > 0);
        let out = r.ctrd.ctr(&["task", "metrics", &id])?;
        let names: Vec<&str> = out
            .stdout
            .lines()
            .skip_while(|l| !l.starts_with("METRIC"))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        t.record_output("ctr task metrics (table)", &out, names.join(" "));
        r.remove(&id);
        r.observe_nothing_left(t, &id)
    })
}

#[test]
fn ctr_task_ps_lists_the_tasks_processes() -> Result<()> {
    let ctrd = containerd_test!();
    compare(&ctrd, |r, t| {
        let id = r.id("ps");
        r.run_detached(t, &id, "sleep 1000 & echo ready; wait")?;
        r.wait_output(t, &id, "ready");
        let out = r.ctrd.ctr(&["task", "ps", &id])?;
        let pids: Vec<i32> = out
            .stdout
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        t.record_output("ctr task ps", &out, format!("{} processes", pids.len()));
        let init = r.ctrd.task_pid(&id)?;
        t.observe(
            "the task's pid is listed",
            init.is_some_and(|p| pids.contains(&p)),
        );
        r.remove(&id);
        r.observe_nothing_left(t, &id)
    })
}
