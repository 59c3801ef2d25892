//! The Discord sink: interesting events, formatted, to Discord webhooks. Best-effort: it
//! never slows the pipeline, and what it must drop is counted.
//!
//! - [`config`]: the `[discord]` section ([`DiscordConfig`]), its checks, and the webhooks it
//!   names ([`resolve_webhooks`]).
//! - [`format`](mod@format): an event and its pattern's `[pattern.discord]` template become a line of
//!   content (chatty events) or an embed (server lifecycle, errors); every inserted value is
//!   escaped for Discord markdown with `@everyone`/`@here` defused, and Discord's size limits
//!   are met by truncating. Every request carries `allowed_mentions: {"parse": []}`, plus
//!   under `roles` exactly the role ids the config names (`mention_roles`) when it pings.
//! - [`ratelimit`]: Discord's rate-limit headers and 429 answers, per bucket and global.
//! - [`worker`]: per webhook a bounded queue and a task that coalesces queued events into as
//!   few messages as fit and posts them, handling every kind of answer.
//! - [`internal_events`]: what happens in the sink (a webhook disabled, a message refused, a
//!   request failed, events dropped, a rate limit hit), each logged and counted in one place.
//!
//! [`Discord::start`] resolves the webhooks (URLs from the config, a secret file,
//! `DISCORD_WEBHOOK_URL` or `--discord-webhook`) and starts one worker per webhook on the given
//! runtime. [`Discord::route`] is called by the route stage for every event with a Discord
//! template: it decides the webhook (the pattern's, else the server's, else the default),
//! applies the switches (per-server `discord_disabled`, the echo guard, the age limit) and
//! queues the rendered event without waiting; it pings the pattern's `mention_roles`, and for a
//! `critical` event also the server's. [`Discord::queue`] lets a source that is not the log
//! pipeline (the Alertmanager receiver) queue messages of its own.
//!
//! One stop, one notification: Factorio writes several lines when it stops (`Received SIGINT`,
//! `Quitting: signal.`, `Goodbye`) or crashes (the Lua error record, `MultiplayerManager
//! failed`, the state change to `Failed`, `Quitting: multiplayer error.`, `Goodbye`). Per server,
//! the first of them that is posted stands for the whole stop or crash and the later ones are
//! not posted (see [`Lifecycle`]), until the server starts again (`server_started` or
//! `server_ready`). Every one of them still goes to the other sinks.
//!
//! The webhook URL is a secret: [`WebhookUrl`] never prints it, configuration errors name the
//! webhook and never echo its URL, and request errors are stripped of it.
//!
//! How it fails: a webhook without a usable URL is a [`DiscordError`] at start; at run time
//! nothing here returns an error to the pipeline (see [`worker`] for what each answer does).

pub mod config;
pub mod format;
pub mod internal_events;
pub mod ratelimit;
mod sink;
pub mod worker;

pub use self::sink::DiscordSink;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub use self::config::{
    DiscordConfig, DiscordError, ServerRoute, WebhookConfig, WebhookUrl, check_webhooks,
    default_coalesce_ms, default_max_attempts, default_max_event_age_ms, default_queue_events,
    default_request_timeout_ms, default_retry_initial_ms, default_retry_max_ms,
    default_shutdown_flush_ms, default_webhook_name, resolve_webhooks,
};
use self::format::render;
use self::internal_events::{
    DropReason, EventTooOld, EventsDropped, TooOldBurstEnded, TooOldBursts,
};
use self::ratelimit::RateLimits;
use self::worker::{Queue, Worker};
use crate::event::{DiscordTemplate, Event, Severity, Timestamp};
use crate::settings::Secret;
use crate::sinks::SinkContext;
use crate::telemetry::health::Health;
use crate::telemetry::metrics::DiscordMetrics;

/// The running Discord sink.
pub struct Discord {
    queues: HashMap<String, Arc<Queue>>,
    default_webhook: String,
    servers: HashMap<String, ServerRoute>,
    disabled: HashSet<String>,
    echo_guard: bool,
    max_age_ms: u64,
    /// Too-old drops, logged once per burst; `too_old_burst` says one is going on without
    /// taking the lock.
    too_old: std::sync::Mutex<TooOldBursts>,
    too_old_burst: AtomicBool,
    show_server: bool,
    metrics: DiscordMetrics,
    stopping: Arc<AtomicBool>,
    stop_notifies: Vec<Arc<Notify>>,
    shutdown_flush: Duration,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    lifecycles: std::sync::Mutex<HashMap<String, Lifecycle>>,
}

impl Discord {
    /// Starts the sink when `config` or `default_url` (`--discord-webhook` or
    /// `DISCORD_WEBHOOK_URL`, for the default webhook) name a webhook; `None` when none does.
    /// `servers`: every server's tag and route. Webhooks that servers and patterns name were
    /// checked before (`app::preflight`).
    pub fn build(
        config: &DiscordConfig,
        servers: HashMap<String, ServerRoute>,
        default_url: Option<&Secret>,
        ctx: &SinkContext<'_>,
    ) -> Result<Option<DiscordSink>, DiscordError> {
        let webhooks = resolve_webhooks(config, default_url.map(Secret::expose))?;
        if webhooks.is_empty() {
            return Ok(None);
        }
        let names: Vec<&String> = webhooks.keys().collect();
        tracing::info!(webhooks = ?names, "Sending events with a Discord template to Discord.");
        let discord = Discord::start(
            config,
            webhooks,
            servers,
            ctx.runtime,
            ctx.metrics.discord.clone(),
            ctx.health,
        )?;
        Ok(Some(DiscordSink::new(discord, ctx.runtime.clone())))
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
            // A redirect would carry the token elsewhere (in the URL and `Referer`) and turn
            // the POST into a bodiless GET: a 3xx is an answer, and the worker drops it.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .build()
            .map_err(|_| DiscordError::BadUrl {
                name: "(all)".into(),
                problem: "cannot be used: the HTTP client did not start",
            })?;
        internal_events::register(&metrics, webhooks.keys().map(String::as_str));
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
            too_old: std::sync::Mutex::new(TooOldBursts::default()),
            too_old_burst: AtomicBool::new(false),
            metrics,
            stopping,
            stop_notifies,
            shutdown_flush: Duration::from_millis(config.shutdown_flush_ms),
            tasks: std::sync::Mutex::new(tasks),
            lifecycles: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Queues `event` for its webhook, rendered with `template`, unless a switch keeps it
    /// from Discord. Never waits.
    pub fn route(&self, event: &Event, template: &DiscordTemplate) {
        let stage = Stage::of(event);
        if stage == Stage::RunStart {
            self.observe(event);
        }
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
                let mut bursts = self.too_old.lock().unwrap_or_else(|p| p.into_inner());
                EventTooOld {
                    age_ms,
                    max_event_age_ms: self.max_age_ms,
                    server,
                    event_type: &event.event_type,
                }
                .emit(&self.metrics, &mut bursts, Instant::now());
                self.too_old_burst.store(true, Ordering::Release);
                return;
            }
            if self.too_old_burst.swap(false, Ordering::AcqRel) {
                self.end_too_old_burst();
            }
        }
        let name = template
            .webhook
            .as_deref()
            .or_else(|| route.and_then(|r| r.webhook.as_deref()))
            .unwrap_or(&self.default_webhook);
        if stage != Stage::Other
            && !crate::settings::lock(&self.lifecycles)
                .entry(server.to_owned())
                .or_default()
                .admit(stage, event.timestamp)
        {
            tracing::debug!(server, event_type = %event.event_type, "Not posted to Discord: this stop or crash was already posted.");
            return;
        }
        match self.queues.get(name) {
            Some(q) => {
                let mut item = render(template, event, self.show_server);
                if event.severity == Severity::Critical
                    && let Some(r) = route
                {
                    item.mentions.extend(r.mention_roles.iter().cloned());
                }
                q.push(item)
            }
            None => EventsDropped {
                reason: DropReason::NoWebhook,
                events: 1,
            }
            .emit(&self.metrics),
        }
    }

    /// The queue of the webhook `name`, for a source that posts without the pipeline (the
    /// Alertmanager receiver); `None` when no such webhook is configured.
    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.get(name).cloned()
    }

    /// Whether [`Discord::shutdown`] has begun: what is queued now may never be sent.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// The webhook that gets what names none: `[discord] default_webhook`.
    pub fn default_webhook(&self) -> &str {
        &self.default_webhook
    }

    /// The role ids `[[servers]] mention_roles` gives the server `tag`; empty for none.
    pub fn server_roles(&self, tag: &str) -> &[String] {
        self.servers
            .get(tag)
            .map_or(&[][..], |r| r.mention_roles.as_slice())
    }

    /// Takes in an event that is not routed (it has no Discord template): a new run of a
    /// server ends the stop or crash [`Discord::route`] remembers for it.
    pub fn observe(&self, event: &Event) {
        if Stage::of(event) == Stage::RunStart {
            crate::settings::lock(&self.lifecycles).remove(&*event.source.server);
        }
    }

    /// Logs what is left of a burst of too-old events.
    fn end_too_old_burst(&self) {
        let mut bursts = self.too_old.lock().unwrap_or_else(|p| p.into_inner());
        TooOldBurstEnded {
            max_event_age_ms: self.max_age_ms,
        }
        .emit(&mut bursts);
    }

    /// Sends what is queued, for at most `shutdown_flush_ms`, then drops the rest (counted as
    /// `shutdown`). Blocks; call it outside the runtime.
    pub fn shutdown(&self, runtime: &tokio::runtime::Handle) {
        self.stopping.store(true, Ordering::Release);
        self.end_too_old_burst();
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
            q.drop_all(DropReason::Shutdown);
        }
    }
}

/// How far apart (in the log's own time) a crash record (a Lua error: `mod_error`,
/// `script_error`) and the `server_crashed` line after it may be to be one crash. Factorio
/// writes them in the same millisecond or two.
pub const CRASH_RECORD_WINDOW_MS: i64 = 5_000;

/// What an event means for a server's lifecycle, from its `event_type` (the built-in names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// `server_started`, `server_ready`: a new run.
    RunStart,
    /// `server_stopping`, `server_stopped`.
    Stop,
    /// `server_crashed`.
    Crash,
    /// `mod_error`, `script_error`: a Lua error, usually the cause of the crash that follows.
    CrashRecord,
    /// Anything else.
    Other,
}

impl Stage {
    fn of(event: &Event) -> Stage {
        match &*event.event_type {
            "server_started" | "server_ready" => Stage::RunStart,
            "server_stopping" | "server_stopped" => Stage::Stop,
            "server_crashed" => Stage::Crash,
            "mod_error" | "script_error" => Stage::CrashRecord,
            _ => Stage::Other,
        }
    }
}

/// One server's stop or crash as far as Discord has been told, so that a stop is one
/// notification and a crash is one notification:
///
/// - the first stop line posted opens a stop; later stop lines are not posted;
/// - a crash line is not posted when a crash was already posted, or when a crash record was
///   posted at most [`CRASH_RECORD_WINDOW_MS`] before it (the record, which holds the Lua error,
///   is the notification); it opens a crash, after which no stop line is posted either (a crash
///   ends with `Quitting: multiplayer error.` and `Goodbye`);
/// - a crash during a stop is still posted.
///
/// It is forgotten when the server starts again.
#[derive(Debug, Default)]
pub struct Lifecycle {
    crashed: bool,
    stopping: bool,
    last_crash_record: Option<Timestamp>,
}

impl Lifecycle {
    /// Whether an event of `stage` at `at` is posted; remembers it when it is.
    fn admit(&mut self, stage: Stage, at: Timestamp) -> bool {
        match stage {
            Stage::Stop => {
                let post = !self.crashed && !self.stopping;
                self.stopping = true;
                post
            }
            Stage::Crash => {
                let after_record = self
                    .last_crash_record
                    .is_some_and(|r| (0..=CRASH_RECORD_WINDOW_MS).contains(&(at.0 - r.0)));
                let post = !self.crashed && !after_record;
                self.crashed = true;
                post
            }
            Stage::CrashRecord => {
                self.last_crash_record = Some(at);
                true
            }
            Stage::RunStart | Stage::Other => true,
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
    use std::io::Write;
    use std::sync::Mutex;

    use super::*;
    use crate::event::{LogSource, Severity};
    use crate::patterns::load::parse_template;
    use crate::telemetry::metrics::Metrics;

    /// Log lines written while `f` runs on this thread.
    fn logs_of(f: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    fn event(age_ms: i64) -> Event {
        Event {
            timestamp: Timestamp(Timestamp::now().0 - age_ms),
            event_type: "player_join".into(),
            severity: Severity::Info,
            pattern: None,
            fields: Default::default(),
            raw: "2026-01-15 10:00:00 [JOIN] a joined the game".to_owned(),
            message_start: 0,
            source: Arc::new(LogSource {
                server: "primary".into(),
                path: "console.log".into(),
            }),
            offset: 0,
            trace: None,
        }
    }

    #[test]
    fn events_too_old_for_discord_are_logged_once_per_burst_with_count_and_age() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let metrics = Metrics::new();
        let health = Health::new(metrics.component_status.clone());
        let config = DiscordConfig::default();
        let webhooks = BTreeMap::from([(
            config.default_webhook.clone(),
            WebhookUrl::parse("http://127.0.0.1:9/api/webhooks/1/token").unwrap(),
        )]);
        let discord = Discord::start(
            &config,
            webhooks,
            HashMap::new(),
            runtime.handle(),
            metrics.discord.clone(),
            &health,
        )
        .unwrap();
        // The young event goes to a webhook that is not configured: nothing is sent.
        let mut template = DiscordTemplate {
            parts: parse_template("{player} joined").unwrap(),
            source: "{player} joined".to_owned(),
            emoji: None,
            color: None,
            webhook: None,
            enabled: true,
            mention_roles: Vec::new(),
        };
        let max_ms = i64::try_from(config.max_event_age_ms).unwrap();
        let logs = logs_of(|| {
            for age_ms in [5 * 3_600_000, 5 * 3_600_000 + 1_000, 5 * 3_600_000 + 2_000] {
                discord.route(&event(age_ms), &template);
            }
            template.webhook = Some("elsewhere".to_owned());
            discord.route(&event(max_ms / 10), &template);
        });
        let lines: Vec<&str> = logs.lines().collect();
        assert_eq!(lines.len(), 2, "{logs}");
        assert!(lines[0].contains("age_ms=1800000"), "{logs}");
        assert!(lines[0].contains("server=\"primary\""), "{logs}");
        assert!(lines[0].contains("timezone"), "{logs}");
        assert!(lines[1].contains("events=2"), "{logs}");
        assert!(lines[1].contains("oldest_age_ms=18002"), "{logs}");
        assert!(
            metrics
                .encode()
                .contains(r#"factorio_isr_discord_dropped_total{reason="too_old"} 3"#)
        );
        discord.shutdown(runtime.handle());
    }

    fn run(steps: &[(Stage, i64)]) -> Vec<bool> {
        let mut l = Lifecycle::default();
        steps
            .iter()
            .map(|&(s, ms)| l.admit(s, Timestamp(ms)))
            .collect()
    }

    #[test]
    fn a_stop_posts_its_first_line_only() {
        // `Received SIGTERM`, `Quitting: signal.`, `Goodbye`.
        let posted = run(&[(Stage::Stop, 0), (Stage::Stop, 0), (Stage::Stop, 500)]);
        assert_eq!(posted, [true, false, false]);
    }

    #[test]
    fn a_crash_record_stands_for_the_crash_lines_after_it() {
        // 0.16: `Exception at tick …` record, `MultiplayerManager failed`, state to(Failed).
        let posted = run(&[
            (Stage::CrashRecord, 0),
            (Stage::Crash, 2),
            (Stage::Crash, 2),
            (Stage::Stop, 1_200),
        ]);
        assert_eq!(posted, [true, false, false, false]);
    }

    #[test]
    fn a_crash_without_a_record_or_long_after_one_is_posted_once() {
        let posted = run(&[
            (Stage::CrashRecord, 0),
            (Stage::Crash, CRASH_RECORD_WINDOW_MS + 1),
            (Stage::Crash, CRASH_RECORD_WINDOW_MS + 2),
        ]);
        assert_eq!(posted, [true, true, false]);
        // A crash while stopping is still news.
        assert_eq!(run(&[(Stage::Stop, 0), (Stage::Crash, 10)]), [true, true]);
    }
}
