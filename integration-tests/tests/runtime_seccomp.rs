//! `linux.seccomp`: a denied syscall fails inside with the configured errno, argument filters,
//! the filter survives without noNewPrivileges, and Docker's default profile runs a process.

use anyhow::Result;
use keel_integration_tests::config::from_json;
use keel_integration_tests::inside::status_field;
use keel_integration_tests::seccomp_profile::docker_default_profile;
use keel_integration_tests::{require_root, run_and_capture, Config};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};

/// Allow everything but `syscalls`.
fn profile(syscalls: Value) -> Result<LinuxSeccomp> {
    from_json(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls
    }))
}

/// A profile denying mkdir and mkdirat with `errno`.
fn deny_mkdir(errno: u32) -> Result<LinuxSeccomp> {
    profile(json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno}]))
}

#[test]
fn denied_syscall_fails_with_the_configured_errno() -> Result<()> {
    require_root!();
    // EACCES (13) rather than the default EPERM, to see errnoRet applied.
    let config = Config::new().seccomp(deny_mkdir(13)?);
    let out =
        run_and_capture(&config.sh("mkdir /tmp/d; echo status=$?; touch /tmp/f && echo touched"))?;
    assert_eq!(out.status, 0, "{}", out.stderr);
    assert!(out.stdout.contains("status=1"), "mkdir succeeded: {out:?}");
    assert!(
        out.stderr.contains("Permission denied"),
        "errno is not EACCES: {}",
        out.stderr
    );
    assert!(
        out.stdout.contains("touched"),
        "other syscalls were blocked: {out:?}"
    );
    Ok(())
}

#[test]
fn errno_defaults_to_eperm() -> Result<()> {
    require_root!();
    let syscalls = json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]);
    let out = run_and_capture(&Config::new().seccomp(profile(syscalls)?).sh("mkdir /tmp/d"))?;
    assert_ne!(out.status, 0);
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn filter_is_in_place_and_reported() -> Result<()> {
    require_root!();
    let out = run_and_capture(
        &Config::new()
            .seccomp(deny_mkdir(1)?)
            .args(&["cat", "/proc/self/status"]),
    )?
    .success()?;
    assert_eq!(
        status_field(&out.stdout, "Seccomp"),
        Some("2"),
        "not in filter mode"
    );
    let plain = run_and_capture(&Config::new().args(&["cat", "/proc/self/status"]))?.success()?;
    assert_eq!(
        status_field(&plain.stdout, "Seccomp"),
        Some("0"),
        "a filter without linux.seccomp"
    );
    Ok(())
}

#[test]
fn argument_filter_matches_only_the_given_value() -> Result<()> {
    require_root!();
    // Deny chmod/fchmodat to mode 0777 only; chmod 0755 still works.
    let syscalls = json!([
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "args": [{"index": 1, "value": 0o777, "op": "SCMP_CMP_EQ"}]},
        {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "args": [{"index": 2, "value": 0o777, "op": "SCMP_CMP_EQ"}]}
    ]);
    let config = Config::new().seccomp(profile(syscalls)?);
    let script = "touch /tmp/f; chmod 755 /tmp/f && echo ok755; chmod 777 /tmp/f || echo denied777; stat -c %a /tmp/f";
    let out = run_and_capture(&config.sh(script))?;
    assert_eq!(
        out.stdout, "ok755\ndenied777\n755\n",
        "stderr: {}",
        out.stderr
    );
    Ok(())
}

#[test]
fn masked_equality_argument_filter() -> Result<()> {
    require_root!();
    // Deny open/openat with O_CREAT (0o100) set in the flags, whatever the other bits.
    let syscalls = json!([
        {"names": ["open"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "args": [{"index": 1, "value": 0o100, "valueTwo": 0o100, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "args": [{"index": 2, "value": 0o100, "valueTwo": 0o100, "op": "SCMP_CMP_MASKED_EQ"}]}
    ]);
    let config = Config::new().seccomp(profile(syscalls)?);
    let out = run_and_capture(&config.sh("cat /etc/hostname && echo x > /tmp/new || echo denied"))?;
    assert_eq!(
        out.stdout, "keel-rootfs\ndenied\n",
        "stderr: {}",
        out.stderr
    );
    Ok(())
}

#[test]
fn filter_applies_without_no_new_privileges() -> Result<()> {
    require_root!();
    let config = Config::new()
        .no_new_privileges(false)
        .seccomp(deny_mkdir(1)?);
    let out = run_and_capture(&config.sh("mkdir /tmp/d"))?;
    assert_ne!(
        out.status, 0,
        "mkdir succeeded: the filter was not loaded without NNP"
    );
    Ok(())
}

#[test]
fn kill_action_kills_the_process() -> Result<()> {
    require_root!();
    let syscalls = json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]);
    let out = run_and_capture(
        &Config::new()
            .seccomp(profile(syscalls)?)
            .args(&["mkdir", "/tmp/d"]),
    )?;
    assert_eq!(
        out.status,
        128 + 31,
        "SCMP_ACT_KILL should end the process with SIGSYS: {out:?}"
    );
    Ok(())
}

#[test]
fn docker_default_profile_runs_true() -> Result<()> {
    require_root!();
    let out = run_and_capture(
        &Config::new()
            .seccomp(docker_default_profile())
            .args(&["true"]),
    )?;
    assert_eq!(out.status, 0, "{}", out.stderr);
    Ok(())
}

#[test]
fn docker_default_profile_runs_a_shell() -> Result<()> {
    require_root!();
    let config = Config::new().seccomp(docker_default_profile());
    let script = "echo hi; ls / > /dev/null; mkdir /tmp/d; touch /tmp/d/f; sleep 0.01 & wait; cat /proc/self/status";
    let out = run_and_capture(&config.sh(script))?.success()?;
    assert!(out.stdout.starts_with("hi\n"), "{out:?}");
    assert_eq!(status_field(&out.stdout, "Seccomp"), Some("2"));
    Ok(())
}
