//! Container ids unique across tests and test processes running in parallel.

use std::sync::atomic::{AtomicU32, Ordering};

/// `<prefix>-<pid>-<n>`: unique within this process by the counter, across processes by the pid.
pub fn unique_id(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Whether `id` is a plain container id (`[A-Za-z0-9][A-Za-z0-9_.+-]*`): one path component,
/// never `.` or `..`. Cleanup derives paths from ids only when this holds.
pub fn is_plain(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids() {
        assert!(is_plain(&unique_id("x")));
        for bad in ["", ".", "..", "../x", "a/b", "-a", " a", ".hidden"] {
            assert!(!is_plain(bad), "{bad:?}");
        }
    }
}
