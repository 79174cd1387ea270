//! keel-runtime as runc's drop-in under a real dockerd 20.10 (Debian `docker.io`): started by
//! the test with its own data root, exec root and socket, `--add-runtime keel=PATH`, and driven
//! with the real `docker` CLI. Every scenario runs with `--runtime runc` (the reference) and
//! `--runtime keel` on the same daemon and must give the same results: run, exec, stop,
//! restart, logs.
//!
//! One dockerd at a time (the tests in this file take turns): each test starts its own and
//! imports a busybox image made from the fixtures' rootfs (`docker import`; no registry).

use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use keel_integration_tests::binary::{self, has_runc};
use keel_integration_tests::peers::dockerd::{Dockerd, IMAGE, KEEL_RUNTIME, RUNC_RUNTIME};
use keel_integration_tests::peers::outcome::expect_same;
use keel_integration_tests::peers::{Outcome, Transcript};
use keel_integration_tests::{require, require_peer, require_root};

/// How long a container may take to print what a step waits for.
const WAIT: Duration = Duration::from_secs(20);

/// Serializes the tests of this file: one dockerd (and its containerd) at a time.
static ONE_DOCKERD: Mutex<()> = Mutex::new(());

/// One runtime of the shared dockerd: its `--runtime` name and the label of its transcript,
/// which also prefixes its container names.
struct Runner<'a> {
    dockerd: &'a Dockerd,
    runtime: &'static str,
    label: &'static str,
}

impl Runner<'_> {
    fn name(&self, scenario: &str) -> String {
        format!("it-{}-{scenario}", self.label)
    }

    /// Replaces this runner's container names (`it-keel-x`) by `it-<rt>-x`, so that both
    /// transcripts read alike.
    fn normalize(&self, text: &str) -> String {
        text.replace(&format!("it-{}-", self.label), "it-<rt>-")
    }

    fn docker_raw(&self, args: &[&str]) -> Result<Outcome> {
        self.dockerd.docker(args)
    }

    /// Runs `docker args` and records its status and (normalized) stdout.
    fn docker(&self, t: &mut Transcript, args: &[&str]) -> Result<Outcome> {
        let out = self.docker_raw(args)?;
        let what = self.normalize(&format!("docker {}", args.join(" ")));
        let output = self.normalize(&out.stdout);
        t.record_output(&what, &out, output);
        Ok(out)
    }

    /// `docker run <flags> --runtime R --network none IMAGE <cmd>`.
    fn run(&self, t: &mut Transcript, flags: &[&str], cmd: &[&str]) -> Result<Outcome> {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--runtime", self.runtime, "--network", "none", IMAGE]);
        args.extend_from_slice(cmd);
        let out = self.docker_raw(&args)?;
        let shown: Vec<&str> = args
            .iter()
            .map(|a| if *a == self.runtime { "<runtime>" } else { a })
            .collect();
        let what = self.normalize(&format!("docker {}", shown.join(" ")));
        // `run -d` prints the new container's id.
        let output = if flags.contains(&"-d") {
            String::new()
        } else {
            out.stdout.clone()
        };
        t.record_output(&what, &out, output);
        Ok(out)
    }

    /// Waits until `docker logs name` shows `needle` `times` times, or the container is not
    /// running (it failed to start or exited); records the logs then.
    fn wait_logs(&self, t: &mut Transcript, name: &str, needle: &str, times: usize) {
        let deadline = Instant::now() + WAIT;
        let logs = loop {
            let logs = self
                .docker_raw(&["logs", name])
                .map(|o| o.stdout)
                .unwrap_or_default();
            let running = self
                .docker_raw(&["inspect", "-f", "{{.State.Running}}", name])
                .is_ok_and(|o| o.stdout.trim() == "true");
            if logs.matches(needle).count() >= times || !running || Instant::now() >= deadline {
                break logs;
            }
            thread::sleep(Duration::from_millis(100));
        };
        t.observe(&format!("logs once {needle:?} x{times}"), logs);
    }

    /// `docker inspect -f FORMAT name`, recorded.
    fn inspect(&self, t: &mut Transcript, name: &str, format: &str) -> Result<()> {
        self.docker(t, &["inspect", "-f", format, name]).map(|_| ())
    }

    /// The number of containers dockerd still has.
    fn observe_containers_left(&self, t: &mut Transcript) -> Result<()> {
        let out = self.docker_raw(&["ps", "-aq"])?;
        t.observe("containers left", out.stdout.lines().count());
        Ok(())
    }
}

/// Runs `scenario` with runc then keel on one dockerd, and compares the transcripts.
fn compare(
    dockerd: &Dockerd,
    scenario: impl Fn(&Runner<'_>, &mut Transcript) -> Result<()>,
) -> Result<()> {
    let mut transcripts = Vec::new();
    for (runtime, label) in [(RUNC_RUNTIME, "runc"), (KEEL_RUNTIME, "keel")] {
        let runner = Runner {
            dockerd,
            runtime,
            label,
        };
        let mut t = Transcript::new(label);
        scenario(&runner, &mut t)?;
        // Nothing of one runtime's pass may linger into the next.
        for id in runner.docker_raw(&["ps", "-aq"])?.stdout.lines() {
            runner.docker_raw(&["rm", "-f", id])?;
        }
        transcripts.push(t);
    }
    let same = expect_same(&transcripts[1], &transcripts[0], &dockerd.problems(20));
    if same.is_ok() {
        // Shown with --nocapture: what both runtimes did.
        println!("{}{}", transcripts[0], transcripts[1]);
    }
    same
}

/// Root, runc, one dockerd at a time, dockerd up with the busybox image; else skip.
macro_rules! dockerd_test {
    ($lock:ident, $dockerd:ident) => {
        require_root!();
        require!(
            has_runc(),
            "runc is not installed (the reference to compare with)"
        );
        let $lock = ONE_DOCKERD.lock().unwrap_or_else(|e| e.into_inner());
        let $dockerd = require_peer!(Dockerd::start(&binary::keel_runtime()?));
        $dockerd.import_busybox()?;
    };
}

#[test]
fn docker_run_gives_runcs_output_and_exit_status() -> Result<()> {
    dockerd_test!(_lock, dockerd);
    compare(&dockerd, |r, t| {
        let script = "echo hello; echo to-stderr >&2; exit 3";
        let out = r.run(t, &["--rm"], &["sh", "-c", script])?;
        t.observe("stderr passed through", out.stderr.contains("to-stderr"));
        r.run(t, &["--rm"], &["true"])?;
        // The view from inside under Docker's spec: capabilities, seccomp, devices, the
        // files dockerd bind-mounts.
        let probe = "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
                     ls /dev | tr '\\n' ' '; echo; \
                     for f in /etc/hosts /etc/hostname /etc/resolv.conf; do \
                       [ -f $f ] && echo $f; done; id";
        r.run(t, &["--rm"], &["sh", "-c", probe])?;
        r.run(
            t,
            &["--rm", "--user", "1000:1000", "--workdir", "/tmp"],
            &["sh", "-c", "id; pwd"],
        )?;
        // dockerd picks the exit status from the runtime's error text: 127 for "no such file
        // or directory" / "executable file not found", 126 for "permission denied".
        r.run(t, &["--rm"], &["/no/such/binary"])?;
        r.run(t, &["--rm"], &["/etc/passwd"])?;
        r.observe_containers_left(t)
    })
}

#[test]
fn docker_exec_in_a_running_container() -> Result<()> {
    dockerd_test!(_lock, dockerd);
    compare(&dockerd, |r, t| {
        let name = r.name("exec");
        // Not `exec sleep`: busybox re-execs its applets through /proc/self/exe and names
        // itself only afterwards, so a probe racing that sees "exe" as PID 1's name.
        let main = "sleep 1000 & echo ready; wait";
        r.run(t, &["-d", "--name", &name], &["sh", "-c", main])?;
        r.wait_logs(t, &name, "ready", 1);
        let probe = "echo in-exec; cat /proc/1/comm; exit 5";
        r.docker(t, &["exec", &name, "sh", "-c", probe])?;
        r.docker(t, &["exec", "-w", "/tmp", &name, "pwd"])?;
        r.docker(t, &["exec", "-u", "1000", &name, "id", "-u"])?;
        r.docker(
            t,
            &["exec", "-e", "FOO=bar", &name, "sh", "-c", "echo $FOO"],
        )?;
        // The status only: dockerd prints the runtime's own error text on the exec's stdout.
        let out = r.docker_raw(&["exec", &name, "/no/such/binary"])?;
        t.record_output("docker exec <name> /no/such/binary", &out, String::new());
        r.inspect(t, &name, "{{.State.Status}}")?;
        r.docker(t, &["rm", "-f", &name])?;
        r.observe_containers_left(t)
    })
}

#[test]
fn docker_stop_signals_then_kills() -> Result<()> {
    dockerd_test!(_lock, dockerd);
    compare(&dockerd, |r, t| {
        let name = r.name("stop");
        let main = "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.1; done";
        r.run(t, &["-d", "--name", &name], &["sh", "-c", main])?;
        r.wait_logs(t, &name, "ready", 1);
        r.docker(t, &["stop", "-t", "10", &name])?;
        r.inspect(t, &name, "{{.State.Status}} {{.State.ExitCode}}")?;
        r.docker(t, &["logs", &name])?;

        // PID 1 without a handler ignores SIGTERM: stop must SIGKILL it after the timeout.
        let stubborn = r.name("stop-kill");
        r.run(t, &["-d", "--name", &stubborn], &["sleep", "1000"])?;
        r.docker(t, &["stop", "-t", "1", &stubborn])?;
        r.inspect(t, &stubborn, "{{.State.Status}} {{.State.ExitCode}}")?;
        r.docker(t, &["rm", &name, &stubborn])?;
        r.observe_containers_left(t)
    })
}

#[test]
fn docker_restart_runs_the_container_again() -> Result<()> {
    dockerd_test!(_lock, dockerd);
    compare(&dockerd, |r, t| {
        let name = r.name("restart");
        // Not `exec sleep`: busybox re-execs its applets through /proc/self/exe and names
        // itself only afterwards, so a probe racing that sees "exe" as PID 1's name.
        let main = "sleep 1000 & echo started; wait";
        r.run(t, &["-d", "--name", &name], &["sh", "-c", main])?;
        r.wait_logs(t, &name, "started", 1);
        r.docker(t, &["restart", "-t", "1", &name])?;
        r.inspect(t, &name, "{{.State.Status}}")?;
        r.wait_logs(t, &name, "started", 2);
        r.docker(t, &["exec", &name, "cat", "/proc/1/comm"])?;
        r.docker(t, &["stop", "-t", "1", &name])?;
        r.docker(t, &["start", &name])?;
        r.inspect(t, &name, "{{.State.Status}}")?;
        r.wait_logs(t, &name, "started", 3);
        r.docker(t, &["rm", "-f", &name])?;
        r.observe_containers_left(t)
    })
}

#[test]
fn docker_logs_keeps_stdout_and_stderr() -> Result<()> {
    dockerd_test!(_lock, dockerd);
    compare(&dockerd, |r, t| {
        let name = r.name("logs");
        let script = "echo out-1; echo err-1 >&2; echo out-2; exit 7";
        r.run(t, &["--name", &name], &["sh", "-c", script])?;
        let out = r.docker_raw(&["logs", &name])?;
        let both = format!("stdout: {:?} stderr: {:?}", out.stdout, out.stderr);
        t.record_output("docker logs <name>", &out, both);

        let detached = r.name("logs-d");
        r.run(
            t,
            &["-d", "--name", &detached],
            &["sh", "-c", "echo bye; exit 0"],
        )?;
        r.docker(t, &["wait", &detached])?;
        r.docker(t, &["logs", &detached])?;
        r.docker(t, &["rm", &name, &detached])?;
        r.observe_containers_left(t)
    })
}
