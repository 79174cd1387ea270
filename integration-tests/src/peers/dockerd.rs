//! A real dockerd (Debian `docker.io`, 20.10) of the test's own, set up as Debian's unit does
//! (`--containerd` pointing at a separate containerd: one of ours, see [`Containerd`]), with its
//! data root, exec root, pid file, socket and CLI config in a temp dir, no bridge, no iptables,
//! containers' cgroups under a parent of the test's own, and `keel-runtime` added as the runtime
//! `keel` (`--add-runtime keel=PATH`) beside the built-in `runc`. Driven with the real `docker`
//! CLI: the first of Debian's `/usr/bin/docker` and any other on `PATH` that talks to it.
//!
//! Dropping it removes every container (`docker rm -f`), stops dockerd, empties and removes the
//! cgroup parent, kills what still refers to the temp dir and unmounts everything under it;
//! then the containerd guard does the same for its side.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

use super::containerd::Containerd;
use super::outcome::{self, Outcome, CLIENT_TIMEOUT};
use super::process::{self, Daemon};
use super::{find_binary, Peer};
use crate::host;
use crate::ids::unique_id;
use crate::rootfs;

/// How long dockerd may take to answer `/_ping`.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The name `keel-runtime` is registered under.
pub const KEEL_RUNTIME: &str = "keel";

/// dockerd's built-in runtime: the `runc` on `PATH`.
pub const RUNC_RUNTIME: &str = "runc";

/// The busybox image every test imports.
pub const IMAGE: &str = "keel-it/busybox:latest";

/// A running dockerd, its containerd, and the CLI that talks to it.
#[derive(Debug)]
pub struct Dockerd {
    daemon: Option<Daemon>,
    cli: PathBuf,
    cgroup_parent: String,
    dir: TempDir,
    /// Declared last: dropped after dockerd is stopped.
    containerd: Containerd,
}

impl Dockerd {
    /// Starts containerd, then dockerd with `keel` as an extra runtime, and waits for `/_ping`;
    /// `Unavailable` with the reason and log tail if either cannot run here.
    pub fn start(keel_runtime: &Path) -> Result<Peer<Self>> {
        let Some(dockerd) = find_binary("dockerd", &["/usr/sbin/dockerd", "/usr/bin/dockerd"])
        else {
            return Ok(Peer::Unavailable(
                "dockerd is not installed (apt-get install docker.io)".into(),
            ));
        };
        let containerd = match Containerd::start()? {
            Peer::Ready(c) => c,
            Peer::Unavailable(why) => return Ok(Peer::Unavailable(why)),
        };
        let dir = tempfile::Builder::new()
            .prefix("keel-dockerd-")
            .tempdir()
            .context("creating dockerd's temp dir")?;
        fs::write(dir.path().join("daemon.json"), "{}\n").context("writing daemon.json")?;
        fs::create_dir_all(dir.path().join("cli")).context("mkdir cli config dir")?;
        let mut failures = Vec::new();
        // overlay2 is what a stock install uses; vfs where overlay cannot be mounted.
        for driver in ["overlay2", "vfs"] {
            let log = dir.path().join(format!("dockerd-{driver}.log"));
            let cgroup_parent = format!("/{}", unique_id("keel-it-docker"));
            let mut cmd = Command::new(&dockerd);
            cmd.args(dockerd_args(
                dir.path(),
                &containerd.address(),
                driver,
                &cgroup_parent,
                keel_runtime,
            ));
            let mut daemon = Daemon::spawn("dockerd", &mut cmd, &log)?;
            let socket = dir.path().join("docker.sock");
            let answered = process::wait_for(&mut daemon, START_TIMEOUT, || ping(&socket));
            let why = match answered {
                Ok(true) => {
                    let cli = pick_cli(dir.path());
                    let mut this = Self {
                        daemon: Some(daemon),
                        cli: PathBuf::from("docker"),
                        cgroup_parent,
                        dir,
                        containerd,
                    };
                    // Without a CLI, `this` is dropped: dockerd and all it made go too.
                    return Ok(match cli {
                        Ok(cli) => {
                            this.cli = cli;
                            Peer::Ready(this)
                        }
                        Err(why) => Peer::Unavailable(why),
                    });
                }
                Ok(false) => format!("no answer on /_ping within {}s", START_TIMEOUT.as_secs()),
                Err(exit) => exit,
            };
            daemon.stop(Duration::from_secs(10));
            process::remove_cgroup_everywhere(&cgroup_parent);
            host::detach_mounts_under(dir.path());
            failures.push(format!(
                "with --storage-driver={driver}: {why}; its log ends:\n{}",
                process::log_tail(&log, 12)
            ));
        }
        Ok(Peer::Unavailable(format!(
            "{} cannot run here:\n{}",
            dockerd.display(),
            failures.join("\n")
        )))
    }

    /// The temp dir of dockerd (data root, exec root, socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir().join("docker.sock")
    }

    /// The `docker` CLI in use.
    pub fn cli(&self) -> &Path {
        &self.cli
    }

    /// The containerd under this dockerd.
    pub fn containerd(&self) -> &Containerd {
        &self.containerd
    }

    /// The cgroup all containers are made under.
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// `docker -H unix://<socket> <args>`, killed after a minute.
    pub fn docker<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<Outcome> {
        let mut cmd = cli_command(&self.cli, self.dir());
        cmd.args(args);
        outcome::run(&mut cmd, CLIENT_TIMEOUT)
    }

    /// Imports a busybox rootfs (the fixtures' [`rootfs::build`]) as [`IMAGE`]
    /// (`docker import`: there is no registry to pull from).
    pub fn import_busybox(&self) -> Result<()> {
        let rootfs = self.dir().join("image-rootfs");
        rootfs::build(&rootfs)?;
        let tar = self.dir().join("image-rootfs.tar");
        let mut cmd = Command::new("tar");
        cmd.arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg(".");
        outcome::run(&mut cmd, CLIENT_TIMEOUT)?.ok("tar of the busybox rootfs")?;
        let tar_arg = tar.to_string_lossy().into_owned();
        self.docker(&["import", tar_arg.as_str(), IMAGE])?
            .ok("docker import")?;
        Ok(())
    }

    /// The log of the dockerd that answered.
    pub fn log(&self) -> PathBuf {
        self.daemon
            .as_ref()
            .map(|d| d.log().to_path_buf())
            .unwrap_or_else(|| self.dir().join("dockerd-overlay2.log"))
    }

    /// Error and warning lines of dockerd's and containerd's logs, the last `n` of each.
    pub fn problems(&self, n: usize) -> String {
        let dockerd = process::log_lines(
            &self.log(),
            |l| l.contains("level=error") || l.contains("level=warning"),
            n,
        );
        format!(
            "dockerd:\n{dockerd}\ncontainerd:\n{}",
            self.containerd.problems(n)
        )
    }

    fn remove_all_containers(&self) {
        let quick = Duration::from_secs(30);
        let mut cmd = cli_command(&self.cli, self.dir());
        cmd.args(["ps", "-aq"]);
        let ids: Vec<String> = outcome::run(&mut cmd, quick)
            .map(|o| o.stdout.lines().map(|l| l.trim().to_string()).collect())
            .unwrap_or_default();
        for id in ids.iter().filter(|id| !id.is_empty()) {
            // A paused container takes no SIGKILL until it is thawed.
            for args in [vec!["unpause", id.as_str()], vec!["rm", "-f", id.as_str()]] {
                let mut cmd = cli_command(&self.cli, self.dir());
                cmd.args(args);
                let _ = outcome::run(&mut cmd, quick);
            }
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            if daemon.exited().is_none() {
                self.remove_all_containers();
            }
            daemon.stop(Duration::from_secs(20));
        }
        process::remove_cgroup_everywhere(&self.cgroup_parent);
        process::sweep(self.dir());
        host::detach_mounts_under(self.dir());
        // `self.containerd` drops next: its tasks (namespace moby), shims, mounts.
    }
}

/// dockerd's command line: everything under `dir`, no networking set up on the host.
pub fn dockerd_args(
    dir: &Path,
    containerd: &Path,
    driver: &str,
    cgroup_parent: &str,
    keel_runtime: &Path,
) -> Vec<String> {
    let d = dir.display();
    vec![
        format!("--config-file={d}/daemon.json"),
        format!("--data-root={d}/data"),
        format!("--exec-root={d}/exec"),
        format!("--pidfile={d}/dockerd.pid"),
        format!("--host=unix://{d}/docker.sock"),
        format!("--containerd={}", containerd.display()),
        format!("--storage-driver={driver}"),
        format!("--cgroup-parent={cgroup_parent}"),
        "--exec-opt=native.cgroupdriver=cgroupfs".into(),
        "--bridge=none".into(),
        "--iptables=false".into(),
        "--ip-masq=false".into(),
        "--ip-forward=false".into(),
        "--userland-proxy=false".into(),
        format!("--add-runtime={KEEL_RUNTIME}={}", keel_runtime.display()),
    ]
}

/// A `docker` command for the daemon in `dir`, with a CLI config of its own.
fn cli_command(cli: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(cli);
    for var in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "DOCKER_API_VERSION",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("DOCKER_CONFIG", dir.join("cli"))
        .arg("-H")
        .arg(format!("unix://{}", dir.join("docker.sock").display()));
    cmd
}

/// The first `docker` CLI that gets the server's API version from the daemon in `dir`:
/// Debian's (the daemon's own version) first.
fn pick_cli(dir: &Path) -> std::result::Result<PathBuf, String> {
    let mut candidates = vec![PathBuf::from("/usr/bin/docker")];
    candidates.extend(find_binary("docker", &[]));
    candidates.push(PathBuf::from("/usr/local/bin/docker"));
    candidates.dedup();
    let mut tried = Vec::new();
    for cli in candidates.iter().filter(|c| c.is_file()) {
        let mut cmd = cli_command(cli, dir);
        cmd.args(["version", "--format", "{{.Server.APIVersion}}"]);
        match outcome::run(&mut cmd, Duration::from_secs(20)) {
            Ok(out) if out.status == 0 => return Ok(cli.clone()),
            Ok(out) => tried.push(format!("{}: {}", cli.display(), out.stderr.trim())),
            Err(e) => tried.push(format!("{}: {e:#}", cli.display())),
        }
    }
    Err(format!(
        "no docker CLI talks to dockerd ({})",
        if tried.is_empty() {
            "none installed: apt-get install docker.io".to_string()
        } else {
            tried.join("; ")
        }
    ))
}

/// Whether `GET /_ping` on `socket` answers 200.
pub fn ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(2));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    let request = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).starts_with("HTTP/1.1 200")
}
