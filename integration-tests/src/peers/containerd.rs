//! A real containerd (Debian `containerd`, 1.6) of the test's own: config, root, state, socket
//! and `opt` dir in a temp dir, the CRI plugin off; driven with its own `ctr`, in a namespace
//! of the test's own. Tasks run through the stock `containerd-shim-runc-v2`, which takes any
//! runc-compatible binary (`ctr run --runc-binary`).
//!
//! A test may start it with an [`Environment`] of its own (directories first on `PATH`, extra
//! variables), which the shims it starts inherit: that is how `containerd-shim-keel-v2` is found
//! and configured (see [`super::keel_shim`]). It can be SIGKILLed and restarted on the same
//! config and dirs, its shims and containers running on meanwhile.
//!
//! The daemon may be a drop-in for containerd instead ([`Program`]): keel-containerd runs in
//! the same temp dir, with the same socket and cleanup (see [`super::keel_containerd`]).
//!
//! Dropping it deletes every task and container it still has, stops it, then sweeps what
//! outlives it: its shims (any `containerd-shim-*` whose `-address` is its socket) and their
//! sockets (`/run/containerd/s` for the stock shims; ours are under the temp dir), container
//! processes and cgroups, mounts under the temp dir.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
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

/// What a test adds to containerd's environment; the shims containerd starts inherit it.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Programs linked into `<temp dir>/bin` under the given names (`containerd-shim-keel-v2`),
    /// that directory first on `PATH` (containerd looks shims up on its `PATH`).
    pub programs: Vec<(String, PathBuf)>,
    /// Directories put on `PATH` after that one, before the inherited `PATH`, in this order.
    pub path_first: Vec<PathBuf>,
    /// Variables set as given.
    pub vars: Vec<(String, OsString)>,
    /// Variables set to a directory under containerd's temp dir (made before it starts):
    /// `(name, path relative to the temp dir)`.
    pub dirs: Vec<(String, PathBuf)>,
}

/// The daemon a [`Containerd`] runs: containerd itself, or a drop-in for it.
#[derive(Debug, Clone)]
pub struct Program {
    /// Its name in messages (`containerd`, `keel-containerd`).
    pub name: &'static str,
    /// The binary.
    pub binary: PathBuf,
    /// Given its dirs, socket and log level as flags (`--root --state --address --log-level`)
    /// rather than as containerd's `config.toml`.
    pub flags: bool,
}

/// A running containerd and the namespace the test uses in it.
#[derive(Debug)]
pub struct Containerd {
    daemon: Option<Daemon>,
    program: Program,
    ctr: PathBuf,
    env: Environment,
    namespace: String,
    dir: TempDir,
}

impl Containerd {
    /// Starts containerd in a new temp dir and waits until `ctr version` answers; `Unavailable`
    /// (with the log tail) if it is not installed or does not come up.
    pub fn start() -> Result<Peer<Self>> {
        Self::start_with(Environment::default())
    }

    /// [`Containerd::start`] with `env` added to containerd's environment.
    pub fn start_with(env: Environment) -> Result<Peer<Self>> {
        let containerd = match Self::installed() {
            Ok((containerd, _)) => containerd,
            Err(why) => return Ok(Peer::Unavailable(why)),
        };
        let program = Program {
            name: "containerd",
            binary: containerd,
            flags: false,
        };
        Self::start_program(program, env)
    }

    /// [`Containerd::start_with`] running `program` in containerd's place.
    pub fn start_program(program: Program, env: Environment) -> Result<Peer<Self>> {
        let Some(ctr) = find_binary("ctr", &["/usr/bin/ctr"]) else {
            let why = "ctr is not installed (apt-get install containerd)";
            return Ok(Peer::Unavailable(why.to_string()));
        };
        let dir = tempfile::Builder::new()
            .prefix("keel-ctrd-")
            .tempdir()
            .context("creating containerd's temp dir")?;
        let config = dir.path().join("config.toml");
        fs::write(&config, config_toml(dir.path())).context("writing containerd's config")?;
        for (_, relative) in &env.dirs {
            let path = dir.path().join(relative);
            fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        }
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).with_context(|| format!("mkdir {}", bin.display()))?;
        for (name, program) in &env.programs {
            std::os::unix::fs::symlink(program, bin.join(name))
                .with_context(|| format!("linking {} as {name}", program.display()))?;
        }
        let mut this = Self {
            daemon: None,
            program,
            ctr,
            env,
            namespace: unique_id("keel-it"),
            dir,
        };
        match this.spawn_and_wait()? {
            Ok(()) => Ok(Peer::Ready(this)),
            Err(why) => Ok(Peer::Unavailable(format!(
                "{} cannot run here: {why}",
                this.program.binary.display()
            ))),
        }
    }

    /// The `containerd` and `ctr` binaries, if they and the stock shim are installed; else
    /// which is missing (a skip message).
    pub fn installed() -> std::result::Result<(PathBuf, PathBuf), String> {
        let missing = |what: &str| format!("{what} is not installed (apt-get install containerd)");
        let containerd = find_binary("containerd", &["/usr/bin/containerd"])
            .ok_or_else(|| missing("containerd"))?;
        let ctr = find_binary("ctr", &["/usr/bin/ctr"]).ok_or_else(|| missing("ctr"))?;
        let shim = "containerd-shim-runc-v2";
        find_binary(shim, &["/usr/bin/containerd-shim-runc-v2"]).ok_or_else(|| missing(shim))?;
        Ok((containerd, ctr))
    }

    /// Spawns containerd on the config in the temp dir and waits until it answers; the inner
    /// error says why it did not, with its log tail.
    fn spawn_and_wait(&mut self) -> Result<std::result::Result<(), String>> {
        let mut cmd = Command::new(&self.program.binary);
        if self.program.flags {
            cmd.arg("--root")
                .arg(self.dir().join("root"))
                .arg("--state")
                .arg(self.dir().join("state"))
                .arg("--address")
                .arg(self.address())
                .args(["--log-level", "debug"]);
        } else {
            cmd.arg("--config").arg(self.dir().join("config.toml"));
        }
        let mut path = vec![self.dir().join("bin")];
        path.extend(self.env.path_first.iter().cloned());
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        cmd.env(
            "PATH",
            std::env::join_paths(path).context("joining containerd's PATH")?,
        );
        for (name, value) in &self.env.vars {
            cmd.env(name, value);
        }
        for (name, relative) in &self.env.dirs {
            cmd.env(name, self.dir().join(relative));
        }
        let log = self.log();
        let mut daemon = Daemon::spawn(self.program.name, &mut cmd, &log)?;
        let socket = self.address();
        let ctr = self.ctr.clone();
        let answered = process::wait_for(&mut daemon, START_TIMEOUT, || {
            socket.exists() && ctr_version_answers(&ctr, &socket)
        });
        self.daemon = Some(daemon);
        let why = match answered {
            Ok(true) => return Ok(Ok(())),
            Ok(false) => format!(
                "{} did not answer on {} within {}s",
                self.program.name,
                socket.display(),
                START_TIMEOUT.as_secs()
            ),
            Err(exit) => exit,
        };
        Ok(Err(format!(
            "{why}; its log ends:\n{}",
            process::log_tail(&log, 15)
        )))
    }

    /// SIGKILLs containerd (not its shims, which run in process groups of their own) and reaps
    /// it, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = kill(Pid::from_raw(daemon.pid()), Signal::SIGKILL);
            daemon.stop(Duration::from_secs(10));
        }
    }

    /// Starts containerd again on the same config, dirs and environment (after [`kill`]), and
    /// waits until it answers.
    ///
    /// [`kill`]: Containerd::kill
    pub fn restart(&mut self) -> Result<()> {
        if let Some(daemon) = self.daemon.as_mut() {
            if daemon.exited().is_none() {
                bail!(
                    "{} is still running: kill it before restarting it",
                    self.program.name
                );
            }
        }
        // A SIGKILLed containerd leaves its sockets behind.
        let _ = fs::remove_file(self.address());
        let _ = fs::remove_file(self.dir().join("containerd.sock.ttrpc"));
        match self.spawn_and_wait()? {
            Ok(()) => Ok(()),
            Err(why) => bail!("restarting {}: {why}", self.program.name),
        }
    }

    /// Whether containerd is running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.daemon.as_mut().is_some_and(|d| d.exited().is_none())
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

    /// A `ctr` command on this containerd, in the test's namespace, without arguments yet (for
    /// one that runs in the background, such as `ctr events`).
    pub fn ctr_command_here(&self) -> Command {
        self.ctr_command(&self.namespace)
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
            // containerd's logrus lines, and the tracing lines of a drop-in.
            |l| {
                ["level=error", "level=warning", " ERROR ", " WARN "]
                    .iter()
                    .any(|level| l.contains(level))
            },
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
        let mut namespaces = vec![self.namespace.clone()];
        if self.is_running() {
            namespaces = self.delete_everything();
        }
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop(Duration::from_secs(10));
        }
        // Shims first, so that none is left to restart or reap what is killed next.
        let address = self.address().to_string_lossy().into_owned();
        for argv in kill_shims_of(&address) {
            remove_shim_socket(&argv);
        }
        // `ctr run` puts a container in cgroup /<namespace>/<id>. A task left paused takes no
        // SIGKILL until thawed: thaw all first, or each other hierarchy waits for it in vain.
        for ns in namespaces.iter().filter(|ns| host::is_safe_cgroup_path(ns)) {
            thaw(&Path::new(host::CGROUP_ROOT).join("freezer").join(ns));
        }
        for ns in &namespaces {
            process::remove_cgroup_everywhere(ns);
        }
        for argv in process::sweep(self.dir()) {
            remove_shim_socket(&argv);
        }
        host::detach_mounts_under(self.dir());
    }
}

/// Thaws a v1 freezer cgroup and those below it (nothing if there is none).
fn thaw(dir: &Path) {
    if !dir.is_dir() {
        return;
    }
    let _ = fs::write(dir.join("freezer.state"), "THAWED");
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten().filter(|e| e.path().is_dir()) {
            thaw(&entry.path());
        }
    }
}

/// Live shim processes (`containerd-shim-*`) serving the containerd whose socket is `address`:
/// each pid with its argv.
pub fn shims_of(address: &str) -> Vec<(i32, Vec<String>)> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|&pid| host::pid_alive(pid))
        .map(|pid| (pid, process::argv_of(pid)))
        .filter(|(_, argv)| is_shim(argv) && shim_flag(argv, "-address") == Some(address))
        .collect()
}

/// SIGKILLs the shims of the containerd at `address` and waits (bounded) for them to go;
/// returns the argv of each.
fn kill_shims_of(address: &str) -> Vec<Vec<String>> {
    let shims = shims_of(address);
    for (pid, _) in &shims {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    host::wait_until(Duration::from_secs(5), || {
        shims.iter().all(|(pid, _)| !host::pid_alive(*pid))
    });
    shims.into_iter().map(|(_, argv)| argv).collect()
}

/// Whether an argv is a shim's: its program's file name starts with `containerd-shim`.
fn is_shim(argv: &[String]) -> bool {
    argv.first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|name| name.to_string_lossy().starts_with("containerd-shim"))
}

/// The value after `name` in a shim's argv (`-namespace`, `-id`, `-address`).
pub fn shim_flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .map(String::as_str)
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

/// Removes the socket in `/run/containerd/s` of a killed shim, given its argv; ignores any
/// other process. (Our shim's sockets are under the temp dir, removed with it.)
fn remove_shim_socket(argv: &[String]) {
    let flag = |name| shim_flag(argv, name);
    if let (true, Some(ns), Some(id), Some(address)) = (
        is_shim(argv),
        flag("-namespace"),
        flag("-id"),
        flag("-address"),
    ) {
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
