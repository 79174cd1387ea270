//! Exec processes: registered by Exec, run by Start through the runtime's `exec --detach`.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim_protos::events::task::{TaskExecAdded, TaskExecStarted};

use super::{read_pid, Container, Shim};
use crate::console::ConsoleSocket;
use crate::error::{Result, ShimError};
use crate::process::{ExitInfo, Process, Status};
use crate::stdio::{self, Copying, Endpoints, StdioPaths};

impl Shim {
    pub(super) async fn start_exec(&self, c: &Container, exec_id: &str) -> Result<u32> {
        let p = c.process(exec_id)?;
        if p.pid() != 0 || p.exit().is_some() {
            return Err(ShimError::FailedPrecondition(format!(
                "exec {exec_id:?} was already started"
            )));
        }
        if c.init.exit().is_some() {
            return Err(ShimError::FailedPrecondition(format!(
                "container {:?} is not running",
                c.id
            )));
        }
        let spec_file = c.bundle.join(format!("exec-{exec_id}.json"));
        let pid_file = c.bundle.join(format!("exec-{exec_id}.pid"));
        let result = self.run_exec(c, &p, &spec_file, &pid_file).await;
        let _ = fs::remove_file(&spec_file);
        let _ = fs::remove_file(&pid_file);
        let pid = match result {
            Ok(pid) => pid,
            Err(e) => {
                // Never started, never to exit: its waiters are answered now, as the runc shim
                // does, and it can be deleted.
                p.set_exited(ExitInfo {
                    status: 255,
                    at: SystemTime::now(),
                });
                return Err(e);
            }
        };
        p.set_running(pid);
        let mut event = TaskExecStarted::new();
        event.container_id = c.id.clone();
        event.exec_id = exec_id.to_string();
        event.pid = pid;
        self.events.publish(&event);
        Ok(pid)
    }

    async fn run_exec(
        &self,
        c: &Container,
        p: &Process,
        spec_file: &Path,
        pid_file: &Path,
    ) -> Result<u32> {
        fs::write(spec_file, &p.spec)
            .map_err(|e| ShimError::io("writing the exec's process spec", e))?;
        let endpoints =
            Endpoints::open(&p.stdio).map_err(|e| ShimError::io("opening the exec's stdio", e))?;
        let (ends, shim_ends) =
            stdio::pipes(&p.stdio).map_err(|e| ShimError::io("making stdio pipes", e))?;
        let console = self.console_socket(p.stdio.terminal)?;
        let mut cmd = c.runtime.exec(
            &c.id,
            spec_file,
            pid_file,
            console.as_ref().map(ConsoleSocket::path),
        );
        ends.apply(&mut cmd);
        let output = self.run(&mut cmd, &c.runtime).await?;
        c.runtime.check("exec", output)?;
        let pid = read_pid(pid_file)?;
        let master = console
            .map(|s| s.receive())
            .transpose()
            .map_err(|e| ShimError::io("receiving the terminal", e))?;
        let io = Copying::start(endpoints, shim_ends, master)
            .map_err(|e| ShimError::io("copying stdio", e))?;
        p.set_io(io);
        Ok(pid)
    }

    /// Registers an exec (started by a later Start).
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        stdio: StdioPaths,
        spec: Vec<u8>,
    ) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        let c = self.container(id)?;
        validate_exec_id(exec_id)?;
        if serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&spec).is_err() {
            return Err(ShimError::InvalidArgument(format!(
                "exec {exec_id:?}: the process spec is not a JSON object"
            )));
        }
        match (c.init.exit(), c.init.status()) {
            (Some(_), _) => {
                let why = format!("container {id:?} is not running");
                return Err(ShimError::FailedPrecondition(why));
            }
            (None, Status::Paused) => {
                let why = format!("cannot exec in container {id:?}: it is paused");
                return Err(ShimError::FailedPrecondition(why));
            }
            _ => {}
        }
        let mut execs = c
            .execs
            .lock()
            .map_err(|_| ShimError::Unimplemented("exec table poisoned".into()))?;
        if execs.contains_key(exec_id) {
            return Err(ShimError::AlreadyExists(format!(
                "exec {exec_id:?} already exists in container {id:?}"
            )));
        }
        execs.insert(
            exec_id.to_string(),
            Arc::new(Process::new(exec_id.to_string(), stdio, spec)),
        );
        drop(execs);
        let mut event = TaskExecAdded::new();
        event.container_id = id.to_string();
        event.exec_id = exec_id.to_string();
        self.events.publish(&event);
        Ok(())
    }
}

/// containerd's identifier rule: letters, digits, `.`, `_`, `-`, starting with a letter or
/// digit, at most 76 bytes. The exec id becomes part of file names in the bundle.
fn validate_exec_id(exec_id: &str) -> Result<()> {
    let ok = !exec_id.is_empty()
        && exec_id.len() <= 76
        && exec_id
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && exec_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ShimError::InvalidArgument(format!(
            "invalid exec id {exec_id:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_ids_cannot_name_paths() {
        for bad in ["", "../x", "a/b", ".hidden", "x y", &"a".repeat(77)] {
            assert!(validate_exec_id(bad).is_err(), "{bad:?}");
        }
        for good in ["exec1", "a.b_c-d", "0"] {
            assert!(validate_exec_id(good).is_ok(), "{good:?}");
        }
    }
}
