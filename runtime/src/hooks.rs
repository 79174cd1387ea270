//! OCI hooks (`createRuntime`, `poststart`, `poststop`, ...): programs run by the runtime with the
//! container's state JSON on stdin.
//!
//! Each hook gets exactly its `path`, `args` (with `args[0]` as argv0) and `env`, nothing of the
//! runtime's environment. Its stdout is discarded, as runc does; its stderr is captured so a
//! failure can say why.

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// How much of a failed hook's stderr goes into the error (its tail).
const STDERR_LIMIT: usize = 4096;

/// How long to wait for a hook's stderr after it exited: a daemon it left behind may hold the pipe.
const STDERR_GRACE: Duration = Duration::from_millis(200);

/// The longest pause between two checks of whether a hook exited.
const MAX_POLL: Duration = Duration::from_millis(10);

/// Errors of running hooks.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook's path is not absolute, as the runtime spec requires.
    #[error("hook {path}: path must be absolute")]
    RelativePath { path: String },
    /// The hook's timeout is zero or negative, which the runtime spec forbids.
    #[error("hook {path}: timeout must be positive, got {timeout}")]
    BadTimeout { path: String, timeout: i64 },
    /// The hook could not be started.
    #[error("hook {path}: cannot run it: {source}")]
    Spawn { path: String, source: io::Error },
    /// Waiting for the hook failed.
    #[error("hook {path}: waiting for it: {source}")]
    Wait { path: String, source: io::Error },
    /// The hook ran past its timeout and was killed.
    #[error("hook {path}: timed out after {secs}s and was killed")]
    Timeout { path: String, secs: i64 },
    /// The hook exited with a non-zero status or was killed by a signal.
    #[error("hook {path}: {status}{}", stderr_suffix(.stderr))]
    Failed {
        path: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, HookError>;

/// Formats captured stderr for an error message (nothing when the hook printed nothing).
fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(", stderr: {stderr}")
    }
}

/// Runs `hooks` in order with `state_json` on their stdin, stopping at the first failure.
pub fn run_hooks(hooks: &[Hook], state_json: &[u8]) -> Result<()> {
    hooks.iter().try_for_each(|hook| run_hook(hook, state_json))
}

/// Runs every hook, logging failures instead of returning them (for `poststop`, where the
/// container is already gone and one broken hook must not keep the others from running).
pub fn run_hooks_warn(hooks: &[Hook], state_json: &[u8]) {
    for hook in hooks {
        if let Err(err) = run_hook(hook, state_json) {
            tracing::warn!(error = %err, "hook failed");
        }
    }
}

/// Runs one hook to completion or its timeout.
pub fn run_hook(hook: &Hook, state_json: &[u8]) -> Result<()> {
    let path = hook.path().display().to_string();
    if !hook.path().is_absolute() {
        return Err(HookError::RelativePath { path });
    }
    let timeout = match hook.timeout() {
        Some(secs) if secs <= 0 => {
            return Err(HookError::BadTimeout {
                path,
                timeout: secs,
            })
        }
        Some(secs) => Some(secs),
        None => None,
    };
    let mut child = command(hook).spawn().map_err(|source| HookError::Spawn {
        path: path.clone(),
        source,
    })?;
    feed_stdin(&mut child, state_json);
    let stderr = child.stderr.take().map(collect_stderr);
    let status = wait(&mut child, timeout, &path)?;
    if status.success() {
        return Ok(());
    }
    let stderr = stderr
        .and_then(|rx| rx.recv_timeout(STDERR_GRACE).ok())
        .unwrap_or_default();
    Err(HookError::Failed {
        path,
        status,
        stderr,
    })
}

/// The hook's command line and environment, nothing inherited but the runtime's cwd.
fn command(hook: &Hook) -> Command {
    let mut cmd = Command::new(hook.path());
    let args = hook.args().as_deref().unwrap_or_default();
    // No args means argv is just the path, as Go's exec (runc) does.
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for entry in hook.env().as_deref().unwrap_or_default() {
        match entry.split_once('=') {
            Some((key, value)) => cmd.env(key, value),
            None => {
                tracing::warn!(hook = %hook.path().display(), entry, "hook env entry has no '='");
                continue;
            }
        };
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Writes the state to the hook's stdin from a thread, so a hook that never reads cannot block
/// the runtime past its timeout. A hook that exits without reading gives EPIPE, which is fine.
fn feed_stdin(child: &mut Child, state_json: &[u8]) {
    let Some(mut stdin) = child.stdin.take() else {
        return;
    };
    let state = state_json.to_vec();
    thread::spawn(move || {
        if let Err(err) = stdin.write_all(&state) {
            if err.kind() != io::ErrorKind::BrokenPipe {
                tracing::debug!(error = %err, "writing state to hook stdin");
            }
        }
    });
}

/// Reads the hook's stderr in a thread; the tail arrives on the channel at EOF.
fn collect_stderr(mut stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        // A read error just ends the capture: the message is a courtesy, the status is what counts.
        let _ = stderr.read_to_end(&mut buf);
        let start = buf.len().saturating_sub(STDERR_LIMIT);
        let _ = tx.send(String::from_utf8_lossy(&buf[start..]).trim().to_string());
    });
    rx
}

/// Waits for the hook, killing it with SIGKILL when `timeout` (seconds) passes.
fn wait(child: &mut Child, timeout: Option<i64>, path: &str) -> Result<ExitStatus> {
    let wait_err = |source| HookError::Wait {
        path: path.to_string(),
        source,
    };
    let Some(secs) = timeout else {
        return child.wait().map_err(wait_err);
    };
    let deadline = Instant::now() + Duration::from_secs(secs.unsigned_abs());
    // Poll (rather than wait in another thread) so the kill cannot hit a reaped, reused pid.
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait().map_err(wait_err)? {
            return Ok(status);
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_POLL);
    }
    child.kill().map_err(wait_err)?;
    child.wait().map_err(wait_err)?;
    Err(HookError::Timeout {
        path: path.to_string(),
        secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::HookBuilder;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// Writes an executable sh script into `dir`.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn hook(path: &Path, args: &[&str], env: &[&str], timeout: Option<i64>) -> Hook {
        let mut builder = HookBuilder::default()
            .path(path)
            .args(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .env(env.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        if let Some(t) = timeout {
            builder = builder.timeout(t);
        }
        builder.build().unwrap()
    }

    #[test]
    fn state_arrives_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let path = script(dir.path(), "h", &format!("cat > {}", out.display()));
        run_hooks(&[hook(&path, &["h"], &[], None)], br#"{"id":"c1"}"#).unwrap();
        assert_eq!(fs::read_to_string(out).unwrap(), r#"{"id":"c1"}"#);
    }

    /// A hook that is `/bin/sh -c <cmd>` plus `extra` args, with `argv0` and `env`.
    fn sh_hook(argv0: &str, cmd: &str, extra: &[&str], env: &[&str]) -> Hook {
        let mut args = vec![argv0, "-c", cmd];
        args.extend_from_slice(extra);
        hook(Path::new("/bin/sh"), &args, env, None)
    }

    /// Reads a NUL-separated /proc file the hook copied to `out`.
    fn nul_list(out: &Path) -> Vec<String> {
        let raw = fs::read_to_string(out).unwrap();
        raw.split('\0')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn env_is_exactly_the_hooks() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // /proc/$$/environ is the environment as exec'd, before the shell adds anything.
        let cmd = format!("cat /proc/$$/environ > {}", out.display());
        run_hooks(&[sh_hook("sh", &cmd, &[], &["A=1", "B=x=y"])], b"{}").unwrap();
        assert_eq!(nul_list(&out), ["A=1", "B=x=y"]);
    }

    #[test]
    fn args_are_exact_with_argv0() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = format!("cat /proc/$$/cmdline > {}", out.display());
        let hk = sh_hook("custom-argv0", &cmd, &["x", "a b"], &[]);
        run_hooks(&[hk], b"{}").unwrap();
        assert_eq!(
            nul_list(&out),
            ["custom-argv0", "-c", cmd.as_str(), "x", "a b"]
        );
    }

    #[test]
    fn no_args_means_argv_is_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let path = script(dir.path(), "h", &format!("echo \"$0\" > {}", out.display()));
        run_hooks(&[hook(&path, &[], &[], None)], b"{}").unwrap();
        assert_eq!(
            fs::read_to_string(out).unwrap().trim(),
            path.to_str().unwrap()
        );
    }

    #[test]
    fn timeout_kills_the_hook() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let body = format!("echo $$ > {}; exec sleep 30", pid_file.display());
        let path = script(dir.path(), "h", &body);
        let start = Instant::now();
        let err = run_hooks(&[hook(&path, &["h"], &[], Some(1))], b"{}").unwrap_err();
        assert!(matches!(err, HookError::Timeout { secs: 1, .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));
        // Killed and reaped: the pid no longer exists.
        let pid = fs::read_to_string(pid_file).unwrap();
        assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists());
    }

    #[test]
    fn failure_names_hook_status_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "h", "echo 'no network' >&2; exit 3");
        let err = run_hooks(&[hook(&path, &["h"], &[], None)], b"{}").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(path.to_str().unwrap()), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("no network"), "{msg}");
    }

    #[test]
    fn stops_at_first_failure() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let bad = script(dir.path(), "bad", "exit 1");
        let good = script(dir.path(), "good", &format!("touch {}", marker.display()));
        let hooks = [
            hook(&bad, &["bad"], &[], None),
            hook(&good, &["good"], &[], None),
        ];
        assert!(run_hooks(&hooks, b"{}").is_err());
        assert!(!marker.exists());
        run_hooks_warn(&hooks, b"{}");
        assert!(marker.exists());
    }

    #[test]
    fn hook_that_ignores_stdin_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "h", "exit 0");
        let big = vec![b'x'; 1 << 20];
        run_hooks(&[hook(&path, &["h"], &[], Some(5))], &big).unwrap();
    }

    #[test]
    fn bad_hooks_are_rejected() {
        let rel = hook(Path::new("bin/true"), &[], &[], None);
        assert!(matches!(
            run_hook(&rel, b"{}"),
            Err(HookError::RelativePath { .. })
        ));
        let zero = hook(Path::new("/bin/true"), &[], &[], Some(0));
        assert!(matches!(
            run_hook(&zero, b"{}"),
            Err(HookError::BadTimeout { .. })
        ));
        let missing = hook(Path::new("/nonexistent/hook"), &[], &[], None);
        assert!(matches!(
            run_hook(&missing, b"{}"),
            Err(HookError::Spawn { .. })
        ));
    }
}
