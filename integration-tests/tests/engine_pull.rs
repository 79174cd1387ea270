//! The engine's pull (`keel_engine::pull`), a containerd client, against real containerd 1.6
//! and against keel-containerd: the images the builder makes (OCI gzip and zstd, Docker schema
//! 2, a multi-platform index) pulled from the local registry are listed by `ctr images ls` as
//! `ctr images pull` would list them, complete for `ctr images check`, unpacked into the same
//! snapshots as ctr's own pull makes, and run with `ctr run --rm`; a second pull stores nothing
//! new; unknown tags and repositories fail with Docker's words; `ctr images rm --sync` leaves no
//! content and no snapshot behind.

use anyhow::{bail, ensure, Context, Result};
use keel_engine::pull::progress::{LayerStatus, Progress, Reporter};
use keel_engine::pull::{pull, PullError, PullOptions, Pulled};
use keel_integration_tests::image_builder::{self, Tag};
use keel_integration_tests::peers::containerd::{Containerd, Environment};
use keel_integration_tests::peers::keel_containerd::Supervisor;
use keel_integration_tests::peers::registry::Registry;
use keel_integration_tests::{require_peer, require_root};

/// Pulls `reference` into the fixture's namespace; the result and the progress reported.
fn engine_pull(
    ctrd: &Containerd,
    reference: &str,
) -> Result<(Result<Pulled, PullError>, Vec<Progress>)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let channel = containerd_client::connect(ctrd.address())
            .await
            .context("connecting to the supervisor")?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let options = PullOptions::default();
        let result = pull(
            channel,
            ctrd.namespace(),
            reference,
            &options,
            &Reporter::new(tx),
        )
        .await;
        let mut progress = Vec::new();
        while let Ok(p) = rx.try_recv() {
            progress.push(p);
        }
        Ok((result, progress))
    })
}

/// How many layers were reported with `status`.
fn reported(progress: &[Progress], status: LayerStatus) -> usize {
    progress
        .iter()
        .filter(|p| matches!(p, Progress::Layer { status: s, .. } if *s == status))
        .count()
}

/// Lines of a ctr listing, sorted, with the columns that name what is stored (first `n`).
fn columns(ctrd: &Containerd, namespace: &str, args: &[&str], n: usize) -> Result<Vec<String>> {
    let out = ctrd
        .ctr_in(namespace, args)?
        .ok(&format!("ctr {}", args.join(" ")))?;
    let mut lines: Vec<String> = out
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().take(n).collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    Ok(lines)
}

fn pull_everything(supervisor: Supervisor) -> Result<()> {
    require_root!();
    keel_integration_tests::require_skopeo!();
    keel_integration_tests::require_runc!();
    let registry = require_peer!(Registry::start());
    let ctrd = require_peer!(supervisor.start(Environment::default()));
    let layout = image_builder::build(&ctrd.subdir("layout")?)?;
    for tag in Tag::ALL {
        let reference = registry.reference("keel/busybox", tag.name());
        image_builder::push(&layout, tag, &reference)?;
        let (pulled, progress) = engine_pull(&ctrd, &reference)?;
        let pulled = pulled.with_context(|| format!("pulling {reference}"))?;
        let root = layout.root(tag).context("no root")?;
        ensure!(pulled.name == reference && pulled.target.digest == root.digest && pulled.updated);
        // Layers shared with an image pulled before are found, not pulled again.
        let (pulled_now, found) = (
            reported(&progress, LayerStatus::PullComplete),
            reported(&progress, LayerStatus::AlreadyExists),
        );
        ensure!(
            pulled_now + found > 0 && (tag != Tag::ALL[0] || found == 0),
            "{reference}: layers not reported done: {progress:?}"
        );
        check_listed(&ctrd, &reference, &root.digest, &root.media_type, tag)?;
        same_as_ctrs_pull(&ctrd, &reference)?;
        let ran = ctrd
            .ctr(&[
                "run",
                "--rm",
                &reference,
                &format!("run-{}", tag.name()),
                "echo",
                "hi",
            ])?
            .ok(&format!("ctr run {reference}"))?;
        ensure!(
            ran.stdout == "hi\n",
            "ctr run {reference} printed {:?}",
            ran.stdout
        );

        let (again, progress) = engine_pull(&ctrd, &reference)?;
        ensure!(
            !again?.updated,
            "{reference}: a second pull changed the image"
        );
        ensure!(
            reported(&progress, LayerStatus::PullComplete) == 0
                && reported(&progress, LayerStatus::AlreadyExists) > 0,
            "{reference}: the second pull did not find its layers: {progress:?}"
        );
    }
    bad_references(&ctrd, &registry)?;
    everything_goes_with_the_images(&ctrd)
}

/// `ctr images ls` and `ctr images check` as after `ctr images pull`.
fn check_listed(
    ctrd: &Containerd,
    reference: &str,
    digest: &str,
    media_type: &str,
    tag: Tag,
) -> Result<()> {
    let listed = ctrd.ctr(&["images", "ls"])?.ok("ctr images ls")?;
    let line = listed
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{reference} ")))
        .with_context(|| format!("{reference} is not listed:\n{}", listed.stdout))?;
    let platforms = match tag {
        Tag::Multi => "linux/amd64,linux/arm64/v8",
        _ => "linux/amd64",
    };
    for expected in [media_type, digest, platforms] {
        ensure!(
            line.split_whitespace().any(|w| w == expected),
            "{expected} missing from {line:?}"
        );
    }
    let check = ctrd
        .ctr(&["images", "check", &format!("name=={reference}")])?
        .ok("ctr images check")?;
    let line = check.stdout.lines().nth(1).unwrap_or_default();
    ensure!(
        line.contains("complete") && line.contains("true"),
        "ctr images check: {}",
        check.stdout
    );
    Ok(())
}

/// ctr's own pull of the same image, in another namespace, stores the same blobs and makes
/// the same snapshots (chain ids, parents, kinds).
fn same_as_ctrs_pull(ctrd: &Containerd, reference: &str) -> Result<()> {
    let theirs = "ctr-pull";
    ctrd.ctr_in(theirs, &["images", "pull", "--plain-http", reference])?
        .ok(&format!("ctr images pull {reference}"))?;
    let ours = ctrd.namespace().to_string();
    for (args, n) in [(&["snapshots", "ls"][..], 3), (&["content", "ls"][..], 1)] {
        let (a, b) = (
            columns(ctrd, &ours, args, n)?,
            columns(ctrd, theirs, args, n)?,
        );
        // Ours also holds what earlier tags stored; each of ctr's must be among ours.
        let missing: Vec<&String> = b.iter().filter(|l| !a.contains(l)).collect();
        ensure!(
            missing.is_empty(),
            "ctr {args:?}: ctr's pull has {missing:?}, ours has {a:?}"
        );
    }
    ctrd.ctr_in(theirs, &["images", "rm", "--sync", reference])?
        .ok("ctr images rm")?;
    Ok(())
}

fn bad_references(ctrd: &Containerd, registry: &Registry) -> Result<()> {
    let unknown_tag = registry.reference("keel/busybox", "nope");
    match engine_pull(ctrd, &unknown_tag)?.0 {
        Err(e @ PullError::NotFound(_)) => ensure!(
            e.to_string()
                == format!(
                    "manifest for {unknown_tag} not found: manifest unknown: manifest unknown"
                ),
            "{e}"
        ),
        other => bail!("{unknown_tag}: {other:?}"),
    }
    let unknown_repo = registry.reference("keel/nothing-here", "latest");
    match engine_pull(ctrd, &unknown_repo)?.0 {
        Err(PullError::Denied(_) | PullError::NotFound(_)) => {}
        other => bail!("{unknown_repo}: {other:?}"),
    }
    match engine_pull(ctrd, "UPPER/case")?.0 {
        Err(e @ PullError::Reference(_)) => {
            ensure!(e.to_string().starts_with("invalid reference format"))
        }
        other => bail!("UPPER/case: {other:?}"),
    }
    let images = ctrd.ctr(&["images", "ls", "-q"])?.ok("ctr images ls")?;
    ensure!(!images.stdout.contains("nope") && !images.stdout.contains("nothing-here"));
    Ok(())
}

/// `ctr images rm --sync` of every image: no content, no snapshot, no lease left.
fn everything_goes_with_the_images(ctrd: &Containerd) -> Result<()> {
    let images = ctrd.ctr(&["images", "ls", "-q"])?.ok("ctr images ls")?;
    for name in images.stdout.lines() {
        ctrd.ctr(&["images", "rm", "--sync", name])?
            .ok("ctr images rm")?;
    }
    for args in [
        &["content", "ls", "-q"][..],
        &["snapshots", "ls"],
        &["leases", "ls", "-q"],
    ] {
        let left = columns(ctrd, ctrd.namespace(), args, 1)?;
        let left: Vec<String> = match args[0] {
            // `ls -q` has no header line: columns() skipped the first entry.
            "content" | "leases" => ctrd.ctr(args)?.stdout.lines().map(String::from).collect(),
            _ => left,
        };
        ensure!(
            left.is_empty(),
            "ctr {args:?} after removing every image: {left:?}"
        );
    }
    Ok(())
}

#[test]
fn engine_pulls_into_containerd() -> Result<()> {
    pull_everything(Supervisor::Containerd)
}

#[test]
fn engine_pulls_into_keel_containerd() -> Result<()> {
    pull_everything(Supervisor::KeelContainerd)
}
