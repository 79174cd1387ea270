//! Assertions shared by the tests: how a failed command must look, and that a container left
//! nothing behind (state dir, cgroup, process, mount).

use std::fs;
use std::path::Path;
use std::process::Output;

use anyhow::{bail, Result};

use crate::exec::exit_code;
use crate::host;
use crate::runtime::Runtime;

/// The command failed with exit status 1 and exactly one line on stderr, which mentions each
/// of `needles` (case-insensitive).
pub fn expect_one_line_error(out: &Output, needles: &[&str]) -> Result<()> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let code = exit_code(&out.status);
    if code != 1 {
        bail!("expected exit status 1, got {code}; stderr: {stderr}");
    }
    if lines.len() != 1 {
        bail!(
            "expected exactly one line on stderr, got {}:\n{stderr}",
            lines.len()
        );
    }
    let line = lines[0].to_lowercase();
    for needle in needles {
        if !line.contains(&needle.to_lowercase()) {
            bail!("the error line does not mention {needle:?}: {}", lines[0]);
        }
    }
    Ok(())
}

/// The command succeeded; else an error quoting its stderr.
pub fn expect_success(out: &Output, what: &str) -> Result<()> {
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            exit_code(&out.status),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Nothing of container `id` (bundle `bundle`) is left: no state under `--root`, no cgroup at
/// the default paths, no process rooted in the bundle, no mount under the bundle or the root.
pub fn expect_nothing_left(rt: &Runtime, id: &str, bundle: &Path) -> Result<()> {
    let mut problems = Vec::new();
    problems.extend(state_left(rt));
    problems.extend(cgroups_left(id));
    problems.extend(processes_left(bundle));
    problems.extend(mounts_left(&[bundle, rt.base()]));
    if !problems.is_empty() {
        bail!("left behind by {id:?}:\n  {}", problems.join("\n  "));
    }
    Ok(())
}

fn state_left(rt: &Runtime) -> Vec<String> {
    let mut left = Vec::new();
    if let Ok(entries) = fs::read_dir(rt.root()) {
        left.extend(
            entries
                .flatten()
                .map(|e| format!("state entry {}", e.path().display())),
        );
    }
    if let Ok(entries) = fs::read_dir(rt.base()) {
        let stray = entries.flatten().filter(|e| e.file_name() != "root");
        left.extend(stray.map(|e| format!("entry beside --root: {}", e.path().display())));
    }
    left
}

fn cgroups_left(id: &str) -> Vec<String> {
    if !crate::ids::is_plain(id) {
        return Vec::new();
    }
    [format!("/keel/{id}"), format!("/{id}")]
        .iter()
        .flat_map(|p| {
            host::cgroup_present_in(p)
                .into_iter()
                .map(move |c| format!("cgroup {c}:{p}"))
        })
        .collect()
}

fn processes_left(bundle: &Path) -> Vec<String> {
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|&pid| host::pid_alive(pid) && process_in(pid, bundle))
        .map(|pid| format!("process {pid} rooted in the bundle"))
        .collect()
}

fn process_in(pid: i32, bundle: &Path) -> bool {
    ["root", "cwd"].iter().any(|link| {
        fs::read_link(format!("/proc/{pid}/{link}")).is_ok_and(|target| target.starts_with(bundle))
    })
}

fn mounts_left(dirs: &[&Path]) -> Vec<String> {
    let points = host::mount_points().unwrap_or_default();
    points
        .into_iter()
        .filter(|p| dirs.iter().any(|d| Path::new(p).starts_with(d)))
        .map(|p| format!("mount {p}"))
        .collect()
}
