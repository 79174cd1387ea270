//! The commands beyond the lifecycle: `ps`, `pause`/`resume`, `update`, `events` and
//! `features`, checked on the host (cgroup files, process states) and, where runc has the same
//! command, against runc's output shape.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use keel_integration_tests::binary::has_runc;
use keel_integration_tests::checks::{expect_nothing_left, expect_one_line_error, expect_success};
use keel_integration_tests::exec::exit_code;
use keel_integration_tests::host;
use keel_integration_tests::{require, require_root, unique_id, Bundle, Config, Runtime};
use serde_json::{json, Value};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);
const MIB: i64 = 1024 * 1024;

/// Two processes: the init `sleep` and a background one.
const TWO_SLEEPS: &str = "sleep 100 & sleep 100";

/// A started container of `config` under keel, with its cgroup at keel's default path.
struct Running {
    rt: Runtime,
    bundle: Bundle,
    id: String,
}

impl Running {
    fn start(config: &Config) -> Result<Self> {
        let rt = Runtime::keel()?;
        let bundle = Bundle::new(config)?;
        let id = unique_id("cmd");
        expect_success(&rt.create(bundle.path(), &id)?, "create")?;
        expect_success(&rt.start(&id)?, "start")?;
        Ok(Self { rt, bundle, id })
    }

    /// `<command> <args...> <id>`.
    fn run(&self, command: &str, args: &[&str]) -> Result<Output> {
        let mut all = vec![command];
        all.extend_from_slice(args);
        all.push(&self.id);
        self.rt.exec(&all)
    }

    fn cgroup(&self) -> String {
        format!("/keel/{}", self.id)
    }

    fn read(&self, controller: &str, file: &str) -> Result<String> {
        host::read_cgroup_file(controller, &self.cgroup(), file)
    }

    /// `ps --format json`, parsed.
    fn pids(&self) -> Result<Vec<i32>> {
        let out = self.run("ps", &["--format", "json"])?;
        expect_success(&out, "ps --format json")?;
        serde_json::from_slice(&out.stdout).context("ps --format json printed no pid array")
    }

    /// Polls `ps` until the container has at least `n` processes.
    fn wait_for_pids(&self, n: usize) -> Result<Vec<i32>> {
        let deadline = Instant::now() + WAIT;
        loop {
            let pids = self.pids()?;
            if pids.len() >= n {
                return Ok(pids);
            }
            ensure!(Instant::now() < deadline, "only {pids:?} after {WAIT:?}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `spec.linux.resources` of keel's state.json.
    fn stored_resources(&self) -> Result<Value> {
        let path = self.rt.state_dir(&self.id).join("state.json");
        let state: Value = serde_json::from_slice(&fs::read(&path)?)?;
        Ok(state["spec"]["linux"]["resources"].clone())
    }

    fn wait_stopped(&self) -> Result<()> {
        ensure!(
            self.rt.wait_status(&self.id, "stopped", WAIT),
            "container did not stop"
        );
        Ok(())
    }
}

/// `config` with `linux.resources` from JSON.
fn with_resources(config: Config, resources: Value) -> Result<Config> {
    config.merge(json!({"linux": {"resources": resources}}))
}

/// Whether the host's memory cgroup has memory+swap accounting (swapaccount=1).
fn has_memsw() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
}

// ---- ps ----

#[test]
fn ps_lists_the_container_processes() -> Result<()> {
    require_root!();
    let c = Running::start(&Config::new().sh(TWO_SLEEPS))?;
    let pids = c.wait_for_pids(2)?;
    let init = c.rt.pid(&c.id)?;
    assert!(pids.contains(&init), "init {init} not in {pids:?}");
    let in_cgroup: BTreeSet<i32> = c
        .read("pids", "cgroup.procs")?
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    assert_eq!(pids.iter().copied().collect::<BTreeSet<_>>(), in_cgroup);

    let out = c.run("ps", &[])?;
    expect_success(&out, "ps")?;
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let (header, rows) = split_table(&table)?;
    assert!(header.starts_with("UID") && header.contains("PID") && header.contains("CMD"));
    assert_eq!(pid_column(&header, &rows)?, pids, "table: {table}");
    assert!(rows.iter().all(|r| r.contains("sleep 100")), "{table}");
    Ok(())
}

#[test]
fn ps_passes_its_arguments_to_ps() -> Result<()> {
    require_root!();
    let c = Running::start(&Config::new().sh(TWO_SLEEPS))?;
    let pids = c.wait_for_pids(2)?;
    let out = c.rt.exec(&["ps", &c.id, "-o", "pid,comm"])?;
    expect_success(&out, "ps -o pid,comm")?;
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let (header, rows) = split_table(&table)?;
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["PID", "COMMAND"]
    );
    assert_eq!(pid_column(&header, &rows)?, pids);
    assert!(rows.iter().all(|r| r.ends_with("sleep")), "{table}");
    Ok(())
}

#[test]
fn ps_of_a_stopped_or_missing_container_fails() -> Result<()> {
    require_root!();
    let c = Running::start(&Config::new().args(&["true"]))?;
    c.wait_stopped()?;
    expect_one_line_error(&c.run("ps", &[])?, &[&c.id, "stopped"])?;
    expect_one_line_error(&c.run("ps", &["--format", "json"])?, &["stopped"])?;
    let missing = c.rt.exec(&["ps", "no-such-container"])?;
    expect_one_line_error(&missing, &["no-such-container", "does not exist"])
}

/// The header line and the other non-empty lines.
fn split_table(table: &str) -> Result<(String, Vec<String>)> {
    let mut lines = table.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().context("ps printed nothing")?.to_string();
    Ok((header, lines.map(String::from).collect()))
}

/// The sorted values of the PID column.
fn pid_column(header: &str, rows: &[String]) -> Result<Vec<i32>> {
    let col = header
        .split_whitespace()
        .position(|f| f == "PID")
        .context("no PID column")?;
    let mut pids: Vec<i32> = rows
        .iter()
        .map(|r| r.split_whitespace().nth(col).unwrap_or_default().parse())
        .collect::<std::result::Result<_, _>>()?;
    pids.sort_unstable();
    Ok(pids)
}

// ---- pause / resume ----

/// A container that increments a counter in `<dir>/n` every 20 ms.
fn counting() -> Result<(TempDir, Config)> {
    let dir = tempfile::tempdir()?;
    let script = "i=0; while true; do i=$((i+1)); echo $i > /shared/n; sleep 0.02; done";
    let config = Config::new().bind(dir.path(), "/shared", &[]).sh(script);
    Ok((dir, config))
}

fn counter(dir: &Path) -> u64 {
    fs::read_to_string(dir.join("n"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether the counter moves within half a second.
fn counter_moves(dir: &Path) -> bool {
    let before = counter(dir);
    host::wait_until(Duration::from_millis(500), || counter(dir) > before)
}

#[test]
fn pause_freezes_and_resume_thaws() -> Result<()> {
    require_root!();
    let (dir, config) = counting()?;
    let c = Running::start(&config)?;
    ensure!(
        host::wait_until(WAIT, || counter(dir.path()) > 0),
        "the counter never started"
    );
    expect_success(&c.run("pause", &[])?, "pause")?;
    assert_eq!(c.rt.status(&c.id)?, "paused");
    assert_eq!(c.read("freezer", "freezer.state")?, "FROZEN");
    thread::sleep(Duration::from_millis(100));
    assert!(!counter_moves(dir.path()), "the counter moved while paused");

    expect_one_line_error(&c.run("pause", &[])?, &[&c.id, "paused"])?;
    expect_success(&c.run("resume", &[])?, "resume")?;
    assert_eq!(c.rt.status(&c.id)?, "running");
    assert!(
        counter_moves(dir.path()),
        "the counter is still stopped after resume"
    );
    expect_one_line_error(&c.run("resume", &[])?, &[&c.id, "running"])
}

#[test]
fn pause_and_resume_of_a_stopped_container_fail() -> Result<()> {
    require_root!();
    let c = Running::start(&Config::new().args(&["true"]))?;
    c.wait_stopped()?;
    expect_one_line_error(&c.run("pause", &[])?, &[&c.id, "stopped"])?;
    expect_one_line_error(&c.run("resume", &[])?, &[&c.id, "stopped"])?;
    let missing = c.rt.exec(&["pause", "no-such-container"])?;
    expect_one_line_error(&missing, &["does not exist"])
}

#[test]
fn kill_all_reaches_a_paused_container() -> Result<()> {
    require_root!();
    let c = Running::start(&Config::new().sh(TWO_SLEEPS))?;
    let pids = c.wait_for_pids(2)?;
    expect_success(&c.run("pause", &[])?, "pause")?;
    expect_success(&c.rt.kill_all(&c.id, "KILL")?, "kill --all KILL")?;
    c.wait_stopped()?;
    ensure!(
        host::wait_until(WAIT, || pids.iter().all(|p| !host::pid_alive(*p))),
        "processes {pids:?} survived kill --all of a paused container"
    );
    expect_success(&c.rt.delete(&c.id)?, "delete")?;
    expect_nothing_left(&c.rt, &c.id, c.bundle.path())
}

#[test]
fn delete_force_removes_a_paused_container() -> Result<()> {
    require_root!();
    let c = Running::start(&Config::new().sh(TWO_SLEEPS))?;
    let pids = c.wait_for_pids(2)?;
    expect_success(&c.run("pause", &[])?, "pause")?;
    expect_one_line_error(&c.rt.delete(&c.id)?, &[&c.id, "paused"])?;
    expect_success(&c.rt.delete_force(&c.id)?, "delete --force")?;
    assert!(
        pids.iter().all(|p| !host::pid_alive(*p)),
        "{pids:?} survived"
    );
    expect_nothing_left(&c.rt, &c.id, c.bundle.path())
}

// ---- update ----

/// The cgroup files `update` may change, as (controller, file, value).
fn limits(c: &Running) -> Vec<(&'static str, &'static str, String)> {
    let files = [
        ("memory", "memory.limit_in_bytes"),
        ("memory", "memory.soft_limit_in_bytes"),
        ("memory", "memory.memsw.limit_in_bytes"),
        ("cpu", "cpu.shares"),
        ("cpu", "cpu.cfs_quota_us"),
        ("cpu", "cpu.cfs_period_us"),
        ("cpuset", "cpuset.cpus"),
        ("pids", "pids.max"),
    ];
    files
        .into_iter()
        .map(|(ctl, f)| (ctl, f, c.read(ctl, f).unwrap_or_default()))
        .collect()
}

#[test]
fn update_flags_change_the_cgroup_and_the_state() -> Result<()> {
    require_root!();
    let config = with_resources(
        Config::new().sh(TWO_SLEEPS),
        json!({"memory": {"limit": 64 * MIB}}),
    )?;
    let c = Running::start(&config)?;
    let args = [
        "--memory",
        "48m",
        "--memory-reservation",
        "24M",
        "--pids-limit",
        "20",
        "--cpu-share",
        "256",
        "--cpu-quota",
        "20000",
        "--cpu-period",
        "100000",
        "--cpuset-cpus",
        "0",
    ];
    expect_success(&c.run("update", &args)?, "update")?;
    assert_eq!(
        c.read("memory", "memory.limit_in_bytes")?,
        (48 * MIB).to_string()
    );
    assert_eq!(
        c.read("memory", "memory.soft_limit_in_bytes")?,
        (24 * MIB).to_string()
    );
    assert_eq!(c.read("pids", "pids.max")?, "20");
    assert_eq!(c.read("cpu", "cpu.shares")?, "256");
    assert_eq!(c.read("cpu", "cpu.cfs_quota_us")?, "20000");
    assert_eq!(c.read("cpu", "cpu.cfs_period_us")?, "100000");
    assert_eq!(c.read("cpuset", "cpuset.cpus")?, "0");
    let stored = c.stored_resources()?;
    assert_eq!(stored["memory"]["limit"], 48 * MIB);
    assert_eq!(stored["memory"]["reservation"], 24 * MIB);
    assert_eq!(stored["pids"]["limit"], 20);
    assert_eq!(stored["cpu"]["shares"], 256);
    assert_eq!(stored["cpu"]["cpus"], "0");

    // -1 lifts a limit; what is not given stays.
    expect_success(
        &c.run("update", &["--memory=-1", "--pids-limit=-1"])?,
        "update -1",
    )?;
    let unlimited: u64 = c.read("memory", "memory.limit_in_bytes")?.parse()?;
    assert!(
        unlimited > 1 << 60,
        "memory limit {unlimited} after --memory -1"
    );
    assert_eq!(c.read("pids", "pids.max")?, "max");
    assert_eq!(c.read("cpu", "cpu.shares")?, "256");
    assert_eq!(c.stored_resources()?["memory"]["reservation"], 24 * MIB);
    Ok(())
}

#[test]
fn update_memory_with_swap_orders_the_writes() -> Result<()> {
    require_root!();
    require!(
        has_memsw(),
        "the kernel has no swap accounting (swapaccount=1)"
    );
    let resources = json!({"memory": {"limit": 32 * MIB, "swap": 32 * MIB}});
    let c = Running::start(&with_resources(Config::new().sh(TWO_SLEEPS), resources)?)?;
    // Raising the limit above the current memory+swap limit needs the swap limit first.
    expect_success(
        &c.run("update", &["--memory", "128m", "--memory-swap", "256m"])?,
        "raise",
    )?;
    assert_eq!(
        c.read("memory", "memory.limit_in_bytes")?,
        (128 * MIB).to_string()
    );
    assert_eq!(
        c.read("memory", "memory.memsw.limit_in_bytes")?,
        (256 * MIB).to_string()
    );
    // And lowering both needs the memory limit first.
    expect_success(
        &c.run("update", &["--memory", "16m", "--memory-swap", "16m"])?,
        "lower",
    )?;
    assert_eq!(
        c.read("memory", "memory.memsw.limit_in_bytes")?,
        (16 * MIB).to_string()
    );
    Ok(())
}

#[test]
fn update_from_a_resources_file_and_from_stdin() -> Result<()> {
    require_root!();
    let c = Running::start(&Config::new().sh(TWO_SLEEPS))?;
    let file = tempfile::NamedTempFile::new()?;
    let from_file =
        json!({"memory": {"limit": 40 * MIB}, "cpu": {"shares": 300}, "pids": {"limit": 30}});
    fs::write(file.path(), from_file.to_string())?;
    let path = file.path().to_string_lossy().into_owned();
    expect_success(
        &c.run("update", &["--resources", &path])?,
        "update --resources FILE",
    )?;
    assert_eq!(
        c.read("memory", "memory.limit_in_bytes")?,
        (40 * MIB).to_string()
    );
    assert_eq!(c.read("cpu", "cpu.shares")?, "300");
    assert_eq!(c.read("pids", "pids.max")?, "30");

    let from_stdin = json!({"memory": {"limit": 36 * MIB}, "pids": {"limit": 25}});
    let out = exec_with_stdin(
        &c.rt,
        &["update", "-r", "-", &c.id],
        &from_stdin.to_string(),
    )?;
    expect_success(&out, "update -r -")?;
    assert_eq!(
        c.read("memory", "memory.limit_in_bytes")?,
        (36 * MIB).to_string()
    );
    assert_eq!(c.read("pids", "pids.max")?, "25");
    assert_eq!(
        c.read("cpu", "cpu.shares")?,
        "300",
        "a field not in the file changed"
    );
    let stored = c.stored_resources()?;
    assert_eq!(
        (
            stored["memory"]["limit"].clone(),
            stored["cpu"]["shares"].clone()
        ),
        (json!(36 * MIB), json!(300))
    );
    Ok(())
}

#[test]
fn update_refuses_impossible_values_and_changes_nothing() -> Result<()> {
    require_root!();
    let resources =
        json!({"memory": {"limit": 64 * MIB}, "cpu": {"shares": 512}, "pids": {"limit": 50}});
    let c = Running::start(&with_resources(Config::new().sh(TWO_SLEEPS), resources)?)?;
    c.wait_for_pids(2)?;
    let before = (limits(&c), c.stored_resources()?);
    let bad: [&[&str]; 9] = [
        &["--cpu-share", "1"],
        &["--cpuset-cpus", "4095"],
        &["--cpuset-cpus", "1-0"],
        &["--memory", "4k"],
        &["--memory", "12 parsecs"],
        &["--cpu-period", "10"],
        &["--cpu-quota", "5"],
        // A valid part must not be applied when another part is refused.
        &["--memory", "32m", "--pids-limit", "10", "--cpu-share", "1"],
        &["--memory", "32m", "--memory-swap", "16m"],
    ];
    for args in bad {
        expect_one_line_error(&c.run("update", args)?, &["update"]).context(format!("{args:?}"))?;
    }
    let file = tempfile::NamedTempFile::new()?;
    let path = file.path().to_string_lossy().into_owned();
    for text in [
        r#"{"cpu": {"shares": -5}}"#,
        "{not json",
        r#"{"memory": {"limit": "big"}}"#,
    ] {
        fs::write(file.path(), text)?;
        let out = c.run("update", &["--resources", &path, "--pids-limit", "10"])?;
        expect_one_line_error(&out, &["update"]).context(text)?;
    }
    let out = exec_with_stdin(&c.rt, &["update", "-r", "-", &c.id], "[1, 2]")?;
    expect_one_line_error(&out, &["update"])?;
    // clap refuses a negative share before the runtime sees it.
    assert!(!c.run("update", &["--cpu-share", "-5"])?.status.success());
    assert_eq!(
        (limits(&c), c.stored_resources()?),
        before,
        "a refused update changed something"
    );
    Ok(())
}

#[test]
fn update_of_a_stopped_container_fails() -> Result<()> {
    require_root!();
    let c = Running::start(&Config::new().args(&["true"]))?;
    c.wait_stopped()?;
    expect_one_line_error(
        &c.run("update", &["--pids-limit", "10"])?,
        &[&c.id, "stopped"],
    )
}

/// Runs `<runtime> --root <root> <args>` with `input` on its stdin.
fn exec_with_stdin(rt: &Runtime, args: &[&str], input: &str) -> Result<Output> {
    let mut child = rt
        .command()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning the runtime")?;
    let mut stdin = child.stdin.take().context("no stdin pipe")?;
    stdin.write_all(input.as_bytes())?;
    drop(stdin);
    Ok(child.wait_with_output()?)
}

// ---- events ----

#[test]
fn events_stats_reports_usage_in_runcs_layout() -> Result<()> {
    require_root!();
    let resources = json!({"memory": {"limit": 64 * MIB}, "pids": {"limit": 100}});
    let c = Running::start(&with_resources(Config::new().sh(TWO_SLEEPS), resources)?)?;
    c.wait_for_pids(2)?;
    let event = stats_event(&c.rt, &c.id)?;
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], c.id.as_str());
    let data = &event["data"];
    let memory = &data["memory"];
    assert!(
        memory["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{memory}"
    );
    assert_eq!(memory["usage"]["limit"], 64 * MIB);
    assert!(memory["usage"]["failcnt"].is_u64());
    assert!(
        memory["raw"]
            .as_object()
            .is_some_and(|r| r.contains_key("total_rss")),
        "{memory}"
    );
    assert!(
        data["pids"]["current"].as_u64().unwrap_or(0) >= 2,
        "{}",
        data["pids"]
    );
    assert_eq!(data["pids"]["limit"], 100);
    assert!(
        data["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
        "{}",
        data["cpu"]
    );
    assert!(data["cpu"]["usage"]["percpu"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
    assert!(data["cpu"]["usage"]["kernel"].is_u64() && data["cpu"]["usage"]["user"].is_u64());
    assert!(data["cpuset"]["cpus"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
    assert!(data["blkio"].is_object() && data["hugetlb"].is_object());
    Ok(())
}

#[test]
fn events_stats_has_runcs_keys() -> Result<()> {
    require_root!();
    require!(has_runc(), "runc is not installed");
    let config = with_resources(
        Config::new().sh(TWO_SLEEPS),
        json!({"memory": {"limit": 64 * MIB}}),
    )?;
    let bundle = Bundle::new(&config)?;
    let mut shapes = Vec::new();
    for rt in [Runtime::keel()?, Runtime::runc()?] {
        let id = unique_id("evkeys");
        expect_success(&rt.run_detached(bundle.path(), &id)?, "run -d")?;
        thread::sleep(Duration::from_millis(200));
        let mut paths = key_paths(&stats_event(&rt, &id)?["data"], "");
        paths.retain(|p| !omitted_when_zero(p));
        shapes.push(paths);
        expect_success(&rt.delete_force(&id)?, "delete --force")?;
    }
    let missing: Vec<_> = shapes[1].difference(&shapes[0]).collect();
    assert!(
        missing.is_empty(),
        "keel's stats lack runc's keys {missing:?}"
    );
    let extra: Vec<_> = shapes[0].difference(&shapes[1]).collect();
    assert!(
        extra.is_empty(),
        "keel's stats have keys runc has not {extra:?}"
    );
    Ok(())
}

#[test]
fn events_refuses_a_stopped_container_and_a_bad_interval() -> Result<()> {
    require_root!();
    let c = Running::start(&Config::new().args(&["true"]))?;
    c.wait_stopped()?;
    expect_one_line_error(&c.run("events", &["--stats"])?, &[&c.id, "stopped"])?;
    expect_one_line_error(&c.run("events", &["--interval", "0s"])?, &["interval"])?;
    expect_one_line_error(&c.run("events", &["--interval", "soon"])?, &["interval"])
}

#[test]
fn events_reports_an_oom_kill_and_ends_with_the_container() -> Result<()> {
    require_root!();
    let mut memory = json!({"limit": 16 * MIB});
    if has_memsw() {
        memory["swap"] = json!(16 * MIB);
    }
    let config = with_resources(
        Config::new().args(&["tail", "/dev/zero"]),
        json!({"memory": memory}),
    )?;
    let rt = Runtime::keel()?;
    let bundle = Bundle::new(&config)?;
    let id = unique_id("oom");
    expect_success(&rt.create(bundle.path(), &id)?, "create")?;
    let out = tempfile::NamedTempFile::new()?;
    let mut events = EventsChild::spawn(&rt, &id, out.path())?;
    // The first stats line means the OOM watch is registered.
    ensure!(
        host::wait_until(WAIT, || lines(out.path())
            .iter()
            .any(|l| l.contains("\"stats\""))),
        "events printed no stats"
    );
    expect_success(&rt.start(&id)?, "start")?;
    let status = events.wait(Duration::from_secs(30))?;
    let printed = lines(out.path());
    assert_eq!(status, 0, "events exited with {status}: {printed:?}");
    let oom = json!({"type": "oom", "id": id});
    let events: Vec<Value> = printed
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<std::result::Result<_, _>>()
        .context("events printed a line that is not JSON")?;
    assert!(events.contains(&oom), "no OOM event in {printed:?}");
    assert_eq!(rt.status(&id)?, "stopped");
    Ok(())
}

/// `events --stats <id>`, parsed.
fn stats_event(rt: &Runtime, id: &str) -> Result<Value> {
    let out = rt.exec(&["events", "--stats", id])?;
    expect_success(&out, "events --stats")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(text.lines().count() == 1, "events --stats printed {text}");
    serde_json::from_str(&text).context("events --stats printed no JSON")
}

/// Every object key path in `value` (`memory.usage.limit`), array contents excluded. Keys of
/// maps whose names depend on the host (memory.stat counters, hugetlb page sizes) are not
/// compared: their presence is, through the parent key.
fn key_paths(value: &Value, prefix: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let Some(map) = value.as_object() else {
        return paths;
    };
    for (key, child) in map {
        let path = format!("{prefix}{key}");
        if !matches!(path.as_str(), "memory.raw" | "hugetlb" | "blkio") {
            paths.extend(key_paths(child, &format!("{path}.")));
        }
        paths.insert(path);
    }
    paths
}

/// Keys runc leaves out when their value is zero or empty (Go's `omitempty`): whether they
/// appear depends on the moment's counters, not on the layout.
fn omitted_when_zero(path: &str) -> bool {
    const ALWAYS: [&str; 10] = [
        "memory.cache",
        "pids.current",
        "pids.limit",
        "cpu.usage.total",
        "cpu.usage.percpu",
        "cpu.usage.percpu_kernel",
        "cpu.usage.percpu_user",
        "cpu.throttling.periods",
        "cpu.throttling.throttledPeriods",
        "cpu.throttling.throttledTime",
    ];
    let memory_counter = path.starts_with("memory.")
        && (path.ends_with(".usage") || path.ends_with(".max"))
        && path.matches('.').count() == 2;
    ALWAYS.contains(&path) || memory_counter
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// `events --interval 200ms <id>` writing to a file; killed on drop if still running.
struct EventsChild {
    child: Child,
}

impl EventsChild {
    fn spawn(rt: &Runtime, id: &str, out: &Path) -> Result<Self> {
        let child = rt
            .command()
            .args(["events", "--interval", "200ms", id])
            .stdin(Stdio::null())
            .stdout(fs::File::create(out)?)
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning events")?;
        Ok(Self { child })
    }

    /// Waits for it to exit by itself; an error after `timeout`.
    fn wait(&mut self, timeout: Duration) -> Result<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(exit_code(&status));
            }
            if Instant::now() >= deadline {
                bail!("events did not exit within {timeout:?} after the container stopped");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for EventsChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- features ----

#[test]
fn features_lists_what_the_runtime_supports() -> Result<()> {
    let rt = Runtime::keel()?;
    let out = rt.exec(&["features"])?;
    expect_success(&out, "features")?;
    let doc: Value = serde_json::from_slice(&out.stdout).context("features printed no JSON")?;
    serde_json::from_value::<oci_spec::runtime::Features>(doc.clone())
        .context("features does not match the runtime-spec schema")?;
    assert_eq!(doc["ociVersionMin"], "1.0.0");
    assert_eq!(doc["ociVersionMax"], "1.2.0");
    let linux = &doc["linux"];
    for ns in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        assert!(
            contains(&linux["namespaces"], ns),
            "namespace {ns} not listed"
        );
    }
    let seccomp = &linux["seccomp"];
    assert_eq!(seccomp["enabled"], true);
    for action in [
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_LOG",
    ] {
        assert!(contains(&seccomp["actions"], action), "{action} not listed");
    }
    assert!(
        contains(&seccomp["actions"], "SCMP_ACT_NOTIFY"),
        "notify (with a listenerPath agent) is supported"
    );
    assert_eq!(seccomp["operators"].as_array().map(Vec::len), Some(7));
    if cfg!(target_arch = "x86_64") {
        assert!(contains(&seccomp["archs"], "SCMP_ARCH_X86_64"));
    }
    assert!(contains(&linux["capabilities"], "CAP_SYS_ADMIN"));
    assert_eq!(
        linux["cgroup"],
        json!({"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false})
    );
    assert_eq!(linux["mountExtensions"]["idmap"]["enabled"], true);
    assert!(contains(&doc["mountOptions"], "rbind") && contains(&doc["mountOptions"], "rro"));
    assert!(!contains(&doc["mountOptions"], "idmap"));
    assert!(contains(&doc["hooks"], "createRuntime") && contains(&doc["hooks"], "poststop"));
    assert!(doc["annotations"]["io.github.keel.runtime.version"].is_string());
    Ok(())
}

fn contains(list: &Value, item: &str) -> bool {
    list.as_array().is_some_and(|l| l.iter().any(|v| v == item))
}
