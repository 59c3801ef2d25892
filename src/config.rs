//! Configuration: the TOML config file, environment variables and flags, gathered in one place.
//!
//! Each component owns its section (its serde struct, the one copy of each default, its
//! `validate()`): `[tail]` and `[framing]` in `tail`, `[logstash]` and `[discord]` in `sinks`,
//! `[metrics]` in `telemetry::admin`. This module gathers the sections into [`Config`], loads
//! the file, validates every section, and applies the environment and the command line over
//! it in one place ([`Config::apply`]), so precedence is the same for every setting:
//! flags > environment > config file > defaults. The file is optional. Unknown keys are errors
//! (a typo must not silently turn a setting off), reported with the file, line and column.
//!
//! ```toml
//! # factorio-isr.toml
//! patterns_dir = "/etc/factorio-isr/patterns"
//!
//! [[servers]]
//! tag = "primary"
//! log_dir = "/srv/factorio/primary"
//!
//! [tail]
//! state_dir = "/var/lib/factorio-isr"
//!
//! [service]
//! environment = "staging"
//! ```
//!
//! How it fails: [`ConfigError`] names the file (or the variable) and what is wrong; nothing is
//! half-applied.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::alertmanager::AlertmanagerConfig;
use crate::rcon::{RconConfig, RconTarget};
use crate::settings::{Env, HostPort, InvalidSetting, Secret, line_col, parse_bool};
use crate::sinks::discord::{DiscordConfig, ServerRoute};
use crate::sinks::logstash::{LogstashConfig, LogstashProtocol};
use crate::sinks::loki::LokiConfig;
use crate::sinks::otlp_logs::OtlpLogsConfig;
use crate::tail::config::{TailConfig, default_state_dir};
use crate::tail::frame::FramingLimits;
use crate::tail::tailer;
use crate::tail::zone::TimeZoneSetting;
use crate::telemetry::admin::MetricsConfig;
use crate::telemetry::logs::LogFormat;
pub use crate::telemetry::service::ServiceConfig;
use crate::telemetry::traces::{TraceConfig, TraceError};

/// Default tag of events' `server` when neither `--server` nor `server_tag` names one.
pub fn default_server_tag() -> String {
    "default".to_owned()
}

/// The whole configuration: the file's sections, then what only the environment sets.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of pattern files (`*.toml`). Unset: the shipped patterns built into the
    /// binary. A relative path is relative to the config file's directory. `--patterns DIR`
    /// overrides it.
    #[serde(default)]
    pub patterns_dir: Option<PathBuf>,
    /// The `server` tag of events when `--server TAG` is not given.
    #[serde(default = "default_server_tag")]
    pub server_tag: String,
    /// The time zone of the dates Factorio writes (console lines, the run header): an IANA
    /// name (`America/New_York`), `UTC`, a fixed offset (`+02:00`), or `local` (the default:
    /// this machine's, from `TZ` or the system). A `[[servers]]` entry may set its own;
    /// `--timezone` overrides both.
    #[serde(default)]
    pub timezone: TimeZoneSetting,
    /// How log bytes are cut into lines and records.
    #[serde(default)]
    pub framing: FramingLimits,
    /// The `service` object every event carries.
    #[serde(default)]
    pub service: ServiceConfig,
    /// The servers whose logs `run` follows, when no LOG_DIR is given on the command line.
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
    /// How `run` follows files.
    #[serde(default)]
    pub tail: TailConfig,
    /// The Logstash sink; without an address, events go to stdout.
    #[serde(default)]
    pub logstash: LogstashConfig,
    /// The admin server of `/metrics`, `/healthz` and `/ready`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The Discord sink: webhooks and how events are sent to them.
    #[serde(default)]
    pub discord: DiscordConfig,
    /// How servers with an `rcon_address` are polled over RCON.
    #[serde(default)]
    pub rcon: RconConfig,
    /// `--rcon HOST:PORT`: the RCON address of the single LOG_DIR (not a file key).
    #[serde(skip)]
    pub rcon_flag: Option<String>,
    /// `RCON_PASSWORD`: the password of every server with an `rcon_address` and no password
    /// of its own (not a file key).
    #[serde(skip)]
    pub rcon_password_env: Option<Secret>,
    /// The Loki sink; without a URL, none.
    #[serde(default)]
    pub loki: LokiConfig,
    /// The OTLP logs sink; off unless enabled or given an endpoint.
    #[serde(default)]
    pub otlp_logs: OtlpLogsConfig,
    /// The default webhook's URL from `--discord-webhook` or `DISCORD_WEBHOOK_URL` (not a
    /// file key).
    #[serde(skip)]
    pub discord_webhook_url: Option<Secret>,
    /// The Alertmanager receiver (`POST /alertmanager`): its token, where alerts go, whom
    /// they ping.
    #[serde(default)]
    pub alertmanager: AlertmanagerConfig,
    /// The receiver's token from `ALERTMANAGER_TOKEN` (not a file key); it wins over
    /// `[alertmanager] token_file`.
    #[serde(skip)]
    pub alertmanager_token: Option<Secret>,
    /// Traces: only from the environment (`TRACES_*`, `OTEL_EXPORTER_OTLP_ENDPOINT`).
    #[serde(skip)]
    pub traces: TraceConfig,
    /// factorio-isr's own logs: only from the environment (`LOG_FORMAT`, `LOG_LEVEL`).
    #[serde(skip)]
    pub log: LogSettings,
    /// The file it was loaded from, to name the line of a key in messages; `None` for the
    /// defaults.
    #[serde(skip)]
    pub file: Option<ConfigFile>,
}

/// The text of a loaded config file, kept to say on which line a setting is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFile {
    /// The file.
    pub path: PathBuf,
    text: std::sync::Arc<str>,
}

impl ConfigFile {
    /// `path:line` of the last of `keys` that is written in the file (`["discord",
    /// "webhooks", "admins", "url"]`; an array element by its index, `["servers", "1"]`), or
    /// the path alone when none is.
    pub fn locate(&self, keys: &[&str]) -> String {
        use toml::de::{DeTable, DeValue};
        let mut found = None;
        if let Ok(doc) = DeTable::parse(&self.text) {
            let mut here = DeValue::Table(doc.into_inner());
            for key in keys {
                let next = match &here {
                    DeValue::Table(t) => {
                        t.iter().find(|(k, _)| k.get_ref() == key).map(|(k, v)| {
                            found = Some(k.span().start);
                            v
                        })
                    }
                    DeValue::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => None,
                };
                match next {
                    Some(v) => here = v.get_ref().clone(),
                    None => break,
                }
            }
        }
        match found {
            Some(offset) => {
                let (line, _) = line_col(&self.text, offset);
                format!("{}:{line}", self.path.display())
            }
            None => self.path.display().to_string(),
        }
    }
}

/// How factorio-isr writes its own logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// `LOG_FORMAT`; `None`: JSON unless stderr is a terminal.
    pub format: Option<LogFormat>,
    /// `LOG_LEVEL` directives; `None`: `info`.
    pub level: Option<String>,
}

/// What the command line sets, applied over the environment and the file by [`Config::apply`].
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--patterns DIR`.
    pub patterns_dir: Option<PathBuf>,
    /// `--state-dir DIR`.
    pub state_dir: Option<PathBuf>,
    /// `--poll`.
    pub poll: bool,
    /// `--logstash HOST:PORT`.
    pub logstash: Option<String>,
    /// `--metrics-addr HOST:PORT`.
    pub metrics_addr: Option<String>,
    /// `--discord-webhook URL`.
    pub discord_webhook: Option<Secret>,
    /// `--timezone TZ`: the zone of every server's dates.
    pub timezone: Option<TimeZoneSetting>,
    /// `--rcon HOST:PORT`: the single LOG_DIR's RCON address.
    pub rcon: Option<String>,
    /// `--logstash-protocol tcp|beats`.
    pub logstash_protocol: Option<LogstashProtocol>,
    /// `--loki URL`.
    pub loki: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            patterns_dir: None,
            server_tag: default_server_tag(),
            timezone: TimeZoneSetting::default(),
            framing: FramingLimits::default(),
            service: ServiceConfig::default(),
            servers: Vec::new(),
            tail: TailConfig::default(),
            logstash: LogstashConfig::default(),
            metrics: MetricsConfig::default(),
            discord: DiscordConfig::default(),
            rcon: RconConfig::default(),
            rcon_flag: None,
            rcon_password_env: None,
            loki: LokiConfig::default(),
            otlp_logs: OtlpLogsConfig::default(),
            discord_webhook_url: None,
            alertmanager: AlertmanagerConfig::default(),
            alertmanager_token: None,
            traces: TraceConfig::default(),
            log: LogSettings::default(),
            file: None,
        }
    }
}

/// One Factorio server whose log directory `run` follows.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// The `server` tag of its events. Letters, digits, `_`, `-` and `.`.
    pub tag: String,
    /// Its log directory (Factorio's write-data directory, or wherever `--console-log` writes).
    /// Relative to the config file's directory when relative.
    pub log_dir: PathBuf,
    /// Which files of the directory to follow, as globs on the file name. Default:
    /// `factorio-current.log`, `factorio-previous.log`, `console.log`, `*.log`.
    #[serde(default = "tailer::default_globs")]
    pub globs: Vec<String>,
    /// The Discord webhook (a name under `[discord.webhooks]`) of this server's events.
    /// Unset: `discord.default_webhook`.
    #[serde(default)]
    pub discord_webhook: Option<String>,
    /// Event types or pattern names (`file/name`) not sent to Discord for this server, e.g.
    /// `["chat", "engine/save_finished"]`.
    #[serde(default)]
    pub discord_disabled: Vec<String>,
    /// The time zone of this server's log dates, when it is not the top-level `timezone`
    /// (the server runs elsewhere, or in a container with its own `TZ`).
    #[serde(default)]
    pub timezone: Option<TimeZoneSetting>,
    /// `HOST:PORT` of the server's RCON (Factorio's `--rcon-port`, with `--rcon-bind`'s
    /// address when not local). Unset: the server is not polled over RCON.
    #[serde(default)]
    pub rcon_address: Option<String>,
    /// A file holding the RCON password (Factorio's `--rcon-password`), e.g. a mounted
    /// secret; a trailing newline is ignored. Relative to the config file's directory.
    #[serde(default)]
    pub rcon_password_file: Option<PathBuf>,
    /// The RCON password itself, when a file is not practical (prefer `rcon_password_file`
    /// or `RCON_PASSWORD`: a config file is often readable by more people).
    #[serde(default, deserialize_with = "crate::rcon::config::optional_secret")]
    pub rcon_password: Option<Secret>,
    /// Discord role ids pinged when something critical happens on this server: its crash
    /// (events of severity `critical`) and Alertmanager alerts of severity `critical` whose
    /// `server` label is this tag. Empty: none.
    #[serde(default)]
    pub mention_roles: Vec<String>,
}

/// The configuration could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// An environment variable does not parse.
    #[error("{variable}: `{value}` {problem}")]
    Setting {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A trace setting does not parse.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// An address from the environment is not `HOST:PORT`.
    #[error("{variable}: {problem}")]
    Address {
        /// The variable.
        variable: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// The file could not be read.
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{}: {message}", Located(path, *line, *column))]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What is wrong, from the TOML parser.
        message: String,
    },
    /// A value is out of range.
    #[error("{}: `{key}` {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, dotted (`framing.max_line_bytes`).
        key: &'static str,
        /// What is wrong and what to do.
        problem: &'static str,
    },
}

struct Located<'a>(&'a Path, usize, usize);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())?;
        if self.1 > 0 {
            write!(f, ":{}:{}", self.1, self.2)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates the config file at `path`, or the defaults when there is none.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(p) => Config::load(p),
            None => Ok(Config::default()),
        }
    }

    /// Reads and validates a config file. Relative paths in it are resolved against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(path, &text)?;
        let base = path.parent().unwrap_or(Path::new(""));
        let absolute = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(dir) = &mut config.patterns_dir {
            absolute(dir);
        }
        if let Some(dir) = &mut config.tail.state_dir {
            absolute(dir);
        }
        for s in &mut config.servers {
            absolute(&mut s.log_dir);
            if let Some(f) = &mut s.rcon_password_file {
                absolute(f);
            }
        }
        if let Some(tls) = &mut config.logstash.tls {
            tls.resolve_paths(base);
        }
        config.discord.resolve_paths(base);
        config.alertmanager.resolve_paths(base);
        config.loki.resolve_paths(base);
        config.otlp_logs.resolve_paths(base);
        config.file = Some(ConfigFile {
            path: path.to_owned(),
            text: text.into(),
        });
        Ok(config)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e
                    .span()
                    .and_then(|s| wrong_type(text, s.start, e.message()))
                    .unwrap_or_else(|| e.message().trim().to_owned()),
            }
        })?;
        let invalid = |key, problem| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            problem,
        };
        let located = |e: InvalidSetting| invalid(e.key, e.problem);
        config.framing.validate().map_err(located)?;
        if !valid_tag(&config.server_tag) {
            return Err(invalid("server_tag", TAG_RULE));
        }
        let mut tags = std::collections::HashSet::new();
        for s in &config.servers {
            if !valid_tag(&s.tag) {
                return Err(invalid("servers.tag", TAG_RULE));
            }
            if !tags.insert(s.tag.as_str()) {
                return Err(invalid(
                    "servers.tag",
                    "is used twice: every server needs its own tag",
                ));
            }
            if s.globs.is_empty() {
                return Err(invalid(
                    "servers.globs",
                    "must name at least one glob, e.g. \"*.log\"",
                ));
            }
            for g in &s.globs {
                if globset::Glob::new(g).is_err() {
                    return Err(invalid("servers.globs", "holds a glob that does not parse"));
                }
            }
            if let Some(a) = &s.rcon_address
                && HostPort::parse(a).is_err()
            {
                return Err(invalid(
                    "servers.rcon_address",
                    "is not HOST:PORT: give the address and Factorio's --rcon-port, e.g. \"127.0.0.1:27015\"",
                ));
            }
            if s.rcon_password.is_some() && s.rcon_password_file.is_some() {
                return Err(invalid(
                    "servers.rcon_password",
                    "and rcon_password_file are both set: keep one",
                ));
            }
        }
        config.rcon.validate().map_err(located)?;
        config.logstash.validate().map_err(located)?;
        config.metrics.validate().map_err(located)?;
        config.discord.validate().map_err(located)?;
        config.alertmanager.validate().map_err(located)?;
        config.tail.validate().map_err(located)?;
        config.loki.validate().map_err(located)?;
        config.otlp_logs.validate().map_err(located)?;
        Ok(config)
    }
}

impl Config {
    /// Applies the environment, then the command line, over the file: the one place where
    /// precedence is decided. Values that do not parse name the variable.
    pub fn apply(&mut self, flags: &Overrides, env: &impl Env) -> Result<(), ConfigError> {
        let setting = |variable, value: String, problem| ConfigError::Setting {
            variable,
            value,
            problem,
        };
        // [service]
        if let Some(v) = env.get("SERVICE_NAME") {
            self.service.name = v;
        }
        if let Some(v) = env.get("SERVICE_VERSION") {
            self.service.version = Some(v);
        }
        if let Some(v) = env.get("SERVICE_ENVIRONMENT") {
            self.service.environment = v;
        }
        // Traces and logs have no file section.
        self.traces = TraceConfig::from_env(|k: &str| env.get(k))?;
        self.log = LogSettings {
            format: match env.get("LOG_FORMAT") {
                None => None,
                Some(v) => Some(
                    LogFormat::parse(&v)
                        .ok_or_else(|| setting("LOG_FORMAT", v, "is neither json nor console"))?,
                ),
            },
            level: env.get("LOG_LEVEL"),
        };
        // [metrics]: METRICS_ENABLED, METRICS_PORT, --metrics-addr.
        if let Some(v) = env.get("METRICS_ENABLED") {
            self.metrics.enabled = parse_bool(&v)
                .ok_or_else(|| setting("METRICS_ENABLED", v, "is neither true nor false"))?;
        }
        if let Some(port) = env.get("METRICS_PORT") {
            let port: u16 = port
                .trim()
                .parse()
                .map_err(|_| setting("METRICS_PORT", port.clone(), "is not a port number"))?;
            // `[metrics] address` was validated; its host stays.
            self.metrics.address = HostPort::parse_listen(&self.metrics.address).map_or_else(
                |_| format!("127.0.0.1:{port}"),
                |a| a.with_port(port).to_string(),
            );
        }
        if let Some(a) = &flags.metrics_addr {
            self.metrics.address.clone_from(a);
            self.metrics.enabled = true;
        }
        // [logstash]: --logstash, else LOGSTASH_ADDR, else the file.
        if let Some(a) = &flags.logstash {
            self.logstash.address = Some(a.clone());
        } else if let Some(a) = env.get("LOGSTASH_ADDR") {
            HostPort::parse(&a).map_err(|e| ConfigError::Address {
                variable: "LOGSTASH_ADDR",
                problem: e.to_string(),
            })?;
            self.logstash.address = Some(a);
        }
        // [logstash] protocol: --logstash-protocol, else LOGSTASH_PROTOCOL, else the file.
        if let Some(p) = flags.logstash_protocol {
            self.logstash.protocol = p;
        } else if let Some(v) = env.get("LOGSTASH_PROTOCOL") {
            self.logstash.protocol = v
                .parse()
                .map_err(|_| setting("LOGSTASH_PROTOCOL", v, "is neither tcp nor beats"))?;
        }
        // [loki]: --loki, else LOKI_URL, else the file.
        if let Some(u) = &flags.loki {
            self.loki.url = Some(u.clone());
        } else if let Some(u) = env.get("LOKI_URL") {
            if let Err(problem) = crate::sinks::loki::check_url(&u) {
                // A URL with credentials in it is not repeated.
                let shown = if u.contains('@') {
                    "(not shown)".to_owned()
                } else {
                    u
                };
                return Err(setting("LOKI_URL", shown, problem));
            }
            self.loki.url = Some(u);
        }
        // [otlp_logs]: OTEL_EXPORTER_OTLP_LOGS_ENDPOINT turns it on there, else the file's;
        // OTEL_EXPORTER_OTLP_ENDPOINT is the endpoint of an enabled sink without one.
        if let Some(e) = env.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") {
            if let Err(problem) = crate::sinks::otlp_logs::check_endpoint(&e) {
                return Err(setting("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", e, problem));
            }
            self.otlp_logs.endpoint = Some(e);
        }
        self.otlp_logs.default_endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT");
        // [discord]: --discord-webhook, else DISCORD_WEBHOOK_URL, as the default webhook.
        self.discord_webhook_url = flags
            .discord_webhook
            .clone()
            .or_else(|| env.get("DISCORD_WEBHOOK_URL").map(Secret::new));
        // [alertmanager]: ALERTMANAGER_TOKEN over token_file.
        if let Some(t) = env.get("ALERTMANAGER_TOKEN") {
            self.alertmanager_token = Some(Secret::new(t));
        }
        // [tail] and the patterns.
        if let Some(d) = &flags.state_dir {
            self.tail.state_dir = Some(d.clone());
        }
        self.tail.poll_only |= flags.poll;
        if let Some(d) = &flags.patterns_dir {
            self.patterns_dir = Some(d.clone());
        }
        // RCON: --rcon for the single LOG_DIR; RCON_PASSWORD for servers without a password.
        if let Some(a) = &flags.rcon {
            HostPort::parse(a).map_err(|e| ConfigError::Address {
                variable: "--rcon",
                problem: e.to_string(),
            })?;
            self.rcon_flag = Some(a.clone());
        }
        self.rcon_password_env = env.get("RCON_PASSWORD").map(Secret::new);
        // The time zone: --timezone, for every server, else each server's, else the top level.
        if let Some(tz) = &flags.timezone {
            self.timezone = tz.clone();
            for s in &mut self.servers {
                s.timezone = None;
            }
        }
        Ok(())
    }

    /// The state directory in force: `[tail] state_dir` (or `--state-dir`), else the default
    /// from the environment.
    pub fn state_dir(&self, env: &impl Env) -> PathBuf {
        self.tail
            .state_dir
            .clone()
            .unwrap_or_else(|| default_state_dir(env))
    }
}

impl Config {
    /// Where each `[[servers]]` entry's events go on Discord, by tag.
    pub fn discord_routes(&self) -> std::collections::HashMap<String, ServerRoute> {
        self.servers
            .iter()
            .map(|s| {
                let route = ServerRoute {
                    webhook: s.discord_webhook.clone(),
                    disabled: s.discord_disabled.clone(),
                    mention_roles: s.mention_roles.clone(),
                };
                (s.tag.clone(), route)
            })
            .collect()
    }
}

/// `run`'s servers had no source, or the command line contradicts itself.
#[derive(Debug, Error)]
pub enum ServersError {
    /// Neither LOG_DIR arguments nor `[[servers]]`.
    #[error("no log directory to follow: give LOG_DIR arguments or [[servers]] in the config file")]
    None,
    /// `--server TAG` with several directories.
    #[error(
        "--server names the server of a single LOG_DIR; with several, each gets its directory's name as tag (or use [[servers]] in the config file)"
    )]
    TagWithSeveralDirs,
    /// A tag that is not allowed.
    #[error("`{0}` cannot be a server tag: it {TAG_RULE}")]
    BadTag(String),
    /// Two directories give the same tag.
    #[error(
        "two log directories get the tag `{0}`; give them distinct names or use [[servers]] in the config file"
    )]
    DuplicateTag(String),
    /// `--rcon` without exactly one LOG_DIR.
    #[error(
        "--rcon names the RCON address of a single LOG_DIR; with [[servers]] or several directories, set rcon_address in each [[servers]] entry of the config file"
    )]
    RconWithoutOneDir,
}

impl Config {
    /// The servers `run` follows: one per LOG_DIR argument (tagged `--server TAG`, else the
    /// config's `server_tag` for a single directory, else each directory's name), or else the
    /// config's `[[servers]]`. Each has its time zone set: its own, else the top level's.
    pub fn run_servers(
        &self,
        dirs: &[PathBuf],
        server_flag: Option<&str>,
    ) -> Result<Vec<ServerConfig>, ServersError> {
        if self.rcon_flag.is_some() && dirs.len() != 1 {
            return Err(ServersError::RconWithoutOneDir);
        }
        if dirs.is_empty() {
            if self.servers.is_empty() {
                return Err(ServersError::None);
            }
            let mut servers = self.servers.clone();
            for s in &mut servers {
                s.timezone.get_or_insert_with(|| self.timezone.clone());
            }
            return Ok(servers);
        }
        if dirs.len() > 1 && server_flag.is_some() {
            return Err(ServersError::TagWithSeveralDirs);
        }
        let mut out: Vec<ServerConfig> = Vec::new();
        for dir in dirs {
            let tag = match (server_flag, dirs.len()) {
                (Some(t), _) => t.to_owned(),
                (None, 1) => self.server_tag.clone(),
                (None, _) => dir
                    .canonicalize()
                    .unwrap_or_else(|_| dir.clone())
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(default_server_tag),
            };
            if !valid_tag(&tag) {
                return Err(ServersError::BadTag(tag));
            }
            if out.iter().any(|s| s.tag == tag) {
                return Err(ServersError::DuplicateTag(tag));
            }
            out.push(ServerConfig {
                tag,
                log_dir: dir.clone(),
                globs: tailer::default_globs(),
                discord_webhook: None,
                discord_disabled: Vec::new(),
                timezone: Some(self.timezone.clone()),
                rcon_address: self.rcon_flag.clone(),
                rcon_password_file: None,
                rcon_password: None,
                mention_roles: Vec::new(),
            });
        }
        Ok(out)
    }
}

impl Config {
    /// The servers of `servers` to poll over RCON, each with its password: its
    /// `rcon_password_file` (read now), else its `rcon_password`, else `RCON_PASSWORD`. Every
    /// server that cannot be polled is a problem in the list, naming the file and line, never
    /// the password.
    pub fn rcon_targets(&self, servers: &[ServerConfig]) -> (Vec<RconTarget>, Vec<String>) {
        let mut targets = Vec::new();
        let mut problems = Vec::new();
        for s in servers {
            let Some(address) = &s.rcon_address else {
                continue;
            };
            let at = |key: &str| {
                let index = self.servers.iter().position(|c| c.tag == s.tag);
                match (&self.file, index) {
                    (Some(f), Some(i)) => {
                        format!("{}: ", f.locate(&["servers", &i.to_string(), key]))
                    }
                    _ => String::new(),
                }
            };
            let password = match (&s.rcon_password_file, &s.rcon_password) {
                (Some(file), _) => match std::fs::read_to_string(file) {
                    Ok(text) => Some(Secret::new(text.trim_end_matches(['\r', '\n']))),
                    Err(e) => {
                        problems.push(format!(
                            "{}server `{}`: cannot read rcon_password_file {}: {e}",
                            at("rcon_password_file"),
                            s.tag,
                            file.display()
                        ));
                        continue;
                    }
                },
                (None, Some(p)) => Some(p.clone()),
                (None, None) => self.rcon_password_env.clone(),
            };
            match password {
                Some(password) if !password.expose().is_empty() => targets.push(RconTarget {
                    server: s.tag.clone(),
                    address: address.clone(),
                    password,
                }),
                _ => problems.push(format!(
                    "{}server `{}`: rcon_address is set but the RCON password is missing or empty: set rcon_password_file (or rcon_password, or the RCON_PASSWORD environment variable) to the server's --rcon-password",
                    at("rcon_address"),
                    s.tag
                )),
            }
        }
        (targets, problems)
    }
}

/// A value of the wrong type, said in words: `` `tail.shutdown_timeout_ms` must be a whole
/// number of milliseconds, e.g. 5000 (found string "5s") `` rather than serde's `invalid type:
/// string "5s", expected u64`. `offset` is where the value is written. `None`: not a type error,
/// or the key cannot be told from the line (the parser's message is kept).
fn wrong_type(text: &str, offset: usize, message: &str) -> Option<String> {
    let message = message.trim();
    let (found, expected) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))?
        .split_once(", expected ")?;
    // The key: what precedes `=` on the value's line; its table: the last header above.
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let key = text[line_start..offset.min(text.len())]
        .split_once('=')?
        .0
        .trim()
        .trim_matches('"');
    if key.is_empty() || key.contains(['{', '[', ',']) {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(['[', ']']).trim());
    let dotted = match table {
        Some(t) => format!("{t}.{key}"),
        None => key.to_owned(),
    };
    let wanted = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i32" | "i64" => {
            if key.ends_with("_ms") {
                "a whole number of milliseconds, e.g. 5000"
            } else if key.ends_with("_bytes") {
                "a whole number of bytes, e.g. 65536"
            } else {
                "a whole number, e.g. 5"
            }
        }
        "f32" | "f64" => "a number, e.g. 0.5",
        "a boolean" => "true or false, without quotes",
        "a string" | "a borrowed string" => "text in quotes, e.g. \"value\"",
        "a sequence" => "a list in brackets, e.g. [\"a\", \"b\"]",
        _ => return None,
    };
    Some(format!("`{dotted}` must be {wanted} (found {found})"))
}

const TAG_RULE: &str = "must be 1 to 64 letters, digits, `_`, `-` or `.`";

/// Whether `tag` can be a server tag.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 64
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = Config::parse(Path::new("c.toml"), "").unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn fields_are_read() {
        let c = Config::parse(
            Path::new("c.toml"),
            "patterns_dir = \"/p\"\nserver_tag = \"primary\"\n[framing]\nmax_line_bytes = 10\n[service]\nenvironment = \"staging\"\n",
        )
        .unwrap();
        assert_eq!(c.patterns_dir.as_deref(), Some(Path::new("/p")));
        assert_eq!(c.server_tag, "primary");
        assert_eq!(c.framing.max_line_bytes, 10);
        assert_eq!(c.service.environment, "staging");
    }

    #[test]
    fn unknown_keys_name_file_line_and_column() {
        let err = Config::parse(
            Path::new("c.toml"),
            "server_tag = \"a\"\n[framing]\nmax_line_byte = 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("c.toml:3:1: unknown field `max_line_byte`"),
            "{err}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_says_what_is_expected_in_words() {
        let cases = [
            (
                "[tail]\nshutdown_timeout_ms = \"5s\"\n",
                "c.toml:2:23: `tail.shutdown_timeout_ms` must be a whole number of milliseconds, e.g. 5000 (found string \"5s\")",
            ),
            (
                "[framing]\nmax_line_bytes = -1\n",
                "c.toml:2:18: `framing.max_line_bytes` must be a whole number of bytes, e.g. 65536 (found integer `-1`)",
            ),
            (
                "[tail]\npoll_only = \"yes\"\n",
                "c.toml:2:13: `tail.poll_only` must be true or false, without quotes (found string \"yes\")",
            ),
            (
                "server_tag = 7\n",
                "c.toml:1:14: `server_tag` must be text in quotes, e.g. \"value\" (found integer `7`)",
            ),
        ];
        for (text, want) in cases {
            let err = Config::parse(Path::new("c.toml"), text)
                .unwrap_err()
                .to_string();
            assert_eq!(err, want, "{text}");
        }
    }

    #[test]
    fn the_line_of_a_key_is_found_in_the_loaded_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("isr.toml");
        std::fs::write(
            &path,
            "[[servers]]\ntag = \"a\"\nlog_dir = \"/a\"\n\n[[servers]]\ntag = \"b\"\nlog_dir = \"/b\"\ndiscord_webhook = \"x\"\n\n[discord.webhooks.admins]\nurl_file = \"f\"\n",
        )
        .unwrap();
        let file = Config::load(&path).unwrap().file.unwrap();
        let at = |keys: &[&str]| file.locate(keys);
        let p = path.display();
        assert_eq!(at(&["servers", "1", "discord_webhook"]), format!("{p}:8"));
        assert_eq!(at(&["discord", "webhooks", "admins"]), format!("{p}:10"));
        assert_eq!(
            at(&["discord", "webhooks", "admins", "url_file"]),
            format!("{p}:11")
        );
        assert_eq!(
            at(&["discord", "webhooks", "admins", "url"]),
            format!("{p}:10")
        );
        assert_eq!(at(&["nothing"]), p.to_string());
    }

    #[test]
    fn relative_pattern_dirs_are_relative_to_the_config_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("isr.toml");
        std::fs::write(&file, "patterns_dir = \"my-patterns\"\n").unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(c.patterns_dir, Some(tmp.path().join("my-patterns")));
        std::fs::write(&file, "patterns_dir = \"/abs\"\n").unwrap();
        assert_eq!(
            Config::load(&file).unwrap().patterns_dir,
            Some(PathBuf::from("/abs"))
        );
    }

    #[test]
    fn discord_usernames_discord_refuses_are_refused_here() {
        for bad in ["", "My Discord Bot", "clyde", &"x".repeat(81)] {
            let text = format!("[discord]\nusername = {bad:?}\n");
            let err = Config::parse(Path::new("c.toml"), &text)
                .unwrap_err()
                .to_string();
            assert!(err.contains("discord.username"), "{bad}: {err}");
        }
        let ok = Config::parse(Path::new("c.toml"), "[discord]\nusername = \"Factorio\"\n");
        assert!(ok.is_ok());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let err = Config::parse(Path::new("c.toml"), "[framing]\nmax_line_bytes = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("framing.max_line_bytes"), "{err}");
    }

    #[test]
    fn servers_and_tail_settings_are_read_and_checked() {
        let c = Config::parse(
            Path::new("c.toml"),
            "[[servers]]\ntag = \"a\"\nlog_dir = \"/srv/a\"\n[[servers]]\ntag = \"b\"\nlog_dir = \"/srv/b\"\nglobs = [\"console.log\"]\n[tail]\npoll_only = true\n",
        )
        .unwrap();
        assert_eq!(c.servers.len(), 2);
        assert_eq!(c.servers[0].globs, tailer::default_globs());
        assert_eq!(c.servers[1].globs, vec!["console.log".to_owned()]);
        assert!(c.tail.poll_only);
        let err = Config::parse(
            Path::new("c.toml"),
            "[[servers]]\ntag = \"a\"\nlog_dir = \"/x\"\n[[servers]]\ntag = \"a\"\nlog_dir = \"/y\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("used twice"), "{err}");
        let err = Config::parse(
            Path::new("c.toml"),
            "[[servers]]\ntag = \"a b\"\nlog_dir = \"/x\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("servers.tag"), "{err}");
    }

    #[test]
    fn time_zones_come_from_the_flag_else_the_server_else_the_top_level() {
        let text = "timezone = \"America/New_York\"\n[[servers]]\ntag = \"a\"\nlog_dir = \"/a\"\n[[servers]]\ntag = \"b\"\nlog_dir = \"/b\"\ntimezone = \"+02:00\"\n";
        let c = Config::parse(Path::new("c.toml"), text).unwrap();
        let zones = |c: &Config| -> Vec<String> {
            c.run_servers(&[], None)
                .unwrap()
                .iter()
                .map(|s| s.timezone.as_ref().unwrap().to_string())
                .collect()
        };
        assert_eq!(zones(&c), ["America/New_York", "+02:00"]);
        assert_eq!(Config::default().timezone, TimeZoneSetting::Local);
        let dirs = Config::default()
            .run_servers(&[PathBuf::from("/srv/a")], None)
            .unwrap();
        assert_eq!(dirs[0].timezone, Some(TimeZoneSetting::Local));
        let mut flagged = c.clone();
        let flags = Overrides {
            timezone: Some(TimeZoneSetting::Utc),
            ..Overrides::default()
        };
        flagged.apply(&flags, &|_: &str| None).unwrap();
        assert_eq!(zones(&flagged), ["UTC", "UTC"]);
    }

    #[test]
    fn the_logstash_protocol_comes_from_the_flag_else_the_environment_else_the_file() {
        let file = Config {
            logstash: LogstashConfig {
                protocol: LogstashProtocol::Beats,
                ..LogstashConfig::default()
            },
            ..Config::default()
        };
        let env = |k: &str| (k == "LOGSTASH_PROTOCOL").then(|| "tcp".to_owned());
        let mut c = file.clone();
        c.apply(&Overrides::default(), &|_: &str| None).unwrap();
        assert_eq!(c.logstash.protocol, LogstashProtocol::Beats);
        let mut c = file.clone();
        c.apply(&Overrides::default(), &env).unwrap();
        assert_eq!(c.logstash.protocol, LogstashProtocol::Tcp);
        let mut c = file.clone();
        let flags = Overrides {
            logstash_protocol: Some(LogstashProtocol::Beats),
            ..Overrides::default()
        };
        c.apply(&flags, &env).unwrap();
        assert_eq!(c.logstash.protocol, LogstashProtocol::Beats);
        let bad = |k: &str| (k == "LOGSTASH_PROTOCOL").then(|| "lumberjack".to_owned());
        let e = file.clone().apply(&Overrides::default(), &bad).unwrap_err();
        assert!(e.to_string().contains("LOGSTASH_PROTOCOL"), "{e}");
    }

    #[test]
    fn a_time_zone_that_does_not_exist_is_refused_naming_the_key_and_line() {
        for text in [
            "timezone = \"Mars/Olympus\"\n",
            "[[servers]]\ntag = \"a\"\nlog_dir = \"/a\"\ntimezone = \"Mars/Olympus\"\n",
        ] {
            let err = Config::parse(Path::new("c.toml"), text)
                .unwrap_err()
                .to_string();
            let line = text.lines().count();
            assert!(err.starts_with(&format!("c.toml:{line}:")), "{text}: {err}");
            assert!(
                err.contains("timezone `Mars/Olympus` is not a time zone"),
                "{err}"
            );
            assert!(err.contains("America/New_York"), "{err}");
        }
    }

    #[test]
    fn run_servers_come_from_arguments_or_the_config() {
        let c = Config::default();
        assert!(matches!(c.run_servers(&[], None), Err(ServersError::None)));
        let one = c
            .run_servers(&[PathBuf::from("/srv/a")], Some("primary"))
            .unwrap();
        assert_eq!(one[0].tag, "primary");
        let one = c.run_servers(&[PathBuf::from("/srv/a")], None).unwrap();
        assert_eq!(one[0].tag, "default");
        let two = c
            .run_servers(
                &[PathBuf::from("/srv/alpha"), PathBuf::from("/srv/beta")],
                None,
            )
            .unwrap();
        assert_eq!(
            (two[0].tag.as_str(), two[1].tag.as_str()),
            ("alpha", "beta")
        );
        assert!(matches!(
            c.run_servers(&[PathBuf::from("/a/x"), PathBuf::from("/b/x")], None),
            Err(ServersError::DuplicateTag(_))
        ));
        assert!(matches!(
            c.run_servers(&[PathBuf::from("/a"), PathBuf::from("/b")], Some("t")),
            Err(ServersError::TagWithSeveralDirs)
        ));
    }

    #[test]
    fn the_admin_server_is_local_unless_told_otherwise() {
        let c = MetricsConfig::default();
        assert!(c.enabled);
        assert_eq!(c.address, "127.0.0.1:9464");
        let resolve = |flag: Option<String>,
                       env: &dyn Fn(&str) -> Option<String>|
         -> Result<Option<String>, ConfigError> {
            let mut c = Config::default();
            let flags = Overrides {
                metrics_addr: flag,
                ..Overrides::default()
            };
            c.apply(&flags, &env)?;
            Ok(c.metrics.serve_address().map(str::to_owned))
        };
        let none = |_: &str| None;
        assert_eq!(
            resolve(None, &none).unwrap().as_deref(),
            Some("127.0.0.1:9464")
        );
        let env = |k: &str| (k == "METRICS_PORT").then(|| "9999".to_owned());
        assert_eq!(
            resolve(None, &env).unwrap().as_deref(),
            Some("127.0.0.1:9999")
        );
        let flag = Some("0.0.0.0:1".to_owned());
        assert_eq!(resolve(flag, &env).unwrap().as_deref(), Some("0.0.0.0:1"));
        let off = |k: &str| (k == "METRICS_ENABLED").then(|| "false".to_owned());
        assert_eq!(resolve(None, &off).unwrap(), None);
        let bad = |k: &str| (k == "METRICS_PORT").then(|| "http".to_owned());
        let err = resolve(None, &bad).unwrap_err().to_string();
        assert!(err.starts_with("METRICS_PORT"), "{err}");
    }

    #[test]
    fn a_log_format_that_does_not_parse_names_the_variable() {
        let env = |k: &str| (k == "LOG_FORMAT").then(|| "xml".to_owned());
        let err = Config::default()
            .apply(&Overrides::default(), &env)
            .unwrap_err();
        assert!(err.to_string().contains("LOG_FORMAT"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut c = Config::default();
        let env = |k: &str| (k == "SERVICE_ENVIRONMENT").then(|| "dev".to_owned());
        c.apply(&Overrides::default(), &env).unwrap();
        let info = c.service.info();
        assert_eq!(info.environment, "dev");
        assert_eq!(info.name, "factorio-isr");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    }
}
