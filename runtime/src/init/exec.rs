//! Second stage of `exec`: a new process in a running container. It has already joined the
//! container's namespaces and cgroup (first stage); only `process` is applied here.

use super::process::{self, ProcessSetup};
use super::{chan, step, Result};
use crate::channel::{Channel, ExecConfig, Message};

/// Applies the process and execs it.
pub(super) fn run(channel: &Channel, config: &ExecConfig) -> Result<std::convert::Infallible> {
    nix::unistd::setsid().map_err(step("setsid"))?;
    let setup = ProcessSetup {
        process: &config.process,
        seccomp: config.seccomp.as_ref(),
        preserve_fds: config.preserve_fds,
        keyring: None,
        personality: config.personality.as_ref(),
        memory_policy: config.memory_policy.as_ref(),
    };
    let prepared = process::prepare(channel, &setup)?;
    channel.send(&Message::Ready).map_err(chan("ready"))?;
    process::exec(&setup, prepared)
}
