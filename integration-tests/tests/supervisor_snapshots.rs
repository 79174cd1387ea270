//! Debian's `ctr` (containerd 1.6's own client) driving the Snapshots service with the
//! overlayfs and native snapshotters: prepare, mounts, commit, view, ls, info, label, usage, tree, rm and
//! their errors, and the mounts `ctr snapshots mounts` prints, mounted for real to see that a
//! layer's files show through its children and that views are read-only.
//!
//! The scenario runs on real containerd 1.6 (the reference) and on keel-containerd, each on a
//! daemon of its own; the two transcripts must be the same once the temp dir and namespace are
//! normalised and timestamps are left out. Mounts are made under the daemon's temp dir, which
//! the fixture detaches on drop, on failure too.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use keel_integration_tests::peers::containerd::{Containerd, Environment};
use keel_integration_tests::peers::keel_containerd::Supervisor;
use keel_integration_tests::peers::outcome::{expect_same, Step};
use keel_integration_tests::peers::{Outcome, Peer, Transcript};
use keel_integration_tests::require_root;

/// The label `ctr` puts on the snapshots it makes, valued with the time.
const GC_ROOT: &str = "containerd.io/gc.root";

/// One daemon and the transcript of what `ctr` showed on it.
struct Run<'a> {
    ctrd: &'a Containerd,
    snapshotter: &'static str,
    t: Transcript,
}

impl Run<'_> {
    fn normalise(&self, text: &str) -> String {
        text.replace(&self.ctrd.dir().display().to_string(), "DIR")
            .replace(self.ctrd.namespace(), "NS")
    }

    /// `ctr snapshots --snapshotter <snapshotter> <args>`, recorded (stdout normalised).
    fn snap(&mut self, args: &[&str]) -> Result<Outcome> {
        let out = self.run(args)?;
        let output = self.normalise(&out.stdout);
        self.t
            .record_output(&format!("snapshots {}", args.join(" ")), &out, output);
        Ok(out)
    }

    fn run(&self, args: &[&str]) -> Result<Outcome> {
        let mut all = vec!["snapshots", "--snapshotter", self.snapshotter];
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

/// The overlayfs scenario; every step is recorded in `r.t`.
fn overlayfs(r: &mut Run<'_>) -> Result<()> {
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
    // ctr makes views without a gc.root label: the collection after the first removal below
    // would take them (on both, at a moment of its own) before ctr removes them.
    r.label("v1", &format!("{GC_ROOT}=keep"))?;
    r.label("v2", &format!("{GC_ROOT}=keep"))?;
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
    r.snap(&["usage", "-b", "top", "v1"])?;
    r.snap(&["tree"])?;
    r.snap(&["rm", "base"])?;
    r.snap(&["rm", "nope"])?;
    r.snap(&["rm", "top", "v2", "v1", "layer2", "base"])?;
    r.snap(&["ls"])?;
    Ok(())
}

/// The native scenario: a child starts as a copy of its parent, a view is the parent itself.
fn native(r: &mut Run<'_>) -> Result<()> {
    r.snap(&["prepare", "a"])?;
    r.snap(&["mounts", "/target", "a"])?;
    r.mounted("a", "echo one > one.txt; cat one.txt")?;
    r.snap(&["commit", "base", "a"])?;
    r.snap(&["prepare", "child", "base"])?;
    r.snap(&["mounts", "/target", "child"])?;
    r.mounted("child", "cat one.txt; echo two > two.txt; ls")?;
    r.snap(&["view", "v", "base"])?;
    r.snap(&["mounts", "/target", "v"])?;
    r.mounted("v", "ls; touch x 2>&1 || true")?;
    r.snap(&["usage", "-b", "child", "base", "v"])?;
    r.snap(&["ls"])?;
    r.snap(&["rm", "base"])?;
    r.snap(&["rm", "v", "child", "base"])?;
    r.snap(&["ls"])?;
    Ok(())
}

type Scenario = fn(&mut Run<'_>) -> Result<()>;

/// Runs `scenario` with `snapshotter` on `supervisor`; `None` if it cannot run here
/// (skipped, said why).
fn transcript(
    supervisor: Supervisor,
    snapshotter: &'static str,
    scenario: Scenario,
) -> Result<Option<Transcript>> {
    let ctrd = match supervisor.start(Environment::default())? {
        Peer::Ready(ctrd) => ctrd,
        Peer::Unavailable(why) => {
            keel_integration_tests::skip::skip(module_path!(), &why);
            return Ok(None);
        }
    };
    let mut run = Run {
        ctrd: &ctrd,
        snapshotter,
        t: Transcript::new(supervisor.name()),
    };
    let result = scenario(&mut run);
    let t = run.t;
    result.with_context(|| format!("{} failed:\n{t}\n{}", supervisor.name(), ctrd.problems(40)))?;
    // keel-containerd removes a snapshot's directory with it; containerd leaves that to its
    // garbage collector, whose timing is its own (it kept native's base for seconds).
    if supervisor == Supervisor::KeelContainerd {
        let dir = ctrd.dir().join(format!(
            "root/io.containerd.snapshotter.v1.{snapshotter}/snapshots"
        ));
        let leftovers = snapshot_dirs(&dir)?;
        anyhow::ensure!(
            leftovers.is_empty(),
            "keel-containerd left snapshot directories: {leftovers:?}\n{}",
            ctrd.problems(40)
        );
    }
    Ok(Some(t))
}

/// The snapshot directories left in a snapshotter's `snapshots` dir.
fn snapshot_dirs(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

/// The transcripts of `scenario` on containerd and on keel-containerd, which must be the same.
fn both(snapshotter: &'static str, scenario: Scenario) -> Result<Option<(Transcript, Transcript)>> {
    let Some(reference) = transcript(Supervisor::Containerd, snapshotter, scenario)? else {
        return Ok(None);
    };
    let Some(keel) = transcript(Supervisor::KeelContainerd, snapshotter, scenario)? else {
        return Ok(None);
    };
    expect_same(&keel, &reference, "")?;
    Ok(Some((reference, keel)))
}

/// The step of `t` named `what`.
fn step<'t>(t: &'t Transcript, what: &str) -> Result<&'t Step> {
    t.steps()
        .iter()
        .find(|s| s.what == what)
        .with_context(|| format!("no step {what:?} in\n{t}"))
}

#[test]
fn native_snapshots_same_as_containerd() -> Result<()> {
    require_root!();
    let Some((reference, keel)) = both("native", native)? else {
        return Ok(());
    };
    // The scenario did what it says, on the reference: not just two equal failures.
    let child = step(
        &reference,
        "mounted child: cat one.txt; echo two > two.txt; ls",
    )?;
    anyhow::ensure!(child.output == "one\none.txt\ntwo.txt\n", "{reference}");
    let view = step(&reference, "mounted v: ls; touch x 2>&1 || true")?;
    anyhow::ensure!(view.output.starts_with("one.txt\n"), "{reference}");
    anyhow::ensure!(view.output.contains("Read-only"), "{reference}");
    println!("{keel}");
    Ok(())
}

#[test]
fn overlayfs_snapshots_same_as_containerd() -> Result<()> {
    require_root!();
    let Some((reference, keel)) = both("overlayfs", overlayfs)? else {
        return Ok(());
    };
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
