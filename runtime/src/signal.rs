//! Signal names and numbers as `runc kill` accepts them.
//!
//! The result is a raw signal number, not `nix::sys::signal::Signal`, because nix has no variants
//! for realtime signals and `kill` must be able to send them (`SIGRTMIN+3` stops systemd).

use std::str::FromStr;

use nix::sys::signal::Signal;

/// Errors of signal parsing.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// Neither a known signal name nor a number in range.
    #[error("unknown signal {0:?}")]
    Unknown(String),
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, SignalError>;

/// Parses `KILL`, `SIGKILL`, `kill`, `9`, `SIGRTMIN+3`, `RTMAX-1` into a signal number.
///
/// Names are case-insensitive and the `SIG` prefix is optional, as in runc.
pub fn parse_signal(s: &str) -> Result<i32> {
    let unknown = || SignalError::Unknown(s.to_string());
    let trimmed = s.trim();
    if trimmed.bytes().all(|b| b.is_ascii_digit()) && !trimmed.is_empty() {
        let num: i32 = trimmed.parse().map_err(|_| unknown())?;
        return in_range(num).ok_or_else(unknown);
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    realtime(name)
        .or_else(|| alias(name))
        .or_else(|| {
            Signal::from_str(&format!("SIG{name}"))
                .ok()
                .map(|sig| sig as i32)
        })
        .ok_or_else(unknown)
}

/// `num` if it names a signal the kernel can deliver (1 up to `SIGRTMAX`), or 0, which only
/// checks that the process exists (as kill(1) and runc take it).
fn in_range(num: i32) -> Option<i32> {
    (0..=libc::SIGRTMAX()).contains(&num).then_some(num)
}

/// `RTMIN`, `RTMIN+n`, `RTMAX`, `RTMAX-n` (the name without `SIG`).
fn realtime(name: &str) -> Option<i32> {
    // libc's SIGRTMIN accounts for the realtime signals glibc keeps for itself (32, 33).
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    let num = if let Some(rest) = name.strip_prefix("RTMIN") {
        min.checked_add(offset(rest, '+')?)?
    } else if let Some(rest) = name.strip_prefix("RTMAX") {
        max.checked_sub(offset(rest, '-')?)?
    } else {
        return None;
    };
    (min..=max).contains(&num).then_some(num)
}

/// The `n` of `+n`/`-n` (with the given sign), or 0 for an empty suffix.
fn offset(rest: &str, sign: char) -> Option<i32> {
    if rest.is_empty() {
        return Some(0);
    }
    let digits = rest.strip_prefix(sign)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Old names the kernel headers still define but nix does not parse.
fn alias(name: &str) -> Option<i32> {
    match name {
        "IOT" => Some(libc::SIGIOT),
        "POLL" => Some(libc::SIGPOLL),
        "CLD" => Some(libc::SIGCHLD),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_every_spelling() {
        for s in ["KILL", "SIGKILL", "kill", "sigkill", "SigKill", "9"] {
            assert_eq!(parse_signal(s).unwrap(), libc::SIGKILL, "{s}");
        }
        assert_eq!(parse_signal("TERM").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("SIGHUP").unwrap(), libc::SIGHUP);
        assert_eq!(parse_signal("winch").unwrap(), libc::SIGWINCH);
        assert_eq!(parse_signal("SIGPWR").unwrap(), libc::SIGPWR);
        assert_eq!(parse_signal("IOT").unwrap(), libc::SIGABRT);
        assert_eq!(parse_signal("CLD").unwrap(), libc::SIGCHLD);
    }

    #[test]
    fn numbers_in_range_only() {
        assert_eq!(parse_signal("1").unwrap(), 1);
        assert_eq!(parse_signal("64").unwrap(), 64);
        assert_eq!(parse_signal("34").unwrap(), 34);
        assert_eq!(parse_signal("0").unwrap(), 0, "existence check, as runc");
        for bad in ["65", "-9", "+9", "99999999999", "9x", ""] {
            assert!(parse_signal(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn realtime_names() {
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        assert_eq!(parse_signal("SIGRTMIN").unwrap(), min);
        assert_eq!(parse_signal("RTMIN+3").unwrap(), min + 3);
        assert_eq!(parse_signal("sigrtmin+3").unwrap(), min + 3);
        assert_eq!(parse_signal("SIGRTMAX").unwrap(), max);
        assert_eq!(parse_signal("SIGRTMAX-1").unwrap(), max - 1);
        for bad in [
            "SIGRTMIN+",
            "SIGRTMIN-1",
            "SIGRTMAX+1",
            "SIGRTMIN+999",
            "RTMIN+x",
        ] {
            assert!(parse_signal(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn unknown_names_say_which() {
        let err = parse_signal("FOO").unwrap_err();
        assert_eq!(err.to_string(), r#"unknown signal "FOO""#);
        assert!(parse_signal("SIG").is_err());
    }
}
