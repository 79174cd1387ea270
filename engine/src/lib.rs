//! keeld, the engine: the Docker Engine API, served over containerd's gRPC API.
#![deny(unsafe_code)]

pub mod json_log;
pub mod lifecycle;
pub mod pull;
pub mod spec;
