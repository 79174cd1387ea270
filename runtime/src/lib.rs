//! keel-runtime: an OCI runtime with runc's command line.
//!
//! The binary (`main.rs`) parses runc's flags with [`cli`] and calls [`commands`]. A container is
//! made by a parent (`create`) and an init process (`init`) that talk over [`channel`]; the init
//! sequence is in [`init`], each kernel concern in its own module.

pub mod capabilities;
pub mod cgroups;
pub mod channel;
pub mod cli;
pub mod clone_binary;
pub mod commands;
pub mod config;
pub mod console;
pub mod devices;
pub mod error;
pub mod exec_process;
pub mod foreground;
#[cfg(test)]
pub(crate) mod forked;
pub mod hooks;
pub mod init;
pub mod launch;
pub mod logging;
pub mod memory_policy;
pub mod mounts;
pub mod namespaces;
pub mod network;
pub mod personality;
pub mod resources;
pub mod rlimits;
pub mod rootfs;
pub mod safe_path;
pub mod scheduling;
pub mod seccomp;
pub mod signal;
pub mod spec_default;
pub mod state;
pub mod sysctl;
pub mod user;

pub use error::{Error, Result};
