//! `docker pull` with the real docker CLI against keeld (which pulls as a containerd client):
//! the builder's images from the local registry (OCI, Docker schema 2, multi-platform index),
//! Docker's progress lines and last status, `docker images` listing them, a second pull that
//! finds everything, the `pull` event, and the errors the CLI prints for an unknown tag, an
//! unknown repository and a bad reference; the image then runs with `ctr run` in keeld's
//! namespace. The same on keeld over a real containerd 1.6.

use anyhow::{ensure, Result};
use keel_integration_tests::image_builder::{self, Tag};
use keel_integration_tests::peers::containerd::Containerd;
use keel_integration_tests::peers::keeld::{docker_cli, Keeld};
use keel_integration_tests::peers::registry::Registry;
use keel_integration_tests::{require, require_peer, require_root, unique_id};

fn pulls(keeld: &Keeld, registry: &Registry) -> Result<()> {
    let layout = image_builder::build(&keeld.dir().join("layout"))?;
    let repo = unique_id("busybox");
    for tag in [Tag::OciGzip, Tag::Docker, Tag::Multi] {
        let reference = registry.reference(&repo, tag.name());
        image_builder::push(&layout, tag, &reference)?;
        let out = keeld
            .docker(&["pull", &reference])?
            .ok(&format!("docker pull {reference}"))?;
        let text = &out.stdout;
        ensure!(
            text.contains(&format!("{}: Pulling from {repo}", tag.name())),
            "{text}"
        );
        let root = layout
            .root(tag)
            .map(|r| r.digest.clone())
            .unwrap_or_default();
        ensure!(text.contains(&format!("Digest: {root}")), "{text}");
        ensure!(
            text.contains(&format!("Status: Downloaded newer image for {reference}")),
            "{text}"
        );
        ensure!(text.lines().last() == Some(reference.as_str()), "{text}");

        let again = keeld
            .docker(&["pull", &reference])?
            .ok("docker pull, again")?;
        ensure!(
            again
                .stdout
                .contains(&format!("Status: Image is up to date for {reference}")),
            "{}",
            again.stdout
        );
        let listed = keeld
            .docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])?
            .ok("docker images")?;
        ensure!(
            listed.stdout.lines().any(|l| l == reference),
            "{}",
            listed.stdout
        );
    }
    let reference = registry.reference(&repo, Tag::OciGzip.name());
    let ran = keeld
        .ctr(&[
            "run",
            "--rm",
            &reference,
            &unique_id("pulled"),
            "echo",
            "hi",
        ])?
        .ok("ctr run of the pulled image")?;
    ensure!(ran.stdout == "hi\n", "{}", ran.stdout);

    // The event is published as the pull's stream ends; give a loaded machine a moment.
    let wanted = format!("image pull {reference}");
    let mut seen = String::new();
    for _ in 0..20 {
        let events = keeld
            .docker(&[
                "events",
                "--since",
                "0",
                "--until",
                "0s",
                "--filter",
                "event=pull",
            ])?
            .ok("docker events")?;
        seen = events.stdout;
        if seen.contains(&wanted) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let log = std::fs::read_to_string(keeld.log()).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    ensure!(
        seen.contains(&wanted),
        "no {wanted:?} in docker events: {seen:?}\nkeeld's log, last lines first:\n{}",
        tail.join("\n")
    );
    Ok(())
}

fn errors(keeld: &Keeld, registry: &Registry) -> Result<()> {
    let unknown_tag = registry.reference(&unique_id("busybox"), "nope");
    let out = keeld.docker(&["pull", &unknown_tag])?;
    ensure!(out.status == 1, "{out:?}");
    ensure!(
        out.stderr.contains(&format!(
            "Error response from daemon: manifest for {unknown_tag} not found: manifest unknown"
        )),
        "{}",
        out.stderr
    );
    let out = keeld.docker(&["pull", "UPPER/case"])?;
    ensure!(
        out.status == 1 && out.stderr.contains("invalid reference format"),
        "{out:?}"
    );
    let images = keeld.docker(&["images", "-q"])?.ok("docker images")?;
    ensure!(
        images.stdout.trim().is_empty(),
        "a failed pull left {}",
        images.stdout
    );
    Ok(())
}

#[test]
fn docker_pull_through_keeld() -> Result<()> {
    require_root!();
    require!(docker_cli().is_some(), "no docker CLI on PATH");
    keel_integration_tests::require_skopeo!();
    let registry = require_peer!(Registry::start());
    let keeld = Keeld::start()?;
    errors(&keeld, &registry)?;
    pulls(&keeld, &registry)
}

#[test]
fn docker_pull_through_keeld_on_a_real_containerd() -> Result<()> {
    require_root!();
    require!(docker_cli().is_some(), "no docker CLI on PATH");
    keel_integration_tests::require_skopeo!();
    let registry = require_peer!(Registry::start());
    let ctrd = require_peer!(Containerd::start());
    let keeld = Keeld::start_on(&ctrd.address())?;
    pulls(&keeld, &registry)
}
