//! A real containerd (Debian `containerd`, 1.6) of the test's own: config, root, state, socket
//! and `opt` dir in a temp dir, the CRI plugin off; driven with its own `ctr`, in a namespace
//! of the test's own. Tasks run through the stock `containerd-shim-runc-v2`, which takes any
//! runc-compatible binary (`ctr run --runc-binary`).
//!
//! Dropping it deletes every task and container it still has, stops it, then sweeps what
//! outlives it: shims (and their sockets in `/run/containerd/s`), container processes and
//! cgroups, mounts under the temp dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::outcome::{self, Outcome, CLIENT_TIMEOUT};
use super::process::{self, Daemon};
use super::{find_binary, Peer};
use crate::host;
use crate::ids::unique_id;

/// How long containerd may take to answer on its socket.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where containerd 1.6's shims put their sockets, whatever containerd's own state dir.
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// The CRI plugin and the snapshotters that cannot work here are not loaded.
const DISABLED_PLUGINS: [&str; 5] = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
];

/// A running containerd and the namespace the test uses in it.
#[derive(Debug)]
pub struct Containerd {
    daemon: Option<Daemon>,
    ctr: PathBuf,
    namespace: String,
    dir: TempDir,
}

impl Containerd {
    /// Starts containerd in a new temp dir and waits until `ctr version` answers; `Unavailable`
    /// (with the log tail) if it is not installed or does not come up.
    pub fn start() -> Result<Peer<Self>> {
        let Some(containerd) = find_binary("containerd", &["/usr/bin/containerd"]) else {
            return Ok(Peer::Unavailable(
                "containerd is not installed (apt-get install containerd)".into(),
            ));
        };
        let Some(ctr) = find_binary("ctr", &["/usr/bin/ctr"]) else {
            return Ok(Peer::Unavailable(
                "ctr is not installed (apt-get install containerd)".into(),
            ));
        };
        if find_binary(
            "containerd-shim-runc-v2",
            &["/usr/bin/containerd-shim-runc-v2"],
        )
        .is_none()
        {
            return Ok(Peer::Unavailable(
                "containerd-shim-runc-v2 is not installed (apt-get install containerd)".into(),
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("keel-ctrd-")
            .tempdir()
            .context("creating containerd's temp dir")?;
        let config = dir.path().join("config.toml");
        fs::write(&config, config_toml(dir.path())).context("writing containerd's config")?;
        let log = dir.path().join("containerd.log");
        let mut cmd = Command::new(&containerd);
        cmd.arg("--config").arg(&config);
        let daemon = Daemon::spawn("containerd", &mut cmd, &log)?;
        let mut this = Self {
            daemon: Some(daemon),
            ctr,
            namespace: unique_id("keel-it"),
            dir,
        };
        let socket = this.address();
        let ctr = this.ctr.clone();
        let answered = match this.daemon.as_mut() {
            Some(daemon) => process::wait_for(daemon, START_TIMEOUT, || {
                socket.exists() && ctr_version_answers(&ctr, &socket)
            }),
            None => Ok(false),
        };
        let why = match answered {
            Ok(true) => return Ok(Peer::Ready(this)),
            Ok(false) => format!(
                "containerd did not answer on {} within {}s",
                socket.display(),
                START_TIMEOUT.as_secs()
            ),
            Err(exit) => exit,
        };
        Ok(Peer::Unavailable(format!(
            "{containerd} cannot run here: {why}; its log ends:\n{tail}",
            containerd = containerd.display(),
            tail = process::log_tail(&log, 15)
        )))
    }

    /// The temp dir holding everything of this containerd.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The gRPC socket.
    pub fn address(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }

    /// The containerd namespace the test's containers go in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// containerd's log (stdout and stderr, debug level: the shims' logs are forwarded here).
    pub fn log(&self) -> PathBuf {
        self.dir().join("containerd.log")
    }

    /// A fresh directory under the temp dir.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir().join(name);
        fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        Ok(dir)
    }

    /// `ctr --address <socket> --namespace <ns> <args>`, killed after a minute.
    pub fn ctr<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<Outcome> {
        self.ctr_in(&self.namespace, args)
    }

    /// `ctr` in another namespace (`moby` for dockerd's containers).
    pub fn ctr_in<S: AsRef<std::ffi::OsStr>>(
        &self,
        namespace: &str,
        args: &[S],
    ) -> Result<Outcome> {
        let mut cmd = self.ctr_command(namespace);
        cmd.args(args);
        outcome::run(&mut cmd, CLIENT_TIMEOUT)
    }

    fn ctr_command(&self, namespace: &str) -> Command {
        let mut cmd = Command::new(&self.ctr);
        for var in [
            "CONTAINERD_ADDRESS",
            "CONTAINERD_NAMESPACE",
            "CONTAINERD_SNAPSHOTTER",
        ] {
            cmd.env_remove(var);
        }
        cmd.arg("--address")
            .arg(self.address())
            .arg("--namespace")
            .arg(namespace);
        cmd
    }

    /// The status column of `ctr task ls` for `id` (`RUNNING`, `PAUSED`, `STOPPED`, ...), or
    /// `None` when containerd has no such task.
    pub fn task_status(&self, id: &str) -> Result<Option<String>> {
        Ok(self.task_row(id)?.map(|(_, status)| status))
    }

    /// The pid column of `ctr task ls` for `id`.
    pub fn task_pid(&self, id: &str) -> Result<Option<i32>> {
        Ok(self.task_row(id)?.and_then(|(pid, _)| pid.parse().ok()))
    }

    fn task_row(&self, id: &str) -> Result<Option<(String, String)>> {
        let out = self.ctr(&["task", "ls"])?.ok("ctr task ls")?;
        Ok(out.stdout.lines().skip(1).find_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            match cols.as_slice() {
                [task, pid, status, ..] if *task == id => {
                    Some((pid.to_string(), status.to_string()))
                }
                _ => None,
            }
        }))
    }

    /// Polls `ctr task ls` until task `id` has `status`, for up to `timeout`.
    pub fn wait_task_status(&self, id: &str, status: &str, timeout: Duration) -> bool {
        host::wait_until(timeout, || {
            self.task_status(id).ok().flatten().as_deref() == Some(status)
        })
    }

    /// Error and warning lines of containerd's log (the shims' included), the last `n`.
    pub fn problems(&self, n: usize) -> String {
        process::log_lines(
            &self.log(),
            |l| l.contains("level=error") || l.contains("level=warning"),
            n,
        )
    }

    /// Best effort, bounded: SIGKILL and delete every task, delete every container, in every
    /// namespace. Returns the namespaces seen.
    fn delete_everything(&self) -> Vec<String> {
        let mut namespaces = vec![self.namespace.clone()];
        if let Ok(out) = self.ctr(&["namespaces", "ls", "-q"]) {
            namespaces.extend(out.stdout.lines().map(str::trim).map(String::from));
        }
        namespaces.sort();
        namespaces.dedup();
        let quick = Duration::from_secs(15);
        for ns in &namespaces {
            let ids = |what: &str| -> Vec<String> {
                let mut cmd = self.ctr_command(ns);
                cmd.args([what, "ls", "-q"]);
                outcome::run(&mut cmd, quick)
                    .map(|o| o.stdout.lines().map(|l| l.trim().to_string()).collect())
                    .unwrap_or_default()
            };
            for task in ids("task") {
                for args in [
                    vec!["task", "resume", &task],
                    vec!["task", "kill", "-a", "-s", "SIGKILL", &task],
                    vec!["task", "delete", "-f", &task],
                ] {
                    let mut cmd = self.ctr_command(ns);
                    cmd.args(&args);
                    let _ = outcome::run(&mut cmd, quick);
                }
            }
            for container in ids("containers") {
                let mut cmd = self.ctr_command(ns);
                cmd.args(["containers", "delete", &container]);
                let _ = outcome::run(&mut cmd, quick);
            }
        }
        namespaces
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let running = self.daemon.as_mut().is_some_and(|d| d.exited().is_none());
        let mut namespaces = vec![self.namespace.clone()];
        if running {
            namespaces = self.delete_everything();
        }
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop(Duration::from_secs(10));
        }
        // `ctr run` puts a container in cgroup /<namespace>/<id>.
        for ns in &namespaces {
            process::remove_cgroup_everywhere(ns);
        }
        for argv in process::sweep(self.dir()) {
            remove_shim_socket(&argv);
        }
        host::detach_mounts_under(self.dir());
    }
}

/// The `config.toml` of a containerd whose every path is under `dir`.
pub fn config_toml(dir: &Path) -> String {
    let d = dir.display();
    let disabled = DISABLED_PLUGINS
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [{disabled}]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
    )
}

fn ctr_version_answers(ctr: &Path, socket: &Path) -> bool {
    let mut cmd = Command::new(ctr);
    cmd.arg("--address").arg(socket).arg("version");
    outcome::run(&mut cmd, Duration::from_secs(5)).is_ok_and(|o| o.status == 0)
}

/// The socket a `containerd-shim-runc-v2 -namespace N -id I -address A` listens on:
/// `/run/containerd/s/<sha256 of A/N/I>` (containerd 1.6's `shim.SocketAddress`).
pub fn shim_socket(address: &str, namespace: &str, id: &str) -> PathBuf {
    let key = Path::new(address).join(namespace).join(id);
    let digest = Sha256::digest(key.to_string_lossy().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Path::new(SHIM_SOCKET_DIR).join(hex)
}

/// Removes the socket of a killed shim, given its argv; ignores any other process.
fn remove_shim_socket(argv: &[String]) {
    let is_shim = argv.first().is_some_and(|a| a.contains("containerd-shim"));
    let flag = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
    };
    if let (true, Some(ns), Some(id), Some(address)) =
        (is_shim, flag("-namespace"), flag("-id"), flag("-address"))
    {
        let _ = fs::remove_file(shim_socket(address, ns, id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_socket_is_containerds_hash() {
        // `printf %s /tmp/ctrx/c.sock/t1/s1 | sha256sum`, as a live shim had it.
        assert_eq!(
            shim_socket("/tmp/ctrx/c.sock", "t1", "s1"),
            Path::new(SHIM_SOCKET_DIR)
                .join("8f1749b4108e62aa0a9ba5748db578c133327c67aa4b8ecc512ff6bb0a09f69e")
        );
    }

    #[test]
    fn config_keeps_everything_in_the_temp_dir() {
        let text = config_toml(Path::new("/tmp/keel-ctrd-x"));
        for line in text.lines().filter(|l| l.contains('/')) {
            assert!(line.contains("/tmp/keel-ctrd-x/"), "{line}");
        }
        assert!(text.contains("io.containerd.grpc.v1.cri"));
    }
}
