//! A local OCI distribution registry for image pull tests: Debian's `docker-registry`
//! (distribution 2.8) serving plain HTTP on 127.0.0.1 at a free port, its storage in a temp
//! dir. The guard stops it and removes its storage on drop, on failure too.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::process::{log_tail, wait_for, Daemon};
use super::Peer;

/// Where Debian's `docker-registry` package installs the registry.
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// How long the registry may take to answer `/v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a start is retried when the free port was taken meanwhile.
const START_TRIES: usize = 3;

/// A running registry. Dropping it stops the registry and deletes its storage.
#[derive(Debug)]
pub struct Registry {
    daemon: Daemon,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry in a temp dir of its own; `Unavailable` if the binary is missing
    /// or it does not come up (with its log tail).
    pub fn start() -> Result<Peer<Self>> {
        let binary = Path::new(REGISTRY_BINARY);
        if !binary.is_file() {
            return Ok(Peer::Unavailable(format!(
                "{REGISTRY_BINARY} is not installed (Debian package docker-registry)"
            )));
        }
        let mut last = String::new();
        for _ in 0..START_TRIES {
            match Self::start_once(binary)? {
                Ok(registry) => return Ok(Peer::Ready(registry)),
                Err(why) => last = why,
            }
        }
        Ok(Peer::Unavailable(last))
    }

    /// One try: `Ok(Err(why))` if the registry did not come up.
    fn start_once(binary: &Path) -> Result<std::result::Result<Self, String>> {
        let dir = tempfile::Builder::new()
            .prefix("keel-registry-")
            .tempdir()
            .context("making the registry's temp dir")?;
        let addr = free_port()?;
        let config = dir.path().join("config.yml");
        fs::write(&config, config_yaml(&dir.path().join("storage"), addr))
            .context("writing the registry's config")?;
        let log = dir.path().join("registry.log");
        let mut cmd = Command::new(binary);
        cmd.arg("serve").arg(&config);
        let mut daemon = Daemon::spawn("docker-registry", &mut cmd, &log)?;
        match wait_for(&mut daemon, START_TIMEOUT, || answers_v2(addr)) {
            Ok(true) => Ok(Ok(Self { daemon, addr, dir })),
            Ok(false) => Ok(Err(format!(
                "the registry did not answer /v2/ on {addr} within {START_TIMEOUT:?}: {}",
                log_tail(&log, 10)
            ))),
            Err(exit) => Ok(Err(format!("{exit}: {}", log_tail(&log, 10)))),
        }
    }

    /// `127.0.0.1:PORT`, the host part of the registry's image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The registry's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `HOST/name:tag`, a reference to an image in this registry.
    pub fn reference(&self, name: &str, tag: &str) -> String {
        format!("{}/{name}:{tag}", self.host())
    }

    /// The registry's temp dir (config, log, storage).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's log file.
    pub fn log(&self) -> PathBuf {
        self.daemon.log().to_path_buf()
    }

    /// The status code of `GET path` on the registry (`/v2/`, `/v2/NAME/manifests/TAG`, ...),
    /// with `accept` as the Accept header.
    pub fn get_status(&self, path: &str, accept: &str) -> Result<u16> {
        http_status(self.addr, path, accept)
    }
}

/// distribution's configuration: filesystem storage under `storage`, deletes allowed (so
/// tests can remove what they pushed), plain HTTP on `addr`, logs at warn.
fn config_yaml(storage: &Path, addr: SocketAddr) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n",
        storage.display()
    )
}

/// A port free on 127.0.0.1 right now (another process may take it before the registry
/// binds it, which is why a start is retried).
fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    listener.local_addr().context("the free port's address")
}

/// Whether `GET /v2/` answers 200, as distribution does once it serves.
fn answers_v2(addr: SocketAddr) -> bool {
    matches!(http_status(addr, "/v2/", "*/*"), Ok(200))
}

/// A one-shot HTTP/1.0 GET: enough for a health check without an HTTP client crate.
fn http_status(addr: SocketAddr, path: &str, accept: &str) -> Result<u16> {
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"
    )?;
    let mut head = [0_u8; 12];
    stream
        .read_exact(&mut head)
        .context("reading the status line")?;
    let line = String::from_utf8_lossy(&head);
    line.get(9..12)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status in {line:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_storage_and_address() {
        let addr: SocketAddr = "127.0.0.1:5123".parse().unwrap();
        let yaml = config_yaml(Path::new("/tmp/x/storage"), addr);
        assert!(yaml.contains("rootdirectory: /tmp/x/storage\n"), "{yaml}");
        assert!(yaml.contains("addr: 127.0.0.1:5123\n"), "{yaml}");
    }

    #[test]
    fn starts_answers_and_stops() -> Result<()> {
        let registry = match Registry::start()? {
            Peer::Ready(r) => r,
            Peer::Unavailable(why) => {
                crate::skip::skip(module_path!(), &why);
                return Ok(());
            }
        };
        let addr = registry.addr();
        assert_eq!(registry.get_status("/v2/", "*/*")?, 200);
        assert_eq!(
            registry.get_status("/v2/nothing/manifests/latest", "*/*")?,
            404
        );
        let dir = registry.dir().to_path_buf();
        drop(registry);
        assert!(!answers_v2(addr), "the registry still answers after drop");
        assert!(!dir.exists(), "the registry's temp dir is left behind");
        Ok(())
    }
}
