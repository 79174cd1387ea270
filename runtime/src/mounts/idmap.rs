//! Idmapped bind mounts: `uidMappings`/`gidMappings` on a `mounts[]` entry and the `idmap` and
//! `ridmap` options, with runc 1.2's semantics.
//!
//! A mapping's `containerID` is an id as stored on the source filesystem and its `hostID` the id
//! the mount shows instead, in the runtime's (the host's) terms; a container with a user
//! namespace then sees that host id through its own mappings. `idmap` alone takes the
//! container's mappings (or the user namespace it joins), so files owned by host root show as
//! the container's root. `rbind` clones the mounts under the source too; `ridmap` idmaps them all,
//! `idmap` only the top one.
//!
//! The kernel lets only a process privileged over the source's superblock (host root, for ext4
//! or tmpfs) set `MOUNT_ATTR_IDMAP`, and only on a detached mount; `keel-runtime init` is in the
//! container's user namespace before it mounts anything, where mount_setattr(2) answers EPERM.
//! So the work is split as in runc: the runtime's parent makes each idmapped tree
//! ([`prepare_idmapped_mounts`]: open_tree(2), then mount_setattr(2) with a user namespace that
//! carries the mappings) and hands it to init, which moves it onto the destination
//! ([`mount_idmapped`]: move_mount(2)) and applies the entry's flags like any bind's.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{fstat, SFlag};
use nix::unistd::{ForkResult, Pid};
use nix::NixPath;
use oci_spec::runtime::{Linux, LinuxIdMapping, LinuxNamespaceType, Mount, Spec};

use super::bind::{finish_bind, mount_point_kind};
use super::destination::{check_proc_destination, open_dest};
use super::options::{IdmapOption, MOUNT_ATTR_IDMAP};
use super::{
    invalid, is_bind, mount_setattr, parse_options, source_error, syscall, MountAttr, MountContext,
    MountError, MountOptions, Result,
};

/// `MS_SLAVE` as `mount_attr.propagation` takes it (a `u64` on every architecture).
const PROPAGATION_SLAVE: u64 = 1 << 19;

/// Whether `m` asks for an idmapped mount: mappings of its own, or `idmap`/`ridmap`.
pub fn is_idmapped(m: &Mount) -> bool {
    m.uid_mappings().is_some()
        || m.gid_mappings().is_some()
        || m.options()
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|o| o == "idmap" || o == "ridmap")
}

/// Makes the idmapped detached tree of every idmapped `mounts[]` entry of `spec`, by index.
///
/// Runs in the runtime (parent), as host root, before init mounts anything; relative sources
/// are taken from `bundle`. Each fd is an open_tree(2) clone to pass to init (by SCM_RIGHTS)
/// and give to [`super::mount_entry_with`] for the entry of that index; it unmounts itself
/// when the last fd to it is closed, so nothing is left behind if create fails.
pub fn prepare_idmapped_mounts(spec: &Spec, bundle: &Path) -> Result<Vec<(usize, OwnedFd)>> {
    let linux = spec.linux().as_ref();
    let mut namespaces = UsernsCache::default();
    let mut trees = Vec::new();
    for (index, m) in spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let Some(plan) = plan(m, linux)? else {
            continue;
        };
        let dest = m.destination().as_path();
        if !nix::unistd::geteuid().is_root() {
            return Err(invalid(
                dest,
                "idmapped mounts are not supported for rootless containers",
            ));
        }
        let src = source_in(bundle, dest, m.source().as_deref())?;
        let userns = namespaces.get(dest, &plan.userns)?;
        trees.push((index, idmapped_tree(dest, &src, &plan, userns)?));
    }
    Ok(trees)
}

/// Init's side: moves `tree` (made by [`prepare_idmapped_mounts`] for this entry) onto the
/// destination, then applies the entry's flags, propagation and attributes as for any bind.
pub(super) fn mount_idmapped(
    ctx: &MountContext<'_>,
    dest: &Path,
    src: &Path,
    tree: OwnedFd,
    opts: &MountOptions,
) -> Result<()> {
    let show = src.to_string_lossy();
    // The tree, not the host path, says what was cloned: the path may be out of init's reach.
    let st = fstat(&tree).map_err(|e| syscall(dest, &show, "stat the idmapped tree", e))?;
    let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
    let fd = open_dest(ctx, dest, mount_point_kind(is_dir))?;
    check_proc_destination(ctx, dest, &fd, "bind", Some(src))?;
    move_tree(&tree, &fd).map_err(|e| syscall(dest, &show, "move_mount", e))?;
    drop(tree);
    finish_bind(ctx, dest, src, &fd, opts)
}

/// Where an entry's id mappings come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MappingSource {
    /// A user namespace made for them, with these `uid_map` and `gid_map` contents.
    Maps { uid_map: String, gid_map: String },
    /// The user namespace the container joins (`idmap` without mappings of the entry's own).
    Joined(PathBuf),
}

/// How one entry is idmapped.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IdmapPlan {
    userns: MappingSource,
    /// `ridmap`: every mount of the clone is idmapped, not only its top.
    recursive: bool,
    /// `rbind`: the clone takes the mounts under the source along.
    rbind: bool,
}

/// Checks an entry as runc does and works out how to idmap it; `None` if it is not idmapped.
fn plan(m: &Mount, linux: Option<&Linux>) -> Result<Option<IdmapPlan>> {
    if !is_idmapped(m) {
        return Ok(None);
    }
    let dest = m.destination().as_path();
    let opts = parse_options(m.options().as_deref().unwrap_or_default())?;
    if !is_bind(m.typ().as_deref().unwrap_or(""), &opts) {
        return Err(invalid(
            dest,
            "idmapped mounts are only supported for bind mounts",
        ));
    }
    let userns = match (m.uid_mappings(), m.gid_mappings()) {
        (None, None) => container_mappings(dest, linux)?,
        (Some(uids), Some(gids)) if !uids.is_empty() && !gids.is_empty() => MappingSource::Maps {
            uid_map: map_text(uids),
            gid_map: map_text(gids),
        },
        _ => {
            return Err(invalid(
                dest,
                "an idmapped mount needs both uidMappings and gidMappings",
            ))
        }
    };
    Ok(Some(IdmapPlan {
        userns,
        recursive: opts.idmap == Some(IdmapOption::Recursive),
        rbind: opts.flags.contains(MsFlags::MS_REC),
    }))
}

/// `idmap` without mappings of the entry's own: those of the container's user namespace.
fn container_mappings(dest: &Path, linux: Option<&Linux>) -> Result<MappingSource> {
    let none = || {
        invalid(
            dest,
            "idmap without uidMappings and gidMappings takes the container's user namespace \
             mappings, and the container has none",
        )
    };
    let linux = linux.ok_or_else(none)?;
    let userns = linux
        .namespaces()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|ns| ns.typ() == LinuxNamespaceType::User)
        .ok_or_else(none)?;
    if let Some(path) = userns.path().as_ref().filter(|p| !p.as_os_str().is_empty()) {
        return Ok(MappingSource::Joined(path.clone()));
    }
    match (
        linux.uid_mappings().as_deref(),
        linux.gid_mappings().as_deref(),
    ) {
        (Some(uids), Some(gids)) if !uids.is_empty() && !gids.is_empty() => {
            Ok(MappingSource::Maps {
                uid_map: map_text(uids),
                gid_map: map_text(gids),
            })
        }
        _ => Err(none()),
    }
}

/// The contents of a `uid_map`/`gid_map` file for `maps`.
fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// The bind source as the parent must open it: relative sources are relative to the bundle.
fn source_in(bundle: &Path, dest: &Path, source: Option<&Path>) -> Result<PathBuf> {
    let src = source.ok_or_else(|| invalid(dest, "a bind mount needs a source"))?;
    Ok(bundle.join(src))
}

/// Clones `src`, idmaps the clone and makes it a slave, so that what the container mounts in
/// it never propagates back to the host (as for a bind made inside the container's rslave
/// mount namespace).
fn idmapped_tree(
    dest: &Path,
    src: &Path,
    plan: &IdmapPlan,
    userns: BorrowedFd<'_>,
) -> Result<OwnedFd> {
    let show = src.to_string_lossy();
    let tree = open_tree_clone(src, plan.rbind).map_err(|e| match e {
        Errno::ENOSYS => unsupported(dest, src, e),
        e => source_error(dest, src, e.into()),
    })?;
    let idmap = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    mount_setattr(&tree, plan.recursive, &idmap).map_err(|e| match e {
        Errno::EINVAL | Errno::EPERM | Errno::ENOSYS | Errno::EOPNOTSUPP => {
            unsupported(dest, src, e)
        }
        e => syscall(dest, &show, "mount_setattr(MOUNT_ATTR_IDMAP)", e),
    })?;
    let slave = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: PROPAGATION_SLAVE,
        userns_fd: 0,
    };
    mount_setattr(&tree, true, &slave).map_err(|e| syscall(dest, &show, "make rslave", e))?;
    Ok(tree)
}

fn unsupported(dest: &Path, src: &Path, errno: Errno) -> MountError {
    MountError::IdmapUnsupported {
        destination: dest.into(),
        src: src.into(),
        source: errno.into(),
    }
}

/// The user namespaces made (or opened) for the entries of one spec: entries with the same
/// mappings share one, as in runc.
#[derive(Debug, Default)]
struct UsernsCache {
    made: Vec<(MappingSource, OwnedFd)>,
}

impl UsernsCache {
    fn get(&mut self, dest: &Path, source: &MappingSource) -> Result<BorrowedFd<'_>> {
        let index = match self.made.iter().position(|(s, _)| s == source) {
            Some(i) => i,
            None => {
                let fd = match source {
                    MappingSource::Maps { uid_map, gid_map } => {
                        mapping_userns(dest, uid_map, gid_map)?
                    }
                    MappingSource::Joined(path) => File::open(path)
                        .map(OwnedFd::from)
                        .map_err(userns_error(dest, &format!("open {}", path.display())))?,
                };
                self.made.push((source.clone(), fd));
                self.made.len() - 1
            }
        };
        Ok(self.made[index].1.as_fd())
    }
}

/// A user namespace with the given `uid_map` and `gid_map`, as an fd: a child unshares it and
/// waits while we write its maps and open it, then is killed (the fd keeps the namespace).
fn mapping_userns(dest: &Path, uid_map: &str, gid_map: &str) -> Result<OwnedFd> {
    let (ready_r, ready_w) = pipe().map_err(userns_error(dest, "pipe"))?;
    let (hold_r, hold_w) = pipe().map_err(userns_error(dest, "pipe"))?;
    let holder = match fork_child().map_err(userns_error(dest, "fork"))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(hold_w);
            hold_new_user_namespace(&ready_w, &hold_r)
        }
        ForkResult::Parent { child } => Holder(child),
    };
    drop(ready_w);
    drop(hold_r);
    let mut status = [0u8; 4];
    File::from(ready_r)
        .read_exact(&mut status)
        .map_err(userns_error(dest, "wait for the holder process"))?;
    match i32::from_ne_bytes(status) {
        0 => {}
        errno => return Err(userns_error(dest, "unshare")(Errno::from_raw(errno))),
    }
    let pid = holder.0;
    for (file, text) in [("uid_map", uid_map), ("gid_map", gid_map)] {
        std::fs::write(format!("/proc/{pid}/{file}"), text)
            .map_err(userns_error(dest, &format!("write {file}")))?;
    }
    let fd =
        File::open(format!("/proc/{pid}/ns/user")).map_err(userns_error(dest, "open ns/user"))?;
    drop(hold_w);
    drop(holder);
    Ok(OwnedFd::from(fd))
}

fn userns_error<E: Into<io::Error>>(dest: &Path, step: &str) -> impl FnOnce(E) -> MountError {
    let (destination, step) = (dest.to_path_buf(), step.to_string());
    move |e| MountError::IdmapUserns {
        destination,
        step,
        source: e.into(),
    }
}

/// The child that holds a mapping user namespace open; killed and reaped on drop.
struct Holder(Pid);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.0, None);
    }
}

fn pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
}

/// The holder child: unshares a user namespace, reports the errno (0 for success) on `ready`,
/// and blocks until `hold` reaches EOF (the parent closed it or died) or it is killed. Only
/// async-signal-safe calls: the runtime that forked it may have other threads.
fn hold_new_user_namespace(ready: &OwnedFd, hold: &OwnedFd) -> ! {
    let errno = match unshare_user() {
        Ok(()) => 0,
        Err(e) => e as i32,
    };
    let _ = nix::unistd::write(ready, &errno.to_ne_bytes());
    let mut byte = [0u8; 1];
    let _ = nix::unistd::read(hold, &mut byte);
    exit_now()
}

#[allow(unsafe_code)]
fn fork_child() -> nix::Result<ForkResult> {
    // SAFETY: the child runs only `hold_new_user_namespace`, which makes raw system calls
    // (unshare, write, read, _exit) and touches no lock or allocator state of the parent.
    unsafe { nix::unistd::fork() }
}

/// unshare(CLONE_NEWUSER), with the flag zero-extended to the kernel's `unsigned long` (see
/// `namespaces::unshare_raw` for why not glibc's wrapper).
#[allow(unsafe_code)]
fn unshare_user() -> nix::Result<()> {
    let flags = libc::CLONE_NEWUSER as u32 as libc::c_ulong;
    // SAFETY: unshare takes one integer argument and touches no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_unshare, flags) };
    Errno::result(r).map(drop)
}

#[allow(unsafe_code)]
fn exit_now() -> ! {
    // SAFETY: _exit ends the (forked) process at once, without running the parent's atexit
    // handlers or flushing its buffers, which the child must not touch.
    unsafe { libc::_exit(0) }
}

/// open_tree(2) with `OPEN_TREE_CLONE`: a detached copy of the mount at `src` (and of the
/// mounts under it, with `recursive`).
#[allow(unsafe_code)]
fn open_tree_clone(src: &Path, recursive: bool) -> nix::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    let fd = src.with_nix_path(|path| {
        // SAFETY: open_tree reads the NUL-terminated path, which lives for the call; it
        // returns a new fd or -1.
        unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) }
    })?;
    let fd = RawFd::try_from(Errno::result(fd)?).map_err(|_| Errno::EBADF)?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// move_mount(2) of the detached tree `tree` onto the object `dest` holds.
#[allow(unsafe_code)]
fn move_tree(tree: &OwnedFd, dest: &OwnedFd) -> nix::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    // SAFETY: both paths are NUL-terminated empty strings and both fds are live for the call;
    // the kernel only reads them.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            dest.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(r).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mount(value: serde_json::Value) -> Mount {
        serde_json::from_value(value).expect("mount")
    }

    fn linux(value: serde_json::Value) -> Linux {
        serde_json::from_value(value).expect("linux")
    }

    fn userns_linux() -> Linux {
        linux(json!({
            "namespaces": [{"type": "user"}, {"type": "mount"}],
            "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}],
        }))
    }

    fn mapped(m: serde_json::Value, linux: Option<&Linux>) -> Result<Option<IdmapPlan>> {
        plan(&mount(m), linux)
    }

    #[test]
    fn plain_mounts_are_not_idmapped() {
        let m = json!({"destination": "/a", "type": "bind", "source": "/x", "options": ["rbind"]});
        assert_eq!(mapped(m, Some(&userns_linux())).expect("plan"), None);
    }

    #[test]
    fn own_mappings_make_an_idmapped_bind() {
        let m = json!({
            "destination": "/a", "type": "bind", "source": "/x", "options": ["rbind", "ridmap"],
            "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1},
                            {"containerID": 1, "hostID": 5000, "size": 10}],
            "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 1}],
        });
        let plan = mapped(m, None).expect("plan").expect("idmapped");
        assert_eq!(
            plan,
            IdmapPlan {
                userns: MappingSource::Maps {
                    uid_map: "0 1000 1\n1 5000 10\n".into(),
                    gid_map: "0 2000 1\n".into(),
                },
                recursive: true,
                rbind: true,
            }
        );
    }

    #[test]
    fn idmap_alone_takes_the_containers_mappings() {
        let m = json!({"destination": "/a", "source": "/x", "options": ["bind", "idmap"]});
        let plan = mapped(m, Some(&userns_linux()))
            .expect("plan")
            .expect("idmapped");
        assert_eq!(
            plan.userns,
            MappingSource::Maps {
                uid_map: "0 100000 65536\n".into(),
                gid_map: "0 200000 65536\n".into(),
            }
        );
        assert!(!plan.recursive && !plan.rbind);
    }

    #[test]
    fn idmap_alone_takes_a_joined_user_namespace() {
        let joined = linux(json!({"namespaces": [{"type": "user", "path": "/proc/42/ns/user"}]}));
        let m = json!({"destination": "/a", "type": "bind", "source": "/x", "options": ["idmap"]});
        let plan = mapped(m, Some(&joined)).expect("plan").expect("idmapped");
        assert_eq!(
            plan.userns,
            MappingSource::Joined("/proc/42/ns/user".into())
        );
    }

    #[test]
    fn refusals() {
        let no_userns = linux(json!({"namespaces": [{"type": "mount"}]}));
        let cases = [
            (
                json!({"destination": "/a", "type": "bind", "source": "/x", "options": ["idmap"]}),
                "the container has none",
            ),
            (
                json!({"destination": "/a", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}),
                "only supported for bind mounts",
            ),
            (
                json!({"destination": "/a", "type": "bind", "source": "/x",
                       "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}),
                "both uidMappings and gidMappings",
            ),
            (
                json!({"destination": "/a", "type": "bind", "source": "/x",
                       "uidMappings": [], "gidMappings": []}),
                "both uidMappings and gidMappings",
            ),
        ];
        for (m, needle) in cases {
            let err = mapped(m.clone(), Some(&no_userns)).expect_err("refused");
            let text = err.to_string();
            assert!(text.starts_with("mount /a: "), "{text}");
            assert!(text.contains(needle), "{m}: {text}");
        }
    }

    #[test]
    fn mappings_without_the_option_still_idmap() {
        let m = mount(json!({
            "destination": "/a", "type": "bind", "source": "/x",
            "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 1, "size": 1}],
        }));
        assert!(is_idmapped(&m));
        let plan = plan(&m, None).expect("plan").expect("idmapped");
        assert!(!plan.recursive);
    }

    #[test]
    fn relative_sources_are_taken_from_the_bundle() {
        let dest = Path::new("/a");
        let bundle = Path::new("/bundles/b");
        assert_eq!(
            source_in(bundle, dest, Some(Path::new("data"))).expect("source"),
            Path::new("/bundles/b/data")
        );
        assert_eq!(
            source_in(bundle, dest, Some(Path::new("/srv"))).expect("source"),
            Path::new("/srv")
        );
        assert!(source_in(bundle, dest, None).is_err());
    }

    /// The real thing, as root: a tree idmapped 0 → 4242 shows a root-owned file as 4242.
    #[test]
    fn prepared_tree_shows_mapped_owners() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: idmapped mounts need root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), "x").expect("write");
        std::os::unix::fs::chown(dir.path().join("f"), Some(0), Some(0)).expect("chown");
        let spec: Spec = serde_json::from_value(json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/a", "type": "bind", "source": dir.path(), "options": ["bind"],
                 "uidMappings": [{"containerID": 0, "hostID": 4242, "size": 1}],
                 "gidMappings": [{"containerID": 0, "hostID": 4343, "size": 1}]},
            ],
        }))
        .expect("spec");
        let trees = prepare_idmapped_mounts(&spec, Path::new("/")).expect("prepare");
        assert_eq!(trees.len(), 1);
        let (index, tree) = &trees[0];
        assert_eq!(*index, 1);
        let st = nix::sys::stat::fstatat(tree, "f", nix::fcntl::AtFlags::empty()).expect("stat");
        assert_eq!((st.st_uid, st.st_gid), (4242, 4343));
    }

    #[test]
    fn unsupported_filesystems_get_one_clear_line() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: idmapped mounts need root");
            return;
        }
        let spec: Spec = serde_json::from_value(json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/a", "type": "bind", "source": "/proc/sys", "options": ["bind"],
                 "uidMappings": [{"containerID": 0, "hostID": 4242, "size": 1}],
                 "gidMappings": [{"containerID": 0, "hostID": 4242, "size": 1}]},
            ],
        }))
        .expect("spec");
        let err = prepare_idmapped_mounts(&spec, Path::new("/")).expect_err("procfs refuses");
        assert!(
            matches!(err, MountError::IdmapUnsupported { .. }),
            "{err:?}"
        );
        assert_eq!(err.to_string().lines().count(), 1, "{err}");
        assert!(err
            .to_string()
            .starts_with("mount /a: idmapped mounts are not supported for source /proc/sys"));
    }
}
