//! Handing a SCMP_ACT_NOTIFY listener to the seccomp agent, as runc does: one connection to the
//! unix stream socket at `linux.seccomp.listenerPath`, carrying the runtime-spec's "container
//! process state" as JSON with the listener attached by SCM_RIGHTS, then closed.
//!
//! The runtime process sends it, in the host's mount namespace (the path is the host's): init
//! passes the listener up over the channel first.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::socket::{send, sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::LinuxSeccomp;
use serde::Serialize;
use serde_json::Value;

use super::{Result, SeccompError};
use crate::state::OCI_VERSION;

/// The name of the listener in the message's `fds` (the spec's `seccompFd`).
const SECCOMP_FD_NAME: &str = "seccompFd";

/// What the agent is told about the process whose listener it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerState {
    /// The process that loaded the filter (the container's init), as a pid of the runtime.
    pub pid: i32,
    /// `linux.seccomp.listenerMetadata`, passed through as the message's `metadata`.
    pub metadata: Option<String>,
    /// The container's OCI state (`state::oci_state_json`), status `creating` during create.
    pub state: Value,
}

/// The runtime-spec's container process state (`specs.ContainerProcessState`).
#[derive(Serialize)]
struct ContainerProcessState<'a> {
    #[serde(rename = "ociVersion")]
    oci_version: &'static str,
    fds: [&'static str; 1],
    pid: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a str>,
    state: &'a Value,
}

/// Sends `listener` and `state` to the agent listening at `listener_path`; an error if the agent
/// is not there or the message does not go through (the spec makes that a runtime error).
pub fn send_listener(listener_path: &Path, listener: &OwnedFd, state: ListenerState) -> Result<()> {
    let fail = |what| {
        move |source| SeccompError::Listener {
            path: listener_path.to_path_buf(),
            what,
            source,
        }
    };
    let message = serde_json::to_vec(&ContainerProcessState {
        oci_version: OCI_VERSION,
        fds: [SECCOMP_FD_NAME],
        pid: state.pid,
        metadata: state.metadata.as_deref(),
        state: &state.state,
    })
    .map_err(|err| fail("encoding the container process state")(err.into()))?;
    let stream = UnixStream::connect(listener_path).map_err(fail("connecting"))?;
    send_with_fd(&stream, &message, listener.as_fd()).map_err(fail("sending"))
    // Dropping the stream closes the connection: one message per connection, as the spec says.
}

/// Sends `listener`, the listener of process `pid` under the `seccomp` profile, to the profile's
/// agent, with `listenerMetadata` and the container's OCI `state`: [`send_listener`] with the
/// profile's fields, for the runtime's create and exec.
pub fn notify_agent(
    seccomp: Option<&LinuxSeccomp>,
    listener: &OwnedFd,
    pid: i32,
    state: Value,
) -> Result<()> {
    let path = seccomp
        .and_then(|profile| profile.listener_path().as_deref())
        .ok_or_else(|| {
            // `compile` refuses NOTIFY rules without a path: a listener cannot come from them.
            SeccompError::Invalid("a notify listener, but no linux.seccomp.listenerPath".into())
        })?;
    let metadata = seccomp.and_then(|profile| profile.listener_metadata().clone());
    let state = ListenerState {
        pid,
        metadata,
        state,
    };
    send_listener(path, listener, state)
}

/// Writes all of `message`, the fd riding on the first sendmsg (the spec allows several
/// sendmsg calls, with the fds on the first only).
fn send_with_fd(stream: &UnixStream, message: &[u8], fd: BorrowedFd) -> io::Result<()> {
    let fds = [fd.as_raw_fd()];
    let rights = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(message)];
    // No SIGPIPE if the agent hung up: the error is enough.
    let flags = MsgFlags::MSG_NOSIGNAL;
    let sent = retry(|| sendmsg::<()>(stream.as_raw_fd(), &iov, &rights, flags, None))?;
    let mut rest = message.get(sent..).unwrap_or_default();
    while !rest.is_empty() {
        match retry(|| send(stream.as_raw_fd(), rest, flags))? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => rest = rest.get(n..).unwrap_or_default(),
        }
    }
    Ok(())
}

/// Runs `op` again while a signal interrupts it.
fn retry(mut op: impl FnMut() -> nix::Result<usize>) -> io::Result<usize> {
    loop {
        match op() {
            Err(Errno::EINTR) => continue,
            result => return result.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{IoSliceMut, Read};
    use std::os::fd::{FromRawFd, RawFd};
    use std::os::unix::net::UnixListener;
    use std::thread;

    use nix::sys::socket::{recvmsg, ControlMessageOwned};
    use nix::sys::stat::fstat;
    use serde_json::json;

    use super::*;

    /// An agent that takes one connection: the whole message and the fds that came with it.
    fn agent(listener: UnixListener) -> thread::JoinHandle<(Value, Vec<OwnedFd>)> {
        thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut first = vec![0u8; 64];
            let mut cmsg = nix::cmsg_space!([RawFd; 4]);
            let (n, fds) = {
                let mut iov = [IoSliceMut::new(&mut first)];
                let msg = recvmsg::<()>(
                    conn.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                )
                .expect("recvmsg");
                let mut fds = Vec::new();
                for c in msg.cmsgs().expect("cmsgs") {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        fds.extend(raw.into_iter().map(take));
                    }
                }
                (msg.bytes, fds)
            };
            first.truncate(n);
            conn.read_to_end(&mut first).expect("read to EOF");
            (serde_json::from_slice(&first).expect("JSON"), fds)
        })
    }

    /// Takes ownership of an fd received by SCM_RIGHTS.
    #[allow(unsafe_code)]
    fn take(fd: RawFd) -> OwnedFd {
        // SAFETY: recvmsg has just installed `fd` in this process; nothing else owns it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    fn same_file(a: &OwnedFd, b: &OwnedFd) -> bool {
        let (a, b) = (fstat(a).expect("fstat"), fstat(b).expect("fstat"));
        (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    }

    #[test]
    fn agent_gets_the_container_process_state_and_the_fd() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let agent = agent(UnixListener::bind(&path).unwrap());
        // Any fd will do as the listener: the agent must receive that same file.
        let fd = OwnedFd::from(std::fs::File::open("/proc/self/status").unwrap());
        // Larger than a socket buffer: the message goes in several sends.
        let big = "x".repeat(600_000);
        let state = json!({"ociVersion": OCI_VERSION, "id": "c1", "status": "creating",
                           "pid": 4242, "bundle": "/b", "annotations": {"big": big}});
        let sent = ListenerState {
            pid: 4242,
            metadata: Some("MKNOD=/dev/null".into()),
            state: state.clone(),
        };
        send_listener(&path, &fd, sent).unwrap();
        let (message, fds) = agent.join().unwrap();
        assert_eq!(
            message,
            json!({"ociVersion": OCI_VERSION, "fds": ["seccompFd"], "pid": 4242,
                   "metadata": "MKNOD=/dev/null", "state": state})
        );
        let [received] = <[OwnedFd; 1]>::try_from(fds).unwrap();
        assert!(same_file(&fd, &received));
    }

    #[test]
    fn metadata_is_left_out_when_unset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let agent = agent(UnixListener::bind(&path).unwrap());
        let fd = OwnedFd::from(std::fs::File::open("/proc/self/status").unwrap());
        let state = ListenerState {
            pid: 1,
            metadata: None,
            state: json!({"id": "c"}),
        };
        send_listener(&path, &fd, state).unwrap();
        let (message, _) = agent.join().unwrap();
        assert!(message.get("metadata").is_none(), "{message}");
    }

    #[test]
    fn agent_of_a_profile_gets_its_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let agent = agent(UnixListener::bind(&path).unwrap());
        let fd = OwnedFd::from(std::fs::File::open("/proc/self/status").unwrap());
        let profile: LinuxSeccomp = serde_json::from_value(json!({
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": path, "listenerMetadata": "m=1",
        }))
        .unwrap();
        notify_agent(Some(&profile), &fd, 7, json!({"id": "c"})).unwrap();
        let (message, fds) = agent.join().unwrap();
        assert_eq!((message["pid"].as_i64(), fds.len()), (Some(7), 1));
        assert_eq!(message["metadata"], "m=1");
        assert_eq!(message["state"], json!({"id": "c"}));

        let no_path = LinuxSeccomp::default();
        for seccomp in [None, Some(&no_path)] {
            let err = notify_agent(seccomp, &fd, 7, json!({})).unwrap_err();
            assert!(matches!(err, SeccompError::Invalid(_)), "{err}");
        }
    }

    #[test]
    fn missing_agent_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nobody.sock");
        let fd = OwnedFd::from(std::fs::File::open("/proc/self/status").unwrap());
        let state = ListenerState {
            pid: 1,
            metadata: None,
            state: json!({}),
        };
        let err = send_listener(&path, &fd, state).unwrap_err();
        assert!(matches!(err, SeccompError::Listener { .. }), "{err}");
        assert!(err.to_string().contains("nobody.sock"), "{err}");
    }
}
