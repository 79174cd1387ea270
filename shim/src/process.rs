//! One process of a container (its init, or an exec): pid, status, exit, and its stdio copying.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::stdio::{Copying, StdioPaths};

/// A process's lifecycle status, as containerd's `containerd.v1.types.Status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

/// How and when a process exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, or 128+signal.
    pub status: u32,
    pub at: SystemTime,
}

#[derive(Debug)]
struct State {
    pid: u32,
    status: Status,
}

/// A process the shim tracks.
#[derive(Debug)]
pub struct Process {
    /// Empty for the container's init.
    pub exec_id: String,
    pub stdio: StdioPaths,
    /// An exec's process spec (JSON), as containerd sent it.
    pub spec: Vec<u8>,
    state: Mutex<State>,
    exit: watch::Sender<Option<ExitInfo>>,
    io: Mutex<Option<Arc<Copying>>>,
}

impl Process {
    /// A process not created yet.
    pub fn new(exec_id: String, stdio: StdioPaths, spec: Vec<u8>) -> Self {
        Self {
            exec_id,
            stdio,
            spec,
            state: Mutex::new(State {
                pid: 0,
                status: Status::Created,
            }),
            exit: watch::Sender::new(None),
            io: Mutex::new(None),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        match self.state.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.with_state(|s| s.pid)
    }

    pub fn status(&self) -> Status {
        self.with_state(|s| s.status)
    }

    /// The process exists (created, not started) with `pid`.
    pub fn set_created(&self, pid: u32) {
        self.with_state(|s| s.pid = pid);
    }

    /// The process runs as `pid`, unless it has already exited.
    pub fn set_running(&self, pid: u32) {
        self.with_state(|s| {
            s.pid = pid;
            if s.status != Status::Stopped {
                s.status = Status::Running;
            }
        });
    }

    /// Paused or resumed (no change once stopped).
    pub fn set_paused(&self, paused: bool) {
        self.with_state(|s| {
            if s.status != Status::Stopped {
                s.status = if paused {
                    Status::Paused
                } else {
                    Status::Running
                };
            }
        });
    }

    /// The process exited; wakes every waiter. Only the first exit counts.
    pub fn set_exited(&self, exit: ExitInfo) -> bool {
        let first = self.exit.send_if_modified(|e| {
            let first = e.is_none();
            if first {
                *e = Some(exit);
            }
            first
        });
        if first {
            self.with_state(|s| s.status = Status::Stopped);
        }
        first
    }

    /// How it exited, if it has.
    pub fn exit(&self) -> Option<ExitInfo> {
        *self.exit.borrow()
    }

    /// Waits for the exit.
    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.exit.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail while we are here.
        let exit = rx.wait_for(Option::is_some).await.ok().and_then(|e| *e);
        exit.unwrap_or(ExitInfo {
            status: 255,
            at: SystemTime::now(),
        })
    }

    pub fn set_io(&self, io: Copying) {
        if let Ok(mut slot) = self.io.lock() {
            *slot = Some(Arc::new(io));
        }
    }

    pub fn io(&self) -> Option<Arc<Copying>> {
        self.io.lock().ok().and_then(|s| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_and_first_exit_wins() {
        let p = Process::new(String::new(), StdioPaths::default(), Vec::new());
        assert_eq!(p.status(), Status::Created);
        p.set_running(7);
        p.set_paused(true);
        assert_eq!(p.status(), Status::Paused);
        let at = SystemTime::now();
        assert!(p.set_exited(ExitInfo { status: 3, at }));
        assert!(!p.set_exited(ExitInfo { status: 9, at }));
        p.set_running(7);
        assert_eq!(p.status(), Status::Stopped);
        assert_eq!(p.exit().map(|e| e.status), Some(3));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(p.wait()).status, 3);
    }
}
