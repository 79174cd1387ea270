//! Debian's `ctr` (containerd 1.6's own client) driving the Snapshots service with the
//! overlayfs snapshotter: prepare, mounts, commit, view, ls, info, label, usage, tree, rm and
//! their errors, and the mounts `ctr snapshots mounts` prints, mounted for real to see that a
//! layer's files show through its children and that views are read-only.
//!
//! The scenario runs on real containerd 1.6 (the reference) and on keel-containerd, each on a
//! daemon of its own; the two transcripts must be the same once the temp dir and namespace are
//! normalised and timestamps are left out. Mounts are made under the daemon's temp dir, which
//! the fixture detaches on drop, on failure too.

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use keel_integration_tests::peers::containerd::{Containerd, Environment};
use keel_integration_tests::peers::keel_containerd::Supervisor;
use keel_integration_tests::peers::outcome::expect_same;
use keel_integration_tests::peers::{Outcome, Peer, Transcript};
use keel_integration_tests::{host, require_root};

/// The label `ctr` puts on the snapshots it makes, valued with the time.
const GC_ROOT: &str = "containerd.io/gc.root";

/// One daemon and the transcript of what `ctr` showed on it.
struct Run<'a> {
    ctrd: &'a Containerd,
    t: Transcript,
}

impl Run<'_> {
    fn normalise(&self, text: &str) -> String {
        text.replace(&self.ctrd.dir().display().to_string(), "DIR")
            .replace(self.ctrd.namespace(), "NS")
    }

    /// `ctr snapshots --snapshotter overlayfs <args>`, recorded (stdout normalised).
    fn snap(&mut self, args: &[&str]) -> Result<Outcome> {
        let out = self.run(args)?;
        let output = self.normalise(&out.stdout);
        self.t
            .record_output(&format!("snapshots {}", args.join(" ")), &out, output);
        Ok(out)
    }

    fn run(&self, args: &[&str]) -> Result<Outcome> {
        let mut all = vec!["snapshots", "--snapshotter", "overlayfs"];
        all.extend_from_slice(args);
        self.ctrd.ctr(&all)
    }

    /// Records `info` without its timestamps, which differ from run to run (`ctr` labels
    /// what it makes with `containerd.io/gc.root=<now>`).
    fn info(&mut self, key: &str) -> Result<()> {
        let out = self.run(&["info", key])?;
        let text: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| !l.contains("\"Created\"") && !l.contains("\"Updated\""))
            .map(|l| if l.contains(GC_ROOT) { "GC_ROOT" } else { l })
            .collect();
        let output = self.normalise(&text.join("\n"));
        self.t
            .record_output(&format!("snapshots info {key}"), &out, output);
        Ok(())
    }

    /// Records `label`, whose answer lists the labels in Go's random map order: sorted, the
    /// gc.root timestamp left out.
    fn label(&mut self, key: &str, label: &str) -> Result<()> {
        let out = self.run(&["label", key, label])?;
        let mut labels: Vec<&str> = out
            .stdout
            .trim()
            .split(',')
            .map(|l| if l.starts_with(GC_ROOT) { GC_ROOT } else { l })
            .collect();
        labels.sort_unstable();
        self.t.record_output(
            &format!("snapshots label {key} {label}"),
            &out,
            labels.join(","),
        );
        Ok(())
    }

    /// Mounts snapshot `key` on `<dir>/mnt` with the commands `ctr snapshots mounts` prints,
    /// runs `check` there (a shell script), records what it printed, and unmounts.
    fn mounted(&mut self, key: &str, check: &str) -> Result<()> {
        let target = self.ctrd.subdir("mnt")?;
        let out = self.run(&["mounts", &target.display().to_string(), key])?;
        let script = format!("set -e\n{}\ncd {}\n{check}", out.stdout, target.display());
        let result = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .context("running sh");
        let unmounted = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
        let result = Outcome::from_output(&result?);
        let output = result.stdout.clone();
        self.t
            .record_output(&format!("mounted {key}: {check}"), &result, output);
        unmounted.with_context(|| format!("unmounting {}", target.display()))?;
        Ok(())
    }
}

/// The scenario; every step is recorded in `r.t`.
fn scenario(r: &mut Run<'_>) -> Result<()> {
    r.snap(&["prepare", "base-active"])?;
    r.snap(&["prepare", "base-active"])?;
    r.snap(&["mounts", "/target", "base-active"])?;
    r.mounted("base-active", "echo one > one.txt; cat one.txt")?;
    r.snap(&["commit", "base", "base-active"])?;
    r.snap(&["commit", "base", "base-active"])?;
    r.snap(&["prepare", "child", "base"])?;
    r.snap(&["prepare", "orphan", "nope"])?;
    r.snap(&["mounts", "/target", "child"])?;
    r.mounted("child", "cat one.txt; echo two > two.txt; rm one.txt; ls")?;
    r.snap(&["commit", "layer2", "child"])?;
    r.snap(&["prepare", "top", "layer2"])?;
    r.snap(&["mounts", "/target", "top"])?;
    r.snap(&["view", "v1", "base"])?;
    r.snap(&["mounts", "/target", "v1"])?;
    r.mounted("v1", "cat one.txt; touch x 2>&1 || true")?;
    r.snap(&["view", "v2", "layer2"])?;
    r.snap(&["mounts", "/target", "v2"])?;
    r.mounted("v2", "ls; touch x 2>&1 || true")?;
    r.mounted("top", "ls")?;
    r.snap(&["ls"])?;
    r.info("base")?;
    r.info("top")?;
    r.label("base", "team=keel")?;
    r.label("base", "other=1")?;
    r.label("base", "other=")?;
    r.info("base")?;
    r.info("nope")?;
    r.snap(&["usage", "-b", "base"])?;
    r.snap(&["usage", "-b", "layer2"])?;
    r.snap(&["tree"])?;
    r.snap(&["rm", "base"])?;
    r.snap(&["rm", "nope"])?;
    r.snap(&["rm", "top", "v2", "v1", "layer2", "base"])?;
    r.snap(&["ls"])?;
    Ok(())
}

/// Runs the scenario on `supervisor`; `None` if it cannot run here (skipped, said why).
fn transcript(supervisor: Supervisor) -> Result<Option<Transcript>> {
    let ctrd = match supervisor.start(Environment::default())? {
        Peer::Ready(ctrd) => ctrd,
        Peer::Unavailable(why) => {
            keel_integration_tests::skip::skip(module_path!(), &why);
            return Ok(None);
        }
    };
    let mut run = Run {
        ctrd: &ctrd,
        t: Transcript::new(supervisor.name()),
    };
    let result = scenario(&mut run);
    let t = run.t;
    result.with_context(|| format!("{} failed:\n{t}\n{}", supervisor.name(), ctrd.problems(40)))?;
    // containerd's garbage collector removes the directories of removed snapshots shortly
    // after; keel-containerd removes them with the snapshot.
    let root = ctrd.dir().join("root");
    host::wait_until(Duration::from_secs(10), || {
        snapshot_dirs(&root).is_ok_and(|d| d.is_empty())
    });
    let leftovers = snapshot_dirs(&root)?;
    anyhow::ensure!(
        leftovers.is_empty(),
        "{} left snapshot directories: {leftovers:?}",
        supervisor.name()
    );
    Ok(Some(t))
}

/// The snapshot directories left under a daemon's root.
fn snapshot_dirs(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("io.containerd.snapshotter.v1.overlayfs/snapshots");
    let mut names = Vec::new();
    for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

#[test]
fn overlayfs_snapshots_same_as_containerd() -> Result<()> {
    require_root!();
    let Some(reference) = transcript(Supervisor::Containerd)? else {
        return Ok(());
    };
    let Some(keel) = transcript(Supervisor::KeelContainerd)? else {
        return Ok(());
    };
    expect_same(&keel, &reference, "")?;
    // The scenario did what it says, on the reference: not just two equal failures.
    let steps = reference.steps();
    let step = |what: &str| {
        steps
            .iter()
            .find(|s| s.what == what)
            .with_context(|| format!("no step {what:?}"))
    };
    anyhow::ensure!(
        step("snapshots prepare child base")?.status == 0,
        "{reference}"
    );
    let top = step("mounted top: ls")?;
    anyhow::ensure!(top.output.starts_with("two.txt\n"), "{reference}");
    let v2 = step("mounted v2: ls; touch x 2>&1 || true")?;
    anyhow::ensure!(v2.output.contains("Read-only"), "{reference}");
    println!("{keel}");
    Ok(())
}
