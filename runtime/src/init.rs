//! The container's init process: `keel-runtime init`, exec'ed by `create` from a sealed copy of
//! the binary. The first stage joins and makes namespaces and forks (pid and time namespaces take
//! effect in children); the second is the container's init and runs the steps below, in order,
//! then waits on the exec fifo for `start` and execs the user's process.

use std::ffi::CString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::{fork, ForkResult, Gid, Uid};
use oci_spec::runtime::{Hook, Process, Spec};

use crate::capabilities::CapSets;
use crate::channel::{Channel, ChannelError, InitConfig, Message};
use crate::namespaces::{self, Plan};
use crate::state::{ContainerState, Status};
use crate::{console, hooks, network, rlimits, rootfs, seccomp, user};

/// Errors of the init sequence; each names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{step}: {msg}")]
    Step { step: &'static str, msg: String },
    #[error("exec {0}: executable file not found in $PATH")]
    NotFound(String),
    #[error("exec {0}: no such file, or not an executable file")]
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

/// Receives the config, enters the namespaces and forks the container's init.
fn stage1(channel: &Channel) -> Result<i32> {
    let (msg, mut fds) = channel.recv_with_fds().map_err(step("receive config"))?;
    let Message::Config(config) = msg else {
        return Err(InitError::Step {
            step: "receive config",
            msg: "no config".into(),
        });
    };
    let fifo = fds
        .pop()
        .ok_or_else(|| step("receive config")("no exec fifo fd"))?;
    join_cgroup(&config.cgroup_task_files)?;
    let linux = config.spec.linux().clone().unwrap_or_default();
    let plan = namespaces::plan(linux.namespaces().as_deref().unwrap_or_default())
        .map_err(step("namespaces"))?;
    namespaces::join(&plan).map_err(step("join namespaces"))?;
    if plan.new_user {
        enter_new_user_namespace(channel)?;
    }
    namespaces::unshare_new(plan.new).map_err(step("namespaces"))?;
    if let Some(offsets) = linux.time_offsets() {
        namespaces::write_time_offsets(offsets).map_err(step("time offsets"))?;
    }
    match fork_init()? {
        ForkResult::Parent { child } => {
            channel
                .send(&Message::InitPid(child.as_raw()))
                .map_err(step("report pid"))?;
            Ok(0)
        }
        ForkResult::Child => {
            let err = match stage2(channel, &config, &plan, fifo) {
                Err(e) => e,
                Ok(never) => match never {},
            };
            if matches!(err, InitError::ParentGone) {
                return Ok(1);
            }
            // After `Ready` the parent is gone: the container's stderr is the only witness.
            if channel.send(&Message::Error(err.to_string())).is_err() {
                eprintln!("keel-runtime init: {err}");
            }
            Ok(1)
        }
    }
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

/// Makes a user namespace, has the parent write its id maps, and becomes its root.
fn enter_new_user_namespace(channel: &Channel) -> Result<()> {
    namespaces::unshare_new(CloneFlags::CLONE_NEWUSER).map_err(step("user namespace"))?;
    channel
        .send(&Message::MapIds)
        .map_err(step("user namespace"))?;
    channel
        .expect("IdsMapped")
        .map_err(step("user namespace"))?;
    let (root_uid, root_gid) = (Uid::from_raw(0), Gid::from_raw(0));
    nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(step("setgid 0 in userns"))?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(step("setuid 0 in userns"))
}

/// The container's init: every step of the config, then wait for start and exec.
fn stage2(
    channel: &Channel,
    config: &InitConfig,
    plan: &Plan,
    fifo: OwnedFd,
) -> Result<std::convert::Infallible> {
    let Message::HostPid(pid) = channel.expect("HostPid").map_err(chan("host pid"))? else {
        return Err(step("host pid")("unexpected message"));
    };
    let spec = &config.spec;
    let process = spec.process().clone().unwrap_or_default();
    nix::unistd::setsid().map_err(step("setsid"))?;
    if plan.new.contains(CloneFlags::CLONE_NEWNET) {
        network::loopback_up().map_err(step("loopback"))?;
    }
    prepare_rootfs(config, plan)?;
    run_runtime_hooks(channel, config)?;
    run_container_hooks(
        config,
        pid,
        Status::Creating,
        spec.hooks()
            .as_ref()
            .and_then(|h| h.create_container().clone()),
    )?;
    rootfs::enter(&config.rootfs, config.no_pivot).map_err(step("enter rootfs"))?;
    set_hostname(spec, plan)?;
    apply_sysctls(spec)?;
    rootfs::finish(spec).map_err(step("rootfs"))?;
    setup_console(channel, &process)?;
    set_oom_score_adj(&process)?;
    rlimits::apply(process.rlimits().as_deref().unwrap_or_default()).map_err(step("rlimits"))?;
    join_session_keyring(config)?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    if !nnp {
        load_seccomp(config)?;
    }
    close_leaked_fds(config.preserve_fds)?;
    finalize_user(&process)?;
    enter_cwd(&process)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        process.user().umask().unwrap_or(0o022),
    ));
    if nnp {
        set_no_new_privs()?;
    }
    let (argv, envp, exe) = prepare_exec(&process)?;
    channel.send(&Message::Ready).map_err(chan("ready"))?;
    wait_for_start(fifo)?;
    run_container_hooks(
        config,
        pid,
        Status::Running,
        spec.hooks()
            .as_ref()
            .and_then(|h| h.start_container().clone()),
    )?;
    if nnp {
        load_seccomp(config)?;
    }
    nix::unistd::execve(&exe, &argv, &envp).map_err(step("exec"))
}

fn prepare_rootfs(config: &InitConfig, plan: &Plan) -> Result<()> {
    if !plan.has(CloneFlags::CLONE_NEWNS) {
        return Err(step("rootfs")(
            "a mount namespace is required in linux.namespaces",
        ));
    }
    rootfs::prepare(&config.spec, &config.rootfs).map_err(step("rootfs"))
}

/// prestart and createRuntime hooks run in the runtime's namespaces: the parent runs them.
fn run_runtime_hooks(channel: &Channel, config: &InitConfig) -> Result<()> {
    if !config.runtime_hooks {
        return Ok(());
    }
    channel.send(&Message::RunHooks).map_err(chan("hooks"))?;
    channel.expect("HooksDone").map_err(chan("hooks"))?;
    Ok(())
}

/// createContainer and startContainer hooks run here, in the container's namespaces.
fn run_container_hooks(
    config: &InitConfig,
    pid: i32,
    status: Status,
    list: Option<Vec<Hook>>,
) -> Result<()> {
    let Some(list) = list.filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    let state = ContainerState {
        id: config.id.clone(),
        pid,
        pid_start_time: 0,
        bundle: config.bundle.clone(),
        rootfs: config.rootfs.clone(),
        created: String::new(),
        owner: String::new(),
        cgroup_path: String::new(),
        annotations: config.spec.annotations().clone().unwrap_or_default(),
        spec: Spec::default(),
    };
    let json = crate::state::oci_state_json(&state, status).to_string();
    hooks::run_hooks(&list, json.as_bytes()).map_err(step("hook"))
}

fn set_hostname(spec: &Spec, plan: &Plan) -> Result<()> {
    let uts = plan.has(CloneFlags::CLONE_NEWUTS);
    let names = [
        (spec.hostname(), "hostname"),
        (spec.domainname(), "domainname"),
    ];
    for (value, what) in names {
        let Some(name) = value.as_deref().filter(|n| !n.is_empty()) else {
            continue;
        };
        if !uts {
            return Err(step("hostname")(format!("{what} needs a uts namespace")));
        }
        let file = if what == "hostname" {
            "/proc/sys/kernel/hostname"
        } else {
            "/proc/sys/kernel/domainname"
        };
        if what == "hostname" {
            nix::unistd::sethostname(name).map_err(step("hostname"))?;
        } else {
            std::fs::write(file, name).map_err(step("domainname"))?;
        }
    }
    Ok(())
}

fn apply_sysctls(spec: &Spec) -> Result<()> {
    let sysctls = spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().clone())
        .unwrap_or_default();
    for (key, value) in sysctls {
        if key.contains("..") || key.contains('/') && key.contains('.') && key.starts_with('/') {
            return Err(step("sysctl")(format!("invalid key {key}")));
        }
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| step("sysctl")(format!("{key}: {e}")))?;
    }
    Ok(())
}

fn setup_console(channel: &Channel, process: &Process) -> Result<()> {
    if !process.terminal().unwrap_or(false) {
        return Ok(());
    }
    let (master, slave) = console::open_pty().map_err(step("console"))?;
    if let Some(size) = process.console_size() {
        console::set_size(&slave, &size).map_err(step("console"))?;
    }
    console::make_controlling(&slave).map_err(step("console"))?;
    channel
        .send_with_fds(&Message::Console, &[master.as_raw_fd()])
        .map_err(chan("console"))
}

fn set_oom_score_adj(process: &Process) -> Result<()> {
    let Some(adj) = process.oom_score_adj() else {
        return Ok(());
    };
    std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(step("oomScoreAdj"))
}

fn join_session_keyring(config: &InitConfig) -> Result<()> {
    if config.no_new_keyring {
        return Ok(());
    }
    let name = CString::new(format!("_ses.{}", config.id)).map_err(step("keyring"))?;
    keyctl_join(&name).or_else(|e| match e {
        // No keyring support (or blocked by a seccomp filter of the caller): runc goes on too.
        nix::Error::ENOSYS | nix::Error::EACCES | nix::Error::EPERM => Ok(()),
        e => Err(step("keyring")(e)),
    })
}

#[allow(unsafe_code)]
fn keyctl_join(name: &CString) -> nix::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, name) reads a NUL-terminated string we own.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    nix::Error::result(r).map(drop)
}

fn load_seccomp(config: &InitConfig) -> Result<()> {
    match &config.seccomp {
        Some(filter) => seccomp::load(filter).map_err(step("seccomp")),
        None => Ok(()),
    }
}

/// Marks every fd above the preserved ones close-on-exec, so none of the runtime's reaches the
/// container (CVE-2024-21626).
fn close_leaked_fds(preserve: u32) -> Result<()> {
    let first = 3 + preserve;
    close_range_cloexec(first).map_err(step("close fds"))?;
    for fd in 3..first {
        clear_cloexec(fd as i32);
    }
    Ok(())
}

/// Makes a preserved fd survive exec (it may not exist: then there is nothing to do).
#[allow(unsafe_code)]
fn clear_cloexec(fd: i32) {
    // SAFETY: F_SETFD on an fd number only changes its flags; a bad fd just fails with EBADF.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
}

#[allow(unsafe_code)]
fn close_range_cloexec(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOEXEC only sets flags on fds; it touches no memory.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    nix::Error::result(r).map(drop)
}

/// Capabilities and user, in runc's order: bounding set, keep caps, switch uid/gid, the other
/// sets.
fn finalize_user(process: &Process) -> Result<()> {
    let caps = CapSets::from_spec(process.capabilities().as_ref()).map_err(step("capabilities"))?;
    caps.apply_bounding().map_err(step("capabilities"))?;
    nix::sys::prctl::set_keepcaps(true).map_err(step("keepcaps"))?;
    user::switch(process.user(), user::setgroups_allowed()).map_err(step("user"))?;
    nix::sys::prctl::set_keepcaps(false).map_err(step("keepcaps"))?;
    caps.apply_process_sets().map_err(step("capabilities"))
}

/// Enters process.cwd (as the container's user) and checks it is inside the root.
fn enter_cwd(process: &Process) -> Result<()> {
    let cwd = process.cwd();
    nix::unistd::chdir(cwd.as_path())
        .map_err(|e| step("cwd")(format!("{}: {e}", cwd.display())))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(step("cwd")(format!(
            "{} is outside the container's root",
            cwd.display()
        ))),
    }
}

#[allow(unsafe_code)]
fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    nix::Error::result(r)
        .map(drop)
        .map_err(step("no_new_privs"))
}

type ExecArgs = (Vec<CString>, Vec<CString>, CString);

/// argv, envp and the resolved executable, checked before `Ready` so a bad command fails create.
fn prepare_exec(process: &Process) -> Result<ExecArgs> {
    let cstr = |s: &str| CString::new(s).map_err(step("args"));
    let args = process.args().clone().unwrap_or_default();
    let argv = args.iter().map(|a| cstr(a)).collect::<Result<Vec<_>>>()?;
    let env = process.env().clone().unwrap_or_default();
    let envp = env.iter().map(|e| cstr(e)).collect::<Result<Vec<_>>>()?;
    let first = args
        .first()
        .ok_or_else(|| step("args")("process.args is empty"))?;
    let path_var = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let exe = look_path(first, path_var).ok_or_else(|| match first.contains('/') {
        true => InitError::NotExecutable(first.clone()),
        false => InitError::NotFound(first.clone()),
    })?;
    Ok((argv, envp, cstr(&exe.to_string_lossy())?))
}

/// Finds `name` as exec would: a name with `/` is taken as is, else searched in `path`.
fn look_path(name: &str, path: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name)).filter(|p| is_executable(p));
    }
    path.split(':')
        .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file()
}

/// Blocks until `start` writes to the exec fifo.
fn wait_for_start(fifo: OwnedFd) -> Result<()> {
    let mut f = File::from(fifo);
    let mut byte = [0u8; 1];
    loop {
        match f.read(&mut byte) {
            Ok(1) => return Ok(()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(step("wait for start")(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_path_searches() {
        assert_eq!(
            look_path("sh", "/nonexistent:/bin"),
            Some(PathBuf::from("/bin/sh"))
        );
        assert_eq!(look_path("/bin/sh", ""), Some(PathBuf::from("/bin/sh")));
        assert_eq!(look_path("/x/y", ""), None);
        assert_eq!(look_path("no-such-binary-here", "/bin"), None);
    }
}
