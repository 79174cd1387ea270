//! A local OCI distribution registry for image pull tests: Debian's `docker-registry`
//! (distribution 2.8) serving plain HTTP on 127.0.0.1 at a free port, its storage in a temp
//! dir. The guard stops it and removes its storage on drop, on failure too.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

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

    /// Uploads `bytes` as a blob of repository `name` through the registry's HTTP API (a
    /// POST opening an upload, a PUT closing it with the digest): the digest, `sha256:<hex>`.
    /// For tests that push parts by hand, bad ones included.
    pub fn put_blob(&self, name: &str, bytes: &[u8]) -> Result<String> {
        let digest = crate::image_builder::sha256(bytes);
        let opened = http(
            self.addr,
            "POST",
            &format!("/v2/{name}/blobs/uploads/"),
            &[],
            &[],
        )?;
        let location = opened
            .header("location")
            .with_context(|| format!("no Location in the upload's answer ({})", opened.status))?;
        // distribution answers an absolute URL; the path and query are what we send back.
        let path = match location.find("/v2/") {
            Some(at) => &location[at..],
            None => location,
        };
        let join = if path.contains('?') { '&' } else { '?' };
        let put = format!("{path}{join}digest={digest}");
        let closed = http(
            self.addr,
            "PUT",
            &put,
            &[("Content-Type", "application/octet-stream")],
            bytes,
        )?;
        if closed.status != 201 {
            bail!(
                "PUT blob {digest} to {name}: {} {}",
                closed.status,
                String::from_utf8_lossy(&closed.body)
            );
        }
        Ok(digest)
    }

    /// `PUT /v2/NAME/manifests/REFERENCE` with `bytes` as `media_type`: the registry's answer
    /// (201 when it took it; 400 with its error when it refuses what does not parse).
    pub fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<HttpAnswer> {
        http(
            self.addr,
            "PUT",
            &format!("/v2/{name}/manifests/{reference}"),
            &[("Content-Type", media_type)],
            bytes,
        )
    }

    /// Where the registry's filesystem storage keeps the bytes of blob `digest`: a test may
    /// overwrite them to serve bytes that do not match their digest (distribution does not
    /// verify what it serves).
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.v2_storage()
            .join("blobs/sha256")
            .join(hex.get(..2).unwrap_or(hex))
            .join(hex)
            .join("data")
    }

    fn v2_storage(&self) -> PathBuf {
        self.dir().join("storage/docker/registry/v2")
    }
}

/// What the registry answered to a request: status, headers (names lower case) and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parses a whole HTTP/1.x response.
    fn parse(raw: &[u8]) -> Result<Self> {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("no end of headers in the answer")?;
        let head = String::from_utf8_lossy(&raw[..end]);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .get(9..12)
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("no status in {status_line:?}"))?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Ok(Self {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        })
    }
}

/// One HTTP/1.0 request (the server closes the connection after its answer, which is then
/// read whole): enough for the registry's API without an HTTP client crate.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpAnswer> {
    let timeout = Duration::from_secs(30);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body))
        .with_context(|| format!("sending {method} {path}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    HttpAnswer::parse(&raw).with_context(|| format!("{method} {path}"))
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
    fn parses_an_answer() {
        let raw = b"HTTP/1.1 202 Accepted\r\nLocation: http://h/v2/x?_state=1\r\n\r\nbody";
        let answer = HttpAnswer::parse(raw).unwrap();
        assert_eq!(answer.status, 202);
        assert_eq!(answer.header("location"), Some("http://h/v2/x?_state=1"));
        assert_eq!(answer.body, b"body");
        assert!(HttpAnswer::parse(b"HTTP/1.1 200 OK\r\n").is_err());
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
        let digest = registry.put_blob("t/x", b"some bytes")?;
        assert!(registry.blob_data(&digest).is_file(), "the blob's data");
        let garbage = registry.put_manifest(
            "t/x",
            "bad",
            "application/vnd.oci.image.manifest.v1+json",
            b"garbage",
        )?;
        assert_eq!(
            garbage.status, 400,
            "a manifest that does not parse is refused"
        );
        let dir = registry.dir().to_path_buf();
        drop(registry);
        assert!(!answers_v2(addr), "the registry still answers after drop");
        assert!(!dir.exists(), "the registry's temp dir is left behind");
        Ok(())
    }
}
