//! The bootstrap actions containerd runs the binary for: `start` (start or find the daemon,
//! print its address) and `delete` (clean up after a daemon that died).

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::Message;

use crate::args::Args;
use crate::events::timestamp;
use crate::mounts;
use crate::options::Options;
use crate::runtime::{Output, Runtime};
use crate::socket;

/// What a bootstrap action could not do.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Options(#[from] crate::options::OptionsError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BootstrapError {
    let what = what.into();
    move |source| BootstrapError::Io { what, source }
}

/// `start`, run in the bundle directory: binds the shim's socket and starts the daemon on it,
/// or finds the daemon already serving it. Returns the address to print.
pub fn start(args: &Args) -> Result<String, BootstrapError> {
    let bundle = std::env::current_dir().map_err(io_err("the bundle (working) directory"))?;
    let path = socket::socket_path(
        &socket::state_dir(),
        &args.address,
        &args.namespace,
        &args.id,
    );
    let address = socket::address_of(&path);
    let bound =
        socket::bind_or_find(&path).map_err(io_err(format!("binding {}", path.display())))?;
    if let socket::Bound::New(listener) = bound {
        let pid = spawn_daemon(args, &bundle, OwnedFd::from(listener))?;
        write_file(&bundle.join("shim.pid"), &pid.to_string())?;
    }
    write_file(&bundle.join("address"), &address)?;
    Ok(address)
}

/// The daemon: this binary without an action, in the bundle, the listener as its stdin.
fn spawn_daemon(args: &Args, bundle: &Path, listener: OwnedFd) -> Result<u32, BootstrapError> {
    let exe = std::env::current_exe().map_err(io_err("finding the shim binary"))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "-namespace",
        &args.namespace,
        "-id",
        &args.id,
        "-address",
        &args.address,
    ]);
    if !args.publish_binary.is_empty() {
        cmd.args(["-publish-binary", &args.publish_binary]);
    }
    if args.debug {
        cmd.arg("-debug");
    }
    cmd.current_dir(bundle)
        .stdin(Stdio::from(listener))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // One malloc arena: a shim is mostly idle and its memory is per container.
        .env("MALLOC_ARENA_MAX", "1");
    let child = cmd.spawn().map_err(io_err("starting the shim daemon"))?;
    Ok(child.id())
}

fn write_file(path: &Path, text: &str) -> Result<(), BootstrapError> {
    // A name of this process's own: two `start`s may write the same file at once.
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    fs::write(&tmp, text)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(io_err(format!("writing {}", path.display())))
}

/// `delete`: force-deletes the container with the runtime, unmounts the rootfs and returns the
/// encoded `DeleteResponse` (killed by SIGKILL, now).
pub fn delete(args: &Args) -> Result<Vec<u8>, BootstrapError> {
    let bundle = match &args.bundle {
        Some(b) => b.clone(),
        None => std::env::current_dir().map_err(io_err("the bundle (working) directory"))?,
    };
    let options = Options::load(&bundle)?;
    let state_dir = socket::state_dir();
    let runtime = Runtime::new(
        options.binary(),
        options.runtime_root(&state_dir, &args.namespace),
        bundle.join("log.json"),
        options.systemd_cgroup,
    );
    if let Err(e) = force_delete(&runtime, &args.id) {
        // As the runc shim does: a container the runtime no longer knows is not an error here.
        eprintln!("containerd-shim-keel-v2: {e}");
    }
    mounts::unmount_all(&bundle.join("rootfs"));
    let socket = socket::socket_path(&state_dir, &args.address, &args.namespace, &args.id);
    if !socket::is_served(&socket) {
        let _ = fs::remove_file(socket);
    }
    let mut resp = DeleteResponse::new();
    resp.exit_status = 128 + libc::SIGKILL as u32;
    resp.exited_at = Some(timestamp(SystemTime::now())).into();
    resp.write_to_bytes().map_err(|e| BootstrapError::Io {
        what: "encoding the DeleteResponse".into(),
        source: io::Error::other(e),
    })
}

fn force_delete(runtime: &Runtime, id: &str) -> Result<(), String> {
    let out = runtime
        .delete(id, true)
        .output()
        .map_err(|e| format!("running {}: {e}", runtime.binary()))?;
    let output = Output {
        status: out.status.code().unwrap_or(255),
        stdout: out.stdout,
        stderr: out.stderr,
    };
    match runtime.check("delete", output) {
        Err(e) if !e.is_not_found() => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// The bundle a `delete` works on, for messages.
pub fn bundle_of(args: &Args) -> PathBuf {
    args.bundle
        .clone()
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_default()
}
