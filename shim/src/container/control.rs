//! What is done to a running container or one of its processes: signals, terminal size,
//! stdin, pids, pause and resume, stats, resource updates.

use containerd_shim_protos::events::task::{TaskPaused, TaskResumed};
use containerd_shim_protos::protobuf::well_known_types::any::Any;

use super::Shim;
use crate::error::{Result, ShimError};
use crate::process::Status;
use crate::{metrics, runtime};

impl Shim {
    /// Signals the init (through the runtime; `all`: every process of the container) or an exec.
    pub async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let c = self.container(id)?;
        let p = c.process(exec_id)?;
        if p.exit().is_some() {
            return Err(ShimError::NotFound(format!(
                "process {} already finished",
                p.pid()
            )));
        }
        if exec_id.is_empty() {
            let output = self
                .run(&mut c.runtime.kill(id, signal, all), &c.runtime)
                .await?;
            return c.runtime.check("kill", output).map(drop).map_err(|e| {
                // The init may have exited between the check above and the runtime's.
                if c.init.exit().is_some() {
                    ShimError::NotFound(format!("process {} already finished", p.pid()))
                } else {
                    e.into()
                }
            });
        }
        if p.pid() == 0 {
            return Err(ShimError::FailedPrecondition(format!(
                "exec {exec_id:?} is not started"
            )));
        }
        let sig = i32::try_from(signal)
            .ok()
            .and_then(|s| nix::sys::signal::Signal::try_from(s).ok())
            .ok_or_else(|| ShimError::InvalidArgument(format!("invalid signal {signal}")))?;
        let pid = nix::unistd::Pid::from_raw(p.pid() as i32);
        nix::sys::signal::kill(pid, sig).map_err(|e| match e {
            nix::errno::Errno::ESRCH => {
                ShimError::NotFound(format!("process {pid} already finished"))
            }
            e => ShimError::io(format!("signalling process {pid}"), e.into()),
        })
    }

    /// Resizes the terminal of the init or an exec (no-op without one).
    pub fn resize_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let p = self.container(id)?.process(exec_id)?;
        match p.io() {
            Some(io) => match io.master() {
                Some(m) => m
                    .resize(width, height)
                    .map_err(|e| ShimError::io("resizing the terminal", e)),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// Closes the stdin of the init or an exec.
    pub fn close_io(&self, id: &str, exec_id: &str, stdin: bool) -> Result<()> {
        let p = self.container(id)?.process(exec_id)?;
        if let (true, Some(io)) = (stdin, p.io()) {
            io.close_stdin();
        }
        Ok(())
    }

    /// The container's pids, with the exec id of those that are execs.
    pub async fn pids(&self, id: &str) -> Result<Vec<(u32, Option<String>)>> {
        let c = self.container(id)?;
        let output = self.run(&mut c.runtime.ps(id), &c.runtime).await?;
        let pids = runtime::parse_pids(&c.runtime.check("ps", output)?.stdout)?;
        Ok(pids
            .into_iter()
            .map(|pid| {
                let exec = c
                    .by_pid(pid)
                    .map(|p| p.exec_id.clone())
                    .filter(|e| !e.is_empty());
                (pid, exec)
            })
            .collect())
    }

    /// Pauses (`true`) or resumes the container.
    pub async fn pause(&self, id: &str, pause: bool) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        let c = self.container(id)?;
        let (from, op) = if pause {
            (Status::Running, "pause")
        } else {
            (Status::Paused, "resume")
        };
        if c.init.status() != from {
            return Err(ShimError::FailedPrecondition(format!(
                "cannot {op} container {id:?}: it is {:?}",
                c.init.status()
            )));
        }
        let mut cmd = if pause {
            c.runtime.pause(id)
        } else {
            c.runtime.resume(id)
        };
        let output = self.run(&mut cmd, &c.runtime).await?;
        c.runtime.check(op, output)?;
        c.init.set_paused(pause);
        if pause {
            let mut event = TaskPaused::new();
            event.container_id = id.to_string();
            self.events.publish(&event);
        } else {
            let mut event = TaskResumed::new();
            event.container_id = id.to_string();
            self.events.publish(&event);
        }
        Ok(())
    }

    /// The container's cgroup metrics.
    pub async fn stats(&self, id: &str) -> Result<Any> {
        let c = self.container(id)?;
        let output = self.run(&mut c.runtime.stats(id), &c.runtime).await?;
        let output = c.runtime.check("events", output)?;
        metrics::from_runtime_stats(&output.stdout)
            .map_err(|e| ShimError::io("reading the runtime's stats", std::io::Error::other(e)))
    }

    /// Updates the container's resources (`LinuxResources` JSON).
    pub async fn update(&self, id: &str, resources: &[u8]) -> Result<()> {
        let c = self.container(id)?;
        if serde_json::from_slice::<serde_json::Value>(resources).is_err() {
            return Err(ShimError::InvalidArgument(
                "resources are not JSON LinuxResources".into(),
            ));
        }
        let output = self
            .reaper
            .run(&mut c.runtime.update(id), Some(resources))
            .await
            .map_err(|e| ShimError::io(format!("running {}", c.runtime.binary()), e))?;
        c.runtime
            .check("update", output)
            .map(drop)
            .map_err(Into::into)
    }
}
