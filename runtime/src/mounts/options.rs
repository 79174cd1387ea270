//! The `options` of a mount entry, parsed as runc parses them: `MS_*` flags set or cleared,
//! propagation changes, recursive `MOUNT_ATTR_*` attributes, `idmap`/`ridmap`, and filesystem
//! data.

use nix::mount::MsFlags;

use super::{MountError, Result};

/// `MS_NOSYMFOLLOW` (Linux 5.10), which neither nix nor libc name yet.
const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);

// mount_setattr(2) attributes (linux/mount.h); stable kernel ABI, not in libc yet.
pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_ATIME: u64 = 0x70;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x20_0000;
pub(crate) const MOUNT_ATTR_IDMAP: u64 = 0x10_0000;

/// Which mounts of a bind the `idmap`/`ridmap` option idmaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdmapOption {
    /// `idmap`: the top mount only (the mounts an `rbind` brings along keep their ids).
    Top,
    /// `ridmap`: every mount of the bind.
    Recursive,
}

/// The parsed `options` of one mount entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for mount(2).
    pub flags: MsFlags,
    /// Flags the options turn off explicitly (`rw`, `suid`, ...); a bind remount must honour them.
    pub cleared: MsFlags,
    /// Propagation changes, applied in order after the mount.
    pub propagation: Vec<MsFlags>,
    /// `MOUNT_ATTR_*` bits to set recursively with mount_setattr(2) (`rro`, `rnosuid`, ...).
    pub attr_set: u64,
    /// `MOUNT_ATTR_*` bits to clear recursively.
    pub attr_clr: u64,
    /// `idmap` or `ridmap` (the last one given wins, as in runc).
    pub idmap: Option<IdmapOption>,
    /// Filesystem-specific options, comma-separated, for mount(2)'s data.
    pub data: String,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            attr_set: 0,
            attr_clr: 0,
            idmap: None,
            data: String::new(),
        }
    }
}

/// What one option string means.
enum Opt {
    Set(MsFlags),
    Clear(MsFlags),
    Propagation(MsFlags),
    AttrSet(u64),
    AttrClear(u64),
    Idmap(IdmapOption),
    Ignore,
    Unsupported,
    Data,
}

fn classify(option: &str) -> Opt {
    use MsFlags as F;
    use Opt::*;
    match option {
        "ro" => Set(F::MS_RDONLY),
        "rw" => Clear(F::MS_RDONLY),
        "nosuid" => Set(F::MS_NOSUID),
        "suid" => Clear(F::MS_NOSUID),
        "nodev" => Set(F::MS_NODEV),
        "dev" => Clear(F::MS_NODEV),
        "noexec" => Set(F::MS_NOEXEC),
        "exec" => Clear(F::MS_NOEXEC),
        "sync" => Set(F::MS_SYNCHRONOUS),
        "async" => Clear(F::MS_SYNCHRONOUS),
        "dirsync" => Set(F::MS_DIRSYNC),
        "remount" => Set(F::MS_REMOUNT),
        "mand" => Set(F::MS_MANDLOCK),
        "nomand" => Clear(F::MS_MANDLOCK),
        "noatime" => Set(F::MS_NOATIME),
        "atime" => Clear(F::MS_NOATIME),
        "nodiratime" => Set(F::MS_NODIRATIME),
        "diratime" => Clear(F::MS_NODIRATIME),
        "relatime" => Set(F::MS_RELATIME),
        "norelatime" => Clear(F::MS_RELATIME),
        "strictatime" => Set(F::MS_STRICTATIME),
        "nostrictatime" => Clear(F::MS_STRICTATIME),
        "silent" => Set(F::MS_SILENT),
        "loud" => Clear(F::MS_SILENT),
        "lazytime" => Set(F::MS_LAZYTIME),
        "nolazytime" => Clear(F::MS_LAZYTIME),
        "iversion" => Set(F::MS_I_VERSION),
        "noiversion" => Clear(F::MS_I_VERSION),
        "acl" => Set(F::MS_POSIXACL),
        "noacl" => Clear(F::MS_POSIXACL),
        "nosymfollow" => Set(MS_NOSYMFOLLOW),
        "symfollow" => Clear(MS_NOSYMFOLLOW),
        "bind" => Set(F::MS_BIND),
        "rbind" => Set(F::MS_BIND | F::MS_REC),
        "defaults" => Ignore,
        "private" => Propagation(F::MS_PRIVATE),
        "rprivate" => Propagation(F::MS_PRIVATE | F::MS_REC),
        "shared" => Propagation(F::MS_SHARED),
        "rshared" => Propagation(F::MS_SHARED | F::MS_REC),
        "slave" => Propagation(F::MS_SLAVE),
        "rslave" => Propagation(F::MS_SLAVE | F::MS_REC),
        "unbindable" => Propagation(F::MS_UNBINDABLE),
        "runbindable" => Propagation(F::MS_UNBINDABLE | F::MS_REC),
        "rro" => AttrSet(MOUNT_ATTR_RDONLY),
        "rrw" => AttrClear(MOUNT_ATTR_RDONLY),
        "rnosuid" => AttrSet(MOUNT_ATTR_NOSUID),
        "rsuid" => AttrClear(MOUNT_ATTR_NOSUID),
        "rnodev" => AttrSet(MOUNT_ATTR_NODEV),
        "rdev" => AttrClear(MOUNT_ATTR_NODEV),
        "rnoexec" => AttrSet(MOUNT_ATTR_NOEXEC),
        "rexec" => AttrClear(MOUNT_ATTR_NOEXEC),
        "rnodiratime" => AttrSet(MOUNT_ATTR_NODIRATIME),
        "rdiratime" => AttrClear(MOUNT_ATTR_NODIRATIME),
        "rrelatime" => AttrSet(MOUNT_ATTR_RELATIME),
        "rnorelatime" => AttrClear(MOUNT_ATTR_RELATIME),
        "rnoatime" => AttrSet(MOUNT_ATTR_NOATIME),
        "ratime" => AttrClear(MOUNT_ATTR_NOATIME),
        "rstrictatime" => AttrSet(MOUNT_ATTR_STRICTATIME),
        "rnostrictatime" => AttrClear(MOUNT_ATTR_STRICTATIME),
        "rnosymfollow" => AttrSet(MOUNT_ATTR_NOSYMFOLLOW),
        "rsymfollow" => AttrClear(MOUNT_ATTR_NOSYMFOLLOW),
        "idmap" => Idmap(IdmapOption::Top),
        "ridmap" => Idmap(IdmapOption::Recursive),
        "tmpcopyup" => Unsupported,
        _ => Data,
    }
}

/// Parses OCI mount options as runc does: known flags (last one wins), propagation, recursive
/// attributes; anything else is filesystem data, passed on in order.
pub fn parse_options<S: AsRef<str>>(options: &[S]) -> Result<MountOptions> {
    let mut opts = MountOptions::default();
    let mut data = Vec::new();
    for option in options.iter().map(AsRef::as_ref) {
        match classify(option) {
            Opt::Set(f) => {
                opts.flags |= f;
                opts.cleared &= !f;
            }
            Opt::Clear(f) => {
                opts.flags &= !f;
                opts.cleared |= f;
            }
            Opt::Propagation(f) => opts.propagation.push(f),
            Opt::AttrSet(a) => {
                opts.attr_set |= a;
                // mount_setattr(2) takes an atime mode only with the whole atime field cleared.
                if a & MOUNT_ATTR_ATIME == a {
                    opts.attr_clr |= MOUNT_ATTR_ATIME;
                }
            }
            Opt::AttrClear(a) => opts.attr_clr |= a,
            Opt::Idmap(scope) => opts.idmap = Some(scope),
            Opt::Ignore => {}
            Opt::Unsupported => return Err(MountError::UnsupportedOption(option.to_string())),
            Opt::Data => data.push(option),
        }
    }
    opts.data = data.join(",");
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(options: &[&str]) -> MountOptions {
        parse_options(options).expect("parse")
    }

    #[test]
    fn flags_set_and_clear_in_order() {
        let o = parse(&["ro", "nosuid", "nodev", "noexec", "relatime"]);
        assert_eq!(
            o.flags,
            MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_RELATIME
        );
        assert!(o.cleared.is_empty());
        let o = parse(&["ro", "rw", "suid", "nosuid", "dev"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID);
        assert_eq!(o.cleared, MsFlags::MS_RDONLY | MsFlags::MS_NODEV);
    }

    #[test]
    fn every_listed_flag_is_known() {
        let all = [
            "ro",
            "rw",
            "suid",
            "nosuid",
            "dev",
            "nodev",
            "exec",
            "noexec",
            "sync",
            "async",
            "dirsync",
            "remount",
            "mand",
            "nomand",
            "atime",
            "noatime",
            "diratime",
            "nodiratime",
            "relatime",
            "norelatime",
            "strictatime",
            "nostrictatime",
            "bind",
            "rbind",
            "private",
            "rprivate",
            "shared",
            "rshared",
            "slave",
            "rslave",
            "unbindable",
            "runbindable",
            "silent",
            "loud",
            "defaults",
            "lazytime",
        ];
        for option in all {
            assert_eq!(parse(&[option]).data, "", "{option} was taken as data");
        }
    }

    #[test]
    fn bind_and_rbind() {
        assert_eq!(parse(&["bind"]).flags, MsFlags::MS_BIND);
        assert_eq!(parse(&["rbind"]).flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(parse(&["defaults"]).flags, MsFlags::empty());
        assert_eq!(
            parse(&[
                "strictatime",
                "sync",
                "dirsync",
                "silent",
                "lazytime",
                "mand",
                "remount"
            ])
            .flags,
            MsFlags::MS_STRICTATIME
                | MsFlags::MS_SYNCHRONOUS
                | MsFlags::MS_DIRSYNC
                | MsFlags::MS_SILENT
                | MsFlags::MS_LAZYTIME
                | MsFlags::MS_MANDLOCK
                | MsFlags::MS_REMOUNT
        );
    }

    #[test]
    fn propagation_is_kept_in_order() {
        let o = parse(&["rbind", "rprivate", "shared", "slave", "runbindable"]);
        assert_eq!(
            o.propagation,
            vec![
                MsFlags::MS_PRIVATE | MsFlags::MS_REC,
                MsFlags::MS_SHARED,
                MsFlags::MS_SLAVE,
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
            ]
        );
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
    }

    #[test]
    fn unknown_options_are_data_in_order() {
        let o = parse(&[
            "nosuid",
            "mode=755",
            "size=65536k",
            "newinstance",
            "ptmxmode=0666",
        ]);
        assert_eq!(o.data, "mode=755,size=65536k,newinstance,ptmxmode=0666");
        assert_eq!(o.flags, MsFlags::MS_NOSUID);
    }

    #[test]
    fn recursive_attributes() {
        let o = parse(&["rro", "rnosuid", "rnodev", "rnoexec"]);
        assert_eq!(
            o.attr_set,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC
        );
        assert_eq!(o.attr_clr, 0);
        let o = parse(&["rnoatime"]);
        assert_eq!(
            (o.attr_set, o.attr_clr),
            (MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME)
        );
        let o = parse(&["rrelatime"]);
        assert_eq!((o.attr_set, o.attr_clr), (0, MOUNT_ATTR_ATIME));
        let o = parse(&["ratime", "rrw"]);
        assert_eq!(
            (o.attr_set, o.attr_clr),
            (0, MOUNT_ATTR_NOATIME | MOUNT_ATTR_RDONLY)
        );
    }

    #[test]
    fn unsupported_options_are_refused() {
        let err = parse_options(&["tmpcopyup"]).expect_err("tmpcopyup");
        assert!(err.to_string().contains("tmpcopyup"));
    }

    #[test]
    fn idmap_options_last_one_wins() {
        assert_eq!(parse(&["bind"]).idmap, None);
        assert_eq!(parse(&["bind", "idmap"]).idmap, Some(IdmapOption::Top));
        assert_eq!(
            parse(&["rbind", "ridmap"]).idmap,
            Some(IdmapOption::Recursive)
        );
        let o = parse(&["ridmap", "idmap"]);
        assert_eq!(o.idmap, Some(IdmapOption::Top));
        assert_eq!((o.data.as_str(), o.flags), ("", MsFlags::empty()));
    }
}
