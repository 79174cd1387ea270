//! The mounts a snapshot is used through, as containerd's overlay and native snapshotters
//! return them (clients mount exactly these, so the options and their order matter).

use std::path::{Path, PathBuf};

use keel_proto::types::Mount;

use super::record::Kind;

/// How a snapshotter lays its snapshots out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `snapshots/<id>/{fs,work}`; parents are overlay lower layers.
    Overlay,
    /// `snapshots/<id>`, a full copy of the parent.
    Native,
}

impl Backend {
    /// The snapshotter's name, as clients pass it (`--snapshotter`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Overlay => "overlayfs",
            Backend::Native => "native",
        }
    }

    /// The directory holding a snapshot's files.
    pub fn fs_dir(self, snapshots: &Path, id: u64) -> PathBuf {
        let dir = snapshots.join(id.to_string());
        match self {
            Backend::Overlay => dir.join("fs"),
            Backend::Native => dir,
        }
    }
}

/// containerd's overlay snapshotter: only views are read-only.
fn read_only(kind: Kind) -> &'static str {
    if kind == Kind::View {
        "ro"
    } else {
        "rw"
    }
}

fn bind(source: &Path, options: [&str; 2]) -> Mount {
    Mount {
        r#type: "bind".to_string(),
        source: source.display().to_string(),
        target: String::new(),
        options: options.iter().map(|o| o.to_string()).collect(),
    }
}

/// The mounts of snapshot `id` of `kind`, whose ancestors are `parents` (nearest first).
/// `index_off` adds overlayfs's `index=off`, as containerd does when the kernel knows it.
pub fn mounts(
    backend: Backend,
    snapshots: &Path,
    id: u64,
    kind: Kind,
    parents: &[u64],
    index_off: bool,
) -> Vec<Mount> {
    match backend {
        Backend::Overlay => overlay(snapshots, id, kind, parents, index_off),
        Backend::Native => vec![native(snapshots, id, kind, parents)],
    }
}

/// A native snapshot is a bind mount of its own copy, but a view of a parent is the parent's
/// directory itself (native makes no copy for a view); containerd puts `rbind` first here.
fn native(snapshots: &Path, id: u64, kind: Kind, parents: &[u64]) -> Mount {
    let source = match parents.first() {
        Some(parent) if kind != Kind::Active => *parent,
        _ => id,
    };
    bind(
        &Backend::Native.fs_dir(snapshots, source),
        ["rbind", read_only(kind)],
    )
}

fn overlay(snapshots: &Path, id: u64, kind: Kind, parents: &[u64], index_off: bool) -> Vec<Mount> {
    let backend = Backend::Overlay;
    if parents.is_empty() {
        // overlayfs needs a lower layer: a snapshot without one is its own directory.
        return vec![bind(
            &backend.fs_dir(snapshots, id),
            [read_only(kind), "rbind"],
        )];
    }
    let mut options = Vec::new();
    if index_off {
        options.push("index=off".to_string());
    }
    if kind == Kind::Active {
        let dir = snapshots.join(id.to_string());
        options.push(format!("workdir={}", dir.join("work").display()));
        options.push(format!("upperdir={}", dir.join("fs").display()));
    } else if let [parent] = parents {
        return vec![bind(&backend.fs_dir(snapshots, *parent), ["ro", "rbind"])];
    }
    let lower: Vec<String> = parents
        .iter()
        .map(|p| backend.fs_dir(snapshots, *p).display().to_string())
        .collect();
    options.push(format!("lowerdir={}", lower.join(":")));
    vec![Mount {
        r#type: "overlay".to_string(),
        source: "overlay".to_string(),
        target: String::new(),
        options,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "/r/io.containerd.snapshotter.v1.overlayfs/snapshots";

    #[test]
    fn active_without_parent_is_a_rw_bind_of_fs() {
        let m = mounts(Backend::Overlay, Path::new(S), 3, Kind::Active, &[], true);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].r#type, "bind");
        assert_eq!(m[0].source, format!("{S}/3/fs"));
        assert_eq!(m[0].options, ["rw", "rbind"]);
    }

    #[test]
    fn view_of_one_parent_is_a_ro_bind_of_the_parent() {
        let m = mounts(Backend::Overlay, Path::new(S), 4, Kind::View, &[1], true);
        assert_eq!(m[0].r#type, "bind");
        assert_eq!(m[0].source, format!("{S}/1/fs"));
        assert_eq!(m[0].options, ["ro", "rbind"]);
    }

    #[test]
    fn active_with_parents_is_overlay_in_containerds_option_order() {
        let m = mounts(
            Backend::Overlay,
            Path::new(S),
            5,
            Kind::Active,
            &[2, 1],
            true,
        );
        assert_eq!(m[0].r#type, "overlay");
        assert_eq!(m[0].source, "overlay");
        assert_eq!(
            m[0].options,
            [
                "index=off".to_string(),
                format!("workdir={S}/5/work"),
                format!("upperdir={S}/5/fs"),
                format!("lowerdir={S}/2/fs:{S}/1/fs"),
            ]
        );
    }

    #[test]
    fn view_of_two_parents_is_lowerdir_only() {
        let m = mounts(
            Backend::Overlay,
            Path::new(S),
            6,
            Kind::View,
            &[2, 1],
            false,
        );
        assert_eq!(m[0].options, [format!("lowerdir={S}/2/fs:{S}/1/fs")]);
    }

    #[test]
    fn committed_without_parent_is_rw_as_containerd_has_it() {
        let m = mounts(
            Backend::Overlay,
            Path::new(S),
            3,
            Kind::Committed,
            &[],
            false,
        );
        assert_eq!(m[0].options, ["rw", "rbind"]);
    }

    #[test]
    fn native_binds_its_copy_or_for_a_view_the_parent_rbind_first() {
        let s = Path::new("/r/native/snapshots");
        let m = mounts(Backend::Native, s, 9, Kind::Active, &[2, 1], true);
        assert_eq!(m[0].source, "/r/native/snapshots/9");
        assert_eq!(m[0].options, ["rbind", "rw"]);
        let m = mounts(Backend::Native, s, 10, Kind::View, &[2, 1], true);
        assert_eq!(m[0].source, "/r/native/snapshots/2");
        assert_eq!(m[0].options, ["rbind", "ro"]);
        let m = mounts(Backend::Native, s, 11, Kind::View, &[], true);
        assert_eq!(m[0].source, "/r/native/snapshots/11");
        assert_eq!(m[0].options, ["rbind", "ro"]);
    }
}
