//! keeld, our engine, run hermetically by a test: its own temp dir holds the data root, the API
//! socket (`keel.sock`), the supervisor's socket (`containerd/containerd.sock`) and the shims'
//! state (`KEEL_SHIM_STATE_DIR`), so nothing answers there at start and keeld starts its own
//! keel-containerd (found next to keeld in cargo's target dir, where [`binary`] builds both);
//! or, with [`Keeld::start_on`], it uses a supervisor the test started (a real containerd).
//! Each keeld works in a containerd namespace of its own (`--containerd-namespace`), so the
//! cgroups `ctr run` makes (`/<namespace>/<id>`) are the test's alone.
//! Driven with the real `docker` CLI ([`Keeld::docker`], `DOCKER_HOST=unix://<socket>` and a
//! CLI config of its own) and with raw HTTP/1.1 on the socket ([`Keeld::request`]).
//!
//! Dropping it, on failure too: SIGTERM to keeld (which stops the keel-containerd it started),
//! SIGKILL after a grace period, then every process still referring to the temp dir (the
//! supervisor of a keeld that died, shims) is killed and the mounts under it are detached.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use super::dockerd::ping;
use super::find_binary;
use super::keel_shim::STATE_DIR_ENV;
use super::outcome::{self, Outcome, CLIENT_TIMEOUT};
use super::process::{self, Daemon};
use crate::{binary, host, unique_id};

/// How long keeld (and the keel-containerd it starts) may take to answer `/_ping`.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running keeld of the test's own.
#[derive(Debug)]
pub struct Keeld {
    daemon: Option<Daemon>,
    containerd_socket: PathBuf,
    namespace: String,
    dir: TempDir,
}

impl Keeld {
    /// Builds keeld, keel-containerd, our shim and keel-runtime (if cargo has to), starts keeld
    /// in a new temp dir and waits for `/_ping`; an error with the log tail if it does not come
    /// up (keeld is ours: not coming up is a failure, not a reason to skip).
    pub fn start() -> Result<Self> {
        Self::launch(None)
    }

    /// [`Keeld::start`] on the supervisor already answering on `containerd_socket`.
    pub fn start_on(containerd_socket: &Path) -> Result<Self> {
        Self::launch(Some(containerd_socket))
    }

    fn launch(containerd_socket: Option<&Path>) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("keel-keeld-")
            .tempdir()
            .context("creating keeld's temp dir")?;
        std::fs::create_dir_all(dir.path().join("cli")).context("mkdir the CLI config dir")?;
        let containerd_socket = containerd_socket
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("containerd").join("containerd.sock"));
        let mut this = Self {
            daemon: None,
            containerd_socket,
            namespace: unique_id("keeld-ns"),
            dir,
        };
        this.spawn()?;
        Ok(this)
    }

    /// Starts keeld on this fixture's dirs and waits for `/_ping`.
    fn spawn(&mut self) -> Result<()> {
        let keeld = binary::keeld()?;
        let mut path_first = Vec::new();
        for bin in [
            binary::keel_containerd()?,
            binary::keel_shim()?,
            binary::keel_runtime()?,
        ] {
            if let Some(dir) = bin.parent().map(Path::to_path_buf) {
                if !path_first.contains(&dir) {
                    path_first.push(dir);
                }
            }
        }
        let mut cmd = Command::new(&keeld);
        cmd.args(self.args())
            .env("PATH", path_with_first(&path_first)?)
            .env(STATE_DIR_ENV, self.dir().join("keel"))
            .env_remove("KEEL_CONFIG");
        let mut daemon = Daemon::spawn("keeld", &mut cmd, &self.log())?;
        let socket = self.socket();
        let why = match process::wait_for(&mut daemon, START_TIMEOUT, || ping(&socket)) {
            Ok(true) => {
                self.daemon = Some(daemon);
                return Ok(());
            }
            Ok(false) => format!("no answer on /_ping within {}s", START_TIMEOUT.as_secs()),
            Err(exit) => exit,
        };
        daemon.stop(Duration::from_secs(20));
        bail!(
            "keeld did not come up: {why}; its log ends:\n{}",
            process::log_tail(&self.log(), 20)
        )
    }

    /// keeld's command line: everything under the temp dir.
    fn args(&self) -> Vec<String> {
        let d = self.dir().display();
        vec![
            format!("--data-root={d}/data"),
            format!("--host=unix://{d}/keel.sock"),
            format!("--containerd={}", self.containerd_socket.display()),
            format!("--containerd-namespace={}", self.namespace),
            "--log-level=debug".to_string(),
        ]
    }

    /// The containerd namespace this keeld works in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The temp dir (data root, sockets, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API socket.
    pub fn socket(&self) -> PathBuf {
        self.dir().join("keel.sock")
    }

    /// `unix://<socket>`, for `DOCKER_HOST` or `-H`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The engine's data root.
    pub fn data_root(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The supervisor's socket keeld was told to use.
    pub fn containerd_socket(&self) -> PathBuf {
        self.containerd_socket.clone()
    }

    /// keeld's log (with keel-containerd's, which inherits its stderr).
    pub fn log(&self) -> PathBuf {
        self.dir().join("keeld.log")
    }

    /// keeld's pid, while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    /// `docker <args>` with `DOCKER_HOST=unix://<socket>`, the given CLI, killed after a minute.
    pub fn docker_with<S: AsRef<std::ffi::OsStr>>(
        &self,
        cli: &Path,
        args: &[S],
    ) -> Result<Outcome> {
        let mut cmd = Command::new(cli);
        for var in [
            "DOCKER_CONTEXT",
            "DOCKER_TLS_VERIFY",
            "DOCKER_CERT_PATH",
            "DOCKER_API_VERSION",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir().join("cli"))
            .args(args);
        outcome::run(&mut cmd, CLIENT_TIMEOUT)
    }

    /// [`Keeld::docker_with`] the first `docker` on `PATH`.
    pub fn docker<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<Outcome> {
        let cli = docker_cli().context("no docker CLI on PATH (the tests need docker 28.x)")?;
        self.docker_with(&cli, args)
    }

    /// Sends `method path` with `headers` and `body` on the API socket and reads the whole
    /// response (`Connection: close`).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<RawResponse> {
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        raw_exchange(&self.socket(), &bytes)
    }

    /// `ctr --address <supervisor socket> --namespace keel <args>`: what keeld sees, seen by
    /// containerd's own client.
    pub fn ctr<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Result<Outcome> {
        let ctr = find_binary("ctr", &["/usr/bin/ctr"])
            .context("ctr is not installed (apt-get install containerd)")?;
        let mut cmd = Command::new(ctr);
        for var in ["CONTAINERD_ADDRESS", "CONTAINERD_NAMESPACE"] {
            cmd.env_remove(var);
        }
        cmd.arg("--address")
            .arg(self.containerd_socket())
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args);
        outcome::run(&mut cmd, CLIENT_TIMEOUT)
    }

    /// Kills and deletes every task and container of the namespace (through ctr, while the
    /// supervisor answers) and removes their cgroups (`/<namespace>/<id>`, where ctr puts
    /// them).
    fn delete_everything(&self) {
        let Ok(listed) = self.ctr(&["containers", "ls", "-q"]) else {
            return;
        };
        for id in listed
            .stdout
            .lines()
            .map(str::trim)
            .filter(|id| !id.is_empty())
        {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["tasks", "rm", "-f", id]);
            let _ = self.ctr(&["containers", "rm", id]);
        }
        process::remove_cgroup_everywhere(&format!("/{}", self.namespace));
    }

    /// Stops keeld (SIGTERM, then SIGKILL) and sweeps what it left. Idempotent.
    pub fn stop(&mut self) {
        if self.containerd_socket().exists() {
            self.delete_everything();
        }
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop(Duration::from_secs(20));
        }
        process::sweep(self.dir());
        host::detach_mounts_under(self.dir());
    }

    /// SIGKILLs keeld alone (its keel-containerd stays, as after a crash).
    pub fn kill(&mut self) {
        if let Some(daemon) = self.daemon.as_mut() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(daemon.pid()),
                nix::sys::signal::Signal::SIGKILL,
            );
            daemon.stop(Duration::from_secs(5));
        }
    }

    /// Starts keeld again on the same dirs (after [`Keeld::kill`] or [`Keeld::stop`]).
    pub fn restart(&mut self) -> Result<()> {
        self.spawn()
    }
}

impl Drop for Keeld {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether a containerd API answers on `socket` (`ctr version` succeeds).
pub fn supervisor_answers(socket: &Path) -> bool {
    let Some(ctr) = find_binary("ctr", &["/usr/bin/ctr"]) else {
        return false;
    };
    let mut cmd = Command::new(ctr);
    cmd.arg("--address").arg(socket).arg("version");
    outcome::run(&mut cmd, Duration::from_secs(20)).is_ok_and(|o| o.status == 0)
}

fn path_with_first(first: &[PathBuf]) -> Result<std::ffi::OsString> {
    let mut dirs = first.to_vec();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).context("building PATH")
}

/// The first `docker` on `PATH` (the 28.x CLI on these machines).
pub fn docker_cli() -> Option<PathBuf> {
    find_binary("docker", &[])
}

/// An HTTP response as read off the socket.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) to values.
    pub headers: BTreeMap<String, String>,
    /// The body (de-chunked).
    pub body: String,
}

impl RawResponse {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("response body is not JSON: {:?}", self.body))
    }
}

/// Writes `request` to the socket at `socket` and parses the response.
pub fn raw_exchange(socket: &Path, request: &[u8]) -> Result<RawResponse> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("connecting to {}", socket.display()))?;
    let timeout = Some(Duration::from_secs(30));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    stream.write_all(request).context("sending the request")?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .context("reading the response")?;
    parse_response(&String::from_utf8_lossy(&raw))
}

fn parse_response(text: &str) -> Result<RawResponse> {
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of headers in {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// The data of a chunked body (`<hex size>\r\n<data>\r\n` ... `0\r\n\r\n`).
fn dechunk(mut rest: &str) -> Result<String> {
    let mut body = String::new();
    loop {
        let (size_line, after) = rest
            .split_once("\r\n")
            .with_context(|| format!("bad chunk in {rest:?}"))?;
        let size = usize::from_str_radix(size_line.trim(), 16)
            .with_context(|| format!("bad chunk size {size_line:?}"))?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = after
            .get(..size)
            .with_context(|| format!("short chunk in {after:?}"))?;
        body.push_str(chunk);
        rest = after.get(size + 2..).unwrap_or_default();
    }
}
