//! Hostile and malformed requests on keeld's socket: each gets a 4xx with a `{"message"}` body
//! (or, for what is not HTTP at all, a closed connection), and keeld keeps answering: nothing
//! a client sends makes it panic or exit.

use anyhow::{ensure, Result};
use keel_integration_tests::peers::keeld::{raw_exchange, Keeld};
use keel_integration_tests::require_root;

#[test]
fn malformed_requests_get_4xx_and_keeld_lives_on() -> Result<()> {
    require_root!();
    let mut keeld = Keeld::start()?;
    let long_name = "a".repeat(10_000);
    let cases: Vec<(&str, String, u16)> = vec![
        ("GET", "/images/%ff%fe/json".into(), 404),
        ("GET", format!("/images/{long_name}/json"), 404),
        ("DELETE", "/images/sha256:".into(), 404),
        ("DELETE", "/images/%2e%2e%2f%2e%2e".into(), 404),
        ("POST", "/images/x/tag?repo=%00".into(), 400),
        ("GET", "/images/json?filters=%7B".into(), 400),
        (
            "GET",
            "/images/json?filters=%7B%22dangling%22%3A3%7D".into(),
            400,
        ),
        ("GET", "/v1.9999999999999999999999/_ping".into(), 400),
        ("GET", "/v1.49/images/json?all=%zz".into(), 200),
        (
            "POST",
            "/images/prune?filters=%7B%22until%22%3A%7B%2210m%22%3Atrue%7D%7D".into(),
            400,
        ),
    ];
    for (method, path, status) in &cases {
        let r = keeld.request(method, path, &[], b"")?;
        assert_eq!(r.status, *status, "{method} {path}: {}", r.body);
        if *status >= 400 {
            let message = r.json()?["message"].as_str().map(str::to_string);
            ensure!(
                message.is_some_and(|m| !m.is_empty()),
                "{method} {path}: no message in {}",
                r.body
            );
        }
    }
    let huge_header = "x".repeat(200_000);
    let _ = keeld.request("GET", "/_ping", &[("X-Big", huge_header.as_str())], b"");
    for garbage in [
        &b"\x00\x01\x02 not http\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /_ping HTTP/9.9\r\n\r\n",
        b"POST /auth HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /auth HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        // Whatever the answer (400 or a closed connection), keeld must still be there.
        let _ = raw_exchange(&keeld.socket(), garbage);
    }
    let ping = keeld.request("GET", "/_ping", &[], b"")?;
    assert_eq!(ping.status, 200);
    ensure!(
        keeld.pid().is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        }),
        "keeld is alive"
    );
    let log = std::fs::read_to_string(keeld.log())?;
    ensure!(!log.contains("panicked"), "keeld panicked:\n{log}");
    keeld.stop();
    Ok(())
}
