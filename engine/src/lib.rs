//! keel-engine: `keeld`, the Docker Engine API (JSON over HTTP/1.1 on a unix socket) served on
//! top of containerd's gRPC API, so the real `docker` CLI drives Keel.
//!
//! A request goes [`server`] (socket, connection, span) → [`router`] (route, API version) →
//! [`handlers`] (one module per group of routes) → [`images`] (images resolved through the
//! content store, named by [`mod@reference`]), [`containerd`] (the supervisor's client), [`store`]
//! (the engine's own records), [`events`] (what `/events` streams) and [`registry_login`]
//! (`/auth`); every failure is an [`errors::ApiError`], turned into a status and
//! `{"message": ...}` once, in [`http`]. [`daemon`] runs it all in order, starting (and
//! restarting) the supervisor through [`supervisor_process`] when none answers; [`host`] reads
//! the machine's facts for `/info`.
//!
//! As a containerd client the engine also [`pull`]s images (registry → content, snapshots,
//! diff, images), writes a container's runtime [`spec`] with Docker's defaults, and drives a
//! container's [`lifecycle`] (containers, tasks, stdio into a [`json_log`]).
#![deny(unsafe_code)]

pub mod config;
pub mod containerd;
pub mod daemon;
pub mod engine;
pub mod errors;
pub mod events;
pub mod handlers;
pub mod host;
pub mod http;
pub mod images;
pub mod json_log;
pub mod lifecycle;
pub mod pull;
pub mod reference;
pub mod registry_login;
pub mod router;
pub mod server;
pub mod spec;
pub mod store;
pub mod supervisor_process;
