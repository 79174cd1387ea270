//! `process.ioPriority`, `process.scheduler`, `process.execCPUAffinity`, `linux.personality`
//! and `linux.memoryPolicy` (runtime-spec config.md and config-linux.md), each read back from
//! inside the container (and from the host where the container cannot see it), for the init
//! and for `exec`; a bad value of each refused with one line and nothing left behind.
//!
//! Where to look inside: `ionice -p` (busybox) for the I/O priority, `/proc/<pid>/stat` for
//! the policy, nice and real-time priority, `Cpus_allowed_list` for the affinity,
//! `/proc/self/personality` for the personality, and the policy column of
//! `/proc/self/numa_maps` for the memory policy (a mapping without its own policy shows the
//! thread's).

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use keel_integration_tests::checks::{expect_nothing_left, expect_one_line_error, expect_success};
use keel_integration_tests::config::DEFAULT_PATH;
use keel_integration_tests::exec::{output_with_timeout, DEFAULT_TIMEOUT};
use keel_integration_tests::inside::status_field;
use keel_integration_tests::skip::skip;
use keel_integration_tests::{
    host, require, require_root, run_and_capture, unique_id, Bundle, Config, Runtime,
};
use serde_json::{json, Value};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(10);

// --- Helpers ---------------------------------------------------------------------------------

/// Runs `config` in the foreground and returns its stdout, failing on a non-zero exit.
fn stdout_of(config: Config) -> Result<String> {
    Ok(run_and_capture(&config)?.success()?.stdout)
}

/// A bundle whose config.json is `config` edited as raw JSON: for what the spec allows but
/// oci-spec 0.10 would not write (its scheduler flag names differ from the spec's).
fn raw_bundle(config: &Config, edit: impl FnOnce(&mut Value)) -> Result<Bundle> {
    let bundle = Bundle::new(config)?;
    let mut doc = serde_json::to_value(config.spec())?;
    edit(&mut doc);
    bundle.write_raw_config(&serde_json::to_string_pretty(&doc)?)?;
    Ok(bundle)
}

/// Runs `bundle` in the foreground under a fresh runtime; its stdout on success.
fn run_bundle(bundle: &Bundle) -> Result<String> {
    let rt = Runtime::keel()?;
    let out = rt.run(bundle.path(), &unique_id("feat"))?;
    expect_success(&out, "run")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `create` of `config` (with `args: [true]`) fails with one line naming each of `needles`,
/// leaving nothing behind.
fn expect_create_refused(config: Config, needles: &[&str]) -> Result<()> {
    let bundle = Bundle::new(&config.args(&["true"]))?;
    expect_bundle_refused(&bundle, needles)
}

fn expect_bundle_refused(bundle: &Bundle, needles: &[&str]) -> Result<()> {
    let rt = Runtime::keel()?;
    let id = unique_id("badfeat");
    let out = rt.create(bundle.path(), &id)?;
    expect_one_line_error(&out, needles)?;
    expect_nothing_left(&rt, &id, bundle.path())
}

/// Scheduling fields of one `/proc/<pid>/stat` line.
#[derive(Debug, PartialEq, Eq)]
struct Sched {
    policy: i64,
    nice: i64,
    rt_priority: i64,
}

/// Parses a stat line: fields are counted from the one after `(comm)`.
fn sched_of(stat: &str) -> Result<Sched> {
    let rest = stat.rsplit_once(") ").context("not a stat line")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Result<i64> {
        let text = fields.get(i).context("short stat line")?;
        text.parse().with_context(|| format!("stat field {text:?}"))
    };
    Ok(Sched {
        nice: field(16)?,
        rt_priority: field(37)?,
        policy: field(38)?,
    })
}

/// The scheduling of a container running `cat /proc/self/stat` (no shell: nothing forks).
fn sched_in(config: Config) -> Result<Sched> {
    sched_of(&stdout_of(config.args(&["cat", "/proc/self/stat"]))?)
}

/// The CPUs of the test process, as the kernel lists them ("0-1").
fn host_cpu_list() -> Result<String> {
    let status = fs::read_to_string("/proc/self/status")?;
    Ok(status_field(&status, "Cpus_allowed_list")
        .context("no Cpus_allowed_list")?
        .to_string())
}

/// The members of a kernel list ("0-2,5").
fn members(list: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for item in list.split(',').filter(|i| !i.is_empty()) {
        let (a, b) = item.split_once('-').unwrap_or((item, item));
        if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
            out.extend(a..=b);
        }
    }
    out
}

/// The first two CPUs the tests may use; none (and the test says it is skipped) without two.
fn two_cpus_or_skip() -> Result<Option<(u32, u32)>> {
    let cpus = members(&host_cpu_list()?);
    let two = match cpus.as_slice() {
        [a, b, ..] => Some((*a, *b)),
        _ => None,
    };
    if two.is_none() {
        skip(module_path!(), "needs two CPUs");
    }
    Ok(two)
}

/// The `Cpus_allowed_list` line a checker printed.
fn cpus_in(out: &str) -> Option<&str> {
    status_field(out, "Cpus_allowed_list")
}

/// The first line of numa_maps output without its address: the policy ("bind:0", "prefer
/// (many):0", ...) then the mapping's fields.
fn numa_line(out: &str) -> &str {
    let first = out.lines().next().unwrap_or_default();
    first.split_once(' ').map_or("", |(_, rest)| rest)
}

/// Whether numa_maps output shows the policy `want` (which may contain spaces).
fn shows_policy(out: &str, want: &str) -> bool {
    numa_line(out).starts_with(&format!("{want} "))
}

fn host_has_numa_maps() -> bool {
    Path::new("/proc/self/numa_maps").exists()
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    (next(), next()) >= (major, minor)
}

/// A runtime command run under `taskset -c <cpu>`: the runtime starts with a narrow affinity.
fn under_taskset(rt: &Runtime, cpu: u32, args: &[&str]) -> Result<Output> {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(cpu.to_string()).arg(rt.binary());
    cmd.arg("--root").arg(rt.root()).args(args);
    output_with_timeout(&mut cmd, DEFAULT_TIMEOUT)
}

fn has_tool(name: &str) -> bool {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .any(|dir| Path::new(dir).join(name).exists())
}

/// A running container (init sleeps) to `exec` in; the runtime kills it on drop.
struct Container {
    rt: Runtime,
    _bundle: Bundle,
    id: String,
    dir: TempDir,
}

impl Container {
    fn sleeping(config: Config) -> Result<Self> {
        let rt = Runtime::keel()?;
        let bundle = Bundle::new(&config.sh("touch /tmp/.ready; exec sleep 100000"))?;
        let id = unique_id("featx");
        expect_success(&rt.run_detached(bundle.path(), &id)?, "run -d")?;
        let ready = bundle.rootfs().join("tmp/.ready");
        ensure!(
            host::wait_until(WAIT, || ready.exists()),
            "init never got ready"
        );
        let dir = tempfile::tempdir()?;
        Ok(Self {
            rt,
            _bundle: bundle,
            id,
            dir,
        })
    }

    /// `exec <id> <cmd...>`.
    fn exec(&self, cmd: &[&str]) -> Result<Output> {
        let mut args = vec!["exec", self.id.as_str()];
        args.extend_from_slice(cmd);
        self.rt.exec(&args)
    }

    /// `exec --process <file> <id>` with `process` as the file.
    fn exec_process(&self, process: &Value) -> Result<Output> {
        let file = self.dir.path().join(unique_id("process.json"));
        fs::write(&file, serde_json::to_string(process)?)?;
        let file = file.to_string_lossy().into_owned();
        self.rt.exec(&["exec", "--process", &file, &self.id])
    }

    /// Stdout of a successful exec.
    fn stdout(out: Output) -> Result<String> {
        expect_success(&out, "exec")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A process.json running `args` as root in `/`, with `extra` fields merged in.
fn process_json(args: &[&str], extra: Value) -> Value {
    let mut doc = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": [DEFAULT_PATH],
        "cwd": "/"
    });
    if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
        doc.extend(extra);
    }
    doc
}

// --- process.ioPriority ------------------------------------------------------------------------

#[test]
fn io_priority_reaches_the_process_and_its_children() -> Result<()> {
    require_root!();
    let prio = json!({"process": {"ioPriority": {"class": "IOPRIO_CLASS_RT", "priority": 3}}});
    // `ionice -p $$` asks about the shell; `ionice -p 0` about the ionice child itself.
    let out = stdout_of(Config::new().merge(prio)?.sh("ionice -p $$; ionice -p 0"))?;
    assert_eq!(out, "realtime: prio 3\nrealtime: prio 3\n");
    Ok(())
}

#[test]
fn io_priority_best_effort_and_idle_classes() -> Result<()> {
    require_root!();
    let cases = [
        (
            json!({"class": "IOPRIO_CLASS_BE", "priority": 6}),
            "best-effort: prio 6\n",
        ),
        (
            json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0}),
            "idle\n",
        ),
    ];
    for (prio, want) in cases {
        let config = Config::new().merge(json!({"process": {"ioPriority": prio}}))?;
        assert_eq!(stdout_of(config.sh("ionice -p $$"))?, want, "{prio}");
    }
    Ok(())
}

#[test]
fn io_priority_out_of_range_is_refused() -> Result<()> {
    require_root!();
    let prio = json!({"process": {"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}}});
    expect_create_refused(Config::new().merge(prio)?, &["ioPriority"])
}

// --- process.scheduler -------------------------------------------------------------------------

#[test]
fn scheduler_batch_with_nice() -> Result<()> {
    require_root!();
    let config = Config::new()
        .merge(json!({"process": {"scheduler": {"policy": "SCHED_BATCH", "nice": 5}}}))?;
    let sched = sched_in(config)?;
    assert_eq!((sched.policy, sched.nice), (3, 5), "{sched:?}");
    Ok(())
}

#[test]
fn scheduler_idle() -> Result<()> {
    require_root!();
    let config =
        Config::new().merge(json!({"process": {"scheduler": {"policy": "SCHED_IDLE"}}}))?;
    assert_eq!(sched_in(config)?.policy, 5);
    Ok(())
}

#[test]
fn scheduler_is_set_while_the_init_may_still_raise_priority() -> Result<()> {
    require_root!();
    // A negative nice needs CAP_SYS_NICE, which the container's process does not keep: the
    // runtime must set it before it drops capabilities.
    let config = Config::new()
        .merge(json!({"process": {"scheduler": {"policy": "SCHED_OTHER", "nice": -5}}}))?;
    let sched = sched_in(config)?;
    assert_eq!((sched.policy, sched.nice), (0, -5), "{sched:?}");
    Ok(())
}

#[test]
fn scheduler_reset_on_fork_with_the_spec_s_flag_name() -> Result<()> {
    require_root!();
    let config = Config::new().sh("cat /proc/self/stat; cat /proc/$$/stat");
    let bundle = raw_bundle(&config, |doc| {
        doc["process"]["scheduler"] = json!({
            "policy": "SCHED_OTHER", "nice": -5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]
        });
    })?;
    let out = run_bundle(&bundle)?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(lines.len() == 2, "expected two stat lines: {out}");
    // The shell keeps nice -5; its child (the first cat) starts over at 0.
    assert_eq!(sched_of(lines[0])?.nice, 0, "{out}");
    assert_eq!(sched_of(lines[1])?.nice, -5, "{out}");
    Ok(())
}

#[test]
fn scheduler_fifo_with_priority() -> Result<()> {
    require_root!();
    let rt = Runtime::keel()?;
    let id = unique_id("fifo");
    let mut patch = json!({"process": {"scheduler": {"policy": "SCHED_FIFO", "priority": 10}}});
    // With RT group scheduling (cgroup v1 `cpu.rt_runtime_us`) a real-time task needs a cgroup
    // with a real-time budget, under a parent that has one: the hierarchy root.
    if Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists() {
        patch["linux"] = json!({
            "cgroupsPath": format!("/{id}"),
            "resources": {"cpu": {"realtimePeriod": 1_000_000, "realtimeRuntime": 10_000}}
        });
    }
    let config = Config::new()
        .merge(patch)?
        .args(&["cat", "/proc/self/stat"]);
    let bundle = Bundle::new(&config)?;
    let out = rt.run(bundle.path(), &id)?;
    expect_success(&out, "run")?;
    let sched = sched_of(&String::from_utf8_lossy(&out.stdout))?;
    assert_eq!((sched.policy, sched.rt_priority), (1, 10), "{sched:?}");
    Ok(())
}

#[test]
fn scheduler_deadline_with_runtime_deadline_and_period() -> Result<()> {
    require_root!();
    let dl = json!({"process": {"scheduler": {
        "policy": "SCHED_DEADLINE", "runtime": 10_000_000, "deadline": 30_000_000,
        "period": 100_000_000
    }}});
    // Inside: the policy (a deadline task may not fork, so nothing forks here).
    assert_eq!(sched_in(Config::new().merge(dl.clone())?)?.policy, 6);
    // From the host: the parameters, which nothing inside the container can print.
    require!(has_tool("chrt"), "needs chrt (util-linux) on the host");
    let rt = Runtime::keel()?;
    let bundle = Bundle::new(&Config::new().merge(dl)?.args(&["sleep", "100000"]))?;
    let id = unique_id("deadline");
    expect_success(&rt.run_detached(bundle.path(), &id)?, "run -d")?;
    let pid = rt.pid(&id)?.to_string();
    let chrt = output_with_timeout(Command::new("chrt").args(["-p", &pid]), DEFAULT_TIMEOUT)?;
    let text = String::from_utf8_lossy(&chrt.stdout);
    assert!(text.contains("SCHED_DEADLINE"), "{text}");
    assert!(text.contains("10000000/30000000/100000000"), "{text}");
    Ok(())
}

#[test]
fn scheduler_values_the_policy_does_not_take_are_refused() -> Result<()> {
    require_root!();
    let cases = [
        json!({"policy": "SCHED_OTHER", "priority": 10}),
        json!({"policy": "SCHED_BATCH", "nice": 20}),
        json!({"policy": "SCHED_FIFO", "priority": 100}),
    ];
    for scheduler in cases {
        let config = Config::new().merge(json!({"process": {"scheduler": scheduler}}))?;
        expect_create_refused(config, &["scheduler"])?;
    }
    Ok(())
}

// --- process.execCPUAffinity -------------------------------------------------------------------

#[test]
fn init_affinity_does_not_inherit_the_runtime_s() -> Result<()> {
    require_root!();
    require!(
        has_tool("taskset"),
        "needs taskset (util-linux) on the host"
    );
    let Some((first, _)) = two_cpus_or_skip()? else {
        return Ok(());
    };
    let want = host_cpu_list()?;
    let rt = Runtime::keel()?;
    let bundle =
        Bundle::new(&Config::new().args(&["grep", "Cpus_allowed_list", "/proc/self/status"]))?;
    let id = unique_id("aff");
    rt.adopt(&id, bundle.path());
    let bundle_arg = bundle.path().to_string_lossy().into_owned();
    let out = under_taskset(&rt, first, &["run", "--bundle", &bundle_arg, &id])?;
    expect_success(&out, "taskset run")?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(cpus_in(&text), Some(want.as_str()), "{text}");
    Ok(())
}

#[test]
fn exec_cpu_affinity_does_not_apply_to_the_init() -> Result<()> {
    require_root!();
    let Some((first, second)) = two_cpus_or_skip()? else {
        return Ok(());
    };
    let affinity = json!({"initial": first.to_string(), "final": second.to_string()});
    let config = Config::new().merge(json!({"process": {"execCPUAffinity": affinity}}))?;
    let out = stdout_of(config.args(&["grep", "Cpus_allowed_list", "/proc/self/status"]))?;
    assert_eq!(cpus_in(&out), Some(host_cpu_list()?.as_str()), "{out}");
    Ok(())
}

#[test]
fn exec_cpu_affinity_final_from_process_json() -> Result<()> {
    require_root!();
    let Some((first, second)) = two_cpus_or_skip()? else {
        return Ok(());
    };
    let c = Container::sleeping(Config::new())?;
    for (initial, last) in [(first, second), (second, first)] {
        let affinity = json!({"initial": initial.to_string(), "final": last.to_string()});
        let process = process_json(
            &["grep", "Cpus_allowed_list", "/proc/self/status"],
            json!({"execCPUAffinity": affinity}),
        );
        let out = Container::stdout(c.exec_process(&process)?)?;
        assert_eq!(cpus_in(&out), Some(last.to_string().as_str()), "{out}");
    }
    Ok(())
}

#[test]
fn exec_cpu_affinity_from_config_json() -> Result<()> {
    require_root!();
    let Some((first, second)) = two_cpus_or_skip()? else {
        return Ok(());
    };
    let affinity = json!({"initial": first.to_string(), "final": second.to_string()});
    let c = Container::sleeping(
        Config::new().merge(json!({"process": {"execCPUAffinity": affinity}}))?,
    )?;
    let out = Container::stdout(c.exec(&["grep", "Cpus_allowed_list", "/proc/self/status"])?)?;
    assert_eq!(cpus_in(&out), Some(second.to_string().as_str()), "{out}");
    Ok(())
}

#[test]
fn exec_default_affinity_does_not_inherit_the_runtime_s() -> Result<()> {
    require_root!();
    require!(
        has_tool("taskset"),
        "needs taskset (util-linux) on the host"
    );
    let Some((first, _)) = two_cpus_or_skip()? else {
        return Ok(());
    };
    let c = Container::sleeping(Config::new())?;
    let cmd = [
        "exec",
        c.id.as_str(),
        "grep",
        "Cpus_allowed_list",
        "/proc/self/status",
    ];
    let out = Container::stdout(under_taskset(&c.rt, first, &cmd)?)?;
    assert_eq!(cpus_in(&out), Some(host_cpu_list()?.as_str()), "{out}");
    Ok(())
}

#[test]
fn exec_bad_cpu_list_is_refused() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new())?;
    // oci-spec's own check lets a backwards range through; the runtime must not.
    let process = process_json(&["true"], json!({"execCPUAffinity": {"final": "1-0"}}));
    expect_one_line_error(&c.exec_process(&process)?, &["execCPUAffinity"])
}

// --- linux.personality -------------------------------------------------------------------------

#[test]
fn personality_linux32() -> Result<()> {
    require_root!();
    let config = Config::new().merge(json!({"linux": {"personality": {"domain": "LINUX32"}}}))?;
    let out = stdout_of(config.sh("cat /proc/self/personality; uname -m"))?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("00000008"), "{out}");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(lines.get(1).copied(), Some("i686"), "{out}");
    }
    Ok(())
}

#[test]
fn personality_linux_with_flags() -> Result<()> {
    require_root!();
    let cases = [
        (json!({"domain": "LINUX"}), "00000000\n"),
        (
            json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}),
            "00040000\n",
        ),
    ];
    for (personality, want) in cases {
        let config = Config::new().merge(json!({"linux": {"personality": personality}}))?;
        let out = stdout_of(config.args(&["cat", "/proc/self/personality"]))?;
        assert_eq!(out, want, "{personality}");
    }
    Ok(())
}

#[test]
fn personality_unknown_flag_is_refused() -> Result<()> {
    require_root!();
    let personality = json!({"domain": "LINUX", "flags": ["NO_SUCH_FLAG"]});
    let config = Config::new().merge(json!({"linux": {"personality": personality}}))?;
    expect_create_refused(config, &["personality", "NO_SUCH_FLAG"])
}

// --- linux.memoryPolicy ------------------------------------------------------------------------

/// The first numa_maps line (without its address) of a container with `policy`.
fn numa_line_in(policy: Value) -> Result<String> {
    let config = Config::new().merge(json!({"linux": {"memoryPolicy": policy}}))?;
    let out = stdout_of(config.args(&["head", "-n", "1", "/proc/self/numa_maps"]))?;
    Ok(numa_line(&out).to_string())
}

#[test]
fn memory_policy_modes() -> Result<()> {
    require_root!();
    require!(
        host_has_numa_maps(),
        "needs /proc/self/numa_maps (a NUMA kernel)"
    );
    let mut cases = vec![
        (json!({"mode": "MPOL_DEFAULT"}), "default"),
        (json!({"mode": "MPOL_BIND", "nodes": "0"}), "bind:0"),
        (
            json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"}),
            "interleave:0",
        ),
        (json!({"mode": "MPOL_PREFERRED", "nodes": "0"}), "prefer:0"),
        // Preferred with no nodes is local allocation.
        (json!({"mode": "MPOL_PREFERRED"}), "local"),
        (json!({"mode": "MPOL_LOCAL"}), "local"),
    ];
    if kernel_at_least(5, 15) {
        cases.push((
            json!({"mode": "MPOL_PREFERRED_MANY", "nodes": "0"}),
            "prefer (many):0",
        ));
    }
    if kernel_at_least(6, 9) {
        let weighted = json!({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0"});
        cases.push((weighted, "weighted interleave:0"));
    }
    for (policy, want) in cases {
        let line = numa_line_in(policy.clone())?;
        assert!(line.starts_with(&format!("{want} ")), "{policy}: {line}");
    }
    Ok(())
}

#[test]
fn memory_policy_flags() -> Result<()> {
    require_root!();
    require!(
        host_has_numa_maps(),
        "needs /proc/self/numa_maps (a NUMA kernel)"
    );
    let bind = |flag: &str| json!({"mode": "MPOL_BIND", "nodes": "0", "flags": [flag]});
    let mut cases = vec![
        (bind("MPOL_F_STATIC_NODES"), "bind=static:0"),
        (bind("MPOL_F_RELATIVE_NODES"), "bind=relative:0"),
    ];
    if kernel_at_least(5, 12) {
        cases.push((bind("MPOL_F_NUMA_BALANCING"), "bind=balancing:0"));
    }
    for (policy, want) in cases {
        let line = numa_line_in(policy.clone())?;
        assert!(line.starts_with(&format!("{want} ")), "{policy}: {line}");
    }
    Ok(())
}

/// A node number one past the highest online node: valid syntax, never usable.
fn offline_node() -> u32 {
    let online = fs::read_to_string("/sys/devices/system/node/online").unwrap_or_default();
    members(online.trim())
        .into_iter()
        .max()
        .map_or(1, |n| n + 1)
}

#[test]
fn memory_policy_invalid_is_refused() -> Result<()> {
    require_root!();
    let cases = [
        json!({"mode": "MPOL_BIND"}),
        json!({"mode": "MPOL_DEFAULT", "nodes": "0"}),
        json!({"mode": "MPOL_INTERLEAVE", "nodes": "1-0"}),
        json!({"mode": "MPOL_BIND", "nodes": "0",
               "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
        json!({"mode": "MPOL_BIND", "nodes": offline_node().to_string()}),
    ];
    for policy in cases {
        let config = Config::new().merge(json!({"linux": {"memoryPolicy": policy}}))?;
        expect_create_refused(config, &["memoryPolicy"])?;
    }
    Ok(())
}

#[test]
fn memory_policy_unknown_mode_is_refused() -> Result<()> {
    require_root!();
    let bundle = raw_bundle(&Config::new().args(&["true"]), |doc| {
        doc["linux"]["memoryPolicy"] = json!({"mode": "MPOL_NOPE", "nodes": "0"});
    })?;
    expect_bundle_refused(&bundle, &["MPOL_NOPE"])
}

// --- exec: what applies to a new process -------------------------------------------------------

#[test]
fn exec_process_json_io_priority_and_scheduler() -> Result<()> {
    require_root!();
    let c = Container::sleeping(Config::new())?;
    let process = process_json(
        &["sh", "-c", "ionice -p $$; cat /proc/$$/stat"],
        json!({
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0},
            "scheduler": {"policy": "SCHED_BATCH", "nice": 3}
        }),
    );
    let out = Container::stdout(c.exec_process(&process)?)?;
    let (ionice, stat) = out.split_once('\n').context("two lines expected")?;
    assert_eq!(ionice, "idle", "{out}");
    let sched = sched_of(stat)?;
    assert_eq!((sched.policy, sched.nice), (3, 3), "{out}");
    Ok(())
}

#[test]
fn exec_gets_the_container_s_personality_and_memory_policy() -> Result<()> {
    require_root!();
    let mut linux = json!({"personality": {"domain": "LINUX32"}});
    if host_has_numa_maps() {
        linux["memoryPolicy"] = json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"});
    }
    let c = Container::sleeping(Config::new().merge(json!({"linux": linux}))?)?;
    let out = Container::stdout(c.exec(&["cat", "/proc/self/personality"])?)?;
    assert_eq!(out, "00000008\n");
    if host_has_numa_maps() {
        let out = Container::stdout(c.exec(&["head", "-n", "1", "/proc/self/numa_maps"])?)?;
        assert!(shows_policy(&out, "interleave:0"), "{out}");
    }
    Ok(())
}
