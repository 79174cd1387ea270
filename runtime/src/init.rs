//! The container's init process: `keel-runtime init`, exec'ed by `create` (and `exec`) from a
//! protected copy of the binary (see `clone_binary`). The first stage joins and makes namespaces
//! and forks (pid and time namespaces take effect in children); the second stage is the
//! container's init (`container`) or the exec'ed process (`exec`), and both end in the steps that
//! apply `process` (`process`) and exec the user's program.

mod container;
mod exec;
mod process;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::unistd::{fork, ForkResult, Gid, Pid, Uid};

use crate::channel::{Channel, ChannelError, Message};
use crate::namespaces::{self, Plan};
use crate::scheduling;

/// Errors of the init sequence; each names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{step}: {msg}")]
    Step { step: &'static str, msg: String },
    // runc's wording: callers such as dockerd map it to exit statuses 127 and 126.
    #[error("exec: \"{0}\": executable file not found in $PATH")]
    NotFound(String),
    #[error("exec: \"{0}\": stat {0}: no such file or directory")]
    NoSuchFile(String),
    #[error("exec: \"{0}\": permission denied")]
    NotExecutable(String),
    /// The parent went away (it failed and reports its own error).
    #[error("the runtime closed the init channel")]
    ParentGone,
}

pub type Result<T> = std::result::Result<T, InitError>;

/// Maps a channel failure: a closed channel means the parent is gone, not a new error.
fn chan(step_name: &'static str) -> impl FnOnce(ChannelError) -> InitError {
    move |e| match e {
        ChannelError::Closed => InitError::ParentGone,
        ChannelError::Io(ref io) if io.kind() == std::io::ErrorKind::BrokenPipe => {
            InitError::ParentGone
        }
        e => step(step_name)(e),
    }
}

fn step<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> InitError {
    move |e| InitError::Step {
        step,
        msg: e.to_string(),
    }
}

/// Entry point of `keel-runtime init`. Returns only on failure, after telling the parent.
pub fn run() -> i32 {
    let channel = match Channel::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keel-runtime init: {e}");
            return 1;
        }
    };
    match stage1(&channel) {
        Ok(code) => code,
        Err(e) => {
            let _ = channel.send(&Message::Error(e.to_string()));
            1
        }
    }
}

/// What the second stage will be.
enum Job {
    Container(
        Box<crate::channel::InitConfig>,
        OwnedFd,
        Vec<(usize, OwnedFd)>,
    ),
    Exec(Box<crate::channel::ExecConfig>),
}

/// Receives the job, enters the namespaces and forks the second stage.
fn stage1(channel: &Channel) -> Result<i32> {
    let (job, task_files, namespaces) = receive_job(channel)?;
    initial_affinity(&job)?;
    join_cgroup(&task_files)?;
    final_affinity(&job)?;
    let plan = namespaces::plan(&namespaces).map_err(step("namespaces"))?;
    namespaces::join(&plan).map_err(step("join namespaces"))?;
    if plan
        .join
        .iter()
        .any(|(f, _)| *f == CloneFlags::CLONE_NEWUSER)
    {
        become_root_in_user_namespace()?;
    }
    if plan.new_user {
        enter_new_user_namespace(channel)?;
    }
    namespaces::unshare_new(plan.new).map_err(step("namespaces"))?;
    if let Job::Container(config, ..) = &job {
        let offsets = config
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.time_offsets().clone());
        if let Some(offsets) = offsets {
            namespaces::write_time_offsets(&offsets).map_err(step("time offsets"))?;
        }
    }
    match fork_init()? {
        ForkResult::Parent { child } => {
            channel
                .send(&Message::InitPid(child.as_raw()))
                .map_err(chan("report pid"))?;
            Ok(0)
        }
        ForkResult::Child => Ok(stage2(channel, job, &plan)),
    }
}

type Received = (Job, Vec<PathBuf>, Vec<oci_spec::runtime::LinuxNamespace>);

fn receive_job(channel: &Channel) -> Result<Received> {
    let (msg, mut fds) = channel.recv_with_fds().map_err(chan("receive config"))?;
    match msg {
        Message::Config(config) => {
            let fifo = fds
                .pop()
                .ok_or_else(|| step("receive config")("no exec fifo fd"))?;
            if fds.len() != config.idmapped_mounts.len() {
                return Err(step("receive config")("idmapped mount fds missing"));
            }
            let idmapped = config.idmapped_mounts.iter().copied().zip(fds).collect();
            let linux = config.spec.linux().clone().unwrap_or_default();
            let namespaces = linux.namespaces().clone().unwrap_or_default();
            let files = config.cgroup_task_files.clone();
            Ok((Job::Container(config, fifo, idmapped), files, namespaces))
        }
        Message::Exec(config) => {
            // Processes already in the container must not ptrace us while we still hold the
            // runtime's privileges and fds; exec resets this.
            nix::sys::prctl::set_dumpable(false).map_err(step("dumpable"))?;
            let (files, namespaces) = (config.cgroup_task_files.clone(), config.namespaces.clone());
            Ok((Job::Exec(config), files, namespaces))
        }
        other => Err(step("receive config")(format!("unexpected {other:?}"))),
    }
}

/// Runs the second stage; returns only on failure, with the exit status.
fn stage2(channel: &Channel, job: Job, plan: &Plan) -> i32 {
    let result = match job {
        Job::Container(config, fifo, idmapped) => {
            container::run(channel, &config, plan, fifo, idmapped)
        }
        Job::Exec(config) => exec::run(channel, &config),
    };
    let err = match result {
        Err(e) => e,
        Ok(never) => match never {},
    };
    if matches!(err, InitError::ParentGone) {
        return 1;
    }
    // After `Ready` the parent is gone: the container's stderr is the only witness.
    if channel.send(&Message::Error(err.to_string())).is_err() {
        eprintln!("keel-runtime init: {err}");
    }
    1
}

#[allow(unsafe_code)]
fn fork_init() -> Result<ForkResult> {
    // SAFETY: `keel-runtime init` is single-threaded (no runtime, no thread spawned), so the
    // child may run arbitrary code after fork.
    unsafe { fork() }.map_err(step("fork container init"))
}

/// Moves this process into the container's cgroup, before it forks the container's init.
///
/// Why here and not by the parent: a write of a pid to `cgroup.procs` takes the kernel's global
/// threadgroup lock, whose first writer waits for an RCU grace period (~10 ms here), while a
/// single-threaded process writing "0" to a v1 `tasks` file moves itself without that lock.
fn join_cgroup(task_files: &[PathBuf]) -> Result<()> {
    for file in task_files {
        std::fs::write(file, "0")
            .map_err(|e| step("join cgroup")(format!("{}: {e}", file.display())))?;
    }
    Ok(())
}

/// `exec`: the new process runs on `execCPUAffinity.initial` until it joins the cgroup.
fn initial_affinity(job: &Job) -> Result<()> {
    let Job::Exec(config) = job else {
        return Ok(());
    };
    let affinity = config.process.exec_cpu_affinity().as_ref();
    scheduling::apply_initial_affinity(Pid::from_raw(0), affinity).map_err(step("cpu affinity"))
}

/// After the cgroup join: `execCPUAffinity.final` for `exec`; every CPU of the cgroup for the
/// container's init (the spec does not apply `execCPUAffinity` to it), as runc does.
fn final_affinity(job: &Job) -> Result<()> {
    let me = Pid::from_raw(0);
    match job {
        Job::Exec(c) => {
            scheduling::apply_final_affinity(me, c.process.exec_cpu_affinity().as_ref())
        }
        Job::Container(..) => scheduling::reset_affinity(me),
    }
    .map_err(step("cpu affinity"))
}

/// Makes a user namespace, has the parent write its id maps, and becomes its root.
fn enter_new_user_namespace(channel: &Channel) -> Result<()> {
    namespaces::unshare_new(CloneFlags::CLONE_NEWUSER).map_err(step("user namespace"))?;
    channel
        .send(&Message::MapIds)
        .map_err(chan("user namespace"))?;
    channel
        .expect("IdsMapped")
        .map_err(chan("user namespace"))?;
    become_root_in_user_namespace()
}

/// Takes uid and gid 0 of the user namespace just made or joined: the host ids this process
/// had are not mapped there (files made with them would fail with EOVERFLOW).
fn become_root_in_user_namespace() -> Result<()> {
    let (root_uid, root_gid) = (Uid::from_raw(0), Gid::from_raw(0));
    nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(step("setgid 0 in userns"))?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(step("setuid 0 in userns"))
}
