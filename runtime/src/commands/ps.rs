//! `ps`: the processes of a container's cgroup, as runc lists them: `--format json` prints the
//! pids as a JSON array; the table runs the host's ps(1) (`-ef` unless other arguments are
//! given) and keeps its header and the lines whose PID column is one of the container's.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::Path;
use std::process::Command;

use crate::cli::{ListFormat, PsArgs};
use crate::commands::pause::cgroup_of;
use crate::state::{StateDir, Status};
use crate::{Error, Result};

/// Prints the processes of container `args.id`.
pub fn ps(root: &Path, args: &PsArgs) -> Result<()> {
    let dir = StateDir::open(root, &args.id)?;
    let st = dir.load()?;
    let status = dir.status(&st);
    if status == Status::Stopped {
        return Err(Error::WrongState {
            id: args.id.clone(),
            status: status.to_string(),
            what: "it has no processes to list".into(),
        });
    }
    let pids = cgroup_of(&st)?.pids()?;
    let text = match args.format {
        ListFormat::Json => json_line(&pids)?,
        ListFormat::Table => table(&pids, &args.ps_args)?,
    };
    io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Error::sys("ps: writing the output", e))
}

fn json_line(pids: &[i32]) -> Result<String> {
    let json = serde_json::to_string(pids).map_err(|e| Error::sys("ps", e))?;
    Ok(format!("{json}\n"))
}

/// ps(1)'s output cut down to its header and the container's processes.
fn table(pids: &[i32], ps_args: &[String]) -> Result<String> {
    let default = ["-ef".to_string()];
    let ps_args = if ps_args.is_empty() {
        &default
    } else {
        ps_args
    };
    let out = Command::new("ps")
        .args(ps_args)
        .output()
        .map_err(|e| Error::sys("ps: running ps(1)", e))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr)
            .trim()
            .replace('\n', "; ");
        return Err(invalid(format!("ps(1) failed ({}): {msg}", out.status)));
    }
    filter_table(&String::from_utf8_lossy(&out.stdout), pids)
}

/// The header and the lines whose PID column holds one of `pids`.
fn filter_table(output: &str, pids: &[i32]) -> Result<String> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|f| f == "PID")
        .ok_or_else(|| invalid("couldn't find PID field in ps output".into()))?;
    let wanted: HashSet<i32> = pids.iter().copied().collect();
    let mut text = format!("{header}\n");
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let field = line.split_whitespace().nth(column).unwrap_or_default();
        let pid: i32 = field
            .parse()
            .map_err(|_| invalid(format!("unable to parse pid {field:?} in ps output")))?;
        if wanted.contains(&pid) {
            text.push_str(line);
            text.push('\n');
        }
    }
    Ok(text)
}

fn invalid(msg: String) -> Error {
    Error::sys("ps", io::Error::other(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS_EF: &str = "\
UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 09:00 ?        00:00:01 /sbin/init
root         512       1  0 09:01 ?        00:00:00 sleep 100
root         513     512  0 09:01 ?        00:00:00 sleep 100
";

    #[test]
    fn keeps_header_and_container_lines() {
        let text = filter_table(PS_EF, &[512, 513, 9999]).expect("filter");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("UID"));
        assert!(lines[1].contains(" 512 ") && lines[2].contains(" 513 "));
    }

    #[test]
    fn pid_column_is_found_anywhere() {
        let text = filter_table("COMMAND PID\nsleep 7\nsh 8\n", &[8]).expect("filter");
        assert_eq!(text, "COMMAND PID\nsh 8\n");
        assert!(filter_table("USER COMMAND\nroot sh\n", &[1]).is_err());
    }

    #[test]
    fn json_is_an_array() {
        assert_eq!(json_line(&[3, 4]).expect("json"), "[3,4]\n");
        assert_eq!(json_line(&[]).expect("json"), "[]\n");
    }
}
