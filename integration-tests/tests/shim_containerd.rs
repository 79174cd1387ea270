//! containerd-shim-keel-v2 under a real containerd 1.6 (Debian `containerd`), driven with its
//! own `ctr`: `ctr run --runtime io.containerd.keel.v2 --rootfs DIR ...` on a busybox rootfs.
//!
//! Each scenario records what `ctr` and the host showed in a [`Transcript`]. The `keel_shim_*`
//! tests run it on our shim with keel-runtime and check the transcript step by step against
//! the one written down here (what the stock shim gives). The `*_same_as_the_runc_shim` tests
//! run it three times, each on a containerd of its own: on the stock `containerd-shim-runc-v2`
//! with runc (the reference), on our shim with the real runc (`KEEL_SHIM_RUNTIME`: a
//! difference there is the shim's), and on our shim with keel-runtime; all must be the same.

use std::fs;

use anyhow::{ensure, Context, Result};
use keel_integration_tests::peers::ctr_events::CtrEvents;
use keel_integration_tests::peers::keel_shim::{read_pid_file, ShimHost, Stack, WAIT};
use keel_integration_tests::peers::shim_scenario::{
    abridged, ctr, delete, expect_golden, expect_same_on_every_stack, observe_events,
    observe_nothing_left, observe_status, run_scenario, terminal_lines, yes_output, Scenario,
};
use keel_integration_tests::peers::{Outcome, Transcript};
use keel_integration_tests::{host, require_root};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// 2 MiB, the size of the large outputs.
const BIG: usize = 2 * 1024 * 1024;

/// `ctr run --rm ... sh -c script` with a big output, `whole` telling whether it all came.
/// The stock shim reports the exit before its output has been read and ctr 1.6 closes its
/// FIFOs on the exit, so on a loaded machine the reference loses the tail now and then (10 of
/// 100 runs under stress): it gets two more tries. Our shim waits for the reader: one try.
fn run_rm_big(
    h: &ShimHost,
    id: &str,
    script: &str,
    whole: impl Fn(&Outcome) -> bool,
) -> Result<Outcome> {
    let tries = if h.stack().is_keel_shim() { 1 } else { 3 };
    let mut out = h.run_rm(id, script)?;
    for _ in 1..tries {
        if whole(&out) {
            break;
        }
        out = h.run_rm(id, script)?;
    }
    Ok(out)
}

/// `ctr run --rm`: output and exit status through the FIFOs, 2 MiB on stdout and 1 MiB on
/// stderr arriving whole, 1 MiB of stdin through `cat` and its EOF; `ctr run -t` on a pty;
/// `ctr run -d --log-uri file://`; nothing left behind.
fn run_rm(h: &mut ShimHost, t: &mut Transcript) -> Result<()> {
    let out = h.run_rm("rm-echo", "echo hi; echo err >&2")?;
    t.record("ctr run --rm sh -c 'echo hi; echo err >&2'", &out);
    let has_err = out.stderr.lines().any(|l| l == "err");
    t.observe("its stderr has \"err\"", has_err);

    let out = h.run_rm("rm-exit", "echo bye; exit 3")?;
    t.record("ctr run --rm sh -c 'echo bye; exit 3'", &out);

    let script = format!("yes | head -c {BIG}");
    let out = run_rm_big(h, "rm-big", &script, |out| out.stdout.len() == BIG)?;
    t.record_output(
        "ctr run --rm: 2 MiB on stdout",
        &abridged(&out),
        yes_output(&out.stdout),
    );

    let script = format!("yes e | head -c {} >&2; exit 5", BIG / 2);
    let e_lines = |out: &Outcome| out.stderr.lines().take_while(|l| *l == "e").count();
    let out = run_rm_big(h, "rm-big-err", &script, |out| e_lines(out) == BIG / 4)?;
    t.record_output(
        "ctr run --rm: 1 MiB on stderr, exit 5",
        &abridged(&out),
        format!("{} 'e' lines on stderr", e_lines(&out)),
    );

    let input = h.ctrd().dir().join("stdin.txt");
    fs::write(&input, "y\n".repeat(BIG / 4))?;
    let out = h.ctr_with_stdin(&h.run_args(&["--rm"], "rm-stdin", &["/bin/cat"]), &input)?;
    let summary = yes_output(&out.stdout);
    t.record_output("ctr run --rm cat < 1 MiB", &abridged(&out), summary);

    // A reader slower than ctr's writer: data is still in the FIFO when ctr closes stdin.
    let lines = ("y".repeat(63) + "\n").repeat(4096);
    fs::write(&input, lines)?;
    let count = "n=0; while read -r l; do n=$((n+1)); done; echo $n";
    let args = h.run_args(&["--rm"], "rm-stdin-slow", &["/bin/sh", "-c", count]);
    let out = h.ctr_with_stdin(&args, &input)?;
    t.record("ctr run --rm: 4096 lines to a slow reader", &out);

    let script = "tty; echo hi; exit 2";
    let args = h.run_args(&["--rm", "-t"], "rm-tty", &["/bin/sh", "-c", script]);
    let out = h.ctr_on_a_pty(&args)?;
    let lines = terminal_lines(&out.stdout, &["hi"]);
    t.record_output(&format!("ctr run -t --rm sh -c '{script}'"), &out, lines);

    let out = h.run(&["--rm"], "rm-missing", &["/no/such/binary"])?;
    t.record("ctr run --rm /no/such/binary", &out);

    let log = h.ctrd().dir().join("rm-log.out");
    let uri = format!("file://{}", log.display());
    let script = "echo to-log; echo err-to-log >&2";
    let out = h.run(
        &["-d", "--log-uri", &uri],
        "rm-log",
        &["/bin/sh", "-c", script],
    )?;
    t.record("ctr run -d --log-uri file://...", &out);
    observe_status(h, t, "rm-log", "STOPPED")?;
    host::wait_until(WAIT, || {
        fs::read_to_string(&log).is_ok_and(|text| text.lines().count() >= 2)
    });
    let text = fs::read_to_string(&log).unwrap_or_default();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    t.observe("the log file's lines", lines.join(" "));
    delete(h, t, "rm-log")?;

    let ids = "rm-echo rm-exit rm-big rm-big-err rm-stdin rm-stdin-slow rm-tty rm-missing rm-log";
    for id in ids.split(' ') {
        observe_nothing_left(h, t, id)?;
    }
    t.observe("left overall", format!("{:?}", h.leftovers_overall()?));
    Ok(())
}

/// A task's life with `ctr`: run -d, exec (output, status, 2 MiB, a missing binary), ps,
/// pause/resume, metrics, kill (SIGTERM to a trap, then SIGKILL), delete; the task events
/// `ctr events` saw; nothing left.
fn lifecycle(h: &mut ShimHost, t: &mut Transcript) -> Result<()> {
    let id = "life";
    let events = CtrEvents::watch(h.ctrd())?;
    h.start_task(id, "trap 'exit 42' TERM; while :; do sleep 0.1; done")?;
    observe_status(h, t, id, "RUNNING")?;

    let script = "echo out; echo err >&2; exit 4";
    let out = h.exec(id, "probe", &["/bin/sh", "-c", script])?;
    t.record(&format!("ctr task exec sh -c '{script}'"), &out);
    let has_err = out.stderr.lines().any(|l| l == "err");
    t.observe("its stderr has \"err\"", has_err);
    let big = format!("yes | head -c {BIG}");
    let out = h.exec(id, "big", &["/bin/sh", "-c", &big])?;
    t.record_output(
        "ctr task exec: 2 MiB on stdout",
        &abridged(&out),
        yes_output(&out.stdout),
    );
    let out = h.exec(id, "missing", &["/no/such/binary"])?;
    t.record_output("ctr task exec /no/such/binary", &out, String::new());

    let out = h.ctrd().ctr(&["task", "ps", id])?;
    let pids: Vec<i32> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    t.record_output("ctr task ps", &out, String::new());
    let init = h.ctrd().task_pid(id)?;
    t.observe(
        "ps lists the task's pid",
        init.is_some_and(|p| pids.contains(&p)),
    );

    let cgroup = format!("/{}/{id}", h.ctrd().namespace());
    let freezer = || {
        host::read_cgroup_file("freezer", &cgroup, "freezer.state")
            .unwrap_or_else(|e| format!("{e:#}"))
    };
    ctr(h, t, &["task", "pause", id])?;
    observe_status(h, t, id, "PAUSED")?;
    t.observe("freezer.state", freezer());
    ctr(h, t, &["task", "resume", id])?;
    observe_status(h, t, id, "RUNNING")?;
    t.observe("freezer.state", freezer());

    let out = h.ctrd().ctr(&["task", "metrics", id])?;
    let rows: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("METRIC"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    t.record_output("ctr task metrics: rows", &out, rows.join(" "));

    ctr(h, t, &["task", "kill", id])?;
    observe_status(h, t, id, "STOPPED")?;
    delete(h, t, id)?;

    let killed = "life-kill";
    h.start_task(killed, "exec sleep 1000")?;
    ctr(h, t, &["task", "kill", "-s", "SIGKILL", killed])?;
    observe_status(h, t, killed, "STOPPED")?;
    delete(h, t, killed)?;

    for id in [id, killed] {
        observe_events(t, &events, id, "/tasks/delete", false);
        observe_nothing_left(h, t, id)?;
    }
    t.observe("left overall", format!("{:?}", h.leftovers_overall()?));
    Ok(())
}

/// containerd SIGKILLed while tasks run: they and their shims run on, and one exits
/// meanwhile; containerd restarted on the same dirs finds the first RUNNING (execs in it,
/// kills and deletes it) and the other STOPPED with its exit status.
fn containerd_restart(h: &mut ShimHost, t: &mut Transcript) -> Result<()> {
    let id = "survivor";
    h.start_task(id, "exec sleep 1000")?;
    observe_status(h, t, id, "RUNNING")?;
    let bundle = h.bundle(id);
    let files: Vec<&str> = ["address", "log.json", "options.json"]
        .into_iter()
        .filter(|f| bundle.join(f).exists())
        .collect();
    t.observe("bundle files", files.join(" "));
    let address = fs::read_to_string(bundle.join("address")).unwrap_or_default();
    let socket = h.shim_socket(id);
    t.observe(
        "address names the shim's socket, which exists",
        address.trim() == format!("unix://{}", socket.display()) && socket.exists(),
    );
    let shims = h.shims(Some(id));
    t.observe("shim processes of the task", shims.len());
    if h.stack().is_keel_shim() {
        let pid_file = read_pid_file(&bundle.join("shim.pid"));
        ensure!(
            pid_file.is_some() && shims == [pid_file.unwrap_or(0)],
            "shim.pid in {} says {pid_file:?}; the task's shims are {shims:?}",
            bundle.display()
        );
    }
    let pid = h.ctrd().task_pid(id)?.context("ctr task ls shows no pid")?;
    let quitter = "quitter";
    h.start_task(
        quitter,
        "while [ ! -e /tmp/stop ]; do sleep 0.1; done; exit 7",
    )?;
    let quitter_pid = h.ctrd().task_pid(quitter)?.context("no pid for quitter")?;

    h.ctrd_mut().kill();
    let shims_alive = !shims.is_empty() && shims.iter().all(|&p| host::pid_alive(p));
    t.observe("containerd killed: task alive", host::pid_alive(pid));
    t.observe("containerd killed: shim alive", shims_alive);
    fs::write(h.rootfs().join("tmp/stop"), "")?;
    let quit = host::wait_until(WAIT, || !host::pid_alive(quitter_pid));
    t.observe("the other task exited meanwhile", quit);
    h.ctrd_mut().restart()?;
    observe_status(h, t, id, "RUNNING")?;
    t.observe("same pid", h.ctrd().task_pid(id)? == Some(pid));
    observe_status(h, t, quitter, "STOPPED")?;
    delete(h, t, quitter)?;

    let out = h.exec(
        id,
        "after",
        &["/bin/sh", "-c", "echo after-restart; exit 6"],
    )?;
    t.record("ctr task exec sh -c 'echo after-restart; exit 6'", &out);
    ctr(h, t, &["task", "kill", "-s", "SIGKILL", id])?;
    observe_status(h, t, id, "STOPPED")?;
    delete(h, t, id)?;
    observe_nothing_left(h, t, id)?;
    observe_nothing_left(h, t, quitter)?;
    t.observe("left overall", format!("{:?}", h.leftovers_overall()?));
    Ok(())
}

/// The shim SIGKILLed under a running task: containerd cleans up with the shim binary's
/// `delete` (the container killed, exit 137 published), and the task is gone.
fn shim_killed(h: &mut ShimHost, t: &mut Transcript) -> Result<()> {
    let id = "orphan";
    let events = CtrEvents::watch(h.ctrd())?;
    h.start_task(id, "exec sleep 1000")?;
    let pid = h.ctrd().task_pid(id)?.context("ctr task ls shows no pid")?;
    let shims = h.shims(Some(id));
    t.observe("shim processes of the task", shims.len());
    for shim in shims {
        let _ = kill(Pid::from_raw(shim), Signal::SIGKILL);
    }
    t.observe(
        "the task's process is killed",
        host::wait_until(WAIT, || !host::pid_alive(pid)),
    );
    host::wait_until(WAIT, || h.ctrd().task_status(id).is_ok_and(|s| s.is_none()));
    let status = h.ctrd().task_status(id)?;
    t.observe(
        "ctr task ls: status",
        status.unwrap_or_else(|| "no task".into()),
    );
    observe_events(t, &events, id, "/tasks/delete", false);
    ctr(h, t, &["containers", "delete", id])?;
    // The stock shim's socket outlives a SIGKILL (nothing removes it): removed, not compared.
    let but_socket = |left: Vec<String>| -> Vec<String> {
        left.into_iter()
            .filter(|w| !w.starts_with("shim socket"))
            .collect()
    };
    host::wait_until(WAIT, || {
        h.leftovers(id).is_ok_and(|l| but_socket(l).is_empty())
    });
    let left = but_socket(h.leftovers(id)?);
    t.observe(
        &format!("left of {id} (but the shim's socket)"),
        format!("{left:?}"),
    );
    let _ = fs::remove_file(h.shim_socket(id));
    t.observe("left overall", format!("{:?}", h.leftovers_overall()?));
    Ok(())
}

/// Refusals and signals as `ctr` shows them (statuses; the wording is not compared): an exec
/// id used twice, an exec killed by SIGKILL, an exec in a paused task, deleting a running task,
/// `kill --all`, kill and exec after the exit, deleting twice; an exec's stdin to a slow
/// reader; an OOM kill under `--memory-limit` and its `/tasks/oom` event.
fn refusals_signals_and_oom(h: &mut ShimHost, t: &mut Transcript) -> Result<()> {
    let id = "edge";
    let events = CtrEvents::watch(h.ctrd())?;
    h.start_task(id, "exec sleep 1000")?;
    let out = h.exec_with(&["-d"], id, "bg", &["/bin/sleep", "1000"])?;
    t.record("ctr task exec -d --exec-id bg sleep 1000", &out);
    let out = h.exec(id, "bg", &["/bin/true"])?;
    t.record("ctr task exec --exec-id bg, again", &out);
    let out = h.exec(id, "sig", &["/bin/sh", "-c", "kill -9 $$"])?;
    t.record("ctr task exec sh -c 'kill -9 $$'", &out);
    let tty = "tty; echo hi; exit 3";
    let out = h.ctr_on_a_pty(&h.exec_args(&["-t"], id, "tty", &["/bin/sh", "-c", tty]))?;
    let lines = terminal_lines(&out.stdout, &["hi"]);
    t.record_output(&format!("ctr task exec -t sh -c '{tty}'"), &out, lines);
    let input = h.ctrd().dir().join("exec-stdin.txt");
    fs::write(&input, ("y".repeat(63) + "\n").repeat(4096))?;
    let count = "n=0; while read -r l; do n=$((n+1)); done; echo $n";
    let args = h.exec_args(&[], id, "stdin", &["/bin/sh", "-c", count]);
    let out = h.ctr_with_stdin(&args, &input)?;
    t.record("ctr task exec: 4096 lines to a slow reader", &out);
    let out = h.ctrd().ctr(&["task", "ps", id])?;
    let processes = out.stdout.lines().count().saturating_sub(1);
    t.record_output("ctr task ps: processes", &out, processes.to_string());

    ctr(h, t, &["task", "pause", id])?;
    let out = h.exec(id, "paused", &["/bin/true"])?;
    t.record("ctr task exec in the paused task", &out);
    ctr(h, t, &["task", "resume", id])?;
    ctr(h, t, &["task", "delete", id])?;
    ctr(h, t, &["task", "kill", "--all", "-s", "SIGKILL", id])?;
    observe_status(h, t, id, "STOPPED")?;
    ctr(h, t, &["task", "kill", id])?;
    let out = h.exec(id, "late", &["/bin/true"])?;
    t.record("ctr task exec in the stopped task", &out);
    delete(h, t, id)?;
    ctr(h, t, &["task", "delete", id])?;
    // The execs and init die together: their exits come in any order.
    observe_events(t, &events, id, "/tasks/delete", true);
    observe_nothing_left(h, t, id)?;

    let oom = "oom";
    let hog = "dd if=/dev/zero of=/dev/null bs=64M count=1; exit 9";
    h.start_task_with(&["--memory-limit", "33554432"], oom, hog)?;
    observe_status(h, t, oom, "STOPPED")?;
    delete(h, t, oom)?;
    observe_events(t, &events, oom, "/tasks/delete", true);
    observe_nothing_left(h, t, oom)?;
    t.observe("left overall", format!("{:?}", h.leftovers_overall()?));
    Ok(())
}

/// What `run_rm` gives on the stock shim.
#[rustfmt::skip]
const RUN_RM: &[(&str, i32, &str)] = &[
    ("ctr run --rm sh -c 'echo hi; echo err >&2'", 0, "hi\n"),
    ("its stderr has \"err\"", 0, "true"),
    ("ctr run --rm sh -c 'echo bye; exit 3'", 3, "bye\n"),
    ("ctr run --rm: 2 MiB on stdout", 0, "2097152 bytes, all \"y\" lines: true"),
    ("ctr run --rm: 1 MiB on stderr, exit 5", 5, "524288 'e' lines on stderr"),
    ("ctr run --rm cat < 1 MiB", 0, "1048576 bytes, all \"y\" lines: true"),
    ("ctr run --rm: 4096 lines to a slow reader", 0, "4096\n"),
    ("ctr run -t --rm sh -c 'tty; echo hi; exit 2'", 2, "/dev/pts/N hi"),
    ("ctr run --rm /no/such/binary", 1, ""),
    ("ctr run -d --log-uri file://...", 0, ""),
    ("ctr task ls: status", 0, "STOPPED"),
    ("the log file's lines", 0, "err-to-log to-log"),
    ("ctr task delete rm-log", 0, ""),
    ("exit code reported by delete", 0, "0"),
    ("ctr containers delete rm-log", 0, ""),
    ("left of rm-echo", 0, "[]"),
    ("left of rm-exit", 0, "[]"),
    ("left of rm-big", 0, "[]"),
    ("left of rm-big-err", 0, "[]"),
    ("left of rm-stdin", 0, "[]"),
    ("left of rm-stdin-slow", 0, "[]"),
    ("left of rm-tty", 0, "[]"),
    ("left of rm-missing", 0, "[]"),
    ("left of rm-log", 0, "[]"),
    ("left overall", 0, "[]"),
];

/// What `lifecycle` gives on the stock shim.
#[rustfmt::skip]
const LIFECYCLE: &[(&str, i32, &str)] = &[
    ("ctr task ls: status", 0, "RUNNING"),
    ("ctr task exec sh -c 'echo out; echo err >&2; exit 4'", 4, "out\n"),
    ("its stderr has \"err\"", 0, "true"),
    ("ctr task exec: 2 MiB on stdout", 0, "2097152 bytes, all \"y\" lines: true"),
    ("ctr task exec /no/such/binary", 1, ""),
    ("ctr task ps", 0, ""),
    ("ps lists the task's pid", 0, "true"),
    ("ctr task pause life", 0, ""),
    ("ctr task ls: status", 0, "PAUSED"),
    ("freezer.state", 0, "FROZEN"),
    ("ctr task resume life", 0, ""),
    ("ctr task ls: status", 0, "RUNNING"),
    ("freezer.state", 0, "THAWED"),
    ("ctr task metrics: rows", 0, METRIC_ROWS),
    ("ctr task kill life", 0, ""),
    ("ctr task ls: status", 0, "STOPPED"),
    ("ctr task delete life", 0, ""),
    ("exit code reported by delete", 0, "42"),
    ("ctr containers delete life", 0, ""),
    ("ctr task kill -s SIGKILL life-kill", 0, ""),
    ("ctr task ls: status", 0, "STOPPED"),
    ("ctr task delete life-kill", 0, ""),
    ("exit code reported by delete", 0, "137"),
    ("ctr containers delete life-kill", 0, ""),
    ("ctr events for life", 0, LIFE_EVENTS),
    ("left of life", 0, "[]"),
    ("ctr events for life-kill", 0, LIFE_KILL_EVENTS),
    ("left of life-kill", 0, "[]"),
    ("left overall", 0, "[]"),
];

/// The rows of `ctr task metrics` (cgroup v1 metrics).
const METRIC_ROWS: &str = "memory.usage_in_bytes memory.limit_in_bytes memory.stat.cache \
    cpuacct.usage cpuacct.usage_percpu pids.current pids.limit";

/// The task events of the `life` task, in order (`exit`/`delete` with the exit status).
const LIFE_EVENTS: &str = "/tasks/create, /tasks/start, \
    /tasks/exec-added probe, /tasks/exec-started probe, /tasks/exit probe 4, \
    /tasks/exec-added big, /tasks/exec-started big, /tasks/exit big 0, \
    /tasks/exec-added missing, /tasks/paused, /tasks/resumed, \
    /tasks/exit init 42, /tasks/delete 42";

/// The task events of a SIGKILLed task (of a task whose shim was SIGKILLed too).
const LIFE_KILL_EVENTS: &str =
    "/tasks/create, /tasks/start, /tasks/exit init 137, /tasks/delete 137";

/// What `refusals_signals_and_oom` gives on the stock shim.
#[rustfmt::skip]
const EDGES: &[(&str, i32, &str)] = &[
    ("ctr task exec -d --exec-id bg sleep 1000", 0, ""),
    ("ctr task exec --exec-id bg, again", 1, ""),
    ("ctr task exec sh -c 'kill -9 $$'", 137, ""),
    ("ctr task exec -t sh -c 'tty; echo hi; exit 3'", 3, "/dev/pts/N hi"),
    ("ctr task exec: 4096 lines to a slow reader", 0, "4096\n"),
    ("ctr task ps: processes", 0, "2"),
    ("ctr task pause edge", 0, ""),
    ("ctr task exec in the paused task", 1, ""),
    ("ctr task resume edge", 0, ""),
    ("ctr task delete edge", 1, ""),
    ("ctr task kill --all -s SIGKILL edge", 0, ""),
    ("ctr task ls: status", 0, "STOPPED"),
    ("ctr task kill edge", 1, ""),
    ("ctr task exec in the stopped task", 1, ""),
    ("ctr task delete edge", 0, ""),
    ("exit code reported by delete", 0, "137"),
    ("ctr containers delete edge", 0, ""),
    ("ctr task delete edge", 1, ""),
    ("ctr events for edge", 0, EDGE_EVENTS),
    ("left of edge", 0, "[]"),
    ("ctr task ls: status", 0, "STOPPED"),
    ("ctr task delete oom", 0, ""),
    ("exit code reported by delete", 0, "9"),
    ("ctr containers delete oom", 0, ""),
    ("ctr events for oom", 0, OOM_EVENTS),
    ("left of oom", 0, "[]"),
    ("left overall", 0, "[]"),
];

/// The task events of the `oom` task, sorted.
const OOM_EVENTS: &str =
    "/tasks/create, /tasks/delete 9, /tasks/exit init 9, /tasks/oom, /tasks/start";

/// The task events of the `edge` task, sorted.
const EDGE_EVENTS: &str = "/tasks/create, /tasks/delete 137, \
    /tasks/exec-added bg, /tasks/exec-added sig, /tasks/exec-added stdin, /tasks/exec-added tty, \
    /tasks/exec-started bg, /tasks/exec-started sig, /tasks/exec-started stdin, \
    /tasks/exec-started tty, /tasks/exit bg 137, /tasks/exit init 137, /tasks/exit sig 137, \
    /tasks/exit stdin 0, /tasks/exit tty 3, \
    /tasks/paused, /tasks/resumed, /tasks/start";

/// What `shim_killed` gives on the stock shim.
#[rustfmt::skip]
const SHIM_KILLED: &[(&str, i32, &str)] = &[
    ("shim processes of the task", 0, "1"),
    ("the task's process is killed", 0, "true"),
    ("ctr task ls: status", 0, "no task"),
    ("ctr events for orphan", 0, LIFE_KILL_EVENTS),
    ("ctr containers delete orphan", 0, ""),
    ("left of orphan (but the shim's socket)", 0, "[]"),
    ("left overall", 0, "[]"),
];

/// What `containerd_restart` gives on the stock shim.
#[rustfmt::skip]
const RESTART: &[(&str, i32, &str)] = &[
    ("ctr task ls: status", 0, "RUNNING"),
    ("bundle files", 0, "address log.json options.json"),
    ("address names the shim's socket, which exists", 0, "true"),
    ("shim processes of the task", 0, "1"),
    ("containerd killed: task alive", 0, "true"),
    ("containerd killed: shim alive", 0, "true"),
    ("the other task exited meanwhile", 0, "true"),
    ("ctr task ls: status", 0, "RUNNING"),
    ("same pid", 0, "true"),
    ("ctr task ls: status", 0, "STOPPED"),
    ("ctr task delete quitter", 0, ""),
    ("exit code reported by delete", 0, "7"),
    ("ctr containers delete quitter", 0, ""),
    ("ctr task exec sh -c 'echo after-restart; exit 6'", 6, "after-restart\n"),
    ("ctr task kill -s SIGKILL survivor", 0, ""),
    ("ctr task ls: status", 0, "STOPPED"),
    ("ctr task delete survivor", 0, ""),
    ("exit code reported by delete", 0, "137"),
    ("ctr containers delete survivor", 0, ""),
    ("left of survivor", 0, "[]"),
    ("left of quitter", 0, "[]"),
    ("left overall", 0, "[]"),
];

#[test]
fn keel_shim_run_rm_output_exit_status_and_cleanup() -> Result<()> {
    expect_golden(run_rm, RUN_RM)
}

#[test]
fn keel_shim_task_lifecycle_and_events() -> Result<()> {
    expect_golden(lifecycle, LIFECYCLE)
}

#[test]
fn keel_shim_survives_a_containerd_restart() -> Result<()> {
    expect_golden(containerd_restart, RESTART)
}

#[test]
fn keel_shim_killed_is_cleaned_up_by_containerd() -> Result<()> {
    expect_golden(shim_killed, SHIM_KILLED)
}

#[test]
fn keel_shim_refusals_signals_and_oom() -> Result<()> {
    expect_golden(refusals_signals_and_oom, EDGES)
}

#[test]
fn run_rm_same_as_the_runc_shim() -> Result<()> {
    expect_same_on_every_stack(run_rm)
}

#[test]
fn lifecycle_same_as_the_runc_shim() -> Result<()> {
    expect_same_on_every_stack(lifecycle)
}

#[test]
fn containerd_restart_same_as_the_runc_shim() -> Result<()> {
    expect_same_on_every_stack(containerd_restart)
}

#[test]
fn shim_killed_same_as_the_runc_shim() -> Result<()> {
    expect_same_on_every_stack(shim_killed)
}

#[test]
fn refusals_signals_and_oom_same_as_the_runc_shim() -> Result<()> {
    expect_same_on_every_stack(refusals_signals_and_oom)
}

/// The reference scenarios alone, on the stock shim: `--ignored`, to write down the goldens.
#[test]
#[ignore = "prints the stock shim's transcripts, from which the goldens above are written"]
fn print_the_runc_shims_transcripts() -> Result<()> {
    require_root!();
    for scenario in [
        run_rm as Scenario,
        lifecycle,
        containerd_restart,
        shim_killed,
        refusals_signals_and_oom,
    ] {
        if let Some((t, _)) = run_scenario(Stack::RuncShim, scenario)? {
            for step in t.steps() {
                println!("    ({:?}, {}, {:?}),", step.what, step.status, step.output);
            }
            println!();
        }
    }
    Ok(())
}
