//! Our supervisor, `keel-containerd`, run hermetically where a test would run containerd: it
//! is a drop-in for containerd at its socket, so it runs as a [`Containerd`] whose program is
//! keel-containerd ([`Program`]), and everything the containerd fixture does works on it
//! unchanged: `ctr` in a namespace of the test's own, SIGKILL and restart on the same dirs,
//! [`super::ctr_events::CtrEvents`], [`super::keel_shim::ShimHost`] (see [`Supervisor`]).
//!
//! It gets `--root`, `--state` and `--address` (`<temp dir>/containerd.sock`, the shims'
//! ttrpc socket beside it) in its temp dir and `--log-level debug`; its `PATH` has the
//! directories of the binaries cargo built (`target/<profile>`: `containerd-shim-keel-v2`,
//! `keel-runtime`) first, so `io.containerd.keel.v2` resolves to our shim, and
//! `KEEL_SHIM_STATE_DIR=<temp dir>/keel` keeps our shims' sockets and runtime state there.
//! `io.containerd.runc.v2` resolves to Debian's `containerd-shim-runc-v2` further on `PATH`.
//!
//! Dropping it cleans up as the containerd fixture does, on failure too: every task SIGKILLed
//! and deleted and every container deleted (through `ctr`, while the daemon answers), the
//! daemon stopped, leftover shims (argv `-address <our socket>`) killed and their sockets
//! removed, container processes and cgroups `/<namespace>/<id>` (the freezer thawed first),
//! mounts under the temp dir.

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::containerd::{Containerd, Environment, Program};
use super::keel_shim::STATE_DIR_ENV;
use super::Peer;
use crate::binary;

/// A keel-containerd of the test's own: a [`Containerd`] whose daemon is ours.
#[derive(Debug)]
pub struct KeelContainerd {
    ctrd: Containerd,
}

impl KeelContainerd {
    /// Builds keel-containerd, our shim and keel-runtime (if cargo has to), starts the daemon
    /// in a new temp dir and waits until `ctr version` answers; `Unavailable` (with the log
    /// tail) if `ctr` is missing or the daemon does not come up.
    pub fn start() -> Result<Peer<Self>> {
        Self::start_with(Environment::default())
    }

    /// [`KeelContainerd::start`] with `env` added to the daemon's environment (and so to its
    /// shims').
    pub fn start_with(env: Environment) -> Result<Peer<Self>> {
        Ok(match Supervisor::KeelContainerd.start(env)? {
            Peer::Ready(ctrd) => Peer::Ready(Self { ctrd }),
            Peer::Unavailable(why) => Peer::Unavailable(why),
        })
    }

    /// Our shim's base dir (`KEEL_SHIM_STATE_DIR`): its sockets in `s/`, the runtime's state
    /// in `runtime/<namespace>/`.
    pub fn shim_state_dir(&self) -> PathBuf {
        self.ctrd.dir().join(SHIM_STATE_SUBDIR)
    }
}

impl Deref for KeelContainerd {
    type Target = Containerd;

    fn deref(&self) -> &Containerd {
        &self.ctrd
    }
}

impl DerefMut for KeelContainerd {
    fn deref_mut(&mut self) -> &mut Containerd {
        &mut self.ctrd
    }
}

/// `KEEL_SHIM_STATE_DIR`, relative to the daemon's temp dir.
const SHIM_STATE_SUBDIR: &str = "keel";

/// Which daemon serves containerd's API to a test: the real one or ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supervisor {
    /// Debian's containerd 1.6: the reference.
    Containerd,
    /// keel-containerd.
    KeelContainerd,
}

impl Supervisor {
    /// The reference first.
    pub const ALL: [Supervisor; 2] = [Supervisor::Containerd, Supervisor::KeelContainerd];

    /// A short name for transcripts.
    pub fn name(self) -> &'static str {
        match self {
            Supervisor::Containerd => "containerd",
            Supervisor::KeelContainerd => "keel-containerd",
        }
    }

    /// Starts this daemon in a temp dir of its own with `env` added to its environment.
    pub fn start(self, env: Environment) -> Result<Peer<Containerd>> {
        match self {
            Supervisor::Containerd => Containerd::start_with(env),
            Supervisor::KeelContainerd => {
                let program = Program {
                    name: "keel-containerd",
                    binary: binary::keel_containerd()?,
                    flags: true,
                };
                Containerd::start_program(program, keel_environment(env)?)
            }
        }
    }
}

/// `env` with the directories of the binaries cargo built first on `PATH` (after `env`'s own
/// programs), and `KEEL_SHIM_STATE_DIR` in the temp dir unless `env` sets it.
fn keel_environment(mut env: Environment) -> Result<Environment> {
    let mut first: Vec<PathBuf> = Vec::new();
    for bin in [
        binary::keel_shim()?,
        binary::keel_runtime()?,
        binary::keel_containerd()?,
    ] {
        if let Some(dir) = bin.parent().map(Path::to_path_buf) {
            if !first.contains(&dir) {
                first.push(dir);
            }
        }
    }
    first.append(&mut env.path_first);
    env.path_first = first;
    if !env.vars.iter().any(|(name, _)| name == STATE_DIR_ENV)
        && !env.dirs.iter().any(|(name, _)| name == STATE_DIR_ENV)
    {
        env.dirs
            .push((STATE_DIR_ENV.to_string(), PathBuf::from(SHIM_STATE_SUBDIR)));
    }
    Ok(env)
}
