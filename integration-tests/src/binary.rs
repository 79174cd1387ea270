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
    if let Some(bin) = env::var_os(KEEL_RUNTIME_ENV) {
        return Ok(PathBuf::from(bin));
    }
    let (target, profile) = target_dir_and_profile()?;
    let bin = target.join(&profile).join("keel-runtime");
    if let Err(e) = build_keel_runtime(&target, &profile) {
        if !bin.exists() {
            return Err(e);
        }
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| eprintln!("WARNING: {e:#}; testing the existing {}", bin.display()));
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

/// Builds `keel-runtime` into `target`, once per process (later calls repeat the first outcome).
fn build_keel_runtime(target: &Path, profile: &str) -> Result<()> {
    static BUILT: Mutex<Option<Result<(), String>>> = Mutex::new(None);
    let mut built = BUILT
        .lock()
        .map_err(|_| anyhow::anyhow!("build lock poisoned"))?;
    let outcome =
        built.get_or_insert_with(|| cargo_build(target, profile).map_err(|e| format!("{e:#}")));
    outcome.clone().map_err(anyhow::Error::msg)
}

fn cargo_build(target: &Path, profile: &str) -> Result<()> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", "keel-runtime", "--bin", "keel-runtime"])
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
        .context("running cargo build -p keel-runtime")?;
    if !out.status.success() {
        let log = String::from_utf8_lossy(&out.stderr);
        let first_error = log
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or("no error line");
        bail!(
            "cargo build -p keel-runtime failed ({}): {first_error}",
            out.status
        );
    }
    Ok(())
}
