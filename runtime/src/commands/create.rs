//! `create`: the parent side of making a container. Everything made is undone if any step
//! fails (state dir, cgroup, init process), so a failed create leaves nothing behind.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Child;

use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use crate::cgroups::{Cgroup, CgroupError};
use crate::channel::{self, Channel, InitConfig, Message};
use crate::cli::CreateArgs;
use crate::config::{self, Bundle};
use crate::console::{self, ConsoleError};
use crate::state::{self, ContainerState, StateDir, Status};
use crate::{hooks, launch, namespaces, resources, seccomp, Error, Result};

/// Who takes the pty master of a terminal container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// `create` and `run -d`: the master goes to `--console-socket`, which is required.
    Detached,
    /// `run` in the foreground: the runtime keeps the master and copies it to its own stdio.
    Foreground,
}

/// A created container, as `run` needs it.
#[derive(Debug)]
pub struct Created {
    pub state: ContainerState,
    /// The pty master, when the runtime itself is attached to the terminal.
    pub console: Option<OwnedFd>,
}

/// Creates the container `args.id` from `args.bundle`; init waits for `start`.
pub fn create(root: &Path, args: &CreateArgs, attach: Attach) -> Result<Created> {
    config::validate_id(&args.id)?;
    let bundle = config::load_bundle(&args.bundle)?;
    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if terminal && attach == Attach::Detached && args.console_socket.is_none() {
        return Err(ConsoleError::SocketRequired.into());
    }
    let dir = StateDir::create(root, &args.id)?;
    let mut undo = Undo {
        dir: Some(dir),
        cgroup: None,
        cgroup_made: false,
        pid: None,
    };
    let created = build(root, args, bundle, &mut undo)?;
    undo.disarm();
    Ok(created)
}

/// What to take apart if create fails half-way.
struct Undo {
    dir: Option<StateDir>,
    cgroup: Option<Cgroup>,
    /// Whether this create made the cgroup: one that was there before (a pod's, say) is never
    /// emptied or removed on failure.
    cgroup_made: bool,
    pid: Option<i32>,
}

impl Undo {
    fn disarm(&mut self) {
        self.dir = None;
        self.cgroup = None;
        self.pid = None;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(pid) = self.pid.take() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            wait_gone(pid);
        }
        if let (Some(mut cg), true) = (self.cgroup.take(), self.cgroup_made) {
            if let Ok(pids) = cg.pids() {
                for p in pids {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
            let _ = cg.destroy();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.remove();
        }
    }
}

/// Waits (bounded) until `pid` is gone or a zombie: it is not our child, so it can't be reaped.
pub fn wait_gone(pid: i32) {
    for _ in 0..2000 {
        match state::process_start_time(pid) {
            None | Some((_, true)) => return,
            Some(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
}

fn build(root: &Path, args: &CreateArgs, bundle: Bundle, undo: &mut Undo) -> Result<Created> {
    let Bundle {
        dir: bundle_dir,
        rootfs,
        spec,
    } = bundle;
    let linux = spec.linux().clone().unwrap_or_default();
    let plan = namespaces::plan(linux.namespaces().as_deref().unwrap_or_default())?;
    let uid_maps = linux.uid_mappings().clone().unwrap_or_default();
    let gid_maps = linux.gid_mappings().clone().unwrap_or_default();
    namespaces::check_mappings(&plan, &uid_maps, &gid_maps)?;
    let idmapped = crate::mounts::prepare_idmapped_mounts(&spec, &bundle_dir)
        .map_err(crate::rootfs::RootfsError::from)?;
    let filter = match linux.seccomp() {
        Some(s) => Some(seccomp::compile(s, Some(&root.join(".seccomp-cache")))?),
        None => None,
    };
    (undo.cgroup, undo.cgroup_made) = make_cgroup(&linux, &args.id)?;
    let cgroup_path = undo
        .cgroup
        .as_ref()
        .map(|c| c.path().to_string())
        .unwrap_or_default();
    let fifo_path = undo.dir.as_ref().map(StateDir::fifo_path);
    let fifo = make_fifo(
        &fifo_path.ok_or_else(|| Error::sys("state dir", std::io::ErrorKind::NotFound))?,
    )?;
    let runtime_hooks = spec.hooks().as_ref().is_some_and(|h| {
        h.prestart().as_ref().is_some_and(|v| !v.is_empty())
            || h.create_runtime().as_ref().is_some_and(|v| !v.is_empty())
    });
    let mut state = ContainerState {
        id: args.id.clone(),
        pid: 0,
        pid_start_time: 0,
        bundle: bundle_dir.clone(),
        rootfs: rootfs.clone(),
        created: state::now_rfc3339(),
        owner: owner_name(),
        cgroup_path,
        annotations: spec.annotations().clone().unwrap_or_default(),
        spec: spec.clone(),
    };
    let task_files = undo
        .cgroup
        .as_ref()
        .map(Cgroup::v1_task_files)
        .unwrap_or_default();
    let config = InitConfig {
        id: args.id.clone(),
        spec,
        bundle: bundle_dir,
        rootfs,
        no_pivot: args.no_pivot,
        no_new_keyring: args.no_new_keyring,
        preserve_fds: args.preserve_fds,
        seccomp: filter,
        runtime_hooks,
        cgroup_task_files: task_files.clone(),
        idmapped_mounts: idmapped.iter().map(|(i, _)| *i).collect(),
    };
    let (parent, child_end) = channel::pair()?;
    let mut stage1 = launch::spawn_init(&child_end, args.preserve_fds, Some(&state.bundle))?;
    drop(child_end);
    let pid = stage1.id() as i32;
    undo.pid = Some(pid);
    // On v1 init moves itself (see init::join_cgroup); otherwise the parent moves it.
    if let (Some(cg), true) = (undo.cgroup.as_mut(), task_files.is_empty()) {
        cg.add_process(pid)?;
    }
    let mut fds: Vec<_> = idmapped.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    fds.push(fifo.as_raw_fd());
    parent.send_with_fds(&Message::Config(Box::new(config)), &fds)?;
    drop(fifo);
    drop(idmapped);
    let console = drive_init(&parent, &mut stage1, &mut state, undo, &uid_maps, &gid_maps)?;
    if let (Some(cg), (_, Some(devices))) =
        (&undo.cgroup, resources::split(linux.resources().as_ref()))
    {
        cg.update(&devices)?;
    }
    let console = hand_over_console(console, args.console_socket.as_deref())?;
    let (start_time, _) = state::process_start_time(state.pid)
        .ok_or_else(|| Error::ContainerInit("init exited during create".into()))?;
    state.pid_start_time = start_time;
    let dir = undo
        .dir
        .as_ref()
        .ok_or_else(|| Error::sys("state dir", std::io::ErrorKind::NotFound))?;
    dir.save(&state)?;
    if let Some(p) = &args.pid_file {
        write_pid_file(p, state.pid)?;
    }
    Ok(Created { state, console })
}

/// Creates the cgroup and applies the resources. A rootless caller that cannot write the
/// cgroup tree gets no cgroup (and a warning), as with runc.
/// Returns the cgroup and whether this call made it.
fn make_cgroup(linux: &oci_spec::runtime::Linux, id: &str) -> Result<(Option<Cgroup>, bool)> {
    let path = linux.cgroups_path().as_ref().and_then(|p| p.to_str());
    let mut cgroup = Cgroup::for_container(path, id)?;
    let existed = cgroup.exists();
    match cgroup.apply(resources::split(linux.resources().as_ref()).0.as_ref()) {
        Ok(()) => Ok((Some(cgroup), !existed)),
        Err(CgroupError::NotWritable { path, msg }) if !nix::unistd::geteuid().is_root() => {
            tracing::warn!("no cgroup for container {id}: {path}: {msg}");
            Ok((None, false))
        }
        Err(e) => Err(e.into()),
    }
}

/// Answers init's requests until it reports `Ready` (or fails).
fn drive_init(
    ch: &Channel,
    stage1: &mut Child,
    state: &mut ContainerState,
    undo: &mut Undo,
    uid_maps: &[oci_spec::runtime::LinuxIdMapping],
    gid_maps: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<Option<OwnedFd>> {
    let mut console = None;
    loop {
        let (msg, mut fds) = match ch.recv_with_fds() {
            Ok(m) => m,
            Err(channel::ChannelError::Closed) => {
                return Err(Error::ContainerInit(
                    "init exited before it was ready".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        match msg {
            Message::MapIds => {
                namespaces::write_id_maps(stage1.id() as i32, uid_maps, gid_maps)?;
                ch.send(&Message::IdsMapped)?;
            }
            Message::InitPid(pid) => {
                let _ = stage1.wait();
                undo.pid = Some(pid);
                state.pid = pid;
                ch.send(&Message::HostPid(pid))?;
            }
            Message::RunHooks => {
                run_runtime_hooks(state)?;
                ch.send(&Message::HooksDone)?;
            }
            Message::Console => console = fds.pop(),
            Message::SeccompListener => {
                let listener = fds.pop().ok_or_else(|| {
                    Error::ContainerInit("seccomp listener message without its fd".into())
                })?;
                let profile = state
                    .spec
                    .linux()
                    .as_ref()
                    .and_then(|l| l.seccomp().as_ref());
                let oci_state = state::oci_state_json(state, Status::Creating);
                seccomp::notify_agent(profile, &listener, state.pid, oci_state)?;
            }
            Message::Ready => return Ok(console),
            Message::Error(e) => return Err(Error::ContainerInit(e)),
            other => {
                return Err(Error::ContainerInit(format!(
                    "unexpected message {other:?}"
                )))
            }
        }
    }
}

/// prestart (deprecated, still run as runc does) then createRuntime, in the runtime's namespaces.
fn run_runtime_hooks(state: &ContainerState) -> Result<()> {
    let json = state::oci_state_json(state, Status::Creating).to_string();
    let Some(h) = state.spec.hooks() else {
        return Ok(());
    };
    for list in [h.prestart(), h.create_runtime()] {
        hooks::run_hooks(list.as_deref().unwrap_or_default(), json.as_bytes())?;
    }
    Ok(())
}

fn hand_over_console(master: Option<OwnedFd>, socket: Option<&Path>) -> Result<Option<OwnedFd>> {
    match (master, socket) {
        (Some(m), Some(path)) => {
            console::send_to_socket(path, &m)?;
            Ok(None)
        }
        (m, _) => Ok(m),
    }
}

/// The exec fifo that holds init until `start`; init gets an O_RDWR fd (open never blocks
/// that way) and blocks reading it; `start` writes one byte.
fn make_fifo(path: &Path) -> Result<OwnedFd> {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::sys(format!("mkfifo {}", path.display()), e))?;
    let f = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::sys(format!("open {}", path.display()), e))?;
    Ok(OwnedFd::from(f))
}

/// Writes the pid file atomically, as runc does (temp file, then rename).
fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("keel-tmp");
    std::fs::write(&tmp, pid.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::sys(format!("pid file {}", path.display()), e))
}

/// The caller's user name from /etc/passwd (no NSS: the binary may be static), else the uid.
fn owner_name() -> String {
    let uid = nix::unistd::getuid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&uid.as_str()))
        .and_then(|f| f.first().map(|n| n.to_string()))
        .unwrap_or(uid)
}
