//! containerd-shim-keel-v2: the shim between a containerd-compatible supervisor and a
//! runc-compatible runtime, one per container, speaking containerd's runtime v2 shim protocol
//! (`containerd.task.v2.Task` over ttrpc).
#![deny(unsafe_code)]

pub mod args;
pub mod bootstrap;
pub mod console;
pub mod container;
pub mod daemon;
pub mod error;
pub mod events;
pub mod logging;
pub mod metrics;
pub mod mounts;
pub mod oom;
pub mod options;
pub mod process;
pub mod reaper;
pub mod runtime;
pub mod service;
pub mod socket;
pub mod stdio;
