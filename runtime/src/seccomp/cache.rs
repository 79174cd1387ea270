//! The cache of compiled profiles: `<dir>/<key>.bpf`, one file per profile.
//!
//! The key is the SHA-256 of everything the program depends on: the profile (as the JSON its
//! typed form serializes to, so spacing and key order in config.json do not matter, and without
//! `listenerPath` and `listenerMetadata`, which only say where the listener goes), the
//! libseccomp version, the host architecture and kernel release (the flags are probed from the
//! kernel), and the format below. A file is `MAGIC, flags (u32 LE), notify (u8, 0 or 1), length
//! (u32 LE), SHA-256 of flags, notify and program, program`; one that does not check out is
//! ignored and compiled again.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use libseccomp::ScmpVersion;
use oci_spec::runtime::LinuxSeccomp;
use sha2::{Digest, Sha256};

use super::{check_length, Filter, Result, SeccompError};

/// Changes whenever the file format or the compiler's output for the same input changes.
const FORMAT: &str = "keel-seccomp-bpf-v2";
const MAGIC: &[u8; 8] = b"KEELBPF2";
const HEADER: usize = MAGIC.len() + 4 + 1 + 4 + 32;

/// The cache key of a profile on this host: lowercase hex SHA-256.
pub(super) fn key(seccomp: &LinuxSeccomp) -> Result<String> {
    // Agents are often per container: one program for every listener path, not one per path.
    let mut program_part = seccomp.clone();
    program_part.set_listener_path(None);
    program_part.set_listener_metadata(None);
    let profile = serde_json::to_vec(&program_part)
        .map_err(|err| SeccompError::Invalid(format!("profile does not serialize: {err}")))?;
    let version = ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut hasher = Sha256::new();
    let parts = [
        FORMAT.as_bytes(),
        version.as_bytes(),
        std::env::consts::ARCH.as_bytes(),
    ];
    for part in parts
        .into_iter()
        .chain([kernel.trim().as_bytes(), &profile])
    {
        // Length-prefixed, so that parts cannot run into each other.
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    Ok(hex(&hasher.finalize()))
}

/// The cached filter for `key`, if there is a sound one.
pub(super) fn lookup(dir: &Path, key: &str) -> Option<Filter> {
    let path = path(dir, key);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return None,
        Err(err) => {
            tracing::warn!(
                "seccomp: cannot read cached profile {}: {err}",
                path.display()
            );
            return None;
        }
    };
    let filter = decode(&bytes);
    if filter.is_none() {
        tracing::warn!(
            "seccomp: ignoring corrupt cached profile {}",
            path.display()
        );
    }
    filter
}

/// Writes `filter` as the cached program for `key`: to a temporary file, renamed into place, so
/// that a reader sees the whole file or none.
pub(super) fn store(dir: &Path, key: &str, filter: &Filter) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let tmp = dir.join(format!(".{key}.{}.{}.tmp", std::process::id(), unique()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = file
        .write_all(&encode(filter))
        .and_then(|()| fs::rename(&tmp, path(dir, key)));
    if written.is_err() {
        // Best effort: the write already failed, and a stray temp file is only clutter.
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.bpf"))
}

/// A number no other temp file of this process uses (threads may store at once).
fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn encode(filter: &Filter) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER + filter.program.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&filter.flags.to_le_bytes());
    bytes.push(u8::from(filter.notify));
    bytes.extend_from_slice(&(filter.program.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&checksum(filter.flags, filter.notify, &filter.program));
    bytes.extend_from_slice(&filter.program);
    bytes
}

fn decode(bytes: &[u8]) -> Option<Filter> {
    let (header, program) = bytes.split_at_checked(HEADER)?;
    let (magic, rest) = header.split_at(MAGIC.len());
    let (flags, rest) = rest.split_at(4);
    let (notify, rest) = rest.split_at(1);
    let (len, sum) = rest.split_at(4);
    let flags = u32::from_le_bytes(flags.try_into().ok()?);
    let notify = match notify {
        [0] => false,
        [1] => true,
        _ => return None,
    };
    let len = u32::from_le_bytes(len.try_into().ok()?);
    let sound = magic == MAGIC
        && usize::try_from(len).ok() == Some(program.len())
        && check_length(program).is_ok()
        && sum == checksum(flags, notify, program);
    sound.then(|| Filter {
        program: program.to_vec(),
        flags,
        notify,
    })
}

fn checksum(flags: u32, notify: bool, program: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(flags.to_le_bytes());
    hasher.update([u8::from(notify)]);
    hasher.update(program);
    hasher.finalize().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Filter {
        Filter {
            program: (0u8..16).collect(),
            flags: 4,
            notify: false,
        }
    }

    fn notify_filter() -> Filter {
        Filter {
            flags: 4 | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32,
            notify: true,
            ..filter()
        }
    }

    #[test]
    fn encoded_filter_decodes_back() {
        assert_eq!(decode(&encode(&filter())), Some(filter()));
        assert_eq!(decode(&encode(&notify_filter())), Some(notify_filter()));
    }

    #[test]
    fn notify_byte_is_checked() {
        let good = encode(&notify_filter());
        let notify_at = MAGIC.len() + 4;
        let mut cleared = good.clone();
        cleared[notify_at] = 0;
        assert_eq!(decode(&cleared), None, "notify flipped, checksum not");
        let mut two = good;
        two[notify_at] = 2;
        assert_eq!(decode(&two), None, "notify neither 0 nor 1");
    }

    #[test]
    fn version_1_files_are_not_read() {
        let mut v1 = encode(&filter());
        v1[..MAGIC.len()].copy_from_slice(b"KEELBPF1");
        assert_eq!(decode(&v1), None);
    }

    #[test]
    fn damaged_files_do_not_decode() {
        let good = encode(&filter());
        assert_eq!(decode(&good[..good.len() - 1]), None, "short");
        assert_eq!(decode(&good[..HEADER - 1]), None, "header cut");
        assert_eq!(decode(b""), None, "empty");
        let mut flipped = good.clone();
        flipped[HEADER + 3] ^= 1;
        assert_eq!(decode(&flipped), None, "bit flip in the program");
        let mut magic = good;
        magic[0] = b'X';
        assert_eq!(decode(&magic), None, "bad magic");
    }

    #[test]
    fn key_ignores_json_layout_but_not_content() {
        let a: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap();
        let b: LinuxSeccomp = serde_json::from_str(
            r#"{ "syscalls": [ { "action": "SCMP_ACT_ALLOW", "names": [ "read" ] } ],
                 "defaultAction": "SCMP_ACT_ERRNO" }"#,
        )
        .unwrap();
        let mut c = a.clone();
        c.set_default_errno_ret(Some(38));
        assert_eq!(key(&a).unwrap(), key(&b).unwrap());
        assert_ne!(key(&a).unwrap(), key(&c).unwrap());
        assert_eq!(key(&a).unwrap().len(), 64);
    }

    #[test]
    fn key_ignores_where_the_listener_goes() {
        let a: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/a.sock",
                "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        )
        .unwrap();
        let mut b = a.clone();
        b.set_listener_path(Some("/run/b.sock".into()));
        b.set_listener_metadata(Some("meta".into()));
        assert_eq!(key(&a).unwrap(), key(&b).unwrap());
    }
}
