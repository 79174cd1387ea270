//! exec refusals (one line on stderr, exit status 1, nothing changed) and runc parity.

use std::fs;
use std::time::Duration;

use anyhow::Result;
use keel_integration_tests::binary::has_runc;
use keel_integration_tests::checks::{expect_one_line_error, expect_success};
use keel_integration_tests::running::{captured, Container, EXIT_CASES};
use keel_integration_tests::{require, require_root, unique_id, Bundle, Config, Runtime};

const WAIT: Duration = Duration::from_secs(10);

// ---- bad input: one line on stderr, exit status 1, nothing changed ----

/// `exec <flags> <id> <cmd>` into a sleeping container is refused with one line mentioning
/// `needles`, and neither the state nor the container's processes change.
fn expect_refused(flags: &[&str], cmd: &[&str], needles: &[&str]) -> Result<()> {
    let c = Container::sleeping(Config::new())?;
    let before = c.snapshot()?;
    expect_one_line_error(&c.exec(flags, cmd)?, needles)?;
    c.expect_unchanged(&before)?;
    assert_eq!(c.rt.status(&c.id)?, "running");
    Ok(())
}

#[test]
fn exec_into_a_stopped_container_is_refused() -> Result<()> {
    require_root!();
    let rt = Runtime::keel()?;
    let bundle = Bundle::new(&Config::new().args(&["true"]))?;
    let id = unique_id("stopped");
    expect_success(&rt.run_detached(bundle.path(), &id)?, "run -d")?;
    assert!(rt.wait_status(&id, "stopped", WAIT), "never stopped");
    let before = rt.state_json(&id)?;
    let out = rt.exec(&["exec", &id, "true"])?;
    expect_one_line_error(&out, &["stopped"])?;
    assert_eq!(rt.state_json(&id)?, before);
    Ok(())
}

#[test]
fn exec_into_a_missing_container_is_refused() -> Result<()> {
    require_root!();
    let rt = Runtime::keel()?;
    let out = rt.exec(&["exec", "no-such-container", "true"])?;
    expect_one_line_error(&out, &["no-such-container"])?;
    assert_eq!(fs::read_dir(rt.root())?.count(), 0, "exec created state");
    Ok(())
}

#[test]
fn exec_malformed_process_json_is_refused() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("process.json");
    fs::write(&bad, "{\"args\": [\"true\"], ")?;
    expect_refused(&["-p", &bad.to_string_lossy()], &[], &["process.json"])?;
    fs::write(&bad, r#"{"args": "true", "cwd": "/"}"#)?;
    expect_refused(&["-p", &bad.to_string_lossy()], &[], &["process.json"])?;
    let missing = dir.path().join("missing.json");
    expect_refused(&["-p", &missing.to_string_lossy()], &[], &["missing.json"])
}

#[test]
fn exec_without_a_command_is_refused() -> Result<()> {
    require_root!();
    expect_refused(&[], &[], &["command"])
}

#[test]
fn exec_unknown_capability_is_refused() -> Result<()> {
    require_root!();
    expect_refused(
        &["--cap", "CAP_NO_SUCH_THING"],
        &["true"],
        &["CAP_NO_SUCH_THING"],
    )
}

#[test]
fn exec_missing_executable_is_refused() -> Result<()> {
    require_root!();
    expect_refused(&[], &["/no/such/binary"], &["/no/such/binary"])?;
    expect_refused(&[], &["no-such-command"], &["no-such-command"])
}

#[test]
fn exec_bad_cwd_and_user_are_refused() -> Result<()> {
    require_root!();
    expect_refused(&["--cwd", "/no/such/dir"], &["true"], &["/no/such/dir"])?;
    expect_refused(&["-u", "bob"], &["true"], &["bob"])
}

#[test]
fn exec_detached_tty_without_console_socket_is_refused() -> Result<()> {
    require_root!();
    expect_refused(&["-t", "-d"], &["true"], &["console"])
}

// ---- the same under runc ----

#[test]
fn exec_exit_statuses_match_runc() -> Result<()> {
    require_root!();
    require!(has_runc(), "runc is not installed");
    let keel = Container::sleeping(Config::new())?;
    let runc = Container::start_on(Runtime::runc()?, Config::new(), ":")?;
    for (script, expected) in EXIT_CASES {
        let (k, r) = (keel.sh(&[], script)?, runc.sh(&[], script)?);
        assert_eq!(r.status, expected, "runc {script}: {r:?}");
        assert_eq!(k.status, r.status, "{script}: keel {k:?}\nrunc {r:?}");
    }
    Ok(())
}

#[test]
fn exec_flags_match_runc() -> Result<()> {
    require_root!();
    require!(has_runc(), "runc is not installed");
    let config = || Config::new().env("FOO=config").no_new_privileges(false);
    let keel = Container::sleeping(config())?;
    let runc = Container::start_on(Runtime::runc()?, config(), ":")?;
    let cases: [(&[&str], &str); 4] = [
        (
            &["-e", "FOO=flag", "-e", "BAR=x", "--cwd", "/tmp"],
            "echo $FOO $BAR; pwd",
        ),
        (&["-u", "1000:1000", "-g", "5"], "id"),
        (
            &["--cap", "CAP_NET_ADMIN", "--no-new-privs"],
            "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status",
        ),
        (
            &[],
            "grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status; ulimit -n",
        ),
    ];
    for (flags, script) in cases {
        let (k, r) = (keel.sh_ok(flags, script)?, runc.sh_ok(flags, script)?);
        assert_eq!(k, r, "{flags:?} {script}");
    }
    Ok(())
}

#[test]
fn exec_refusals_match_runc() -> Result<()> {
    require_root!();
    require!(has_runc(), "runc is not installed");
    // runc exits 255 for a failed exec, keel 1: compare that both refuse.
    let keel = Container::sleeping(Config::new())?;
    let runc = Container::start_on(Runtime::runc()?, Config::new(), ":")?;
    let cases: [&[&str]; 3] = [
        &[],
        &["/no/such/binary"],
        &["--cwd", "/no/such/dir", "true"],
    ];
    for cmd in cases {
        let (k, r) = (
            captured(keel.exec(&[], cmd)?),
            captured(runc.exec(&[], cmd)?),
        );
        assert_ne!(r.status, 0, "runc accepted {cmd:?}");
        assert_ne!(k.status, 0, "keel accepted {cmd:?}: {k:?}");
    }
    for c in [&keel, &runc] {
        expect_success(&c.rt.exec(&["pause", &c.id])?, "pause")?;
        let out = captured(c.exec(&[], &["true"])?);
        assert_ne!(
            out.status,
            0,
            "{} exec'ed into a paused container",
            c.rt.binary().display()
        );
        expect_success(&c.rt.exec(&["resume", &c.id])?, "resume")?;
    }
    Ok(())
}
