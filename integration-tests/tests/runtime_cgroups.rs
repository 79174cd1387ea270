//! `linux.resources` and `linux.cgroupsPath` on cgroup v1: each limit read on the host while
//! the container runs, and where possible felt from inside.

use std::time::Duration;

use anyhow::{Context, Result};
use keel_integration_tests::checks::expect_success;
use keel_integration_tests::config::{from_json, mount};
use keel_integration_tests::host;
use keel_integration_tests::inside::status_field;
use keel_integration_tests::{
    require, require_root, run_and_capture, unique_id, Bundle, Config, Runtime,
};
use oci_spec::runtime::LinuxDevice;
use serde_json::{json, Value};

/// A running container with `resources` under an explicit cgroupsPath `/keel-it/<id>`.
struct Limited {
    rt: Runtime,
    _bundle: Bundle,
    id: String,
    cgroup: String,
}

impl Limited {
    fn start(resources: Value) -> Result<Self> {
        let id = unique_id("cg");
        let cgroup = format!("/keel-it/{id}");
        let config = Config::new()
            .cgroups_path(&cgroup)
            .merge(json!({"linux": {"resources": resources}}))?
            .args(&["sleep", "1000"]);
        let bundle = Bundle::new(&config)?;
        let rt = Runtime::keel()?;
        expect_success(&rt.create(bundle.path(), &id)?, "create")?;
        expect_success(&rt.start(&id)?, "start")?;
        Ok(Self {
            rt,
            _bundle: bundle,
            id,
            cgroup,
        })
    }

    fn read(&self, controller: &str, file: &str) -> Result<String> {
        host::read_cgroup_file(controller, &self.cgroup, file)
    }
}

/// A config with `resources` and the cgroup hierarchy mounted at /sys/fs/cgroup.
fn with_cgroup_mount(resources: Value) -> Result<Config> {
    Config::new()
        .mount(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "ro"],
        ))
        .merge(json!({"linux": {"resources": resources}}))
}

fn run_sh(config: Config, script: &str) -> Result<String> {
    Ok(run_and_capture(&config.sh(script))?.success()?.stdout)
}

#[test]
fn cgroups_path_is_honoured() -> Result<()> {
    require_root!();
    let c = Limited::start(json!({}))?;
    let pid = c.rt.pid(&c.id)?;
    for controller in ["memory", "cpu", "pids", "devices", "freezer"] {
        let procs = c.read(controller, "cgroup.procs")?;
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{controller}: init {pid} not in {procs}"
        );
        assert_eq!(
            host::cgroup_of(pid, controller).as_deref(),
            Some(c.cgroup.as_str()),
            "{controller}"
        );
    }
    expect_success(&c.rt.delete_force(&c.id)?, "delete --force")?;
    assert_eq!(
        host::cgroup_present_in(&c.cgroup),
        Vec::<&str>::new(),
        "cgroup left after delete"
    );
    Ok(())
}

#[test]
fn memory_limit_and_reservation() -> Result<()> {
    require_root!();
    let limit: i64 = 64 * 1024 * 1024;
    let c = Limited::start(json!({"memory": {"limit": limit, "reservation": limit / 2}}))?;
    assert_eq!(
        c.read("memory", "memory.limit_in_bytes")?,
        limit.to_string()
    );
    assert_eq!(
        c.read("memory", "memory.soft_limit_in_bytes")?,
        (limit / 2).to_string()
    );
    let inside = run_sh(
        with_cgroup_mount(json!({"memory": {"limit": limit}}))?,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    )?;
    assert_eq!(inside.trim(), limit.to_string());
    Ok(())
}

#[test]
fn memory_limit_is_enforced() -> Result<()> {
    require_root!();
    let limit: i64 = 16 * 1024 * 1024;
    let config = Config::new()
        .merge(json!({"linux": {"resources": {"memory": {"limit": limit, "swap": limit}}}}))?;
    // Fill a tmpfs (charged to the cgroup) well past the limit.
    let config = config.mount(mount("/fill", "tmpfs", "tmpfs", &["size=64m"]));
    let out = run_and_capture(
        &config.sh("dd if=/dev/zero of=/fill/x bs=1M count=48 2>/dev/null; stat -c %s /fill/x"),
    )?;
    let written: u64 = out.stdout.trim().parse().unwrap_or(0);
    assert!(
        out.status != 0 || written < 48 * 1024 * 1024,
        "wrote {written} bytes under a 16 MiB limit: {out:?}"
    );
    Ok(())
}

#[test]
fn cpu_shares_quota_and_period() -> Result<()> {
    require_root!();
    let c = Limited::start(json!({"cpu": {"shares": 512, "quota": 50000, "period": 100000}}))?;
    assert_eq!(c.read("cpu", "cpu.shares")?, "512");
    assert_eq!(c.read("cpu", "cpu.cfs_quota_us")?, "50000");
    assert_eq!(c.read("cpu", "cpu.cfs_period_us")?, "100000");
    Ok(())
}

#[test]
fn pids_limit_is_set_and_enforced() -> Result<()> {
    require_root!();
    let c = Limited::start(json!({"pids": {"limit": 10}}))?;
    assert_eq!(c.read("pids", "pids.max")?, "10");
    let config = Config::new().merge(json!({"linux": {"resources": {"pids": {"limit": 5}}}}))?;
    let out = run_and_capture(
        &config.sh("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done 2>&1; echo end"),
    )?;
    assert!(
        out.stdout.contains("can't fork") || out.stderr.contains("can't fork"),
        "10 forks under pids.max=5: {out:?}"
    );
    Ok(())
}

#[test]
fn cpuset_cpus_and_mems() -> Result<()> {
    require_root!();
    let c = Limited::start(json!({"cpu": {"cpus": "0", "mems": "0"}}))?;
    assert_eq!(c.read("cpuset", "cpuset.cpus")?, "0");
    assert_eq!(c.read("cpuset", "cpuset.mems")?, "0");
    let config = Config::new().merge(json!({"linux": {"resources": {"cpu": {"cpus": "0"}}}}))?;
    let status = run_sh(config, "cat /proc/self/status")?;
    assert_eq!(status_field(&status, "Cpus_allowed_list"), Some("0"));
    Ok(())
}

#[test]
fn blkio_weight() -> Result<()> {
    require_root!();
    let file = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| host::cgroup_dir("blkio", "/").join(f).exists());
    require!(
        file.is_some(),
        "the blkio controller has no weight file (no CFQ/BFQ scheduler)"
    );
    let file = file.context("weight file")?;
    let c = Limited::start(json!({"blockIO": {"weight": 300}}))?;
    let value = c.read("blkio", file)?;
    assert!(
        value.split_whitespace().any(|w| w == "300"),
        "{file}: {value}"
    );
    Ok(())
}

/// `/dev/loopctl` (10:237, loop-control: opening it needs no capability, and runc does not
/// allow it by default as it does the tun device).
fn loop_control() -> Result<LinuxDevice> {
    from_json(
        json!({"path": "/dev/loopctl", "type": "c", "major": 10, "minor": 237, "fileMode": 0o666}),
    )
}

#[test]
fn devices_cgroup_denies_a_device() -> Result<()> {
    require_root!();
    let rules = json!({"devices": [
        {"allow": true, "access": "rwm"},
        {"allow": false, "type": "c", "major": 10, "minor": 237, "access": "rwm"}
    ]});
    let denied = || -> Result<Config> {
        Config::new()
            .device(loop_control()?)
            .merge(json!({"linux": {"resources": rules.clone()}}))
    };
    let out = run_and_capture(&denied()?.sh(": < /dev/loopctl"))?;
    assert_ne!(out.status, 0, "opened a denied device");
    assert!(out.stderr.contains("not permitted"), "{}", out.stderr);
    run_sh(denied()?, "echo x > /dev/null")?;
    // Allowed, the same device opens.
    let allow_all =
        json!({"linux": {"resources": {"devices": [{"allow": true, "access": "rwm"}]}}});
    run_sh(
        Config::new().device(loop_control()?).merge(allow_all)?,
        ": < /dev/loopctl",
    )?;
    // On the host (v1 lists exceptions only under a deny-all default).
    let allow_list = json!({"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
    ]});
    let c = Limited::start(allow_list)?;
    let list = c.read("devices", "devices.list")?;
    assert!(
        list.lines().any(|l| l == "c 1:3 rwm"),
        "devices.list: {list}"
    );
    assert!(
        !list.lines().any(|l| l == "a *:* rwm"),
        "devices.list: {list}"
    );
    Ok(())
}

#[test]
fn devices_deny_all_allows_the_default_devices() -> Result<()> {
    require_root!();
    let config = Config::runc_default().args(&[
        "sh",
        "-c",
        "echo x > /dev/null && head -c 1 /dev/urandom | wc -c",
    ]);
    assert_eq!(run_and_capture(&config)?.success()?.stdout.trim(), "1");
    Ok(())
}

#[test]
fn hugepage_limits() -> Result<()> {
    require_root!();
    require!(
        host::has_controller("hugetlb"),
        "no hugetlb cgroup controller on this host"
    );
    let c = Limited::start(json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}))?;
    assert_eq!(c.read("hugetlb", "hugetlb.2MB.limit_in_bytes")?, "4194304");
    Ok(())
}

#[test]
fn default_cgroup_is_created_and_removed() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().args(&["sleep", "1000"]))?;
    let rt = Runtime::keel()?;
    let id = unique_id("cgdefault");
    expect_success(&rt.run_detached(bundle.path(), &id)?, "run -d")?;
    let pid = rt.pid(&id)?;
    let cgroup = host::cgroup_of(pid, "memory").context("no memory cgroup")?;
    if !rt.is_runc() {
        assert_eq!(cgroup, format!("/keel/{id}"));
    }
    assert!(
        cgroup.contains(&id),
        "the container shares a cgroup: {cgroup}"
    );
    expect_success(&rt.kill(&id, "KILL")?, "kill")?;
    assert!(rt.wait_status(&id, "stopped", Duration::from_secs(10)));
    expect_success(&rt.delete(&id)?, "delete")?;
    assert_eq!(host::cgroup_present_in(&cgroup), Vec::<&str>::new());
    Ok(())
}

#[test]
fn a_failed_create_leaves_a_cgroup_it_only_joined_alone() -> Result<()> {
    require_root!();
    // A cgroup that exists before the container (a pod's, say), with a process in it.
    let path = format!("/{}", unique_id("keel-it-preexisting"));
    let dir = host::cgroup_dir("pids", &path);
    std::fs::create_dir_all(&dir)?;
    let sleeper = host::ChildGuard::spawn(std::process::Command::new("sleep").arg("300"))?;
    std::fs::write(dir.join("cgroup.procs"), sleeper.pid().to_string())?;
    let bundle = Bundle::new(&Config::new().cgroups_path(&path).args(&["/no/such/binary"]))?;
    let rt = Runtime::keel()?;
    let out = rt.create(bundle.path(), &unique_id("joined"))?;
    let survived = host::pid_alive(sleeper.pid()) && dir.exists();
    drop(sleeper);
    host::remove_cgroup(&path);
    anyhow::ensure!(
        !out.status.success(),
        "create of a missing binary succeeded"
    );
    anyhow::ensure!(
        survived,
        "a failed create killed or removed a cgroup it had not made"
    );
    Ok(())
}
