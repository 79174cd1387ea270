//! Debian's `ctr` (containerd 1.6's own client) driving keel-containerd, our supervisor, on a
//! busybox rootfs (`ctr run --rootfs DIR`): namespaces, containers, `run --rm`, a task's life
//! (`run -d`, `task ls/exec/ps/pause/resume/metrics/kill/rm`), leases, and the events `ctr
//! events` sees meanwhile.
//!
//! Each scenario records what `ctr` and the host showed in a [`Transcript`]. The
//! `keel_containerd_*` tests run it on keel-containerd with our shim on keel-runtime and check
//! the transcript against the one written down here (what containerd 1.6 gives). The
//! `*_same_as_containerd` tests run it on a real containerd 1.6 with its stock shim on runc
//! (the reference), then on keel-containerd with our shim and with the stock shim
//! (`--runtime io.containerd.runc.v2 --runc-binary <runc>`), each on a daemon of its own; all
//! must be the same, once what legitimately differs (names of the namespace and temp dir,
//! the runtime's name, versions, timestamps, pids) is normalised.

use anyhow::{Context, Result};
use keel_integration_tests::peers::ctr_events::CtrEvents;
use keel_integration_tests::peers::keel_containerd::Supervisor;
use keel_integration_tests::peers::keel_shim::{ShimHost, Stack};
use keel_integration_tests::peers::shim_scenario::{
    abridged, delete, observe_nothing_left, observe_status, run_scenario_on, Scenario,
};
use keel_integration_tests::peers::supervisor_scenario::{
    container_info, ctr, expect_golden, expect_same_as_containerd, normalise,
    observe_namespace_changes, observe_namespace_events, table, REFERENCE,
};
use keel_integration_tests::peers::Transcript;
use keel_integration_tests::require_root;

/// Namespaces (create, a duplicate, labels, ls, rm; rm of one that still has a container
/// fails), containers without tasks (create, a duplicate, ls, info, rm, and once removed),
/// leases, the version's fields.
fn namespaces_and_containers(h: &mut ShimHost, t: &mut Transcript) -> Result<()> {
    let out = h.ctrd().ctr(&["version"])?;
    let fields: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_once(':').map(|(key, _)| key.trim()))
        .collect();
    t.record_output("ctr version: fields", &out, fields.join(" "));

    let events = CtrEvents::watch(h.ctrd())?;
    ctr(h, t, &["namespaces", "create", "it-a"])?;
    ctr(h, t, &["namespaces", "create", "it-a"])?;
    ctr(h, t, &["namespaces", "create", "it-b", "team=keel"])?;
    // One label per call: ctr sends one Update per label of a call, in Go's random map order.
    ctr(h, t, &["namespaces", "label", "it-a", "a=1"])?;
    ctr(h, t, &["namespaces", "label", "it-a", "b=2"])?;
    ctr(h, t, &["namespaces", "label", "it-a", "b="])?;
    ctr(h, t, &["namespaces", "ls"])?;
    ctr(h, t, &["namespaces", "ls", "-q"])?;
    ctr(h, t, &["namespaces", "rm", "it-a", "it-b"])?;
    // ctr ignores NotFound here. (Labelling a removed namespace is left out: containerd
    // makes it again, keel-containerd answers NotFound, as the issue asks.)
    ctr(h, t, &["namespaces", "rm", "it-a"])?;

    let rootfs = h.rootfs().display().to_string();
    let runtime = h.stack().runtime_name();
    for id in ["c1", "c1", "c2"] {
        let create = [
            "containers",
            "create",
            "--runtime",
            runtime,
            "--label",
            "role=test",
            "--rootfs",
            &rootfs,
            id,
            "/bin/true",
        ];
        let out = h.ctrd().ctr(&create)?;
        t.record(&format!("ctr containers create {id}"), &out);
    }
    let out = h.ctrd().ctr(&["containers", "ls"])?;
    t.record_output("ctr containers ls", &out, table(h, &out.stdout, 3));
    ctr(h, t, &["containers", "ls", "-q"])?;
    ctr(h, t, &["containers", "ls", "-q", "labels.role==test"])?;
    ctr(h, t, &["containers", "ls", "-q", "id==c2"])?;
    let out = h.ctrd().ctr(&["containers", "info", "c1"])?;
    let (out, info) = container_info(h, &out);
    t.record_output("ctr containers info c1", &out, info);
    let ns = h.ctrd().namespace().to_string();
    let out = h.ctrd().ctr(&["namespaces", "rm", &ns])?;
    t.record_output(
        "ctr namespaces rm NS (not empty)",
        &out,
        normalise(h, &out.stdout),
    );
    ctr(h, t, &["containers", "rm", "c1", "c2"])?;
    ctr(h, t, &["containers", "info", "c1"])?;
    ctr(h, t, &["containers", "rm", "c1"])?;
    ctr(h, t, &["containers", "ls", "-q"])?;
    let out = h.ctrd().ctr(&["leases", "ls"])?;
    t.record_output("ctr leases ls", &out, table(h, &out.stdout, 1));
    ctr(h, t, &["namespaces", "rm", &ns])?;
    ctr(h, t, &["namespaces", "ls", "-q"])?;
    // it-a: create, 3 updates (one per label), delete; it-b: create, delete; NS: delete.
    observe_namespace_changes(h, t, &events, &["it-a", "it-b", &ns], 8);
    observe_namespace_events(h, t, &events, ("c2", "/containers/delete"), false);
    Ok(())
}

/// `ctr run --rm`: output, exit statuses, a missing binary, nothing left behind.
fn run_rm(h: &mut ShimHost, t: &mut Transcript) -> Result<()> {
    let out = h.run_rm("rm-echo", "echo hi")?;
    t.record("ctr run --rm sh -c 'echo hi'", &out);
    let out = h.run_rm("rm-exit", "echo bye; exit 3")?;
    t.record("ctr run --rm sh -c 'echo bye; exit 3'", &out);
    let out = h.run(&["--rm"], "rm-missing", &["/no/such/binary"])?;
    t.record("ctr run --rm /no/such/binary", &out);
    let out = h.run(&["--rm"], "rm-true", &["/bin/true"])?;
    t.record("ctr run --rm /bin/true", &out);
    ctr(h, t, &["task", "ls", "-q"])?;
    ctr(h, t, &["containers", "ls", "-q"])?;
    for id in ["rm-echo", "rm-exit", "rm-missing", "rm-true"] {
        observe_nothing_left(h, t, id)?;
    }
    t.observe("left overall", format!("{:?}", h.leftovers_overall()?));
    Ok(())
}

/// A task's life: `run -d`, `task ls`, `containers ls/info`, `task exec --exec-id` (output,
/// status, a duplicate exec id, a missing binary), `task ps`, `pause/resume`, `metrics`,
/// `kill` (SIGTERM to a trap, then SIGKILL: 137), `task rm` (a running one is refused),
/// `leases ls`, `containers rm`; the events `ctr events` saw meanwhile; nothing left.
fn lifecycle(h: &mut ShimHost, t: &mut Transcript) -> Result<()> {
    let id = "life";
    let events = CtrEvents::watch(h.ctrd())?;
    h.start_task(id, "trap 'exit 42' TERM; while :; do sleep 0.1; done")?;
    observe_status(h, t, id, "RUNNING")?;
    let out = h.ctrd().ctr(&["task", "ls"])?;
    t.record_output("ctr task ls", &out, table(h, &out.stdout, 1));
    let out = h.ctrd().ctr(&["containers", "ls"])?;
    t.record_output("ctr containers ls", &out, table(h, &out.stdout, 3));
    let out = h.ctrd().ctr(&["containers", "info", id])?;
    let (out, info) = container_info(h, &out);
    t.record_output("ctr containers info", &out, info);

    let script = "echo out; echo err >&2; exit 4";
    let out = h.exec(id, "probe", &["/bin/sh", "-c", script])?;
    t.record(&format!("ctr task exec sh -c '{script}'"), &out);
    let out = h.exec_with(&["-d"], id, "bg", &["/bin/sleep", "1000"])?;
    t.record("ctr task exec -d --exec-id bg sleep 1000", &out);
    let out = h.exec(id, "bg", &["/bin/true"])?;
    t.record_output("ctr task exec --exec-id bg, again", &out, String::new());
    let out = h.exec(id, "missing", &["/no/such/binary"])?;
    t.record_output("ctr task exec /no/such/binary", &out, String::new());

    let out = h.ctrd().ctr(&["task", "ps", id])?;
    let pids: Vec<i32> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    t.record_output("ctr task ps: processes", &out, pids.len().to_string());
    let init = h.ctrd().task_pid(id)?;
    t.observe(
        "ps lists the task's pid",
        init.is_some_and(|p| pids.contains(&p)),
    );

    ctr(h, t, &["task", "pause", id])?;
    observe_status(h, t, id, "PAUSED")?;
    ctr(h, t, &["task", "resume", id])?;
    observe_status(h, t, id, "RUNNING")?;
    let out = h.ctrd().ctr(&["task", "metrics", id])?;
    let rows: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("METRIC"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    t.record_output("ctr task metrics: rows", &abridged(&out), rows.join(" "));

    let out = h.ctrd().ctr(&["task", "rm", id])?;
    t.record_output("ctr task rm (running)", &out, String::new());
    ctr(h, t, &["task", "kill", id])?;
    observe_status(h, t, id, "STOPPED")?;
    let out = h.ctrd().ctr(&["task", "ls"])?;
    t.record_output("ctr task ls", &out, table(h, &out.stdout, 1));
    delete(h, t, id)?;

    let killed = "life-kill";
    h.start_task(killed, "exec sleep 1000")?;
    ctr(h, t, &["task", "kill", "-s", "SIGKILL", killed])?;
    observe_status(h, t, killed, "STOPPED")?;
    delete(h, t, killed)?;
    let out = h.ctrd().ctr(&["leases", "ls"])?;
    t.record_output("ctr leases ls", &out, table(h, &out.stdout, 1));
    ctr(h, t, &["containers", "ls", "-q"])?;

    // The execs and init die together: their exits come in any order.
    observe_namespace_events(h, t, &events, (killed, "/tasks/delete"), true);
    for id in [id, killed] {
        observe_nothing_left(h, t, id)?;
    }
    t.observe("left overall", format!("{:?}", h.leftovers_overall()?));
    Ok(())
}

#[test]
fn keel_containerd_namespaces_and_containers() -> Result<()> {
    expect_golden(namespaces_and_containers, NAMESPACES_AND_CONTAINERS)
}

#[test]
fn keel_containerd_run_rm() -> Result<()> {
    expect_golden(run_rm, RUN_RM)
}

#[test]
fn keel_containerd_task_lifecycle_and_events() -> Result<()> {
    expect_golden(lifecycle, LIFECYCLE)
}

#[test]
fn namespaces_and_containers_same_as_containerd() -> Result<()> {
    expect_same_as_containerd(namespaces_and_containers)
}

#[test]
fn run_rm_same_as_containerd() -> Result<()> {
    expect_same_as_containerd(run_rm)
}

#[test]
fn lifecycle_same_as_containerd() -> Result<()> {
    expect_same_as_containerd(lifecycle)
}

/// The reference scenarios alone, on containerd: `--ignored`, to write down the goldens.
#[test]
#[ignore = "prints containerd's transcripts, from which the goldens below are written"]
fn print_containerds_transcripts() -> Result<()> {
    print_transcripts(REFERENCE)
}

/// The scenarios on keel-containerd with our shim, whole (a golden test stops at the first
/// difference): `--ignored`.
#[test]
#[ignore = "prints keel-containerd's transcripts"]
fn print_keel_containerds_transcripts() -> Result<()> {
    print_transcripts((Supervisor::KeelContainerd, Stack::KeelShim))
}

fn print_transcripts((supervisor, stack): (Supervisor, Stack)) -> Result<()> {
    require_root!();
    for scenario in [namespaces_and_containers as Scenario, run_rm, lifecycle] {
        let (t, _) = run_scenario_on(supervisor, stack, scenario)?
            .with_context(|| format!("{} cannot run here", supervisor.name()))?;
        for step in t.steps() {
            println!("    ({:?}, {}, {:?}),", step.what, step.status, step.output);
        }
        println!();
    }
    Ok(())
}

/// What `namespaces_and_containers` gives on containerd.
#[rustfmt::skip]
const NAMESPACES_AND_CONTAINERS: &[(&str, i32, &str)] = &[
    ("ctr version: fields", 0, "Client Version Revision Go version Server Version Revision UUID"),
    ("ctr namespaces create it-a", 0, ""),
    ("ctr namespaces create it-a", 1, ""),
    ("ctr namespaces create it-b team=keel", 0, ""),
    ("ctr namespaces label it-a a=1", 0, ""),
    ("ctr namespaces label it-a b=2", 0, ""),
    ("ctr namespaces label it-a b=", 0, ""),
    ("ctr namespaces ls", 0, "NAME LABELS    \nit-a a=1       \nit-b team=keel \n"),
    ("ctr namespaces ls -q", 0, "it-a\nit-b\n"),
    ("ctr namespaces rm it-a it-b", 0, "it-a\nit-b\n"),
    ("ctr namespaces rm it-a", 0, "it-a\n"),
    ("ctr containers create c1", 0, ""),
    ("ctr containers create c1", 1, ""),
    ("ctr containers create c2", 0, ""),
    ("ctr containers ls", 0, "CONTAINER IMAGE RUNTIME\nc1 - RUNTIME\nc2 - RUNTIME"),
    ("ctr containers ls -q", 0, "c1\nc2\n"),
    ("ctr containers ls -q labels.role==test", 0, "c1\nc2\n"),
    ("ctr containers ls -q id==c2", 0, "c2\n"),
    ("ctr containers info c1", 0, C1_INFO),
    ("ctr namespaces rm NS (not empty)", 1, ""),
    ("ctr containers rm c1 c2", 0, ""),
    ("ctr containers info c1", 1, ""),
    ("ctr containers rm c1", 1, ""),
    ("ctr containers ls -q", 0, ""),
    ("ctr leases ls", 0, "ID"),
    ("ctr namespaces rm NS", 0, "NS\n"),
    ("ctr namespaces ls -q", 0, ""),
    ("ctr events: namespaces", 0, NAMESPACE_EVENTS),
    ("ctr events in the namespace", 0, "c1 /containers/create, c2 /containers/create, c1 /containers/delete, c2 /containers/delete"),
];

/// What `run_rm` gives on containerd.
#[rustfmt::skip]
const RUN_RM: &[(&str, i32, &str)] = &[
    ("ctr run --rm sh -c 'echo hi'", 0, "hi\n"),
    ("ctr run --rm sh -c 'echo bye; exit 3'", 3, "bye\n"),
    ("ctr run --rm /no/such/binary", 1, ""),
    ("ctr run --rm /bin/true", 0, ""),
    ("ctr task ls -q", 0, ""),
    ("ctr containers ls -q", 0, ""),
    ("left of rm-echo", 0, "[]"),
    ("left of rm-exit", 0, "[]"),
    ("left of rm-missing", 0, "[]"),
    ("left of rm-true", 0, "[]"),
    ("left overall", 0, "[]"),
];

/// What `lifecycle` gives on containerd.
#[rustfmt::skip]
const LIFECYCLE: &[(&str, i32, &str)] = &[
    ("ctr task ls: status", 0, "RUNNING"),
    ("ctr task ls", 0, "TASK\nlife"),
    ("ctr containers ls", 0, "CONTAINER IMAGE RUNTIME\nlife - RUNTIME"),
    ("ctr containers info", 0, LIFE_INFO),
    ("ctr task exec sh -c 'echo out; echo err >&2; exit 4'", 4, "out\n"),
    ("ctr task exec -d --exec-id bg sleep 1000", 0, ""),
    ("ctr task exec --exec-id bg, again", 1, ""),
    ("ctr task exec /no/such/binary", 1, ""),
    ("ctr task ps: processes", 0, "3"),
    ("ps lists the task's pid", 0, "true"),
    ("ctr task pause life", 0, ""),
    ("ctr task ls: status", 0, "PAUSED"),
    ("ctr task resume life", 0, ""),
    ("ctr task ls: status", 0, "RUNNING"),
    ("ctr task metrics: rows", 0, METRIC_ROWS),
    ("ctr task rm (running)", 1, ""),
    ("ctr task kill life", 0, ""),
    ("ctr task ls: status", 0, "STOPPED"),
    ("ctr task ls", 0, "TASK\nlife"),
    ("ctr task delete life", 0, ""),
    ("exit code reported by delete", 0, "42"),
    ("ctr containers delete life", 0, ""),
    ("ctr task kill -s SIGKILL life-kill", 0, ""),
    ("ctr task ls: status", 0, "STOPPED"),
    ("ctr task delete life-kill", 0, ""),
    ("exit code reported by delete", 0, "137"),
    ("ctr containers delete life-kill", 0, ""),
    ("ctr leases ls", 0, "ID"),
    ("ctr containers ls -q", 0, ""),
    ("ctr events in the namespace", 0, LIFE_EVENTS),
    ("left of life", 0, "[]"),
    ("left of life-kill", 0, "[]"),
    ("left overall", 0, "[]"),
];

/// `ctr containers info c1`, normalised (see `container_info`).
const C1_INFO: &str = concat!(
    r#"{"CreatedAt":"set","Extensions":null,"ID":"c1","Image":"","#,
    r#""Labels":{"role":"test"},"Runtime":{"Name":"RUNTIME"},"SnapshotKey":"","#,
    r#""Snapshotter":"","Spec":"sha256:80d1ef078c2f5342","UpdatedAt":"set"}"#,
);

/// `ctr containers info life`, normalised.
const LIFE_INFO: &str = concat!(
    r#"{"CreatedAt":"set","Extensions":null,"ID":"life","Image":"","Labels":null,"#,
    r#""Runtime":{"Name":"RUNTIME"},"SnapshotKey":"","Snapshotter":"","#,
    r#""Spec":"sha256:20ade5381ff22801","UpdatedAt":"set"}"#,
);

/// The namespace events: `<namespace published in> <topic> <name> <labels>`.
const NAMESPACE_EVENTS: &str = concat!(
    r#"NS /namespaces/create it-a, NS /namespaces/create it-b {"team":"keel"}, "#,
    r#"NS /namespaces/update it-a {"a":"1"}, NS /namespaces/update it-a {"b":"2"}, "#,
    r#"NS /namespaces/update it-a {"b":""}, it-a /namespaces/delete it-a, "#,
    r#"it-b /namespaces/delete it-b, NS /namespaces/delete NS"#,
);

/// The rows of `ctr task metrics` (cgroup v1 metrics).
const METRIC_ROWS: &str =
    "memory.usage_in_bytes memory.limit_in_bytes memory.stat.cache cpuacct.usage \
    cpuacct.usage_percpu pids.current pids.limit";

/// The events of `lifecycle` in the test's namespace, sorted.
const LIFE_EVENTS: &str = "life /containers/create, life /containers/delete, life /tasks/create, \
    life /tasks/delete 42, life /tasks/exec-added bg, \
    life /tasks/exec-added missing, life /tasks/exec-added probe, \
    life /tasks/exec-started bg, life /tasks/exec-started probe, \
    life /tasks/exit bg 137, life /tasks/exit init 42, life /tasks/exit probe 4, \
    life /tasks/paused, life /tasks/resumed, life /tasks/start, \
    life-kill /containers/create, life-kill /containers/delete, \
    life-kill /tasks/create, life-kill /tasks/delete 137, \
    life-kill /tasks/exit init 137, life-kill /tasks/start";

/// The `(type, id)` pairs `ctr plugins ls` shows with status `ok`.
fn plugins_ok(ctrd: &keel_integration_tests::peers::containerd::Containerd) -> Result<Vec<String>> {
    let out = ctrd.ctr(&["plugins", "ls"])?;
    anyhow::ensure!(out.status == 0, "ctr plugins ls: {}", out.stderr);
    Ok(out
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.last() == Some(&"ok")).then(|| format!("{} {}", cols[0], cols[1]))
        })
        .collect())
}

/// `ctr plugins ls`: every plugin keel-containerd lists is one containerd 1.6 also has working
/// here (same type and id, so clients that look a service up find it), and the ones that pulling
/// and running need are there.
#[test]
fn plugins_are_named_as_containerds() -> Result<()> {
    use keel_integration_tests::peers::containerd::Containerd;
    use keel_integration_tests::peers::keel_containerd::KeelContainerd;
    use keel_integration_tests::require_peer;
    require_root!();
    let reference = require_peer!(Containerd::start());
    let theirs = plugins_ok(&reference)?;
    drop(reference);
    let keel = require_peer!(KeelContainerd::start());
    let ours = plugins_ok(&keel)?;
    // containerd's metadata plugin is bolt; ours is redb, the one name that must differ.
    let unknown: Vec<&String> = ours
        .iter()
        .filter(|p| !theirs.contains(p) && p.as_str() != "io.containerd.metadata.v1 redb")
        .collect();
    anyhow::ensure!(
        unknown.is_empty(),
        "plugins containerd does not have: {unknown:?}"
    );
    for needed in [
        "io.containerd.content.v1 content",
        "io.containerd.snapshotter.v1 native",
        "io.containerd.differ.v1 walking",
        "io.containerd.gc.v1 scheduler",
        "io.containerd.grpc.v1 images",
        "io.containerd.grpc.v1 diff",
        "io.containerd.grpc.v1 snapshots",
        "io.containerd.grpc.v1 content",
        "io.containerd.grpc.v1 tasks",
    ] {
        anyhow::ensure!(
            ours.iter().any(|p| p == needed),
            "{needed} missing: {ours:?}"
        );
    }
    // overlayfs where containerd can use it too.
    let overlay = "io.containerd.snapshotter.v1 overlayfs";
    anyhow::ensure!(
        theirs.iter().any(|p| p == overlay) == ours.iter().any(|p| p == overlay),
        "overlayfs: containerd {theirs:?}, keel {ours:?}"
    );
    Ok(())
}
