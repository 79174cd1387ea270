//! `containerd-shim-keel-v2` driven directly over its protocol, without containerd: a
//! [`ShimUnderTest`] starts the shim the way containerd 1.6 does (`start` in the bundle
//! directory, which prints the daemon's address), connects a ttrpc task client to it, and plays
//! containerd's other part: a fake events service on `TTRPC_ADDRESS` that records every event
//! the shim forwards, and a reader on the bundle's `log` FIFO that keeps the shim's log for
//! assertion messages.
//!
//! Everything lives in the guard's own temp dirs (`KEEL_SHIM_STATE_DIR`, the bundle, the FIFOs),
//! and dropping the guard cleans up on failure too: Shutdown, then SIGKILL for the daemon and
//! every container process, `delete --force` with the runtime, unmounts, cgroups.

mod io;
mod requests;
mod wire;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use containerd_shim_protos::api::ShutdownRequest;
use containerd_shim_protos::shim_sync::{create_events, TaskClient};
use nix::sys::stat::Mode;
use tempfile::TempDir;

use self::io::LogReader;
pub use self::io::{open_writer, FifoReader};
pub use self::wire::{code_of, ctx, expect_code, process_spec, runc_options, RecordedEvent};
use self::wire::{placeholder_socket, Recorder};
use crate::peers::process;
use crate::{binary, exec, host, ids, rootfs, unique_id, Bundle, Config};

/// The containerd namespace the shims run in.
pub const NAMESPACE: &str = "keel-shim-it";

/// The type URL of runc's runtime options (`BinaryName` is field 6, `Root` field 7).
pub const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";

/// The type URL containerd gives an OCI process spec (Exec) or `LinuxResources` (Update).
pub const PROCESS_SPEC: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
pub const LINUX_RESOURCES: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// How long one request may take before the client gives up.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a process, an event or an output may take to arrive.
pub const WAIT: Duration = Duration::from_secs(20);

/// Where the container's root filesystem comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rootfs {
    /// busybox in `<bundle>/rootfs`; Create gets no rootfs mounts.
    InBundle,
    /// busybox in a directory of its own, bind-mounted onto an empty `<bundle>/rootfs` by the
    /// shim from Create's rootfs mounts ([`ShimUnderTest::rootfs_mounts`]), as containerd's
    /// snapshots are.
    Mounted,
}

/// A shim daemon under test, its client, and containerd's side of it.
pub struct ShimUnderTest {
    pub id: String,
    shim_bin: PathBuf,
    runtime_bin: PathBuf,
    /// `KEEL_SHIM_STATE_DIR`; also holds the FIFOs, the events socket and the image.
    state: TempDir,
    bundle: Bundle,
    /// What `-address` is given (containerd's socket; nothing listens there).
    containerd_address: String,
    address: String,
    client: TaskClient,
    recorder: Arc<Recorder>,
    events_server: Option<ttrpc::Server>,
    log: LogReader,
    fifos: Mutex<Vec<PathBuf>>,
}

impl ShimUnderTest {
    /// A shim for a busybox bundle with `config`, on keel-runtime.
    pub fn start(config: &Config) -> Result<Self> {
        Self::start_with(config, Rootfs::InBundle)
    }

    /// A shim for a bundle with `config` and its rootfs as `rootfs` says, on keel-runtime
    /// (`KEEL_SHIM_RUNTIME`; a Create's options may name another).
    pub fn start_with(config: &Config, rootfs: Rootfs) -> Result<Self> {
        let mut shim = Self::unstarted(config, rootfs)?;
        shim.launch()?;
        Ok(shim)
    }

    /// Everything but the daemon: `launch` starts it (or [`ShimUnderTest::bootstrap_start`]
    /// and [`ShimUnderTest::reconnect`], for tests of `start` itself).
    pub fn unstarted(config: &Config, rootfs: Rootfs) -> Result<Self> {
        let shim_bin = binary::keel_shim()?;
        let runtime_bin = binary::keel_runtime()?;
        // Short: the shim's socket path, `<state>/s/<64 hex>`, must fit in sun_path.
        let state = tempfile::Builder::new()
            .prefix("kshim-")
            .tempdir()
            .context("creating the shim's state dir")?;
        let bundle = match rootfs {
            Rootfs::InBundle => Bundle::new(config)?,
            Rootfs::Mounted => {
                rootfs::build(&state.path().join("image"))?;
                let bundle = Bundle::empty()?;
                bundle.write_config(config)?;
                fs::create_dir(bundle.rootfs()).context("creating <bundle>/rootfs")?;
                bundle
            }
        };
        let recorder = Arc::new(Recorder::default());
        let events_path = state.path().join("ttrpc.sock");
        let mut events_server = ttrpc::Server::new()
            .bind(&format!("unix://{}", events_path.display()))
            .context("binding the fake events service")?
            .register_service(create_events(recorder.clone()));
        events_server
            .start()
            .context("starting the fake events service")?;
        let log_path = bundle.path().join("log");
        nix::unistd::mkfifo(&log_path, Mode::from_bits_truncate(0o600))
            .with_context(|| format!("mkfifo {}", log_path.display()))?;
        let log = LogReader::spawn(&log_path)?;
        let containerd_address = state.path().join("containerd.sock").display().to_string();
        Ok(Self {
            id: unique_id("shim"),
            shim_bin,
            runtime_bin,
            state,
            bundle,
            containerd_address,
            address: String::new(),
            // Replaced once the daemon serves; until then requests fail. Self exists first so
            // that a failed start is cleaned up too.
            client: TaskClient::new(ttrpc::Client::new(placeholder_socket()?)?),
            recorder,
            events_server: Some(events_server),
            log,
            fifos: Mutex::new(Vec::new()),
        })
    }

    /// Runs `start` and connects the client to the address it printed.
    pub fn launch(&mut self) -> Result<()> {
        self.address = self.bootstrap_start()?;
        self.reconnect()
    }

    /// Runs `start` again (as containerd does for every task); returns what it printed.
    pub fn bootstrap_start(&self) -> Result<String> {
        let mut cmd = self.command();
        cmd.arg("start");
        let out = exec::output_with_timeout(&mut cmd, RPC_TIMEOUT)?;
        ensure!(
            out.status.success(),
            "shim start failed ({}): {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            self.log()
        );
        let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
        ensure!(
            address.starts_with("unix://"),
            "shim start printed {address:?}, not a unix:// address"
        );
        Ok(address)
    }

    /// Runs `-bundle <bundle> delete` (containerd's cleanup after a dead shim).
    pub fn bootstrap_delete(&self) -> Result<Output> {
        let mut cmd = self.command();
        cmd.arg("-bundle").arg(self.bundle.path()).arg("delete");
        exec::output_with_timeout(&mut cmd, RPC_TIMEOUT)
    }

    /// The shim binary with containerd's flags and this test's environment, in the bundle.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.shim_bin);
        cmd.args(["-namespace", NAMESPACE, "-id", &self.id])
            .args(["-address", &self.containerd_address])
            .args(["-publish-binary", "/bin/true", "-debug"])
            .current_dir(self.bundle.path())
            .env("KEEL_SHIM_STATE_DIR", self.state.path())
            .env("KEEL_SHIM_RUNTIME", &self.runtime_bin)
            .env("TTRPC_ADDRESS", self.state.path().join("ttrpc.sock"));
        if let Some(dir) = self.runtime_bin.parent() {
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("{}:{path}", dir.display()));
        }
        cmd
    }

    /// Drops the client and connects a new one to what `start` printed (containerd
    /// restarting).
    pub fn reconnect(&mut self) -> Result<()> {
        if self.address.is_empty() {
            self.address = fs::read_to_string(self.bundle.path().join("address"))
                .context("reading <bundle>/address (was the shim started?)")?;
        }
        let client = ttrpc::Client::connect(&self.address)
            .with_context(|| format!("connecting to {}\n{}", self.address, self.log()))?;
        self.client = TaskClient::new(client);
        Ok(())
    }

    pub fn client(&self) -> &TaskClient {
        &self.client
    }

    /// A request context with [`RPC_TIMEOUT`].
    pub fn ctx(&self) -> ttrpc::context::Context {
        ctx(RPC_TIMEOUT)
    }

    /// What `start` printed: `unix://<socket>`.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn socket_path(&self) -> PathBuf {
        PathBuf::from(self.address.trim_start_matches("unix://"))
    }

    pub fn bundle(&self) -> &Path {
        self.bundle.path()
    }

    /// The shim's state dir (`KEEL_SHIM_STATE_DIR`).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The runtime's `--root` for this shim's namespace (the default one).
    pub fn runtime_root(&self) -> PathBuf {
        self.state.path().join("runtime").join(NAMESPACE)
    }

    /// `keel-runtime`, as the shim runs it by default.
    pub fn runtime_bin(&self) -> &Path {
        &self.runtime_bin
    }

    /// The daemon's pid, from `<bundle>/shim.pid`.
    pub fn shim_pid(&self) -> Result<i32> {
        let path = self.bundle.path().join("shim.pid");
        let text = fs::read_to_string(&path).with_context(|| format!("reading {path:?}"))?;
        text.trim()
            .parse()
            .with_context(|| format!("{path:?} holds {text:?}"))
    }

    /// A new FIFO `<state>/io/<name>`, removed with the state dir.
    pub fn fifo(&self, name: &str) -> Result<String> {
        let dir = self.state.path().join("io");
        fs::create_dir_all(&dir).context("creating the FIFO dir")?;
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))
            .with_context(|| format!("mkfifo {}", path.display()))?;
        if let Ok(mut fifos) = self.fifos.lock() {
            fifos.push(path.clone());
        }
        Ok(path.display().to_string())
    }

    /// Every event forwarded so far, in order.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.recorder
            .events
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// The topics forwarded so far, in order.
    pub fn topics(&self) -> Vec<String> {
        self.events().into_iter().map(|e| e.topic).collect()
    }

    /// The first event on `topic` that `matches`, waiting up to [`WAIT`] for it.
    pub fn wait_event(
        &self,
        topic: &str,
        matches: impl Fn(&RecordedEvent) -> bool,
    ) -> Result<RecordedEvent> {
        let find = || {
            self.events()
                .into_iter()
                .find(|e| e.topic == topic && matches(e))
        };
        host::wait_until(WAIT, || find().is_some());
        find().with_context(|| {
            format!(
                "no {topic} event within {WAIT:?}; events: {:?}\n{}",
                self.topics(),
                self.log()
            )
        })
    }

    /// The shim's log so far and the runtime's `log.json`, for assertion messages.
    pub fn log(&self) -> String {
        let runtime_log =
            fs::read_to_string(self.bundle.path().join("log.json")).unwrap_or_default();
        format!(
            "--- shim log ---\n{}--- runtime log.json ---\n{runtime_log}",
            self.log.text()
        )
    }

    /// The runtime binary the shim was told to use: the options' (kept in `options.json`) or
    /// keel-runtime.
    fn used_runtime(&self) -> PathBuf {
        let options = fs::read_to_string(self.bundle.path().join("options.json")).ok();
        let named = options
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["binary_name"].as_str().map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty());
        named.unwrap_or_else(|| self.runtime_bin.clone())
    }

    /// Pids of the container (init from the bundle, and the runtime's idea of it).
    fn container_pids(&self) -> Vec<i32> {
        let mut pids = Vec::new();
        let init = fs::read_to_string(self.bundle.path().join("init.pid")).unwrap_or_default();
        pids.extend(init.trim().parse::<i32>().ok());
        let mut cmd = Command::new(self.used_runtime());
        cmd.arg("--root")
            .arg(self.runtime_root())
            .args(["state", &self.id]);
        if let Ok(out) = exec::output_with_timeout(&mut cmd, Duration::from_secs(10)) {
            let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            pids.extend(state["pid"].as_i64().and_then(|p| i32::try_from(p).ok()));
        }
        pids.retain(|&p| p > 1 && host::pid_alive(p));
        pids
    }

    fn cleanup(&mut self) {
        let _ = self
            .client
            .shutdown(ctx(Duration::from_secs(2)), &ShutdownRequest::new());
        let mut cgroups = Vec::new();
        if ids::is_plain(&self.id) {
            cgroups.push(format!("/keel/{}", self.id));
            for pid in self.container_pids() {
                cgroups.extend(
                    host::cgroups_of(pid)
                        .into_iter()
                        .map(|(_, path)| path)
                        .filter(|p| p.contains(&self.id)),
                );
            }
        }
        if let Ok(pid) = self.shim_pid() {
            let argv = process::argv_of(pid);
            if argv
                .first()
                .is_some_and(|a| a.contains("containerd-shim-keel-v2"))
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        cgroups.sort();
        cgroups.dedup();
        for cgroup in &cgroups {
            // Frozen (paused) processes die only once thawed: thaw before any hierarchy waits
            // for its cgroup to empty.
            if host::is_safe_cgroup_path(cgroup) {
                let state = host::cgroup_dir("freezer", cgroup).join("freezer.state");
                let _ = fs::write(state, "THAWED");
            }
        }
        for cgroup in &cgroups {
            process::remove_cgroup_everywhere(cgroup);
        }
        // The daemon's cwd and the container's root are in the bundle.
        process::sweep(self.bundle.path());
        process::sweep(self.state.path());
        let mut cmd = Command::new(self.used_runtime());
        cmd.arg("--root")
            .arg(self.runtime_root())
            .args(["delete", "--force", &self.id]);
        let _ = exec::output_with_timeout(&mut cmd, Duration::from_secs(20));
        for cgroup in &cgroups {
            process::remove_cgroup_everywhere(cgroup);
        }
        host::detach_mounts_under(self.bundle.path());
        host::detach_mounts_under(self.state.path());
        // A reader still blocked opening its FIFO gets a writer, then end of file.
        for fifo in self.fifos.lock().map(|f| f.clone()).unwrap_or_default() {
            let _ = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo);
        }
        if let Some(server) = self.events_server.take() {
            let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                server.shutdown();
            }));
            if stopped.is_err() {
                eprintln!("keel-integration-tests: the fake events service did not stop cleanly");
            }
        }
        self.log.stop();
    }
}

impl Drop for ShimUnderTest {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Live shim daemons serving container `id` (not `start` or `delete` invocations).
pub fn daemons_of(id: &str) -> Vec<i32> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = procs
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|&pid| host::pid_alive(pid))
        .filter(|&pid| {
            let argv = process::argv_of(pid);
            argv.first()
                .is_some_and(|a| a.ends_with("containerd-shim-keel-v2"))
                && argv.windows(2).any(|w| w[0] == "-id" && w[1] == id)
                && !argv.iter().any(|a| a == "start" || a == "delete")
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Mount points at or under `dir`, from this process's mountinfo.
pub fn mounts_under(dir: &Path) -> Result<Vec<String>> {
    Ok(host::mount_points()?
        .into_iter()
        .filter(|p| Path::new(p).starts_with(dir))
        .collect())
}
