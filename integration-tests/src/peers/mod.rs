//! The real programs `keel-runtime` must work under, run hermetically by the interop tests:
//! containerd ([`containerd`], driven with its own `ctr`) and dockerd ([`dockerd`], driven with
//! the `docker` CLI). Each daemon lives in its own temp dir with its own socket, and its guard
//! cleans up on drop, on failure too: tasks, the daemon, the shims that outlive it, the
//! containers' cgroups and processes, and every mount under the temp dir ([`process`]).
//!
//! Our shim, `containerd-shim-keel-v2`, runs under a real containerd through [`keel_shim`];
//! [`ctr_events`] reads back the events containerd publishes; [`shim_scenario`] records and
//! compares what `ctr` shows on our shim and on the stock one.
//!
//! A scenario is run once with runc and once with keel-runtime, each step recorded in a
//! [`Transcript`]; the two transcripts must be equal ([`outcome::expect_same`]).

pub mod containerd;
pub mod ctr_events;
pub mod dockerd;
pub mod keel_containerd;
pub mod keel_shim;
pub mod keeld;
pub mod outcome;
pub mod process;
pub mod registry;
pub mod shim_scenario;
pub mod supervisor_scenario;

pub use outcome::{Outcome, Transcript};

/// A peer that was started, or why it cannot run on this machine (the skip message).
#[derive(Debug)]
pub enum Peer<T> {
    /// Up and answering on its socket.
    Ready(T),
    /// Not installed, or failed to start: says which, with the daemon's log tail.
    Unavailable(String),
}

/// Returns the started peer from a `Result<Peer<T>>`, or skips the calling test (returning
/// `Ok(())`) with the reason the peer cannot run.
#[macro_export]
macro_rules! require_peer {
    ($start:expr) => {
        match $start? {
            $crate::peers::Peer::Ready(peer) => peer,
            $crate::peers::Peer::Unavailable(why) => {
                $crate::skip::skip(module_path!(), &why);
                return Ok(());
            }
        }
    };
}

/// The first of `candidates` that exists, else the first `name` found on `PATH`.
pub fn find_binary(name: &str, candidates: &[&str]) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    if let Some(found) = candidates.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Some(found);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}
