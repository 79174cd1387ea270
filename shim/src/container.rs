//! The shim's logic: the one container it serves, its init and exec processes, driven through
//! the runtime's command line and observed through the reaper. Every change of a process's
//! lifecycle (create, start, exit, delete) happens under one lock, so the events go out in the
//! order containerd expects (TaskStart before that task's TaskExit) and an exit is never
//! matched against a process whose pid is not recorded yet.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::types::mount::Mount;
use tokio::sync::watch;

use crate::console::ConsoleSocket;
use crate::error::{Result, ShimError};
use crate::events::{timestamp, Publisher};
use crate::mounts::{self, RootfsMount};
use crate::options::Options;
use crate::process::{ExitInfo, Process, Status};
use crate::reaper::{Exit, Reaper};
use crate::runtime::{self, CreateOpts, Runtime};
use crate::stdio::{self, Copying, Endpoints, StdioPaths};
use crate::{metrics, oom};

/// How long a delete waits for the last of a process's output to be copied.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// What containerd asks to create.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<RootfsMount>,
    pub stdio: StdioPaths,
    pub options: Options,
}

/// The container the shim serves.
#[derive(Debug)]
struct Container {
    id: String,
    bundle: PathBuf,
    runtime: Runtime,
    init: Arc<Process>,
    execs: Mutex<HashMap<String, Arc<Process>>>,
    rootfs_mounted: bool,
    /// Without a pid namespace of its own, the container's other processes outlive its init:
    /// they are killed when it exits, as the runc shim does.
    kill_all_on_exit: bool,
}

impl Container {
    fn exec(&self, exec_id: &str) -> Option<Arc<Process>> {
        self.execs.lock().ok()?.get(exec_id).cloned()
    }

    fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        self.exec(exec_id).ok_or_else(|| {
            ShimError::NotFound(format!(
                "exec {exec_id:?} not found in container {}",
                self.id
            ))
        })
    }

    fn by_pid(&self, pid: u32) -> Option<Arc<Process>> {
        if self.init.pid() == pid {
            return Some(self.init.clone());
        }
        let execs = self.execs.lock().ok()?;
        execs.values().find(|p| p.pid() == pid).cloned()
    }
}

/// A process's state as `State` reports it.
#[derive(Debug, Clone)]
pub struct ProcessView {
    pub bundle: PathBuf,
    pub pid: u32,
    pub status: Status,
    pub stdio: StdioPaths,
    pub exit: Option<ExitInfo>,
}

/// The shim: one container, its processes, the reaper and the event queue.
#[derive(Debug)]
pub struct Shim {
    id: String,
    namespace: String,
    state_dir: PathBuf,
    reaper: Arc<Reaper>,
    events: Publisher,
    container: Mutex<Option<Arc<Container>>>,
    lifecycle: tokio::sync::Mutex<()>,
    shutdown: watch::Sender<bool>,
}

impl Shim {
    /// A shim for container `id`; starts matching exits to processes.
    pub fn new(
        id: String,
        namespace: String,
        state_dir: PathBuf,
        reaper: Arc<Reaper>,
        events: Publisher,
    ) -> Arc<Self> {
        let shim = Arc::new(Self {
            id,
            namespace,
            state_dir,
            events,
            container: Mutex::new(None),
            lifecycle: tokio::sync::Mutex::new(()),
            shutdown: watch::Sender::new(false),
            reaper: reaper.clone(),
        });
        let mut exits = reaper.subscribe();
        let this = shim.clone();
        tokio::spawn(async move {
            while let Some(exit) = exits.next().await {
                this.on_exit(exit).await;
            }
        });
        shim
    }

    /// Resolves once a Shutdown found nothing left to serve.
    pub fn shutdown_requested(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn current(&self) -> Option<Arc<Container>> {
        self.container.lock().ok()?.clone()
    }

    fn container(&self, id: &str) -> Result<Arc<Container>> {
        self.current()
            .filter(|c| c.id == id)
            .ok_or_else(|| ShimError::NotFound(format!("container {id:?} not found")))
    }

    /// Records an exit against the process it belongs to and publishes TaskExit.
    async fn on_exit(&self, exit: Exit) {
        let _lifecycle = self.lifecycle.lock().await;
        let Some(c) = self.current() else { return };
        let Some(process) = u32::try_from(exit.pid).ok().and_then(|pid| c.by_pid(pid)) else {
            return;
        };
        let info = ExitInfo {
            status: exit.status as u32,
            at: exit.at,
        };
        if process.set_exited(info) {
            if process.exec_id.is_empty() && c.kill_all_on_exit {
                let mut kill = c.runtime.kill(&c.id, libc::SIGKILL as u32, true);
                let reaper = self.reaper.clone();
                tokio::spawn(async move { reaper.run(&mut kill, None).await });
            }
            let mut event = TaskExit::new();
            event.container_id = c.id.clone();
            event.id = if process.exec_id.is_empty() {
                c.id.clone()
            } else {
                process.exec_id.clone()
            };
            event.pid = process.pid();
            event.exit_status = info.status;
            event.exited_at = Some(timestamp(info.at)).into();
            self.events.publish(&event);
        }
    }

    /// Creates the container with the runtime; returns its init's pid.
    pub async fn create(&self, spec: CreateSpec) -> Result<u32> {
        let _lifecycle = self.lifecycle.lock().await;
        if spec.id != self.id {
            return Err(ShimError::InvalidArgument(format!(
                "this shim serves container {:?}, not {:?}",
                self.id, spec.id
            )));
        }
        if self.current().is_some() {
            return Err(ShimError::AlreadyExists(format!(
                "container {:?} already exists",
                spec.id
            )));
        }
        check_bundle(&spec.bundle)?;
        spec.options
            .save(&spec.bundle)
            .map_err(|e| ShimError::io("saving the runtime options", std::io::Error::other(e)))?;
        let runtime = Runtime::new(
            spec.options.binary(),
            spec.options.runtime_root(&self.state_dir, &self.namespace),
            spec.bundle.join("log.json"),
            spec.options.systemd_cgroup,
        );
        let rootfs = spec.bundle.join("rootfs");
        if !spec.rootfs.is_empty() {
            mounts::mount_all(&spec.rootfs, &rootfs)
                .map_err(|e| ShimError::io("mounting the rootfs", e))?;
        }
        let created = self.run_create(&spec, &runtime).await;
        let (pid, io) = match created {
            Ok(done) => done,
            Err(e) => {
                if !spec.rootfs.is_empty() {
                    mounts::unmount_all(&rootfs);
                }
                return Err(e);
            }
        };
        let init = Arc::new(Process::new(String::new(), spec.stdio.clone(), Vec::new()));
        init.set_created(pid);
        init.set_io(io);
        let container = Arc::new(Container {
            id: spec.id.clone(),
            bundle: spec.bundle.clone(),
            runtime,
            init,
            execs: Mutex::new(HashMap::new()),
            rootfs_mounted: !spec.rootfs.is_empty(),
            kill_all_on_exit: !has_own_pid_namespace(&spec.bundle),
        });
        if let Ok(mut slot) = self.container.lock() {
            *slot = Some(container);
        }
        self.events.publish(&task_create_event(&spec, pid));
        Ok(pid)
    }

    /// `runtime create`, with the stdio wired; undoes the runtime's part on failure.
    async fn run_create(&self, spec: &CreateSpec, runtime: &Runtime) -> Result<(u32, Copying)> {
        let endpoints = Endpoints::open(&spec.stdio)
            .map_err(|e| ShimError::io("opening the task's stdio", e))?;
        let (ends, shim_ends) =
            stdio::pipes(&spec.stdio).map_err(|e| ShimError::io("making stdio pipes", e))?;
        let console = self.console_socket(spec.stdio.terminal)?;
        let pid_file = spec.bundle.join("init.pid");
        let _ = fs::remove_file(&pid_file);
        let opts = CreateOpts {
            console_socket: console.as_ref().map(ConsoleSocket::path),
            no_pivot: spec.options.no_pivot_root,
            no_new_keyring: spec.options.no_new_keyring,
        };
        let mut cmd = runtime.create(&spec.id, &spec.bundle, &pid_file, &opts);
        ends.apply(&mut cmd);
        let output = self
            .reaper
            .run(&mut cmd, None)
            .await
            .map_err(|e| ShimError::io(format!("running {}", runtime.binary()), e))?;
        runtime.check("create", output)?;
        let started = async {
            let pid = read_pid(&pid_file)?;
            let master = console
                .map(|c| c.receive())
                .transpose()
                .map_err(|e| ShimError::io("receiving the terminal", e))?;
            let io = Copying::start(endpoints, shim_ends, master)
                .map_err(|e| ShimError::io("copying stdio", e))?;
            Ok::<_, ShimError>((pid, io))
        };
        match started.await {
            Ok(done) => Ok(done),
            Err(e) => {
                let _ = self
                    .reaper
                    .run(&mut runtime.delete(&spec.id, true), None)
                    .await;
                Err(e)
            }
        }
    }

    fn console_socket(&self, terminal: bool) -> Result<Option<ConsoleSocket>> {
        if !terminal {
            return Ok(None);
        }
        ConsoleSocket::bind(&self.state_dir.join("console"))
            .map(Some)
            .map_err(|e| ShimError::io("binding the console socket", e))
    }

    /// Starts the init (empty `exec_id`) or an exec; returns its pid.
    pub async fn start(&self, id: &str, exec_id: &str) -> Result<u32> {
        let _lifecycle = self.lifecycle.lock().await;
        let c = self.container(id)?;
        if !exec_id.is_empty() {
            return self.start_exec(&c, exec_id).await;
        }
        if c.init.status() != Status::Created || c.init.exit().is_some() {
            return Err(ShimError::FailedPrecondition(format!(
                "container {id:?} is {:?}, not created",
                c.init.status()
            )));
        }
        let output = self.run(&mut c.runtime.start(id), &c.runtime).await?;
        c.runtime.check("start", output)?;
        let pid = c.init.pid();
        c.init.set_running(pid);
        let mut event = TaskStart::new();
        event.container_id = id.to_string();
        event.pid = pid;
        self.events.publish(&event);
        self.watch_oom(id, pid);
        Ok(pid)
    }

    fn watch_oom(&self, id: &str, pid: u32) {
        let events = self.events.clone();
        let container_id = id.to_string();
        let watched = oom::watch(pid, move || {
            let mut event = TaskOOM::new();
            event.container_id = container_id.clone();
            events.publish(&event);
        });
        match watched {
            // The process is already gone: nothing left to watch.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!("not watching for OOM kills: {e}")
            }
            Err(e) => tracing::warn!("not watching for OOM kills: {e}"),
            Ok(()) => {}
        }
    }

    async fn run(
        &self,
        cmd: &mut std::process::Command,
        runtime: &Runtime,
    ) -> Result<runtime::Output> {
        self.reaper
            .run(cmd, None)
            .await
            .map_err(|e| ShimError::io(format!("running {}", runtime.binary()), e))
    }

    async fn start_exec(&self, c: &Container, exec_id: &str) -> Result<u32> {
        let p = c.process(exec_id)?;
        if p.pid() != 0 || p.exit().is_some() {
            return Err(ShimError::FailedPrecondition(format!(
                "exec {exec_id:?} was already started"
            )));
        }
        if c.init.exit().is_some() {
            return Err(ShimError::FailedPrecondition(format!(
                "container {:?} is not running",
                c.id
            )));
        }
        let spec_file = c.bundle.join(format!("exec-{exec_id}.json"));
        let pid_file = c.bundle.join(format!("exec-{exec_id}.pid"));
        let result = self.run_exec(c, &p, &spec_file, &pid_file).await;
        let _ = fs::remove_file(&spec_file);
        let _ = fs::remove_file(&pid_file);
        let pid = match result {
            Ok(pid) => pid,
            Err(e) => {
                // Never started, never to exit: its waiters are answered now, as the runc shim
                // does, and it can be deleted.
                p.set_exited(ExitInfo {
                    status: 255,
                    at: SystemTime::now(),
                });
                return Err(e);
            }
        };
        p.set_running(pid);
        let mut event = TaskExecStarted::new();
        event.container_id = c.id.clone();
        event.exec_id = exec_id.to_string();
        event.pid = pid;
        self.events.publish(&event);
        Ok(pid)
    }

    async fn run_exec(
        &self,
        c: &Container,
        p: &Process,
        spec_file: &Path,
        pid_file: &Path,
    ) -> Result<u32> {
        fs::write(spec_file, &p.spec)
            .map_err(|e| ShimError::io("writing the exec's process spec", e))?;
        let endpoints =
            Endpoints::open(&p.stdio).map_err(|e| ShimError::io("opening the exec's stdio", e))?;
        let (ends, shim_ends) =
            stdio::pipes(&p.stdio).map_err(|e| ShimError::io("making stdio pipes", e))?;
        let console = self.console_socket(p.stdio.terminal)?;
        let mut cmd = c.runtime.exec(
            &c.id,
            spec_file,
            pid_file,
            console.as_ref().map(ConsoleSocket::path),
        );
        ends.apply(&mut cmd);
        let output = self.run(&mut cmd, &c.runtime).await?;
        c.runtime.check("exec", output)?;
        let pid = read_pid(pid_file)?;
        let master = console
            .map(|s| s.receive())
            .transpose()
            .map_err(|e| ShimError::io("receiving the terminal", e))?;
        let io = Copying::start(endpoints, shim_ends, master)
            .map_err(|e| ShimError::io("copying stdio", e))?;
        p.set_io(io);
        Ok(pid)
    }

    /// Registers an exec (started by a later Start).
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        stdio: StdioPaths,
        spec: Vec<u8>,
    ) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        let c = self.container(id)?;
        validate_exec_id(exec_id)?;
        if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&spec).is_err() {
            return Err(ShimError::InvalidArgument(format!(
                "exec {exec_id:?}: the process spec is not a JSON object"
            )));
        }
        match (c.init.exit(), c.init.status()) {
            (Some(_), _) => {
                let why = format!("container {id:?} is not running");
                return Err(ShimError::FailedPrecondition(why));
            }
            (None, Status::Paused) => {
                let why = format!("cannot exec in container {id:?}: it is paused");
                return Err(ShimError::FailedPrecondition(why));
            }
            _ => {}
        }
        let mut execs = c
            .execs
            .lock()
            .map_err(|_| ShimError::Unimplemented("exec table poisoned".into()))?;
        if execs.contains_key(exec_id) {
            return Err(ShimError::AlreadyExists(format!(
                "exec {exec_id:?} already exists in container {id:?}"
            )));
        }
        execs.insert(
            exec_id.to_string(),
            Arc::new(Process::new(exec_id.to_string(), stdio, spec)),
        );
        drop(execs);
        let mut event = TaskExecAdded::new();
        event.container_id = id.to_string();
        event.exec_id = exec_id.to_string();
        self.events.publish(&event);
        Ok(())
    }

    /// The state of the init or an exec.
    pub fn state(&self, id: &str, exec_id: &str) -> Result<ProcessView> {
        let c = self.container(id)?;
        let p = c.process(exec_id)?;
        Ok(ProcessView {
            bundle: c.bundle.clone(),
            pid: p.pid(),
            status: p.status(),
            stdio: p.stdio.clone(),
            exit: p.exit(),
        })
    }

    /// Signals the init (through the runtime; `all`: every process of the container) or an exec.
    pub async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let c = self.container(id)?;
        let p = c.process(exec_id)?;
        if p.exit().is_some() {
            return Err(ShimError::NotFound(format!(
                "process {} already finished",
                p.pid()
            )));
        }
        if exec_id.is_empty() {
            let output = self
                .run(&mut c.runtime.kill(id, signal, all), &c.runtime)
                .await?;
            return c.runtime.check("kill", output).map(drop).map_err(|e| {
                // The init may have exited between the check above and the runtime's.
                if c.init.exit().is_some() {
                    ShimError::NotFound(format!("process {} already finished", p.pid()))
                } else {
                    e.into()
                }
            });
        }
        if p.pid() == 0 {
            return Err(ShimError::FailedPrecondition(format!(
                "exec {exec_id:?} is not started"
            )));
        }
        let sig = i32::try_from(signal)
            .ok()
            .and_then(|s| nix::sys::signal::Signal::try_from(s).ok())
            .ok_or_else(|| ShimError::InvalidArgument(format!("invalid signal {signal}")))?;
        let pid = nix::unistd::Pid::from_raw(p.pid() as i32);
        nix::sys::signal::kill(pid, sig).map_err(|e| match e {
            nix::errno::Errno::ESRCH => {
                ShimError::NotFound(format!("process {pid} already finished"))
            }
            e => ShimError::io(format!("signalling process {pid}"), e.into()),
        })
    }

    /// Waits for the init or an exec to exit.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<ExitInfo> {
        let c = self.container(id)?;
        let p = c.process(exec_id)?;
        Ok(p.wait().await)
    }

    /// Deletes an exec, or the container once its init has exited (or was never started).
    pub async fn delete(&self, id: &str, exec_id: &str) -> Result<(u32, ExitInfo)> {
        let _lifecycle = self.lifecycle.lock().await;
        let c = self.container(id)?;
        let p = c.process(exec_id)?;
        let running = p.exit().is_none() && p.pid() != 0 && p.status() != Status::Created;
        if running {
            let what = if exec_id.is_empty() {
                format!("container {id:?}")
            } else {
                format!("exec {exec_id:?}")
            };
            return Err(ShimError::FailedPrecondition(format!(
                "{what} is still running: kill it first"
            )));
        }
        if !exec_id.is_empty() {
            if let Ok(mut execs) = c.execs.lock() {
                execs.remove(exec_id);
            }
            if let Some(io) = p.io() {
                io.drain(DRAIN_LIMIT).await;
            }
            return Ok((
                p.pid(),
                p.exit().unwrap_or(ExitInfo {
                    status: 0,
                    at: SystemTime::now(),
                }),
            ));
        }
        self.delete_init(&c).await
    }

    async fn delete_init(&self, c: &Container) -> Result<(u32, ExitInfo)> {
        let never_started = c.init.exit().is_none();
        let output = self
            .run(&mut c.runtime.delete(&c.id, never_started), &c.runtime)
            .await?;
        if let Err(e) = c.runtime.check("delete", output) {
            if !e.is_not_found() {
                return Err(e.into());
            }
        }
        let exit = c.init.exit().unwrap_or(ExitInfo {
            status: 137,
            at: SystemTime::now(),
        });
        // A task deleted before it ran: its waiters get the kill's status.
        c.init.set_exited(exit);
        for exec in c
            .execs
            .lock()
            .map(|e| e.values().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            exec.set_exited(ExitInfo {
                status: 137,
                at: exit.at,
            });
        }
        if let Some(io) = c.init.io() {
            io.drain(DRAIN_LIMIT).await;
        }
        if c.rootfs_mounted {
            mounts::unmount_all(&c.bundle.join("rootfs"));
        }
        if let Ok(mut slot) = self.container.lock() {
            *slot = None;
        }
        let mut event = TaskDelete::new();
        event.container_id = c.id.clone();
        event.id = c.id.clone();
        event.pid = c.init.pid();
        event.exit_status = exit.status;
        event.exited_at = Some(timestamp(exit.at)).into();
        self.events.publish(&event);
        Ok((c.init.pid(), exit))
    }

    /// Resizes the terminal of the init or an exec (no-op without one).
    pub fn resize_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let p = self.container(id)?.process(exec_id)?;
        match p.io() {
            Some(io) => match io.master() {
                Some(m) => m
                    .resize(width, height)
                    .map_err(|e| ShimError::io("resizing the terminal", e)),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Closes the stdin of the init or an exec.
    pub fn close_io(&self, id: &str, exec_id: &str, stdin: bool) -> Result<()> {
        let p = self.container(id)?.process(exec_id)?;
        if let (true, Some(io)) = (stdin, p.io()) {
            io.close_stdin();
        }
        Ok(())
    }

    /// The container's pids, with the exec id of those that are execs.
    pub async fn pids(&self, id: &str) -> Result<Vec<(u32, Option<String>)>> {
        let c = self.container(id)?;
        let output = self.run(&mut c.runtime.ps(id), &c.runtime).await?;
        let pids = runtime::parse_pids(&c.runtime.check("ps", output)?.stdout)?;
        Ok(pids
            .into_iter()
            .map(|pid| {
                let exec = c
                    .by_pid(pid)
                    .map(|p| p.exec_id.clone())
                    .filter(|e| !e.is_empty());
                (pid, exec)
            })
            .collect())
    }

    /// Pauses (`true`) or resumes the container.
    pub async fn pause(&self, id: &str, pause: bool) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        let c = self.container(id)?;
        let (from, op) = if pause {
            (Status::Running, "pause")
        } else {
            (Status::Paused, "resume")
        };
        if c.init.status() != from {
            return Err(ShimError::FailedPrecondition(format!(
                "cannot {op} container {id:?}: it is {:?}",
                c.init.status()
            )));
        }
        let mut cmd = if pause {
            c.runtime.pause(id)
        } else {
            c.runtime.resume(id)
        };
        let output = self.run(&mut cmd, &c.runtime).await?;
        c.runtime.check(op, output)?;
        c.init.set_paused(pause);
        if pause {
            let mut event = TaskPaused::new();
            event.container_id = id.to_string();
            self.events.publish(&event);
        } else {
            let mut event = TaskResumed::new();
            event.container_id = id.to_string();
            self.events.publish(&event);
        }
        Ok(())
    }

    /// The container's cgroup metrics.
    pub async fn stats(&self, id: &str) -> Result<Any> {
        let c = self.container(id)?;
        let output = self.run(&mut c.runtime.stats(id), &c.runtime).await?;
        let output = c.runtime.check("events", output)?;
        metrics::from_runtime_stats(&output.stdout)
            .map_err(|e| ShimError::io("reading the runtime's stats", std::io::Error::other(e)))
    }

    /// Updates the container's resources (`LinuxResources` JSON).
    pub async fn update(&self, id: &str, resources: &[u8]) -> Result<()> {
        let c = self.container(id)?;
        if serde_json::from_slice::<serde_json::Value>(resources).is_err() {
            return Err(ShimError::InvalidArgument(
                "resources are not JSON LinuxResources".into(),
            ));
        }
        let output = self
            .reaper
            .run(&mut c.runtime.update(id), Some(resources))
            .await
            .map_err(|e| ShimError::io(format!("running {}", c.runtime.binary()), e))?;
        c.runtime
            .check("update", output)
            .map(drop)
            .map_err(Into::into)
    }

    /// The init's pid (0 before create).
    pub fn task_pid(&self) -> u32 {
        self.current().map_or(0, |c| c.init.pid())
    }

    /// Shutdown: the shim exits only when it serves no container any more.
    pub fn shutdown(&self) -> bool {
        let idle = self.current().is_none();
        if idle {
            self.shutdown.send_replace(true);
        }
        idle
    }
}

/// Whether the bundle's config asks for a new pid namespace (one with no path to join).
fn has_own_pid_namespace(bundle: &Path) -> bool {
    let Ok(text) = fs::read(bundle.join("config.json")) else {
        return false;
    };
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return false;
    };
    let namespaces = config
        .pointer("/linux/namespaces")
        .and_then(|n| n.as_array());
    namespaces.is_some_and(|list| {
        list.iter().any(|ns| {
            ns.get("type").and_then(|t| t.as_str()) == Some("pid")
                && ns
                    .get("path")
                    .and_then(|p| p.as_str())
                    .unwrap_or("")
                    .is_empty()
        })
    })
}

fn check_bundle(bundle: &Path) -> Result<()> {
    if !bundle.is_dir() {
        return Err(ShimError::NotFound(format!(
            "bundle {} does not exist",
            bundle.display()
        )));
    }
    if !bundle.join("config.json").is_file() {
        return Err(ShimError::InvalidArgument(format!(
            "bundle {} has no config.json",
            bundle.display()
        )));
    }
    Ok(())
}

/// containerd's identifier rule: letters, digits, `.`, `_`, `-`, starting with a letter or
/// digit, at most 76 bytes. The exec id becomes part of file names in the bundle.
fn validate_exec_id(exec_id: &str) -> Result<()> {
    let ok = !exec_id.is_empty()
        && exec_id.len() <= 76
        && exec_id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && exec_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ShimError::InvalidArgument(format!(
            "invalid exec id {exec_id:?}"
        )))
    }
}

fn read_pid(path: &Path) -> Result<u32> {
    let text = fs::read_to_string(path)
        .map_err(|e| ShimError::io(format!("reading {}", path.display()), e))?;
    text.trim().parse().map_err(|_| {
        ShimError::io(
            format!("reading {}", path.display()),
            std::io::Error::other("not a pid"),
        )
    })
}

fn task_create_event(spec: &CreateSpec, pid: u32) -> TaskCreate {
    let mut event = TaskCreate::new();
    event.container_id = spec.id.clone();
    event.bundle = spec.bundle.display().to_string();
    event.rootfs = spec
        .rootfs
        .iter()
        .map(|m| {
            let mut mount = Mount::new();
            mount.type_ = m.kind.clone();
            mount.source = m.source.clone();
            mount.options = m.options.clone();
            mount
        })
        .collect();
    let mut io = TaskIO::new();
    io.stdin = spec.stdio.stdin.clone();
    io.stdout = spec.stdio.stdout.clone();
    io.stderr = spec.stdio.stderr.clone();
    io.terminal = spec.stdio.terminal;
    event.io = Some(io).into();
    event.pid = pid;
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_ids_cannot_name_paths() {
        for bad in ["", "../x", "a/b", ".hidden", "x y", &"a".repeat(77)] {
            assert!(validate_exec_id(bad).is_err(), "{bad:?}");
        }
        for good in ["exec1", "a.b_c-d", "0"] {
            assert!(validate_exec_id(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn pid_namespace_of_the_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let write = |config: &str| fs::write(dir.path().join("config.json"), config).unwrap();
        write(r#"{"linux":{"namespaces":[{"type":"mount"},{"type":"pid"}]}}"#);
        assert!(has_own_pid_namespace(dir.path()));
        write(r#"{"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}}"#);
        assert!(!has_own_pid_namespace(dir.path()));
        write(r#"{"linux":{"namespaces":[{"type":"mount"}]}}"#);
        assert!(!has_own_pid_namespace(dir.path()));
    }

    #[test]
    fn bundles_need_a_config() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            check_bundle(&dir.path().join("nope")),
            Err(ShimError::NotFound(_))
        ));
        assert!(matches!(
            check_bundle(dir.path()),
            Err(ShimError::InvalidArgument(_))
        ));
        fs::write(dir.path().join("config.json"), "{}").unwrap();
        assert!(check_bundle(dir.path()).is_ok());
    }
}
