//! Where a shim listens: a unix socket whose name is derived from containerd's address, the
//! namespace and the container id (containerd 1.6's `shim.SocketAddress`), so a second
//! `start` for the same container and a restarted containerd find the same shim.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};

/// Env var overriding the shim's state base dir (sockets in `s/`, runtime state in `runtime/`).
pub const STATE_DIR_ENV: &str = "KEEL_SHIM_STATE_DIR";

/// The default state base dir.
pub const DEFAULT_STATE_DIR: &str = "/run/keel/containerd";

/// The shim's state base dir: `$KEEL_SHIM_STATE_DIR`, else `/run/keel/containerd`.
pub fn state_dir() -> PathBuf {
    std::env::var_os(STATE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
}

/// `<state>/s/<sha256 of "address/namespace/id">`.
pub fn socket_path(state: &Path, address: &str, namespace: &str, id: &str) -> PathBuf {
    let key = Path::new(address).join(namespace).join(id);
    let digest = Sha256::digest(key.to_string_lossy().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    state.join("s").join(hex)
}

/// The address containerd is given for a socket path: `unix://<path>`.
pub fn address_of(path: &Path) -> String {
    format!("unix://{}", path.display())
}

/// The socket path of a `unix://` address (a bare path is taken as is).
pub fn path_of(address: &str) -> &Path {
    Path::new(address.strip_prefix("unix://").unwrap_or(address))
}

/// Whether a shim already answers on `path`.
pub fn is_served(path: &Path) -> bool {
    UnixStream::connect(path).is_ok()
}

/// What [`bind_or_find`] found.
#[derive(Debug)]
pub enum Bound {
    /// This process bound the socket; it must start the shim that serves it.
    New(UnixListener),
    /// A shim already serves it (another `start` for the same container won the race).
    Served,
}

/// Binds the socket at `path` (mode 0600, in a 0711 directory), or finds the shim already
/// serving it; a stale socket file (nobody answering) is replaced. Two `start`s for the same
/// container may run at once: the socket directory is locked (flock) while one looks and binds,
/// so the other finds its listener instead of taking a half-bound socket for a stale one.
pub fn bind_or_find(path: &Path) -> io::Result<Bound> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)?;
    let _lock = Flock::lock(fs::File::open(dir)?, FlockArg::LockExclusive)
        .map_err(|(_, errno)| io::Error::from(errno))?;
    if is_served(path) {
        return Ok(Bound::Served);
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(Bound::New(listener))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_hash_as_containerd() {
        // `printf %s /tmp/ctrx/c.sock/t1/s1 | sha256sum`, as a live runc shim had it.
        assert_eq!(
            socket_path(
                Path::new("/run/keel/containerd"),
                "/tmp/ctrx/c.sock",
                "t1",
                "s1"
            ),
            Path::new("/run/keel/containerd/s")
                .join("8f1749b4108e62aa0a9ba5748db578c133327c67aa4b8ecc512ff6bb0a09f69e")
        );
    }

    #[test]
    fn address_round_trips() {
        let p = Path::new("/run/x/s/abc");
        assert_eq!(path_of(&address_of(p)), p);
        assert_eq!(path_of("/bare"), Path::new("/bare"));
    }

    #[test]
    fn bind_replaces_a_stale_socket_finds_a_served_one_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s").join("x");
        let Bound::New(first) = bind_or_find(&path).unwrap() else {
            panic!("nothing served yet")
        };
        assert!(matches!(bind_or_find(&path).unwrap(), Bound::Served));
        drop(first);
        assert!(!is_served(&path));
        let Bound::New(_second) = bind_or_find(&path).unwrap() else {
            panic!("the stale socket is replaced")
        };
        assert!(is_served(&path));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
