//! `containerd-shim-keel-v2` under a real containerd 1.6: a [`ShimHost`] is a containerd of the
//! test's own (see [`Containerd`]) whose tasks run on one [`Stack`] (our shim on keel-runtime,
//! our shim on the real runc, or the stock `containerd-shim-runc-v2` on runc), with a busybox
//! rootfs for `ctr run --rootfs` and what a test needs to look at a task from outside: its
//! shim process and socket, its bundle and runtime state, and what is left after delete.
//!
//! Our shim is found and configured through containerd's environment, which its shims
//! inherit: `containerd-shim-keel-v2` and `keel-runtime` (the ones cargo builds, linked into
//! `<temp dir>/bin`) first on `PATH`, `KEEL_SHIM_STATE_DIR=<temp dir>/keel` (its sockets in
//! `s/`, the runtime's state in `runtime/<namespace>/`), and `KEEL_SHIM_RUNTIME=<runc>` for
//! runc.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use super::containerd::{self, Containerd, Environment};
use super::keel_containerd::Supervisor;
use super::outcome::{self, Outcome, CLIENT_TIMEOUT};
use super::process;
use super::Peer;
use crate::{binary, host, rootfs};

/// containerd's name for our shim (it runs `containerd-shim-keel-v2` from its `PATH`).
pub const KEEL_SHIM_RUNTIME: &str = "io.containerd.keel.v2";

/// The program containerd runs for [`KEEL_SHIM_RUNTIME`].
pub const SHIM_BINARY: &str = "containerd-shim-keel-v2";

/// containerd's name for the stock shim, `containerd-shim-runc-v2`.
pub const RUNC_SHIM_RUNTIME: &str = "io.containerd.runc.v2";

/// Our shim's base dir for sockets and runtime state.
pub const STATE_DIR_ENV: &str = "KEEL_SHIM_STATE_DIR";

/// The OCI runtime our shim runs (a name on `PATH` or a path).
pub const RUNTIME_ENV: &str = "KEEL_SHIM_RUNTIME";

/// How long a task may take to reach a state, or a shim to go away.
pub const WAIT: Duration = Duration::from_secs(15);

/// Which shim runs the tasks, on which OCI runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    /// The stock `containerd-shim-runc-v2` on runc: the reference.
    RuncShim,
    /// Our shim on the real runc (`KEEL_SHIM_RUNTIME`).
    KeelShimOnRunc,
    /// Our shim on keel-runtime.
    KeelShim,
}

impl Stack {
    /// The reference first.
    pub const ALL: [Stack; 3] = [Stack::RuncShim, Stack::KeelShimOnRunc, Stack::KeelShim];

    /// A short name for transcripts.
    pub fn name(self) -> &'static str {
        match self {
            Stack::RuncShim => "runc-shim+runc",
            Stack::KeelShimOnRunc => "keel-shim+runc",
            Stack::KeelShim => "keel-shim+keel-runtime",
        }
    }

    /// What `ctr run --runtime` is given.
    pub fn runtime_name(self) -> &'static str {
        match self {
            Stack::RuncShim => RUNC_SHIM_RUNTIME,
            Stack::KeelShimOnRunc | Stack::KeelShim => KEEL_SHIM_RUNTIME,
        }
    }

    /// Whether the shim is ours.
    pub fn is_keel_shim(self) -> bool {
        self != Stack::RuncShim
    }

    /// containerd's environment for this stack; builds our shim and keel-runtime if it needs
    /// them.
    pub fn environment(self) -> Result<Environment> {
        if !self.is_keel_shim() {
            return Ok(Environment::default());
        }
        let mut env = Environment {
            programs: vec![
                (SHIM_BINARY.to_string(), binary::keel_shim()?),
                ("keel-runtime".to_string(), binary::keel_runtime()?),
            ],
            dirs: vec![(STATE_DIR_ENV.to_string(), PathBuf::from("keel"))],
            ..Environment::default()
        };
        if self == Stack::KeelShimOnRunc {
            env.vars
                .push((RUNTIME_ENV.to_string(), binary::runc()?.into_os_string()));
        }
        Ok(env)
    }
}

/// A containerd whose tasks run on one [`Stack`], with a busybox rootfs of its own.
#[derive(Debug)]
pub struct ShimHost {
    ctrd: Containerd,
    stack: Stack,
    rootfs: PathBuf,
    fifos: PathBuf,
    runc_root: PathBuf,
    runc: Option<PathBuf>,
}

impl ShimHost {
    /// Starts a containerd set up for `stack` and makes the rootfs; `Unavailable` if
    /// containerd cannot run here.
    pub fn start(stack: Stack) -> Result<Peer<Self>> {
        Self::start_on(Supervisor::Containerd, stack)
    }

    /// [`ShimHost::start`] on `supervisor` (containerd, or keel-containerd in its place).
    pub fn start_on(supervisor: Supervisor, stack: Stack) -> Result<Peer<Self>> {
        // Before building our shim: a machine without containerd (or its stock shim, when
        // that is the one used) skips.
        if supervisor == Supervisor::Containerd || stack == Stack::RuncShim {
            if let Err(why) = Containerd::installed() {
                return Ok(Peer::Unavailable(why));
            }
        }
        let runc = match stack {
            Stack::RuncShim => Some(binary::runc()?),
            Stack::KeelShimOnRunc | Stack::KeelShim => None,
        };
        let ctrd = match supervisor.start(stack.environment()?)? {
            Peer::Ready(ctrd) => ctrd,
            Peer::Unavailable(why) => return Ok(Peer::Unavailable(why)),
        };
        let rootfs = ctrd.subdir("rootfs")?;
        rootfs::build(&rootfs)?;
        Ok(Peer::Ready(Self {
            fifos: ctrd.subdir("fifo")?,
            runc_root: ctrd.subdir("runc-root")?,
            runc,
            rootfs,
            ctrd,
            stack,
        }))
    }

    /// The containerd.
    pub fn ctrd(&self) -> &Containerd {
        &self.ctrd
    }

    /// The containerd, to kill and restart it.
    pub fn ctrd_mut(&mut self) -> &mut Containerd {
        &mut self.ctrd
    }

    /// The stack the tasks run on.
    pub fn stack(&self) -> Stack {
        self.stack
    }

    /// The rootfs every container of this host runs in.
    pub fn rootfs(&self) -> &Path {
        &self.rootfs
    }

    /// containerd's warnings and errors, the shims' included (for failure messages).
    pub fn problems(&self) -> String {
        self.ctrd.problems(30)
    }

    /// `ctr run <flags> --runtime R --fifo-dir F --rootfs ROOTFS id argv...` (and for the
    /// stock shim, runc's state in the temp dir, `--runc-root`, and `--runc-binary`).
    pub fn run(&self, flags: &[&str], id: &str, argv: &[&str]) -> Result<Outcome> {
        self.ctrd.ctr(&self.run_args(flags, id, argv))
    }

    /// The arguments of `ctr` for [`ShimHost::run`].
    pub fn run_args(&self, flags: &[&str], id: &str, argv: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec!["run".into()];
        args.extend(flags.iter().map(|f| f.to_string()));
        args.extend(["--runtime".into(), self.stack.runtime_name().into()]);
        if !self.stack.is_keel_shim() {
            args.extend(["--runc-root".into(), self.runc_root.display().to_string()]);
        }
        if let Some(runc) = &self.runc {
            args.extend(["--runc-binary".into(), runc.display().to_string()]);
        }
        args.extend(["--fifo-dir".into(), self.fifos.display().to_string()]);
        args.extend(["--rootfs".into(), self.rootfs.display().to_string()]);
        args.push(id.into());
        args.extend(argv.iter().map(|a| a.to_string()));
        args
    }

    /// `ctr run --rm ... id /bin/sh -c script`.
    pub fn run_rm(&self, id: &str, script: &str) -> Result<Outcome> {
        self.run(&["--rm"], id, &["/bin/sh", "-c", script])
    }

    /// `ctr task exec <flags> --fifo-dir F --exec-id exec_id id argv...`.
    pub fn exec_with(
        &self,
        flags: &[&str],
        id: &str,
        exec_id: &str,
        argv: &[&str],
    ) -> Result<Outcome> {
        self.ctrd.ctr(&self.exec_args(flags, id, exec_id, argv))
    }

    /// [`ShimHost::exec_with`] without flags.
    pub fn exec(&self, id: &str, exec_id: &str, argv: &[&str]) -> Result<Outcome> {
        self.exec_with(&[], id, exec_id, argv)
    }

    /// The arguments of `ctr` for [`ShimHost::exec_with`].
    pub fn exec_args(&self, flags: &[&str], id: &str, exec_id: &str, argv: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = vec!["task".into(), "exec".into()];
        args.extend(flags.iter().map(|f| f.to_string()));
        args.extend(["--fifo-dir".into(), self.fifos.display().to_string()]);
        args.extend(["--exec-id".into(), exec_id.into(), id.into()]);
        args.extend(argv.iter().map(|a| a.to_string()));
        args
    }

    /// `ctr <args>` with its stdin from the file `input` (into the process's stdin FIFO).
    pub fn ctr_with_stdin(&self, args: &[String], input: &Path) -> Result<Outcome> {
        // The runner gives its commands /dev/null as stdin: a shell redirects it.
        let mut cmd = self.wrapped_ctr("exec \"$@\" < \"$KEEL_IT_STDIN\"", args);
        cmd.env("KEEL_IT_STDIN", input);
        outcome::run(&mut cmd, CLIENT_TIMEOUT)
    }

    /// `ctr <args>` on a pty of its own (`script`), as `ctr run -t` needs: its output is the
    /// terminal's, `\r\n` line ends. No argument may hold a single quote.
    pub fn ctr_on_a_pty(&self, args: &[String]) -> Result<Outcome> {
        if let Some(arg) = args.iter().find(|a| a.contains('\'')) {
            bail!("ctr_on_a_pty quotes with single quotes: {arg:?} has one");
        }
        let script = r#"cmd=""; for a in "$@"; do cmd="$cmd '$a'"; done; \
                        exec script -qec "$cmd" /dev/null"#;
        let mut cmd = self.wrapped_ctr(script, args);
        outcome::run(&mut cmd, CLIENT_TIMEOUT)
    }

    /// `/bin/sh -c script sh ctr <global flags> <args>`: the ctr command line in `"$@"`.
    fn wrapped_ctr(&self, script: &str, args: &[String]) -> Command {
        let ctr = self.ctrd.ctr_command_here();
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script, "sh"])
            .arg(ctr.get_program())
            .args(ctr.get_args())
            .args(args);
        for (name, value) in ctr.get_envs() {
            match value {
                Some(value) => cmd.env(name, value),
                None => cmd.env_remove(name),
            };
        }
        cmd
    }

    /// `ctr run -d --null-io ... id /bin/sh -c script`, the script run once the task has made
    /// its ready file; fails unless `ctr` succeeds and the file appears.
    pub fn start_task(&self, id: &str, script: &str) -> Result<()> {
        self.start_task_with(&[], id, script)
    }

    /// [`ShimHost::start_task`] with more `ctr run` flags.
    pub fn start_task_with(&self, flags: &[&str], id: &str, script: &str) -> Result<()> {
        let marker = format!("/tmp/{id}.ready");
        let script = format!("touch {marker}; {script}");
        let mut all = vec!["-d", "--null-io"];
        all.extend(flags);
        self.run(&all, id, &["/bin/sh", "-c", &script])?
            .ok(&format!("ctr run -d {id}"))
            .with_context(|| format!("containerd's log:\n{}", self.problems()))?;
        let ready = self.rootfs.join(marker.trim_start_matches('/'));
        if !host::wait_until(WAIT, || ready.exists()) {
            bail!(
                "task {id} did not start its script within {}s (status {:?}); containerd's \
                 log:\n{}",
                WAIT.as_secs(),
                self.ctrd.task_status(id).ok().flatten(),
                self.problems()
            );
        }
        Ok(())
    }

    /// containerd's bundle dir for task `id` (the shim runs in it and writes `address` there).
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.ctrd
            .dir()
            .join("state/io.containerd.runtime.v2.task")
            .join(self.ctrd.namespace())
            .join(id)
    }

    /// Our shim's base dir (`KEEL_SHIM_STATE_DIR`).
    pub fn keel_state_dir(&self) -> PathBuf {
        self.ctrd.dir().join("keel")
    }

    /// The runtime's state root for this namespace: ours under `KEEL_SHIM_STATE_DIR`, the stock
    /// shim's under `--runc-root`.
    pub fn runtime_root(&self) -> PathBuf {
        let base = if self.stack.is_keel_shim() {
            self.keel_state_dir().join("runtime")
        } else {
            self.runc_root.clone()
        };
        base.join(self.ctrd.namespace())
    }

    /// The socket the shim of task `id` listens on.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        let address = self.ctrd.address().to_string_lossy().into_owned();
        let ns = self.ctrd.namespace();
        if self.stack.is_keel_shim() {
            keel_shim_socket(&self.keel_state_dir(), &address, ns, id)
        } else {
            containerd::shim_socket(&address, ns, id)
        }
    }

    /// The pids of this containerd's shims for task `id` (all of its shims if `None`).
    pub fn shims(&self, id: Option<&str>) -> Vec<i32> {
        let address = self.ctrd.address().to_string_lossy().into_owned();
        containerd::shims_of(&address)
            .into_iter()
            .filter(|(_, argv)| id.is_none() || containerd::shim_flag(argv, "-id") == id)
            .map(|(pid, _)| pid)
            .collect()
    }

    /// What is left of task `id`: its task or container in containerd, bundle, shim process
    /// or socket, runtime state, cgroup (`/<namespace>/<id>`).
    pub fn leftovers(&self, id: &str) -> Result<Vec<String>> {
        let mut left = Vec::new();
        for (what, kind) in [("task", "task"), ("container", "containers")] {
            let ids = self
                .ctrd
                .ctr(&[kind, "ls", "-q"])?
                .ok(&format!("ctr {kind} ls"))?;
            if ids.stdout.lines().any(|l| l.trim() == id) {
                left.push(what.to_string());
            }
        }
        let paths = [
            ("bundle", self.bundle(id)),
            ("shim socket", self.shim_socket(id)),
            ("runtime state", self.runtime_root().join(id)),
        ];
        for (what, path) in paths {
            if path.exists() {
                left.push(format!("{what} {}", path.display()));
            }
        }
        let shims = self.shims(Some(id));
        if !shims.is_empty() {
            left.push(format!("shim process {shims:?}"));
        }
        let cgroup = format!("/{}/{id}", self.ctrd.namespace());
        if process::cgroup_exists_anywhere(&cgroup) {
            left.push(format!("cgroup {cgroup}"));
        }
        Ok(left)
    }

    /// [`ShimHost::leftovers`] once there are none, or after [`WAIT`] (a shim exits shortly
    /// after its task is deleted).
    pub fn wait_nothing_left(&self, id: &str) -> Result<Vec<String>> {
        host::wait_until(WAIT, || self.leftovers(id).is_ok_and(|l| l.is_empty()));
        self.leftovers(id)
    }

    /// What is left of every task once all are deleted: shim processes, mounts under the temp
    /// dir, entries in the runtime's state root.
    pub fn leftovers_overall(&self) -> Result<Vec<String>> {
        host::wait_until(WAIT, || self.shims(None).is_empty());
        let mut left = Vec::new();
        let shims = self.shims(None);
        if !shims.is_empty() {
            left.push(format!("shim processes {shims:?}"));
        }
        let dir = self.ctrd.dir();
        let mounts: Vec<String> = host::mount_points()?
            .into_iter()
            .filter(|m| Path::new(m).starts_with(dir))
            .collect();
        if !mounts.is_empty() {
            left.push(format!("mounts {mounts:?}"));
        }
        if let Ok(entries) = fs::read_dir(self.runtime_root()) {
            let names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect();
            if !names.is_empty() {
                left.push(format!("runtime state {names:?}"));
            }
        }
        Ok(left)
    }
}

/// Where our shim for `namespace`/`id` of the containerd at `address` listens:
/// `<state_dir>/s/<sha256 hex of "<address>/<namespace>/<id>">`.
pub fn keel_shim_socket(state_dir: &Path, address: &str, namespace: &str, id: &str) -> PathBuf {
    let digest = Sha256::digest(format!("{address}/{namespace}/{id}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    state_dir.join("s").join(hex)
}

/// The pid in a shim's `shim.pid` file, if it has a readable one.
pub fn read_pid_file(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keel_shim_socket_is_the_hash_of_address_namespace_and_id() {
        // `printf %s /tmp/ctrx/c.sock/t1/s1 | sha256sum`.
        assert_eq!(
            keel_shim_socket(Path::new("/tmp/k"), "/tmp/ctrx/c.sock", "t1", "s1"),
            Path::new("/tmp/k/s")
                .join("8f1749b4108e62aa0a9ba5748db578c133327c67aa4b8ecc512ff6bb0a09f69e")
        );
    }
}
