//! Typed messages between the runtime (parent) and the container's init process over a unix
//! stream socketpair: each message is a length-prefixed JSON frame, with fds passed by
//! SCM_RIGHTS on the frame's header.

use std::io::{IoSlice, IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::seccomp::Filter;

/// The environment variable that tells `keel-runtime init` which fd is its channel.
pub const INIT_FD_ENV: &str = "_KEEL_INIT_FD";

/// Frames larger than this are refused: a config with a big seccomp profile is well under it.
const MAX_FRAME: usize = 16 << 20;

/// Errors on the parent–init channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("init channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("init channel: {0}")]
    Sys(#[from] nix::Error),
    #[error("init channel: bad message: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("init channel: {INIT_FD_ENV} is not set or not an fd: run `keel-runtime create`, not `init`")]
    NoFd,
    #[error("init channel: frame of {0} bytes is too large")]
    TooLarge(usize),
    #[error("init channel: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error("init channel: closed by the other side")]
    Closed,
}

pub type Result<T> = std::result::Result<T, ChannelError>;

/// What the parent tells init how to build the container.
#[derive(Debug, Serialize, Deserialize)]
pub struct InitConfig {
    pub id: String,
    pub spec: Spec,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub seccomp: Option<Filter>,
    /// Whether prestart/createRuntime hooks exist, so init stops for the parent to run them.
    pub runtime_hooks: bool,
    /// cgroup v1 `tasks` files init writes "0" to, moving itself into the container's cgroup.
    pub cgroup_task_files: Vec<PathBuf>,
    /// `mounts[]` indices of the idmapped trees sent with this message, in the order of the fds
    /// (before the exec fifo's, which is last).
    pub idmapped_mounts: Vec<usize>,
}

/// What the parent tells init to run inside an existing container.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExecConfig {
    pub id: String,
    pub process: oci_spec::runtime::Process,
    /// The container's namespaces, each with the path of its init's (`/proc/<pid>/ns/<type>`).
    pub namespaces: Vec<oci_spec::runtime::LinuxNamespace>,
    pub seccomp: Option<Filter>,
    pub preserve_fds: u32,
    /// cgroup v1 `tasks` files to join (see `InitConfig::cgroup_task_files`).
    pub cgroup_task_files: Vec<PathBuf>,
    /// The container's `linux.personality`, applied to the new process too.
    pub personality: Option<oci_spec::runtime::LinuxPersonality>,
    /// The container's `linux.memoryPolicy`, applied to the new process too.
    pub memory_policy: Option<oci_spec::runtime::LinuxMemoryPolicy>,
}

/// Every message, both directions.
#[derive(Debug, Serialize, Deserialize)]
pub enum Message {
    /// parent → init: the container to build; carries the exec fifo fd.
    Config(Box<InitConfig>),
    /// parent → init: a process to run in an existing container.
    Exec(Box<ExecConfig>),
    /// init → parent: a new user namespace exists; write the id maps of the sender's pid.
    MapIds,
    /// parent → init: the id maps are written.
    IdsMapped,
    /// init (first stage) → parent: the container's init process, as a pid of the parent's ns.
    InitPid(i32),
    /// parent → init: the container's pid as seen by the runtime (for hooks' state).
    HostPid(i32),
    /// init → parent: mounts are done; run prestart and createRuntime hooks.
    RunHooks,
    /// parent → init: the hooks succeeded.
    HooksDone,
    /// init → parent: the pty master of process.terminal, carried as an fd.
    Console,
    /// init → parent: the listener of a SCMP_ACT_NOTIFY seccomp filter, carried as an fd.
    SeccompListener,
    /// init → parent: set up; waiting on the exec fifo for `start`.
    Ready,
    /// init → parent: setup failed; the line to show the user.
    Error(String),
}

impl Message {
    fn name(&self) -> String {
        let s = format!("{self:?}");
        s.split(['(', ' ']).next().unwrap_or_default().to_string()
    }
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    sock: UnixStream,
}

/// A connected pair: the parent's end and the end to hand to init.
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = UnixStream::pair()?;
    Ok((Channel { sock: a }, Channel { sock: b }))
}

impl Channel {
    /// The init process's end, from the fd named in `INIT_FD_ENV`.
    pub fn from_env() -> Result<Self> {
        let fd: RawFd = std::env::var(INIT_FD_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or(ChannelError::NoFd)?;
        if fd < 3 || std::fs::read_link(format!("/proc/self/fd/{fd}")).is_err() {
            return Err(ChannelError::NoFd);
        }
        std::env::remove_var(INIT_FD_ENV);
        // The fd was dup'ed for us by the parent and nothing else in this process owns it.
        let owned = take_fd(fd);
        set_cloexec(&owned)?;
        Ok(Channel {
            sock: UnixStream::from(owned),
        })
    }

    /// The raw fd, for passing to a child.
    pub fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Sends a message with fds attached.
    pub fn send_with_fds(&self, msg: &Message, fds: &[RawFd]) -> Result<()> {
        let body = serde_json::to_vec(msg)?;
        let len = u32::try_from(body.len()).map_err(|_| ChannelError::TooLarge(body.len()))?;
        let header = len.to_le_bytes();
        let cmsgs: Vec<ControlMessage> = if fds.is_empty() {
            Vec::new()
        } else {
            vec![ControlMessage::ScmRights(fds)]
        };
        let iov = [IoSlice::new(&header), IoSlice::new(&body)];
        let mut sent = sendmsg::<()>(self.sock.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)?;
        let total = header.len() + body.len();
        // A stream socket may take a large frame in pieces; the fds went with the first.
        while sent < total {
            let rest = if sent < 4 {
                [&header[sent..], &body[..]].concat()
            } else {
                body[sent - 4..].to_vec()
            };
            sent += nix::unistd::write(&self.sock, &rest)?;
        }
        Ok(())
    }

    /// Sends a message.
    pub fn send(&self, msg: &Message) -> Result<()> {
        self.send_with_fds(msg, &[])
    }

    /// Receives the next message and the fds that came with it.
    pub fn recv_with_fds(&self) -> Result<(Message, Vec<OwnedFd>)> {
        let mut header = [0u8; 4];
        // SCM_MAX_FD: fds beyond the control buffer would be closed by the kernel, unseen.
        let mut cmsg = nix::cmsg_space!([RawFd; 253]);
        let (n, fds) = {
            let mut iov = [IoSliceMut::new(&mut header)];
            let msg = recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )?;
            let mut fds = Vec::new();
            for c in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    fds.extend(raw.into_iter().map(take_fd));
                }
            }
            (msg.bytes, fds)
        };
        if n == 0 {
            return Err(ChannelError::Closed);
        }
        if n < 4 {
            (&self.sock).read_exact(&mut header[n..])?;
        }
        let len = u32::from_le_bytes(header) as usize;
        if len > MAX_FRAME {
            return Err(ChannelError::TooLarge(len));
        }
        let mut body = vec![0u8; len];
        (&self.sock).read_exact(&mut body)?;
        Ok((serde_json::from_slice(&body)?, fds))
    }

    /// Receives the next message, dropping any fds.
    pub fn recv(&self) -> Result<Message> {
        Ok(self.recv_with_fds()?.0)
    }

    /// Waits up to `timeout` for the other side to close its end, which init's process does by
    /// exec'ing (the end is close-on-exec); a message that comes first is returned. `None` once
    /// closed or when the time is up.
    pub fn wait_closed(&self, timeout: std::time::Duration) -> Result<Option<Message>> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        let limit = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, limit) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        match self.recv() {
            Err(ChannelError::Closed) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Receives a message that must be `expected` (compared by variant name).
    pub fn expect(&self, expected: &'static str) -> Result<Message> {
        let msg = self.recv()?;
        match &msg {
            Message::Error(e) => Err(ChannelError::Unexpected {
                expected,
                got: e.clone(),
            }),
            m if m.name() == expected => Ok(msg),
            m => Err(ChannelError::Unexpected {
                expected,
                got: m.name(),
            }),
        }
    }
}

fn set_cloexec(fd: &OwnedFd) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(())
}

/// Takes ownership of an fd received from the kernel (SCM_RIGHTS) or inherited from the parent.
#[allow(unsafe_code)]
fn take_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the fd was just handed to this process (by recvmsg or inheritance) and nothing else
    // in the process holds it, so this is its only owner.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn frames_and_fds() {
        let (a, b) = pair().expect("pair");
        // The big frame exceeds the socket buffer: the sender must run beside the receiver.
        let sender = std::thread::spawn(move || {
            let file = std::fs::File::open("/proc/self/status").expect("open");
            a.send_with_fds(&Message::InitPid(42), &[file.as_raw_fd()])
                .expect("send");
            a.send(&Message::Error("x".repeat(300_000)))
                .expect("send big");
        });
        let (m, fds) = b.recv_with_fds().expect("recv");
        assert!(matches!(m, Message::InitPid(42)));
        assert_eq!(fds.len(), 1);
        assert!(matches!(b.recv(), Ok(Message::Error(s)) if s.len() == 300_000));
        sender.join().expect("sender");
        assert!(matches!(b.recv(), Err(ChannelError::Closed)));
    }

    #[test]
    fn expect_names() {
        let (a, b) = pair().expect("pair");
        a.send(&Message::Ready).expect("send");
        assert!(b.expect("Ready").is_ok());
        a.send(&Message::Error("boom".into())).expect("send");
        let err = b.expect("Ready").expect_err("error message");
        assert!(err.to_string().contains("boom"));
    }
}
