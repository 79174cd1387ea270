//! `linux.seccomp` with SCMP_ACT_NOTIFY, against a seccomp agent run by the test: the runtime
//! sends the listener to `listenerPath` with runc's container process state, the agent's
//! answers (a fake error, or "continue") reach the container's syscalls, the container never
//! holds the listener, and a runtime that cannot reach the agent fails.

use std::collections::BTreeSet;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use keel_integration_tests::config::from_json;
use keel_integration_tests::exec::exit_code;
use keel_integration_tests::{require, require_root, unique_id, Bundle, Config, Runtime};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use oci_spec::runtime::LinuxSeccomp;
use serde_json::{json, Value};
use tempfile::TempDir;

/// The errno the agent answers `mkdir` with: one no real mkdir in /tmp gives.
const FAKE_ERRNO: i32 = libc::EROFS;
/// The opaque string the agent must get back as `metadata`.
const METADATA: &str = "keel-test=notify;MKNOD=/dev/null";

/// Syscalls the profile notifies: the agent fails the first group and lets the second run.
const FAILED: [&str; 2] = ["mkdir", "mkdirat"];
const CONTINUED: [&str; 3] = ["chmod", "fchmodat", "fchmodat2"];

/// Whether this kernel has seccomp user notification.
fn kernel_has_user_notif() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/seccomp/actions_avail")
        .is_ok_and(|actions| actions.split_whitespace().any(|a| a == "user_notif"))
}

/// Allow everything; notify `FAILED` and `CONTINUED` to the agent at `listener`.
fn profile(listener: &Path) -> Result<LinuxSeccomp> {
    from_json(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "listenerPath": listener,
        "listenerMetadata": METADATA,
        "syscalls": [
            {"names": FAILED, "action": "SCMP_ACT_NOTIFY"},
            {"names": CONTINUED, "action": "SCMP_ACT_NOTIFY"},
        ]
    }))
}

/// What the agent does with a listener it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Fail `FAILED` with `FAKE_ERRNO`; let everything else run (SECCOMP_USER_NOTIF_FLAG_CONTINUE).
    Serve,
    /// Close it at once, as an agent that died: notified syscalls then fail with ENOSYS.
    Drop,
}

/// One connection as the agent saw it.
#[derive(Debug)]
struct Received {
    /// The JSON message.
    message: Value,
    /// How many fds came with it.
    fds: usize,
}

/// What the agent saw by the time it stopped.
#[derive(Debug, Default)]
struct Report {
    /// Every connection, in order.
    received: Vec<Received>,
    /// Syscall numbers answered with `FAKE_ERRNO`.
    failed: Vec<i32>,
    /// Syscall numbers let through.
    continued: Vec<i32>,
}

/// A seccomp agent on a thread of the test: listens at `path` until stopped.
struct Agent {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Report>>,
    _dir: TempDir,
}

impl Agent {
    fn start(mode: Mode) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("keel-seccomp-agent-")
            .tempdir()?;
        let path = dir.path().join("agent.sock");
        let socket = UnixListener::bind(&path).context("binding the agent socket")?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || serve(&socket, mode, &flag));
        Ok(Self {
            path,
            stop,
            thread,
            _dir: dir,
        })
    }

    /// Stops the agent (the containers it served are gone) and returns what it saw.
    fn finish(self) -> Result<Report> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the agent thread panicked"))?
    }
}

/// The agent's loop: accepts connections and answers notifications on every listener received,
/// until `stop` (or a minute, so that a broken runtime cannot hang the test).
fn serve(socket: &UnixListener, mode: Mode, stop: &AtomicBool) -> Result<Report> {
    let fail: BTreeSet<i32> = syscall_numbers(&FAILED);
    let mut report = Report::default();
    let mut listeners: Vec<OwnedFd> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut fds = vec![PollFd::new(socket.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            listeners
                .iter()
                .map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)),
        );
        poll(&mut fds, PollTimeout::from(50u16)).context("poll")?;
        let events: Vec<PollFlags> = fds
            .iter()
            .map(|fd| fd.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        let mut gone = Vec::new();
        for (index, revents) in events.iter().enumerate().skip(1) {
            let listener = &listeners[index - 1];
            if revents.contains(PollFlags::POLLIN) {
                answer(listener, &fail, &mut report)?;
            } else if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                // Every process under the filter has exited.
                gone.push(index - 1);
            }
        }
        for index in gone.into_iter().rev() {
            listeners.remove(index);
        }
        if events[0].contains(PollFlags::POLLIN) {
            let (conn, _) = socket.accept().context("accept")?;
            let (received, fds) = receive(conn)?;
            report.received.push(received);
            if mode == Mode::Serve {
                listeners.extend(fds);
            }
        }
    }
    Ok(report)
}

/// The syscall numbers of `names` on this architecture (only the ones it has).
fn syscall_numbers(names: &[&str]) -> BTreeSet<i32> {
    let all: &[(&str, libc::c_long)] = &[
        ("mkdir", libc::SYS_mkdir),
        ("mkdirat", libc::SYS_mkdirat),
        ("chmod", libc::SYS_chmod),
        ("fchmodat", libc::SYS_fchmodat),
    ];
    all.iter()
        .filter(|(name, _)| names.contains(name))
        .filter_map(|(_, nr)| i32::try_from(*nr).ok())
        .collect()
}

/// Reads one container process state: the JSON up to EOF, the fds from the first message.
fn receive(mut conn: UnixStream) -> Result<(Received, Vec<OwnedFd>)> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut bytes = vec![0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(&mut bytes)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .context("recvmsg from the runtime")?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().context("control messages")? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                fds.extend(raw.into_iter().map(take_fd));
            }
        }
        (msg.bytes, fds)
    };
    bytes.truncate(n);
    conn.read_to_end(&mut bytes)
        .context("reading the container process state to EOF")?;
    let message = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "the container process state is not JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    let received = Received {
        message,
        fds: fds.len(),
    };
    Ok((received, fds))
}

/// Takes ownership of an fd received by SCM_RIGHTS.
#[allow(unsafe_code)]
fn take_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: recvmsg has just installed `fd` in this process; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Receives one notification and answers it: `FAKE_ERRNO` for a syscall in `fail`, else
/// "continue".
fn answer(listener: &OwnedFd, fail: &BTreeSet<i32>, report: &mut Report) -> Result<()> {
    let request = match notif_recv(listener) {
        Ok(request) => request,
        // The notifying process died (or its syscall was interrupted) after poll said ready.
        Err(Errno::ENOENT | Errno::EINTR) => return Ok(()),
        Err(errno) => bail!("SECCOMP_IOCTL_NOTIF_RECV: {errno}"),
    };
    let nr = request.data.nr;
    let response = if fail.contains(&nr) {
        report.failed.push(nr);
        libc::seccomp_notif_resp {
            id: request.id,
            val: 0,
            error: -FAKE_ERRNO,
            flags: 0,
        }
    } else {
        report.continued.push(nr);
        libc::seccomp_notif_resp {
            id: request.id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        }
    };
    match notif_send(listener, &response) {
        // The process went away between the two ioctls.
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => bail!("SECCOMP_IOCTL_NOTIF_SEND: {errno}"),
    }
}

/// SECCOMP_IOCTL_NOTIF_RECV: the next notification.
#[allow(unsafe_code)]
fn notif_recv(listener: &OwnedFd) -> nix::Result<libc::seccomp_notif> {
    // SAFETY: seccomp_notif is plain integers; the kernel wants it zeroed and fills it in.
    let mut request: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one seccomp_notif into `request`, which outlives the call.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut request,
        )
    };
    Errno::result(ret).map(|_| request)
}

/// SECCOMP_IOCTL_NOTIF_SEND: the answer to a notification.
#[allow(unsafe_code)]
fn notif_send(listener: &OwnedFd, response: &libc::seccomp_notif_resp) -> nix::Result<()> {
    let response: *const libc::seccomp_notif_resp = response;
    // SAFETY: the ioctl reads one seccomp_notif_resp from `response`, valid for the call.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            response,
        )
    };
    Errno::result(ret).map(drop)
}

/// The outcome of a foreground `run`.
struct Ran {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs `config` in the foreground as container `id` in a fresh bundle; returns the bundle's
/// path (as the runtime resolves it) too.
fn run(rt: &Runtime, config: &Config, id: &str) -> Result<(Ran, PathBuf)> {
    let bundle = Bundle::new(config)?;
    let out = rt.run(bundle.path(), id)?;
    let ran = Ran {
        status: exit_code(&out.status),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    Ok((ran, std::fs::canonicalize(bundle.path())?))
}

/// Checks one container process state against runc's: the spec's fields, one `seccompFd`, the
/// metadata passed through, and the state of container `id`.
fn check_message(received: &Received, id: &str, status: &str) -> Result<()> {
    let message = &received.message;
    let state = &message["state"];
    ensure!(
        received.fds == 1,
        "{} fds came with {message}",
        received.fds
    );
    ensure!(message["fds"] == json!(["seccompFd"]), "fds: {message}");
    let version = message["ociVersion"].as_str().unwrap_or_default();
    ensure!(
        version.starts_with("1."),
        "ociVersion {version:?}: {message}"
    );
    ensure!(message["metadata"] == METADATA, "metadata: {message}");
    ensure!(
        message["pid"].as_i64().is_some_and(|pid| pid > 0),
        "pid: {message}"
    );
    ensure!(state["id"] == id, "state.id: {message}");
    ensure!(state["status"] == status, "state.status: {message}");
    ensure!(
        state["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "state.ociVersion: {message}"
    );
    Ok(())
}

/// Inside: mkdir gets the agent's error, chmod runs (the agent let it continue), and no fd of the
/// process is a seccomp listener.
const SCRIPT: &str = "mkdir /tmp/d; echo mkdir=$?; [ -d /tmp/d ] || echo no-dir; \
                      touch /tmp/f && chmod 600 /tmp/f && stat -c %a /tmp/f; \
                      ls -l /proc/self/fd/ | grep -c seccomp || true";

fn agent_answers_the_container(no_new_privileges: bool) -> Result<()> {
    let agent = Agent::start(Mode::Serve)?;
    let config = Config::new()
        .no_new_privileges(no_new_privileges)
        .seccomp(profile(&agent.path)?)
        .sh(SCRIPT);
    let rt = Runtime::keel()?;
    let id = unique_id("notify");
    let (ran, bundle) = run(&rt, &config, &id)?;
    let report = agent.finish()?;

    let [received] = report.received.as_slice() else {
        bail!(
            "the agent got {} connections, not 1: {report:?}\nstderr: {}",
            report.received.len(),
            ran.stderr
        );
    };
    check_message(received, &id, "creating")?;
    let state = &received.message["state"];
    ensure!(
        state["pid"] == received.message["pid"],
        "the listener's process is the container's init: {}",
        received.message
    );
    ensure!(
        state["bundle"].as_str().map(PathBuf::from) == Some(bundle.clone()),
        "state.bundle is not {}: {}",
        bundle.display(),
        received.message
    );

    ensure!(
        ran.stdout == "mkdir=1\nno-dir\n600\n0\n",
        "stdout: {:?}\nstderr: {}\nagent: {report:?}",
        ran.stdout,
        ran.stderr
    );
    ensure!(
        ran.stderr.contains("Read-only file system"),
        "mkdir did not fail with the agent's EROFS: {}",
        ran.stderr
    );
    ensure!(ran.status == 0, "status {}: {}", ran.status, ran.stderr);
    ensure!(!report.failed.is_empty(), "mkdir was never notified");
    ensure!(!report.continued.is_empty(), "chmod was never notified");
    Ok(())
}

#[test]
fn agent_answers_notified_syscalls() -> Result<()> {
    require_root!();
    require!(
        kernel_has_user_notif(),
        "the kernel has no seccomp user notification"
    );
    agent_answers_the_container(true)
}

/// Without no_new_privs the filter is loaded earlier (before capabilities are dropped): the
/// listener must be handed over from there too.
#[test]
fn agent_answers_without_no_new_privileges() -> Result<()> {
    require_root!();
    require!(
        kernel_has_user_notif(),
        "the kernel has no seccomp user notification"
    );
    agent_answers_the_container(false)
}

/// An agent that drops the listener leaves no one to answer: the kernel fails notified syscalls
/// with ENOSYS, so long as no runtime process kept a copy of the listener (else they would hang).
#[test]
fn notified_syscall_fails_with_enosys_when_the_agent_drops_the_listener() -> Result<()> {
    require_root!();
    require!(
        kernel_has_user_notif(),
        "the kernel has no seccomp user notification"
    );
    let agent = Agent::start(Mode::Drop)?;
    let config = Config::new()
        .seccomp(profile(&agent.path)?)
        .sh("mkdir /tmp/d; echo mkdir=$?");
    let rt = Runtime::keel()?;
    let (ran, _) = run(&rt, &config, &unique_id("notify-drop"))?;
    let report = agent.finish()?;
    ensure!(
        report.received.len() == 1,
        "the agent got {} connections: {}",
        report.received.len(),
        ran.stderr
    );
    ensure!(ran.stdout == "mkdir=1\n", "stdout: {:?}", ran.stdout);
    ensure!(
        ran.stderr.contains("Function not implemented"),
        "not ENOSYS: {}",
        ran.stderr
    );
    Ok(())
}

/// `exec` hands the new process's listener to the agent too, as runc does: the container is
/// `running`, and the process is not its init.
#[test]
fn exec_process_listener_goes_to_the_agent() -> Result<()> {
    require_root!();
    require!(
        kernel_has_user_notif(),
        "the kernel has no seccomp user notification"
    );
    let agent = Agent::start(Mode::Serve)?;
    let config = Config::new()
        .seccomp(profile(&agent.path)?)
        .args(&["sleep", "60"]);
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let id = unique_id("notify-exec");
    let out = rt.run_detached(bundle.path(), &id)?;
    ensure!(
        out.status.success(),
        "run -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = rt.exec(&["exec", &id, "sh", "-c", "mkdir /tmp/e; echo mkdir=$?"])?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = rt.kill(&id, "KILL");
    let report = agent.finish()?;

    let [init, exec] = report.received.as_slice() else {
        bail!(
            "the agent got {} connections, not 2 (create, exec): {stderr}",
            report.received.len()
        );
    };
    check_message(init, &id, "creating")?;
    check_message(exec, &id, "running")?;
    ensure!(
        exec.message["pid"] != exec.message["state"]["pid"],
        "the exec'd process is not the container's init: {}",
        exec.message
    );
    ensure!(
        stdout == "mkdir=1\n",
        "stdout: {stdout:?}\nstderr: {stderr}"
    );
    ensure!(
        stderr.contains("Read-only file system"),
        "not the agent's EROFS: {stderr}"
    );
    Ok(())
}

/// No agent at `listenerPath`: the spec makes that an error, and create cleans up.
#[test]
fn unreachable_agent_fails_the_container() -> Result<()> {
    require_root!();
    require!(
        kernel_has_user_notif(),
        "the kernel has no seccomp user notification"
    );
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("no-agent.sock");
    let config = Config::new().seccomp(profile(&missing)?).args(&["true"]);
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let id = unique_id("notify-missing");
    let out = rt.create(bundle.path(), &id)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "create succeeded without an agent");
    ensure!(
        stderr.contains("no-agent.sock"),
        "the error does not name the listener path: {stderr}"
    );
    ensure!(
        rt.state(&id)?.status.code() != Some(0),
        "the failed container is still there"
    );
    Ok(())
}

/// runc's refusals, before anything is started.
#[test]
fn notify_where_init_needs_the_syscall_is_refused() -> Result<()> {
    require_root!();
    let listener = "/run/keel-no-agent.sock";
    let cases = [
        (
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": listener}),
            "SCMP_ACT_NOTIFY cannot be used as default action",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": listener,
                   "syscalls": [{"names": ["write"], "action": "SCMP_ACT_NOTIFY"}]}),
            "SCMP_ACT_NOTIFY cannot be used for the write syscall",
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
            "listenerPath",
        ),
    ];
    let rt = Runtime::keel()?;
    for (seccomp, message) in cases {
        let config = Config::new()
            .seccomp(from_json(seccomp.clone())?)
            .args(&["true"]);
        let bundle = Bundle::new(&config)?;
        let out = rt.create(bundle.path(), &unique_id("notify-refused"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "{seccomp}: create succeeded");
        ensure!(stderr.contains(message), "{seccomp}: {stderr}");
    }
    Ok(())
}
