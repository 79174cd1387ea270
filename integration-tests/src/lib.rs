//! Fixtures for the integration tests: a busybox rootfs ([`rootfs`]), OCI configs ([`config`])
//! and bundles ([`bundle`]), a handle on a runtime binary ([`runtime`]), and host observations
//! ([`host`]) to check what a container left behind; [`shim`] drives our containerd shim directly.

pub mod binary;
pub mod bundle;
pub mod checks;
pub mod config;
pub mod console;
pub mod exec;
pub mod host;
pub mod ids;
pub mod image_builder;
pub mod inside;
pub mod peers;
pub mod rootfs;
pub mod running;
pub mod runtime;
/// Docker's default seccomp profile: the engine's own, which the runtime tests also load.
pub use keel_engine::spec::seccomp as seccomp_profile;
pub mod shim;
pub mod skip;

pub use bundle::Bundle;
pub use config::Config;
pub use ids::unique_id;
pub use runtime::{run_and_capture, Captured, Runtime};
pub use skip::is_root;
