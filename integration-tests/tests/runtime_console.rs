//! `process.terminal` with `create --console-socket`: the pty master arrives by SCM_RIGHTS, the
//! container's stdio is the pty slave, and `consoleSize` is applied.

use std::time::Duration;

use anyhow::Result;
use keel_integration_tests::checks::expect_success;
use keel_integration_tests::console::{read_until_closed, ConsoleSocket};
use keel_integration_tests::{require_root, unique_id, Bundle, Config, Runtime};

const WAIT: Duration = Duration::from_secs(10);

/// Runs `config` with a terminal through create/start and returns what it wrote on the pty.
fn run_on_console(config: Config) -> Result<String> {
    let socket = ConsoleSocket::bind()?;
    let bundle = Bundle::new(&config.terminal(true))?;
    let rt = Runtime::keel()?;
    let id = unique_id("console");
    let path = socket.path().to_string_lossy().into_owned();
    expect_success(
        &rt.create_with(bundle.path(), &id, &["--console-socket", &path])?,
        "create",
    )?;
    let master = socket.receive_master(WAIT)?;
    expect_success(&rt.start(&id)?, "start")?;
    read_until_closed(&master, WAIT)
}

#[test]
fn the_process_gets_a_pty_from_the_console_socket() -> Result<()> {
    require_root!();
    let out = run_on_console(
        Config::new().sh("tty; readlink /proc/self/fd/0; readlink /proc/self/fd/2"),
    )?;
    assert_eq!(out, "/dev/pts/0\n/dev/pts/0\n/dev/pts/0\n");
    Ok(())
}

#[test]
fn console_size_is_applied() -> Result<()> {
    require_root!();
    let out = run_on_console(Config::new().console_size(30, 100).sh("stty size"))?;
    assert_eq!(out, "30 100\n");
    Ok(())
}

#[test]
fn the_pty_is_the_controlling_terminal() -> Result<()> {
    require_root!();
    // /dev/tty opens only for a process with a controlling terminal.
    let out = run_on_console(Config::new().sh("echo ok > /dev/tty"))?;
    assert_eq!(out, "ok\n");
    Ok(())
}

#[test]
fn the_console_is_in_the_containers_devpts() -> Result<()> {
    require_root!();
    let out = run_on_console(Config::new().sh("ls /dev/pts; stat -c '%t' /dev/pts/0"))?;
    let words: Vec<&str> = out.split_whitespace().collect();
    assert!(words.contains(&"0") && words.contains(&"ptmx"), "{out}");
    // Unix98 pty slaves have majors 136-143 (0x88-0x8f).
    assert!(
        words
            .last()
            .is_some_and(|m| ["88", "89", "8a", "8b", "8c", "8d", "8e", "8f"].contains(m)),
        "{out}"
    );
    Ok(())
}
