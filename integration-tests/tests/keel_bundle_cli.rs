//! The `keel-bundle` fixture CLI writes a bundle the runtimes run.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use keel_integration_tests::checks::expect_success;
use keel_integration_tests::{require_root, unique_id, Runtime};
use oci_spec::runtime::Spec;

fn keel_bundle(dir: &Path, flags: &[&str]) -> Result<()> {
    let out = Command::new(env!("CARGO_BIN_EXE_keel-bundle"))
        .arg(dir)
        .args(flags)
        .output()?;
    ensure!(
        out.status.success(),
        "keel-bundle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn writes_rootfs_and_config() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bundle = dir.path().join("b");
    keel_bundle(&bundle, &["--terminal", "--args", "sh", "-c", "echo hi"])?;
    assert!(bundle.join("rootfs/bin/sh").exists() && bundle.join("rootfs/usr/bin/env").exists());
    assert!(bundle.join("rootfs/etc/passwd").exists());
    let spec = Spec::load(bundle.join("config.json"))?;
    let process = spec.process().as_ref().context("no process")?;
    assert_eq!(
        process.args().clone().unwrap_or_default(),
        vec!["sh", "-c", "echo hi"]
    );
    assert_eq!(process.terminal(), Some(true));
    assert!(spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .is_none());
    Ok(())
}

#[test]
fn seccomp_default_puts_dockers_profile_in() -> Result<()> {
    let dir = tempfile::tempdir()?;
    keel_bundle(dir.path(), &["--seccomp-default"])?;
    let spec = Spec::load(dir.path().join("config.json"))?;
    let seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().clone())
        .context("no linux.seccomp")?;
    assert!(seccomp.syscalls().as_ref().is_some_and(|s| !s.is_empty()));
    Ok(())
}

#[test]
fn rewriting_a_bundle_in_place_works() -> Result<()> {
    let dir = tempfile::tempdir()?;
    keel_bundle(dir.path(), &[])?;
    keel_bundle(dir.path(), &["--args", "true"])?;
    Ok(())
}

#[test]
fn the_runtime_runs_it() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    keel_bundle(
        dir.path(),
        &[
            "--seccomp-default",
            "--args",
            "sh",
            "-c",
            "echo hi from keel-bundle",
        ],
    )?;
    let rt = Runtime::keel()?;
    let out = rt.run(dir.path(), &unique_id("kb"))?;
    expect_success(&out, "run")?;
    assert_eq!(String::from_utf8(out.stdout)?, "hi from keel-bundle\n");
    Ok(())
}
