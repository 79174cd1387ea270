//! containerd's Images service on keel-containerd and on containerd 1.6, driven the same way
//! and compared step by step: through `containerd-client` (containerd's maintainers' Rust
//! bindings: Create, Get, List with filters, Update with masks, Delete, and the errors of each,
//! code and message) and through Debian's real `ctr` (`images ls`, `label`, `tag`, `rm`) on
//! images made through the API. No content exists for these images (the Content service is
//! not there yet), so `ctr images ls` reports a size of 0 and no platform on both daemons,
//! and its stderr (the failed size lookups, worded per daemon) is not compared. A bad filter
//! is compared by its code only: keel's filter parser words its errors its own way.
//!
//! The registry fixture and the image builder are proved here on real containerd: every tag
//! of a built layout is pushed to a local registry, pulled with `ctr images pull --plain-http`,
//! listed with its digest and platforms, and run with `ctr run --rm`.

use anyhow::{bail, Context, Result};
use containerd_client::services::v1::{
    images_client::ImagesClient, CreateImageRequest, DeleteImageRequest, GetImageRequest, Image,
    ListImagesRequest, UpdateImageRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Request, Status};
use containerd_client::types::Descriptor;
use containerd_client::with_namespace;
use keel_integration_tests::image_builder::{self, Tag};
use keel_integration_tests::peers::containerd::{Containerd, Environment};
use keel_integration_tests::peers::keel_containerd::Supervisor;
use keel_integration_tests::peers::outcome::expect_same;
use keel_integration_tests::peers::registry::Registry;
use keel_integration_tests::peers::{Peer, Transcript};
use keel_integration_tests::{require_peer, require_root};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const BUSYBOX: &str = "docker.io/library/busybox:latest";

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn image(name: &str, media_type: &str, d: &str, labels: &[(&str, &str)]) -> Image {
    Image {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        target: Some(Descriptor {
            media_type: media_type.into(),
            digest: d.into(),
            size: 1234,
            annotations: [("note".to_string(), "x".to_string())].into(),
        }),
        created_at: None,
        updated_at: None,
    }
}

/// An image as the transcript shows it: what the server keeps, without the timestamps
/// (checked separately), maps sorted.
fn show(image: &Image) -> String {
    let mut labels: Vec<_> = image.labels.iter().collect();
    labels.sort();
    let target = image.target.clone().unwrap_or_default();
    let mut annotations: Vec<_> = target.annotations.iter().collect();
    annotations.sort();
    format!(
        "{} labels={labels:?} target={} {} {} {annotations:?} stamped={}",
        image.name,
        target.media_type,
        target.digest,
        target.size,
        image.created_at.is_some() && image.updated_at.is_some()
    )
}

/// An answer as the transcript shows it: the image(s), or the gRPC code and message.
fn answer<T>(
    r: Result<containerd_client::tonic::Response<T>, Status>,
    f: impl Fn(T) -> String,
) -> String {
    match r {
        Ok(response) => f(response.into_inner()),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

struct Api {
    client: ImagesClient<Channel>,
    namespace: String,
}

impl Api {
    fn req<T>(&self, message: T) -> Request<T> {
        with_namespace!(message, self.namespace.as_str())
    }

    async fn create(&mut self, image: Image) -> String {
        let r = self
            .client
            .create(self.req(CreateImageRequest {
                image: Some(image),
                source_date_epoch: None,
            }))
            .await;
        answer(r, |a| a.image.as_ref().map(show).unwrap_or_default())
    }

    async fn get(&mut self, name: &str) -> String {
        let r = self
            .client
            .get(self.req(GetImageRequest { name: name.into() }))
            .await;
        answer(r, |a| a.image.as_ref().map(show).unwrap_or_default())
    }

    async fn list(&mut self, filters: &[&str]) -> String {
        let filters = filters.iter().map(ToString::to_string).collect();
        let r = self
            .client
            .list(self.req(ListImagesRequest { filters }))
            .await;
        answer(r, |a| {
            a.images
                .iter()
                .map(|i| i.name.clone())
                .collect::<Vec<_>>()
                .join(",")
        })
    }

    async fn update(&mut self, image: Image, paths: &[&str]) -> String {
        let update_mask = (!paths.is_empty()).then(|| prost_types::FieldMask {
            paths: paths.iter().map(ToString::to_string).collect(),
        });
        let r = self
            .client
            .update(self.req(UpdateImageRequest {
                image: Some(image),
                update_mask,
                source_date_epoch: None,
            }))
            .await;
        answer(r, |a| a.image.as_ref().map(show).unwrap_or_default())
    }

    async fn delete(&mut self, name: &str, sync: bool) -> String {
        let r = self
            .client
            .delete(self.req(DeleteImageRequest {
                name: name.into(),
                sync,
                target: None,
            }))
            .await;
        answer(r, |()| "deleted".into())
    }
}

/// Every call of the scenario, in order, with what it answered.
async fn api_steps(api: &mut Api, t: &mut Transcript) -> Result<()> {
    let pinned = format!("localhost:5000/x@{}", digest('b'));
    let busybox = image(
        BUSYBOX,
        INDEX,
        &digest('a'),
        &[("app", "web"), ("empty", "")],
    );
    t.observe("create busybox", api.create(busybox.clone()).await);
    t.observe(
        "create pinned",
        api.create(image(&pinned, MANIFEST, &digest('b'), &[]))
            .await,
    );
    t.observe("create again", api.create(busybox.clone()).await);
    let mut no_target = busybox.clone();
    no_target.name = "no-target".into();
    no_target.target = None;
    t.observe("create without target", api.create(no_target).await);
    let mut bad = image("bad", "", &digest('c'), &[]);
    t.observe("create without media type", api.create(bad.clone()).await);
    bad.target = Some(Descriptor {
        media_type: MANIFEST.into(),
        digest: "sha256:abc".into(),
        size: 1,
        annotations: Default::default(),
    });
    t.observe("create short digest", api.create(bad.clone()).await);
    bad.target = Some(Descriptor {
        media_type: MANIFEST.into(),
        digest: digest('c'),
        size: 0,
        annotations: Default::default(),
    });
    t.observe("create size 0", api.create(bad).await);
    t.observe(
        "create nameless",
        api.create(image("", INDEX, &digest('a'), &[])).await,
    );

    t.observe("get busybox", api.get(BUSYBOX).await);
    t.observe("get pinned", api.get(&pinned).await);
    t.observe("get missing", api.get("nope:1").await);

    t.observe("list", api.list(&[]).await);
    t.observe("list label", api.list(&["labels.app==web"]).await);
    t.observe(
        "list digest",
        api.list(&[&format!("target.digest=={}", digest('b'))])
            .await,
    );
    t.observe(
        "list media type",
        api.list(&[&format!("target.mediatype=={INDEX}")]).await,
    );
    t.observe("list name regexp", api.list(&["name~=^localhost"]).await);
    t.observe("list either", api.list(&["name==nope", "labels.app"]).await);
    // The code only: the parse error's wording is the filter parser's, not this service's.
    let bad_filter = api.list(&["name=="]).await;
    let code = bad_filter.split(':').next().unwrap_or_default().to_string();
    t.observe("list bad filter", code);

    let labels = image(BUSYBOX, "", "", &[("k", "v"), ("app", "db")]);
    t.observe(
        "update labels.k",
        api.update(labels.clone(), &["labels.k"]).await,
    );
    t.observe(
        "update labels.app removed",
        api.update(image(BUSYBOX, "", "", &[]), &["labels.app"])
            .await,
    );
    t.observe(
        "update labels",
        api.update(labels.clone(), &["labels"]).await,
    );
    t.observe(
        "update annotations.note",
        api.update(image(BUSYBOX, "", "", &[]), &["annotations.note"])
            .await,
    );
    t.observe(
        "update target",
        api.update(image(BUSYBOX, MANIFEST, &digest('d'), &[]), &["target"])
            .await,
    );
    t.observe(
        "update bad target",
        api.update(labels.clone(), &["target"]).await,
    );
    t.observe(
        "update bad path",
        api.update(labels.clone(), &["name"]).await,
    );
    t.observe(
        "update no mask, no target",
        api.update(labels.clone(), &[]).await,
    );
    t.observe(
        "update no mask",
        api.update(image(BUSYBOX, INDEX, &digest('e'), &[("only", "1")]), &[])
            .await,
    );
    t.observe(
        "update missing",
        api.update(image("nope:1", INDEX, &digest('a'), &[]), &["labels"])
            .await,
    );
    t.observe(
        "update nameless",
        api.update(image("", INDEX, &digest('a'), &[]), &["labels"])
            .await,
    );
    t.observe("get after updates", api.get(BUSYBOX).await);

    t.observe("delete pinned", api.delete(&pinned, false).await);
    t.observe("delete pinned again", api.delete(&pinned, false).await);
    t.observe("list after delete", api.list(&[]).await);
    Ok(())
}

/// `ctr images` on what the API made: `ls` (stdout only), `label`, `tag` (Get then Create),
/// `rm`.
fn ctr_steps(ctrd: &Containerd, t: &mut Transcript) -> Result<()> {
    let ctr = |t: &mut Transcript, what: &str, args: &[&str]| -> Result<()> {
        let out = ctrd.ctr(args)?;
        t.record(what, &out);
        Ok(())
    };
    // ctr prints an image's labels from a Go map: in random order.
    let label = |t: &mut Transcript, what: &str, args: &[&str]| -> Result<()> {
        let out = ctrd.ctr(args)?;
        let mut labels: Vec<&str> = out.stdout.trim_end().split(',').collect();
        labels.sort_unstable();
        t.record_output(what, &out, labels.join(","));
        Ok(())
    };
    ctr(t, "ctr images ls", &["images", "ls"])?;
    ctr(t, "ctr images ls -q", &["images", "ls", "-q"])?;
    ctr(
        t,
        "ctr images ls filter",
        &["images", "ls", "-q", "labels.only==1"],
    )?;
    label(
        t,
        "ctr images label",
        &["images", "label", BUSYBOX, "color=blue"],
    )?;
    label(
        t,
        "ctr images label remove",
        &["images", "label", BUSYBOX, "only="],
    )?;
    ctr(
        t,
        "ctr images tag",
        &["images", "tag", BUSYBOX, "example.com/copy:1"],
    )?;
    ctr(
        t,
        "ctr images tag existing",
        &["images", "tag", BUSYBOX, "example.com/copy:1"],
    )?;
    ctr(
        t,
        "ctr images tag --force",
        &["images", "tag", "--force", BUSYBOX, "example.com/copy:1"],
    )?;
    ctr(
        t,
        "ctr images tag missing",
        &["images", "tag", "nope:1", "example.com/x:1"],
    )?;
    ctr(t, "ctr images ls after", &["images", "ls"])?;
    ctr(t, "ctr images rm", &["images", "rm", "example.com/copy:1"])?;
    ctr(
        t,
        "ctr images rm --sync",
        &["images", "rm", "--sync", BUSYBOX],
    )?;
    ctr(t, "ctr images rm missing", &["images", "rm", "nope:1"])?;
    ctr(t, "ctr images ls empty", &["images", "ls", "-q"])?;
    Ok(())
}

async fn scenario_on(supervisor: Supervisor) -> Result<Option<Transcript>> {
    let ctrd = match supervisor.start(Environment::default())? {
        Peer::Ready(c) => c,
        Peer::Unavailable(why) => {
            keel_integration_tests::skip::skip(module_path!(), &why);
            return Ok(None);
        }
    };
    let channel = containerd_client::connect(ctrd.address())
        .await
        .with_context(|| format!("connecting to {}", ctrd.address().display()))?;
    let mut api = Api {
        client: ImagesClient::new(channel),
        namespace: ctrd.namespace().to_string(),
    };
    let mut t = Transcript::new(supervisor.name());
    api_steps(&mut api, &mut t).await?;
    ctr_steps(&ctrd, &mut t)?;
    Ok(Some(t))
}

/// The whole scenario on containerd 1.6, then on keel-containerd: the same answers, step by
/// step.
#[tokio::test(flavor = "current_thread")]
async fn images_match_containerd() -> Result<()> {
    require_root!();
    let Some(reference) = scenario_on(Supervisor::Containerd).await? else {
        return Ok(());
    };
    let Some(keel) = scenario_on(Supervisor::KeelContainerd).await? else {
        return Ok(());
    };
    if reference
        .steps()
        .iter()
        .all(|s| s.output.contains("Unimplemented"))
    {
        bail!("the reference answered nothing:\n{reference}");
    }
    expect_same(&keel, &reference, "")?;
    println!("{reference}");
    Ok(())
}

/// The images the builder makes (OCI gzip and zstd, Docker schema 2, a multi-platform index),
/// pushed to the registry fixture, then `ctr images pull --plain-http`, `images ls` and `ctr run
/// --rm IMAGE id echo hi`: on containerd 1.6 (proof the images are well-formed) and on
/// keel-containerd (content, images, snapshots and diff together).
#[test]
fn built_images_pull_and_run_on_containerd() -> Result<()> {
    pull_and_run(Supervisor::Containerd)
}

#[test]
fn built_images_pull_and_run_on_keel_containerd() -> Result<()> {
    pull_and_run(Supervisor::KeelContainerd)
}

fn pull_and_run(supervisor: Supervisor) -> Result<()> {
    require_root!();
    keel_integration_tests::require_skopeo!();
    keel_integration_tests::require_runc!();
    let registry = require_peer!(Registry::start());
    let ctrd = require_peer!(supervisor.start(Environment::default()));
    let layout_dir = ctrd.subdir("layout")?;
    let layout = image_builder::build(&layout_dir)?;
    for tag in Tag::ALL {
        let reference = registry.reference("keel/busybox", tag.name());
        image_builder::push(&layout, tag, &reference)?;
        ctrd.ctr(&["images", "pull", "--plain-http", &reference])?
            .ok(&format!("ctr images pull {reference}"))?;
        let listed = ctrd.ctr(&["images", "ls"])?.ok("ctr images ls")?;
        let line = listed
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{reference} ")))
            .with_context(|| format!("{reference} is not listed:\n{}", listed.stdout))?;
        let root = layout.root(tag).context("no root")?;
        let platforms = match tag {
            Tag::Multi => "linux/amd64,linux/arm64/v8",
            _ => "linux/amd64",
        };
        for expected in [root.media_type.as_str(), root.digest.as_str(), platforms] {
            if !line.split_whitespace().any(|w| w == expected) {
                bail!("{reference}: {expected} missing from {line:?}");
            }
        }
        let id = format!("run-{}", tag.name());
        let ran = ctrd
            .ctr(&["run", "--rm", &reference, &id, "echo", "hi"])?
            .ok(&format!("ctr run {reference}"))?;
        if ran.stdout != "hi\n" {
            bail!("ctr run {reference} printed {:?}", ran.stdout);
        }
    }
    Ok(())
}
