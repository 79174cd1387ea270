//! The steps that apply `process` to the calling process, shared by the container's init and by
//! `exec`: console, oom_score_adj, rlimits, keyring, seccomp (early without no_new_privs),
//! closing the runtime's fds, capabilities and user, cwd, umask, no_new_privs; then exec.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxMemoryPolicy, LinuxPersonality, Process};

use super::{chan, step, InitError, Result};
use crate::capabilities::CapSets;
use crate::channel::{Channel, Message};
use crate::seccomp::Filter;
use crate::{console, memory_policy, personality, rlimits, scheduling, seccomp, user};

/// What the process steps need.
pub(super) struct ProcessSetup<'a> {
    pub process: &'a Process,
    pub seccomp: Option<&'a Filter>,
    pub preserve_fds: u32,
    /// Join a new session keyring named after this container id.
    pub keyring: Option<&'a str>,
    /// `linux.personality` (the container's, also for `exec`).
    pub personality: Option<&'a LinuxPersonality>,
    /// `linux.memoryPolicy` (the container's, also for `exec`).
    pub memory_policy: Option<&'a LinuxMemoryPolicy>,
}

/// The checked arguments of the final execve.
pub(super) struct Prepared {
    argv: Vec<CString>,
    envp: Vec<CString>,
    exe: CString,
}

/// Every step up to exec, in runc's order; the command is resolved before the caller reports
/// ready, so a missing executable fails create (or exec), not start.
pub(super) fn prepare(channel: &Channel, setup: &ProcessSetup) -> Result<Prepared> {
    let process = setup.process;
    setup_console(channel, process)?;
    set_oom_score_adj(process)?;
    rlimits::apply(process.rlimits().as_deref().unwrap_or_default()).map_err(step("rlimits"))?;
    apply_scheduling(setup)?;
    join_session_keyring(setup.keyring)?;
    // Before any seccomp filter: a profile need not allow close_range.
    close_leaked_fds(setup.preserve_fds)?;
    if !no_new_privs(process) {
        // Without no_new_privs loading a filter needs CAP_SYS_ADMIN: before dropping caps.
        load_seccomp(channel, setup.seccomp)?;
    }
    finalize_user(process)?;
    enter_cwd(process)?;
    let umask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(umask));
    if no_new_privs(process) {
        set_no_new_privs()?;
        // A listener must reach the parent while it still listens, before `Ready`.
        if has_listener(setup) {
            load_seccomp(channel, setup.seccomp)?;
        }
    }
    prepare_exec(process)
}

/// Loads the seccomp filter as late as possible (with no_new_privs; one with a listener was
/// loaded in `prepare`) and execs.
pub(super) fn exec(setup: &ProcessSetup, prepared: Prepared) -> Result<std::convert::Infallible> {
    if no_new_privs(setup.process) && !has_listener(setup) {
        if let Some(filter) = setup.seccomp {
            seccomp::load(filter).map_err(step("seccomp"))?;
        }
    }
    nix::unistd::execve(&prepared.exe, &prepared.argv, &prepared.envp).map_err(step("exec"))
}

/// I/O priority, scheduler, memory policy and personality: while the process still has its
/// capabilities (real-time classes, negative nice) and before any seccomp filter.
fn apply_scheduling(setup: &ProcessSetup) -> Result<()> {
    scheduling::apply(setup.process).map_err(step("scheduling"))?;
    if let Some(policy) = setup.memory_policy {
        memory_policy::apply(policy).map_err(step("memory policy"))?;
    }
    if let Some(persona) = setup.personality {
        personality::apply(persona).map_err(step("personality"))?;
    }
    Ok(())
}

fn no_new_privs(process: &Process) -> bool {
    process.no_new_privileges().unwrap_or(false)
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

fn join_session_keyring(id: Option<&str>) -> Result<()> {
    let Some(id) = id else {
        return Ok(());
    };
    let name = CString::new(format!("_ses.{id}")).map_err(step("keyring"))?;
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

/// Whether the filter has SCMP_ACT_NOTIFY rules, whose listener goes to the parent.
fn has_listener(setup: &ProcessSetup) -> bool {
    setup.seccomp.is_some_and(|filter| filter.notify)
}

/// Loads the filter and hands its listener, if any, to the parent at once: until the agent has
/// it, a notified syscall of this process would wait forever. Only sendmsg runs in between
/// (`seccomp::compile` refuses to notify it).
fn load_seccomp(channel: &Channel, filter: Option<&Filter>) -> Result<()> {
    let Some(filter) = filter else {
        return Ok(());
    };
    if let Some(listener) = seccomp::load(filter).map_err(step("seccomp"))? {
        // The listener is closed right after: the container must not hold it (close-on-exec
        // would do, but a preserved fd number could clear that).
        channel
            .send_with_fds(&Message::SeccompListener, &[listener.as_raw_fd()])
            .map_err(chan("seccomp listener"))?;
    }
    Ok(())
}

/// Marks every fd above the preserved ones close-on-exec, so none of the runtime's reaches the
/// container (CVE-2024-21626).
fn close_leaked_fds(preserve: u32) -> Result<()> {
    let first = preserve.saturating_add(3);
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

/// argv, envp and the resolved executable, checked before `Ready` so a bad command fails create.
fn prepare_exec(process: &Process) -> Result<Prepared> {
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
        true if Path::new(first).exists() => InitError::NotExecutable(first.clone()),
        true => InitError::NoSuchFile(first.clone()),
        false => InitError::NotFound(first.clone()),
    })?;
    let exe = cstr(&exe.to_string_lossy())?;
    Ok(Prepared { argv, envp, exe })
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
