//! The receiving end of `create --console-socket`: a unix socket on which the runtime sends the
//! container's pty master by SCM_RIGHTS.
#![allow(unsafe_code)]

use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tempfile::TempDir;

/// A listening console socket in its own temp dir.
#[derive(Debug)]
pub struct ConsoleSocket {
    _dir: TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Binds `<tempdir>/console.sock`.
    pub fn bind() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("keel-console-")
            .tempdir()
            .context("console temp dir")?;
        let path = dir.path().join("console.sock");
        let listener =
            UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .context("making the console socket non-blocking")?;
        Ok(Self {
            _dir: dir,
            path,
            listener,
        })
    }

    /// The socket path to pass as `--console-socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and receives the pty master it sends.
    pub fn receive_master(&self, timeout: Duration) -> Result<OwnedFd> {
        let stream = self.accept(timeout)?;
        stream
            .set_nonblocking(false)
            .context("console connection blocking mode")?;
        stream
            .set_read_timeout(Some(timeout))
            .context("console connection timeout")?;
        receive_fd(&stream)
    }

    fn accept(&self, timeout: Duration) -> Result<UnixStream> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => return Ok(stream),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(e).context("no connection on the console socket"),
            }
        }
    }
}

fn receive_fd(stream: &UnixStream) -> Result<OwnedFd> {
    let mut buf = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("recvmsg on the console socket")?;
    for cmsg in msg.cmsgs().context("reading control messages")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: SCM_RIGHTS just installed `fd` in this process; nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    bail!("the console socket message carried no file descriptor")
}

/// Reads from a pty master until the slave side closes (EIO) or `timeout` passes.
pub fn read_until_closed(master: &OwnedFd, timeout: Duration) -> Result<String> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e).context("poll on the pty master"),
        }
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(Errno::EIO) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(e) => return Err(e).context("reading the pty master"),
        }
    }
    Ok(String::from_utf8_lossy(&out).replace('\r', ""))
}
