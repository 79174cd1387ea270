//! The OCI runtime, driven through runc's command line (`keel-runtime` by default, any
//! runc-compatible binary by the task's options). This module builds the commands and reads
//! their results; running them is the caller's (the daemon runs them through the reaper).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A runc-compatible binary with its global flags.
#[derive(Debug, Clone)]
pub struct Runtime {
    binary: String,
    root: PathBuf,
    log: PathBuf,
    systemd_cgroup: bool,
}

/// What a finished runtime command left.
#[derive(Debug, Default)]
pub struct Output {
    /// Exit status (128+signal when killed).
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A runtime command that failed, with the runtime's own message.
#[derive(Debug, thiserror::Error)]
#[error("OCI runtime {op} failed: {message}")]
pub struct RuntimeError {
    pub op: &'static str,
    pub message: String,
}

impl RuntimeError {
    /// Whether the runtime said the container does not exist.
    pub fn is_not_found(&self) -> bool {
        self.message.contains("does not exist") || self.message.contains("not found")
    }
}

/// How `create` and `exec` hand the process its terminal.
#[derive(Debug, Default, Clone)]
pub struct CreateOpts<'a> {
    pub console_socket: Option<&'a Path>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
}

impl Runtime {
    /// `binary --root root --log log --log-format json [--systemd-cgroup]`.
    pub fn new(binary: String, root: PathBuf, log: PathBuf, systemd_cgroup: bool) -> Self {
        Self {
            binary,
            root,
            log,
            systemd_cgroup,
        }
    }

    /// The binary's name or path.
    pub fn binary(&self) -> &str {
        &self.binary
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `create --bundle B --pid-file P [--console-socket S] ID`; the caller sets its stdio.
    pub fn create(&self, id: &str, bundle: &Path, pid_file: &Path, opts: &CreateOpts) -> Command {
        let mut cmd = self.command(&["create"]);
        cmd.arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(socket) = opts.console_socket {
            cmd.arg("--console-socket").arg(socket);
        }
        if opts.no_pivot {
            cmd.arg("--no-pivot");
        }
        if opts.no_new_keyring {
            cmd.arg("--no-new-keyring");
        }
        cmd.arg(id);
        cmd
    }

    /// `exec --detach --process F --pid-file P [--console-socket S] ID`.
    pub fn exec(
        &self,
        id: &str,
        process: &Path,
        pid_file: &Path,
        console: Option<&Path>,
    ) -> Command {
        let mut cmd = self.command(&["exec", "--detach"]);
        cmd.arg("--process")
            .arg(process)
            .arg("--pid-file")
            .arg(pid_file);
        if let Some(socket) = console {
            cmd.arg("--console-socket").arg(socket);
        }
        cmd.arg(id);
        cmd
    }

    pub fn start(&self, id: &str) -> Command {
        self.command(&["start", id])
    }

    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Command {
        let signal = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal.as_str()]);
        self.command(&args)
    }

    pub fn delete(&self, id: &str, force: bool) -> Command {
        let args: &[&str] = if force {
            &["delete", "--force", id]
        } else {
            &["delete", id]
        };
        self.command(args)
    }

    pub fn pause(&self, id: &str) -> Command {
        self.command(&["pause", id])
    }

    pub fn resume(&self, id: &str) -> Command {
        self.command(&["resume", id])
    }

    /// `ps --format json ID`: the pids, as a JSON array.
    pub fn ps(&self, id: &str) -> Command {
        self.command(&["ps", "--format", "json", id])
    }

    /// `update --resources - ID`: the resources JSON goes on stdin.
    pub fn update(&self, id: &str) -> Command {
        let mut cmd = self.command(&["update", "--resources", "-", id]);
        cmd.stdin(Stdio::piped());
        cmd
    }

    /// `events --stats ID`: one stats event, as JSON.
    pub fn stats(&self, id: &str) -> Command {
        self.command(&["events", "--stats", id])
    }

    /// `output` if the command succeeded, else the runtime's message: the last line of its
    /// stderr, else the last error in its log file.
    pub fn check(&self, op: &'static str, output: Output) -> Result<Output, RuntimeError> {
        if output.status == 0 {
            return Ok(output);
        }
        let message = last_message(&String::from_utf8_lossy(&output.stderr))
            .or_else(|| last_log_error(&self.log))
            .unwrap_or_else(|| format!("{} exited with status {}", self.binary, output.status));
        Err(RuntimeError { op, message })
    }
}

/// The last non-empty line, or its `msg` if it is a JSON log line.
fn last_message(text: &str) -> Option<String> {
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(json_msg(line).unwrap_or_else(|| line.to_string()))
}

/// The `msg` of the last `"level":"error"` line of a JSON log.
fn last_log_error(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter(|l| l.contains("\"error\""))
        .find_map(json_msg)
}

fn json_msg(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get("msg")?.as_str().map(String::from)
}

/// The pids of `ps --format json` output.
pub fn parse_pids(stdout: &[u8]) -> Result<Vec<u32>, RuntimeError> {
    serde_json::from_slice(stdout).map_err(|e| RuntimeError {
        op: "ps",
        message: format!("unreadable pid list: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(log: &Path) -> Runtime {
        Runtime::new("rt".into(), "/root".into(), log.to_path_buf(), false)
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn commands_are_runcs() {
        let rt = runtime(Path::new("/b/log.json"));
        let opts = CreateOpts {
            console_socket: Some(Path::new("/s")),
            ..Default::default()
        };
        let create = rt.create("c", Path::new("/b"), Path::new("/b/pid"), &opts);
        assert_eq!(
            args(&create).join(" "),
            "--root /root --log /b/log.json --log-format json create --bundle /b \
             --pid-file /b/pid --console-socket /s c"
        );
        assert!(args(&rt.kill("c", 9, true)).ends_with(&[
            "kill".into(),
            "--all".into(),
            "c".into(),
            "9".into()
        ]));
        assert!(args(&rt.delete("c", true)).ends_with(&["--force".into(), "c".into()]));
    }

    #[test]
    fn failure_message_from_stderr_or_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log.json");
        let rt = runtime(&log);
        let failed = Output {
            status: 1,
            stderr: b"\n{\"level\":\"error\",\"msg\":\"container \\\"c\\\" does not exist\"}\n"
                .to_vec(),
            ..Default::default()
        };
        let err = rt.check("kill", failed).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OCI runtime kill failed: container \"c\" does not exist"
        );
        assert!(err.is_not_found());

        fs::write(
            &log,
            "{\"level\":\"info\",\"msg\":\"x\"}\n{\"level\":\"error\",\"msg\":\"boom\"}\n",
        )
        .unwrap();
        let err = rt
            .check(
                "start",
                Output {
                    status: 1,
                    ..Default::default()
                },
            )
            .unwrap_err();
        assert_eq!(err.message, "boom");
        assert!(rt.check("start", Output::default()).is_ok());
    }

    #[test]
    fn pids_parse() {
        assert_eq!(parse_pids(b"[1,22]").unwrap(), vec![1, 22]);
        assert!(parse_pids(b"nope").is_err());
    }
}
