//! keel-containerd SIGKILLed while 10 containers run (`ctr run -d ... sleep 1000`): the
//! containers and their shims run on; one more container, whose process exits while the
//! daemon is down, is found stopped with its exit status; keel-containerd restarted on the
//! same dirs lists the 10 RUNNING with the same pids, can exec into them, and each can be
//! killed with its exit status (137) reported by `ctr task rm`; nothing is left afterwards.
//! Through our shim, and through the stock `containerd-shim-runc-v2` on runc.

use std::fs;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use keel_integration_tests::peers::keel_containerd::Supervisor;
use keel_integration_tests::peers::keel_shim::{ShimHost, Stack, WAIT};
use keel_integration_tests::peers::shim_scenario::reported_exit;
use keel_integration_tests::{binary, host, require, require_peer, require_root};

/// How many containers run through the restart.
const RUNNING: usize = 10;

/// Runs the restart on `stack` and checks every step (see the module's doc).
fn survives_a_sigkill(stack: Stack) -> Result<()> {
    let mut h = require_peer!(ShimHost::start_on(Supervisor::KeelContainerd, stack));
    let log = |h: &ShimHost| format!("keel-containerd's log:\n{}", h.problems());
    let ids: Vec<String> = (0..RUNNING).map(|n| format!("survivor-{n}")).collect();
    for id in &ids {
        h.run(&["-d"], id, &["/bin/sleep", "1000"])?
            .ok(&format!("ctr run -d {id}"))
            .with_context(|| log(&h))?;
    }
    let quitter = "quitter";
    h.start_task(
        quitter,
        "while [ ! -e /tmp/stop ]; do sleep 0.1; done; exit 7",
    )?;
    let mut pids = Vec::new();
    for id in &ids {
        ensure!(
            h.ctrd().wait_task_status(id, "RUNNING", WAIT),
            "{id} is {:?}, not RUNNING; {}",
            h.ctrd().task_status(id)?,
            log(&h)
        );
        pids.push(h.ctrd().task_pid(id)?.context("no pid in ctr task ls")?);
    }
    let quitter_pid = h.ctrd().task_pid(quitter)?.context("no pid for quitter")?;
    let shims = h.shims(None);
    ensure!(
        shims.len() == RUNNING + 1,
        "{} shims for {} tasks: {shims:?}",
        shims.len(),
        RUNNING + 1
    );

    h.ctrd_mut().kill();
    ensure!(
        !h.ctrd_mut().is_running(),
        "keel-containerd survived SIGKILL"
    );
    fs::write(h.rootfs().join("tmp/stop"), "")?;
    ensure!(
        host::wait_until(WAIT, || !host::pid_alive(quitter_pid)),
        "quitter did not exit while keel-containerd was down"
    );
    // Give a dead supervisor's absence time to matter (a shim that exits on losing it).
    std::thread::sleep(Duration::from_secs(1));
    let dead: Vec<_> = ids
        .iter()
        .zip(&pids)
        .filter(|(_, &pid)| !host::pid_alive(pid))
        .collect();
    ensure!(
        dead.is_empty(),
        "dead once keel-containerd was killed: {dead:?}"
    );
    let dead_shims: Vec<_> = shims.iter().filter(|&&p| !host::pid_alive(p)).collect();
    ensure!(dead_shims.is_empty(), "shims dead: {dead_shims:?}");

    h.ctrd_mut().restart()?;
    for (id, &pid) in ids.iter().zip(&pids) {
        let (status, now) = (h.ctrd().task_status(id)?, h.ctrd().task_pid(id)?);
        ensure!(
            status.as_deref() == Some("RUNNING") && now == Some(pid),
            "after the restart {id} is {status:?} with pid {now:?} (was RUNNING, pid {pid}); {}",
            log(&h)
        );
    }
    ensure!(
        h.ctrd().wait_task_status(quitter, "STOPPED", WAIT),
        "after the restart quitter is {:?}, not STOPPED; {}",
        h.ctrd().task_status(quitter)?,
        log(&h)
    );
    let out = h
        .ctrd()
        .ctr(&["task", "rm", quitter])?
        .ok("ctr task rm quitter")?;
    ensure!(reported_exit(&out) == 7, "quitter's exit: {:?}", out.stderr);
    h.ctrd()
        .ctr(&["containers", "rm", quitter])?
        .ok("ctr containers rm quitter")?;

    let out = h.exec(
        &ids[0],
        "after",
        &["/bin/sh", "-c", "echo after-restart; exit 6"],
    )?;
    ensure!(
        (out.status, out.stdout.as_str()) == (6, "after-restart\n"),
        "exec after the restart: {out:?}; {}",
        log(&h)
    );
    for id in &ids {
        h.ctrd()
            .ctr(&["task", "kill", "-s", "SIGKILL", id])?
            .ok(&format!("ctr task kill {id}"))
            .with_context(|| log(&h))?;
    }
    for id in &ids {
        ensure!(
            h.ctrd().wait_task_status(id, "STOPPED", WAIT),
            "{id} is {:?} after SIGKILL; {}",
            h.ctrd().task_status(id)?,
            log(&h)
        );
        let out = h
            .ctrd()
            .ctr(&["task", "rm", id])?
            .ok(&format!("ctr task rm {id}"))?;
        ensure!(
            reported_exit(&out) == 137,
            "ctr task rm {id} reported {:?}, not exit status 137",
            out.stderr.trim()
        );
        h.ctrd()
            .ctr(&["containers", "rm", id])?
            .ok("ctr containers rm")?;
    }
    for id in ids.iter().map(String::as_str).chain([quitter]) {
        let left = h.wait_nothing_left(id)?;
        ensure!(left.is_empty(), "left of {id}: {left:?}");
    }
    let left = h.leftovers_overall()?;
    ensure!(left.is_empty(), "left overall: {left:?}");
    Ok(())
}

#[test]
fn ten_containers_survive_a_sigkill_of_keel_containerd_through_our_shim() -> Result<()> {
    require_root!();
    survives_a_sigkill(Stack::KeelShim)
}

#[test]
fn ten_containers_survive_a_sigkill_of_keel_containerd_through_the_runc_shim() -> Result<()> {
    require_root!();
    require!(
        binary::has_runc(),
        "runc is not installed (the stock shim's runtime)"
    );
    survives_a_sigkill(Stack::RuncShim)
}
