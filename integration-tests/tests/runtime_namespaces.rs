//! `linux.namespaces`: each new namespace seen from inside, user namespace mappings, joining
//! an existing namespace by path; `hostname`, `domainname` and `linux.sysctl`, which live in
//! the container's UTS, IPC and network namespaces.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use keel_integration_tests::checks::expect_success;
use keel_integration_tests::host::{self, ChildGuard};
use keel_integration_tests::inside::words;
use keel_integration_tests::{
    require, require_root, run_and_capture, unique_id, Bundle, Config, Runtime,
};
use oci_spec::runtime::LinuxNamespaceType;

fn run_sh(config: Config, script: &str) -> Result<String> {
    Ok(run_and_capture(&config.sh(script))?.success()?.stdout)
}

/// `readlink /proc/self/ns/<ns>` of the test process.
fn host_ns(ns: &str) -> Result<String> {
    host::namespace_of(std::process::id() as i32, ns)
}

/// `readlink /proc/self/ns/<ns>` inside a container made from `config`.
fn container_ns(config: Config, ns: &str) -> Result<String> {
    Ok(run_sh(config, &format!("readlink /proc/self/ns/{ns}"))?
        .trim()
        .to_string())
}

#[test]
fn pid_namespace_makes_the_process_pid_1() -> Result<()> {
    require_root!();
    assert_eq!(run_sh(Config::new(), "echo $$")?, "1\n");
    assert_ne!(container_ns(Config::new(), "pid")?, host_ns("pid")?);
    Ok(())
}

#[test]
fn without_pid_namespace_the_host_pids_are_shared() -> Result<()> {
    require_root!();
    let config = Config::new().without_namespace(LinuxNamespaceType::Pid);
    assert_eq!(container_ns(config, "pid")?, host_ns("pid")?);
    Ok(())
}

#[test]
fn network_namespace_has_only_loopback() -> Result<()> {
    require_root!();
    let out = run_sh(Config::new(), "tail -n +3 /proc/net/dev | cut -d: -f1")?;
    assert_eq!(words(&out), vec!["lo"], "{out}");
    assert_ne!(container_ns(Config::new(), "net")?, host_ns("net")?);
    Ok(())
}

#[test]
fn ipc_uts_mount_namespaces_are_new() -> Result<()> {
    require_root!();
    for ns in ["ipc", "uts", "mnt"] {
        assert_ne!(
            container_ns(Config::new(), ns)?,
            host_ns(ns)?,
            "{ns} namespace shared with the host"
        );
    }
    Ok(())
}

#[test]
fn hostname_is_set_in_the_uts_namespace() -> Result<()> {
    require_root!();
    let before = fs::read_to_string("/proc/sys/kernel/hostname")?;
    assert_eq!(
        run_sh(Config::new().hostname("inside-keel"), "hostname")?,
        "inside-keel\n"
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/hostname")?,
        before,
        "host hostname changed"
    );
    Ok(())
}

#[test]
fn domainname_is_set_in_the_uts_namespace() -> Result<()> {
    require_root!();
    require!(
        !Runtime::keel()?.is_runc(),
        "runc 1.1 does not support domainname"
    );
    let before = fs::read_to_string("/proc/sys/kernel/domainname")?;
    let out = run_sh(
        Config::new().domainname("example.org"),
        "cat /proc/sys/kernel/domainname",
    )?;
    assert_eq!(out, "example.org\n");
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/domainname")?,
        before,
        "host domainname changed"
    );
    Ok(())
}

#[test]
fn user_namespace_with_mappings() -> Result<()> {
    require_root!();
    let config = || Config::new().user_namespace(100_000, 100_000, 65_536);
    let out = run_sh(
        config(),
        "cat /proc/self/uid_map; cat /proc/self/gid_map; id -u",
    )?;
    let lines: Vec<Vec<String>> = out.lines().map(words).collect();
    assert_eq!(
        lines.first().map(Vec::as_slice),
        Some(&["0", "100000", "65536"].map(String::from)[..]),
        "{out}"
    );
    assert_eq!(
        lines.get(1).map(Vec::as_slice),
        Some(&["0", "100000", "65536"].map(String::from)[..]),
        "{out}"
    );
    assert_eq!(
        lines.get(2).map(Vec::as_slice),
        Some(&["0".to_string()][..]),
        "{out}"
    );
    assert_ne!(container_ns(config(), "user")?, host_ns("user")?);
    Ok(())
}

#[test]
fn user_namespace_root_is_not_host_root() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let config = Config::new()
        .user_namespace(100_000, 100_000, 65_536)
        .bind(dir.path(), "/shared", &[])
        .sh("touch /shared/file 2>/dev/null; stat -c %u /shared");
    let bundle = Bundle::new(&config)?;
    // The rootfs belongs to host root, unmapped inside: make the mount point beforehand.
    fs::create_dir(bundle.rootfs().join("shared"))?;
    let out = Runtime::keel()?.run(bundle.path(), &unique_id("userns"))?;
    expect_success(&out, "run")?;
    // Host root shows as the overflow uid, and the container's root cannot write as it.
    assert_eq!(String::from_utf8(out.stdout)?, "65534\n");
    assert!(
        !dir.path().join("file").exists(),
        "the container's root wrote as host root"
    );
    Ok(())
}

#[test]
fn cgroup_namespace_shows_root() -> Result<()> {
    require_root!();
    let config = Config::new().namespace(LinuxNamespaceType::Cgroup, None);
    let out = run_sh(config, "cat /proc/self/cgroup")?;
    for line in out.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.ends_with(":/"),
            "not the namespace root: {line}\n{out}"
        );
    }
    Ok(())
}

#[test]
fn time_namespace_with_offsets() -> Result<()> {
    require_root!();
    require!(
        PathBuf::from("/proc/self/ns/time").exists(),
        "the kernel has no time namespaces"
    );
    let offset = 10 * 86_400;
    let config = Config::new()
        .namespace(LinuxNamespaceType::Time, None)
        .merge(serde_json::json!({"linux": {"timeOffsets": {"boottime": {"secs": offset, "nanosecs": 0}}}}))?;
    let out = run_and_capture(&config.sh("readlink /proc/self/ns/time; cut -d. -f1 /proc/uptime"))?;
    if out.status != 0 && out.stderr.to_lowercase().contains("time") {
        keel_integration_tests::skip::skip(
            "time_namespace_with_offsets",
            &format!("runtime refuses: {}", out.stderr.trim()),
        );
        return Ok(());
    }
    let out = out.success()?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_ne!(
        lines.first().copied(),
        Some(host_ns("time")?.as_str()),
        "time namespace shared"
    );
    let host_uptime: u64 = fs::read_to_string("/proc/uptime")?
        .split('.')
        .next()
        .unwrap_or("0")
        .parse()?;
    let inside: u64 = lines.get(1).context("no uptime")?.parse()?;
    assert!(
        inside >= host_uptime + offset - 5,
        "boottime offset not applied: {inside} vs host {host_uptime}"
    );
    Ok(())
}

#[test]
fn join_a_host_network_namespace_by_path() -> Result<()> {
    require_root!();
    let holder = ChildGuard::spawn(Command::new("unshare").args(["--net", "sleep", "1000"]))?;
    let path = PathBuf::from(format!("/proc/{}/ns/net", holder.pid()));
    let host_net = host_ns("net")?;
    ensure!(
        host::wait_until(Duration::from_secs(5), || host::namespace_of(
            holder.pid(),
            "net"
        )
        .is_ok_and(|n| n != host_net)),
        "unshare --net never entered its namespace"
    );
    let target = host::namespace_of(holder.pid(), "net")?;
    let config = Config::new().namespace(LinuxNamespaceType::Network, Some(&path));
    assert_eq!(container_ns(config, "net")?, target);
    Ok(())
}

#[test]
fn join_another_containers_network_namespace() -> Result<()> {
    require_root!();
    let rt = Runtime::keel()?;
    let first = Bundle::new(&Config::new().args(&["sleep", "1000"]))?;
    let first_id = unique_id("netowner");
    expect_success(&rt.run_detached(first.path(), &first_id)?, "run -d")?;
    let pid = rt.pid(&first_id)?;
    let target = host::namespace_of(pid, "net")?;
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let config = Config::new().namespace(LinuxNamespaceType::Network, Some(&path));
    let second = Bundle::new(&config.sh("readlink /proc/self/ns/net"))?;
    let out = rt.run(second.path(), &unique_id("netjoiner"))?;
    expect_success(&out, "run")?;
    assert_eq!(String::from_utf8(out.stdout)?.trim(), target);
    Ok(())
}

#[test]
fn sysctl_in_the_network_namespace() -> Result<()> {
    require_root!();
    let before = fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?;
    let wanted = if before.trim() == "1" { "0" } else { "1" };
    let config = Config::new().sysctl("net.ipv4.ip_forward", wanted);
    assert_eq!(
        run_sh(config, "cat /proc/sys/net/ipv4/ip_forward")?.trim(),
        wanted
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/net/ipv4/ip_forward")?,
        before,
        "host sysctl changed"
    );
    Ok(())
}

#[test]
fn sysctl_in_the_ipc_namespace() -> Result<()> {
    require_root!();
    let before = fs::read_to_string("/proc/sys/kernel/shmmax")?;
    let config = Config::new().sysctl("kernel.shmmax", "123456789");
    assert_eq!(
        run_sh(config, "cat /proc/sys/kernel/shmmax")?,
        "123456789\n"
    );
    assert_eq!(
        fs::read_to_string("/proc/sys/kernel/shmmax")?,
        before,
        "host sysctl changed"
    );
    Ok(())
}
