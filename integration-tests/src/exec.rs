//! Running a command to completion with a deadline, its stdout and stderr captured in files.
//!
//! Files, not pipes: a runtime's `create` and `run -d` leave the container holding the stdio
//! they were given, so reading a pipe to EOF would wait for the container, not for the runtime.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How long one runtime command may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `cmd` with stdin from /dev/null, killing it after `timeout` (noted on its stderr).
pub fn output_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut out = tempfile::tempfile().context("creating a stdout capture file")?;
    let mut err = tempfile::tempfile().context("creating a stderr capture file")?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().context("dup stdout capture")?)
        .stderr(err.try_clone().context("dup stderr capture")?)
        .spawn()
        .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
    let (status, timed_out) = wait_with_deadline(&mut child, timeout)?;
    let stdout = read_all(&mut out)?;
    let mut stderr = read_all(&mut err)?;
    if timed_out {
        let note = format!(
            "keel-integration-tests: killed after {}s\n",
            timeout.as_secs()
        );
        stderr.extend_from_slice(note.as_bytes());
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn wait_with_deadline(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Result<(ExitStatus, bool)> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for the command")? {
            return Ok((status, false));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let status = child.wait().context("reaping the killed command")?;
            return Ok((status, true));
        }
        thread::sleep(Duration::from_millis(5));
    }
}

fn read_all(file: &mut File) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .context("rewinding a capture file")?;
    file.read_to_end(&mut bytes)
        .context("reading a capture file")?;
    Ok(bytes)
}

/// A shell-style exit code: the exit status, or 128 + the signal that killed the process.
pub fn exit_code(status: &ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => -1,
    }
}
