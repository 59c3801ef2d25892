//! The Discord sink: interesting events, formatted, to Discord webhooks. Best-effort: it
//! never slows the pipeline, and what it must drop is counted.
//!
//! - [`format`]: an event and its pattern's `[pattern.discord]` template become a line of
//!   content (chatty events) or an embed (server lifecycle, errors); every inserted value is
//!   escaped for Discord markdown with `@everyone`/`@here` defused, and Discord's size limits
//!   are met by truncating. Every request carries `allowed_mentions: {"parse": []}`.
//! - [`ratelimit`]: Discord's rate-limit headers and 429 answers, per bucket and global.
//! - [`worker`]: per webhook a bounded queue and a task that coalesces queued events into as
//!   few messages as fit and posts them, handling every kind of answer.
//!
//! [`Discord::start`] resolves the webhooks (URLs from the config, a secret file,
//! `DISCORD_WEBHOOK_URL` or `--discord-webhook`) and starts one worker per webhook on the given
//! runtime. [`Discord::route`] is called by the route stage for every event with a Discord
//! template: it decides the webhook (the pattern's, else the server's, else the default),
//! applies the switches (per-server `discord_disabled`, the echo guard, the age limit) and
//! queues the rendered event without waiting.
//!
//! The webhook URL is a secret: [`WebhookUrl`] never prints it, configuration errors name the
//! webhook and never echo its URL, and request errors are stripped of it.
//!
//! How it fails: a webhook without a usable URL is a [`DiscordError`] at start; at run time
//! nothing here returns an error to the pipeline (see [`worker`] for what each answer does).

pub mod format;
pub mod ratelimit;
mod sink;
pub mod worker;

pub use self::sink::DiscordSink;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use thiserror::Error;
use tokio::sync::Notify;

use self::format::render;
use self::ratelimit::RateLimits;
use self::worker::{Queue, Worker};
use crate::event::{Event, Timestamp};
use crate::patterns::DiscordTemplate;
use crate::telemetry::health::Health;
use crate::telemetry::metrics::DiscordMetrics;

/// Default of [`DiscordConfig::default_webhook`]: the webhook `DISCORD_WEBHOOK_URL` and
/// `--discord-webhook` set.
pub fn default_webhook_name() -> String {
    "default".to_owned()
}

/// Default of [`DiscordConfig::queue_events`].
pub const fn default_queue_events() -> usize {
    500
}

/// Default of [`DiscordConfig::coalesce_ms`].
pub const fn default_coalesce_ms() -> u64 {
    250
}

/// Default of [`DiscordConfig::request_timeout_ms`].
pub const fn default_request_timeout_ms() -> u64 {
    10_000
}

/// Default of [`DiscordConfig::max_attempts`].
pub const fn default_max_attempts() -> u32 {
    5
}

/// Default of [`DiscordConfig::retry_initial_ms`].
pub const fn default_retry_initial_ms() -> u64 {
    1000
}

/// Default of [`DiscordConfig::retry_max_ms`].
pub const fn default_retry_max_ms() -> u64 {
    60_000
}

/// Default of [`DiscordConfig::max_event_age_ms`].
pub const fn default_max_event_age_ms() -> u64 {
    600_000
}

/// Default of [`DiscordConfig::shutdown_flush_ms`].
pub const fn default_shutdown_flush_ms() -> u64 {
    5000
}

/// A webhook URL. Secret: its `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Checks that `url` looks like a webhook URL; the error never contains the URL.
    pub fn parse(url: &str) -> Result<WebhookUrl, &'static str> {
        let url = url.trim();
        let parsed = reqwest::Url::parse(url).map_err(|_| "is not a URL")?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err("must be an https:// URL");
        }
        if !parsed.path().contains("/api/webhooks/") {
            return Err(
                "is not a webhook URL (expected https://discord.com/api/webhooks/ID/TOKEN)",
            );
        }
        Ok(WebhookUrl(url.to_owned()))
    }

    /// The URL with `wait=true`, so Discord confirms the message or says why not.
    fn with_wait(&self) -> reqwest::Url {
        let mut url = reqwest::Url::parse(&self.0).unwrap_or_else(|_| {
            // Checked by `parse`; a URL that stops parsing cannot reach Discord anyway.
            reqwest::Url::parse("http://invalid.invalid/").expect("a fixed valid URL")
        });
        url.query_pairs_mut().append_pair("wait", "true");
        url
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One `[discord.webhooks.NAME]`: where its URL comes from.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The webhook URL. Prefer `url_file`: a config file is often readable by more people
    /// than a secret should be.
    #[serde(default)]
    pub url: Option<WebhookUrl>,
    /// A file holding the URL (a Docker or systemd secret). Relative to the config file.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
}

/// The `[discord]` section.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// Named webhooks. `DISCORD_WEBHOOK_URL` / `--discord-webhook` add (or replace) the one
    /// named by `default_webhook`.
    #[serde(default)]
    pub webhooks: BTreeMap<String, WebhookConfig>,
    /// The webhook of servers that name none. Default `default`.
    #[serde(default = "default_webhook_name")]
    pub default_webhook: String,
    /// The author name shown on messages (1–80 characters). Unset: the webhook's own name.
    #[serde(default)]
    pub username: Option<String>,
    /// Event types or pattern names (`file/name`) never sent to Discord, for every server.
    #[serde(default)]
    pub disabled: Vec<String>,
    /// Do not send chat that a Discord-to-game bridge wrote (`[CHAT] <server>: …`) back to
    /// Discord. Default true.
    #[serde(default = "crate::settings::default_true")]
    pub echo_guard: bool,
    /// Events queued per webhook; beyond it the oldest least severe go first. Default 500.
    #[serde(default = "default_queue_events")]
    pub queue_events: usize,
    /// How long the first event of a burst waits for others to share its message. Default 250.
    #[serde(default = "default_coalesce_ms")]
    pub coalesce_ms: u64,
    /// Timeout of one request. Default 10000.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Attempts of a message on 5xx answers, timeouts and broken connections. Default 5.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First wait before a retry; doubles each time. Default 1000.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest wait before a retry. Default 60000.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Events older than this (a backlog read at start) are not sent. 0: no limit. Default
    /// 600000 (10 minutes).
    #[serde(default = "default_max_event_age_ms")]
    pub max_event_age_ms: u64,
    /// How long a stop waits for queued messages to be sent. Default 5000.
    #[serde(default = "default_shutdown_flush_ms")]
    pub shutdown_flush_ms: u64,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            webhooks: BTreeMap::new(),
            default_webhook: default_webhook_name(),
            username: None,
            disabled: Vec::new(),
            echo_guard: true,
            queue_events: default_queue_events(),
            coalesce_ms: default_coalesce_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            max_attempts: default_max_attempts(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
            max_event_age_ms: default_max_event_age_ms(),
            shutdown_flush_ms: default_shutdown_flush_ms(),
        }
    }
}

impl DiscordConfig {
    /// Makes `url_file` paths absolute against `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        for w in self.webhooks.values_mut() {
            if let Some(p) = &mut w.url_file
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        }
    }
}

/// A webhook that cannot be used.
#[derive(Debug, Error)]
pub enum DiscordError {
    /// The URL is wrong (never shown: it is a secret).
    #[error("discord webhook `{name}`: the URL {problem}")]
    BadUrl {
        /// The webhook.
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// Both or neither of `url` and `url_file`.
    #[error("discord webhook `{name}`: set exactly one of url and url_file")]
    UrlSource {
        /// The webhook.
        name: String,
    },
    /// The secret file cannot be read.
    #[error("discord webhook `{name}`: cannot read {}: {source}", path.display())]
    UrlFile {
        /// The webhook.
        name: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A server or pattern names a webhook that is not configured.
    #[error(
        "{who} posts to the discord webhook `{name}`, which is not configured; add [discord.webhooks.{name}]"
    )]
    Unknown {
        /// Who names it.
        who: String,
        /// The missing webhook.
        name: String,
    },
}

/// The webhooks in use, by name, with their URLs: the config's, then the one of the flag or
/// `DISCORD_WEBHOOK_URL` under `default_webhook`.
pub fn resolve_webhooks(
    config: &DiscordConfig,
    override_url: Option<&str>,
) -> Result<BTreeMap<String, WebhookUrl>, DiscordError> {
    let mut out = BTreeMap::new();
    for (name, w) in &config.webhooks {
        let url = match (&w.url, &w.url_file) {
            (Some(u), None) => u.0.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|source| DiscordError::UrlFile {
                    name: name.clone(),
                    path: path.clone(),
                    source,
                })?
                .trim()
                .to_owned(),
            _ => {
                // The flag or environment may supply the default webhook's URL.
                if override_url.is_some() && *name == config.default_webhook && w.url.is_none() {
                    continue;
                }
                return Err(DiscordError::UrlSource { name: name.clone() });
            }
        };
        let url = WebhookUrl::parse(&url).map_err(|problem| DiscordError::BadUrl {
            name: name.clone(),
            problem,
        })?;
        out.insert(name.clone(), url);
    }
    if let Some(u) = override_url {
        let name = config.default_webhook.clone();
        let url = WebhookUrl::parse(u).map_err(|problem| DiscordError::BadUrl {
            name: name.clone(),
            problem,
        })?;
        out.insert(name, url);
    }
    Ok(out)
}

/// Where one server's events go.
#[derive(Clone, Debug, Default)]
pub struct ServerRoute {
    /// Its webhook; `None`: the default webhook.
    pub webhook: Option<String>,
    /// Event types or pattern names not sent for this server.
    pub disabled: Vec<String>,
}

/// The running Discord sink.
pub struct Discord {
    queues: HashMap<String, Arc<Queue>>,
    default_webhook: String,
    servers: HashMap<String, ServerRoute>,
    disabled: HashSet<String>,
    echo_guard: bool,
    max_age_ms: u64,
    show_server: bool,
    metrics: DiscordMetrics,
    stopping: Arc<AtomicBool>,
    stop_notifies: Vec<Arc<Notify>>,
    shutdown_flush: Duration,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Discord {
    /// Starts the sink when `config`, the `--discord-webhook` flag or `DISCORD_WEBHOOK_URL`
    /// name a webhook; `None` when none does. `servers`: every server's tag and route. Warns
    /// about patterns that post to a webhook that is not configured.
    #[allow(clippy::too_many_arguments)]
    pub fn from_config(
        config: &DiscordConfig,
        servers: HashMap<String, ServerRoute>,
        flag: Option<String>,
        env: impl Fn(&str) -> Option<String>,
        runtime: &tokio::runtime::Handle,
        metrics: DiscordMetrics,
        health: &Arc<Health>,
        patterns: &crate::patterns::PatternSet,
    ) -> Result<Option<Discord>, DiscordError> {
        let override_url =
            flag.or_else(|| env("DISCORD_WEBHOOK_URL").filter(|u| !u.trim().is_empty()));
        let webhooks = resolve_webhooks(config, override_url.as_deref())?;
        if webhooks.is_empty() {
            return Ok(None);
        }
        for p in patterns.patterns() {
            if let Some(w) = p.discord.as_ref().and_then(|d| d.webhook.as_ref())
                && !webhooks.contains_key(w)
            {
                tracing::warn!(pattern = %p.qualified_name, webhook = %w, "This pattern posts to a Discord webhook that is not configured; its events are dropped. Add [discord.webhooks.{w}].");
            }
        }
        let names: Vec<&String> = webhooks.keys().collect();
        tracing::info!(webhooks = ?names, "Sending events with a Discord template to Discord.");
        Discord::start(config, webhooks, servers, runtime, metrics, health).map(Some)
    }

    /// Starts a worker per webhook on `runtime`. `servers`: every server's tag and route.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        config: &DiscordConfig,
        webhooks: BTreeMap<String, WebhookUrl>,
        servers: HashMap<String, ServerRoute>,
        runtime: &tokio::runtime::Handle,
        metrics: DiscordMetrics,
        health: &Arc<Health>,
    ) -> Result<Discord, DiscordError> {
        for (tag, route) in &servers {
            if let Some(w) = &route.webhook
                && !webhooks.contains_key(w)
            {
                return Err(DiscordError::Unknown {
                    who: format!("server `{tag}`"),
                    name: w.clone(),
                });
            }
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!(
                "DiscordBot (factorio-isr, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .timeout(Duration::from_millis(config.request_timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(config.request_timeout_ms.max(1)))
            .build()
            .map_err(|_| DiscordError::BadUrl {
                name: "(all)".into(),
                problem: "cannot be used: the HTTP client did not start",
            })?;
        let limits = Arc::new(RateLimits::default());
        let stopping = Arc::new(AtomicBool::new(false));
        let mut queues = HashMap::new();
        let mut tasks = Vec::new();
        let mut stop_notifies = Vec::new();
        for (name, url) in webhooks {
            let queue = Arc::new(Queue::new(&name, config.queue_events, metrics.clone()));
            let component = health.component(&format!("discord.{name}"), "starting");
            component.ready();
            let stop_notify = Arc::new(Notify::new());
            let worker = Worker {
                name: name.clone(),
                url,
                queue: queue.clone(),
                limits: limits.clone(),
                client: client.clone(),
                config: config.clone(),
                metrics: metrics.clone(),
                health: component,
                stopping: stopping.clone(),
                stop_notify: stop_notify.clone(),
            };
            tasks.push(runtime.spawn(worker.run()));
            stop_notifies.push(stop_notify);
            queues.insert(name, queue);
        }
        Ok(Discord {
            queues,
            default_webhook: config.default_webhook.clone(),
            show_server: servers.len() > 1,
            servers,
            disabled: config.disabled.iter().cloned().collect(),
            echo_guard: config.echo_guard,
            max_age_ms: config.max_event_age_ms,
            metrics,
            stopping,
            stop_notifies,
            shutdown_flush: Duration::from_millis(config.shutdown_flush_ms),
            tasks: std::sync::Mutex::new(tasks),
        })
    }

    /// Queues `event` for its webhook, rendered with `template`, unless a switch keeps it
    /// from Discord. Never waits.
    pub fn route(&self, event: &Event, template: &DiscordTemplate) {
        if !template.enabled {
            return;
        }
        let server = &*event.source.server;
        let route = self.servers.get(server);
        let off = |list: &dyn Fn(&str) -> bool| {
            list(&event.event_type) || event.pattern_name().is_some_and(list)
        };
        if off(&|k| self.disabled.contains(k))
            || route.is_some_and(|r| off(&|k| r.disabled.iter().any(|d| d == k)))
        {
            return;
        }
        if self.echo_guard && is_bridge_echo(event) {
            return;
        }
        if self.max_age_ms > 0 {
            let age_ms = Timestamp::now().0.saturating_sub(event.timestamp.0);
            if age_ms > self.max_age_ms as i64 {
                self.metrics.drop_events("too_old", 1);
                return;
            }
        }
        let name = template
            .webhook
            .as_deref()
            .or_else(|| route.and_then(|r| r.webhook.as_deref()))
            .unwrap_or(&self.default_webhook);
        match self.queues.get(name) {
            Some(q) => q.push(render(template, event, self.show_server)),
            None => self.metrics.drop_events("no_webhook", 1),
        }
    }

    /// Sends what is queued, for at most `shutdown_flush_ms`, then drops the rest (counted as
    /// `shutdown`). Blocks; call it outside the runtime.
    pub fn shutdown(&self, runtime: &tokio::runtime::Handle) {
        self.stopping.store(true, Ordering::Release);
        for n in &self.stop_notifies {
            n.notify_one();
        }
        let deadline = Instant::now() + self.shutdown_flush;
        let tasks: Vec<_> = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        runtime.block_on(async {
            for t in tasks {
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = tokio::time::timeout(left, t).await;
            }
        });
        for q in self.queues.values() {
            q.drop_all("shutdown");
        }
    }
}

/// A chat line a Discord-to-game bridge wrote through RCON: Factorio logs it as said by
/// `<server>`.
fn is_bridge_echo(event: &Event) -> bool {
    &*event.event_type == "chat"
        && event
            .field("player")
            .and_then(|p| p.as_str())
            .is_some_and(|p| p.trim() == "<server>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_never_shown() {
        let url = WebhookUrl::parse("https://discord.com/api/webhooks/1/SECRET").unwrap();
        assert_eq!(format!("{url} {url:?}"), "<redacted> <redacted>");
        assert_eq!(
            url.with_wait().as_str(),
            "https://discord.com/api/webhooks/1/SECRET?wait=true"
        );
        for bad in [
            "not a url SECRET",
            "ftp://x/api/webhooks/1/SECRET",
            "https://discord.com/SECRET",
        ] {
            let err = WebhookUrl::parse(bad).unwrap_err();
            assert!(!err.contains("SECRET"), "{err}");
        }
    }

    #[test]
    fn webhooks_come_from_the_config_a_file_or_the_override() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook");
        std::fs::write(&file, "https://discord.com/api/webhooks/2/FILESECRET\n").unwrap();
        let mut config = DiscordConfig::default();
        config.webhooks.insert(
            "admins".into(),
            WebhookConfig {
                url: None,
                url_file: Some(file),
            },
        );
        let hooks =
            resolve_webhooks(&config, Some("https://discord.com/api/webhooks/1/ENV")).unwrap();
        assert_eq!(hooks.keys().collect::<Vec<_>>(), ["admins", "default"]);
        assert_eq!(
            hooks["admins"].0,
            "https://discord.com/api/webhooks/2/FILESECRET"
        );

        config
            .webhooks
            .insert("broken".into(), WebhookConfig::default());
        let err = resolve_webhooks(&config, None).unwrap_err().to_string();
        assert!(
            err.contains("`broken`") && err.contains("exactly one"),
            "{err}"
        );

        let config = DiscordConfig::default();
        let err = resolve_webhooks(&config, Some("https://example.com/hook?token=SECRET"))
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("SECRET") && err.contains("`default`"),
            "{err}"
        );
    }
}
