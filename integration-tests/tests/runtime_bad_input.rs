//! Bad input and wrong-state operations: exit status 1, exactly one line on stderr naming the
//! problem, and nothing left behind (state dir, cgroup, process, mount).

use std::fs;
use std::time::Duration;

use anyhow::Result;
use keel_integration_tests::checks::{expect_nothing_left, expect_one_line_error, expect_success};
use keel_integration_tests::config::mount;
use keel_integration_tests::host;
use keel_integration_tests::{require_root, unique_id, Bundle, Config, Runtime};
use oci_spec::runtime::LinuxNamespaceType;

const WAIT: Duration = Duration::from_secs(10);

/// `create` of `bundle` fails with one line mentioning `needles`, leaving nothing behind.
fn expect_create_refused(bundle: &Bundle, needles: &[&str]) -> Result<()> {
    let rt = Runtime::keel()?;
    let id = unique_id("bad");
    let out = rt.create(bundle.path(), &id)?;
    expect_one_line_error(&out, needles)?;
    expect_nothing_left(&rt, &id, bundle.path())
}

fn bundle_with(config: Config) -> Result<Bundle> {
    Bundle::new(&config.args(&["true"]))
}

#[test]
fn malformed_config_json() -> Result<()> {
    require_root!();
    let bundle = bundle_with(Config::new())?;
    bundle.write_raw_config("{ \"ociVersion\": \"1.0.2\", \"process\": ")?;
    expect_create_refused(&bundle, &["config.json"])
}

#[test]
fn config_json_with_wrong_types() -> Result<()> {
    require_root!();
    let bundle = bundle_with(Config::new())?;
    bundle.write_raw_config(r#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": 5, "cwd": "/"}}"#)?;
    expect_create_refused(&bundle, &["config.json"])
}

#[test]
fn missing_config_json() -> Result<()> {
    require_root!();
    let bundle = bundle_with(Config::new())?;
    fs::remove_file(bundle.config_path())?;
    expect_create_refused(&bundle, &["config.json"])
}

#[test]
fn missing_rootfs() -> Result<()> {
    require_root!();
    let bundle = bundle_with(Config::new())?;
    fs::remove_dir_all(bundle.rootfs())?;
    expect_create_refused(&bundle, &["rootfs"])
}

#[test]
fn missing_bundle_directory() -> Result<()> {
    require_root!();
    let rt = Runtime::keel()?;
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("no-such-bundle");
    let id = unique_id("nobundle");
    expect_one_line_error(&rt.create(&missing, &id)?, &[])?;
    expect_nothing_left(&rt, &id, &missing)
}

#[test]
fn bad_mount_source() -> Result<()> {
    require_root!();
    let source = std::env::temp_dir().join(unique_id("keel-missing-source"));
    let bundle = bundle_with(Config::new().bind(&source, "/data", &[]))?;
    expect_create_refused(&bundle, &[&source.to_string_lossy()])
}

#[test]
fn unknown_mount_type() -> Result<()> {
    require_root!();
    let bundle = bundle_with(Config::new().mount(mount("/x", "nosuchfs", "none", &[])))?;
    expect_create_refused(&bundle, &["/x"])
}

#[test]
fn relative_cwd() -> Result<()> {
    require_root!();
    let bundle = bundle_with(Config::new().cwd("relative/dir"))?;
    expect_create_refused(&bundle, &["cwd"])
}

#[test]
fn missing_executable() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().args(&["/no/such/binary"]))?;
    let rt = Runtime::keel()?;
    let id = unique_id("noexec");
    let created = rt.create(bundle.path(), &id)?;
    // The spec allows the error at create or at start; either way one line naming the path.
    let out = if created.status.success() {
        rt.start(&id)?
    } else {
        created
    };
    expect_one_line_error(&out, &["/no/such/binary"])?;
    let _ = rt.delete_force(&id);
    expect_nothing_left(&rt, &id, bundle.path())
}

#[test]
fn hostname_without_uts_namespace() -> Result<()> {
    require_root!();
    let config = Config::new()
        .without_namespace(LinuxNamespaceType::Uts)
        .hostname("x");
    expect_create_refused(&bundle_with(config)?, &["hostname"])
}

#[test]
fn joining_a_namespace_that_does_not_exist() -> Result<()> {
    require_root!();
    let path = std::path::Path::new("/proc/999999999/ns/net");
    let config = Config::new().namespace(LinuxNamespaceType::Network, Some(path));
    expect_create_refused(&bundle_with(config)?, &["/proc/999999999/ns/net"])
}

#[test]
fn terminal_without_console_socket() -> Result<()> {
    require_root!();
    expect_create_refused(&bundle_with(Config::new().terminal(true))?, &["console"])
}

#[test]
fn invalid_container_ids() -> Result<()> {
    require_root!();
    let bundle = bundle_with(Config::new())?;
    for id in ["../x", "a/b", "", "..", "."] {
        let rt = Runtime::keel()?;
        let out = rt.create(bundle.path(), id)?;
        expect_one_line_error(&out, &["id"]).map_err(|e| e.context(format!("id {id:?}")))?;
        expect_nothing_left(&rt, id, bundle.path()).map_err(|e| e.context(format!("id {id:?}")))?;
    }
    Ok(())
}

#[test]
fn duplicate_id() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().args(&["sleep", "1000"]))?;
    let other = Bundle::new(&Config::new().args(&["true"]))?;
    let rt = Runtime::keel()?;
    let id = unique_id("dup");
    expect_success(&rt.create(bundle.path(), &id)?, "create")?;
    let pid = rt.pid(&id)?;
    expect_one_line_error(&rt.create(other.path(), &id)?, &[&id])?;
    assert_eq!(
        rt.status(&id)?,
        "created",
        "the first container was disturbed"
    );
    assert_eq!(rt.pid(&id)?, pid);
    assert!(host::pid_alive(pid));
    let state = rt.state_json(&id)?;
    let first = fs::canonicalize(bundle.path())?;
    assert_eq!(
        state["bundle"].as_str(),
        first.to_str(),
        "state now names the second bundle"
    );
    Ok(())
}

#[test]
fn unknown_signal() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().args(&["sleep", "1000"]))?;
    let rt = Runtime::keel()?;
    let id = unique_id("badsig");
    expect_success(&rt.run_detached(bundle.path(), &id)?, "run -d")?;
    for signal in ["SIGFOO", "FOO", "999", "0x9"] {
        expect_one_line_error(&rt.kill(&id, signal)?, &[])
            .map_err(|e| e.context(format!("kill {signal}")))?;
    }
    assert_eq!(
        rt.status(&id)?,
        "running",
        "a refused kill changed the container"
    );
    Ok(())
}

#[test]
fn operations_on_a_missing_container() -> Result<()> {
    let rt = Runtime::keel()?;
    let id = unique_id("ghost");
    for args in [
        vec!["start", &id],
        vec!["state", &id],
        vec!["kill", &id, "KILL"],
        vec!["delete", &id],
    ] {
        let out = rt.exec(&args)?;
        expect_one_line_error(&out, &[&id]).map_err(|e| e.context(format!("{args:?}")))?;
    }
    Ok(())
}

#[test]
fn start_of_a_stopped_container() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().args(&["true"]))?;
    let rt = Runtime::keel()?;
    let id = unique_id("startstopped");
    expect_success(&rt.create(bundle.path(), &id)?, "create")?;
    expect_success(&rt.start(&id)?, "start")?;
    assert!(rt.wait_status(&id, "stopped", WAIT));
    expect_one_line_error(&rt.start(&id)?, &[])?;
    assert_eq!(rt.status(&id)?, "stopped");
    Ok(())
}

#[test]
fn kill_of_a_stopped_container() -> Result<()> {
    require_root!();
    let bundle = Bundle::new(&Config::new().args(&["true"]))?;
    let rt = Runtime::keel()?;
    let id = unique_id("killstopped");
    expect_success(&rt.create(bundle.path(), &id)?, "create")?;
    expect_success(&rt.start(&id)?, "start")?;
    assert!(rt.wait_status(&id, "stopped", WAIT));
    expect_one_line_error(&rt.kill(&id, "TERM")?, &[])?;
    Ok(())
}

#[test]
fn a_refused_create_keeps_other_containers() -> Result<()> {
    require_root!();
    let good = Bundle::new(&Config::new().args(&["sleep", "1000"]))?;
    let bad = bundle_with(Config::new())?;
    bad.write_raw_config("not json")?;
    let rt = Runtime::keel()?;
    let id = unique_id("keep");
    expect_success(&rt.create(good.path(), &id)?, "create")?;
    expect_one_line_error(&rt.create(bad.path(), &unique_id("bad"))?, &[])?;
    assert_eq!(rt.status(&id)?, "created");
    let entries: Vec<_> = fs::read_dir(rt.root())?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        entries,
        vec![std::ffi::OsString::from(&id)],
        "state dirs: {entries:?}"
    );
    Ok(())
}

#[test]
fn host_wide_sysctls_are_refused() -> Result<()> {
    require_root!();
    // Not namespaced: would change the host (and `/tmp/x` is not a sysctl at all).
    for key in ["kernel.core_pattern", "vm.swappiness", "/tmp/x"] {
        let bundle = bundle_with(Config::new().sysctl(key, "1"))?;
        expect_create_refused(&bundle, &["sysctl", key])?;
    }
    // Namespaced, but the container does not have the namespace.
    let without_net = Config::new()
        .without_namespace(LinuxNamespaceType::Network)
        .sysctl("net.ipv4.ip_forward", "1");
    expect_create_refused(
        &bundle_with(without_net)?,
        &["net.ipv4.ip_forward", "network"],
    )
}

#[test]
fn preserve_fds_that_were_not_passed_are_refused() -> Result<()> {
    require_root!();
    let rt = Runtime::keel()?;
    let bundle = bundle_with(Config::new())?;
    let id = unique_id("pfds");
    // The test harness passes no fd 3..5 to the runtime.
    let out = rt.create_with(bundle.path(), &id, &["--preserve-fds", "3"])?;
    expect_one_line_error(&out, &["preserve-fds", "not open"])?;
    expect_nothing_left(&rt, &id, bundle.path())
}
