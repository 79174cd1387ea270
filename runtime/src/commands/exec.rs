//! `exec`: a new process in a running container's namespaces and cgroup, with the container's
//! seccomp filter, capabilities and rlimits unless the process says otherwise. Without
//! `--detach` the runtime stays with the process and exits with its status.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Child;

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, Process};

use crate::cgroups::Cgroup;
use crate::channel::{self, Channel, ExecConfig, Message};
use crate::cli::ExecArgs;
use crate::commands::kill::send_raw;
use crate::exec_process;
use crate::state::{ContainerState, StateDir, Status};
use crate::{console, foreground, launch, seccomp, Error, Result};

/// Runs the process; returns its exit status (0 with `--detach`).
pub fn exec(root: &Path, args: &ExecArgs) -> Result<i32> {
    let dir = StateDir::open(root, &args.id)?;
    let st = dir.load()?;
    check_status(&args.id, dir.status(&st), args.ignore_paused)?;
    let process = exec_process::build(st.spec.process().as_ref(), args)?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && args.detach && args.console_socket.is_none() {
        return Err(console::ConsoleError::SocketRequired.into());
    }
    if !args.detach {
        // The process is our grandchild: as subreaper we get it when its parent exits.
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| Error::sys("set subreaper", e))?;
    }
    let (pid, master) = launch_process(root, &st, process, args)?;
    if let Some(p) = &args.pid_file {
        std::fs::write(p, pid.to_string())
            .map_err(|e| Error::sys(format!("pid file {}", p.display()), e))?;
    }
    if args.detach {
        if let (Some(m), Some(path)) = (&master, &args.console_socket) {
            console::send_to_socket(path, m)?;
        }
        return Ok(0);
    }
    let mask = foreground::block_forwarded()?;
    let copy = match (master, &args.console_socket) {
        (Some(m), Some(path)) => {
            console::send_to_socket(path, &m)?;
            None
        }
        (m, _) => m.map(foreground::copy_console),
    };
    let status = foreground::wait_forwarding(pid, &mask)?;
    if let Some(c) = copy {
        c.drain();
    }
    Ok(status)
}

/// runc's rules: no exec into a stopped container, nor a paused one unless asked.
fn check_status(id: &str, status: Status, ignore_paused: bool) -> Result<()> {
    let refuse = |what: &str| Error::WrongState {
        id: id.into(),
        status: status.to_string(),
        what: what.into(),
    };
    match status {
        Status::Stopped => Err(refuse("cannot exec in a stopped container")),
        Status::Paused if !ignore_paused => Err(refuse(
            "cannot exec in a paused container (use --ignore-paused)",
        )),
        _ => Ok(()),
    }
}

/// How long `exec -d` waits for the process to exec before returning anyway.
const EXEC_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts init in exec mode and answers it until the process is ready to exec; returns its pid
/// and, for a terminal, the pty master.
fn launch_process(
    root: &Path,
    st: &ContainerState,
    process: Process,
    args: &ExecArgs,
) -> Result<(i32, Option<OwnedFd>)> {
    let linux = st.spec.linux().clone().unwrap_or_default();
    let filter = match linux.seccomp() {
        Some(s) => Some(seccomp::compile(s, Some(&root.join(".seccomp-cache")))?),
        None => None,
    };
    let mut cgroup = match st.cgroup_path.as_str() {
        "" => None,
        path => Some(Cgroup::load(path)?),
    };
    let task_files = cgroup
        .as_ref()
        .map(Cgroup::v1_task_files)
        .unwrap_or_default();
    let config = ExecConfig {
        id: st.id.clone(),
        process,
        namespaces: namespaces_of(st.pid, linux.namespaces().as_deref().unwrap_or_default())?,
        seccomp: filter,
        preserve_fds: args.preserve_fds,
        cgroup_task_files: task_files.clone(),
        personality: linux.personality().clone(),
        memory_policy: linux.memory_policy().clone(),
    };
    let (parent, child_end) = channel::pair()?;
    let mut stage1 = launch::spawn_init(&child_end, args.preserve_fds, None)?;
    drop(child_end);
    let mut guard = KillOnError(Some(stage1.id() as i32));
    if let (Some(cg), true) = (cgroup.as_mut(), task_files.is_empty()) {
        cg.add_process(stage1.id() as i32)?;
    }
    parent.send(&Message::Exec(Box::new(config)))?;
    let launched = drive(&parent, &mut stage1, &mut guard, st)?;
    if args.detach {
        // As runc: `exec -d` returns once the process runs its program, not while it is
        // still the runtime's child on its way to exec.
        if let Some(Message::Error(e)) = parent.wait_closed(EXEC_WAIT)? {
            return Err(Error::ContainerInit(e));
        }
    }
    guard.0 = None;
    Ok(launched)
}

/// Kills the half-started process if exec fails before it is ready.
struct KillOnError(Option<i32>);

impl Drop for KillOnError {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = send_raw(pid, libc::SIGKILL);
        }
    }
}

/// Answers init until the process has both reported its pid (from init's first stage) and
/// readiness (from the second): the two stages write independently, in either order. A seccomp
/// listener (sent before readiness) goes to the agent once the pid is known.
fn drive(
    ch: &Channel,
    stage1: &mut Child,
    guard: &mut KillOnError,
    st: &ContainerState,
) -> Result<(i32, Option<OwnedFd>)> {
    let (mut pid, mut master, mut ready) = (None, None, false);
    let mut listener = None;
    loop {
        // Taken only with the pid known: a listener that comes first waits for it.
        if let (Some(pid), true) = (pid, listener.is_some()) {
            if let Some(fd) = listener.take() {
                let profile = st.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
                let oci_state = crate::state::oci_state_json(st, Status::Running);
                seccomp::notify_agent(profile, &fd, pid, oci_state)?;
            }
        }
        if let (Some(pid), true) = (pid, ready) {
            return Ok((pid, master));
        }
        let (msg, mut fds) = match ch.recv_with_fds() {
            Ok(m) => m,
            Err(channel::ChannelError::Closed) => {
                return Err(Error::ContainerInit(
                    "exec: init exited before it was ready".into(),
                ))
            }
            Err(e) => return Err(e.into()),
        };
        match msg {
            Message::InitPid(p) => {
                let _ = stage1.wait();
                guard.0 = Some(p);
                pid = Some(p);
            }
            Message::Console => master = fds.pop(),
            Message::SeccompListener => listener = fds.pop(),
            Message::Ready => ready = true,
            Message::Error(e) => return Err(Error::ContainerInit(e)),
            other => {
                return Err(Error::ContainerInit(format!(
                    "unexpected message {other:?}"
                )))
            }
        }
    }
}

/// The container's namespaces, each pointing at its init's (`/proc/<pid>/ns/<type>`).
fn namespaces_of(pid: i32, namespaces: &[LinuxNamespace]) -> Result<Vec<LinuxNamespace>> {
    namespaces
        .iter()
        .map(|ns| {
            let path = format!("/proc/{pid}/ns/{}", proc_name(ns.typ()));
            LinuxNamespaceBuilder::default()
                .typ(ns.typ())
                .path(path)
                .build()
                .map_err(|e| Error::sys("exec namespaces", std::io::Error::other(e)))
        })
        .collect()
}

/// The name of a namespace type under /proc/<pid>/ns.
fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}
