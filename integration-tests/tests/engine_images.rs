//! keeld's image routes driven by the real `docker` CLI: `docker images`, `image inspect`,
//! `history`, `tag` and `rmi` on images that `ctr` pulled into keeld's namespace from the local
//! registry fixture (keeld does not pull yet), with what containerd then holds checked through
//! `ctr`; and the errors dockerd gives for a missing image, a bad tag and an image in use.
//! The same on a real containerd 1.6 under keeld.

use anyhow::{ensure, Context, Result};
use keel_integration_tests::image_builder::{self, Tag};
use keel_integration_tests::peers::containerd::Containerd;
use keel_integration_tests::peers::dockerd::{Dockerd, IMAGE as DOCKERD_IMAGE};
use keel_integration_tests::peers::keeld::{docker_cli, raw_exchange, Keeld};
use keel_integration_tests::peers::registry::Registry;
use keel_integration_tests::peers::Peer;
use keel_integration_tests::{require_root, unique_id};

/// keeld with the built busybox pushed as `oci` (a manifest) and `multi` (an index whose
/// amd64 entry is the same manifest) and pulled by ctr: one image, two tags.
struct Setup {
    keeld: Keeld,
    oci: String,
    multi: String,
    diff_id: String,
    _registry: Registry,
}

fn setup(supervisor: Option<&Containerd>) -> Result<Option<Setup>> {
    if docker_cli().is_none() {
        eprintln!("SKIPPED: no docker CLI on PATH");
        return Ok(None);
    }
    if let Err(why) = image_builder::skopeo_available() {
        eprintln!("SKIPPED: {why}");
        return Ok(None);
    }
    let registry = match Registry::start()? {
        Peer::Ready(r) => r,
        Peer::Unavailable(why) => {
            eprintln!("SKIPPED: {why}");
            return Ok(None);
        }
    };
    let keeld = match supervisor {
        Some(ctrd) => Keeld::start_on(&ctrd.address())?,
        None => Keeld::start()?,
    };
    let layout = image_builder::build(&keeld.dir().join("layout"))?;
    let repo = unique_id("busybox");
    let oci = registry.reference(&repo, "oci");
    let multi = registry.reference(&repo, "multi");
    for (tag, reference) in [(Tag::OciGzip, &oci), (Tag::Multi, &multi)] {
        image_builder::push(&layout, tag, reference)?;
        keeld
            .ctr(&["images", "pull", "--plain-http", reference])?
            .ok(&format!("ctr images pull {reference}"))?;
    }
    Ok(Some(Setup {
        keeld,
        oci,
        multi,
        diff_id: layout.diff_id.clone(),
        _registry: registry,
    }))
}

/// `docker images` rows as `repo:tag id`, sorted.
fn image_rows(keeld: &Keeld) -> Result<Vec<String>> {
    let out = keeld
        .docker(&[
            "images",
            "--no-trunc",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ])?
        .ok("docker images")?;
    let mut rows: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    rows.sort();
    Ok(rows)
}

fn ctr_image_names(keeld: &Keeld) -> Result<Vec<String>> {
    let out = keeld.ctr(&["images", "ls", "-q"])?.ok("ctr images ls")?;
    Ok(out.stdout.lines().map(str::to_string).collect())
}

#[test]
fn images_lists_inspects_tags_and_removes() -> Result<()> {
    require_root!();
    let Some(s) = setup(None)? else {
        return Ok(());
    };
    list_inspect_tag_remove(&s)
}

#[test]
fn images_on_a_real_containerd() -> Result<()> {
    require_root!();
    let ctrd = match Containerd::start()? {
        Peer::Ready(ctrd) => ctrd,
        Peer::Unavailable(why) => {
            eprintln!("SKIPPED: {why}");
            return Ok(());
        }
    };
    let Some(s) = setup(Some(&ctrd))? else {
        return Ok(());
    };
    list_inspect_tag_remove(&s)
}

fn list_inspect_tag_remove(s: &Setup) -> Result<()> {
    let keeld = &s.keeld;
    let rows = image_rows(keeld)?;
    eprintln!("docker images:\n{}", rows.join("\n"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    let id = rows[0]
        .split_whitespace()
        .nth(1)
        .context("an ID")?
        .to_string();
    ensure!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(
        rows,
        vec![format!("{} {id}", s.multi), format!("{} {id}", s.oci)]
    );

    let format = "{{.Id}}|{{.Os}}|{{.Architecture}}|{{json .RootFS.Layers}}|{{len .RepoTags}}|{{json .Config.Cmd}}";
    let out = keeld
        .docker(&["image", "inspect", "--format", format, &s.oci])?
        .ok("docker image inspect")?;
    assert_eq!(
        out.stdout.trim(),
        format!("{id}|linux|amd64|[\"{}\"]|2|[\"/bin/sh\"]", s.diff_id)
    );
    // By ID prefix, as the CLI shows it.
    let short = &id["sha256:".len().."sha256:".len() + 12];
    let out = keeld
        .docker(&["image", "inspect", "--format", "{{.Id}}", short])?
        .ok("docker image inspect <short id>")?;
    assert_eq!(out.stdout.trim(), id);

    let out = keeld
        .docker(&[
            "history",
            "--no-trunc",
            "--format",
            "{{.ID}}|{{.CreatedBy}}",
            &s.oci,
        ])?
        .ok("docker history")?;
    assert_eq!(out.stdout.trim(), format!("{id}|keel image_builder"));

    let mine = format!("{}:v1", unique_id("mine"));
    keeld.docker(&["tag", &s.oci, &mine])?.ok("docker tag")?;
    let names = ctr_image_names(keeld)?;
    ensure!(
        names.contains(&format!("docker.io/library/{mine}")),
        "ctr sees the new tag: {names:?}"
    );
    let out = keeld
        .docker(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            mine.split(':').next().unwrap_or(""),
        ])?
        .ok("docker images REPO")?;
    assert_eq!(out.stdout.trim(), mine);

    let out = keeld.docker(&["rmi", short])?;
    assert_eq!(out.status, 1, "{out:?}");
    ensure!(
        out.stderr.contains(&format!(
            "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
        )),
        "{}",
        out.stderr
    );
    let out = keeld.docker(&["rmi", &mine])?.ok("docker rmi TAG")?;
    assert_eq!(out.stdout.trim(), format!("Untagged: {mine}"));
    ensure!(!ctr_image_names(keeld)?.iter().any(|n| n.ends_with(&mine)));

    let out = keeld
        .docker(&["rmi", "-f", short])?
        .ok("docker rmi -f ID")?;
    eprintln!("docker rmi -f:\n{}", out.stdout);
    ensure!(
        out.stdout.contains(&format!("Untagged: {}", s.oci)),
        "{}",
        out.stdout
    );
    ensure!(
        out.stdout.contains(&format!("Untagged: {}", s.multi)),
        "{}",
        out.stdout
    );
    ensure!(
        out.stdout.contains(&format!("Deleted: {id}")),
        "{}",
        out.stdout
    );
    assert!(image_rows(keeld)?.is_empty());
    assert!(ctr_image_names(keeld)?.is_empty());
    Ok(())
}

#[test]
fn image_errors_are_dockerds() -> Result<()> {
    require_root!();
    let Some(s) = setup(None)? else {
        return Ok(());
    };
    let keeld = &s.keeld;
    let missing = unique_id("missing");
    let out = keeld.docker(&["image", "inspect", &missing])?;
    assert_eq!(out.status, 1);
    ensure!(
        out.stderr.contains(&format!("No such image: {missing}")),
        "{}",
        out.stderr
    );
    let out = keeld.docker(&["rmi", &missing])?;
    assert_eq!(out.status, 1);
    // The 28.x CLI prints the server's message (`...:latest`); 20.10's its own.
    ensure!(
        out.stderr.contains(&format!("No such image: {missing}")),
        "{}",
        out.stderr
    );
    let r = keeld.request("DELETE", &format!("/v1.49/images/{missing}"), &[], b"")?;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()?["message"],
        format!("No such image: {missing}:latest")
    );
    // The CLI checks tags itself; the API must too.
    let r = keeld.request("POST", &format!("/images/{}/tag?repo=Bad", s.oci), &[], b"")?;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()?["message"],
        "invalid reference format: repository name (library/Bad) must be lowercase"
    );
    let r = keeld.request(
        "GET",
        "/images/json?filters=%7B%22color%22%3A%7B%22red%22%3Atrue%7D%7D",
        &[],
        b"",
    )?;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()?["message"], "invalid filter 'color'");
    // An image a container was made from is kept unless forced.
    let container = unique_id("uses");
    keeld
        .ctr(&["containers", "create", &s.oci, &container, "true"])?
        .ok("ctr containers create")?;
    let out = keeld.docker(&["rmi", &s.oci])?;
    assert_eq!(out.status, 1);
    ensure!(
        out.stderr.contains(&format!(
            "container {} is using its referenced image",
            &container[..12.min(container.len())]
        )),
        "{}",
        out.stderr
    );
    keeld
        .docker(&["rmi", "-f", &s.oci])?
        .ok("docker rmi -f TAG")?;
    let rows = image_rows(keeld)?;
    assert_eq!(rows.len(), 1, "the other tag stays: {rows:?}");
    Ok(())
}

#[test]
fn image_prune_and_system_df_see_what_containers_use() -> Result<()> {
    require_root!();
    let Some(s) = setup(None)? else {
        return Ok(());
    };
    let keeld = &s.keeld;
    let out = keeld
        .docker(&["image", "prune", "-f"])?
        .ok("docker image prune")?;
    assert_eq!(out.stdout.trim(), "Total reclaimed space: 0B");
    assert_eq!(
        image_rows(keeld)?.len(),
        2,
        "tagged images are not dangling"
    );
    let df = |keeld: &Keeld| -> Result<String> {
        Ok(keeld
            .docker(&[
                "system",
                "df",
                "--format",
                "{{.Type}} {{.TotalCount}} {{.Active}}",
            ])?
            .ok("docker system df")?
            .stdout)
    };
    let before = df(keeld)?;
    eprintln!("docker system df:\n{before}");
    assert_eq!(
        before,
        "Images 1 0\nContainers 0 0\nLocal Volumes 0 0\nBuild Cache 0 0\n"
    );
    let container = unique_id("keeps");
    keeld
        .ctr(&["containers", "create", &s.multi, &container, "true"])?
        .ok("ctr containers create")?;
    ensure!(
        df(keeld)?.starts_with("Images 1 1\n"),
        "the image is in use"
    );
    keeld
        .docker(&["image", "prune", "-a", "-f"])?
        .ok("docker image prune -a (image in use)")?;
    assert_eq!(
        image_rows(keeld)?.len(),
        2,
        "an image in use keeps all its tags"
    );
    keeld
        .ctr(&["containers", "rm", &container])?
        .ok("ctr containers rm")?;
    let out = keeld
        .docker(&["image", "prune", "-a", "-f"])?
        .ok("docker image prune -a")?;
    eprintln!("{}", out.stdout);
    ensure!(out.stdout.contains("deleted: sha256:"), "{}", out.stdout);
    ensure!(
        !out.stdout.contains("Total reclaimed space: 0B"),
        "{}",
        out.stdout
    );
    assert!(image_rows(keeld)?.is_empty());
    Ok(())
}

fn unix_now() -> Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs())
}

/// `docker events` sees tag, untag and delete: live (a stream open while they happen, ended by
/// its `--until`) and after the fact (`--since`/`--until`).
#[test]
fn docker_events_report_image_changes() -> Result<()> {
    require_root!();
    let Some(s) = setup(None)? else {
        return Ok(());
    };
    let keeld = &s.keeld;
    let cli = docker_cli().context("docker CLI")?;
    let format = "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}";
    let since = unix_now()?.saturating_sub(1).to_string();
    let until = (unix_now()? + 4).to_string();
    let live = std::process::Command::new(&cli)
        .env("DOCKER_HOST", keeld.host())
        .env("DOCKER_CONFIG", keeld.dir().join("cli"))
        .args([
            "events",
            "--until",
            &until,
            "--filter",
            "type=image",
            "--format",
            format,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("docker events")?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let mine = format!("{}:v1", unique_id("evt"));
    keeld.docker(&["tag", &s.oci, &mine])?.ok("docker tag")?;
    keeld.docker(&["rmi", &mine])?.ok("docker rmi")?;
    let out = live
        .wait_with_output()
        .context("docker events to end at --until")?;
    let live_lines = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "live:\n{live_lines}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = format!("image tag {mine}\nimage untag {mine}\n");
    assert_eq!(live_lines, expected);
    let past = keeld
        .docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &(unix_now()? + 1).to_string(),
            "--format",
            format,
        ])?
        .ok("docker events --since --until")?;
    assert_eq!(past.stdout, expected);
    keeld
        .docker(&["rmi", "-f", &s.oci, &s.multi])?
        .ok("docker rmi -f")?;
    let gone = keeld
        .docker(&[
            "events",
            "--since",
            &since,
            "--until",
            &(unix_now()? + 1).to_string(),
            "--filter",
            "event=delete",
            "--format",
            "{{.Action}} {{.Actor.ID}}",
        ])?
        .ok("docker events --filter event=delete")?;
    ensure!(
        gone.stdout.starts_with("delete sha256:"),
        "no delete event: {:?}",
        gone.stdout
    );
    Ok(())
}

/// What a daemon answers to the same mistakes, IDs and generated names replaced by
/// placeholders so the two daemons' answers can be compared.
fn image_mistakes(
    docker: &dyn Fn(&[&str]) -> Result<keel_integration_tests::peers::Outcome>,
    raw: &dyn Fn(&str, &str) -> Result<keel_integration_tests::peers::keeld::RawResponse>,
    create_container: &dyn Fn() -> Result<String>,
    image: &str,
    missing: &str,
) -> Result<Vec<String>> {
    let mut seen = Vec::new();
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", image])?
        .ok("docker image inspect")?
        .stdout
        .trim()
        .to_string();
    let short = id.strip_prefix("sha256:").unwrap_or(&id)[..12].to_string();
    let second = format!("{}:second", unique_id("second"));
    docker(&["tag", image, &second])?.ok("docker tag")?;
    let normalize = |text: &str| {
        text.replace(&id, "<id>")
            .replace(&short, "<short>")
            .replace(missing, "<missing>")
            .trim()
            .to_string()
    };
    for args in [
        vec!["rmi", missing],
        vec!["image", "inspect", missing],
        vec!["rmi", short.as_str()],
    ] {
        let out = docker(&args)?;
        seen.push(format!(
            "docker {}: {} {}",
            normalize(&args.join(" ")),
            out.status,
            normalize(&out.stderr)
        ));
    }
    // Left out, as dockerd 20.10 words them as older releases did and newer ones (which keeld
    // follows) do not: a bad tag (20.10: 500 "repository name must be lowercase"; now 400 with
    // the name) and an unknown filter (20.10: "Invalid filter"; now "invalid filter").
    for (method, path) in [
        ("POST", format!("/v1.41/images/{missing}/tag?repo=x")),
        ("DELETE", format!("/v1.41/images/{missing}")),
    ] {
        let r = raw(method, &path)?;
        seen.push(format!(
            "{method} {}: {} {}",
            normalize(&path),
            r.status,
            normalize(&r.body)
        ));
    }
    docker(&["rmi", &second])?.ok("docker rmi the second tag")?;
    let container = create_container()?;
    let container_short: String = container.chars().take(12).collect();
    let out = docker(&["rmi", image])?;
    seen.push(format!(
        "docker rmi <image> (in use): {} {}",
        out.status,
        normalize(&out.stderr)
            .replace(image, "<image>")
            .replace(&container_short, "<container>")
    ));
    Ok(seen)
}

/// keeld's answers to image mistakes (a missing image, an ID with two tags, a bad tag, an
/// unknown filter) are dockerd's, word for word.
#[test]
fn image_errors_match_a_real_dockerd() -> Result<()> {
    require_root!();
    let dockerd = match Dockerd::start(&keel_integration_tests::binary::keel_runtime()?)? {
        Peer::Ready(d) => d,
        Peer::Unavailable(why) => {
            eprintln!("SKIPPED: {why}");
            return Ok(());
        }
    };
    let Some(s) = setup(None)? else {
        return Ok(());
    };
    dockerd.import_busybox()?;
    let missing = unique_id("missing");
    let request = |socket: std::path::PathBuf| {
        move |method: &str, path: &str| {
            raw_exchange(
                &socket,
                format!("{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            )
        }
    };
    let theirs = image_mistakes(
        &|args| dockerd.docker(args),
        &request(dockerd.socket()),
        &|| {
            let out = dockerd
                .docker(&["create", DOCKERD_IMAGE, "true"])?
                .ok("docker create")?;
            Ok(out.stdout.trim().to_string())
        },
        DOCKERD_IMAGE,
        &missing,
    )?;
    // The same CLI for both: CLIs word some errors themselves.
    let ours = image_mistakes(
        &|args| s.keeld.docker_with(dockerd.cli(), args),
        &request(s.keeld.socket()),
        &|| {
            let id = unique_id("user");
            s.keeld
                .ctr(&["containers", "create", &s.oci, &id, "true"])?
                .ok("ctr containers create")?;
            Ok(id)
        },
        &s.oci,
        &missing,
    )?;
    eprintln!(
        "dockerd:\n{}\nkeeld:\n{}",
        theirs.join("\n"),
        ours.join("\n")
    );
    let ours_with_their_image: Vec<String> = ours
        .iter()
        .map(|l| l.replace(&s.oci, DOCKERD_IMAGE))
        .collect();
    assert_eq!(ours_with_their_image, theirs);
    Ok(())
}
