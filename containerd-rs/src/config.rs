//! The daemon's settings: flags, `KEEL_CONTAINERD_*` env vars, and a TOML file in containerd's
//! own layout (`root`, `state`, `[grpc] address`, `[ttrpc] address`, `[debug] level`), so a
//! containerd `config.toml` limited to those keys works unchanged. Flags win over the file,
//! the file over the defaults.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

/// The command line of `keel-containerd`.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "keel-containerd",
    version,
    about = "Keel's containerd-compatible supervisor"
)]
pub struct Cli {
    /// TOML config file (containerd's layout).
    #[arg(short, long, env = "KEEL_CONTAINERD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Persistent data: metadata database, content.
    #[arg(long, env = "KEEL_CONTAINERD_ROOT")]
    pub root: Option<PathBuf>,
    /// Runtime state: bundles, sockets.
    #[arg(long, env = "KEEL_CONTAINERD_STATE")]
    pub state: Option<PathBuf>,
    /// The gRPC socket.
    #[arg(short, long, env = "KEEL_CONTAINERD_ADDRESS")]
    pub address: Option<PathBuf>,
    /// error, warn, info, debug or trace.
    #[arg(short, long, env = "KEEL_CONTAINERD_LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// The settings the daemon runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub root: PathBuf,
    pub state: PathBuf,
    pub address: PathBuf,
    /// Where shims forward their events (containerd's ttrpc socket).
    pub ttrpc_address: PathBuf,
    pub log_level: String,
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("--log-level {0:?}: expected error, warn, info, debug or trace")]
    LogLevel(String),
    #[error("{what} must be an absolute path, not {path:?}")]
    Relative { what: &'static str, path: PathBuf },
}

#[derive(Debug, Default, Deserialize)]
struct FileConfig {
    root: Option<PathBuf>,
    state: Option<PathBuf>,
    #[serde(default)]
    grpc: Address,
    #[serde(default)]
    ttrpc: Address,
    #[serde(default)]
    debug: Debug,
}

#[derive(Debug, Default, Deserialize)]
struct Address {
    address: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct Debug {
    level: Option<String>,
}

pub const DEFAULT_ROOT: &str = "/var/lib/keel/containerd";
pub const DEFAULT_STATE: &str = "/run/keel/containerd";
pub const DEFAULT_ADDRESS: &str = "/run/keel/containerd/containerd.sock";

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

impl Config {
    /// Flags over the file over the defaults; validated.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let address = pick(&cli.address, &file.grpc.address, DEFAULT_ADDRESS);
        let ttrpc_address = file
            .ttrpc
            .address
            .clone()
            .filter(|_| cli.address.is_none())
            .unwrap_or_else(|| PathBuf::from(format!("{}.ttrpc", address.display())));
        let log_level = cli
            .log_level
            .clone()
            .or(file.debug.level)
            .unwrap_or_else(|| "info".to_string())
            .to_ascii_lowercase();
        let log_level = match log_level.as_str() {
            "warning" => "warn".to_string(),
            _ => log_level,
        };
        if !LEVELS.contains(&log_level.as_str()) {
            return Err(ConfigError::LogLevel(log_level));
        }
        let config = Self {
            root: pick(&cli.root, &file.root, DEFAULT_ROOT),
            state: pick(&cli.state, &file.state, DEFAULT_STATE),
            address,
            ttrpc_address,
            log_level,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (what, path) in [
            ("root", &self.root),
            ("state", &self.state),
            ("address", &self.address),
            ("ttrpc address", &self.ttrpc_address),
        ] {
            if !path.is_absolute() {
                return Err(ConfigError::Relative {
                    what,
                    path: path.clone(),
                });
            }
        }
        Ok(())
    }
}

fn pick(flag: &Option<PathBuf>, file: &Option<PathBuf>, default: &str) -> PathBuf {
    flag.clone()
        .or_else(|| file.clone())
        .unwrap_or_else(|| PathBuf::from(default))
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("keel-containerd").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults() {
        let c = Config::load(&Cli::default()).unwrap();
        assert_eq!(c.root, PathBuf::from(DEFAULT_ROOT));
        assert_eq!(c.address, PathBuf::from(DEFAULT_ADDRESS));
        assert_eq!(
            c.ttrpc_address,
            PathBuf::from("/run/keel/containerd/containerd.sock.ttrpc")
        );
        assert_eq!(c.log_level, "info");
    }

    #[test]
    fn a_containerd_config_file_and_flags_over_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "version = 2\nroot = \"/r\"\nstate = \"/s\"\ndisabled_plugins = []\n\
             [grpc]\n  address = \"/s/c.sock\"\n[ttrpc]\n  address = \"/s/c.sock.ttrpc\"\n\
             [debug]\n  level = \"debug\"\n[plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"/o\"\n",
        )
        .unwrap();
        let config = path.to_str().unwrap();
        let c = Config::load(&cli(&["--config", config])).unwrap();
        assert_eq!(
            (c.root.to_str(), c.state.to_str()),
            (Some("/r"), Some("/s"))
        );
        assert_eq!(c.address, PathBuf::from("/s/c.sock"));
        assert_eq!(c.ttrpc_address, PathBuf::from("/s/c.sock.ttrpc"));
        assert_eq!(c.log_level, "debug");
        let c = Config::load(&cli(&[
            "--config", config, "--root", "/x", "-a", "/y.sock", "-l", "WARNING",
        ]))
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/x"));
        assert_eq!(
            c.ttrpc_address,
            PathBuf::from("/y.sock.ttrpc"),
            "follows the flag's socket"
        );
        assert_eq!(c.log_level, "warn");
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        let err = Config::load(&cli(&["--log-level", "loud"])).unwrap_err();
        assert!(err.to_string().contains("loud"), "{err}");
        let err = Config::load(&cli(&["--root", "rel"])).unwrap_err();
        assert!(
            err.to_string().contains("root must be an absolute path"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "root = [").unwrap();
        let err = Config::load(&cli(&["--config", path.to_str().unwrap()])).unwrap_err();
        assert!(err.to_string().contains("bad.toml"), "{err}");
        let err = Config::load(&cli(&["--config", "/nope.toml"])).unwrap_err();
        assert!(err.to_string().contains("/nope.toml"), "{err}");
    }
}
