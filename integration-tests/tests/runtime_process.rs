//! `process`: args, env, cwd, user, umask, rlimits, capabilities, noNewPrivileges,
//! oomScoreAdj, each read back from inside the container.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use keel_integration_tests::inside::{cap_mask, mask_of, status_field};
use keel_integration_tests::{require_root, run_and_capture, Config};
use oci_spec::runtime::{Capability, LinuxCapabilities, PosixRlimitType};

/// Runs `config` and returns its stdout, failing on a non-zero exit.
fn stdout_of(config: Config) -> Result<String> {
    Ok(run_and_capture(&config)?.success()?.stdout)
}

#[test]
fn args_are_passed_verbatim() -> Result<()> {
    require_root!();
    assert_eq!(
        stdout_of(Config::new().args(&["echo", "hello", "world"]))?,
        "hello world\n"
    );
    let config = Config::new().args(&["sh", "-c", "printf '[%s]' \"$@\"", "argv0", "a b", "", "c"]);
    assert_eq!(stdout_of(config)?, "[a b][][c]");
    Ok(())
}

#[test]
fn args_resolve_through_path() -> Result<()> {
    require_root!();
    // `env` is /usr/bin/env: found through process.env's PATH, not the runtime's.
    let out = stdout_of(Config::new().args(&["env"]))?;
    assert!(out.lines().any(|l| l.starts_with("PATH=")), "{out}");
    Ok(())
}

#[test]
fn env_is_exactly_the_configured_one() -> Result<()> {
    require_root!();
    let out = stdout_of(
        Config::new()
            .env("FOO=bar baz")
            .env("EMPTY=")
            .args(&["env"]),
    )?;
    let vars: BTreeSet<&str> = out.lines().collect();
    for expected in [
        "FOO=bar baz",
        "EMPTY=",
        "TERM=xterm",
        keel_integration_tests::config::DEFAULT_PATH,
    ] {
        assert!(vars.contains(expected), "{expected} missing from:\n{out}");
    }
    // HOME may be added (runc does, from /etc/passwd); nothing of the runtime's own env leaks.
    let allowed = ["FOO", "EMPTY", "TERM", "PATH", "HOME", "PWD", "SHLVL"];
    for var in &vars {
        let name = var.split('=').next().unwrap_or_default();
        assert!(allowed.contains(&name), "unexpected variable {var}");
    }
    Ok(())
}

#[test]
fn cwd_is_applied() -> Result<()> {
    require_root!();
    assert_eq!(
        stdout_of(Config::new().cwd("/tmp").args(&["pwd"]))?,
        "/tmp\n"
    );
    assert_eq!(
        stdout_of(Config::new().cwd("/usr/bin").sh("readlink /proc/self/cwd"))?,
        "/usr/bin\n"
    );
    Ok(())
}

#[test]
fn user_uid_gid_and_additional_gids() -> Result<()> {
    require_root!();
    let config = Config::new().user(1000, 1000).additional_gids(&[5, 65534]);
    let out = stdout_of(config.sh("id -u; id -g; grep ^Groups: /proc/self/status"))?;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("1000"), "{out}");
    assert_eq!(lines.get(1).copied(), Some("1000"), "{out}");
    let groups: BTreeSet<&str> = status_field(&out, "Groups")
        .context("no Groups line")?
        .split_whitespace()
        .collect();
    assert_eq!(groups, BTreeSet::from(["5", "65534"]), "{out}");
    Ok(())
}

#[test]
fn user_without_additional_gids_has_no_supplementary_groups() -> Result<()> {
    require_root!();
    let out = stdout_of(
        Config::new()
            .user(1000, 1000)
            .args(&["cat", "/proc/self/status"]),
    )?;
    assert_eq!(
        status_field(&out, "Groups"),
        Some(""),
        "runtime's groups leaked"
    );
    assert_eq!(
        status_field(&out, "Uid").map(|u| u.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["1000"; 4])
    );
    assert_eq!(
        status_field(&out, "Gid").map(|g| g.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["1000"; 4])
    );
    Ok(())
}

#[test]
fn umask_is_applied() -> Result<()> {
    require_root!();
    assert_eq!(
        stdout_of(Config::new().umask(0o027).args(&["sh", "-c", "umask"]))?,
        "0027\n"
    );
    let out = stdout_of(
        Config::new()
            .umask(0o077)
            .sh("touch /tmp/f && stat -c %a /tmp/f"),
    )?;
    assert_eq!(out, "600\n");
    Ok(())
}

#[test]
fn rlimits_are_applied() -> Result<()> {
    require_root!();
    let config = Config::new()
        .rlimit(PosixRlimitType::RlimitNofile, 100, 200)
        .rlimit(PosixRlimitType::RlimitNproc, 300, 400);
    let out = stdout_of(config.sh("ulimit -n; cat /proc/self/limits"))?;
    assert_eq!(out.lines().next(), Some("100"), "{out}");
    let limit = |name: &str| -> Option<Vec<String>> {
        let line = out.lines().find(|l| l.starts_with(name))?;
        Some(
            line[name.len()..]
                .split_whitespace()
                .take(2)
                .map(str::to_string)
                .collect(),
        )
    };
    assert_eq!(
        limit("Max open files"),
        Some(vec!["100".to_string(), "200".to_string()]),
        "{out}"
    );
    assert_eq!(
        limit("Max processes"),
        Some(vec!["300".to_string(), "400".to_string()]),
        "{out}"
    );
    Ok(())
}

fn status_of(config: Config) -> Result<String> {
    stdout_of(config.args(&["cat", "/proc/self/status"]))
}

#[test]
fn capabilities_as_root_in_all_five_sets() -> Result<()> {
    require_root!();
    let caps = [Capability::Chown, Capability::Kill, Capability::NetRaw];
    let status = status_of(Config::new().capabilities(&caps))?;
    for field in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            cap_mask(&status, field),
            Some(mask_of(&caps)),
            "{field} in:\n{status}"
        );
    }
    Ok(())
}

#[test]
fn capabilities_of_a_non_root_user_set_by_set() -> Result<()> {
    require_root!();
    use Capability::*;
    let set = |caps: &[Capability]| Some(caps.iter().copied().collect());
    let mut sets = LinuxCapabilities::default();
    sets.set_bounding(set(&[Chown, DacOverride, Kill, NetBindService]));
    sets.set_permitted(set(&[Chown, Kill, NetBindService]));
    sets.set_inheritable(set(&[Kill, NetBindService]));
    sets.set_effective(set(&[Chown, Kill]));
    sets.set_ambient(set(&[Kill]));
    let status = status_of(Config::new().user(1000, 1000).capability_sets(sets))?;
    // After execve by a non-root user: permitted and effective are the ambient set.
    let expected = [
        (
            "CapBnd",
            mask_of(&[Chown, DacOverride, Kill, NetBindService]),
        ),
        ("CapInh", mask_of(&[Kill, NetBindService])),
        ("CapAmb", mask_of(&[Kill])),
        ("CapPrm", mask_of(&[Kill])),
        ("CapEff", mask_of(&[Kill])),
    ];
    for (field, mask) in expected {
        assert_eq!(
            cap_mask(&status, field),
            Some(mask),
            "{field} in:\n{status}"
        );
    }
    Ok(())
}

#[test]
fn no_new_privileges_on_and_off() -> Result<()> {
    require_root!();
    let on = status_of(Config::new().no_new_privileges(true))?;
    assert_eq!(status_field(&on, "NoNewPrivs"), Some("1"));
    let off = status_of(Config::new().no_new_privileges(false))?;
    assert_eq!(status_field(&off, "NoNewPrivs"), Some("0"));
    Ok(())
}

#[test]
fn oom_score_adj_is_applied() -> Result<()> {
    require_root!();
    let out = stdout_of(
        Config::new()
            .oom_score_adj(500)
            .args(&["cat", "/proc/self/oom_score_adj"]),
    )?;
    assert_eq!(out, "500\n");
    Ok(())
}

#[test]
fn the_process_is_pid_1_and_its_parent_is_0() -> Result<()> {
    require_root!();
    let status = status_of(Config::new())?;
    assert_eq!(status_field(&status, "Pid"), Some("1"));
    assert_eq!(status_field(&status, "PPid"), Some("0"));
    Ok(())
}

#[test]
fn stderr_is_the_runtimes_stderr() -> Result<()> {
    require_root!();
    let out = run_and_capture(&Config::new().sh("echo out; echo err >&2; exit 0"))?.success()?;
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err\n"), "stderr: {}", out.stderr);
    Ok(())
}

#[test]
fn stdin_is_the_runtimes_stdin() -> Result<()> {
    require_root!();
    // The tests give the runtime /dev/null: the container reads EOF at once.
    let out = stdout_of(Config::new().sh("cat; echo eof"))?;
    assert_eq!(out, "eof\n");
    Ok(())
}
