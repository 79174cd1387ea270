//! The shim's command line, as containerd passes it: Go `flag` style (`-namespace ns`,
//! `--id=x`, `-debug`), then an optional action (`start`, `delete`; none runs the daemon).

use std::path::PathBuf;

/// What was asked of this invocation of the binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start (or find) the shim daemon for a container and print its address.
    Start,
    /// Clean up after a shim that died, print the `DeleteResponse`.
    Delete,
    /// Serve the task API (the daemon started by `start`).
    Serve,
    /// Print the version.
    Version,
}

/// The shim's flags; the names and meanings are containerd's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub namespace: String,
    pub id: String,
    /// containerd's gRPC address (the socket path), used to derive the shim's socket.
    pub address: String,
    pub publish_binary: String,
    /// The bundle directory (`delete` gets it; `start` runs in it).
    pub bundle: Option<PathBuf>,
    pub debug: bool,
    pub action: Action,
}

/// A command line the shim does not understand.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    #[error("flag provided but not defined: -{0}")]
    UnknownFlag(String),
    #[error("flag needs an argument: -{0}")]
    MissingValue(String),
    #[error("unknown action {0:?}: expected start, delete or none")]
    UnknownAction(String),
    #[error("-{0} is required")]
    Required(&'static str),
}

impl Args {
    /// Parses `argv` without the program name.
    pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Self, ArgsError> {
        let mut args = Args {
            namespace: String::new(),
            id: String::new(),
            address: String::new(),
            publish_binary: String::new(),
            bundle: None,
            debug: false,
            action: Action::Serve,
        };
        let mut version = false;
        let mut it = argv.into_iter();
        let mut positional = Vec::new();
        while let Some(arg) = it.next() {
            let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                positional.push(arg);
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            match name.as_str() {
                "debug" => args.debug = inline.is_none_or(|v| v != "false"),
                "v" | "version" => version = true,
                "namespace" | "id" | "address" | "publish-binary" | "bundle" | "socket" => {
                    let value = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .ok_or_else(|| ArgsError::MissingValue(name.clone()))?,
                    };
                    args.set(&name, value);
                }
                _ => return Err(ArgsError::UnknownFlag(name)),
            }
        }
        args.action = match positional.first().map(String::as_str) {
            _ if version => Action::Version,
            None => Action::Serve,
            Some("start") => Action::Start,
            Some("delete") => Action::Delete,
            Some(other) => return Err(ArgsError::UnknownAction(other.to_string())),
        };
        args.validate()?;
        Ok(args)
    }

    fn set(&mut self, name: &str, value: String) {
        match name {
            "namespace" => self.namespace = value,
            "id" => self.id = value,
            "address" => self.address = value,
            "publish-binary" => self.publish_binary = value,
            "bundle" => self.bundle = Some(PathBuf::from(value)),
            // containerd 1.7+ may pass the socket it wants; the address is derived anyway.
            _ => {}
        }
    }

    fn validate(&self) -> Result<(), ArgsError> {
        if self.action == Action::Version {
            return Ok(());
        }
        if self.namespace.is_empty() {
            return Err(ArgsError::Required("namespace"));
        }
        if self.id.is_empty() {
            return Err(ArgsError::Required("id"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, ArgsError> {
        Args::parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn containerd_start_line() {
        let args = parse(
            "-namespace default -address /run/containerd/containerd.sock \
             -publish-binary /usr/bin/containerd -id c1 -debug start",
        )
        .unwrap();
        assert_eq!(args.namespace, "default");
        assert_eq!(args.id, "c1");
        assert_eq!(args.address, "/run/containerd/containerd.sock");
        assert!(args.debug);
        assert_eq!(args.action, Action::Start);
    }

    #[test]
    fn delete_with_bundle_and_equals_form() {
        let args = parse("--namespace=n -id=x -bundle /b delete").unwrap();
        assert_eq!(args.bundle, Some(PathBuf::from("/b")));
        assert_eq!(args.action, Action::Delete);
    }

    #[test]
    fn no_action_serves() {
        assert_eq!(parse("-namespace n -id x").unwrap().action, Action::Serve);
    }

    #[test]
    fn version_needs_nothing_else() {
        assert_eq!(parse("-v").unwrap().action, Action::Version);
    }

    #[test]
    fn bad_lines_are_refused() {
        assert_eq!(
            parse("-namespace n -id x -bogus 1"),
            Err(ArgsError::UnknownFlag("bogus".into()))
        );
        assert_eq!(
            parse("-namespace n -id"),
            Err(ArgsError::MissingValue("id".into()))
        );
        assert_eq!(parse("-id x start"), Err(ArgsError::Required("namespace")));
        assert_eq!(
            parse("-namespace n -id x frobnicate"),
            Err(ArgsError::UnknownAction("frobnicate".into()))
        );
    }
}
