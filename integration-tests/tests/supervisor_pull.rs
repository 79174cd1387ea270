//! Issue 6's acceptance with Debian's real `ctr` against keel-containerd, every transcript
//! compared with the same steps on a real containerd 1.6.20 (each daemon in its own temp dir
//! and namespace, the images from one local registry the test starts; see [`pull_session`]):
//!
//! - after `ctr images pull --plain-http` of each built image (OCI gzip, OCI zstd, Docker
//!   schema 2, multi-platform index): `images ls`, `images check`, `snapshots ls` (keys are
//!   chain ids, so identical), `snapshots info`, `content ls`, and no lease left behind by the
//!   pull; an `--all-platforms` pull;
//! - `images export`, `images rm`, `images import` (and `--no-unpack`), `images check`, `ctr run
//!   --rm IMAGE id echo hi`; each daemon's tarball imported by the other, and the tarballs'
//!   file lists compared;
//! - pulled images after a SIGKILL and restart of the daemon; `images mount`/`unmount --rm`;
//!   a removed layer pulled again and a removed snapshot unpacked again by `ctr run`;
//!   `snapshots usage`; pulls of shared content at once; the native snapshotter; an image of
//!   three layers (gzip and zstd, whiteouts, an opaque directory) pushed by hand; `images
//!   push` from the daemon to the registry and the pushed image pulled back and run.
//!
//! Leases and garbage collection are in `supervisor_pull_gc.rs`, bad input in
//! `supervisor_pull_bad_input.rs`.

mod pull_session;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Stdio;

use anyhow::{ensure, Context, Result};
use keel_integration_tests::image_builder::{self, Tag};
use keel_integration_tests::peers::containerd::Environment;
use keel_integration_tests::peers::keel_containerd::Supervisor;
use keel_integration_tests::peers::outcome::{expect_same, Outcome};
use keel_integration_tests::{require_peer, require_root};
use pull_session::{output, output_digest, same_as_containerd, Images, Session, Shown};
use sha2::{Digest, Sha256};

/// Every built image pulled, then listed, checked and its content and snapshots listed.
#[test]
fn pulled_images_listed_as_on_containerd() -> Result<()> {
    same_as_containerd(
        |s| {
            for tag in Tag::ALL {
                s.pull(tag)?;
            }
            s.inventory()?;
            let chain_id = s.ctrd.ctr(&["snapshots", "ls"])?.stdout;
            let chain_id = chain_id.lines().nth(1).and_then(|l| l.split(' ').next());
            let chain_id = chain_id.unwrap_or("none").to_string();
            s.ctr(&["snapshots", "info", &chain_id], Shown::SnapshotInfo)?;
            // The other platform's manifest and config too; nothing more to unpack.
            let multi = s.images.reference(Tag::Multi);
            let all = ["images", "pull", "--plain-http", "--all-platforms", &multi];
            s.ctr(&all, Shown::Nothing)?
                .ok("ctr images pull --all-platforms")?;
            s.ctr(&["content", "ls"], Shown::Content)?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            Ok(())
        },
        |t| {
            let check = output(t, "ctr images check")?;
            ensure!(check.matches("complete").count() == 4, "{check}");
            ensure!(check.contains("true"), "unpacked: {check}");
            let snapshots = output(t, "ctr snapshots ls")?;
            ensure!(snapshots.contains("Committed"), "{snapshots}");
            let content = output(t, "ctr content ls")?;
            ensure!(content.lines().count() == 10, "arm64's too: {content}");
            ensure!(output(t, "ctr leases ls -q")?.is_empty(), "a lease is left");
            Ok(())
        },
    )
}

/// Pulled images outlive a crash of the daemon: after SIGKILL and a restart on the same root,
/// listed, checked and run as before.
#[test]
fn pulled_images_survive_a_restart_as_on_containerd() -> Result<()> {
    same_as_containerd(
        |s| {
            s.pull(Tag::OciZstd)?;
            s.pull(Tag::Multi)?;
            s.crash_and_restart()?;
            s.inventory()?;
            s.run_echo(Tag::Multi, "after-restart")?;
            s.ctr(&["content", "active"], Shown::Table)?;
            Ok(())
        },
        |t| {
            let check = output(t, "ctr images check")?;
            ensure!(check.matches("complete").count() == 2, "{check}");
            let ran = output(
                t,
                "ctr run --rm REGISTRY/keel/busybox:multi after-restart echo hi",
            )?;
            ensure!(ran == "hi\n", "{ran}");
            Ok(())
        },
    )
}

/// `ctr images mount` (a view under a lease named by the target) and `unmount --rm`; then
/// the image damaged and repaired: its layer removed (`images check` incomplete) and pulled
/// again, its snapshot removed (not unpacked) and unpacked again by `ctr run`.
#[test]
fn mounted_damaged_and_repaired_as_on_containerd() -> Result<()> {
    same_as_containerd(
        |s| {
            s.pull(Tag::OciGzip)?;
            let reference = s.images.reference(Tag::OciGzip);
            let target = s.ctrd.subdir("mnt")?;
            let target_arg = target.display().to_string();
            s.ctr(&["images", "mount", &reference, &target_arg], Shown::Stdout)?;
            let hostname = fs::read_to_string(target.join("etc/hostname"));
            s.t.observe("mounted /etc/hostname", format!("{hostname:?}"));
            let busybox = target.join("bin/busybox").is_file();
            s.t.observe("mounted /bin/busybox", busybox);
            s.ctr(&["leases", "ls"], Shown::Leases)?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            s.ctr(&["images", "unmount", "--rm", &target_arg], Shown::Stdout)?;
            s.t.observe("unmounted", !target.join("bin/busybox").exists());
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            s.ctr(&["leases", "ls", "-q"], Shown::Sorted)?;

            let manifest = s
                .ctrd
                .ctr(&["content", "get", &output_digest(s, Tag::OciGzip)?])?;
            let manifest: serde_json::Value =
                serde_json::from_str(&manifest.stdout).context("the manifest")?;
            let layer = manifest["layers"][0]["digest"].as_str().unwrap_or("none");
            s.ctr(&["content", "rm", layer], Shown::Stdout)?;
            s.ctr(&["images", "check"], Shown::Table)?;
            s.pull(Tag::OciGzip)?;
            s.ctr(&["images", "check"], Shown::Table)?;

            let snapshots = s.ctrd.ctr(&["snapshots", "ls"])?.stdout;
            let chain_id = snapshots.lines().nth(1).and_then(|l| l.split(' ').next());
            s.ctr(
                &["snapshots", "rm", chain_id.unwrap_or("none")],
                Shown::Stdout,
            )?;
            s.ctr(&["images", "check"], Shown::Table)?;
            s.run_echo(Tag::OciGzip, "unpacks-again")?;
            s.ctr(&["images", "check"], Shown::Table)?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            s.ctr(&["snapshots", "usage"], Shown::Table)?;
            Ok(())
        },
        |t| {
            let hostname = output(t, "mounted /etc/hostname")?;
            ensure!(hostname.starts_with("Ok("), "{hostname}");
            let checks: Vec<&str> = t
                .steps()
                .iter()
                .filter(|s| s.what == "ctr images check")
                .map(|s| s.output.as_str())
                .collect();
            ensure!(
                matches!(checks.as_slice(), [broken, fixed, packed, unpacked]
                    if broken.contains("incomplete") && fixed.contains("complete (2/2)")
                        && packed.ends_with("false") && unpacked.ends_with("true")),
                "{checks:#?}"
            );
            Ok(())
        },
    )
}

/// Pulls of the same content at once (three of one image, one of another sharing its layer):
/// the writers of one ref wait for each other (containerd answers the second `Unavailable`,
/// ref locked, and ctr retries), every pull succeeds and the store holds each blob once.
#[test]
fn concurrent_pulls_as_on_containerd() -> Result<()> {
    same_as_containerd(
        |s| {
            let tags = [Tag::OciGzip, Tag::OciGzip, Tag::OciGzip, Tag::Docker];
            let mut children = Vec::new();
            for tag in tags {
                let mut cmd = s.ctrd.ctr_command_here();
                cmd.args(["images", "pull", "--plain-http", &s.images.reference(tag)]);
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                children.push(cmd.spawn().context("spawning ctr images pull")?);
            }
            for (child, tag) in children.into_iter().zip(tags) {
                let out = child.wait_with_output().context("waiting for ctr")?;
                let out = Outcome::from_output(&out);
                s.t.record_output(
                    &format!("concurrent pull {}", tag.name()),
                    &out,
                    String::new(),
                );
            }
            s.inventory()?;
            s.run_echo(Tag::Docker, "after-concurrent")
        },
        |t| {
            let check = output(t, "ctr images check")?;
            ensure!(check.matches("complete (2/2)").count() == 2, "{check}");
            Ok(())
        },
    )
}

/// `--snapshotter native` (copies instead of overlays): pull, list, check, run, remove.
#[test]
fn native_snapshotter_as_on_containerd() -> Result<()> {
    same_as_containerd(
        |s| {
            let reference = s.images.reference(Tag::OciZstd);
            let native = ["--snapshotter", "native"];
            let pull = [
                &["images", "pull"][..],
                &native,
                &["--plain-http", &reference],
            ]
            .concat();
            s.ctr(&pull, Shown::Nothing)?
                .ok("ctr images pull --snapshotter native")?;
            s.ctr(&["images", "check"], Shown::Table)?;
            s.ctr(
                &["snapshots", "--snapshotter", "native", "ls"],
                Shown::Table,
            )?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            s.ctr(
                &["snapshots", "--snapshotter", "native", "usage"],
                Shown::Table,
            )?;
            let run = [
                &["run", "--rm"][..],
                &native,
                &[&reference, "native", "echo", "hi"],
            ]
            .concat();
            s.ctr(&run, Shown::Stdout)?;
            s.ctr(&["images", "rm", "--sync", &reference], Shown::Stdout)?;
            s.ctr(
                &["snapshots", "--snapshotter", "native", "ls"],
                Shown::Table,
            )?;
            s.ctr(&["content", "ls", "-q"], Shown::Sorted)?;
            Ok(())
        },
        |t| {
            let listed = output(t, "ctr snapshots --snapshotter native ls")?;
            ensure!(listed.lines().count() == 1, "collected: {listed}");
            let first = t
                .steps()
                .iter()
                .find(|s| s.what == "ctr snapshots --snapshotter native ls");
            let first = first.map(|s| s.output.as_str()).unwrap_or_default();
            ensure!(first.contains("Committed"), "unpacked natively: {first}");
            ensure!(t.steps().iter().any(|s| s.output == "hi\n"), "ran");
            Ok(())
        },
    )
}

/// Pushes `keel/layers:3`: the busybox layer (gzip), then a gzip layer adding `/etc/added`
/// and `/tmp/old` and whiting out `/etc/hostname`, then a zstd layer adding `/etc/later`,
/// whiting out `/etc/added` and making `/tmp` opaque (only its own `/tmp/kept` left).
fn push_layered(images: &Images) -> Result<String> {
    let built = &images.built;
    let blob = |digest: &str| {
        let path = built
            .dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    let root = built.root(Tag::OciGzip).context("no oci-gzip root")?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(&root.digest)?).context("the oci-gzip manifest")?;
    let base = manifest["layers"][0]["digest"]
        .as_str()
        .context("no layer")?;
    let base = blob(base)?;
    let second = image_builder::files_tar(&[
        ("etc/added", b"added\n"),
        ("etc/.wh.hostname", b""),
        ("tmp/old", b"old\n"),
    ])?;
    let third = image_builder::files_tar(&[
        ("etc/later", b"later\n"),
        ("etc/.wh.added", b""),
        ("tmp/kept", b"tmp\n"),
        ("tmp/.wh..wh..opq", b""),
    ])?;
    let second_gz = image_builder::gzip_bytes(&second)?;
    let third_zst = zstd::encode_all(third.as_slice(), 3).context("zstd")?;
    let registry = &images.registry;
    let mut layers = Vec::new();
    for (bytes, media_type) in [
        (&base, image_builder::media::OCI_LAYER_GZIP),
        (&second_gz, image_builder::media::OCI_LAYER_GZIP),
        (&third_zst, image_builder::media::OCI_LAYER_ZSTD),
    ] {
        registry.put_blob("keel/layers", bytes)?;
        layers.push(image_builder::describe(media_type, bytes));
    }
    let diff_ids = [
        built.diff_id.clone(),
        image_builder::sha256(&second),
        image_builder::sha256(&third),
    ];
    let diff_ids: Vec<&str> = diff_ids.iter().map(String::as_str).collect();
    let config = image_builder::config_json(&diff_ids)?;
    registry.put_blob("keel/layers", &config)?;
    let config = image_builder::describe(image_builder::media::OCI_CONFIG, &config);
    let manifest = image_builder::oci_manifest_json(&config, &layers)?;
    let media_type = image_builder::media::OCI_MANIFEST;
    let pushed = registry.put_manifest("keel/layers", "3", media_type, &manifest)?;
    ensure!(
        pushed.status == 201,
        "pushing keel/layers:3: {}",
        pushed.status
    );
    Ok(registry.reference("keel/layers", "3"))
}

/// An image of three layers (gzip and zstd, whiteouts and an opaque directory): snapshots
/// chained by their parents, the whiteouts applied, as on containerd.
#[test]
fn layered_image_as_on_containerd() -> Result<()> {
    same_as_containerd(
        |s| {
            let reference = push_layered(s.images)?;
            s.ctr(
                &["images", "pull", "--plain-http", &reference],
                Shown::Nothing,
            )?
            .ok("ctr images pull keel/layers:3")?;
            s.ctr(&["images", "check"], Shown::Table)?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            s.ctr(&["snapshots", "tree"], Shown::Stdout)?;
            let script = "ls /etc /tmp; cat /etc/later /tmp/kept";
            let run = ["run", "--rm", &reference, "layers", "sh", "-c", script];
            s.ctr(&run, Shown::Stdout)?;
            s.ctr(&["images", "rm", "--sync", &reference], Shown::Stdout)?;
            s.ctr(&["snapshots", "ls"], Shown::Table)?;
            Ok(())
        },
        |t| {
            let snapshots = t.steps().iter().find(|s| s.what == "ctr snapshots ls");
            let snapshots = snapshots.map(|s| s.output.as_str()).unwrap_or_default();
            ensure!(snapshots.lines().count() == 4, "three layers: {snapshots}");
            let ran = t.steps().iter().find(|s| s.what.starts_with("ctr run"));
            let ran = ran.map(|s| s.output.as_str()).unwrap_or_default();
            ensure!(
                ran.contains("later\ntmp\n")
                    && !["added", "hostname", "old"]
                        .iter()
                        .any(|gone| ran.contains(gone)),
                "{ran}"
            );
            Ok(())
        },
    )
}

/// `ctr images push` from the daemon's store to the registry (under a new name), then the
/// pushed image removed and pulled back and run: what keel-containerd serves to a push is
/// what containerd serves.
#[test]
fn push_and_pull_back_as_on_containerd() -> Result<()> {
    same_as_containerd(
        |s| {
            // A repository per daemon, so that each push is seen to arrive.
            let repository = format!("keel/pushed-{}", s.t.runtime());
            s.aliases.push((repository.clone(), "keel/pushed".into()));
            for tag in [Tag::Docker, Tag::Multi] {
                let source = s.images.reference(tag);
                // A push needs every blob the root reaches: the index's arm64 entry too.
                let pull = ["images", "pull", "--plain-http", "--all-platforms", &source];
                s.ctr(&pull, Shown::Nothing)?
                    .ok("ctr images pull --all-platforms")?;
                let pushed = s.images.registry.reference(&repository, tag.name());
                s.ctr(&["images", "tag", &source, &pushed], Shown::Stdout)?;
                s.ctr(&["images", "push", "--plain-http", &pushed], Shown::Nothing)?;
                let digest = output_digest(s, tag)?;
                let path = format!("/v2/{repository}/manifests/{digest}");
                // distribution hides an index from a client that does not accept one.
                let accept = [
                    image_builder::media::OCI_INDEX,
                    image_builder::media::DOCKER_MANIFEST,
                ];
                let status = s.images.registry.get_status(&path, &accept.join(", "))?;
                s.t.observe("the registry has the pushed root", status);
                s.ctr(&["images", "rm", "--sync", &source, &pushed], Shown::Stdout)?;
                s.ctr(&["images", "pull", "--plain-http", &pushed], Shown::Nothing)?;
                s.ctr(&["images", "check"], Shown::Table)?;
                let id = format!("pushed-{}", tag.name());
                s.ctr(&["run", "--rm", &pushed, &id, "echo", "hi"], Shown::Stdout)?;
            }
            Ok(())
        },
        |t| {
            let roots = t
                .steps()
                .iter()
                .filter(|s| s.what == "the registry has the pushed root");
            ensure!(roots.clone().count() == 2 && roots.clone().all(|s| s.output == "200"));
            let ran = t.steps().iter().filter(|s| s.output == "hi\n").count();
            ensure!(ran == 2, "ran {ran} times");
            Ok(())
        },
    )
}

/// The entries of a tarball, sorted, with the digest of each JSON file (`index.json`,
/// `manifest.json`, `oci-layout`) after its name.
fn tar_listing(path: &Path) -> Result<String> {
    let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut archive = tar::Archive::new(file);
    let mut names = BTreeMap::new();
    for entry in archive.entries().context("reading the tarball")? {
        let mut entry = entry.context("reading an entry")?;
        let name = entry.path()?.to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)?;
        let shown = if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty())
        {
            // A blob is named by its digest: say whether its bytes are what the name says.
            let verified = format!("{:x}", Sha256::digest(&bytes)) == hex;
            format!(
                "{name}{}",
                if verified {
                    ""
                } else {
                    " (bytes do not match)"
                }
            )
        } else if name == "manifest.json" {
            format!(
                "{name} {:x}",
                Sha256::digest(docker_manifest(&bytes)?.as_bytes())
            )
        } else if name.ends_with(".json") || name == "oci-layout" {
            format!("{name} {:x}", Sha256::digest(&bytes))
        } else {
            name
        };
        names.insert(shown.clone(), shown);
    }
    Ok(names.into_values().collect::<Vec<_>>().join("\n"))
}

/// The Docker `manifest.json` of an export in a canonical form: ctr writes its entries in Go's
/// random map order.
fn docker_manifest(bytes: &[u8]) -> Result<String> {
    let parsed: serde_json::Value =
        serde_json::from_slice(bytes).context("parsing manifest.json")?;
    let mut entries: Vec<String> = parsed
        .as_array()
        .context("manifest.json is not an array")?
        .iter()
        .map(|entry| {
            let mut entry = entry.clone();
            if let Some(tags) = entry.get_mut("RepoTags").and_then(|t| t.as_array_mut()) {
                tags.sort_by_key(|t| t.to_string());
            }
            entry.to_string()
        })
        .collect();
    entries.sort();
    Ok(entries.join("\n"))
}

/// Export of every tag to one tarball, removal, import, check and run on the same daemon;
/// returns the tarball's path.
fn export_remove_import(s: &mut Session) -> Result<std::path::PathBuf> {
    for tag in Tag::ALL {
        s.pull(tag)?;
    }
    let out = s.ctrd.subdir("export")?.join("images.tar");
    let out_arg = out.display().to_string();
    let references: Vec<String> = Tag::ALL.iter().map(|&t| s.images.reference(t)).collect();
    let mut export = vec!["images", "export", out_arg.as_str()];
    export.extend(references.iter().map(String::as_str));
    s.ctr(&export, Shown::Stdout)?.ok("ctr images export")?;
    let listing = tar_listing(&out)?;
    s.t.observe("tarball entries", listing);
    let mut rm = vec!["images", "rm"];
    rm.extend(references.iter().map(String::as_str));
    s.ctr(&rm, Shown::Stdout)?;
    s.ctr(&["images", "ls", "-q"], Shown::Sorted)?;
    s.ctr(&["images", "import", &out_arg], Shown::Stdout)?;
    // Not `content ls`: ctr's import also writes an index of its own, in Go's map order, which
    // stays until a collection at a time of the daemon's choosing.
    s.ctr(&["images", "check"], Shown::Table)?;
    s.ctr(&["snapshots", "ls"], Shown::Table)?;
    s.run_echo(Tag::OciZstd, "imported")?;
    Ok(out)
}

/// `tarball` (the other daemon's export) imported into a namespace of its own: first without
/// unpacking, then with, and run.
fn import_other(s: &mut Session, tarball: &Path) -> Result<()> {
    s.namespace = format!("{}-other", s.ctrd.namespace());
    let tarball = tarball.display().to_string();
    s.aliases.push((tarball.clone(), "OTHER.tar".into()));
    s.ctr(
        &["images", "import", "--no-unpack", &tarball],
        Shown::Stdout,
    )?;
    s.ctr(&["images", "check"], Shown::Table)?;
    s.ctr(&["snapshots", "ls"], Shown::Table)?;
    s.ctr(&["images", "import", &tarball], Shown::Stdout)?;
    s.ctr(&["images", "check"], Shown::Table)?;
    s.run_echo(Tag::Docker, "from-other")?;
    Ok(())
}

/// Export, remove, import on each daemon, then each daemon's tarball imported by the other:
/// every transcript the same (keel-containerd importing containerd's tarball is compared with
/// containerd importing keel-containerd's).
#[test]
fn export_import_as_on_containerd_and_across() -> Result<()> {
    require_root!();
    let images = require_peer!(Images::start());
    let mut reference = require_peer!(Supervisor::Containerd.start(Environment::default()));
    let mut keel = require_peer!(Supervisor::KeelContainerd.start(Environment::default()));
    let mut on_reference = Session::new(Supervisor::Containerd, &mut reference, &images);
    let mut on_keel = Session::new(Supervisor::KeelContainerd, &mut keel, &images);
    let from_reference = export_remove_import(&mut on_reference)
        .with_context(|| format!("on containerd:\n{}", on_reference.t))?;
    let from_keel = export_remove_import(&mut on_keel)
        .with_context(|| format!("on keel-containerd:\n{}", on_keel.t))?;
    import_other(&mut on_reference, &from_keel)
        .with_context(|| format!("containerd importing:\n{}", on_reference.t))?;
    import_other(&mut on_keel, &from_reference)
        .with_context(|| format!("keel-containerd importing:\n{}", on_keel.t))?;
    let t = &on_reference.t;
    let entries = output(t, "tarball entries")?;
    ensure!(
        entries.contains("index.json") && entries.contains("blobs/sha256/"),
        "{entries}"
    );
    ensure!(!entries.contains("do not match"), "{entries}");
    ensure!(
        output(
            t,
            "ctr run --rm REGISTRY/keel/busybox:docker from-other echo hi"
        )? == "hi\n"
    );
    let unpacked = output(t, "ctr images check")?;
    ensure!(unpacked.matches("true").count() == 4, "{unpacked}");
    expect_same(&on_keel.t, t, &on_keel.ctrd.problems(20))?;
    println!("{t}");
    Ok(())
}
