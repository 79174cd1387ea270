//! `Runtime`: a handle on an OCI runtime binary with runc's command line (`keel-runtime`, or
//! `runc` for comparison), with its own temp `--root`.
//!
//! Every container id passed to `create` or `run` is remembered; dropping the handle kills and
//! force-deletes each one and removes its cgroups, so a failing test leaves no process, cgroup
//! or state behind.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tempfile::TempDir;

use crate::binary;
use crate::bundle::Bundle;
use crate::config::Config;
use crate::exec::{self, DEFAULT_TIMEOUT};
use crate::host;
use crate::ids::{self, unique_id};

/// A runtime binary and the state root it is driven with.
#[derive(Debug)]
pub struct Runtime {
    bin: PathBuf,
    /// Holds `root/`; a bad id such as `../x` must land in here, not beside it.
    base: TempDir,
    timeout: Duration,
    tracked: Mutex<Vec<Tracked>>,
}

/// A container to clean up: its id and the cgroup paths it may have made.
#[derive(Debug, Clone)]
struct Tracked {
    id: String,
    cgroups: Vec<String>,
}

/// The outcome of a foreground `run`, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The exit code of `run`: the container's, or 128 + the signal that killed it.
    pub status: i32,
    /// The container's standard output.
    pub stdout: String,
    /// The container's and the runtime's standard error.
    pub stderr: String,
}

impl Captured {
    /// Itself if the status is 0, else an error quoting stdout and stderr.
    pub fn success(self) -> Result<Self> {
        if self.status != 0 {
            bail!(
                "exit status {}\nstdout: {}\nstderr: {}",
                self.status,
                self.stdout,
                self.stderr
            );
        }
        Ok(self)
    }
}

impl Runtime {
    /// `keel-runtime` (see [`binary::keel_runtime`] for where it is found).
    pub fn keel() -> Result<Self> {
        Self::with_binary(&binary::keel_runtime()?)
    }

    /// The real `runc`, for comparison tests.
    pub fn runc() -> Result<Self> {
        Self::with_binary(&binary::runc()?)
    }

    /// Any binary with runc's command line.
    pub fn with_binary(bin: &Path) -> Result<Self> {
        let base = tempfile::Builder::new()
            .prefix("keel-runtime-")
            .tempdir()
            .context("creating the runtime's temp dir")?;
        std::fs::create_dir(base.path().join("root")).context("creating the --root dir")?;
        Ok(Self {
            bin: bin.to_path_buf(),
            base,
            timeout: DEFAULT_TIMEOUT,
            tracked: Mutex::new(Vec::new()),
        })
    }

    /// The binary driven.
    pub fn binary(&self) -> &Path {
        &self.bin
    }

    /// The `--root` state directory (`<temp dir>/root`).
    pub fn root(&self) -> PathBuf {
        self.base.path().join("root")
    }

    /// The temp dir that holds `root()`, where a state dir escaping it (`../x`) would land.
    pub fn base(&self) -> &Path {
        self.base.path()
    }

    /// Whether this drives `runc` (whose messages and cgroup layout differ from keel's).
    pub fn is_runc(&self) -> bool {
        self.bin.file_name().is_some_and(|n| n == "runc")
    }

    /// `<bin> --root <root>`, for flags this handle has no method for.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(self.root());
        cmd
    }

    /// Runs `<bin> --root <root> <args...>` to completion (or the timeout).
    pub fn exec<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Output> {
        let mut cmd = self.command();
        cmd.args(args);
        exec::output_with_timeout(&mut cmd, self.timeout)
    }

    /// `create --bundle <bundle> <id>`.
    pub fn create(&self, bundle: &Path, id: &str) -> Result<Output> {
        self.create_with(bundle, id, &[])
    }

    /// `create --bundle <bundle> <extra...> <id>` (`--pid-file`, `--console-socket`, ...).
    pub fn create_with(&self, bundle: &Path, id: &str, extra: &[&str]) -> Result<Output> {
        self.track(id, bundle);
        let mut args = os_args(&["create", "--bundle"]);
        args.push(bundle.into());
        args.extend(os_args(extra));
        args.push(id.into());
        self.exec(&args)
    }

    /// `start <id>`.
    pub fn start(&self, id: &str) -> Result<Output> {
        self.exec(&["start", id])
    }

    /// `state <id>`.
    pub fn state(&self, id: &str) -> Result<Output> {
        self.exec(&["state", id])
    }

    /// `state <id>`, parsed; an error if the command fails.
    pub fn state_json(&self, id: &str) -> Result<Value> {
        let out = self.state(id)?;
        if !out.status.success() {
            bail!(
                "state {id} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "state {id} printed no JSON: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The `status` field of `state <id>` (`created`, `running`, `stopped`).
    pub fn status(&self, id: &str) -> Result<String> {
        let state = self.state_json(id)?;
        Ok(state["status"].as_str().unwrap_or_default().to_string())
    }

    /// The `pid` field of `state <id>`.
    pub fn pid(&self, id: &str) -> Result<i32> {
        let state = self.state_json(id)?;
        let pid = state["pid"].as_i64().context("state has no pid")?;
        i32::try_from(pid).context("pid out of range")
    }

    /// Polls `state <id>` until its status is `status`; false after `timeout`.
    pub fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> bool {
        host::wait_until(timeout, || self.status(id).is_ok_and(|s| s == status))
    }

    /// `kill <id> <signal>`.
    pub fn kill(&self, id: &str, signal: &str) -> Result<Output> {
        self.exec(&["kill", id, signal])
    }

    /// `kill --all <id> <signal>`.
    pub fn kill_all(&self, id: &str, signal: &str) -> Result<Output> {
        self.exec(&["kill", "--all", id, signal])
    }

    /// `delete <id>`.
    pub fn delete(&self, id: &str) -> Result<Output> {
        self.exec(&["delete", id])
    }

    /// `delete --force <id>`.
    pub fn delete_force(&self, id: &str) -> Result<Output> {
        self.exec(&["delete", "--force", id])
    }

    /// `run --bundle <bundle> <id>` in the foreground: waits for the container.
    pub fn run(&self, bundle: &Path, id: &str) -> Result<Output> {
        self.run_with(bundle, id, &[])
    }

    /// `run -d --bundle <bundle> <id>`: returns once the container started.
    pub fn run_detached(&self, bundle: &Path, id: &str) -> Result<Output> {
        self.run_with(bundle, id, &["-d"])
    }

    /// `run --bundle <bundle> <extra...> <id>` (`-d`, `--no-pivot`, ...).
    pub fn run_with(&self, bundle: &Path, id: &str, extra: &[&str]) -> Result<Output> {
        self.track(id, bundle);
        let mut args = os_args(&["run", "--bundle"]);
        args.push(bundle.into());
        args.extend(os_args(extra));
        args.push(id.into());
        self.exec(&args)
    }

    /// `list --format <format>` (`table` or `json`).
    pub fn list(&self, format: &str) -> Result<Output> {
        self.exec(&["list", "--format", format])
    }

    /// `spec --bundle <dir>`.
    pub fn spec(&self, dir: &Path) -> Result<Output> {
        let mut args = os_args(&["spec", "--bundle"]);
        args.push(dir.into());
        self.exec(&args)
    }

    /// Runs `config` in a fresh busybox bundle in the foreground and decodes the outcome.
    pub fn run_and_capture(&self, config: &Config) -> Result<Captured> {
        let bundle = Bundle::new(config)?;
        let id = unique_id("run");
        let out = self.run(bundle.path(), &id)?;
        Ok(Captured {
            status: exec::exit_code(&out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// The state directory `--root/<id>` (keel's and runc's layout).
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root().join(id)
    }

    /// Registers container `id` (bundle `bundle`) for cleanup on drop, for containers made by
    /// a command this handle has no method for.
    pub fn adopt(&self, id: &str, bundle: &Path) {
        self.track(id, bundle);
    }

    fn track(&self, id: &str, bundle: &Path) {
        let cgroups = self.cgroup_candidates(id, bundle);
        if let Ok(mut tracked) = self.tracked.lock() {
            tracked.push(Tracked {
                id: id.to_string(),
                cgroups,
            });
        }
    }

    /// The cgroup paths a container may have made: keel's default, runc's, and `cgroupsPath`.
    /// None for an id that is not plain: cleanup kills what is in these cgroups.
    fn cgroup_candidates(&self, id: &str, bundle: &Path) -> Vec<String> {
        if !ids::is_plain(id) {
            return Vec::new();
        }
        let mut paths = vec![format!("/keel/{id}"), format!("/{id}")];
        if let Some(p) = configured_cgroups_path(bundle).filter(|p| p.contains(id)) {
            if p.starts_with('/') {
                paths.push(p);
            } else {
                paths.push(format!("/keel/{p}"));
                paths.push(format!("/{p}"));
            }
        }
        paths.retain(|p| host::is_safe_cgroup_path(p));
        paths
    }

    fn cleanup(&self, container: &Tracked) {
        let mut cgroups = container.cgroups.clone();
        if ids::is_plain(&container.id) {
            if let Ok(pid) = self.pid(&container.id) {
                cgroups.extend(container_cgroups(pid, &container.id));
                host::kill_container_pid(pid, &container.id);
            }
        }
        let _ = self.kill_all(&container.id, "KILL");
        let _ = self.delete_force(&container.id);
        cgroups.sort();
        cgroups.dedup();
        for cgroup in &cgroups {
            host::remove_cgroup(cgroup);
        }
    }
}

/// The cgroups `pid` is in that name container `id` (never a parent of the container's).
fn container_cgroups(pid: i32, id: &str) -> Vec<String> {
    host::cgroups_of(pid)
        .into_iter()
        .map(|(_, path)| path)
        .filter(|p| p.contains(id) && host::is_safe_cgroup_path(p))
        .collect()
}

fn os_args(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn configured_cgroups_path(bundle: &Path) -> Option<String> {
    let text = std::fs::read_to_string(bundle.join("config.json")).ok()?;
    let doc: Value = serde_json::from_str(&text).ok()?;
    let path = doc["linux"]["cgroupsPath"].as_str()?;
    (!path.is_empty() && !path.contains("..")).then(|| path.to_string())
}

impl Drop for Runtime {
    fn drop(&mut self) {
        let tracked = self.tracked.lock().map(|t| t.clone()).unwrap_or_default();
        for container in tracked.iter().rev() {
            self.cleanup(container);
        }
        host::detach_mounts_under(self.base());
    }
}

/// Runs `config` under a fresh `keel-runtime` handle (own root, cleaned up on return).
pub fn run_and_capture(config: &Config) -> Result<Captured> {
    Runtime::keel()?.run_and_capture(config)
}
