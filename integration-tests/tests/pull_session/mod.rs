//! A session of `ctr` commands on one daemon (containerd 1.6 or keel-containerd) over images
//! the test builds and pushes to a registry of its own, recorded in a transcript with what
//! must differ between daemons and runs normalised, for the `supervisor_pull*` tests; and
//! [`same_as_containerd`], which runs a scenario on both daemons and compares.
//!
//! Normalised, nothing else: the temp dir, the namespace, the registry's port, times (`content
//! ls`'s AGE, `leases ls`'s CREATED AT and `containerd.io/gc.expire`), and what a test names
//! in [`Session::aliases`] (a generated lease id, the other daemon's tarball).

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use keel_integration_tests::image_builder::{self, Tag};
use keel_integration_tests::peers::containerd::{Containerd, Environment};
use keel_integration_tests::peers::keel_containerd::Supervisor;
use keel_integration_tests::peers::outcome::{expect_same, Outcome};
use keel_integration_tests::peers::registry::Registry;
use keel_integration_tests::peers::{Peer, Transcript};
use keel_integration_tests::{binary, host, require_peer, require_root, rootfs};

/// The registry repository the built images are pushed to.
const REPOSITORY: &str = "keel/busybox";

/// How long a daemon may take to collect garbage after a delete without `--sync`.
const GC_WAIT: Duration = Duration::from_secs(20);

/// The built images, every tag pushed to a registry of the test's own.
pub struct Images {
    pub registry: Registry,
    pub built: image_builder::Layout,
    _layout: tempfile::TempDir,
}

impl Images {
    /// Starts the registry and pushes every [`Tag`]; `Unavailable` says what is missing.
    pub fn start() -> Result<Peer<Self>> {
        if let Err(why) = image_builder::skopeo_available() {
            return Ok(Peer::Unavailable(why));
        }
        if !binary::has_runc() {
            let why = "runc is not installed (containerd's runtime for ctr run)";
            return Ok(Peer::Unavailable(why.into()));
        }
        if !Path::new(rootfs::HOST_BUSYBOX).is_file() {
            let why = "busybox-static is not installed (the images' rootfs)";
            return Ok(Peer::Unavailable(why.into()));
        }
        let registry = match Registry::start()? {
            Peer::Ready(r) => r,
            Peer::Unavailable(why) => return Ok(Peer::Unavailable(why)),
        };
        let layout = tempfile::Builder::new()
            .prefix("keel-layout-")
            .tempdir()
            .context("making the layout's temp dir")?;
        let built = image_builder::build(layout.path())?;
        let images = Self {
            registry,
            built,
            _layout: layout,
        };
        for tag in Tag::ALL {
            image_builder::push(&images.built, tag, &images.reference(tag))?;
        }
        Ok(Peer::Ready(images))
    }

    pub fn reference(&self, tag: Tag) -> String {
        self.registry.reference(REPOSITORY, tag.name())
    }
}

/// How a step's stdout is recorded.
#[derive(Clone, Copy)]
pub enum Shown {
    /// As printed.
    Stdout,
    /// Not at all (`images pull`'s progress, which is timed).
    Nothing,
    /// A table: blanks collapsed, the rows after the header sorted.
    Table,
    /// `content ls`: digest, size and labels (sorted), without the AGE column.
    Content,
    /// `leases ls`: CREATED AT and `containerd.io/gc.expire` values as `TIME`.
    Leases,
    /// Lines sorted (`-q` listings, in the store's order).
    Sorted,
    /// `snapshots info`'s JSON with its times only checked to be set.
    SnapshotInfo,
}

/// A daemon with its transcript.
pub struct Session<'a> {
    pub ctrd: &'a mut Containerd,
    pub images: &'a Images,
    pub t: Transcript,
    pub namespace: String,
    /// Further replacements made by [`Session::normalise`] (a generated id, the other
    /// daemon's temp dir).
    pub aliases: Vec<(String, String)>,
}

impl<'a> Session<'a> {
    pub fn new(supervisor: Supervisor, ctrd: &'a mut Containerd, images: &'a Images) -> Self {
        let namespace = ctrd.namespace().to_string();
        Self {
            ctrd,
            images,
            t: Transcript::new(supervisor.name()),
            namespace,
            aliases: Vec::new(),
        }
    }

    /// `text` with the temp dir, the namespace, the registry's address and the
    /// [`Session::aliases`] replaced.
    pub fn normalise(&self, text: &str) -> String {
        let text = text
            .replace(&self.ctrd.dir().display().to_string(), "DIR")
            .replace(self.ctrd.namespace(), "NS")
            .replace(&self.images.registry.host(), "REGISTRY");
        self.aliases
            .iter()
            .fold(text, |text, (from, to)| text.replace(from, to))
    }

    /// `ctr <args>` in the session's namespace, recorded: its status, its stdout as `shown`,
    /// and on failure its stderr (the error, [`Session::normalise`]d).
    pub fn ctr(&mut self, args: &[&str], shown: Shown) -> Result<Outcome> {
        let out = self.ctrd.ctr_in(&self.namespace, args)?;
        let stdout = match shown {
            Shown::Stdout => out.stdout.clone(),
            Shown::Nothing => String::new(),
            Shown::Table => table(&out.stdout, |cols| cols),
            Shown::Content => table(&out.stdout, content_row),
            Shown::Leases => table(&out.stdout, lease_row),
            Shown::SnapshotInfo => snapshot_info(&out.stdout),
            Shown::Sorted => {
                let mut lines: Vec<&str> = out.stdout.lines().collect();
                lines.sort_unstable();
                lines.join("\n")
            }
        };
        let error = if out.status == 0 {
            String::new()
        } else {
            format!("|{}", out.stderr.trim())
        };
        let what = self.normalise(&format!("ctr {}", args.join(" ")));
        let output = self.normalise(&format!("{stdout}{error}"));
        self.t.record_output(&what, &out, output);
        Ok(out)
    }

    /// Pulls `tag` (its progress not recorded: it is timed).
    pub fn pull(&mut self, tag: Tag) -> Result<()> {
        let reference = self.images.reference(tag);
        self.ctr(
            &["images", "pull", "--plain-http", &reference],
            Shown::Nothing,
        )?
        .ok(&format!("ctr images pull {reference}"))?;
        Ok(())
    }

    /// `images ls`, `images check`, `snapshots ls`, `content ls`, `leases ls -q`.
    pub fn inventory(&mut self) -> Result<()> {
        self.ctr(&["images", "ls"], Shown::Table)?;
        self.ctr(&["images", "check"], Shown::Table)?;
        self.ctr(&["snapshots", "ls"], Shown::Table)?;
        self.ctr(&["content", "ls"], Shown::Content)?;
        self.ctr(&["leases", "ls", "-q"], Shown::Sorted)?;
        Ok(())
    }

    /// `ctr run --rm IMAGE id echo hi`, recorded (the container's id is per daemon anyway).
    pub fn run_echo(&mut self, tag: Tag, id: &str) -> Result<()> {
        let reference = self.images.reference(tag);
        self.ctr(
            &["run", "--rm", &reference, id, "echo", "hi"],
            Shown::Stdout,
        )?;
        Ok(())
    }

    /// SIGKILLs the daemon (its shims live on) and starts it again on the same dirs.
    pub fn crash_and_restart(&mut self) -> Result<()> {
        self.ctrd.kill();
        self.ctrd.restart()?;
        self.t.observe("killed and restarted", "");
        Ok(())
    }

    /// Polls `ctr content ls -q` and `ctr snapshots ls` until both are empty (or [`GC_WAIT`]
    /// passed), then records them.
    pub fn wait_collected(&mut self) -> Result<()> {
        let ns = self.namespace.clone();
        let empty = || {
            let content = self.ctrd.ctr_in(&ns, &["content", "ls", "-q"]);
            let snapshots = self.ctrd.ctr_in(&ns, &["snapshots", "ls"]);
            matches!((content, snapshots), (Ok(c), Ok(s))
                if c.stdout.trim().is_empty() && s.stdout.lines().count() <= 1)
        };
        host::wait_until(GC_WAIT, empty);
        self.ctr(&["content", "ls", "-q"], Shown::Sorted)?;
        self.ctr(&["snapshots", "ls"], Shown::Table)?;
        Ok(())
    }
}

/// The rows of a table, blanks collapsed, each row's columns through `row`, the rows after the
/// header sorted.
fn table(text: &str, row: impl Fn(Vec<String>) -> Vec<String>) -> String {
    let mut rows: Vec<String> = text
        .lines()
        .map(|l| row(l.split_whitespace().map(String::from).collect()).join(" "))
        .collect();
    if rows.len() > 1 {
        rows[1..].sort();
    }
    rows.join("\n")
}

/// `ctr snapshots info` (JSON) with `Created` and `Updated` as `set` when they are (serde_json
/// sorts the keys).
fn snapshot_info(text: &str) -> String {
    let Ok(mut info) = serde_json::from_str::<serde_json::Value>(text) else {
        return format!("not JSON: {text}");
    };
    for key in ["Created", "Updated"] {
        if let Some(time) = info.get_mut(key) {
            let set = time
                .as_str()
                .is_some_and(|t| !t.is_empty() && !t.starts_with("0001-01-01"));
            *time = serde_json::json!(if set { "set" } else { "not set" });
        }
    }
    info.to_string()
}

/// ctr prints labels `k=v,x=y` in Go's random map order.
fn sorted_labels(word: &str) -> String {
    let mut parts: Vec<&str> = word.split(',').collect();
    parts.sort_unstable();
    parts.join(",")
}

/// `DIGEST SIZE AGE... LABELS` as `DIGEST SIZE LABELS` (the age takes one to three words).
fn content_row(cols: Vec<String>) -> Vec<String> {
    if cols.first().is_some_and(|c| c == "DIGEST") {
        return vec!["DIGEST".into(), "SIZE".into(), "LABELS".into()];
    }
    let labels = cols
        .last()
        .filter(|l| l.contains('='))
        .map(|l| sorted_labels(l))
        .unwrap_or_default();
    cols.into_iter().take(2).chain([labels]).collect()
}

/// `ID CREATED-AT LABELS` with the time and any `containerd.io/gc.expire` value as `TIME`.
fn lease_row(cols: Vec<String>) -> Vec<String> {
    if cols.first().is_some_and(|c| c == "ID") {
        return cols;
    }
    cols.into_iter()
        .enumerate()
        .map(|(i, col)| match i {
            1 => "TIME".into(),
            _ => col
                .split(',')
                .map(|label| match label.split_once('=') {
                    Some(("containerd.io/gc.expire", _)) => "containerd.io/gc.expire=TIME".into(),
                    _ => label.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        })
        .collect()
}

/// Runs `scenario` on containerd (the reference), then on keel-containerd; their transcripts
/// must be equal, and the reference's must pass `meaningful` (so that a scenario that saw
/// nothing cannot pass).
pub fn same_as_containerd(
    scenario: impl Fn(&mut Session) -> Result<()>,
    meaningful: impl Fn(&Transcript) -> Result<()>,
) -> Result<()> {
    require_root!();
    let images = require_peer!(Images::start());
    let mut transcripts = Vec::new();
    for supervisor in Supervisor::ALL {
        let mut ctrd = require_peer!(supervisor.start(Environment::default()));
        let mut session = Session::new(supervisor, &mut ctrd, &images);
        scenario(&mut session)
            .with_context(|| format!("on {}:\n{}", supervisor.name(), session.t))?;
        transcripts.push((session.t, ctrd.problems(20)));
    }
    let [(reference, _), (keel, keel_problems)] = transcripts.as_slice() else {
        bail!("expected two transcripts");
    };
    meaningful(reference).with_context(|| format!("the reference saw too little:\n{reference}"))?;
    expect_same(keel, reference, keel_problems)?;
    println!("{reference}");
    // Shown with --nocapture: what keel-containerd logged as wrong on the way.
    println!("keel-containerd's errors and warnings:\n{keel_problems}");
    Ok(())
}

/// The output of the last step named `what` in `t`.
pub fn output<'t>(t: &'t Transcript, what: &str) -> Result<&'t str> {
    t.steps()
        .iter()
        .rev()
        .find(|s| s.what == what)
        .map(|s| s.output.as_str())
        .with_context(|| format!("no step {what:?}"))
}

/// What the daemon's root holds on disk, whatever its layout (both keep blobs in
/// `.../blobs/sha256/<hex>` and a snapshotter's snapshots in `.../snapshots/<id>/`): how many
/// blob files and snapshot directories. Orphans there are what `ctr` cannot show.
pub fn on_disk(ctrd: &Containerd) -> String {
    let (mut blobs, mut snapshots) = (0, 0);
    let mut pending = vec![ctrd.dir().join("root")];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let in_blobs = dir.ends_with("blobs/sha256");
        let in_snapshots = dir.file_name().is_some_and(|n| n == "snapshots");
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if in_blobs && kind.is_file() {
                blobs += 1;
            } else if in_snapshots && kind.is_dir() {
                // A snapshot's contents are not walked: they are the image's files.
                snapshots += 1;
            } else if kind.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    format!("{blobs} blob files, {snapshots} snapshot directories")
}

/// The digest of `tag`'s root as `ctr images ls` lists it.
pub fn output_digest(s: &Session, tag: Tag) -> Result<String> {
    let reference = s.images.reference(tag);
    let listed = s.ctrd.ctr(&["images", "ls"])?.ok("ctr images ls")?;
    let line = listed
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{reference} ")));
    let digest = line.and_then(|l| l.split_whitespace().nth(2));
    digest
        .map(String::from)
        .with_context(|| format!("{reference} is not listed: {}", listed.stdout))
}
