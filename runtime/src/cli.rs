//! runc's command line: global flags and one subcommand per operation.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The default state directory, one subdirectory per container.
pub const DEFAULT_ROOT: &str = "/run/keel/runtime";

/// keel-runtime: an OCI runtime with runc's command line.
#[derive(Debug, Parser)]
#[command(name = "keel-runtime", version, about, propagate_version = true)]
pub struct Cli {
    /// Root directory for the state of containers.
    #[arg(long, global = true, default_value = DEFAULT_ROOT, env = "KEEL_RUNTIME_ROOT")]
    pub root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Accepted for runc compatibility: cgroups are always managed through cgroupfs.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Log line format, as runc's `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The operations.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container: its init process waits until `start`.
    Create(CreateArgs),
    /// Start the user process of a created container.
    Start(IdArgs),
    /// Print the OCI state of a container as JSON.
    State(IdArgs),
    /// Send a signal to the container's init process.
    Kill(KillArgs),
    /// Delete a container and everything create made.
    Delete(DeleteArgs),
    /// Create and start a container, wait for it and exit with its status.
    Run(RunArgs),
    /// List containers.
    List(ListArgs),
    /// Write a default config.json to the current directory (or --bundle).
    Spec(SpecArgs),
    /// Run a new process inside a running container.
    Exec(ExecArgs),
    /// List the processes of a container.
    Ps(PsArgs),
    /// Freeze every process of a container.
    Pause(IdArgs),
    /// Thaw a paused container.
    Resume(IdArgs),
    /// Change the cgroup limits of a running container.
    Update(UpdateArgs),
    /// Print the container's resource usage and OOM events.
    Events(EventsArgs),
    /// Print what this runtime supports (the runtime-spec features document).
    Features,
    /// The container's init process (internal: started by create).
    #[command(hide = true)]
    Init,
}

impl Command {
    /// The `--preserve-fds` of the commands that take it, else 0.
    pub fn preserve_fds(&self) -> u32 {
        match self {
            Command::Create(a) => a.preserve_fds,
            Command::Run(a) => a.create.preserve_fds,
            Command::Exec(a) => a.preserve_fds,
            _ => 0,
        }
    }
}

/// A container id.
#[derive(Debug, Args)]
pub struct IdArgs {
    pub id: String,
}

/// `create` flags.
#[derive(Debug, Args, Clone)]
pub struct CreateArgs {
    /// Path to the OCI bundle (default: current directory).
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// File to write the container's init pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when process.terminal is true.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Move-mount and chroot instead of pivot_root (for a ramfs root).
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not make a new session keyring for the container.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many extra fds (3, 4, ...) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

/// `run` flags: create's plus `--detach`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return after start instead of waiting for the container.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Accepted for runc compatibility.
    #[arg(long = "keep")]
    pub keep: bool,
}

/// `kill` flags.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal every process of the container, not only init.
    #[arg(long, short = 'a')]
    pub all: bool,
    pub id: String,
    /// Signal name (`KILL`, `SIGKILL`) or number; default SIGTERM.
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

/// `delete` flags.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Kill the container first if it is still running.
    #[arg(long, short = 'f')]
    pub force: bool,
    pub id: String,
}

/// `list` flags.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// `table` or `json`.
    #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    /// Print only the ids.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Output of `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// `spec` flags.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Directory to write config.json to.
    #[arg(long, short = 'b', default_value = ".")]
    pub bundle: PathBuf,
    /// A config for a non-root user: user namespace, no cgroup limits.
    #[arg(long)]
    pub rootless: bool,
}

/// `exec` flags, as runc's.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// A process.json (runtime-spec `process`) instead of the command line.
    #[arg(long, short = 'p')]
    pub process: Option<PathBuf>,
    /// Allocate a pseudo-TTY.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Unix socket that receives the pty master (with --tty).
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Working directory in the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Environment variables (`KEY=value`), added to the container's.
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// `uid[:gid]` to run as.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    /// Additional gids.
    #[arg(long = "additional-gids", short = 'g')]
    pub additional_gids: Vec<u32>,
    /// Add a capability to the container's sets (`CAP_NET_ADMIN`).
    #[arg(long, short = 'c')]
    pub cap: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Return once the process has started instead of waiting for it.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Pass this many extra fds (3, 4, ...) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for runc compatibility (no AppArmor here).
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Accepted for runc compatibility (no SELinux here).
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// Exec into a paused container too.
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    pub id: String,
    /// The command and its arguments (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `ps` flags.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// `table` (ps output for the container's pids) or `json` (the pids).
    #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
    pub id: String,
    /// Options passed to ps(1) for the table format (default `-ef`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `update` flags: a resources file or runc's per-resource flags.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// A runtime-spec `linux.resources` JSON file, or `-` for stdin.
    #[arg(long, short = 'r')]
    pub resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-quota", allow_negative_numbers = true)]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime", allow_negative_numbers = true)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    /// Memory limit (bytes, or with k/m/g suffix; -1 for none).
    #[arg(long, allow_negative_numbers = true)]
    pub memory: Option<String>,
    #[arg(long = "memory-reservation", allow_negative_numbers = true)]
    pub memory_reservation: Option<String>,
    #[arg(long = "memory-swap", allow_negative_numbers = true)]
    pub memory_swap: Option<String>,
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    pub id: String,
}

/// `events` flags.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Print one stats event and exit.
    #[arg(long)]
    pub stats: bool,
    /// Time between stats events (`5s`, `500ms`).
    #[arg(long, default_value = "5s")]
    pub interval: String,
    pub id: String,
}
