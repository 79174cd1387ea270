//! The same bundles under keel-runtime and the real runc: the same state JSON keys, the same
//! exit statuses, and the same view from inside (capabilities, /dev, mounts, identity).

use std::collections::BTreeSet;

use anyhow::Result;
use keel_integration_tests::binary::has_runc;
use keel_integration_tests::checks::expect_success;
use keel_integration_tests::inside::mountinfo;
use keel_integration_tests::{require, require_root, unique_id, Bundle, Config, Runtime};
use oci_spec::runtime::LinuxNamespaceType;

/// Both runtimes, keel first.
fn both() -> Result<[Runtime; 2]> {
    Ok([Runtime::keel()?, Runtime::runc()?])
}

/// The stdout of `config` under each runtime, keel first.
fn outputs(config: &Config) -> Result<Vec<String>> {
    both()?
        .iter()
        .map(|rt| Ok(rt.run_and_capture(config)?.success()?.stdout))
        .collect()
}

#[test]
fn state_has_runcs_keys() -> Result<()> {
    require_root!();
    require!(has_runc(), "runc is not installed");
    let bundle = Bundle::new(&Config::new().args(&["true"]))?;
    let mut keys = Vec::new();
    for rt in both()? {
        let id = unique_id("statekeys");
        expect_success(&rt.create(bundle.path(), &id)?, "create")?;
        let state = rt.state_json(&id)?;
        let names: BTreeSet<String> = state
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.push(names);
        expect_success(&rt.delete_force(&id)?, "delete --force")?;
    }
    let missing: Vec<_> = keys[1].difference(&keys[0]).collect();
    assert!(
        missing.is_empty(),
        "keel's state lacks runc's keys {missing:?}"
    );
    Ok(())
}

#[test]
fn same_exit_statuses() -> Result<()> {
    require_root!();
    require!(has_runc(), "runc is not installed");
    let cases = [
        Config::new().sh("exit 0"),
        Config::new().sh("exit 7"),
        Config::new().args(&["false"]),
        Config::new()
            .without_namespace(LinuxNamespaceType::Pid)
            .sh("kill -TERM $$"),
    ];
    for config in cases {
        let [keel, runc] = both()?;
        let (k, r) = (
            keel.run_and_capture(&config)?,
            runc.run_and_capture(&config)?,
        );
        assert_eq!(k.status, r.status, "keel {k:?}\nrunc {r:?}");
    }
    Ok(())
}

#[test]
fn same_capabilities_inside() -> Result<()> {
    require_root!();
    require!(has_runc(), "runc is not installed");
    let out = outputs(
        &Config::runc_default().sh("grep -E '^(Cap|NoNewPrivs|Seccomp)' /proc/self/status"),
    )?;
    assert_eq!(out[0], out[1], "keel vs runc");
    Ok(())
}

#[test]
fn same_dev_entries() -> Result<()> {
    require_root!();
    require!(has_runc(), "runc is not installed");
    let out = outputs(&Config::runc_default().sh("ls -A /dev | sort; ls /dev/pts"))?;
    assert_eq!(out[0], out[1], "keel vs runc");
    Ok(())
}

#[test]
fn same_mounts() -> Result<()> {
    require_root!();
    require!(has_runc(), "runc is not installed");
    let out = outputs(&Config::runc_default().args(&["cat", "/proc/self/mountinfo"]))?;
    // The order of the per-controller cgroup mounts is not specified: compare as sets.
    let shape = |text: &str| -> BTreeSet<(String, String)> {
        mountinfo(text)
            .into_iter()
            .map(|m| (m.mount_point, m.fs_type))
            .collect()
    };
    assert_eq!(
        shape(&out[0]),
        shape(&out[1]),
        "keel:\n{}\nrunc:\n{}",
        out[0],
        out[1]
    );
    Ok(())
}

#[test]
fn same_identity_and_limits() -> Result<()> {
    require_root!();
    require!(has_runc(), "runc is not installed");
    let config = Config::runc_default()
        .user(1000, 1000)
        .additional_gids(&[5])
        .sh("id; ulimit -n; umask; pwd; hostname");
    let out = outputs(&config)?;
    assert_eq!(out[0], out[1], "keel vs runc");
    Ok(())
}

#[test]
fn same_loopback_state() -> Result<()> {
    require_root!();
    require!(has_runc(), "runc is not installed");
    // runc brings lo up in a new network namespace; containers expect 127.0.0.1 to work.
    let out = outputs(&Config::new().sh("ip -o link show lo | grep -o '<[^>]*>'"))?;
    assert_eq!(out[0], out[1], "keel vs runc");
    Ok(())
}
