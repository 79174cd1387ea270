//! The OCI lifecycle through runc's command line: create, start, state, kill, delete, run,
//! list, spec; and each operation refused in the wrong state.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use keel_integration_tests::checks::{expect_one_line_error, expect_success};
use keel_integration_tests::exec::exit_code;
use keel_integration_tests::host;
use keel_integration_tests::{require_root, unique_id, Bundle, Config, Runtime};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);

/// A host dir bind-mounted at `/shared` and a config whose process runs `script` there.
fn shared(script: &str) -> Result<(TempDir, Config)> {
    let dir = tempfile::tempdir()?;
    let config = Config::new().bind(dir.path(), "/shared", &[]).sh(script);
    Ok((dir, config))
}

/// A container that runs until `/shared/go` appears.
fn waiting_container() -> Result<(TempDir, Config)> {
    shared("while [ ! -e /shared/go ]; do sleep 0.05; done; echo done > /shared/done")
}

fn create_ok(rt: &Runtime, bundle: &Bundle, id: &str) -> Result<()> {
    expect_success(&rt.create(bundle.path(), id)?, "create")
}

fn start_ok(rt: &Runtime, id: &str) -> Result<()> {
    expect_success(&rt.start(id)?, "start")
}

#[test]
fn create_leaves_init_waiting_without_running_the_process() -> Result<()> {
    require_root!();
    let (dir, config) = shared("touch /shared/ran")?;
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let id = unique_id("created");
    let pid_file = dir.path().join("init.pid");
    let pid_arg = pid_file.to_string_lossy().into_owned();
    expect_success(
        &rt.create_with(bundle.path(), &id, &["--pid-file", &pid_arg])?,
        "create",
    )?;
    assert_eq!(rt.status(&id)?, "created");
    let pid = rt.pid(&id)?;
    assert!(host::pid_alive(pid), "init {pid} is not alive after create");
    let from_file: i32 = fs::read_to_string(&pid_file)?.trim().parse()?;
    assert_eq!(from_file, pid, "--pid-file differs from state.pid");
    thread::sleep(Duration::from_millis(300));
    assert!(
        !dir.path().join("ran").exists(),
        "the user process ran before start"
    );
    start_ok(&rt, &id)?;
    assert!(
        host::wait_until(WAIT, || dir.path().join("ran").exists()),
        "the process did not run after start"
    );
    Ok(())
}

#[test]
fn start_makes_it_running_and_exit_makes_it_stopped() -> Result<()> {
    require_root!();
    let (dir, config) = waiting_container()?;
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let id = unique_id("running");
    create_ok(&rt, &bundle, &id)?;
    start_ok(&rt, &id)?;
    assert_eq!(rt.status(&id)?, "running");
    fs::write(dir.path().join("go"), "")?;
    assert!(
        rt.wait_status(&id, "stopped", WAIT),
        "status did not become stopped"
    );
    assert_eq!(fs::read_to_string(dir.path().join("done"))?, "done\n");
    Ok(())
}

#[test]
fn delete_removes_state_dir_and_cgroup() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().args(&["true"]))?;
    let rt = Runtime::keel()?;
    let id = unique_id("delete");
    create_ok(&rt, &bundle, &id)?;
    let cgroup = host::cgroup_of(rt.pid(&id)?, "memory").context("init has no memory cgroup")?;
    if !rt.is_runc() {
        assert_eq!(cgroup, format!("/keel/{id}"), "keel's default cgroup path");
    }
    ensure!(
        host::cgroup_dir("memory", &cgroup).is_dir(),
        "no memory cgroup {cgroup} after create"
    );
    start_ok(&rt, &id)?;
    assert!(rt.wait_status(&id, "stopped", WAIT));
    expect_success(&rt.delete(&id)?, "delete")?;
    assert!(
        !rt.state_dir(&id).exists(),
        "state dir {} left",
        rt.state_dir(&id).display()
    );
    assert_eq!(
        host::cgroup_present_in(&cgroup),
        Vec::<&str>::new(),
        "cgroup {cgroup} left"
    );
    assert_eq!(
        exit_code(&rt.state(&id)?.status),
        1,
        "state of a deleted container succeeded"
    );
    Ok(())
}

#[test]
fn start_twice_fails_with_one_line() -> Result<()> {
    require_root!();
    let (_dir, config) = waiting_container()?;
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let id = unique_id("start2");
    create_ok(&rt, &bundle, &id)?;
    start_ok(&rt, &id)?;
    expect_one_line_error(&rt.start(&id)?, &[])?;
    assert_eq!(rt.status(&id)?, "running");
    Ok(())
}

#[test]
fn delete_running_needs_force() -> Result<()> {
    require_root!();
    let (_dir, config) = waiting_container()?;
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let id = unique_id("delrun");
    create_ok(&rt, &bundle, &id)?;
    start_ok(&rt, &id)?;
    let pid = rt.pid(&id)?;
    expect_one_line_error(&rt.delete(&id)?, &[])?;
    assert_eq!(
        rt.status(&id)?,
        "running",
        "a refused delete changed the container"
    );
    expect_success(&rt.delete_force(&id)?, "delete --force")?;
    assert!(
        host::wait_until(WAIT, || !host::pid_alive(pid)),
        "init {pid} survived delete --force"
    );
    assert!(!rt.state_dir(&id).exists());
    Ok(())
}

#[test]
fn delete_force_of_created_container() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().args(&["true"]))?;
    let rt = Runtime::keel()?;
    let id = unique_id("delcreated");
    create_ok(&rt, &bundle, &id)?;
    let pid = rt.pid(&id)?;
    expect_success(&rt.delete_force(&id)?, "delete --force")?;
    assert!(
        host::wait_until(WAIT, || !host::pid_alive(pid)),
        "init {pid} survived"
    );
    assert!(!rt.state_dir(&id).exists());
    Ok(())
}

#[test]
fn run_exit_status_is_the_containers() -> Result<()> {
    require_root!();
    let rt = Runtime::keel()?;
    for code in [0, 1, 3, 42] {
        let out = rt.run_and_capture(&Config::new().sh(&format!("exit {code}")))?;
        assert_eq!(out.status, code, "stderr: {}", out.stderr);
    }
    Ok(())
}

#[test]
fn run_killed_by_signal_exits_128_plus_signal() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().args(&["sleep", "1000"]))?;
    let rt = Runtime::keel()?;
    let id = unique_id("runsig");
    let out = thread::scope(|s| -> Result<_> {
        let run = s.spawn(|| rt.run(bundle.path(), &id));
        let running = rt.wait_status(&id, "running", WAIT);
        let killed = rt.kill(&id, "KILL");
        let out = run
            .join()
            .map_err(|_| anyhow::anyhow!("run thread panicked"))??;
        ensure!(running, "the container never ran");
        expect_success(&killed?, "kill")?;
        Ok(out)
    })?;
    assert_eq!(
        exit_code(&out.status),
        128 + 9,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn run_without_pid_namespace_reports_signal_of_init() -> Result<()> {
    require_root!();
    let config = Config::new()
        .without_namespace(LinuxNamespaceType::Pid)
        .sh("kill -TERM $$");
    let out = Runtime::keel()?.run_and_capture(&config)?;
    assert_eq!(out.status, 128 + 15, "stderr: {}", out.stderr);
    Ok(())
}

#[test]
fn run_detached_returns_with_the_container_running() -> Result<()> {
    require_root!();
    let (dir, config) = waiting_container()?;
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let id = unique_id("detached");
    let out = rt.run_detached(bundle.path(), &id)?;
    expect_success(&out, "run -d")?;
    assert_eq!(rt.status(&id)?, "running");
    fs::write(dir.path().join("go"), "")?;
    assert!(rt.wait_status(&id, "stopped", WAIT));
    assert!(dir.path().join("done").exists());
    Ok(())
}

#[test]
fn foreground_run_removes_the_container() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().args(&["true"]))?;
    let rt = Runtime::keel()?;
    let id = unique_id("fgrun");
    expect_success(&rt.run(bundle.path(), &id)?, "run")?;
    assert!(!rt.state_dir(&id).exists(), "run left its state dir behind");
    Ok(())
}

/// A container whose shell traps `sig` and records it before exiting.
fn trapping(sig: &str) -> Result<(TempDir, Config)> {
    shared(&format!(
        "trap 'echo {sig} > /shared/got; exit 0' {sig}; touch /shared/ready; while true; do sleep 0.05; done"
    ))
}

fn kill_and_expect(signal_arg: &str, trapped: &str) -> Result<()> {
    let (dir, config) = trapping(trapped)?;
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let id = unique_id("kill");
    create_ok(&rt, &bundle, &id)?;
    start_ok(&rt, &id)?;
    ensure!(
        host::wait_until(WAIT, || dir.path().join("ready").exists()),
        "trap never set"
    );
    expect_success(&rt.kill(&id, signal_arg)?, &format!("kill {signal_arg}"))?;
    assert!(
        rt.wait_status(&id, "stopped", WAIT),
        "kill {signal_arg}: still {}",
        rt.status(&id)?
    );
    let got = fs::read_to_string(dir.path().join("got")).unwrap_or_default();
    assert_eq!(
        got.trim(),
        trapped,
        "kill {signal_arg} delivered the wrong signal"
    );
    Ok(())
}

#[test]
fn kill_by_name() -> Result<()> {
    require_root!();
    kill_and_expect("TERM", "TERM")?;
    kill_and_expect("SIGUSR1", "USR1")
}

#[test]
fn kill_by_number() -> Result<()> {
    require_root!();
    kill_and_expect("15", "TERM")?;
    kill_and_expect("12", "USR2")
}

#[test]
fn kill_default_signal_is_term() -> Result<()> {
    require_root!();
    let (dir, config) = trapping("TERM")?;
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let id = unique_id("killdef");
    create_ok(&rt, &bundle, &id)?;
    start_ok(&rt, &id)?;
    ensure!(
        host::wait_until(WAIT, || dir.path().join("ready").exists()),
        "trap never set"
    );
    expect_success(&rt.exec(&["kill", &id])?, "kill")?;
    assert!(rt.wait_status(&id, "stopped", WAIT));
    Ok(())
}

#[test]
fn kill_sigkill_stops_an_ignoring_init() -> Result<()> {
    require_root!();
    let (dir, config) =
        shared("trap '' TERM INT; touch /shared/ready; while true; do sleep 0.05; done")?;
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let id = unique_id("kill9");
    create_ok(&rt, &bundle, &id)?;
    start_ok(&rt, &id)?;
    ensure!(
        host::wait_until(WAIT, || dir.path().join("ready").exists()),
        "never ready"
    );
    expect_success(&rt.kill(&id, "0")?, "kill 0 (existence check)")?;
    assert_eq!(rt.status(&id)?, "running", "signal 0 delivers nothing");
    expect_success(&rt.kill(&id, "9")?, "kill 9")?;
    assert!(rt.wait_status(&id, "stopped", WAIT));
    let stopped = rt.kill(&id, "0")?;
    ensure!(
        !stopped.status.success(),
        "kill 0 of a stopped container succeeded"
    );
    Ok(())
}

#[test]
fn kill_all_reaches_every_process() -> Result<()> {
    require_root!();
    // Without a pid namespace, killing init does not take its children with it.
    let id = unique_id("killall");
    let cgroup = format!("/keel-it/{id}");
    let config = Config::new()
        .without_namespace(LinuxNamespaceType::Pid)
        .cgroups_path(&cgroup)
        .sh("sleep 1000 & sleep 1000 & wait");
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    create_ok(&rt, &bundle, &id)?;
    start_ok(&rt, &id)?;
    let procs = || host::read_cgroup_file("pids", &cgroup, "cgroup.procs").unwrap_or_default();
    ensure!(
        host::wait_until(WAIT, || procs().lines().count() >= 3),
        "children never started: {}",
        procs()
    );
    let pids: Vec<i32> = procs().lines().filter_map(|l| l.parse().ok()).collect();
    expect_success(&rt.kill_all(&id, "KILL")?, "kill --all")?;
    for pid in pids {
        assert!(
            host::wait_until(WAIT, || !host::pid_alive(pid)),
            "pid {pid} survived kill --all"
        );
    }
    Ok(())
}

#[test]
fn state_json_has_the_required_fields() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().args(&["true"]))?;
    let rt = Runtime::keel()?;
    let id = unique_id("state");
    create_ok(&rt, &bundle, &id)?;
    let state = rt.state_json(&id)?;
    assert!(
        state["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "ociVersion: {state}"
    );
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["status"], "created");
    assert!(state["pid"].as_i64().is_some_and(|p| p > 0), "pid: {state}");
    let bundle_path = fs::canonicalize(bundle.path())?;
    assert_eq!(
        state["bundle"].as_str().map(Path::new),
        Some(bundle_path.as_path()),
        "bundle: {state}"
    );
    Ok(())
}

#[test]
fn list_shows_containers_as_table_and_json() -> Result<()> {
    require_root!();
    let (_dir, config) = waiting_container()?;
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let (created, running) = (unique_id("listc"), unique_id("listr"));
    create_ok(&rt, &bundle, &created)?;
    create_ok(&rt, &bundle, &running)?;
    start_ok(&rt, &running)?;
    check_list_json(&rt, &[(&created, "created"), (&running, "running")])?;
    check_list_table(&rt, &[(&created, "created"), (&running, "running")])?;
    let quiet = rt.exec(&["list", "-q"])?;
    let mut ids: Vec<String> = String::from_utf8(quiet.stdout)?
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    let mut expected = vec![created, running];
    expected.sort();
    assert_eq!(ids, expected);
    Ok(())
}

fn check_list_json(rt: &Runtime, expected: &[(&str, &str)]) -> Result<()> {
    let out = rt.list("json")?;
    expect_success(&out, "list --format json")?;
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).context("list json")?;
    let items = list.as_array().context("list json is not an array")?;
    assert_eq!(items.len(), expected.len(), "{list}");
    for (id, status) in expected {
        let item = items
            .iter()
            .find(|i| i["id"] == *id)
            .with_context(|| format!("{id} not listed"))?;
        assert_eq!(item["status"], *status);
        assert!(item["pid"].as_i64().is_some_and(|p| p > 0), "{item}");
        assert!(
            item["bundle"].as_str().is_some_and(|b| !b.is_empty()),
            "{item}"
        );
    }
    Ok(())
}

fn check_list_table(rt: &Runtime, expected: &[(&str, &str)]) -> Result<()> {
    let out = rt.list("table")?;
    expect_success(&out, "list")?;
    let text = String::from_utf8(out.stdout)?;
    let mut lines = text.lines();
    let header = lines.next().context("empty table")?;
    assert!(
        header.contains("ID") && header.contains("STATUS"),
        "header: {header}"
    );
    let rows: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(rows.len(), expected.len(), "{text}");
    for (id, status) in expected {
        let row = rows
            .iter()
            .find(|r| r.split_whitespace().next() == Some(id));
        let row = row.with_context(|| format!("{id} not in table:\n{text}"))?;
        assert!(row.split_whitespace().any(|w| w == *status), "row: {row}");
    }
    Ok(())
}

#[test]
fn list_is_empty_without_containers() -> Result<()> {
    let rt = Runtime::keel()?;
    let out = rt.list("json")?;
    expect_success(&out, "list --format json")?;
    let text = String::from_utf8(out.stdout)?;
    let value: serde_json::Value = serde_json::from_str(text.trim()).context("list json")?;
    assert!(
        value.is_null() || value.as_array().is_some_and(Vec::is_empty),
        "{text}"
    );
    Ok(())
}

#[test]
fn spec_writes_a_valid_config_json() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = Runtime::keel()?;
    expect_success(&rt.spec(dir.path())?, "spec")?;
    let spec = Spec::load(dir.path().join("config.json")).context("config.json written by spec")?;
    let root = spec.root().as_ref().context("no root")?;
    assert_eq!(root.path(), Path::new("rootfs"));
    let process = spec.process().as_ref().context("no process")?;
    assert!(process.args().as_ref().is_some_and(|a| !a.is_empty()));
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    for typ in [LinuxNamespaceType::Pid, LinuxNamespaceType::Mount] {
        assert!(
            namespaces.iter().any(|n| n.typ() == typ),
            "spec lacks {typ:?}"
        );
    }
    Ok(())
}

#[test]
fn spec_rootless_has_a_user_namespace() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rt = Runtime::keel()?;
    let dir_arg = dir.path().to_string_lossy();
    expect_success(
        &rt.exec(&["spec", "--rootless", "--bundle", &dir_arg])?,
        "spec --rootless",
    )?;
    let spec = Spec::load(dir.path().join("config.json"))?;
    let linux = spec.linux().as_ref().context("no linux")?;
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    assert!(
        namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::User),
        "no user namespace"
    );
    assert!(
        linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty()),
        "no uid mappings"
    );
    Ok(())
}

#[test]
fn a_deleted_id_can_be_reused() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().args(&["true"]))?;
    let rt = Runtime::keel()?;
    let id = unique_id("reuse");
    for _ in 0..2 {
        expect_success(&rt.run(bundle.path(), &id)?, "run")?;
    }
    Ok(())
}
