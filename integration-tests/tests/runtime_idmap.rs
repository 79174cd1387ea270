//! Idmapped bind mounts (`mounts[].uidMappings`/`gidMappings`, the `idmap` and `ridmap`
//! options), checked from inside the container: owners as the mapping shows them, files made
//! inside owned on the host by the unmapped id, `ridmap` over the mounts an `rbind` brings,
//! flags applied after the move, no propagation back to the host, and refusals that fail
//! `create` with one clear line and leave nothing behind.

use std::fs;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use keel_integration_tests::checks::{expect_nothing_left, expect_one_line_error, expect_success};
use keel_integration_tests::config::from_json;
use keel_integration_tests::host::{self, TmpfsMount};
use keel_integration_tests::inside::mount_at;
use keel_integration_tests::{require_root, run_and_capture, unique_id, Bundle, Config, Runtime};
use oci_spec::runtime::LinuxNamespaceType;
use serde_json::{json, Value};
use tempfile::TempDir;

/// The container's user namespace: ids 0..65536 are host 100000..165536.
const HOST_ID: u32 = 100_000;
const SIZE: u32 = 65_536;
/// What an id the container's user namespace does not map shows as (the overflow id).
const OVERFLOW: u32 = 65_534;

fn userns() -> Config {
    Config::new().user_namespace(HOST_ID, HOST_ID, SIZE)
}

/// Appends a `mounts[]` entry written as JSON.
fn with_mount(config: Config, entry: Value) -> Result<Config> {
    Ok(config.mount(from_json(entry)?))
}

/// A bind of `source` at `destination` with `options`, plus `extra` fields (mappings).
fn bind(source: &Path, destination: &str, options: &[&str], extra: Value) -> Value {
    let mut entry = json!({
        "destination": destination,
        "type": "bind",
        "source": source,
        "options": options,
    });
    if let (Some(entry), Value::Object(extra)) = (entry.as_object_mut(), extra) {
        entry.extend(extra);
    }
    entry
}

/// `uidMappings` and `gidMappings` of one range each.
fn mappings(uid: (u32, u32), gid: (u32, u32), size: u32) -> Value {
    json!({
        "uidMappings": [{"containerID": uid.0, "hostID": uid.1, "size": size}],
        "gidMappings": [{"containerID": gid.0, "hostID": gid.1, "size": size}],
    })
}

/// A host directory (mode 0755) owned by `uid:gid`.
fn host_dir(uid: u32, gid: u32) -> Result<TempDir> {
    let dir = tempfile::tempdir()?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    chown(dir.path(), Some(uid), Some(gid))?;
    Ok(dir)
}

/// Writes `path` and gives it to `uid:gid`.
fn host_file(path: &Path, uid: u32, gid: u32) -> Result<()> {
    fs::write(path, "x")?;
    chown(path, Some(uid), Some(gid))?;
    Ok(())
}

fn owner(path: &Path) -> Result<(u32, u32)> {
    let meta = fs::symlink_metadata(path).with_context(|| format!("stat {}", path.display()))?;
    Ok((meta.uid(), meta.gid()))
}

/// Runs `config` with `script` and returns its stdout. The rootfs belongs to host root, which a
/// user namespace does not map, so the mount points are made beforehand.
fn run_in(config: Config, script: &str, mount_points: &[&str]) -> Result<String> {
    let bundle = Bundle::new(&config.sh(script))?;
    for point in mount_points {
        fs::create_dir_all(bundle.rootfs().join(point.trim_start_matches('/')))?;
    }
    let rt = Runtime::keel()?;
    let out = rt.run(bundle.path(), &unique_id("idmap"))?;
    expect_success(&out, "run")?;
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn idmap_shows_host_root_as_the_containers_root() -> Result<()> {
    require_root!();
    let dir = host_dir(0, 0)?;
    host_file(&dir.path().join("root-file"), 0, 0)?;
    host_file(&dir.path().join("user-file"), 1234, 1234)?;
    let mut config = userns();
    for entry in [
        bind(dir.path(), "/data", &["bind", "idmap"], json!({})),
        bind(dir.path(), "/plain", &["bind"], json!({})),
        bind(dir.path(), "/ro", &["bind", "idmap", "ro"], json!({})),
    ] {
        config = with_mount(config, entry)?;
    }
    let script = "stat -c '%u %g' /data/root-file /data/user-file /plain/root-file; \
                  touch /data/made-inside && mkdir /data/dir-inside && echo made; \
                  touch /ro/x 2>/dev/null || echo ro-refused; echo ---; cat /proc/self/mountinfo";
    let out = run_in(config, script, &["/data", "/plain", "/ro"])?;
    let (seen, mountinfo) = out.split_once("---\n").context("no mountinfo")?;
    assert_eq!(
        seen,
        format!("0 0\n1234 1234\n{OVERFLOW} {OVERFLOW}\nmade\nro-refused\n"),
        "host root is the container's root through the idmapped bind only"
    );
    assert_eq!(
        owner(&dir.path().join("made-inside"))?,
        (0, 0),
        "container root writes host root through the idmapped bind, not host {HOST_ID}"
    );
    assert_eq!(owner(&dir.path().join("dir-inside"))?, (0, 0));
    assert!(!dir.path().join("x").exists());
    let data = mount_at(mountinfo, "/data").context("/data not mounted")?;
    assert!(
        data.has_option("idmapped") && data.has_option("rw"),
        "{data:?}"
    );
    let ro = mount_at(mountinfo, "/ro").context("/ro not mounted")?;
    assert!(ro.has_option("idmapped") && ro.has_option("ro"), "{ro:?}");
    let plain = mount_at(mountinfo, "/plain").context("/plain not mounted")?;
    assert!(!plain.has_option("idmapped"), "{plain:?}");
    Ok(())
}

#[test]
fn idmap_takes_the_user_namespace_the_container_joins() -> Result<()> {
    require_root!();
    let rt = Runtime::keel()?;
    let holder = Bundle::new(&userns().args(&["sleep", "60"]))?;
    let holder_id = unique_id("idmap-holder");
    expect_success(&rt.run_detached(holder.path(), &holder_id)?, "run -d")?;
    let joined = PathBuf::from(format!("/proc/{}/ns/user", rt.pid(&holder_id)?));
    let dir = host_dir(0, 0)?;
    host_file(&dir.path().join("root-file"), 0, 0)?;
    let config = with_mount(
        Config::new().namespace(LinuxNamespaceType::User, Some(&joined)),
        bind(dir.path(), "/data", &["bind", "idmap"], json!({})),
    )?;
    let script = "stat -c '%u %g' /data/root-file; touch /data/made-inside && echo made";
    let out = run_in(config, script, &["/data"])?;
    assert_eq!(out, "0 0\nmade\n", "mapped as by the joined namespace");
    assert_eq!(owner(&dir.path().join("made-inside"))?, (0, 0));
    Ok(())
}

#[test]
fn own_mappings_without_a_user_namespace() -> Result<()> {
    require_root!();
    // On-disk 1234:4321 shows as root through the mount; root's files land as 1234:4321.
    let ids = mappings((1234, 0), (4321, 0), 1);
    let dir = host_dir(1234, 4321)?;
    host_file(&dir.path().join("theirs"), 1234, 4321)?;
    host_file(&dir.path().join("host-root"), 0, 0)?;
    let single = tempfile::tempdir()?;
    let file = single.path().join("file");
    host_file(&file, 1234, 4321)?;
    let config = with_mount(
        Config::new(),
        bind(dir.path(), "/data", &["bind"], ids.clone()),
    )?;
    let config = with_mount(config, bind(&file, "/etc/idmapped", &["bind"], ids))?;
    let script = "stat -c '%u %g' /data/theirs /data/host-root /etc/idmapped; \
                  touch /data/made-inside && echo made";
    let out = run_and_capture(&config.sh(script))?.success()?;
    assert_eq!(
        out.stdout,
        format!("0 0\n{OVERFLOW} {OVERFLOW}\n0 0\nmade\n"),
        "the mount's mappings, not the host's ids"
    );
    assert_eq!(owner(&dir.path().join("made-inside"))?, (1234, 4321));
    Ok(())
}

#[test]
fn ridmap_reaches_the_mounts_an_rbind_brings() -> Result<()> {
    require_root!();
    let dir = host_dir(0, 0)?;
    host_file(&dir.path().join("top"), 0, 0)?;
    let sub = dir.path().join("sub");
    fs::create_dir(&sub)?;
    let _tmpfs = TmpfsMount::mount(&sub)?;
    host_file(&sub.join("f"), 0, 0)?;
    let config = with_mount(
        userns(),
        bind(dir.path(), "/r", &["rbind", "ridmap"], json!({})),
    )?;
    let config = with_mount(
        config,
        bind(dir.path(), "/t", &["rbind", "idmap"], json!({})),
    )?;
    let script = "stat -c %u /r/top /r/sub/f /t/top /t/sub/f";
    let out = run_in(config, script, &["/r", "/t"])?;
    assert_eq!(
        out,
        format!("0\n0\n0\n{OVERFLOW}\n"),
        "ridmap idmaps the tmpfs under the source too; idmap only the top mount"
    );
    Ok(())
}

#[test]
fn mounts_made_inside_do_not_reach_the_host() -> Result<()> {
    require_root!();
    // A shared source: a plain open_tree clone of it would be its peer and carry the
    // container's mounts back to the host.
    let shared = host_dir(0, 0)?;
    let _tmpfs = TmpfsMount::mount(shared.path())?;
    nix::mount::mount(
        None::<&str>,
        shared.path(),
        None::<&str>,
        nix::mount::MsFlags::MS_SHARED,
        None::<&str>,
    )?;
    // Made here: container root is not mapped by the mount, so it could not make it inside.
    fs::create_dir(shared.path().join("sub"))?;
    let ids = mappings((0, 1000), (0, 1000), 1);
    let config = with_mount(Config::new(), bind(shared.path(), "/data", &["bind"], ids))?;
    let config = with_mount(
        config,
        json!({"destination": "/data/sub", "type": "tmpfs", "source": "tmpfs"}),
    )?;
    let out = run_and_capture(&config.sh("grep -c ' /data/sub ' /proc/self/mountinfo"))?;
    assert_eq!(out.clone().success()?.stdout, "1\n", "{out:?}");
    let leaked: Vec<String> = host::mount_points()?
        .into_iter()
        .filter(|p| Path::new(p).starts_with(shared.path().join("sub")))
        .collect();
    assert!(leaked.is_empty(), "propagated to the host: {leaked:?}");
    Ok(())
}

/// `create` with `config` fails with one line mentioning each of `needles`, leaving nothing.
fn refused(config: Config, needles: &[&str]) -> Result<()> {
    let bundle = Bundle::new(&config)?;
    let rt = Runtime::keel()?;
    let id = unique_id("idmap-refused");
    let out = rt.create(bundle.path(), &id)?;
    expect_one_line_error(&out, needles)?;
    expect_nothing_left(&rt, &id, bundle.path())
}

#[test]
fn unsupported_source_fails_create_with_one_line() -> Result<()> {
    require_root!();
    // procfs does not support idmapped mounts.
    let ids = mappings((0, 1000), (0, 1000), 1);
    let config = with_mount(
        Config::new(),
        bind(Path::new("/proc/sys"), "/mnt/sys", &["bind"], ids),
    )?;
    refused(
        config,
        &[
            "/mnt/sys",
            "idmapped mounts are not supported for source /proc/sys",
        ],
    )
}

#[test]
fn entries_that_cannot_be_idmapped_are_refused() -> Result<()> {
    require_root!();
    let dir = tempfile::tempdir()?;
    let tmpfs = json!({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
                       "options": ["idmap"]});
    refused(
        with_mount(userns(), tmpfs)?,
        &["/mnt/t", "only supported for bind mounts"],
    )?;
    let no_userns = bind(dir.path(), "/mnt/d", &["bind", "idmap"], json!({}));
    refused(
        with_mount(Config::new(), no_userns)?,
        &["/mnt/d", "user namespace"],
    )?;
    let uids_only = json!({"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]});
    refused(
        with_mount(
            Config::new(),
            bind(dir.path(), "/mnt/u", &["bind"], uids_only),
        )?,
        &["/mnt/u", "gidMappings"],
    )
}

#[test]
fn features_announce_idmapped_mounts() -> Result<()> {
    let out = Runtime::keel()?.exec(&["features"])?;
    expect_success(&out, "features")?;
    let doc: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(doc["linux"]["mountExtensions"]["idmap"]["enabled"], true);
    Ok(())
}
