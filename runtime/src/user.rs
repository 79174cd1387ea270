//! `process.user`: supplementary groups, gid and uid, switched while capabilities are kept, so
//! the capability sets can be applied for the new uid afterwards.

use nix::unistd::{setgroups, setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::User;

/// Errors switching user.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
}

pub type Result<T> = std::result::Result<T, UserError>;

/// The groups to set: additionalGids with duplicates removed, in their order.
pub fn supplementary_groups(user: &User) -> Vec<Gid> {
    let mut out: Vec<Gid> = Vec::new();
    for g in user.additional_gids().iter().flatten() {
        let g = Gid::from_raw(*g);
        if !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

/// Switches to `user`: groups (unless setgroups is denied, as in a rootless user namespace),
/// gid, then uid. Call with PR_SET_KEEPCAPS set to keep the permitted capabilities.
pub fn switch(user: &User, setgroups_allowed: bool) -> Result<()> {
    let sys = |what: String| move |source| UserError::Sys { what, source };
    if setgroups_allowed {
        setgroups(&supplementary_groups(user)).map_err(sys("setgroups".into()))?;
    }
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).map_err(sys(format!("setgid {gid}")))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).map_err(sys(format!("setuid {uid}")))
}

/// Whether this process may call setgroups (false when its user namespace wrote "deny").
pub fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() != "deny")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::UserBuilder;

    #[test]
    fn groups_dedup_in_order() {
        let u = UserBuilder::default()
            .uid(1u32)
            .gid(1u32)
            .additional_gids(vec![5u32, 3, 5, 1, 3])
            .build()
            .expect("user");
        let g: Vec<u32> = supplementary_groups(&u)
            .iter()
            .map(|g| g.as_raw())
            .collect();
        assert_eq!(g, vec![5, 3, 1]);
    }
}
