//! Finding the runtime binaries the tests drive.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Env var naming the `keel-runtime` binary to test.
pub const KEEL_RUNTIME_ENV: &str = "KEEL_RUNTIME_BIN";

/// Env var naming the `runc` binary to compare with.
pub const RUNC_ENV: &str = "RUNC_BIN";

/// `keel-runtime`: `$KEEL_RUNTIME_BIN`, else `target/<profile>/keel-runtime` beside the test
/// executable, brought up to date by `cargo build -p keel-runtime` once per process (a no-op
/// when it is; `cargo test` does not build another package's binaries). If that build fails,
/// an existing binary is used with a warning.
pub fn keel_runtime() -> Result<PathBuf> {
    workspace_binary(KEEL_RUNTIME_ENV, "keel-runtime", "keel-runtime")
}

/// `containerd-shim-keel-v2`: `$KEEL_SHIM_BIN`, else built and found as [`keel_runtime`] is.
pub fn keel_shim() -> Result<PathBuf> {
    workspace_binary(KEEL_SHIM_ENV, "keel-shim", "containerd-shim-keel-v2")
}

/// Env var naming the `containerd-shim-keel-v2` binary to test.
pub const KEEL_SHIM_ENV: &str = "KEEL_SHIM_BIN";

/// `keel-containerd`: `$KEEL_CONTAINERD_BIN`, else built and found as [`keel_runtime`] is.
pub fn keel_containerd() -> Result<PathBuf> {
    workspace_binary(KEEL_CONTAINERD_ENV, "keel-containerd", "keel-containerd")
}

/// Env var naming the `keel-containerd` binary to test.
pub const KEEL_CONTAINERD_ENV: &str = "KEEL_CONTAINERD_BIN";

/// `keeld`: `$KEEL_ENGINE_BIN`, else built and found as [`keel_runtime`] is.
pub fn keeld() -> Result<PathBuf> {
    workspace_binary(KEEL_ENGINE_ENV, "keel-engine", "keeld")
}

/// Env var naming the `keeld` binary to test.
pub const KEEL_ENGINE_ENV: &str = "KEEL_ENGINE_BIN";

fn workspace_binary(env_var: &str, package: &'static str, name: &str) -> Result<PathBuf> {
    if let Some(bin) = env::var_os(env_var) {
        return Ok(PathBuf::from(bin));
    }
    let (target, profile) = target_dir_and_profile()?;
    let bin = target.join(&profile).join(name);
    if let Err(e) = build_once(package, name, &target, &profile) {
        if !bin.exists() {
            return Err(e);
        }
        eprintln!("WARNING: {e:#}; testing the existing {}", bin.display());
    }
    Ok(bin)
}

/// `runc`: `$RUNC_BIN`, else `/usr/sbin/runc`, else `runc` on `PATH`.
pub fn runc() -> Result<PathBuf> {
    if let Some(bin) = env::var_os(RUNC_ENV) {
        return Ok(PathBuf::from(bin));
    }
    let candidates = ["/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .context("runc is not installed (apt-get install runc)")
}

/// Whether `runc` is available for comparison tests.
pub fn has_runc() -> bool {
    runc().is_ok()
}

/// The cargo target dir and profile the running test executable was built in:
/// the executable is `<target>/<profile>/deps/<test>-<hash>`.
fn target_dir_and_profile() -> Result<(PathBuf, String)> {
    let exe = env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .filter(|d| d.join("deps").is_dir());
    if let Some(dir) = profile_dir {
        if let (Some(target), Some(profile)) = (dir.parent(), dir.file_name()) {
            return Ok((target.to_path_buf(), profile.to_string_lossy().into_owned()));
        }
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Ok((workspace.join("target"), "debug".to_string()))
}

/// Builds `package`'s binary `name` into `target`, once per process and package (later calls
/// repeat the first outcome).
fn build_once(package: &'static str, name: &str, target: &Path, profile: &str) -> Result<()> {
    type Outcomes = Vec<(&'static str, Result<(), String>)>;
    static BUILT: Mutex<Outcomes> = Mutex::new(Vec::new());
    let mut built = BUILT
        .lock()
        .map_err(|_| anyhow::anyhow!("build lock poisoned"))?;
    if let Some((_, outcome)) = built.iter().find(|(p, _)| *p == package) {
        return outcome.clone().map_err(anyhow::Error::msg);
    }
    let outcome = cargo_build(package, name, target, profile).map_err(|e| format!("{e:#}"));
    built.push((package, outcome.clone()));
    outcome.map_err(anyhow::Error::msg)
}

fn cargo_build(package: &str, name: &str, target: &Path, profile: &str) -> Result<()> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", package, "--bin", name])
        .arg("--target-dir")
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    let out = cmd
        .output()
        .with_context(|| format!("running cargo build -p {package}"))?;
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        let first_error = log
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or("no error line");
        bail!(
            "cargo build -p {package} failed ({}): {first_error}",
            out.status
        );
    }
    Ok(())
}
