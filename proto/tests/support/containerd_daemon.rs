//! A real containerd 1.6 in a temporary root, for the tests that drive it with our clients.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keel_proto::tonic::transport::Channel;
use keel_proto::tonic::Request;
use keel_proto::NAMESPACE_METADATA_KEY;

/// A containerd daemon in a temporary directory, killed when dropped.
pub struct Containerd {
    child: Child,
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Containerd {
    pub fn start() -> Option<Self> {
        if not_root() {
            eprintln!("skipped: containerd needs root to run");
            return None;
        }
        let Ok(binary) = which("containerd") else {
            eprintln!("skipped: no containerd on PATH (Debian package `containerd`)");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
"#,
                root = dir.path().join("root").display(),
                state = dir.path().join("state").display(),
                socket = socket.display(),
            ),
        )
        .expect("write config");
        let child = Command::new(binary)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("containerd.log")).expect("log file"))
            .spawn()
            .expect("start containerd");
        Some(Self {
            child,
            socket,
            _dir: dir,
        })
    }

    pub async fn channel(&self) -> Channel {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.socket.exists() {
                if let Ok(channel) = containerd_client::connect(&self.socket).await {
                    return channel;
                }
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not listen within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn not_root() -> bool {
    // The effective uid of this process, read without libc: /proc/self/status's "Uid:" line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid != "0"))
        })
        .unwrap_or(true)
}

fn which(name: &str) -> Result<PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or(())
}

pub fn in_namespace<T>(message: T, namespace: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        NAMESPACE_METADATA_KEY,
        namespace.parse().expect("ascii namespace"),
    );
    request
}

pub fn labels(key: &str, value: &str) -> std::collections::HashMap<String, String> {
    [(key.to_owned(), value.to_owned())].into()
}
