//! The container's process as Docker resolves it from the create request and the image
//! config: the command (entrypoint and cmd), the environment, the working directory and the
//! user (names looked up in the image's `/etc/passwd` and `/etc/group`).

use super::SpecError;

/// Docker's default PATH, set when neither image nor request sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The command: the request's entrypoint replaces the image's, and then the image's cmd is
/// dropped unless the request gives one (Docker's rule).
pub fn command(
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
    image_entrypoint: &[String],
    image_cmd: &[String],
) -> Result<Vec<String>, SpecError> {
    let (entrypoint, cmd) = match entrypoint {
        // `--entrypoint ""` clears the image's entrypoint.
        Some(e) => (
            e.iter().filter(|s| !s.is_empty()).cloned().collect(),
            cmd.unwrap_or_default().to_vec(),
        ),
        None => (
            image_entrypoint.to_vec(),
            cmd.map_or_else(|| image_cmd.to_vec(), <[String]>::to_vec),
        ),
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::InvalidParameter("No command specified".into()));
    }
    Ok(args)
}

/// The environment: PATH (unless given), HOSTNAME, TERM for a terminal, the image's, then the
/// request's — a later `KEY=` replaces an earlier one in place.
pub fn environment(
    image_env: &[String],
    request_env: &[String],
    hostname: &str,
    tty: bool,
) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let mut set = |entry: &str| {
        let key = entry.split('=').next().unwrap_or(entry);
        match env.iter_mut().find(|e| e.split('=').next() == Some(key)) {
            Some(existing) => *existing = entry.to_string(),
            None => env.push(entry.to_string()),
        }
    };
    set(&format!("PATH={DEFAULT_PATH}"));
    set(&format!("HOSTNAME={hostname}"));
    if tty {
        set("TERM=xterm");
    }
    for entry in image_env.iter().chain(request_env) {
        // `-e NAME` without a value and without NAME in the engine's env is dropped by the CLI.
        if entry.contains('=') {
            set(entry);
        }
    }
    env
}

/// Who the process runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Resolves Docker's `--user` (`""`, `uid`, `uid:gid`, `name`, `name:group`) with the image's
/// passwd and group files (their contents; empty if the image has none).
pub fn user(spec: &str, passwd: &str, group: &str) -> Result<User, SpecError> {
    if spec.is_empty() {
        return Ok(User::default());
    }
    let (who, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd_entries(passwd).find(|e| e.0 == who || e.1.to_string() == who);
    let (uid, primary_gid) = match (who.parse::<u32>(), entry) {
        (Ok(uid), Some((_, _, gid))) => (uid, gid),
        (Ok(uid), None) => (uid, 0),
        (Err(_), Some((_, uid, gid))) => (uid, gid),
        (Err(_), None) => {
            return Err(SpecError::InvalidParameter(format!(
                "unable to find user {who}: no matching entries in passwd file"
            )))
        }
    };
    let gid = match grp {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_entries(group)
                .find(|(name, _, _)| *name == g)
                .map(|(_, gid, _)| gid)
                .ok_or_else(|| {
                    SpecError::InvalidParameter(format!(
                        "unable to find group {g}: no matching entries in group file"
                    ))
                })?,
        },
    };
    let name = entry.map(|(n, _, _)| n);
    let additional_gids = match (grp, name) {
        (None, Some(name)) => group_entries(group)
            .filter(|(_, gid, members)| *gid != primary_gid && members.contains(&name))
            .map(|(_, gid, _)| gid)
            .collect(),
        _ => Vec::new(),
    };
    Ok(User {
        uid,
        gid,
        additional_gids,
    })
}

/// (name, uid, gid) of each well-formed passwd line.
fn passwd_entries(passwd: &str) -> impl Iterator<Item = (&str, u32, u32)> {
    passwd.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [name, _, uid, gid, ..] => Some((*name, uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    })
}

/// (name, gid, members) of each well-formed group line.
fn group_entries(group: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    group.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields.as_slice() {
            [name, _, gid, members, ..] => Some((
                *name,
                gid.parse().ok()?,
                members.split(',').filter(|m| !m.is_empty()).collect(),
            )),
            [name, _, gid] => Some((*name, gid.parse().ok()?, Vec::new())),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_command_follows_dockers_rules() {
        let (ie, ic) = (v(&["/entry"]), v(&["default"]));
        assert_eq!(
            command(None, None, &ie, &ic).unwrap(),
            v(&["/entry", "default"])
        );
        assert_eq!(
            command(None, Some(&v(&["x"])), &ie, &ic).unwrap(),
            v(&["/entry", "x"])
        );
        // A new entrypoint drops the image's cmd.
        assert_eq!(
            command(Some(&v(&["/sh"])), None, &ie, &ic).unwrap(),
            v(&["/sh"])
        );
        assert_eq!(
            command(Some(&v(&[""])), Some(&v(&["echo", "hi"])), &ie, &ic).unwrap(),
            v(&["echo", "hi"])
        );
        let e = command(None, None, &[], &[]).unwrap_err();
        assert_eq!(e.to_string(), "No command specified");
    }

    #[test]
    fn the_environment_is_layered_with_later_keys_winning() {
        let env = environment(
            &v(&["PATH=/img", "A=1"]),
            &v(&["A=2", "B=3", "NOVALUE"]),
            "h1",
            true,
        );
        assert_eq!(
            env,
            v(&["PATH=/img", "HOSTNAME=h1", "TERM=xterm", "A=2", "B=3"])
        );
        let env = environment(&[], &[], "h", false);
        assert_eq!(env, v(&[&format!("PATH={DEFAULT_PATH}"), "HOSTNAME=h"]));
    }

    #[test]
    fn users_resolve_by_number_and_by_name() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\nbad line\n";
        let group = "root:x:0:\nwww:x:33:\nstaff:x:50:www,other\nsolo:x:60\n";
        assert_eq!(user("", passwd, group).unwrap(), User::default());
        assert_eq!(user("1000", passwd, group).unwrap().uid, 1000);
        assert_eq!(
            user("www", passwd, group).unwrap(),
            User {
                uid: 33,
                gid: 33,
                additional_gids: vec![50]
            }
        );
        assert_eq!(
            user("33:staff", passwd, group).unwrap(),
            User {
                uid: 33,
                gid: 50,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            user("1000:1000", "", "").unwrap(),
            User {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![]
            }
        );
        assert!(user("nobody-here", passwd, group)
            .unwrap_err()
            .to_string()
            .contains("no matching entries in passwd file"));
        assert!(user("www:nogroup", passwd, group).is_err());
    }
}
