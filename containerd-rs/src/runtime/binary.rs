//! The shim binary: found from the runtime name by containerd's rule, and run for its two
//! bootstrap actions, `start` (start the shim daemon, print its address) and `delete` (clean up
//! after a shim daemon that died), with the command line and environment containerd 1.6 gives
//! it.

use std::env;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::RuntimeError;

/// How long `start` and `delete` may take.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);

/// containerd's rule: the last two dot-separated elements of the runtime name give the binary,
/// `io.containerd.runc.v2` → `containerd-shim-runc-v2`. `None` for a name without them.
pub fn binary_name(runtime: &str) -> Option<String> {
    let parts: Vec<&str> = runtime.split('.').collect();
    match parts.as_slice() {
        ["", ..] => None,
        [.., name, version] => Some(format!("containerd-shim-{name}-{version}")),
        _ => None,
    }
}

/// The shim binary for `runtime`: an absolute path as it is, else the binary its name gives,
/// searched on `path` (the `PATH` value), then beside `exe_dir` (where containerd also looks:
/// its own directory).
pub fn resolve(
    runtime: &str,
    path: Option<&OsStr>,
    exe_dir: Option<&Path>,
) -> Result<PathBuf, RuntimeError> {
    if runtime.is_empty() {
        return Err(RuntimeError::InvalidRuntime(
            "no runtime name: the container must name one (e.g. io.containerd.runc.v2)".into(),
        ));
    }
    let as_path = Path::new(runtime);
    if as_path.is_absolute() {
        return if is_executable(as_path) {
            Ok(as_path.to_path_buf())
        } else {
            Err(RuntimeError::BinaryNotFound(format!(
                "runtime binary {runtime} does not exist or is not executable"
            )))
        };
    }
    let name = binary_name(runtime).ok_or_else(|| {
        RuntimeError::InvalidRuntime(format!(
            "invalid runtime name {runtime:?}: expected a name like io.containerd.runc.v2 or an \
             absolute path to a shim binary"
        ))
    })?;
    path.into_iter()
        .flat_map(env::split_paths)
        .chain(exe_dir.map(Path::to_path_buf))
        .map(|dir| dir.join(&name))
        .find(|candidate| is_executable(candidate))
        .ok_or_else(|| {
            RuntimeError::BinaryNotFound(format!(
                "runtime {runtime:?}: shim binary {name} not found on PATH"
            ))
        })
}

/// The shim binary for `runtime`, resolved against this process's `PATH` and directory.
pub fn resolve_here(runtime: &str) -> Result<PathBuf, RuntimeError> {
    let exe = env::current_exe().ok();
    let path = env::var_os("PATH");
    resolve(
        runtime,
        path.as_deref(),
        exe.as_deref().and_then(Path::parent),
    )
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A shim binary and what every run of it is told: the task, and where the supervisor is.
#[derive(Debug, Clone)]
pub struct ShimBinary {
    pub path: PathBuf,
    pub namespace: String,
    pub id: String,
    /// The supervisor's gRPC socket (`-address`; shims derive their own socket path from it).
    pub address: PathBuf,
    /// Where shims forward events (`TTRPC_ADDRESS`).
    pub ttrpc_address: PathBuf,
    pub debug: bool,
}

impl ShimBinary {
    /// containerd's command line: `-namespace NS -address A -publish-binary SELF [args...]`, in
    /// `cwd`, with our environment plus `TTRPC_ADDRESS` (and `GOMAXPROCS=2`, as containerd
    /// gives its Go shims).
    fn command(&self, cwd: &Path, args: &[&OsStr]) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("-namespace")
            .arg(&self.namespace)
            .arg("-address")
            .arg(&self.address)
            .arg("-publish-binary")
            .arg(env::current_exe().unwrap_or_else(|_| PathBuf::from("keel-containerd")))
            .args(args)
            .current_dir(cwd)
            .env("GOMAXPROCS", "2")
            .env("TTRPC_ADDRESS", &self.ttrpc_address)
            .kill_on_drop(true);
        cmd
    }

    /// `start` in the bundle: the shim starts its daemon (or finds it running) and prints its
    /// address, which is returned. `options` (the task's runtime options) go to its stdin as an
    /// encoded `Any`, as containerd sends them.
    pub async fn start(
        &self,
        bundle: &Path,
        options: Option<&Any>,
    ) -> Result<String, RuntimeError> {
        let mut args: Vec<&OsStr> = vec![OsStr::new("-id"), OsStr::new(&self.id)];
        if self.debug {
            args.push(OsStr::new("-debug"));
        }
        args.push(OsStr::new("start"));
        let mut cmd = self.command(bundle, &args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{} start", self.path.display());
        let mut child = cmd.spawn().map_err(|e| RuntimeError::Start {
            what: what.clone(),
            message: e.to_string(),
        })?;
        if let Some(mut stdin) = child.stdin.take() {
            let bytes = match options {
                Some(any) => any.write_to_bytes().unwrap_or_default(),
                None => Vec::new(),
            };
            // A shim that does not read its options closes the pipe: not an error.
            let _ = stdin.write_all(&bytes).await;
        }
        let output = tokio::time::timeout(BOOTSTRAP_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| RuntimeError::Start {
                what: what.clone(),
                message: format!("no answer within {BOOTSTRAP_TIMEOUT:?}"),
            })?
            .map_err(|e| RuntimeError::Start {
                what: what.clone(),
                message: e.to_string(),
            })?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let said = [stdout.trim(), stderr.trim()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            return Err(RuntimeError::Start {
                what,
                message: format!("{}: {said}", output.status),
            });
        }
        if !stderr.trim().is_empty() {
            tracing::debug!(id = %self.id, "shim start: {}", stderr.trim());
        }
        let address = stdout.trim();
        if address.is_empty() {
            return Err(RuntimeError::Start {
                what,
                message: "the shim printed no address".into(),
            });
        }
        Ok(address.to_string())
    }

    /// `-id ID -bundle B delete` in the bundle: the shim cleans up after its dead daemon (the
    /// container force-deleted, the rootfs unmounted) and answers the exit it reports.
    pub async fn delete(&self, bundle: &Path) -> Result<DeleteResponse, RuntimeError> {
        let args = [
            OsStr::new("-id"),
            OsStr::new(&self.id),
            OsStr::new("-bundle"),
            bundle.as_os_str(),
            OsStr::new("delete"),
        ];
        let mut cmd = self.command(bundle, &args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let what = format!("{} delete", self.path.display());
        let output = tokio::time::timeout(BOOTSTRAP_TIMEOUT, cmd.output())
            .await
            .map_err(|_| RuntimeError::Start {
                what: what.clone(),
                message: format!("no answer within {BOOTSTRAP_TIMEOUT:?}"),
            })?
            .map_err(|e| RuntimeError::Start {
                what: what.clone(),
                message: e.to_string(),
            })?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(RuntimeError::Start {
                what,
                message: format!("{}: {}", output.status, stderr.trim()),
            });
        }
        if !stderr.trim().is_empty() {
            tracing::warn!(id = %self.id, "shim delete: {}", stderr.trim());
        }
        DeleteResponse::parse_from_bytes(&output.stdout).map_err(|e| RuntimeError::Start {
            what,
            message: format!("its answer is not a DeleteResponse: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_names_follow_containerds_rule() {
        assert_eq!(
            binary_name("io.containerd.keel.v2").as_deref(),
            Some("containerd-shim-keel-v2")
        );
        assert_eq!(
            binary_name("io.containerd.runc.v2").as_deref(),
            Some("containerd-shim-runc-v2")
        );
        assert_eq!(
            binary_name("runc.v1").as_deref(),
            Some("containerd-shim-runc-v1")
        );
        assert_eq!(binary_name("runc"), None);
        assert_eq!(binary_name(".runc.v2"), None);
        assert_eq!(binary_name(""), None);
    }

    fn executable(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn binaries_are_found_on_path_then_beside_us() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let exe = tempfile::tempdir().unwrap();
        let keel = executable(b.path(), "containerd-shim-keel-v2");
        let runc = executable(exe.path(), "containerd-shim-runc-v2");
        // Not executable: skipped.
        std::fs::write(a.path().join("containerd-shim-keel-v2"), "").unwrap();
        let path = env::join_paths([a.path(), b.path()]).unwrap();
        let found = resolve("io.containerd.keel.v2", Some(&path), Some(exe.path())).unwrap();
        assert_eq!(found, keel);
        let found = resolve("io.containerd.runc.v2", Some(&path), Some(exe.path())).unwrap();
        assert_eq!(found, runc);
        let err = resolve("io.containerd.nope.v2", Some(&path), None).unwrap_err();
        assert!(matches!(err, RuntimeError::BinaryNotFound(_)), "{err}");
        assert!(err.to_string().contains("containerd-shim-nope-v2"), "{err}");
    }

    #[test]
    fn absolute_paths_and_bad_names() {
        let dir = tempfile::tempdir().unwrap();
        let shim = executable(dir.path(), "my-shim");
        assert_eq!(resolve(shim.to_str().unwrap(), None, None).unwrap(), shim);
        let missing = dir.path().join("missing");
        let err = resolve(missing.to_str().unwrap(), None, None).unwrap_err();
        assert!(matches!(err, RuntimeError::BinaryNotFound(_)), "{err}");
        for bad in ["", "runc"] {
            let err = resolve(bad, None, None).unwrap_err();
            assert!(
                matches!(err, RuntimeError::InvalidRuntime(_)),
                "{bad:?}: {err}"
            );
        }
    }
}
