//! keeld, the engine: the Docker Engine API, served over containerd's gRPC API.
#![deny(unsafe_code)]

pub mod pull;
