//! A running container to exec into: its init ran a script, then sleeps. Shared by the exec
//! tests.

use std::fs;
use std::process::Output;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use crate::checks::expect_success;
use crate::exec::exit_code;
use crate::{host, unique_id, Bundle, Captured, Config, Runtime};

/// How long a container may take to run its script.
const WAIT: Duration = Duration::from_secs(10);

/// A running container whose init ran a script, then sleeps; and the runtime that runs it.
/// The runtime is dropped first: it kills and deletes the container before the bundle goes.
pub struct Container {
    pub rt: Runtime,
    pub bundle: Bundle,
    pub id: String,
}

impl Container {
    /// Runs `config` with init `script; touch /tmp/.ready; exec sleep`, under keel.
    pub fn start(config: Config, script: &str) -> Result<Self> {
        Self::start_on(Runtime::keel()?, config, script)
    }

    /// The same under a given runtime; returns once the script has run.
    pub fn start_on(rt: Runtime, config: Config, script: &str) -> Result<Self> {
        let config = config.sh(&format!("{script}\ntouch /tmp/.ready\nexec sleep 100000"));
        let bundle = Bundle::new(&config)?;
        let id = unique_id("exec");
        expect_success(&rt.run_detached(bundle.path(), &id)?, "run -d")?;
        let ready = bundle.rootfs().join("tmp/.ready");
        ensure!(
            host::wait_until(WAIT, || ready.exists()),
            "the container's init never got ready"
        );
        Ok(Self { rt, bundle, id })
    }

    /// A container that only sleeps.
    pub fn sleeping(config: Config) -> Result<Self> {
        Self::start(config, ":")
    }

    pub fn init_pid(&self) -> Result<i32> {
        self.rt.pid(&self.id)
    }

    /// `exec <flags...> <id> <cmd...>` (no `--`: runc would take it as the command).
    pub fn exec(&self, flags: &[&str], cmd: &[&str]) -> Result<Output> {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.push(&self.id);
        args.extend_from_slice(cmd);
        self.rt.exec(&args)
    }

    /// `exec <flags...> <id> sh -c <script>`, decoded.
    pub fn sh(&self, flags: &[&str], script: &str) -> Result<Captured> {
        Ok(captured(self.exec(flags, &["sh", "-c", script])?))
    }

    /// The stdout of `exec <flags...> <id> sh -c <script>`; an error unless it exits 0.
    pub fn sh_ok(&self, flags: &[&str], script: &str) -> Result<String> {
        Ok(self.sh(flags, script)?.success()?.stdout)
    }

    /// A file the container wrote in its rootfs (a plain directory), read from the host.
    pub fn file(&self, path: &str) -> Result<String> {
        let p = self.bundle.rootfs().join(path.trim_start_matches('/'));
        fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    }

    /// What must not change when an exec is refused: the state and the container's processes.
    pub fn snapshot(&self) -> Result<(Value, Vec<i32>)> {
        let state = self.rt.state_json(&self.id)?;
        Ok((state, pids_in_pid_ns_of(self.init_pid()?)?))
    }

    /// Asserts the snapshot comes back to `before` (a refused process may take a moment to go).
    pub fn expect_unchanged(&self, before: &(Value, Vec<i32>)) -> Result<()> {
        let same = host::wait_until(Duration::from_secs(5), || {
            self.snapshot().is_ok_and(|now| &now == before)
        });
        let now = self.snapshot()?;
        ensure!(
            same,
            "the container changed:\nbefore {before:?}\nafter  {now:?}"
        );
        Ok(())
    }
}

/// An exec's output, decoded.
pub fn captured(out: Output) -> Captured {
    Captured {
        status: exit_code(&out.status),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The live host pids in the pid namespace of `pid`, sorted.
pub fn pids_in_pid_ns_of(pid: i32) -> Result<Vec<i32>> {
    let ns = host::namespace_of(pid, "pid")?;
    let mut pids: Vec<i32> = fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&p| host::pid_alive(p) && host::namespace_of(p, "pid").is_ok_and(|n| n == ns))
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Scripts and the exit status `exec` must return for each: the process's, or 128 + signal.
pub const EXIT_CASES: [(&str, i32); 5] = [
    ("exit 0", 0),
    ("exit 5", 5),
    ("false", 1),
    ("kill -9 $$", 137),
    ("kill -TERM $$", 143),
];
