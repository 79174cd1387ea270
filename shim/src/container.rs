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
    TaskCreate, TaskDelete, TaskExit, TaskIO, TaskOOM, TaskStart,
};
use containerd_shim_protos::types::mount::Mount;
use tokio::sync::watch;

use crate::console::ConsoleSocket;
use crate::error::{Result, ShimError};
use crate::events::{timestamp, Publisher};
use crate::mounts::{self, RootfsMount};
use crate::oom;
use crate::options::Options;
use crate::process::{ExitInfo, Process, Status};
use crate::reaper::{Exit, Reaper};
use crate::runtime::{self, CreateOpts, Runtime};
use crate::stdio::{self, Copying, Endpoints, StdioPaths};

mod control;
mod exec;

/// How long a delete waits for the last of a process's output to be copied. The runc shim
/// waits 2 s; a loaded machine (CI: a 1 MiB stderr through a debug build) can need more, and
/// output cut short is data lost, while the wait ends as soon as the copy does.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

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

    /// Matches an exit to the process it belongs to (and, for an init without a pid namespace
    /// of its own, kills what it leaves), then reports it once the process's output has
    /// settled: containerd 1.6's client closes its FIFOs when the exit is reported, losing
    /// whatever of the output it had not read yet.
    async fn on_exit(self: &Arc<Self>, exit: Exit) {
        let matched = {
            let _lifecycle = self.lifecycle.lock().await;
            let Some(c) = self.current() else { return };
            let Some(process) = u32::try_from(exit.pid).ok().and_then(|pid| c.by_pid(pid)) else {
                return;
            };
            if process.exec_id.is_empty() && c.kill_all_on_exit && process.exit().is_none() {
                let mut kill = c.runtime.kill(&c.id, libc::SIGKILL as u32, true);
                let reaper = self.reaper.clone();
                tokio::spawn(async move { reaper.run(&mut kill, None).await });
            }
            (c, process)
        };
        let this = self.clone();
        tokio::spawn(async move {
            let (c, process) = matched;
            if let Some(io) = process.io() {
                io.settle().await;
            }
            let info = ExitInfo {
                status: exit.status as u32,
                at: exit.at,
            };
            let _lifecycle = this.lifecycle.lock().await;
            if process.set_exited(info) {
                this.events.publish(&task_exit_event(&c, &process, info));
            }
        });
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

fn task_exit_event(c: &Container, process: &Process, info: ExitInfo) -> TaskExit {
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
    event
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
