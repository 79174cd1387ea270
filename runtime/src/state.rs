//! A container's state on disk: `<root>/<id>/state.json` (written to a temp file and renamed,
//! under an flock of the directory) and `<root>/<id>/exec.fifo`, which exists from create
//! until start. The status is derived, as runc derives it: no live init → stopped; fifo →
//! created; frozen cgroup → paused; else running.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;

/// The runtime-spec version we implement.
pub const OCI_VERSION: &str = "1.2.0";
const STATE_FILE: &str = "state.json";
const FIFO_FILE: &str = "exec.fifo";

/// Errors reading or writing container state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("state of container {id}: {source}")]
    Io { id: String, source: std::io::Error },
    #[error("state of container {id}: corrupt state.json: {source}")]
    Corrupt {
        id: String,
        source: serde_json::Error,
    },
}

pub type Result<T> = std::result::Result<T, StateError>;

/// The lifecycle status of the runtime-spec, plus runc's `paused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// What the runtime remembers of a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    /// The init process's start time (field 22 of /proc/pid/stat): tells it from a reused pid.
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339, UTC.
    pub created: String,
    pub owner: String,
    pub cgroup_path: String,
    pub annotations: HashMap<String, String>,
    /// The config the container was made from (hooks, process defaults for exec).
    pub spec: Spec,
}

/// The directory of one container's state.
#[derive(Debug)]
pub struct StateDir {
    id: String,
    dir: PathBuf,
}

impl StateDir {
    /// Makes the directory of a new container; fails if the id is taken.
    pub fn create(root: &Path, id: &str) -> Result<Self> {
        let io = |source| StateError::Io {
            id: id.into(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io)?;
        let dir = root.join(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => Ok(Self { id: id.into(), dir }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StateError::Exists(id.into()))
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Opens the directory of an existing container.
    pub fn open(root: &Path, id: &str) -> Result<Self> {
        let dir = root.join(id);
        if crate::config::validate_id(id).is_err() || !dir.is_dir() {
            return Err(StateError::NotFound(id.into()));
        }
        Ok(Self { id: id.into(), dir })
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Takes the directory's exclusive lock until the guard drops, so that two commands on the
    /// same container do not interleave.
    pub fn lock(&self) -> Result<Flock<fs::File>> {
        let f = fs::File::open(&self.dir).map_err(|e| self.io(e))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| self.io(e.into()))
    }

    /// Path of the exec fifo that holds init until `start`.
    pub fn fifo_path(&self) -> PathBuf {
        self.dir.join(FIFO_FILE)
    }

    /// Writes `state.json` atomically.
    pub fn save(&self, state: &ContainerState) -> Result<()> {
        let tmp = self.dir.join(".state.json.tmp");
        let json = serde_json::to_vec(state).map_err(|e| self.io(e.into()))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| self.io(e))?;
        // No fsync: the state lives as long as the container, normally on tmpfs (/run); the
        // rename alone keeps readers from ever seeing a half-written file.
        f.write_all(&json).map_err(|e| self.io(e))?;
        fs::rename(&tmp, self.dir.join(STATE_FILE)).map_err(|e| self.io(e))
    }

    /// Reads `state.json`.
    pub fn load(&self) -> Result<ContainerState> {
        let path = self.dir.join(STATE_FILE);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound(self.id.clone()))
            }
            Err(e) => return Err(self.io(e)),
        };
        serde_json::from_slice(&text).map_err(|source| StateError::Corrupt {
            id: self.id.clone(),
            source,
        })
    }

    /// Removes the directory and everything in it.
    pub fn remove(self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io(e)),
            _ => Ok(()),
        }
    }

    /// The derived status of the container recorded in `state`.
    pub fn status(&self, state: &ContainerState) -> Status {
        if !process_alive(state.pid, state.pid_start_time) {
            return Status::Stopped;
        }
        if self.fifo_path().exists() {
            return Status::Created;
        }
        let frozen = Cgroup::load(&state.cgroup_path).and_then(|c| c.is_frozen());
        if matches!(frozen, Ok(true)) {
            return Status::Paused;
        }
        Status::Running
    }

    fn io(&self, source: std::io::Error) -> StateError {
        StateError::Io {
            id: self.id.clone(),
            source,
        }
    }
}

/// Every container id under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Io {
                id: String::new(),
                source,
            })
        }
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| crate::config::validate_id(id).is_ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Start time of a process (field 22 of /proc/pid/stat) and whether it is a zombie.
pub fn process_start_time(pid: i32) -> Option<(u64, bool)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let zombie = matches!(fields.first(), Some(&"Z") | Some(&"X"));
    Some((fields.get(19)?.parse().ok()?, zombie))
}

/// Whether `pid` is still the live process that started at `start_time`.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    pid > 0 && matches!(process_start_time(pid), Some((t, false)) if t == start_time)
}

/// The state JSON of the runtime-spec (plus runc's fields), as `state` prints and hooks receive.
pub fn oci_state_json(state: &ContainerState, status: Status) -> serde_json::Value {
    let pid = if status == Status::Stopped {
        0
    } else {
        state.pid
    };
    serde_json::json!({
        "ociVersion": OCI_VERSION,
        "id": state.id,
        "pid": pid,
        "status": status,
        "bundle": state.bundle,
        "rootfs": state.rootfs,
        "created": state.created,
        "owner": state.owner,
        "annotations": state.annotations,
    })
}

/// Now, as RFC 3339 UTC with nanoseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let now = now_rfc3339();
        assert!(now.ends_with('Z'), "{now}");
        assert_eq!(now.len(), "2026-11-25T12:34:56.123456789Z".len(), "{now}");
    }

    #[test]
    fn own_process_is_alive() {
        let pid = std::process::id() as i32;
        let (start, zombie) = process_start_time(pid).expect("stat");
        assert!(!zombie);
        assert!(process_alive(pid, start));
        assert!(!process_alive(pid, start + 1));
        assert!(!process_alive(0, 0));
    }

    #[test]
    fn create_twice_and_open_missing() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = StateDir::create(root.path(), "c1").expect("create");
        assert!(matches!(
            StateDir::create(root.path(), "c1"),
            Err(StateError::Exists(_))
        ));
        assert!(matches!(
            StateDir::open(root.path(), "nope"),
            Err(StateError::NotFound(_))
        ));
        assert!(matches!(dir.load(), Err(StateError::NotFound(_))));
        assert_eq!(list_ids(root.path()).expect("list"), vec!["c1".to_string()]);
        dir.remove().expect("remove");
        assert!(list_ids(root.path()).expect("list").is_empty());
    }
}
