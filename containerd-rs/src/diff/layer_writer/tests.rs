//! The layer Diff writes, read back entry by entry.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;

/// (path, kind, link target) of each entry; PAX xattrs as `xattr:<key>` kinds.
fn entries(lower: &Path, upper: &Path) -> Vec<(String, String, String)> {
    let mut tar = Vec::new();
    write_diff(&mut tar, lower, upper).unwrap();
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.display().to_string())
            .unwrap_or_default();
        if let Some(pax) = entry.pax_extensions().unwrap() {
            for ext in pax {
                let ext = ext.unwrap();
                out.push((
                    path.clone(),
                    format!("pax:{}", ext.key().unwrap()),
                    String::new(),
                ));
            }
        }
        let kind = format!("{:?}", entry.header().entry_type());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((path, kind, link));
    }
    out
}

fn trees() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
    fs::create_dir_all(&lower).unwrap();
    fs::create_dir_all(&upper).unwrap();
    (dir, lower, upper)
}

fn both(lower: &Path, upper: &Path, f: impl Fn(&Path)) {
    f(lower);
    f(upper);
}

fn e(path: &str, kind: &str, link: &str) -> (String, String, String) {
    (path.into(), kind.into(), link.into())
}

#[test]
fn unchanged_parents_come_before_what_changed_in_them() {
    let (_d, lower, upper) = trees();
    both(&lower, &upper, |root| {
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/same"), "x").unwrap();
        fs::write(root.join("a/gone"), "x").unwrap();
    });
    let mtime = fs::metadata(lower.join("a/b/same"))
        .unwrap()
        .modified()
        .unwrap();
    fs::File::options()
        .write(true)
        .open(upper.join("a/b/same"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::remove_file(upper.join("a/gone")).unwrap();
    fs::write(upper.join("a/b/new"), "n").unwrap();
    assert_eq!(
        entries(&lower, &upper),
        [
            e("a", "Directory", ""),
            e("a/.wh.gone", "Regular", ""),
            e("a/b", "Directory", ""),
            e("a/b/new", "Regular", ""),
        ]
    );
}

#[test]
fn hard_links_stay_links() {
    let (_d, lower, upper) = trees();
    fs::write(upper.join("one"), "data").unwrap();
    fs::hard_link(upper.join("one"), upper.join("two")).unwrap();
    assert_eq!(
        entries(&lower, &upper),
        [e("one", "Regular", ""), e("two", "Link", "one")]
    );
}

#[test]
fn an_unchanged_name_of_a_changed_inode_is_linked_once_the_inode_is_written() {
    let (_d, lower, upper) = trees();
    // lower: a (0600) and b (0644), separate files alike but for the mode.
    fs::write(lower.join("a"), "data").unwrap();
    fs::write(lower.join("b"), "data").unwrap();
    fs::set_permissions(lower.join("a"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(lower.join("b"), fs::Permissions::from_mode(0o644)).unwrap();
    // upper: b made 0600 and a made a link to it — a looks unchanged, b changed.
    fs::write(upper.join("b"), "data").unwrap();
    fs::set_permissions(upper.join("b"), fs::Permissions::from_mode(0o600)).unwrap();
    let mtime = fs::metadata(lower.join("a")).unwrap().modified().unwrap();
    fs::File::options()
        .write(true)
        .open(upper.join("b"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::hard_link(upper.join("b"), upper.join("a")).unwrap();
    assert_eq!(
        entries(&lower, &upper),
        [e("b", "Regular", ""), e("a", "Link", "b")]
    );
}

#[test]
fn sockets_are_left_out() {
    let (_d, lower, upper) = trees();
    let _socket = std::os::unix::net::UnixListener::bind(upper.join("sock")).unwrap();
    fs::write(upper.join("file"), "x").unwrap();
    assert_eq!(entries(&lower, &upper), [e("file", "Regular", "")]);
}

#[test]
fn a_files_capabilities_travel_as_a_pax_record() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: setting security.capability needs root");
        return;
    }
    let (_d, lower, upper) = trees();
    fs::write(upper.join("ping"), "bin").unwrap();
    // cap_net_raw+ep, as `setcap` writes it (VFS_CAP_REVISION_2).
    let cap: [u8; 20] = [0, 0, 0, 2, 0, 32, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let dir = fs::File::open(&upper).unwrap();
    use std::os::fd::AsFd;
    sys::set_xattr_at(dir.as_fd(), b"ping", b"security.capability", &cap).unwrap();
    assert_eq!(
        entries(&lower, &upper),
        [
            e("ping", "pax:SCHILY.xattr.security.capability", ""),
            e("ping", "Regular", ""),
        ]
    );
}

#[test]
fn pax_records_count_their_own_length() {
    for value in [&b""[..], b"x", &[7u8; 90], &[7u8; 995]] {
        let record = pax_record("SCHILY.xattr.k", value);
        let (len, _) =
            std::str::from_utf8(&record[..record.iter().position(|b| *b == b' ').unwrap()])
                .map(|l| (l.parse::<usize>().unwrap(), ()))
                .unwrap();
        assert_eq!(len, record.len());
    }
}
