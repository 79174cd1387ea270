//! Leases and garbage collection with Debian's real `ctr` against keel-containerd, every
//! transcript compared with the same steps on a real containerd 1.6.20 (see [`pull_session`]):
//!
//! - `ctr leases create/ls/rm [--sync]`, errors included, and no lease left by a pull;
//! - `images rm --sync` and `images rm` (after a while) leave no content and no snapshot, in
//!   `ctr`'s listings and on disk (blob files, snapshot directories); what only a lease holds
//!   goes with `leases rm --sync`;
//! - one image in two namespaces, removed from one, stays whole in the other;
//! - a lease past its expiry holds nothing at the next collection, and goes itself.

mod pull_session;

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::{AddResourceRequest, Resource};
use containerd_client::tonic::Request;
use containerd_client::with_namespace;
use keel_integration_tests::image_builder::Tag;
use keel_integration_tests::peers::containerd::Containerd;
use pull_session::{on_disk, output, same_as_containerd, Session, Shown};

/// One image pulled in two namespaces (the blobs are stored once, recorded in each), then
/// removed with `--sync` from the first: the second keeps all its content and snapshot, and
/// runs; removed from the second too, nothing is left in either.
#[test]
fn namespaces_share_content_as_on_containerd() -> Result<()> {
    same_as_containerd(
        |s| {
            let first = s.namespace.clone();
            let second = format!("{first}-b");
            let reference = s.images.reference(Tag::OciGzip);
            for ns in [&first, &second] {
                s.namespace = ns.clone();
                s.pull(Tag::OciGzip)?;
            }
            s.namespace = first.clone();
            s.ctr(&["images", "rm", "--sync", &reference], Shown::Stdout)?;
            s.ctr(&["content", "ls", "-q"], Shown::Sorted)?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            s.namespace = second.clone();
            s.ctr(&["content", "ls", "-q"], Shown::Sorted)?;
            s.ctr(&["images", "check"], Shown::Table)?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            let disk = on_disk(s.ctrd);
            s.t.observe("on disk, one namespace left", disk);
            s.run_echo(Tag::OciGzip, "second-namespace")?;
            s.ctr(&["images", "rm", "--sync", &reference], Shown::Stdout)?;
            s.ctr(&["content", "ls", "-q"], Shown::Sorted)?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            let disk = on_disk(s.ctrd);
            s.t.observe("on disk", disk);
            Ok(())
        },
        |t| {
            let lists: Vec<usize> = t
                .steps()
                .iter()
                .filter(|s| s.what == "ctr content ls -q")
                .map(|s| s.output.lines().count())
                .collect();
            ensure!(lists == [0, 3, 0], "content per step: {lists:?}");
            let disk = output(t, "on disk, one namespace left")?;
            ensure!(disk == "3 blob files, 1 snapshot directories", "{disk}");
            ensure!(output(t, "on disk")? == "0 blob files, 0 snapshot directories");
            ensure!(output(t, "ctr images check")?.contains("complete (2/2)"));
            Ok(())
        },
    )
}

/// `ctr leases` create (with an id, labels, an expiry, a generated id; an id taken, an id
/// that is not valid), ls (plain, quiet, filtered), rm (plain, `--sync`, twice, unknown).
#[test]
fn leases_commands_as_on_containerd() -> Result<()> {
    same_as_containerd(
        |s| {
            s.ctr(
                &["leases", "create", "--id", "l1", "k=v", "a=b"],
                Shown::Stdout,
            )?;
            s.ctr(&["leases", "create", "--id", "l1"], Shown::Stdout)?;
            s.ctr(
                &["leases", "create", "--id", "l2", "--expires", "1h"],
                Shown::Stdout,
            )?;
            s.ctr(
                &["leases", "create", "--id", "l3", "-x", "0", "k=w"],
                Shown::Stdout,
            )?;
            // containerd takes any lease id.
            s.ctr(&["leases", "create", "--id", "odd!id"], Shown::Stdout)?;
            let generated = s.ctrd.ctr_in(&s.namespace, &["leases", "create"])?;
            let id = generated.clone().ok("ctr leases create")?.stdout;
            s.aliases.push((id.trim().to_string(), "GENERATED".into()));
            s.t.record_output(
                "ctr leases create (generated id)",
                &generated,
                String::new(),
            );
            s.ctr(&["leases", "ls"], Shown::Leases)?;
            s.ctr(&["leases", "ls", "-q", "labels.k==v"], Shown::Sorted)?;
            s.ctr(&["leases", "ls", "-q", "id==l2"], Shown::Sorted)?;
            let removed = s.ctrd.ctr_in(&s.namespace, &["leases", "rm", id.trim()])?;
            s.t.record_output("ctr leases rm (generated id)", &removed, String::new());
            s.ctr(&["leases", "ls", "-q"], Shown::Sorted)?;
            s.ctr(&["leases", "rm", "l1"], Shown::Stdout)?;
            s.ctr(&["leases", "rm", "l1"], Shown::Stdout)?;
            s.ctr(&["leases", "rm", "--sync", "l2", "l3"], Shown::Stdout)?;
            s.ctr(&["leases", "rm", "nope"], Shown::Stdout)?;
            s.ctr(&["leases", "ls"], Shown::Leases)?;
            // ctr's pull works under a lease of its own, deleted when it is done.
            s.pull(Tag::OciGzip)?;
            s.ctr(&["leases", "ls", "-q"], Shown::Sorted)?;
            Ok(())
        },
        |t| {
            let first = t.steps().iter().find(|s| s.what == "ctr leases ls");
            let listed = first.map(|s| s.output.as_str()).unwrap_or_default();
            ensure!(
                listed.contains("l1 TIME a=b,containerd.io/gc.expire=TIME,k=v"),
                "{listed}"
            );
            ensure!(listed.contains("l3 TIME k=w"), "{listed}");
            ensure!(listed.contains("GENERATED TIME"), "{listed}");
            ensure!(t.steps().iter().any(|s| s.status != 0), "no error seen");
            Ok(())
        },
    )
}

/// Adds `resource` of `kind` (`content`, `snapshots/overlayfs`) to lease `lease` through the
/// Leases API (ctr has no command for it).
async fn add_resource(ctrd: &Containerd, lease: &str, kind: &str, id: &str) -> Result<()> {
    let channel = containerd_client::connect(ctrd.address())
        .await
        .with_context(|| format!("connecting to {}", ctrd.address().display()))?;
    let request = AddResourceRequest {
        id: lease.into(),
        resource: Some(Resource {
            id: id.into(),
            r#type: kind.into(),
        }),
    };
    LeasesClient::new(channel)
        .add_resource(with_namespace!(request, ctrd.namespace()))
        .await
        .with_context(|| format!("adding {kind} {id} to lease {lease}"))?;
    Ok(())
}

/// Puts every content and snapshot of the namespace under lease `lease`.
fn hold_everything(s: &mut Session, lease: &str) -> Result<()> {
    let content = s.ctrd.ctr(&["content", "ls", "-q"])?.ok("ctr content ls")?;
    let snapshots = s.ctrd.ctr(&["snapshots", "ls"])?.ok("ctr snapshots ls")?;
    let keys = snapshots.stdout.lines().skip(1);
    let keys = keys.filter_map(|l| l.split_whitespace().next());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building a tokio runtime")?;
    for digest in content.stdout.lines() {
        runtime.block_on(add_resource(&*s.ctrd, lease, "content", digest.trim()))?;
    }
    for key in keys {
        runtime.block_on(add_resource(&*s.ctrd, lease, "snapshots/overlayfs", key))?;
    }
    Ok(())
}

/// `images rm --sync`, `images rm` (then a wait), and what only a lease holds, through
/// `leases rm --sync`: each time no content and no snapshot left.
#[test]
fn garbage_collected_as_on_containerd() -> Result<()> {
    same_as_containerd(
        |s| {
            s.pull(Tag::OciGzip)?;
            let reference = s.images.reference(Tag::OciGzip);
            s.ctr(&["images", "rm", "--sync", &reference], Shown::Stdout)?;
            s.ctr(&["content", "ls", "-q"], Shown::Sorted)?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;

            s.pull(Tag::Docker)?;
            let reference = s.images.reference(Tag::Docker);
            s.ctr(&["images", "rm", &reference], Shown::Stdout)?;
            s.wait_collected()?;

            s.pull(Tag::OciZstd)?;
            s.ctr(&["leases", "create", "--id", "hold"], Shown::Stdout)?;
            hold_everything(s, "hold")?;
            let reference = s.images.reference(Tag::OciZstd);
            s.ctr(&["images", "rm", "--sync", &reference], Shown::Stdout)?;
            s.ctr(&["content", "ls", "-q"], Shown::Sorted)?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            s.ctr(&["leases", "rm", "--sync", "hold"], Shown::Stdout)?;
            s.ctr(&["content", "ls", "-q"], Shown::Sorted)?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            let disk = on_disk(s.ctrd);
            s.t.observe("on disk", disk);
            Ok(())
        },
        |t| {
            let lists: Vec<&str> = t
                .steps()
                .iter()
                .filter(|s| s.what == "ctr content ls -q")
                .map(|s| s.output.as_str())
                .collect();
            // Collected, collected, held by the lease, collected.
            ensure!(
                matches!(lists.as_slice(), [a, b, held, c]
                    if a.is_empty() && b.is_empty() && held.lines().count() >= 3 && c.is_empty()),
                "{lists:?}"
            );
            let disk = output(t, "on disk")?;
            ensure!(disk == "0 blob files, 0 snapshot directories", "{disk}");
            Ok(())
        },
    )
}

/// A lease past its expiry holds nothing: once the next collection runs (a synchronous one,
/// by removing another lease with `--sync`), what it held is gone, and the lease with it.
#[test]
fn expired_lease_collected_as_on_containerd() -> Result<()> {
    same_as_containerd(
        |s| {
            s.pull(Tag::OciGzip)?;
            // Long enough for the steps before the wait even on a loaded machine.
            let created = Instant::now();
            let create = ["leases", "create", "--id", "short", "-x", "8s"];
            s.ctr(&create, Shown::Stdout)?;
            hold_everything(s, "short")?;
            let reference = s.images.reference(Tag::OciGzip);
            s.ctr(&["images", "rm", "--sync", &reference], Shown::Stdout)?;
            s.ctr(&["content", "ls", "-q"], Shown::Sorted)?;
            let expired = created + Duration::from_secs(9);
            std::thread::sleep(expired.saturating_duration_since(Instant::now()));
            s.ctr(&["leases", "create", "--id", "trigger"], Shown::Stdout)?;
            s.ctr(&["leases", "rm", "--sync", "trigger"], Shown::Stdout)?;
            s.ctr(&["content", "ls", "-q"], Shown::Sorted)?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            s.ctr(&["leases", "ls", "-q"], Shown::Sorted)?;
            Ok(())
        },
        |t| {
            let lists: Vec<usize> = t
                .steps()
                .iter()
                .filter(|s| s.what == "ctr content ls -q")
                .map(|s| s.output.lines().count())
                .collect();
            ensure!(lists == [3, 0], "held, then collected: {lists:?}");
            Ok(())
        },
    )
}
