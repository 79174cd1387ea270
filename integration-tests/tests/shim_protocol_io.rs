//! `containerd-shim-keel-v2` driven directly over its protocol (see `shim_protocol.rs`): the
//! task's stdio (a slow reader, stdin and CloseIO, a terminal and ResizePty) and its cgroup
//! (Pause/Resume, Stats, Update, OOM kills).

use std::fs;
use std::io::Write;
use std::thread;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use containerd_shim_protos::api::{
    CloseIORequest, PauseRequest, ResizePtyRequest, ResumeRequest, StatsRequest,
    Status as TaskStatus, UpdateTaskRequest,
};
use containerd_shim_protos::cgroups::metrics::Metrics;
use containerd_shim_protos::events::task::TaskOOM;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use keel_integration_tests::config::from_json;
use keel_integration_tests::shim::{self, FifoReader, ShimUnderTest, WAIT};
use keel_integration_tests::{host, require_root, Config};
use serde_json::json;
use sha2::{Digest, Sha256};

const SIGKILL: u32 = 9;

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_slow_reader_gets_every_byte() -> Result<()> {
    require_root!();
    let config = Config::new().sh("head -c 4194304 /dev/urandom > /tmp/data && cat /tmp/data");
    let shim = ShimUnderTest::start(&config)?;
    let stdout = shim.fifo("stdout")?;
    let mut req = shim.create_request();
    req.stdout = stdout.clone();
    shim.client()
        .create(shim.ctx(), &req)
        .with_context(|| shim.log())?;
    shim.start_process("").with_context(|| shim.log())?;
    // Nobody reads for a second: the container must wait, not lose output.
    thread::sleep(Duration::from_secs(1));
    let state = shim.state("")?;
    ensure!(
        state.status.enum_value_or_default() == TaskStatus::RUNNING,
        "4 MiB went somewhere with no reader: {state:?}"
    );
    let out = FifoReader::spawn(&stdout);
    let waited = shim.wait("").with_context(|| shim.log())?;
    ensure!(
        waited.exit_status == 0,
        "exit status {}\n{}",
        waited.exit_status,
        shim.log()
    );
    let got = out.wait(WAIT)?;
    let data = fs::read(shim.bundle().join("rootfs/tmp/data")).context("reading /tmp/data")?;
    ensure!(
        data.len() == 4 << 20,
        "the container wrote {} bytes",
        data.len()
    );
    ensure!(
        got.len() == data.len() && hex(&got) == hex(&data),
        "read {} bytes (sha256 {}), the container wrote {} (sha256 {})",
        got.len(),
        hex(&got),
        data.len(),
        hex(&data)
    );
    Ok(())
}

/// containerd 1.6's client (`ctr run --rm`) closes its FIFOs as soon as Wait returns, so Wait
/// and TaskExit must wait until a slow reader has read all the process wrote before exiting
/// (up to two pipes' worth was lost otherwise).
#[test]
fn the_exit_is_reported_once_a_slow_reader_has_read_the_output() -> Result<()> {
    require_root!();
    let config = Config::new().sh("head -c 1048576 /dev/zero; exit 3");
    let shim = ShimUnderTest::start(&config)?;
    let stdout = shim.fifo("stdout")?;
    let mut req = shim.create_request();
    req.stdout = stdout.clone();
    shim.client()
        .create(shim.ctx(), &req)
        .with_context(|| shim.log())?;
    // 1 MiB in 4 KiB reads, 2 ms apart: half a second or more. What the reader counts lags
    // its last read by a moment, so one read may be missing from the count.
    const CHUNK: usize = 4096;
    let out = FifoReader::spawn_paced(&stdout, CHUNK, Duration::from_millis(2));
    shim.start_process("").with_context(|| shim.log())?;
    let waited = shim.wait("").with_context(|| shim.log())?;
    let read_by_then = out.so_far().len();
    ensure!(
        waited.exit_status == 3,
        "exit status {}",
        waited.exit_status
    );
    ensure!(
        read_by_then + CHUNK >= 1 << 20,
        "Wait returned when the reader had read {read_by_then} of 1048576 bytes"
    );
    shim.wait_event("/tasks/exit", |_| true)?;
    ensure!(
        out.wait(WAIT)?.len() == 1 << 20,
        "the reader got no end of file"
    );
    Ok(())
}

#[test]
fn close_io_ends_the_stdin_of_the_container() -> Result<()> {
    require_root!();
    let shim = ShimUnderTest::start(&Config::new().args(&["cat"]))?;
    let (stdin, stdout) = (shim.fifo("stdin")?, shim.fifo("stdout")?);
    let out = FifoReader::spawn(&stdout);
    let mut req = shim.create_request();
    req.stdin = stdin.clone();
    req.stdout = stdout;
    shim.client()
        .create(shim.ctx(), &req)
        .with_context(|| shim.log())?;
    shim.start_process("")?;
    // Kept open across CloseIO: the shim must end cat's stdin, not this writer.
    let mut writer = shim::open_writer(&stdin)?;
    writer.write_all(b"abc").context("writing to stdin")?;
    ensure!(
        host::wait_until(WAIT, || out.so_far() == b"abc"),
        "cat did not echo: {:?}\n{}",
        out.so_far(),
        shim.log()
    );
    let close = CloseIORequest {
        id: shim.id.clone(),
        stdin: true,
        ..Default::default()
    };
    shim.client()
        .close_io(shim.ctx(), &close)
        .with_context(|| shim.log())?;
    let waited = shim.wait("").with_context(|| shim.log())?;
    ensure!(waited.exit_status == 0, "cat exited {}", waited.exit_status);
    ensure!(out.text(WAIT)? == "abc", "cat's output {:?}", out.so_far());
    drop(writer);
    Ok(())
}

#[test]
fn a_terminal_carries_output_and_takes_its_size_from_resize_pty() -> Result<()> {
    require_root!();
    let config = Config::new()
        .terminal(true)
        .sh("echo hello-tty; while [ ! -e /tmp/go ]; do sleep 0.1; done; stty size");
    let shim = ShimUnderTest::start(&config)?;
    let stdout = shim.fifo("stdout")?;
    let out = FifoReader::spawn(&stdout);
    let mut req = shim.create_request();
    req.stdout = stdout;
    req.terminal = true;
    shim.client()
        .create(shim.ctx(), &req)
        .with_context(|| shim.log())?;
    shim.start_process("")?;
    let hello = || String::from_utf8_lossy(&out.so_far()).contains("hello-tty");
    ensure!(
        host::wait_until(WAIT, hello),
        "no output through the terminal: {:?}\n{}",
        out.so_far(),
        shim.log()
    );
    let resize = ResizePtyRequest {
        id: shim.id.clone(),
        width: 100,
        height: 40,
        ..Default::default()
    };
    shim.client()
        .resize_pty(shim.ctx(), &resize)
        .with_context(|| shim.log())?;
    fs::write(shim.bundle().join("rootfs/tmp/go"), "").context("touching /tmp/go")?;
    let waited = shim.wait("").with_context(|| shim.log())?;
    ensure!(
        waited.exit_status == 0,
        "exit status {}",
        waited.exit_status
    );
    let text = out.text(WAIT)?;
    ensure!(
        text.lines().any(|l| l.trim() == "40 100"),
        "stty size after ResizePty(100x40): {text:?}"
    );
    Ok(())
}

fn running_sleeper(config: &Config) -> Result<(ShimUnderTest, u32)> {
    let shim = ShimUnderTest::start(config)?;
    let created = shim.client().create(shim.ctx(), &shim.create_request());
    let pid = created.with_context(|| shim.log())?.pid;
    shim.start_process("").with_context(|| shim.log())?;
    Ok((shim, pid))
}

#[test]
fn pause_resume_stats_and_update_act_on_the_cgroup() -> Result<()> {
    require_root!();
    let (shim, pid) = running_sleeper(&Config::new().args(&["sleep", "100000"]))?;
    let (id, ctx) = (shim.id.clone(), shim.ctx());
    let status = || shim.state("").map(|s| s.status.enum_value_or_default());
    let pause = PauseRequest {
        id: id.clone(),
        ..Default::default()
    };
    shim.client()
        .pause(ctx.clone(), &pause)
        .with_context(|| shim.log())?;
    ensure!(
        status()? == TaskStatus::PAUSED,
        "after Pause: {:?}",
        status()
    );
    let resume = ResumeRequest {
        id: id.clone(),
        ..Default::default()
    };
    shim.client()
        .resume(ctx.clone(), &resume)
        .with_context(|| shim.log())?;
    ensure!(
        status()? == TaskStatus::RUNNING,
        "after Resume: {:?}",
        status()
    );
    shim.wait_event("/tasks/resumed", |_| true)?;
    let topics = shim.topics();
    ensure!(
        topics[2..] == ["/tasks/paused", "/tasks/resumed"],
        "events {topics:?}"
    );

    let stats = StatsRequest {
        id: id.clone(),
        ..Default::default()
    };
    let stats = shim.client().stats(ctx.clone(), &stats);
    let stats = stats.with_context(|| shim.log())?.stats;
    ensure!(
        stats.type_url == "io.containerd.cgroups.v1.Metrics",
        "Stats type {:?}",
        stats.type_url
    );
    let metrics = Metrics::parse_from_bytes(&stats.value).context("decoding Metrics")?;
    ensure!(
        metrics.memory.usage.usage > 0,
        "memory usage 0 in {metrics:?}"
    );

    let mut resources = Any::new();
    resources.type_url = shim::LINUX_RESOURCES.into();
    resources.value = serde_json::to_vec(&json!({"memory": {"limit": 104857600}}))?;
    let update = UpdateTaskRequest {
        id,
        resources: Some(resources).into(),
        ..Default::default()
    };
    shim.client()
        .update(ctx, &update)
        .with_context(|| shim.log())?;
    let cgroup = host::cgroup_of(pid as i32, "memory").context("the container's memory cgroup")?;
    let limit = host::read_cgroup_file("memory", &cgroup, "memory.limit_in_bytes")?;
    ensure!(
        limit == "104857600",
        "memory.limit_in_bytes of {cgroup} is {limit}"
    );
    shim.kill("", SIGKILL)?;
    ensure!(shim.wait("")?.exit_status == 137, "not killed");
    Ok(())
}

#[test]
fn an_oom_kill_is_reported_and_exits_137() -> Result<()> {
    require_root!();
    let resources = from_json(json!({"memory": {"limit": 8 << 20}}))?;
    let config = Config::new()
        .resources(resources)
        .args(&["tail", "/dev/zero"]);
    let (shim, _pid) = running_sleeper(&config)?;
    let oom: TaskOOM = shim.wait_event("/tasks/oom", |_| true)?.decode()?;
    ensure!(oom.container_id == shim.id, "TaskOOM: {oom:?}");
    let waited = shim.wait("").with_context(|| shim.log())?;
    ensure!(
        waited.exit_status == 137,
        "exit status {} after an OOM kill",
        waited.exit_status
    );
    Ok(())
}
