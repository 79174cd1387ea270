//! keeld's system API driven by the real `docker` CLI (28.x on PATH) and by raw HTTP on its
//! socket: `docker version`, `docker info`, API version negotiation, `/_ping`, the errors of
//! unknown routes, versions and bodies; the socket's mode, a restart after SIGKILL (stale
//! socket, running supervisor reused) and a clean shutdown; and the same requests on a real
//! dockerd (Debian's 20.10), whose answers ours must match where the API says they should.
//!
//! Each test starts its own keeld in a temp dir, which starts its own keel-containerd there.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use keel_integration_tests::binary;
use keel_integration_tests::image_builder::{self, Tag};
use keel_integration_tests::peers::containerd::Containerd;
use keel_integration_tests::peers::dockerd::Dockerd;
use keel_integration_tests::peers::keeld::{docker_cli, raw_exchange, Keeld};
use keel_integration_tests::peers::process;
use keel_integration_tests::peers::registry::Registry;
use keel_integration_tests::{require, require_peer, require_root, unique_id};
use serde_json::Value;

/// The newest API version keeld serves (its models are bollard-stubs 1.49).
const MAX_API: &str = "1.49";

/// `GET /info` as JSON: every field the API defines, whatever the CLI's version keeps of it.
fn docker_info(keeld: &Keeld) -> Result<Value> {
    let response = keeld.request("GET", "/v1.49/info", &[], b"")?;
    ensure!(response.status == 200, "GET /info: {response:?}");
    response.json()
}

/// The API version the CLI settles on with keeld: its own newest or keeld's, the lower (the
/// 28.x CLI speaks 1.50 and goes down to 1.49; Debian's 20.10 CLI speaks 1.41).
fn negotiated_api(keeld: &Keeld) -> Result<String> {
    let out = keeld
        .docker(&["version", "--format", "{{.Client.DefaultAPIVersion}}"])?
        .ok("docker version --format {{.Client.DefaultAPIVersion}}")?;
    let cli = out.stdout.trim().to_string();
    let minor = |v: &str| -> u32 {
        v.split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    };
    Ok(if minor(&cli) < minor(MAX_API) {
        cli
    } else {
        MAX_API.to_string()
    })
}

fn first_number_in(text: &str, key: &str) -> Option<i64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn docker_version_shows_the_engine_and_its_supervisor() -> Result<()> {
    require_root!();
    require!(docker_cli().is_some(), "no docker CLI on PATH");
    let keeld = Keeld::start()?;
    let out = keeld.docker(&["version"])?.ok("docker version")?;
    eprintln!("{}", out.stdout);
    ensure!(out.stdout.contains("Server: Keel Engine"), "{}", out.stdout);
    ensure!(
        out.stdout.contains(&format!(
            "API version:      {MAX_API} (minimum version 1.24)"
        )),
        "{}",
        out.stdout
    );
    ensure!(out.stdout.contains(" containerd:\n"), "{}", out.stdout);
    let negotiated = negotiated_api(&keeld)?;
    let format = "{{.Server.Version}}|{{.Server.APIVersion}}|{{.Server.MinAPIVersion}}|{{.Server.Os}}|{{.Client.APIVersion}}";
    let out = keeld
        .docker(&["version", "--format", format])?
        .ok("docker version --format")?;
    assert_eq!(
        out.stdout.trim(),
        format!(
            "{}|{MAX_API}|1.24|linux|{negotiated}",
            env!("CARGO_PKG_VERSION")
        ),
        "the CLI negotiates down to keeld's newest (or keeps its own, if older)"
    );
    Ok(())
}

#[test]
fn docker_info_reports_the_host() -> Result<()> {
    require_root!();
    require!(docker_cli().is_some(), "no docker CLI on PATH");
    let keeld = Keeld::start()?;
    let plain = keeld.docker(&["info"])?.ok("docker info")?;
    eprintln!("{}", plain.stdout);
    ensure!(
        !plain.stderr.contains("ERROR") && !plain.stdout.contains("ERROR"),
        "docker info reported an error: {}",
        plain.stderr
    );
    let info = docker_info(&keeld)?;
    let ncpu = std::thread::available_parallelism()?.get();
    assert_eq!(info["NCPU"], ncpu as u64);
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kib = first_number_in(&meminfo, "MemTotal:").context("MemTotal in /proc/meminfo")?;
    assert_eq!(info["MemTotal"], kib * 1024);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    assert_eq!(info["KernelVersion"], kernel.trim());
    assert_eq!(info["OSType"], "linux");
    assert_eq!(info["Driver"], "overlayfs");
    assert_eq!(info["DefaultRuntime"], "keel");
    assert_eq!(info["CgroupDriver"], "cgroupfs");
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    assert_eq!(info["CgroupVersion"], cgroup);
    assert_eq!(
        info["DockerRootDir"],
        keeld.data_root().display().to_string()
    );
    assert_eq!(info["ServerVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["Containers"], 0);
    assert_eq!(info["Images"], 0);
    assert_eq!(info["Swarm"]["LocalNodeState"], "inactive");
    let id = info["ID"].as_str().context("ID")?;
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(
        info["Containerd"]["Address"],
        keeld.containerd_socket().display().to_string()
    );
    assert_eq!(
        info["Containerd"]["Namespaces"]["Containers"],
        keeld.namespace()
    );
    ensure!(
        info.get("ServerErrors").is_none(),
        "server errors: {}",
        info["ServerErrors"]
    );
    Ok(())
}

/// An image pulled into namespace `keel` by ctr, a container made from it and one running
/// show up in /info: the counts come from the supervisor, not from the engine's own records.
#[test]
fn docker_info_counts_what_containerd_holds() -> Result<()> {
    require_root!();
    require!(docker_cli().is_some(), "no docker CLI on PATH");
    keel_integration_tests::require_skopeo!();
    let registry = require_peer!(Registry::start());
    let keeld = Keeld::start()?;
    let layout = image_builder::build(&keeld.dir().join("layout"))?;
    let reference = registry.reference("busybox", "info");
    image_builder::push(&layout, Tag::OciGzip, &reference)?;
    keeld
        .ctr(&["images", "pull", "--plain-http", &reference])?
        .ok("ctr images pull")?;
    let stopped = unique_id("info-stopped");
    let running = unique_id("info-running");
    keeld
        .ctr(&["containers", "create", &reference, &stopped, "true"])?
        .ok("ctr containers create")?;
    keeld
        .ctr(&["run", "-d", &reference, &running, "sleep", "300"])?
        .ok("ctr run -d")?;
    let out = keeld
        .docker(&[
            "info",
            "--format",
            "{{.Images}} {{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}}",
        ])?
        .ok("docker info --format")?;
    assert_eq!(out.stdout.trim(), "1 2 1 1");
    let info = docker_info(&keeld)?;
    assert_eq!(info["Images"], 1, "{info}");
    assert_eq!(info["Containers"], 2, "{info}");
    assert_eq!(info["ContainersRunning"], 1, "{info}");
    assert_eq!(info["ContainersPaused"], 0, "{info}");
    assert_eq!(info["ContainersStopped"], 1, "{info}");
    keeld
        .ctr(&["tasks", "pause", &running])?
        .ok("ctr tasks pause")?;
    let info = docker_info(&keeld)?;
    assert_eq!(info["ContainersPaused"], 1, "{info}");
    assert_eq!(info["ContainersRunning"], 0, "{info}");
    keeld
        .ctr(&["tasks", "resume", &running])?
        .ok("ctr tasks resume")?;
    Ok(())
}

#[test]
fn api_versions_are_negotiated() -> Result<()> {
    require_root!();
    let cli = match docker_cli() {
        Some(cli) => cli,
        None => {
            require!(false, "no docker CLI on PATH");
            return Ok(());
        }
    };
    let keeld = Keeld::start()?;
    let format = ["version", "--format", "{{.Client.APIVersion}}"];
    // -H instead of DOCKER_HOST.
    let mut cmd = std::process::Command::new(&cli);
    cmd.env_remove("DOCKER_HOST")
        .env("DOCKER_CONFIG", keeld.dir().join("cli"))
        .arg("-H")
        .arg(keeld.host())
        .args(format);
    let out = keel_integration_tests::peers::outcome::run(&mut cmd, Duration::from_secs(60))?
        .ok("docker -H ... version")?;
    assert_eq!(out.stdout.trim(), negotiated_api(&keeld)?);
    // A client pinned to an older version in range is served at that version.
    let mut cmd = std::process::Command::new(&cli);
    cmd.env("DOCKER_HOST", keeld.host())
        .env("DOCKER_CONFIG", keeld.dir().join("cli"))
        .env("DOCKER_API_VERSION", "1.41")
        .args([
            "version",
            "--format",
            "{{.Client.APIVersion}} {{.Server.APIVersion}}",
        ]);
    let out = keel_integration_tests::peers::outcome::run(&mut cmd, Duration::from_secs(60))?
        .ok("DOCKER_API_VERSION=1.41 docker version")?;
    assert_eq!(out.stdout.trim(), format!("1.41 {MAX_API}"));
    // One pinned above what keeld serves gets dockerd's message.
    let mut cmd = std::process::Command::new(&cli);
    cmd.env("DOCKER_HOST", keeld.host())
        .env("DOCKER_CONFIG", keeld.dir().join("cli"))
        .env("DOCKER_API_VERSION", "1.99")
        .args(["info"]);
    let out = keel_integration_tests::peers::outcome::run(&mut cmd, Duration::from_secs(60))?;
    // The 28.x CLI prints server errors of `info` on stderr, 20.10's on stdout.
    let printed = format!("{}{}", out.stdout, out.stderr);
    eprintln!("{printed}");
    assert_ne!(out.status, 0);
    ensure!(
        printed.contains(&format!(
            "client version 1.99 is too new. Maximum supported API version is {MAX_API}"
        )),
        "{printed}"
    );
    // Debian's CLI (20.10, API 1.41), where installed, is served at its own version.
    let debian = std::path::Path::new("/usr/bin/docker");
    if debian.is_file() && debian != cli {
        let out = keeld
            .docker_with(debian, &["version", "--format", "{{.Client.APIVersion}}"])?
            .ok("Debian's docker version")?;
        assert_eq!(out.stdout.trim(), "1.41");
    }
    Ok(())
}

#[test]
fn ping_answers_get_and_head_with_dockerds_headers() -> Result<()> {
    require_root!();
    let keeld = Keeld::start()?;
    let head = keeld.request("HEAD", "/_ping", &[], b"")?;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("Api-Version"), Some(MAX_API));
    assert_eq!(head.header("Ostype"), Some("linux"));
    assert_eq!(head.header("Docker-Experimental"), Some("false"));
    assert_eq!(head.header("Builder-Version"), Some("2"));
    assert_eq!(
        head.header("Cache-Control"),
        Some("no-cache, no-store, must-revalidate")
    );
    assert_eq!(head.header("Pragma"), Some("no-cache"));
    assert_eq!(head.header("Content-Length"), Some("0"));
    assert_eq!(head.body, "");
    let get = keeld.request("GET", "/v1.44/_ping", &[], b"")?;
    assert_eq!(get.status, 200);
    assert_eq!(get.body, "OK");
    assert_eq!(
        get.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    Ok(())
}

#[test]
fn bad_requests_get_dockers_status_and_message() -> Result<()> {
    require_root!();
    let keeld = Keeld::start()?;
    for (method, path) in [
        ("GET", "/nope"),
        ("GET", "/v1.47/nope"),
        ("POST", "/info"),
        ("DELETE", "/_ping"),
        ("GET", "/v1.99/nope"),
    ] {
        let r = keeld.request(method, path, &[], b"")?;
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(
            r.body, "{\"message\":\"page not found\"}\n",
            "{method} {path}"
        );
    }
    let r = keeld.request("GET", "/v1.99/version", &[], b"")?;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()?["message"],
        format!("client version 1.99 is too new. Maximum supported API version is {MAX_API}")
    );
    let r = keeld.request("GET", "/v1.23/info", &[], b"")?;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()?["message"],
        "client version 1.23 is too old. Minimum supported API version is 1.24, please upgrade your client to a newer version"
    );
    // Garbage instead of HTTP: the connection is refused politely, keeld lives on.
    let garbage = raw_exchange(&keeld.socket(), b"\x00\x01 not http\r\n\r\n");
    if let Ok(r) = garbage {
        assert_eq!(r.status, 400);
    }
    assert_eq!(keeld.request("GET", "/_ping", &[], b"")?.status, 200);
    Ok(())
}

#[test]
fn json_bodies_are_checked_as_dockerd_checks_them() -> Result<()> {
    require_root!();
    let keeld = Keeld::start()?;
    let json = [("Content-Type", "application/json")];
    let r = keeld.request("POST", "/v1.49/auth", &json, b"{\"username\": ")?;
    assert_eq!(r.status, 400);
    let message = r.json()?["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(message.starts_with("invalid JSON: "), "{message}");
    let r = keeld.request("POST", "/auth", &json, b"[1, 2]")?;
    assert_eq!(r.status, 400);
    let r = keeld.request("POST", "/auth", &[("Content-Type", "text/plain")], b"{}")?;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()?["message"],
        "unsupported Content-Type header (text/plain): must be 'application/json'"
    );
    let body = br#"{"username":"u","password":"p","serveraddress":"registry.example.com"}"#;
    let r = keeld.request("POST", "/auth", &json, body)?;
    assert_eq!(r.status, 501, "{}", r.body);
    assert_eq!(keeld.request("GET", "/_ping", &[], b"")?.status, 200);
    Ok(())
}

#[test]
fn docker_login_checks_the_registry() -> Result<()> {
    require_root!();
    require!(docker_cli().is_some(), "no docker CLI on PATH");
    let registry = require_peer!(Registry::start());
    let keeld = Keeld::start()?;
    let out = keeld
        .docker(&["login", &registry.host(), "-u", "keel", "-p", "secret"])?
        .ok("docker login")?;
    ensure!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);
    let out = keeld.docker(&["login", "127.0.0.1:1", "-u", "keel", "-p", "secret"])?;
    eprintln!("{}", out.stderr);
    assert_ne!(out.status, 0);
    ensure!(
        out.stderr
            .contains("Get \"http://127.0.0.1:1/v2/\": Connection refused"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn socket_is_0660_and_a_killed_keeld_comes_back_on_its_supervisor() -> Result<()> {
    require_root!();
    let mut keeld = Keeld::start()?;
    let mode = std::fs::metadata(keeld.socket())?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode {mode:o}");
    let id = keeld.request("GET", "/info", &[], b"")?.json()?["ID"].clone();
    keeld.kill();
    ensure!(
        keeld.socket().exists(),
        "a SIGKILLed keeld leaves its socket behind"
    );
    ensure!(
        keel_integration_tests::peers::keeld::supervisor_answers(&keeld.containerd_socket()),
        "keel-containerd outlives a SIGKILLed keeld"
    );
    keeld.restart()?;
    let log = std::fs::read_to_string(keeld.log())?;
    ensure!(log.contains("removing a stale socket"), "{log}");
    ensure!(log.contains("using the running supervisor"), "{log}");
    let again = keeld.request("GET", "/info", &[], b"")?.json()?;
    assert_eq!(again["ID"], id, "the engine ID is kept in the data root");
    Ok(())
}

/// A keel-containerd that dies under keeld is started again, and the API answers again.
#[test]
fn a_supervisor_that_dies_is_restarted() -> Result<()> {
    require_root!();
    let keeld = Keeld::start()?;
    let supervisor_pid = || {
        process::processes_referring_to(keeld.dir())
            .into_iter()
            .find(|pid| {
                process::argv_of(*pid)
                    .first()
                    .is_some_and(|argv0| argv0.ends_with("keel-containerd"))
            })
    };
    let first = supervisor_pid().context("keel-containerd runs")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    let answers_again = keel_integration_tests::host::wait_until(Duration::from_secs(30), || {
        supervisor_pid().is_some_and(|pid| pid != first)
            && keeld
                .request("GET", "/info", &[], b"")
                .is_ok_and(|r| r.status == 200)
    });
    let log = std::fs::read_to_string(keeld.log())?;
    ensure!(
        answers_again,
        "no new keel-containerd answering; keeld's log:\n{log}"
    );
    ensure!(
        log.contains("keel-containerd exited; restarting it"),
        "{log}"
    );
    Ok(())
}

#[test]
fn sigterm_stops_keeld_and_the_supervisor_it_started() -> Result<()> {
    require_root!();
    let mut keeld = Keeld::start()?;
    let log = std::fs::read_to_string(keeld.log())?;
    ensure!(
        log.contains("no supervisor answers; starting keel-containerd"),
        "{log}"
    );
    let dir = keeld.dir().to_path_buf();
    ensure!(
        !process::processes_referring_to(&dir).is_empty(),
        "keeld and keel-containerd run"
    );
    // An open event stream must not hold the shutdown up until the drain times out (10 s).
    let mut events = std::os::unix::net::UnixStream::connect(keeld.socket())?;
    std::io::Write::write_all(
        &mut events,
        b"GET /v1.49/events HTTP/1.1\r\nHost: keel\r\n\r\n",
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let pid = keeld.pid().context("keeld's pid")?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let gone = keel_integration_tests::host::wait_until(Duration::from_secs(8), || {
        process::processes_referring_to(&dir).is_empty()
    });
    drop(events);
    ensure!(
        gone,
        "left running: {:?}",
        process::processes_referring_to(&dir)
    );
    ensure!(
        !keeld.socket().exists(),
        "the API socket is removed on shutdown"
    );
    let log = std::fs::read_to_string(keeld.log())?;
    ensure!(log.contains("keel-containerd stopped"), "{log}");
    keeld.stop();
    Ok(())
}

/// keeld on Debian's containerd 1.6 (given its socket): it starts no supervisor of its own,
/// and the docker CLI shows the real containerd underneath.
#[test]
fn keeld_runs_on_a_real_containerd() -> Result<()> {
    require_root!();
    require!(docker_cli().is_some(), "no docker CLI on PATH");
    let ctrd = require_peer!(Containerd::start());
    let keeld = Keeld::start_on(&ctrd.address())?;
    let log = std::fs::read_to_string(keeld.log())?;
    ensure!(log.contains("using the running supervisor"), "{log}");
    ensure!(!log.contains("starting keel-containerd"), "{log}");
    let out = keeld
        .docker(&[
            "version",
            "--format",
            "{{range .Server.Components}}{{.Name}}={{.Version}} {{end}}",
        ])?
        .ok("docker version")?;
    let theirs = ctrd
        .ctr(&["version"])?
        .ok("ctr version")?
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Server:"))
        .find_map(|l| {
            l.trim()
                .strip_prefix("Version:")
                .map(|v| v.trim().to_string())
        })
        .context("containerd's version in ctr version")?;
    ensure!(
        out.stdout.contains(&format!("containerd={theirs}")),
        "{} (containerd says {theirs})",
        out.stdout
    );
    let info = docker_info(&keeld)?;
    assert_eq!(
        info["Containerd"]["Address"],
        ctrd.address().display().to_string()
    );
    assert_eq!(info["Containers"], 0);
    Ok(())
}

/// The same requests on Debian's dockerd 20.10 (API 1.41) and on keeld: the /_ping headers
/// dockerd sends are all there, unknown routes and too-new versions get the same message, and
/// `docker info` has dockerd's fields with the same host facts.
#[test]
fn answers_match_a_real_dockerd() -> Result<()> {
    require_root!();
    let dockerd = require_peer!(Dockerd::start(&binary::keel_runtime()?));
    let keeld = Keeld::start()?;
    let theirs = raw_exchange(
        &dockerd.socket(),
        b"HEAD /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
    )?;
    let ours = keeld.request("HEAD", "/_ping", &[], b"")?;
    let ours_names: BTreeSet<&String> = ours.headers.keys().collect();
    for name in theirs.headers.keys() {
        ensure!(
            ours_names.contains(name),
            "dockerd sends {name} on HEAD /_ping, keeld does not ({ours_names:?})"
        );
    }
    let not_found = |socket: &std::path::Path| {
        raw_exchange(
            socket,
            b"GET /v1.41/nope HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        )
    };
    let (theirs, ours) = (not_found(&dockerd.socket())?, not_found(&keeld.socket())?);
    assert_eq!((theirs.status, &theirs.body), (ours.status, &ours.body));
    let too_new = |socket: &std::path::Path| {
        raw_exchange(
            socket,
            b"GET /v1.99/version HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        )
    };
    let (theirs, ours) = (too_new(&dockerd.socket())?, too_new(&keeld.socket())?);
    assert_eq!(theirs.status, ours.status);
    let max_theirs = theirs
        .header("Api-Version")
        .context("dockerd's Api-Version")?;
    assert_eq!(
        theirs.json()?["message"]
            .as_str()
            .map(|m| m.replace(max_theirs, MAX_API)),
        ours.json()?["message"].as_str().map(str::to_string)
    );
    let info = |socket: &std::path::Path| -> Result<Value> {
        raw_exchange(
            socket,
            b"GET /v1.41/info HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        )?
        .json()
    };
    let (their_info, our_info) = (info(&dockerd.socket())?, info(&keeld.socket())?);
    // Fields dockerd 20.10 has that API 1.49 dropped or that describe features keeld lacks.
    let not_ours = [
        "ExecutionDriver",
        "KernelMemory",
        "AllowNondistributableArtifactsCIDRs",
        "GenericResources",
        "InitBinary",
        "InitCommit",
        "RuncCommit",
        "Isolation",
    ];
    let ours_keys: BTreeSet<&String> = our_info.as_object().context("info")?.keys().collect();
    let missing: Vec<&String> = their_info
        .as_object()
        .context("dockerd info")?
        .keys()
        .filter(|k| !not_ours.contains(&k.as_str()) && !ours_keys.contains(k))
        .collect();
    ensure!(
        missing.is_empty(),
        "/info on dockerd has {missing:?}, keeld's has not"
    );
    for key in [
        "NCPU",
        "MemTotal",
        "KernelVersion",
        "OperatingSystem",
        "OSType",
        "Architecture",
        "Name",
        "CgroupVersion",
        "CgroupDriver",
        "IndexServerAddress",
    ] {
        assert_eq!(their_info[key], our_info[key], "{key}");
    }
    Ok(())
}
