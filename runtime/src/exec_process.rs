//! The `process` of `exec`: a process.json, or the container's own process with runc's exec
//! flags applied (command, tty, cwd, env, user, additional gids, caps, no_new_privs).

use std::path::Path;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, Process, User};

use crate::cli::ExecArgs;

/// Errors in exec's process.
#[derive(Debug, thiserror::Error)]
pub enum ExecProcessError {
    #[error("process file {path}: {msg}")]
    File { path: String, msg: String },
    #[error("exec: a command is required (after the container id) or --process")]
    NoCommand,
    #[error("exec: invalid --user {0:?}: use uid[:gid] with numbers")]
    User(String),
    #[error("exec: invalid --env {0:?}: use KEY=value")]
    Env(String),
    #[error("exec: unknown capability {0:?}")]
    Capability(String),
}

pub type Result<T> = std::result::Result<T, ExecProcessError>;

/// The process to run: `--process`, else the container's process with the flags applied.
pub fn build(container: Option<&Process>, args: &ExecArgs) -> Result<Process> {
    let mut p = match &args.process {
        Some(path) => from_file(path)?,
        None => from_flags(container.cloned().unwrap_or_default(), args)?,
    };
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(ExecProcessError::NoCommand);
    }
    if args.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    Ok(p)
}

fn from_file(path: &Path) -> Result<Process> {
    let err = |msg: String| ExecProcessError::File {
        path: path.display().to_string(),
        msg,
    };
    let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut doc: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| err(e.to_string()))?;
    crate::scheduling::normalize_process_json(&mut doc);
    // From bytes, as config.rs does: one deserializer per type in the binary.
    let normalized = serde_json::to_vec(&doc).map_err(|e| err(e.to_string()))?;
    serde_json::from_slice(&normalized).map_err(|e| err(e.to_string()))
}

fn from_flags(mut p: Process, args: &ExecArgs) -> Result<Process> {
    p.set_args(Some(args.command.clone()));
    p.set_terminal(Some(args.tty));
    p.set_console_size(None);
    if let Some(cwd) = &args.cwd {
        p.set_cwd(cwd.clone());
    }
    p.set_env(Some(merge_env(
        p.env().clone().unwrap_or_default(),
        &args.env,
    )?));
    if let Some(u) = &args.user {
        p.set_user(parse_user(u, p.user())?);
    }
    if !args.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(args.additional_gids.clone()));
        p.set_user(user);
    }
    if !args.cap.is_empty() {
        p.set_capabilities(Some(add_caps(
            p.capabilities().clone().unwrap_or_default(),
            &args.cap,
        )?));
    }
    Ok(p)
}

/// The container's env with `extra` (`KEY=value`) replacing or adding keys.
fn merge_env(mut env: Vec<String>, extra: &[String]) -> Result<Vec<String>> {
    for kv in extra {
        let Some((key, _)) = kv.split_once('=') else {
            return Err(ExecProcessError::Env(kv.clone()));
        };
        let prefix = format!("{key}=");
        env.retain(|e| !e.starts_with(&prefix));
        env.push(kv.clone());
    }
    Ok(env)
}

fn parse_user(spec: &str, base: &User) -> Result<User> {
    let bad = || ExecProcessError::User(spec.to_string());
    let (uid, gid) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let mut user = base.clone();
    user.set_uid(uid.parse().map_err(|_| bad())?);
    user.set_gid(
        gid.map(str::parse)
            .transpose()
            .map_err(|_| bad())?
            .unwrap_or(0),
    );
    Ok(user)
}

/// runc's `--cap`: added to bounding, effective and permitted, and to ambient when the process
/// has inheritable capabilities (ambient ones need them).
fn add_caps(mut caps: LinuxCapabilities, names: &[String]) -> Result<LinuxCapabilities> {
    let parsed = names
        .iter()
        .map(|n| parse_cap(n))
        .collect::<Result<Vec<Capability>>>()?;
    let add = |set: Option<Capabilities>| {
        let mut set = set.unwrap_or_default();
        set.extend(parsed.iter().copied());
        Some(set)
    };
    caps.set_bounding(add(caps.bounding().clone()));
    caps.set_effective(add(caps.effective().clone()));
    caps.set_permitted(add(caps.permitted().clone()));
    if caps.inheritable().as_ref().is_some_and(|s| !s.is_empty()) {
        caps.set_ambient(add(caps.ambient().clone()));
    }
    Ok(caps)
}

fn parse_cap(name: &str) -> Result<Capability> {
    let full = if name.starts_with("CAP_") {
        name.to_string()
    } else {
        format!("CAP_{name}")
    };
    serde_json::from_str(&serde_json::Value::String(full.to_uppercase()).to_string())
        .map_err(|_| ExecProcessError::Capability(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(line: &[&str]) -> ExecArgs {
        let mut argv = vec!["keel-runtime", "exec"];
        argv.extend_from_slice(line);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Exec(a) => a,
            _ => panic!("not exec"),
        }
    }

    #[test]
    fn flags_override_the_container_process() {
        let mut base = Process::default();
        base.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        let a = args(&[
            "-e", "A=2", "-u", "1000:100", "-g", "5", "--cwd", "/tmp", "c1", "--", "ls", "-l",
        ]);
        let p = build(Some(&base), &a).expect("process");
        assert_eq!(
            p.args().as_deref(),
            Some(&["ls".to_string(), "-l".to_string()][..])
        );
        assert_eq!(
            p.env().as_deref(),
            Some(&["PATH=/bin".to_string(), "A=2".to_string()][..])
        );
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 100));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[5u32][..]));
        assert_eq!(p.cwd(), Path::new("/tmp"));
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(matches!(
            build(None, &args(&["c1"])),
            Err(ExecProcessError::NoCommand)
        ));
        let bad_user = build(None, &args(&["-u", "bob", "c1", "true"]));
        assert!(matches!(bad_user, Err(ExecProcessError::User(_))));
        let bad_cap = build(None, &args(&["--cap", "CAP_NOPE", "c1", "true"]));
        assert!(matches!(bad_cap, Err(ExecProcessError::Capability(_))));
        let bad_env = build(None, &args(&["-e", "NOEQUALS", "c1", "true"]));
        assert!(matches!(bad_env, Err(ExecProcessError::Env(_))));
    }

    #[test]
    fn caps_are_added() {
        let a = args(&["--cap", "NET_ADMIN", "c1", "true"]);
        let p = build(Some(&Process::default()), &a).expect("process");
        let caps = p.capabilities().clone().expect("caps");
        assert!(caps
            .bounding()
            .as_ref()
            .expect("bounding")
            .contains(&Capability::NetAdmin));
        assert!(caps
            .effective()
            .as_ref()
            .expect("effective")
            .contains(&Capability::NetAdmin));
    }
}
