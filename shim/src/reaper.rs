//! The shim is a subreaper: every child (runtime commands, and the container's processes once
//! the runtime that started them exits) is reaped here, by one SIGCHLD handler, and each exit is
//! published to every subscriber. A caller subscribes *before* it spawns, so no exit is lost to
//! the race between a child's spawn and its exit.

use std::io;
use std::os::fd::OwnedFd;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::runtime::Output;

/// A reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    /// The exit code, or 128+signal for a child killed by a signal.
    pub status: i32,
    pub at: SystemTime,
}

type Subscribers = Vec<(u64, mpsc::UnboundedSender<Exit>)>;

/// The one reaper of the shim.
#[derive(Debug, Default)]
pub struct Reaper {
    subscribers: Mutex<Subscribers>,
    next_id: AtomicU64,
}

/// Every exit from the moment of subscribing; unsubscribes on drop.
#[derive(Debug)]
pub struct Subscription {
    reaper: Arc<Reaper>,
    id: u64,
    rx: mpsc::UnboundedReceiver<Exit>,
}

impl Subscription {
    /// The next exit of any child.
    pub async fn next(&mut self) -> Option<Exit> {
        self.rx.recv().await
    }

    /// The exit of `pid` (others are skipped).
    pub async fn wait_for(&mut self, pid: i32) -> Option<Exit> {
        while let Some(exit) = self.rx.recv().await {
            if exit.pid == pid {
                return Some(exit);
            }
        }
        None
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subs) = self.reaper.subscribers.lock() {
            subs.retain(|(id, _)| *id != self.id);
        }
    }
}

impl Reaper {
    /// Makes this process a subreaper and starts reaping on SIGCHLD (inside a tokio runtime).
    pub fn start() -> io::Result<Arc<Self>> {
        nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
        let mut sigchld = signal(SignalKind::child())?;
        let reaper = Arc::new(Self::default());
        let this = reaper.clone();
        tokio::spawn(async move {
            loop {
                this.reap();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// Subscribes to every exit from now on.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.push((id, tx));
        }
        Subscription {
            reaper: self.clone(),
            id,
            rx,
        }
    }

    /// Reaps every child that has exited (signals coalesce, so one SIGCHLD may stand for many).
    fn reap(&self) {
        loop {
            let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, code),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            let exit = Exit {
                pid: pid.as_raw(),
                status,
                at: SystemTime::now(),
            };
            if let Ok(subs) = self.subscribers.lock() {
                for (_, tx) in subs.iter() {
                    let _ = tx.send(exit);
                }
            }
        }
    }

    /// Spawns `cmd`, feeds it `input` (if its stdin is piped), collects its piped stdout and
    /// stderr, and waits for its exit through the reaper.
    pub async fn run(
        self: &Arc<Self>,
        cmd: &mut Command,
        input: Option<&[u8]>,
    ) -> io::Result<Output> {
        let mut exits = self.subscribe();
        let mut child = cmd.spawn()?;
        let pid = child.id() as i32;
        let stdin = child.stdin.take().map(OwnedFd::from);
        let stdout = child.stdout.take().map(OwnedFd::from);
        let stderr = child.stderr.take().map(OwnedFd::from);
        drop(child);
        let feed = async {
            if let (Some(fd), Some(bytes)) = (stdin, input) {
                let mut tx = pipe::Sender::from_owned_fd(fd)?;
                tx.write_all(bytes).await?;
            }
            Ok::<_, io::Error>(())
        };
        let (fed, stdout, stderr, exit) = tokio::join!(
            feed,
            read_all(stdout),
            read_all(stderr),
            exits.wait_for(pid)
        );
        if let Err(e) = fed {
            // The runtime's own answer says more than a broken pipe does.
            tracing::debug!("feeding the runtime's stdin: {e}");
        }
        let exit = exit.ok_or_else(|| io::Error::other("the reaper stopped"))?;
        Ok(Output {
            status: exit.status,
            stdout: stdout?,
            stderr: stderr?,
        })
    }
}

async fn read_all(fd: Option<OwnedFd>) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(fd) = fd {
        pipe::Receiver::from_owned_fd(fd)?
            .read_to_end(&mut buf)
            .await?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// One test: two reapers in one process would steal each other's exits.
    #[test]
    fn runs_commands_and_reports_exit_statuses() {
        runtime().block_on(async {
            let reaper = Reaper::start().unwrap();
            let mut cmd = Command::new("sh");
            cmd.args(["-c", "read x; echo out $x; echo err >&2; exit 3"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let out = reaper.run(&mut cmd, Some(b"in\n")).await.unwrap();
            assert_eq!(out.status, 3);
            assert_eq!(out.stdout, b"out in\n");
            assert_eq!(out.stderr, b"err\n");

            let mut cmd = Command::new("sh");
            cmd.args(["-c", "kill -9 $$"]);
            let out = reaper.run(&mut cmd, None).await.unwrap();
            assert_eq!(out.status, 137, "128 + SIGKILL");
        });
    }
}
