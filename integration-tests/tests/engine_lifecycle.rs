//! A container's life as the engine drives it (`keel_engine::lifecycle`) on real containerd 1.6
//! (stock runc shim) and on keel-containerd (our shim on keel-runtime): an image pulled by the
//! engine, a container made with the engine's spec, run to its end with its output in a
//! json-file log (stdout and stderr told apart), its exit status, a long-running one stopped by
//! a signal, and nothing left once removed.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use keel_engine::lifecycle::stdio::{Fifos, LogCopier};
use keel_engine::lifecycle::{Backend, LifecycleError, NewContainer};
use keel_engine::pull::progress::Reporter;
use keel_engine::pull::scope::Scope;
use keel_engine::pull::{pull, PullOptions};
use keel_engine::spec::{self, Settings};
use keel_integration_tests::image_builder::{self, Tag};
use keel_integration_tests::peers::containerd::{Containerd, Environment};
use keel_integration_tests::peers::keel_containerd::Supervisor;
use keel_integration_tests::peers::registry::Registry;
use keel_integration_tests::{require_peer, require_root};
use serde_json::Value;

struct Fixture<'a> {
    ctrd: &'a Containerd,
    backend: Backend,
    image: String,
    parent: String,
}

impl Fixture<'_> {
    /// Creates `id` running `args`, runs it to its end; its exit status and log records.
    async fn run(&self, id: &str, args: &[&str]) -> Result<(u32, Vec<Value>)> {
        self.create(id, args).await?;
        let dir = self.ctrd.subdir(&format!("io-{id}"))?;
        let fifos = Fifos::create(&dir, false, false)?;
        let log = dir.join("json.log");
        let copier = LogCopier::start(&fifos, &log).await?;
        self.backend.start(id, &fifos, false).await?;
        let exit = self.backend.wait(id).await?;
        copier.finish().await?;
        let deleted = self.backend.delete_task(id).await?;
        ensure!(
            deleted.status == exit.status,
            "delete says {deleted:?}, wait said {exit:?}"
        );
        self.backend.remove(id).await?;
        let records = std::fs::read_to_string(&log)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<Vec<Value>, _>>()?;
        Ok((exit.status, records))
    }

    async fn create(&self, id: &str, args: &[&str]) -> Result<()> {
        let settings = Settings {
            hostname: id.chars().take(12).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: spec::process::environment(&[], &[], id, false),
            cgroups_path: format!("/{}/{id}", self.ctrd.namespace()),
            ..Default::default()
        };
        let new = NewContainer {
            id: id.into(),
            image: self.image.clone(),
            parent: self.parent.clone(),
            spec: spec::build(&settings)?,
            labels: Default::default(),
        };
        self.backend.create(&new).await?;
        Ok(())
    }
}

fn lines(records: &[Value], stream: &str) -> Vec<String> {
    records
        .iter()
        .filter(|r| r["stream"] == stream)
        .filter_map(|r| r["log"].as_str().map(String::from))
        .collect()
}

async fn scenario(ctrd: &Containerd, registry: &Registry, runtime: &str) -> Result<()> {
    let layout = image_builder::build(&ctrd.subdir("layout")?)?;
    let reference = registry.reference("keel/busybox", Tag::OciGzip.name());
    image_builder::push(&layout, Tag::OciGzip, &reference)?;
    let channel = containerd_client::connect(ctrd.address()).await?;
    let pulled = pull(
        channel.clone(),
        ctrd.namespace(),
        &reference,
        &PullOptions::default(),
        &Reporter::default(),
    )
    .await
    .context("pulling")?;
    let f = Fixture {
        ctrd,
        backend: Backend {
            scope: Scope::new(channel, ctrd.namespace()),
            runtime: runtime.into(),
            snapshotter: "overlayfs".into(),
        },
        image: pulled.name.clone(),
        parent: pulled.chain_id.clone(),
    };

    let (status, records) = f
        .run(
            "echo",
            &["sh", "-c", "echo hi; echo oops >&2; echo bye; exit 3"],
        )
        .await?;
    ensure!(status == 3, "exit status {status}");
    ensure!(
        lines(&records, "stdout") == ["hi\n", "bye\n"],
        "{records:?}"
    );
    ensure!(lines(&records, "stderr") == ["oops\n"], "{records:?}");
    ensure!(records
        .iter()
        .all(|r| r["time"].as_str().is_some_and(|t| t.ends_with('Z'))));

    // 1 MiB of output arrives whole, cut into Docker's 16 KiB records.
    let (_, records) = f
        .run(
            "big",
            &["sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x"],
        )
        .await?;
    let total: usize = lines(&records, "stdout").iter().map(String::len).sum();
    ensure!(
        total == 1 << 20 && records.len() == 64,
        "{total} bytes in {} records",
        records.len()
    );

    // A long-running container stops on SIGKILL: 137.
    f.create("sleeper", &["sleep", "1000"]).await?;
    let dir = ctrd.subdir("io-sleeper")?;
    let fifos = Fifos::create(&dir, false, false)?;
    let copier = LogCopier::start(&fifos, &dir.join("json.log")).await?;
    f.backend.start("sleeper", &fifos, false).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    f.backend.kill("sleeper", 9, false).await?;
    let exit = f.backend.wait("sleeper").await?;
    copier.finish().await?;
    ensure!(exit.status == 137, "killed: {exit:?}");
    f.backend.delete_task("sleeper").await?;
    f.backend.remove("sleeper").await?;
    ensure!(
        matches!(
            f.backend.remove("sleeper").await,
            Err(LifecycleError::NotFound(_))
        ),
        "a removed container is not found"
    );

    // Nothing of the containers is left: records, tasks, their snapshots.
    let containers = ctrd
        .ctr(&["containers", "ls", "-q"])?
        .ok("ctr containers ls")?;
    ensure!(
        containers.stdout.trim().is_empty(),
        "containers left: {}",
        containers.stdout
    );
    let tasks = ctrd.ctr(&["tasks", "ls", "-q"])?.ok("ctr tasks ls")?;
    ensure!(
        tasks.stdout.trim().is_empty(),
        "tasks left: {}",
        tasks.stdout
    );
    let snapshots = ctrd.ctr(&["snapshots", "ls"])?.ok("ctr snapshots ls")?;
    ensure!(
        !snapshots
            .stdout
            .lines()
            .any(|l| ["echo ", "big ", "sleeper "]
                .iter()
                .any(|k| l.starts_with(k))),
        "snapshots left: {}",
        snapshots.stdout
    );
    Ok(())
}

fn lifecycle_on(supervisor: Supervisor, runtime: &str) -> Result<()> {
    require_root!();
    keel_integration_tests::require_skopeo!();
    let registry = require_peer!(Registry::start());
    let ctrd = require_peer!(supervisor.start(Environment::default()));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(scenario(&ctrd, &registry, runtime))
}

#[test]
fn containers_live_on_containerd_with_the_runc_shim() -> Result<()> {
    keel_integration_tests::require_runc!();
    lifecycle_on(Supervisor::Containerd, "io.containerd.runc.v2")
}

#[test]
fn containers_live_on_keel_containerd_with_our_shim() -> Result<()> {
    lifecycle_on(Supervisor::KeelContainerd, "io.containerd.keel.v2")
}
