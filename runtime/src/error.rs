//! The crate's error: one variant per module error, so the binary prints one clear line and
//! exits 1 (runc's status for every failure).

use crate::{
    capabilities::CapabilityError, cgroups::CgroupError, channel::ChannelError,
    clone_binary::CloneBinaryError, config::ConfigError, console::ConsoleError,
    exec_process::ExecProcessError, hooks::HookError, init::InitError, namespaces::NamespaceError,
    rootfs::RootfsError, seccomp::SeccompError, signal::SignalError, state::StateError,
};

/// Any failure of a runtime operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    CloneBinary(#[from] CloneBinaryError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error(transparent)]
    ExecProcess(#[from] ExecProcessError),
    /// The container's init process reported a failure while it was being set up.
    #[error("container init: {0}")]
    ContainerInit(String),
    /// An operation was asked of a container in a state that does not allow it.
    #[error("container {id} is {status}: {what}")]
    WrongState {
        id: String,
        status: String,
        what: String,
    },
    /// A system call failed outside any module's own concern.
    #[error("{what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an OS error with what was being done.
    pub fn sys(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Sys {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, Error>;
