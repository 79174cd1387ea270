//! keeld's settings: one clap struct ([`Cli`]) whose flags are also `KEEL_*` env vars, and a
//! JSON file (`--config`) with the same keys (`data-root`, `host`, `containerd`,
//! `containerd-namespace`, `log-level`),
//! as dockerd's `daemon.json` does. Flags and env win over the file, the file over the defaults;
//! everything is validated here, before the daemon touches the disk.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

/// Where the engine keeps its own records (and, when it starts one, the supervisor's data).
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/keel/engine";
/// The API socket the docker CLI talks to.
pub const DEFAULT_HOST: &str = "unix:///run/keel/keel.sock";
/// The supervisor's gRPC socket (keel-containerd's default address).
pub const DEFAULT_CONTAINERD: &str = "/run/keel/containerd/containerd.sock";
/// The containerd namespace of the engine's containers and images.
pub const DEFAULT_CONTAINERD_NAMESPACE: &str = "keel";
/// The log level when none is given.
pub const DEFAULT_LOG_LEVEL: &str = "info";

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// The command line of `keeld`.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "keeld", version, about = "Keel's Docker Engine API daemon")]
pub struct Cli {
    /// JSON config file with the keys data-root, host, containerd, containerd-namespace,
    /// log-level.
    #[arg(long, env = "KEEL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Root of the engine's persistent state [default: /var/lib/keel/engine].
    #[arg(long, env = "KEEL_DATA_ROOT")]
    pub data_root: Option<PathBuf>,
    /// The socket to serve the API on, unix://PATH [default: unix:///run/keel/keel.sock].
    #[arg(short = 'H', long, env = "KEEL_HOST")]
    pub host: Option<String>,
    /// The supervisor's socket; keel-containerd is started there if none answers
    /// [default: /run/keel/containerd/containerd.sock].
    #[arg(long, env = "KEEL_CONTAINERD")]
    pub containerd: Option<PathBuf>,
    /// The containerd namespace of the engine's containers and images, as dockerd's
    /// --containerd-namespace [default: keel].
    #[arg(long, env = "KEEL_CONTAINERD_NAMESPACE")]
    pub containerd_namespace: Option<String>,
    /// error, warn, info, debug or trace [default: info].
    #[arg(short = 'l', long, env = "KEEL_LOG_LEVEL")]
    pub log_level: Option<String>,
}

/// The settings the daemon runs with, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Root of the engine's persistent state.
    pub data_root: PathBuf,
    /// The path of the API's unix socket.
    pub socket: PathBuf,
    /// The supervisor's gRPC socket.
    pub containerd: PathBuf,
    /// The containerd namespace the engine works in.
    pub containerd_namespace: String,
    /// One of error, warn, info, debug, trace.
    pub log_level: String,
}

/// A configuration that cannot be used, said so the user can fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("reading the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file is not JSON with the known keys.
    #[error("the config file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// `--host` is not a `unix://` address.
    #[error("--host {0:?}: only unix:///absolute/path sockets are supported")]
    Host(String),
    /// Not a containerd namespace name.
    #[error("--containerd-namespace {0:?}: expected letters, digits, '.', '_' and '-', starting with a letter or digit, at most 76 characters")]
    Namespace(String),
    /// Unknown log level.
    #[error("--log-level {0:?}: expected error, warn, info, debug or trace")]
    LogLevel(String),
    /// A path that must be absolute is not.
    #[error("{what} must be an absolute path, not {path:?}")]
    Relative { what: &'static str, path: PathBuf },
}

/// The config file: the flags' keys, nothing else (a typo is an error, not a silent default).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    data_root: Option<PathBuf>,
    host: Option<String>,
    containerd: Option<PathBuf>,
    containerd_namespace: Option<String>,
    log_level: Option<String>,
}

impl Config {
    /// Flags (and env) over the file over the defaults; validated.
    pub fn load(cli: &Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_root = cli
            .data_root
            .clone()
            .or(file.data_root)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_ROOT));
        let host = cli
            .host
            .clone()
            .or(file.host)
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        let containerd = cli
            .containerd
            .clone()
            .or(file.containerd)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTAINERD));
        let namespace = cli
            .containerd_namespace
            .clone()
            .or(file.containerd_namespace)
            .unwrap_or_else(|| DEFAULT_CONTAINERD_NAMESPACE.to_string());
        let log_level = cli
            .log_level
            .clone()
            .or(file.log_level)
            .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_string());
        Ok(Config {
            data_root: absolute("--data-root", data_root)?,
            socket: parse_host(&host)?,
            containerd: absolute("--containerd", containerd)?,
            containerd_namespace: parse_namespace(namespace)?,
            log_level: parse_level(&log_level)?,
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// `unix:///path` → `/path`, as dockerd's `-H` takes it.
pub fn parse_host(host: &str) -> Result<PathBuf, ConfigError> {
    let path = host
        .strip_prefix("unix://")
        .ok_or_else(|| ConfigError::Host(host.to_string()))?;
    if path.is_empty() || !Path::new(path).is_absolute() {
        return Err(ConfigError::Host(host.to_string()));
    }
    Ok(PathBuf::from(path))
}

/// containerd's identifier rules: `[A-Za-z0-9]` then `[A-Za-z0-9_.-]`, at most 76 bytes.
fn parse_namespace(namespace: String) -> Result<String, ConfigError> {
    let bytes = namespace.as_bytes();
    let valid = bytes.len() <= 76
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(namespace)
    } else {
        Err(ConfigError::Namespace(namespace))
    }
}

fn parse_level(level: &str) -> Result<String, ConfigError> {
    let level = match level.to_ascii_lowercase().as_str() {
        // dockerd and logrus spell it "warning" too.
        "warning" => "warn".to_string(),
        other => other.to_string(),
    };
    if LEVELS.contains(&level.as_str()) {
        Ok(level)
    } else {
        Err(ConfigError::LogLevel(level))
    }
}

fn absolute(what: &'static str, path: PathBuf) -> Result<PathBuf, ConfigError> {
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(ConfigError::Relative { what, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut argv = vec!["keeld"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap()
    }

    #[test]
    fn defaults_are_the_documented_paths() {
        let config = Config::load(&Cli::default()).unwrap();
        assert_eq!(config.data_root, PathBuf::from("/var/lib/keel/engine"));
        assert_eq!(config.socket, PathBuf::from("/run/keel/keel.sock"));
        assert_eq!(
            config.containerd,
            PathBuf::from("/run/keel/containerd/containerd.sock")
        );
        assert_eq!(config.log_level, "info");
        assert_eq!(config.containerd_namespace, "keel");
    }

    #[test]
    fn namespaces_follow_containerds_rules() {
        let config = Config::load(&cli(&["--containerd-namespace", "keel-it.1_x"])).unwrap();
        assert_eq!(config.containerd_namespace, "keel-it.1_x");
        for bad in ["", "-x", "a b", "a/b", &"n".repeat(77)] {
            let flag = format!("--containerd-namespace={bad}");
            let err = Config::load(&cli(&[&flag])).unwrap_err();
            assert!(matches!(err, ConfigError::Namespace(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn flags_are_parsed() {
        let config = Config::load(&cli(&[
            "--data-root",
            "/d",
            "--host",
            "unix:///s.sock",
            "--containerd",
            "/c.sock",
            "--log-level",
            "WARNING",
        ]))
        .unwrap();
        assert_eq!(config.data_root, PathBuf::from("/d"));
        assert_eq!(config.socket, PathBuf::from("/s.sock"));
        assert_eq!(config.containerd, PathBuf::from("/c.sock"));
        assert_eq!(config.log_level, "warn");
    }

    #[test]
    fn file_fills_in_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keeld.json");
        std::fs::write(
            &file,
            r#"{"data-root": "/from-file", "host": "unix:///file.sock", "log-level": "debug"}"#,
        )
        .unwrap();
        let file_arg = file.to_str().unwrap();
        let config =
            Config::load(&cli(&["--config", file_arg, "--data-root", "/from-flag"])).unwrap();
        assert_eq!(config.data_root, PathBuf::from("/from-flag"));
        assert_eq!(config.socket, PathBuf::from("/file.sock"));
        assert_eq!(config.log_level, "debug");
        assert_eq!(config.containerd, PathBuf::from(DEFAULT_CONTAINERD));
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keeld.json");
        std::fs::write(&file, r#"{"data_root": "/typo"}"#).unwrap();
        let err = Config::load(&cli(&["--config", file.to_str().unwrap()])).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("data_root"), "{err}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(&cli(&["--config", "/nonexistent/keeld.json"])).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn hosts_other_than_unix_are_rejected() {
        for bad in [
            "tcp://0.0.0.0:2375",
            "unix://",
            "unix://relative.sock",
            "/abs",
        ] {
            let err = Config::load(&cli(&["--host", bad])).unwrap_err();
            assert!(matches!(err, ConfigError::Host(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_levels_and_relative_paths_are_rejected() {
        let err = Config::load(&cli(&["--log-level", "loud"])).unwrap_err();
        assert!(matches!(err, ConfigError::LogLevel(_)), "{err}");
        let err = Config::load(&cli(&["--data-root", "rel"])).unwrap_err();
        assert!(matches!(err, ConfigError::Relative { .. }), "{err}");
    }
}
