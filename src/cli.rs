//! The command line: `run`, `replay` and `check`, their flags, and what they become: the
//! [`Overrides`] that [`Config::apply`](crate::config::Config::apply) lays over the file and
//! the environment, and `run`'s [`RunRequest`].
//!
//! It lives in the library so that the binary stays a thin shell and the same definition can
//! generate shell completions and a man page.
//!
//! How it fails: clap reports unknown flags and values that do not parse (a `--logstash` that is
//! not `HOST:PORT`) with the flag's name, before anything runs.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::app::RunRequest;
use crate::config::Overrides;
use crate::settings::{HostPort, Secret};
use crate::tail::zone::TimeZoneSetting;

/// Follows Factorio server logs and turns them into typed events.
#[derive(Parser)]
#[command(name = "factorio-isr", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `factorio-isr run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Log directories to follow, one per server (default: the config's [[servers]]).
    #[arg(value_name = "LOG_DIR")]
    pub dirs: Vec<PathBuf>,
    /// Config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of pattern files, reloaded when edited (default: the config's
    /// `patterns_dir`, else the patterns built into factorio-isr).
    #[arg(long, value_name = "DIR")]
    pub patterns: Option<PathBuf>,
    /// Where checkpoints are kept (default: the config's `tail.state_dir`, else
    /// $STATE_DIRECTORY, $XDG_STATE_HOME/factorio-isr or ~/.local/state/factorio-isr).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The `server` tag of a single LOG_DIR's events.
    #[arg(long, value_name = "TAG")]
    pub server: Option<String>,
    /// Read files seen for the first time from their start instead of their end.
    #[arg(long)]
    pub from_beginning: bool,
    /// Poll only, without file-system notifications (Docker bind mounts, NFS).
    #[arg(long)]
    pub poll: bool,
    /// Send events to Logstash's tcp input (json_lines) at HOST:PORT instead of stdout
    /// (default: $LOGSTASH_ADDR, else the config's `logstash.address`).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub logstash: Option<String>,
    /// Serve /metrics, /healthz and /ready on HOST:PORT (default: the config's
    /// `metrics.address`, 127.0.0.1:9464; $METRICS_PORT changes the port,
    /// METRICS_ENABLED=false turns the server off).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Post events with a Discord template to this webhook URL, as the config's
    /// `discord.default_webhook` (default: $DISCORD_WEBHOOK_URL). Prefer the environment
    /// variable or a `url_file`: command lines are visible to every user of the machine.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub discord_webhook: Option<String>,
    /// The time zone of the dates Factorio writes, for every server: an IANA name
    /// (America/New_York), UTC, an offset (+02:00) or local (default: the config's
    /// `timezone`, else local: $TZ, else the system's).
    #[arg(long, value_name = "TZ", value_parser = parse_timezone)]
    pub timezone: Option<TimeZoneSetting>,
}

/// A `--timezone` value.
fn parse_timezone(s: &str) -> Result<TimeZoneSetting, String> {
    s.parse()
        .map_err(|e: crate::tail::zone::ZoneError| e.to_string())
}

/// A `HOST:PORT` flag value.
fn parse_host_port(s: &str) -> Result<String, String> {
    HostPort::parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Follow the log directories of Factorio servers and write every record as a JSON event.
    Run(RunArgs),
    /// Print every record of the files as one JSON event per line on stdout, then exit.
    Replay {
        /// Log files to read, start to end, in this order.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Directory of pattern files (default: the config's `patterns_dir`, else the
        /// patterns built into factorio-isr).
        #[arg(long, value_name = "DIR")]
        patterns: Option<PathBuf>,
        /// The `server` tag of every event (default: the config's `server_tag`, else `default`).
        #[arg(long, value_name = "TAG")]
        server: Option<String>,
        /// Config file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The time zone of the dates in the files: an IANA name (America/New_York), UTC, an
        /// offset (+02:00) or local (default: the config's `timezone`, else local: $TZ, else
        /// the system's).
        #[arg(long, value_name = "TZ", value_parser = parse_timezone)]
        timezone: Option<TimeZoneSetting>,
    },
    /// Validate the config file and the pattern files: exit 1 listing every problem.
    Check {
        /// Config file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Directory of pattern files (default: the config's `patterns_dir`, else the
        /// patterns built into factorio-isr).
        #[arg(long, value_name = "DIR")]
        patterns: Option<PathBuf>,
    },
}

impl RunArgs {
    /// The flags that override the config file and the environment.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            patterns_dir: self.patterns.clone(),
            state_dir: self.state_dir.clone(),
            poll: self.poll,
            logstash: self.logstash.clone(),
            metrics_addr: self.metrics_addr.clone(),
            discord_webhook: self.discord_webhook.clone().map(Secret::new),
            timezone: self.timezone.clone(),
        }
    }

    /// What `run` follows.
    pub fn request(&self) -> RunRequest {
        RunRequest {
            dirs: self.dirs.clone(),
            server: self.server.clone(),
            from_beginning: self.from_beginning,
        }
    }
}
