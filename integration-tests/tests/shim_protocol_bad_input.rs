//! `containerd-shim-keel-v2` driven directly over its protocol (see `shim_protocol.rs`): bad
//! requests get the error code containerd branches on, leave nothing behind, and the shim
//! keeps serving after them.

use std::fs;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use containerd_shim_protos::api::{ConnectRequest, ConnectResponse};
use containerd_shim_protos::protobuf::Message;
use keel_integration_tests::shim::{self, expect_code, Rootfs, ShimUnderTest, WAIT};
use keel_integration_tests::{host, require_root, Config};
use ttrpc::Code;

const SIGKILL: u32 = 9;

fn sleeper() -> Config {
    Config::new().args(&["sleep", "100000"])
}

#[test]
fn create_with_a_missing_or_empty_bundle_is_refused() -> Result<()> {
    require_root!();
    let shim = ShimUnderTest::start(&sleeper())?;
    let missing = shim.state_dir().join("no-such-bundle");
    let mut req = shim.create_request();
    req.bundle = missing.display().to_string();
    let message = expect_code(
        shim.client().create(shim.ctx(), &req),
        Code::NOT_FOUND,
        "Create with a missing bundle",
    )?;
    ensure!(
        message.contains(&req.bundle),
        "the error does not name the bundle: {message:?}"
    );
    let empty = shim.state_dir().join("empty-bundle");
    fs::create_dir(&empty)?;
    req.bundle = empty.display().to_string();
    let message = expect_code(
        shim.client().create(shim.ctx(), &req),
        Code::INVALID_ARGUMENT,
        "Create with a bundle without config.json",
    )?;
    ensure!(
        message.contains("config.json"),
        "the error does not say what is missing: {message:?}"
    );
    // Neither attempt took the shim's one container slot.
    let pid = shim
        .client()
        .create(shim.ctx(), &shim.create_request())
        .with_context(|| shim.log())?
        .pid;
    ensure!(pid > 1, "Create after the refusals: pid {pid}");
    Ok(())
}

#[test]
fn a_failing_runtime_is_reported_and_leaves_nothing_mounted() -> Result<()> {
    require_root!();
    let shim = ShimUnderTest::start_with(&sleeper(), Rootfs::Mounted)?;
    let mut req = shim.create_request();
    req.rootfs = shim.rootfs_mounts();
    req.options = Some(shim::runc_options("/bin/false".as_ref(), None)).into();
    let message = expect_code(
        shim.client().create(shim.ctx(), &req),
        Code::UNKNOWN,
        "Create with /bin/false as the runtime",
    )?;
    ensure!(
        message.contains("OCI runtime create failed"),
        "the error does not say the runtime failed: {message:?}"
    );
    let left = shim::mounts_under(shim.bundle())?;
    ensure!(left.is_empty(), "mounted after the failed Create: {left:?}");
    expect_code(
        shim.state(""),
        Code::NOT_FOUND,
        "State after a failed Create",
    )?;
    let cgroup = format!("/keel/{}", shim.id);
    let cgroups = host::cgroup_present_in(&cgroup);
    ensure!(cgroups.is_empty(), "{cgroup} left in {cgroups:?}");
    // The shim can still create the container with a runtime that works.
    req.options = None.into();
    shim.client()
        .create(shim.ctx(), &req)
        .with_context(|| shim.log())?;
    shim.start_process("").with_context(|| shim.log())?;
    ensure!(
        !shim::mounts_under(&shim.bundle().join("rootfs"))?.is_empty(),
        "the rootfs is not mounted for the second Create"
    );
    shim.kill("", SIGKILL)?;
    shim.wait("")?;
    shim.delete("").with_context(|| shim.log())?;
    let left = shim::mounts_under(shim.bundle())?;
    ensure!(left.is_empty(), "mounted after Delete: {left:?}");
    Ok(())
}

#[test]
fn an_undecodable_request_is_refused_and_the_shim_keeps_serving() -> Result<()> {
    require_root!();
    let shim = ShimUnderTest::start(&sleeper())?;
    let raw = ttrpc::Client::connect(shim.address()).context("connecting a raw client")?;
    for service in ["containerd.task.v2.Task", "containerd.task.v3.Task"] {
        let garbage = ttrpc::Request {
            service: service.into(),
            method: "Create".into(),
            // A varint that never ends, then a field of length 2^32.
            payload: [vec![0xff; 11], vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]].concat(),
            timeout_nano: i64::try_from(WAIT.as_nanos())?,
            ..Default::default()
        };
        // An answer, not a dropped connection (the code is ttrpc's own: UNKNOWN).
        let answer = raw.request(garbage);
        ensure!(
            matches!(answer, Err(ttrpc::Error::RpcStatus(_))),
            "{service}/Create with garbage: {answer:?}"
        );
        // The same connection still serves.
        let connect = ttrpc::Request {
            service: service.into(),
            method: "Connect".into(),
            payload: ConnectRequest::new().write_to_bytes()?,
            timeout_nano: i64::try_from(WAIT.as_nanos())?,
            ..Default::default()
        };
        let answer = raw.request(connect).with_context(|| shim.log())?;
        let connected = ConnectResponse::parse_from_bytes(&answer.payload)?;
        ensure!(
            connected.shim_pid > 0,
            "Connect after garbage: {connected:?}"
        );
    }
    shim.connect().with_context(|| shim.log())?;
    expect_code(shim.state(""), Code::NOT_FOUND, "State after garbage")?;
    let pid = shim.shim_pid()?;
    ensure!(
        host::pid_alive(pid),
        "the shim died of garbage\n{}",
        shim.log()
    );
    Ok(())
}

#[test]
fn requests_out_of_order_are_refused_with_containerds_codes() -> Result<()> {
    require_root!();
    let shim = ShimUnderTest::start(&sleeper())?;
    expect_code(
        shim.start_process(""),
        Code::NOT_FOUND,
        "Start before Create",
    )?;
    expect_code(shim.wait(""), Code::NOT_FOUND, "Wait before Create")?;
    expect_code(shim.delete(""), Code::NOT_FOUND, "Delete before Create")?;
    shim.client()
        .create(shim.ctx(), &shim.create_request())
        .with_context(|| shim.log())?;
    expect_code(
        shim.client().create(shim.ctx(), &shim.create_request()),
        Code::ALREADY_EXISTS,
        "Create twice",
    )?;
    let mut other = shim.create_request();
    other.id = format!("{}-other", shim.id);
    expect_code(
        shim.client().create(shim.ctx(), &other),
        Code::INVALID_ARGUMENT,
        "Create of another container id",
    )?;
    shim.start_process("").with_context(|| shim.log())?;
    expect_code(
        shim.start_process(""),
        Code::FAILED_PRECONDITION,
        "Start twice",
    )?;
    let message = expect_code(
        shim.delete(""),
        Code::FAILED_PRECONDITION,
        "Delete of a running container",
    )?;
    ensure!(
        message.contains("running"),
        "Delete of a running container said {message:?}"
    );
    // Shutdown with a container left is a no-op: the shim keeps serving it.
    shim.shutdown().with_context(|| shim.log())?;
    std::thread::sleep(Duration::from_millis(200));
    let state = shim.state("").with_context(|| shim.log())?;
    ensure!(state.pid > 1, "State after a refused Shutdown: {state:?}");
    shim.kill("", SIGKILL)?;
    shim.wait("")?;
    shim.delete("").with_context(|| shim.log())?;
    Ok(())
}
