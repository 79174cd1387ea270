//! `/dev`: the default devices with their numbers and modes, /dev/ptmx and /dev/pts, the fd
//! and std* links, and a `linux.devices` entry.

use anyhow::Result;
use keel_integration_tests::config::from_json;
use keel_integration_tests::inside::words;
use keel_integration_tests::{require_root, run_and_capture, Config};
use oci_spec::runtime::LinuxDevice;
use serde_json::json;

fn run_sh(config: Config, script: &str) -> Result<String> {
    Ok(run_and_capture(&config.sh(script))?.success()?.stdout)
}

/// The default devices of the runtime-spec: path, major, minor.
const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

#[test]
fn default_devices_have_the_right_numbers_and_mode() -> Result<()> {
    require_root!();
    let paths: Vec<&str> = DEFAULT_DEVICES.iter().map(|d| d.0).collect();
    let out = run_sh(
        Config::new(),
        &format!("stat -c '%n %F %t %T %a' {}", paths.join(" ")),
    )?;
    for (path, major, minor) in DEFAULT_DEVICES {
        let expected = format!("{path} character special file {major:x} {minor:x} 666");
        assert!(
            out.lines().any(|l| l == expected),
            "want {expected:?} in:\n{out}"
        );
    }
    Ok(())
}

#[test]
fn default_devices_work() -> Result<()> {
    require_root!();
    let out = run_sh(
        Config::new(),
        "echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c",
    )?;
    assert_eq!(words(&out), vec!["4", "4"]);
    let out = run_and_capture(&Config::new().sh("echo x > /dev/full"))?;
    assert_ne!(out.status, 0, "writing /dev/full succeeded");
    Ok(())
}

#[test]
fn ptmx_links_to_the_new_devpts() -> Result<()> {
    require_root!();
    let out = run_sh(Config::new(), "readlink /dev/ptmx; stat -c %F /dev/pts")?;
    assert_eq!(out, "pts/ptmx\ndirectory\n");
    Ok(())
}

#[test]
fn fd_and_std_links() -> Result<()> {
    require_root!();
    let out = run_sh(
        Config::new(),
        "for l in fd stdin stdout stderr; do readlink /dev/$l; done",
    )?;
    assert_eq!(
        out,
        "/proc/self/fd\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\n"
    );
    Ok(())
}

#[test]
fn only_expected_entries_in_dev() -> Result<()> {
    require_root!();
    let out = run_sh(Config::new(), "ls -A /dev")?;
    let allowed = [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue", "fd",
        "stdin", "stdout", "stderr", "core", "console",
    ];
    for entry in out.lines() {
        assert!(
            allowed.contains(&entry),
            "unexpected /dev/{entry} (host devices leaked?)"
        );
    }
    Ok(())
}

fn mynull(uid: u32, gid: u32, mode: u32) -> Result<LinuxDevice> {
    from_json(json!({
        "path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
        "fileMode": mode, "uid": uid, "gid": gid
    }))
}

#[test]
fn linux_devices_entry_is_created() -> Result<()> {
    require_root!();
    let config = Config::new().device(mynull(1000, 1000, 0o640)?);
    let out = run_sh(config, "stat -c '%F %t %T %u %g %a' /dev/mynull")?;
    assert_eq!(out, "character special file 1 3 1000 1000 640\n");
    // Its owner can use it (and root without CAP_DAC_OVERRIDE cannot).
    let owner = Config::new()
        .device(mynull(1000, 1000, 0o640)?)
        .user(1000, 1000);
    assert_eq!(run_sh(owner, "echo x > /dev/mynull && echo ok")?, "ok\n");
    Ok(())
}

#[test]
fn linux_devices_block_device_in_a_subdirectory() -> Result<()> {
    require_root!();
    // A loop device number: only its node is checked, it is never opened.
    let device = from_json(
        json!({"path": "/dev/disks/loopx", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600}),
    )?;
    let out = run_sh(
        Config::new().device(device),
        "stat -c '%F %t %T %a' /dev/disks/loopx",
    )?;
    assert_eq!(out, "block special file 7 c8 600\n");
    Ok(())
}
