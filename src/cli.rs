//! The command line: `run`, `replay`, `check`, `completions` and `man`, their flags, and what they become: the
//! [`Overrides`] that [`Config::apply`](crate::config::Config::apply) lays over the file and
//! the environment, and `run`'s [`RunRequest`].
//!
//! It lives in the library so that the binary stays a thin shell and the same definition can
//! generate shell completions and a man page.
//!
//! How it fails: clap reports unknown flags and values that do not parse (a `--logstash` that is
//! not `HOST:PORT`, a `--discord-webhook` that is not a webhook URL, never echoed) with the
//! flag's name, before anything runs.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::app::RunRequest;
use crate::config::Overrides;
use crate::settings::{HostPort, Secret};
use crate::sinks::discord::WebhookUrl;
use crate::sinks::logstash::LogstashProtocol;
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
    /// Log directories to follow, one per server (default: the config's `[[servers]]`).
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
    /// How to talk to Logstash: tcp (its tcp input, json_lines codec) or beats (its beats
    /// input, which acknowledges every window) (default: $LOGSTASH_PROTOCOL, else the
    /// config's `logstash.protocol`, else tcp).
    #[arg(long, value_name = "PROTOCOL", value_parser = parse_logstash_protocol)]
    pub logstash_protocol: Option<LogstashProtocol>,
    /// Serve /metrics, /healthz and /ready on HOST:PORT (default: the config's
    /// `metrics.address`, 127.0.0.1:9464; $METRICS_PORT changes the port,
    /// METRICS_ENABLED=false turns the server off).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Post events with a Discord template to this webhook URL, as the config's
    /// `discord.default_webhook` (default: $DISCORD_WEBHOOK_URL). Prefer the environment
    /// variable or a `url_file`: command lines are visible to every user of the machine.
    #[arg(long, value_name = "URL", hide_env_values = true, value_parser = WebhookUrlParser)]
    pub discord_webhook: Option<String>,
    /// The time zone of the dates Factorio writes, for every server: an IANA name
    /// (America/New_York), UTC, an offset (+02:00) or local (default: the config's
    /// `timezone`, else local: $TZ, else the system's).
    #[arg(long, value_name = "TZ", value_parser = parse_timezone)]
    pub timezone: Option<TimeZoneSetting>,
    /// Poll the single LOG_DIR's server over RCON at HOST:PORT (Factorio's --rcon-port),
    /// with the password from $RCON_PASSWORD: players online, and a player_leave for a
    /// player the log missed leaving (with `[[servers]]`: `rcon_address` in each).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_host_port)]
    pub rcon: Option<String>,
    /// Push events to Loki at this URL, e.g. http://loki:3100 (default: $LOKI_URL, else the
    /// config's `loki.url`). Beside Logstash, or instead of stdout.
    #[arg(long, value_name = "URL", value_parser = LokiUrlParser)]
    pub loki: Option<String>,
}

/// A `--logstash-protocol` value.
fn parse_logstash_protocol(s: &str) -> Result<LogstashProtocol, String> {
    s.parse()
}

/// A `--timezone` value.
fn parse_timezone(s: &str) -> Result<TimeZoneSetting, String> {
    s.parse()
        .map_err(|e: crate::tail::zone::ZoneError| e.to_string())
}

/// A `--discord-webhook` value: a webhook URL, refused before anything starts with a message
/// that names the flag and never echoes the URL (clap's own messages would: it is a secret).
#[derive(Clone)]
struct WebhookUrlParser;

impl clap::builder::TypedValueParser for WebhookUrlParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let flag = arg.and_then(|a| a.get_long()).unwrap_or("discord-webhook");
        let refuse = |problem: &str| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--{flag}: the URL {problem}\n"),
            )
            .with_cmd(cmd)
        };
        let url = value.to_str().ok_or_else(|| refuse("is not UTF-8"))?;
        WebhookUrl::parse(url).map_err(refuse)?;
        Ok(url.to_owned())
    }
}

/// A `HOST:PORT` flag value.
fn parse_host_port(s: &str) -> Result<String, String> {
    HostPort::parse(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// A `--loki` value: `http(s)://host[:port]` without credentials, refused with a message that
/// names the flag and never echoes the URL (it may hold a password).
#[derive(Clone)]
struct LokiUrlParser;

impl clap::builder::TypedValueParser for LokiUrlParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let refuse = |problem: &str| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("--loki: the URL {problem}\n"),
            )
            .with_cmd(cmd)
        };
        let url = value.to_str().ok_or_else(|| refuse("is not UTF-8"))?;
        crate::sinks::loki::check_url(url).map_err(refuse)?;
        Ok(url.to_owned())
    }
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Follow the log directories of Factorio servers and write every record as a JSON event.
    Run(RunArgs),
    /// Print every record of the files as one JSON event per line on stdout, then exit.
    Replay {
        /// Log files to read, start to end, in this order; `-` reads standard input.
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
    /// Print a completion script for SHELL on stdout (e.g. `factorio-isr completions bash >
    /// /etc/bash_completion.d/factorio-isr`).
    Completions {
        /// The shell.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout (e.g. `factorio-isr man > factorio-isr.1`).
    Man,
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
            rcon: self.rcon.clone(),
            logstash_protocol: self.logstash_protocol,
            loki: self.loki.clone(),
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

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "factorio-isr", out);
}

/// Writes the man page (roff, section 1) to `out`: the commands, then the synopsis and every
/// flag of each.
pub fn write_man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let command = Cli::command();
    clap_mangen::Man::new(command.clone()).render(out)?;
    for sub in command.get_subcommands() {
        let name = format!("factorio-isr {}", sub.get_name());
        // Each command's synopsis and options follow the main page, under its own heading.
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        let man = clap_mangen::Man::new(sub.clone().bin_name(name));
        man.render_synopsis_section(out)?;
        man.render_description_section(out)?;
        man.render_options_section(out)?;
    }
    Ok(())
}
