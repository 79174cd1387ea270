//! Bringing the supervisor up: keeld talks to whatever containerd-compatible daemon answers on
//! `--containerd` (keel-containerd or a real containerd 1.6); when none does, it starts
//! `keel-containerd` itself, as dockerd starts its managed containerd, so one command brings the
//! whole stack up. The started supervisor keeps its data under the engine's data root
//! (`<data-root>/containerd/{root,state}`) and serves on the configured socket, so the next
//! keeld finds it there; it is restarted if it dies and stopped when keeld shuts down. Its
//! containers' shims outlive both, as containerd's do.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::containerd::Containerd;

/// The supervisor binary keeld starts.
pub const SUPERVISOR_BINARY: &str = "keel-containerd";

/// How long a started supervisor may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The pause before a supervisor that exited is started again.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// How long a stopping supervisor gets before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The supervisor could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// No binary to start.
    #[error(
        "no supervisor answers on {} and {SUPERVISOR_BINARY} is neither next to keeld nor on PATH; \
         install it or point --containerd at a running containerd",
        address.display()
    )]
    NotFound { address: PathBuf },
    /// Its directories cannot be made.
    #[error("creating {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The binary cannot be run.
    #[error("starting {}: {source}", binary.display())]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    /// It exited before answering.
    #[error("{} exited before answering on {} ({status}); see its log above", binary.display(), address.display())]
    Exited {
        binary: PathBuf,
        address: PathBuf,
        status: std::process::ExitStatus,
    },
    /// It did not answer in time (it is killed).
    #[error("{} did not answer on {} within {}s", binary.display(), address.display(), START_TIMEOUT.as_secs())]
    Timeout { binary: PathBuf, address: PathBuf },
}

/// The supervisor keeld uses: one it found running, or one it started, watches (restarting it
/// if it dies, as dockerd does its managed containerd) and stops.
#[derive(Debug)]
pub struct Supervisor {
    managed: Option<Managed>,
}

/// A keel-containerd keeld started: the task that watches it, and how to tell it to stop.
#[derive(Debug)]
struct Managed {
    stop: tokio::sync::watch::Sender<bool>,
    watcher: tokio::task::JoinHandle<()>,
}

/// How to (re)start keel-containerd.
#[derive(Debug, Clone)]
struct Launch {
    binary: PathBuf,
    data_root: PathBuf,
    address: PathBuf,
}

impl Supervisor {
    /// Uses the supervisor answering on `config.containerd`, or starts keel-containerd there.
    pub async fn ensure(config: &Config) -> Result<Self, SupervisorError> {
        if answers(&config.containerd).await {
            info!(address = %config.containerd.display(), "using the running supervisor");
            return Ok(Self { managed: None });
        }
        let address = config.containerd.clone();
        let binary = locate(
            std::env::current_exe().ok().as_deref(),
            std::env::var_os("PATH"),
        )
        .ok_or(SupervisorError::NotFound {
            address: address.clone(),
        })?;
        info!(
            binary = %binary.display(),
            address = %address.display(),
            "no supervisor answers; starting keel-containerd"
        );
        let launch = Launch {
            binary,
            data_root: config.data_root.clone(),
            address,
        };
        let child = launch.start().await?;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let watcher = tokio::spawn(watch(child, launch, stopped));
        Ok(Self {
            managed: Some(Managed { stop, watcher }),
        })
    }

    /// Whether keeld started this supervisor (and so stops it).
    pub fn is_managed(&self) -> bool {
        self.managed.is_some()
    }

    /// Stops a supervisor keeld started: SIGTERM, then SIGKILL after a grace period.
    pub async fn stop(mut self) {
        let Some(managed) = self.managed.take() else {
            return;
        };
        let _ = managed.stop.send(true);
        if let Err(e) = managed.watcher.await {
            warn!(error = %e, "the keel-containerd watcher failed");
        }
    }
}

impl Launch {
    /// Spawns keel-containerd and waits until it answers.
    async fn start(&self) -> Result<Child, SupervisorError> {
        let mut child = spawn(&self.binary, &self.data_root, &self.address)?;
        wait_until_answers(&mut child, &self.binary, &self.address).await?;
        info!(pid = child.id(), address = %self.address.display(), "keel-containerd is up");
        Ok(child)
    }
}

/// Waits on keel-containerd until keeld stops (then stops it); restarts it whenever it exits
/// on its own, a second apart at least, so a supervisor that crashes at once does not spin.
async fn watch(mut child: Child, launch: Launch, mut stopped: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            status = child.wait() => {
                match status {
                    Ok(status) => error!(%status, "keel-containerd exited; restarting it"),
                    Err(e) => error!(error = %e, "keel-containerd cannot be waited for; restarting it"),
                }
                match restart(&launch, &mut stopped).await {
                    Some(next) => child = next,
                    None => return,
                }
            }
            _ = stopped.changed() => {
                terminate(child).await;
                return;
            }
        }
    }
}

/// Starts keel-containerd again, retrying until it answers or keeld stops (`None`).
async fn restart(
    launch: &Launch,
    stopped: &mut tokio::sync::watch::Receiver<bool>,
) -> Option<Child> {
    loop {
        tokio::select! {
            () = tokio::time::sleep(RESTART_DELAY) => {}
            _ = stopped.changed() => return None,
        }
        match launch.start().await {
            Ok(child) => return Some(child),
            Err(e) => error!(error = %e, "restarting keel-containerd"),
        }
    }
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`].
async fn terminate(mut child: Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        info!(pid, "stopping keel-containerd");
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(Ok(status)) => info!(%status, "keel-containerd stopped"),
        Ok(Err(e)) => warn!(error = %e, "waiting for keel-containerd"),
        Err(_) => {
            warn!("keel-containerd did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}

/// Whether a containerd API answers on `address` (its Version call succeeds).
pub async fn answers(address: &Path) -> bool {
    let probe = async {
        let client = Containerd::connect(address).await.ok()?;
        client.version().await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), probe).await,
        Ok(Some(_))
    )
}

/// keel-containerd next to keeld's own binary first (the one built or installed with it), else
/// the first on `path`.
pub fn locate(own_exe: Option<&Path>, path: Option<std::ffi::OsString>) -> Option<PathBuf> {
    let beside = own_exe
        .and_then(Path::parent)
        .map(|dir| dir.join(SUPERVISOR_BINARY))
        .filter(|p| p.is_file());
    beside.or_else(|| {
        std::env::split_paths(&path?)
            .map(|dir| dir.join(SUPERVISOR_BINARY))
            .find(|p| p.is_file())
    })
}

/// The supervisor's directories under the engine's data root: `(root, state)`.
pub fn supervisor_dirs(data_root: &Path) -> (PathBuf, PathBuf) {
    let base = data_root.join("containerd");
    (base.join("root"), base.join("state"))
}

fn spawn(binary: &Path, data_root: &Path, address: &Path) -> Result<Child, SupervisorError> {
    let (root, state) = supervisor_dirs(data_root);
    let socket_dir = address.parent().unwrap_or(Path::new("/"));
    for dir in [&root, &state, &socket_dir.to_path_buf()] {
        std::fs::create_dir_all(dir).map_err(|source| SupervisorError::Dir {
            path: dir.clone(),
            source,
        })?;
    }
    Command::new(binary)
        .arg("--root")
        .arg(&root)
        .arg("--state")
        .arg(&state)
        .arg("--address")
        .arg(address)
        .stdin(Stdio::null())
        // Its own process group: a Ctrl-C meant for keeld reaches keeld, which stops it in order.
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|source| SupervisorError::Spawn {
            binary: binary.to_path_buf(),
            source,
        })
}

async fn wait_until_answers(
    child: &mut Child,
    binary: &Path,
    address: &Path,
) -> Result<(), SupervisorError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(SupervisorError::Exited {
                binary: binary.to_path_buf(),
                address: address.to_path_buf(),
                status,
            });
        }
        if answers(address).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill().await;
            return Err(SupervisorError::Timeout {
                binary: binary.to_path_buf(),
                address: address.to_path_buf(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_beside_keeld_comes_first() {
        let own = tempfile::tempdir().unwrap();
        let on_path = tempfile::tempdir().unwrap();
        std::fs::write(own.path().join(SUPERVISOR_BINARY), "").unwrap();
        std::fs::write(on_path.path().join(SUPERVISOR_BINARY), "").unwrap();
        let keeld = own.path().join("keeld");
        let path = Some(on_path.path().as_os_str().to_owned());
        assert_eq!(
            locate(Some(&keeld), path.clone()),
            Some(own.path().join(SUPERVISOR_BINARY))
        );
        std::fs::remove_file(own.path().join(SUPERVISOR_BINARY)).unwrap();
        assert_eq!(
            locate(Some(&keeld), path),
            Some(on_path.path().join(SUPERVISOR_BINARY))
        );
    }

    #[test]
    fn nothing_found_is_none() {
        let empty = tempfile::tempdir().unwrap();
        let path = Some(empty.path().as_os_str().to_owned());
        assert_eq!(locate(Some(&empty.path().join("keeld")), path), None);
        assert_eq!(locate(None, None), None);
    }

    #[test]
    fn supervisor_data_lives_under_the_data_root() {
        let (root, state) = supervisor_dirs(Path::new("/d"));
        assert_eq!(root, PathBuf::from("/d/containerd/root"));
        assert_eq!(state, PathBuf::from("/d/containerd/state"));
    }

    #[tokio::test]
    async fn a_missing_socket_does_not_answer() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!answers(&dir.path().join("none.sock")).await);
    }
}
