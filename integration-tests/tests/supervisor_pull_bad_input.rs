//! Issue 6's bad input on pull, with Debian's real `ctr` against keel-containerd and against a
//! real containerd 1.6.20, compared: images pushed by hand through a local registry's HTTP
//! API, each wrong in one way, and `ctr images pull --plain-http` of each must fail the same
//! way (exit status and error, the registry's address normalised) and leave nothing
//! half-written visible: no image, no snapshot, no lease, the same ingests; and once a
//! synchronous collection ran, no content.
//!
//! - `garbage`: a manifest that does not parse for containerd's clients (a `subject` that is
//!   not a descriptor: the registry, which has no `subject`, takes it);
//! - `unknown-type`: a layer of media type `application/vnd.example.unknown`;
//! - `bad-digest`: a layer whose bytes in the registry's storage no longer match its digest;
//! - `truncated`: a layer whose manifest says it is longer than it is.
//!
//! `ctr images import` of a file that is no tarball, of an OCI layout whose layer's bytes are
//! not its digest's, and of one whose layer is missing: the same failures, nothing left.
//!
//! And Diff.Apply of a blob with an unknown media type, through the gRPC API: the same code
//! on both, and a message naming the media type.

use std::fs;
use std::io::Write as _;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::ApplyRequest;
use containerd_client::tonic::Request;
use containerd_client::types::Descriptor;
use containerd_client::with_namespace;
use keel_integration_tests::image_builder::{self, describe, media};
use keel_integration_tests::peers::containerd::{Containerd, Environment};
use keel_integration_tests::peers::keel_containerd::Supervisor;
use keel_integration_tests::peers::outcome::{expect_same, Outcome};
use keel_integration_tests::peers::registry::Registry;
use keel_integration_tests::peers::Transcript;
use keel_integration_tests::{host, require_peer, require_root};

/// Where the bad images are pushed.
const REPOSITORY: &str = "keel/bad";

/// A media type no one knows.
const UNKNOWN: &str = "application/vnd.example.unknown";

/// The bad images, by tag.
const BAD: [&str; 4] = ["garbage", "unknown-type", "bad-digest", "truncated"];

/// Pushes every [`BAD`] image to `registry`.
fn push_bad_images(registry: &Registry) -> Result<()> {
    push_garbage(registry)?;
    let unknown = layer(registry, b"unknown type\n", UNKNOWN)?;
    push_image(registry, "unknown-type", &unknown)?;
    let corrupt = layer(registry, b"bad digest\n", media::OCI_LAYER_GZIP)?;
    push_image(registry, "bad-digest", &corrupt)?;
    corrupt_blob(registry, &corrupt.1.digest)?;
    let (diff_id, mut short) = layer(registry, b"truncated\n", media::OCI_LAYER_GZIP)?;
    short.size += 10;
    push_image(registry, "truncated", &(diff_id, short))
}

/// A manifest the registry takes (it knows no `subject`) and containerd's clients cannot
/// parse: its `subject`, a descriptor in image-spec 1.1, is a string. (The registry refuses a
/// manifest that is not JSON, and serves none it cannot parse itself.)
fn push_garbage(registry: &Registry) -> Result<()> {
    let (diff_id, layer) = layer(registry, b"garbage\n", media::OCI_LAYER_GZIP)?;
    let config = image_builder::config_json(&[&diff_id])?;
    registry.put_blob(REPOSITORY, &config)?;
    let config = describe(media::OCI_CONFIG, &config);
    let manifest = image_builder::oci_manifest_json(&config, &[layer])?;
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&manifest).context("parsing the manifest")?;
    manifest["subject"] = serde_json::json!("not a descriptor");
    let manifest = serde_json::to_vec(&manifest).context("encoding the manifest")?;
    let pushed = registry.put_manifest(REPOSITORY, "garbage", media::OCI_MANIFEST, &manifest)?;
    ensure!(
        pushed.status == 201,
        "the registry refused the manifest: {} {}",
        pushed.status,
        String::from_utf8_lossy(&pushed.body)
    );
    Ok(())
}

/// A one-file gzip layer pushed as a blob: its diff ID and its descriptor as `media_type`.
fn layer(
    registry: &Registry,
    text: &[u8],
    media_type: &str,
) -> Result<(String, image_builder::Descriptor)> {
    let tar = image_builder::files_tar(&[("hello", text)])?;
    let gzip = image_builder::gzip_bytes(&tar)?;
    registry.put_blob(REPOSITORY, &gzip)?;
    Ok((image_builder::sha256(&tar), describe(media_type, &gzip)))
}

/// A config and a manifest over `layer`, the manifest tagged `tag`.
fn push_image(
    registry: &Registry,
    tag: &str,
    (diff_id, layer): &(String, image_builder::Descriptor),
) -> Result<()> {
    let config = image_builder::config_json(&[diff_id])?;
    registry.put_blob(REPOSITORY, &config)?;
    let config = describe(media::OCI_CONFIG, &config);
    let manifest = image_builder::oci_manifest_json(&config, std::slice::from_ref(layer))?;
    let pushed = registry.put_manifest(REPOSITORY, tag, media::OCI_MANIFEST, &manifest)?;
    ensure!(
        pushed.status == 201,
        "the registry refused {tag}: {} {}",
        pushed.status,
        String::from_utf8_lossy(&pushed.body)
    );
    Ok(())
}

/// Every byte of blob `digest` in the registry's storage inverted: the same size, another
/// digest.
fn corrupt_blob(registry: &Registry, digest: &str) -> Result<()> {
    let path = registry.blob_data(digest);
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let inverted: Vec<u8> = bytes.iter().map(|b| !b).collect();
    fs::write(&path, inverted).with_context(|| format!("writing {}", path.display()))
}

/// `text` with the daemon's temp dir, namespace and the registry's address replaced.
fn normalise(ctrd: &Containerd, registry: &Registry, text: &str) -> String {
    text.replace(&ctrd.dir().display().to_string(), "DIR")
        .replace(ctrd.namespace(), "NS")
        .replace(&registry.host(), "REGISTRY")
}

/// `ctr <args>` recorded with its status, then `shown` of its stdout and its stderr.
fn ctr(
    t: &mut Transcript,
    ctrd: &Containerd,
    registry: &Registry,
    args: &[&str],
    shown: fn(&str) -> String,
) -> Result<Outcome> {
    let out = ctrd.ctr(args)?;
    let what = normalise(ctrd, registry, &format!("ctr {}", args.join(" ")));
    let text = format!("{}|{}", shown(&out.stdout), error(&out.stderr));
    t.record_output(&what, &out, normalise(ctrd, registry, &text));
    Ok(out)
}

/// ctr's error: its `ctr: ...` line, without the log lines before it (timed, and naming
/// random keys).
fn error(stderr: &str) -> String {
    let lines = stderr.lines().filter(|l| l.starts_with("ctr: "));
    lines.collect::<Vec<_>>().join("\n")
}

/// `content active` as REF and SIZE, the layers' ingests only: whether and how far the
/// config's ingest got is a race between its fetch and the failing layer's (which cancels it),
/// on both daemons.
fn layer_ingests(text: &str) -> String {
    let rows = columns(text, 2);
    let rows = rows.lines().filter(|l| !l.starts_with("config-"));
    rows.collect::<Vec<_>>().join("\n")
}

/// The first `columns` columns of each line, sorted after the header.
fn columns(text: &str, columns: usize) -> String {
    let mut rows: Vec<String> = text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .take(columns)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    if rows.len() > 1 {
        rows[1..].sort();
    }
    rows.join("\n")
}

/// Each bad pull, then what is visible; with `collect`, a synchronous collection (a lease
/// removed with `--sync`) and the content left.
fn bad_pulls(
    supervisor: Supervisor,
    ctrd: &Containerd,
    registry: &Registry,
    collect: bool,
) -> Result<Transcript> {
    let mut t = Transcript::new(supervisor.name());
    for tag in BAD {
        let reference = registry.reference(REPOSITORY, tag);
        // The progress is timed: only the error is compared.
        ctr(
            &mut t,
            ctrd,
            registry,
            &["images", "pull", "--plain-http", &reference],
            |_| String::new(),
        )?;
    }
    ctr(&mut t, ctrd, registry, &["images", "ls", "-q"], |s| {
        columns(s, 1)
    })?;
    ctr(&mut t, ctrd, registry, &["snapshots", "ls"], |s| {
        columns(s, 3)
    })?;
    ctr(&mut t, ctrd, registry, &["leases", "ls", "-q"], |s| {
        columns(s, 1)
    })?;
    // What is left under ctr's pull lease (deleted when the pull failed) goes at the next
    // collection, which containerd runs when it likes: seen only after a synchronous one.
    if collect {
        ctr(
            &mut t,
            ctrd,
            registry,
            &["leases", "create", "--id", "gc"],
            str::to_string,
        )?;
        ctr(
            &mut t,
            ctrd,
            registry,
            &["leases", "rm", "--sync", "gc"],
            str::to_string,
        )?;
        ctr(&mut t, ctrd, registry, &["content", "ls", "-q"], |s| {
            columns(s, 1)
        })?;
        ctr(
            &mut t,
            ctrd,
            registry,
            &["content", "active"],
            layer_ingests,
        )?;
        ctr(&mut t, ctrd, registry, &["snapshots", "ls"], |s| {
            columns(s, 3)
        })?;
    }
    Ok(t)
}

/// [`bad_pulls`] on containerd then keel-containerd, both against the same registry.
fn bad_pulls_compared(collect: bool) -> Result<()> {
    require_root!();
    let registry = require_peer!(Registry::start());
    push_bad_images(&registry)?;
    let mut transcripts = Vec::new();
    for supervisor in Supervisor::ALL {
        let ctrd = require_peer!(supervisor.start(Environment::default()));
        let t = bad_pulls(supervisor, &ctrd, &registry, collect)?;
        transcripts.push((t, ctrd.problems(30)));
    }
    let [(reference, _), (keel, problems)] = transcripts.as_slice() else {
        bail!("expected two transcripts");
    };
    let pulls = &reference.steps()[..BAD.len()];
    ensure!(
        pulls.iter().all(|s| s.status != 0),
        "a bad pull succeeded on containerd:\n{reference}"
    );
    if collect {
        // Only the image the unpack failure left (manifest, config, layer) keeps content.
        let kept = reference
            .steps()
            .iter()
            .rev()
            .find(|s| s.what == "ctr content ls -q");
        let kept = kept.map(|s| s.output.lines().count());
        ensure!(
            kept == Some(3),
            "containerd kept other content:\n{reference}"
        );
    }
    expect_same(keel, reference, problems)?;
    println!("{reference}");
    Ok(())
}

/// Every bad pull fails as on containerd, and no image, snapshot or lease is left.
#[test]
fn bad_pulls_fail_as_on_containerd() -> Result<()> {
    bad_pulls_compared(false)
}

/// After the bad pulls, a synchronous collection leaves the same content (none) as on
/// containerd.
#[test]
fn bad_pulls_leave_no_content_after_collection() -> Result<()> {
    bad_pulls_compared(true)
}

/// An OCI layout as a tarball: `oci-layout`, `index.json` naming `manifest` as `name`, and
/// `blobs` (name, bytes), each under `blobs/sha256/<hex of its name>`.
fn layout_tar(
    name: &str,
    manifest: &image_builder::Descriptor,
    blobs: &[(&str, &[u8])],
) -> Result<Vec<u8>> {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.size,
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": "1",
            },
        }],
    });
    let index = serde_json::to_vec(&index).context("encoding index.json")?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, bytes: &[u8]| -> Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        tar.append_data(&mut header, path, bytes)
            .with_context(|| format!("adding {path}"))
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", &index)?;
    for (digest, bytes) in blobs {
        add(
            &format!("blobs/sha256/{}", digest.trim_start_matches("sha256:")),
            bytes,
        )?;
    }
    tar.into_inner().context("finishing the tarball")
}

/// The tarballs of [`bad_imports`], by name: not a tarball; a layer whose bytes are not its
/// digest's; a manifest naming a layer the tarball lacks.
fn bad_tarballs() -> Result<Vec<(&'static str, Vec<u8>)>> {
    let tar = image_builder::files_tar(&[("hello", b"import\n")])?;
    let gzip = image_builder::gzip_bytes(&tar)?;
    let layer = describe(media::OCI_LAYER_GZIP, &gzip);
    let config = image_builder::config_json(&[&image_builder::sha256(&tar)])?;
    let config_d = describe(media::OCI_CONFIG, &config);
    let manifest = image_builder::oci_manifest_json(&config_d, std::slice::from_ref(&layer))?;
    let manifest_d = describe(media::OCI_MANIFEST, &manifest);
    let corrupt: Vec<u8> = gzip.iter().map(|b| !b).collect();
    let mismatched = layout_tar(
        "example.com/bad:digest",
        &manifest_d,
        &[
            (&manifest_d.digest, &manifest),
            (&config_d.digest, &config),
            (&layer.digest, &corrupt),
        ],
    )?;
    let missing = layout_tar(
        "example.com/bad:missing",
        &manifest_d,
        &[(&manifest_d.digest, &manifest), (&config_d.digest, &config)],
    )?;
    Ok(vec![
        ("not-a-tarball", b"this is not a tarball\n".to_vec()),
        ("bad-digest", mismatched),
        ("missing-blob", missing),
    ])
}

/// `ctr images import` of each bad tarball, then what is visible, and after a synchronous
/// collection the content left.
fn bad_imports(
    supervisor: Supervisor,
    ctrd: &Containerd,
    registry: &Registry,
) -> Result<Transcript> {
    let mut t = Transcript::new(supervisor.name());
    let dir = ctrd.subdir("tarballs")?;
    for (name, bytes) in bad_tarballs()? {
        let path = dir.join(format!("{name}.tar"));
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        let path = path.display().to_string();
        ctr(
            &mut t,
            ctrd,
            registry,
            &["images", "import", &path],
            str::to_string,
        )?;
    }
    ctr(&mut t, ctrd, registry, &["images", "ls", "-q"], |s| {
        columns(s, 1)
    })?;
    ctr(&mut t, ctrd, registry, &["snapshots", "ls"], |s| {
        columns(s, 3)
    })?;
    ctr(&mut t, ctrd, registry, &["leases", "ls", "-q"], |s| {
        columns(s, 1)
    })?;
    ctr(
        &mut t,
        ctrd,
        registry,
        &["leases", "create", "--id", "gc"],
        str::to_string,
    )?;
    ctr(
        &mut t,
        ctrd,
        registry,
        &["leases", "rm", "--sync", "gc"],
        str::to_string,
    )?;
    ctr(&mut t, ctrd, registry, &["content", "ls", "-q"], |s| {
        columns(s, 1)
    })?;
    ctr(&mut t, ctrd, registry, &["content", "active"], |s| {
        columns(s, 1)
    })?;
    Ok(t)
}

/// Bad tarballs are refused by `ctr images import` as on containerd (status and error), and
/// leave no image, snapshot, lease, ingest or (after a collection) content.
#[test]
fn bad_imports_fail_as_on_containerd() -> Result<()> {
    require_root!();
    // Only for the normalisation of addresses: no image comes from it.
    let registry = require_peer!(Registry::start());
    let mut transcripts = Vec::new();
    for supervisor in Supervisor::ALL {
        let ctrd = require_peer!(supervisor.start(Environment::default()));
        transcripts.push((
            bad_imports(supervisor, &ctrd, &registry)?,
            ctrd.problems(30),
        ));
    }
    let [(reference, _), (keel, problems)] = transcripts.as_slice() else {
        bail!("expected two transcripts");
    };
    let imports = &reference.steps()[..3];
    ensure!(
        imports.iter().all(|s| s.status != 0),
        "a bad import succeeded on containerd:\n{reference}"
    );
    expect_same(keel, reference, problems)?;
    println!("{reference}");
    Ok(())
}

/// `ctr content ingest REF` with `data` on its stdin.
fn ingest(ctrd: &Containerd, reference: &str, data: &[u8]) -> Result<Outcome> {
    let mut cmd = ctrd.ctr_command_here();
    cmd.args(["content", "ingest", reference]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("spawning ctr content ingest")?;
    child
        .stdin
        .take()
        .context("ctr's stdin")?
        .write_all(data)
        .context("writing to ctr")?;
    let out = child.wait_with_output().context("waiting for ctr")?;
    Ok(Outcome::from_output(&out))
}

/// Diff.Apply of a blob the store has, as media type [`UNKNOWN`]: the code and the message.
async fn apply_unknown(ctrd: &Containerd) -> Result<(String, String)> {
    // Both collect 100 ms after they start, which would take the content ingested before it
    // (no lease holds it).
    let collected =
        || fs::read_to_string(ctrd.log()).is_ok_and(|l| l.contains("garbage collected"));
    ensure!(
        host::wait_until(Duration::from_secs(10), collected),
        "no first collection"
    );
    let data = image_builder::gzip_bytes(&image_builder::files_tar(&[("x", b"x")])?)?;
    ingest(ctrd, "unknown", &data)?.ok("ctr content ingest")?;
    let d = describe(UNKNOWN, &data);
    let channel = containerd_client::connect(ctrd.address())
        .await
        .with_context(|| format!("connecting to {}", ctrd.address().display()))?;
    let request = ApplyRequest {
        diff: Some(Descriptor {
            media_type: d.media_type,
            digest: d.digest,
            size: d.size as i64,
            annotations: Default::default(),
        }),
        ..Default::default()
    };
    let answer = DiffClient::new(channel)
        .apply(with_namespace!(request, ctrd.namespace()))
        .await;
    Ok(match answer {
        Ok(applied) => ("Ok".into(), format!("{:?}", applied.into_inner())),
        Err(status) => (format!("{:?}", status.code()), status.message().to_string()),
    })
}

/// Diff.Apply with a media type no one knows: containerd's code on keel-containerd, and a
/// message naming the media type.
#[tokio::test(flavor = "current_thread")]
async fn diff_apply_unknown_media_type_as_on_containerd() -> Result<()> {
    require_root!();
    let mut answers = Vec::new();
    for supervisor in Supervisor::ALL {
        let ctrd = require_peer!(supervisor.start(Environment::default()));
        answers.push(apply_unknown(&ctrd).await?);
    }
    let [(want_code, want_message), (code, message)] = answers.as_slice() else {
        bail!("expected two answers");
    };
    ensure!(want_code != "Ok", "containerd applied it: {want_message}");
    ensure!(
        code == want_code && message.contains(UNKNOWN),
        "keel-containerd answered {code}: {message}; containerd {want_code}: {want_message}"
    );
    println!("containerd: {want_code}: {want_message}\nkeel-containerd: {code}: {message}");
    Ok(())
}
