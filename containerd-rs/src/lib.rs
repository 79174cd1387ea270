//! keel-containerd: the supervisor. It serves containerd's own gRPC API (so `ctr` and any
//! containerd client drive it unchanged) and runs each task through a runtime v2 shim.
#![deny(unsafe_code)]

pub mod config;
pub mod containers;
pub mod content;
pub mod daemon;
pub mod diff;
pub mod events;
pub mod filters;
pub mod gc;
pub mod grpc;
pub mod identifiers;
pub mod images;
pub mod leases;
pub mod metadata;
pub mod runtime;
pub mod snapshots;
pub mod supervisor;
pub mod tasks;
#[cfg(test)]
mod test_support;
