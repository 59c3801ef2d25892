//! What happens in the Discord sink, each logged and counted in one place.
//!
//! Every occurrence the sink reports is a struct here with an `emit` method that writes its log
//! line (if it has one) and updates its metrics, so a log line and its counter cannot drift
//! apart, and the label values are the fixed words of [`DiscordErrorKind`], [`DropReason`] and
//! [`RateLimitScope`], written once:
//!
//! | Event | Log | Metrics |
//! |-------|-----|---------|
//! | [`RequestFinished`] | — | `discord_requests_total{webhook,status}`, `discord_api_latency_seconds` |
//! | [`RateLimitAnnounced`] | — | `discord_rate_limited_total{scope="bucket"}` |
//! | [`RateLimitHit`] | warn | `discord_rate_limited_total{scope}` |
//! | [`RateLimitWait`] | debug | — |
//! | [`EventsDelivered`] | — | `discord_events_sent_total{webhook}` |
//! | [`WebhookDisabled`] | error | `errors_total{error_type="webhook_disabled"}`, `discord_dropped_total{reason="webhook_disabled"}` |
//! | [`MessageRejected`] | warn | `errors_total{error_type="rejected"}`, `discord_dropped_total{reason="rejected"}` |
//! | [`MessageRedirected`] | warn | `errors_total{error_type="redirected"}`, `discord_dropped_total{reason="redirected"}` |
//! | [`RequestRetried`] | warn | `errors_total{error_type="request_failed"}` |
//! | [`RetriesExhausted`] | warn | `errors_total{error_type="request_failed"}`, `discord_dropped_total{reason="retries_exhausted"}` |
//! | [`EventsDropped`] | — | `discord_dropped_total{reason}` |
//! | [`EventTooOld`] | warn, once per burst ([`TooOldBursts`]) | `discord_dropped_total{reason="too_old"}` |
//! | [`TooOldBurstEnded`] | warn, when the burst had more than one event | — |
//!
//! The log lines keep the target of the worker that used to write them
//! (`factorio_isr::sinks::discord::worker`), so `LOG_LEVEL` filters written for it still apply.
//! No event carries a webhook URL: webhooks are named by their name in the config.
//!
//! How it fails: it does not; emitting only logs and updates atomics.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tracing::{debug, error, warn};

use crate::telemetry::metrics::{
    DiscordMetrics, ErrorKind, RateLimitLabels, RequestLabels, WebhookLabels,
};

/// The target of every log line here: the worker's module, where these lines were first
/// written.
const TARGET: &str = "factorio_isr::sinks::discord::worker";

/// The errors the Discord sink counts in `errors_total{component="discord",error_type}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiscordErrorKind {
    /// Discord answered 404 or 401: the webhook is gone or its token is wrong.
    WebhookDisabled,
    /// Discord refused a message with another 4xx.
    Rejected,
    /// A 5xx answer, a timeout or a broken connection.
    RequestFailed,
    /// The webhook URL answered a redirect (3xx), which is never followed.
    Redirected,
}

impl ErrorKind for DiscordErrorKind {
    const ALL: &'static [Self] = &[
        DiscordErrorKind::WebhookDisabled,
        DiscordErrorKind::Rejected,
        DiscordErrorKind::RequestFailed,
        DiscordErrorKind::Redirected,
    ];

    fn component(self) -> &'static str {
        "discord"
    }

    fn error_type(self) -> &'static str {
        match self {
            DiscordErrorKind::WebhookDisabled => "webhook_disabled",
            DiscordErrorKind::Rejected => "rejected",
            DiscordErrorKind::RequestFailed => "request_failed",
            DiscordErrorKind::Redirected => "redirected",
        }
    }
}

/// Why events were not delivered: the `reason` of `discord_dropped_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// The webhook's queue was full; the oldest least severe event went.
    QueueFull,
    /// The webhook was disabled (Discord answered 404 or 401).
    WebhookDisabled,
    /// Discord refused the message (a 4xx other than 429).
    Rejected,
    /// Every attempt failed (5xx, timeouts, broken connections).
    RetriesExhausted,
    /// The webhook URL answered a redirect (3xx); it is not followed.
    Redirected,
    /// The event was older than `max_event_age_ms` (a backlog read at start).
    TooOld,
    /// The event's webhook is not configured.
    NoWebhook,
    /// factorio-isr stopped before the event could be sent.
    Shutdown,
}

impl DropReason {
    /// Every reason.
    pub const ALL: &'static [DropReason] = &[
        DropReason::QueueFull,
        DropReason::WebhookDisabled,
        DropReason::Rejected,
        DropReason::RetriesExhausted,
        DropReason::Redirected,
        DropReason::TooOld,
        DropReason::NoWebhook,
        DropReason::Shutdown,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::WebhookDisabled => "webhook_disabled",
            DropReason::Rejected => "rejected",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Redirected => "redirected",
            DropReason::TooOld => "too_old",
            DropReason::NoWebhook => "no_webhook",
            DropReason::Shutdown => "shutdown",
        }
    }
}

/// Which rate limit made a webhook wait: the `scope` of `discord_rate_limited_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateLimitScope {
    /// The webhook's own bucket.
    Bucket,
    /// Discord's limit for this address, across every webhook.
    Global,
}

impl RateLimitScope {
    /// Every scope.
    pub const ALL: &'static [RateLimitScope] = &[RateLimitScope::Bucket, RateLimitScope::Global];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitScope::Bucket => "bucket",
            RateLimitScope::Global => "global",
        }
    }
}

/// Registers at 0 every series the sink of `webhooks` can update whose labels are known at
/// start (errors, drop reasons, and per webhook: events sent, queued, rate limits), so
/// `rate()` and alerts see them from the first scrape. Requests by status are created as
/// Discord answers: the statuses are Discord's.
pub fn register<'a>(metrics: &DiscordMetrics, webhooks: impl IntoIterator<Item = &'a str>) {
    metrics.errors.register::<DiscordErrorKind>();
    for reason in DropReason::ALL {
        count_dropped(metrics, *reason, 0);
    }
    for webhook in webhooks {
        let labels = WebhookLabels {
            webhook: webhook.to_owned(),
        };
        let _ = metrics.events_sent.get_or_create(&labels);
        let _ = metrics.queued.get_or_create(&labels);
        for scope in RateLimitScope::ALL {
            let _ = metrics.rate_limited.get_or_create(&RateLimitLabels {
                webhook: webhook.to_owned(),
                scope: scope.as_str().to_owned(),
            });
        }
    }
}

fn count_rate_limited(metrics: &DiscordMetrics, webhook: &str, scope: RateLimitScope) {
    metrics
        .rate_limited
        .get_or_create(&RateLimitLabels {
            webhook: webhook.to_owned(),
            scope: scope.as_str().to_owned(),
        })
        .inc();
}

fn count_dropped(metrics: &DiscordMetrics, reason: DropReason, events: u64) {
    metrics.drop_events(reason.as_str(), events);
}

/// A request ended: with Discord's answer, or without one (`status` `error`).
pub struct RequestFinished<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// The answer's status; `None` when no answer came (timeout, broken connection).
    pub status: Option<StatusCode>,
    /// From sending the request to reading the whole answer.
    pub elapsed: Duration,
}

impl RequestFinished<'_> {
    /// Counts the request by status and, when answered, its latency.
    pub fn emit(self, metrics: &DiscordMetrics) {
        let status = match self.status {
            Some(status) => {
                metrics
                    .api_latency_seconds
                    .observe(self.elapsed.as_secs_f64());
                status.as_str().to_owned()
            }
            None => "error".to_owned(),
        };
        metrics
            .requests
            .get_or_create(&RequestLabels {
                webhook: self.webhook.to_owned(),
                status,
            })
            .inc();
    }
}

/// A delivered message's headers said the bucket is used up (`X-RateLimit-Remaining: 0`): the
/// next request waits for the reset.
pub struct RateLimitAnnounced<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
}

impl RateLimitAnnounced<'_> {
    /// Counts a `bucket` rate limit.
    pub fn emit(self, metrics: &DiscordMetrics) {
        count_rate_limited(metrics, self.webhook, RateLimitScope::Bucket);
    }
}

/// Discord answered 429.
pub struct RateLimitHit<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// How long Discord said to wait.
    pub retry_after: Duration,
    /// Whether the limit is Discord's global one.
    pub global: bool,
}

impl RateLimitHit<'_> {
    /// Logs a warning and counts the rate limit under its scope.
    pub fn emit(self, metrics: &DiscordMetrics) {
        let scope = if self.global {
            RateLimitScope::Global
        } else {
            RateLimitScope::Bucket
        };
        count_rate_limited(metrics, self.webhook, scope);
        warn!(target: TARGET, webhook = %self.webhook, retry_after_ms = self.retry_after.as_millis() as u64, global = self.global, "Discord rate limit hit; waiting.");
    }
}

/// A worker waits for a rate-limit window before its next request.
pub struct RateLimitWait<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// How long it waits.
    pub wait: Duration,
}

impl RateLimitWait<'_> {
    /// Logs at debug level; the limit itself was counted when it was announced or hit.
    pub fn emit(self) {
        debug!(target: TARGET, webhook = %self.webhook, wait_ms = self.wait.as_millis() as u64, "Waiting for Discord's rate limit.");
    }
}

/// Discord took a message.
pub struct EventsDelivered<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// The events the message held.
    pub events: u64,
}

impl EventsDelivered<'_> {
    /// Counts the events sent.
    pub fn emit(self, metrics: &DiscordMetrics) {
        metrics
            .events_sent
            .get_or_create(&WebhookLabels {
                webhook: self.webhook.to_owned(),
            })
            .inc_by(self.events);
    }
}

/// Discord answered 404 or 401: the webhook is disabled until factorio-isr restarts, and its
/// events are dropped.
pub struct WebhookDisabled<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// The answer's status.
    pub status: StatusCode,
    /// Discord's reason.
    pub reason: &'a str,
    /// The events dropped with it: the refused message's and the queued ones.
    pub dropped: u64,
}

impl WebhookDisabled<'_> {
    /// Logs an error, counts a `webhook_disabled` error and the dropped events.
    pub fn emit(self, metrics: &DiscordMetrics) {
        error!(target: TARGET, webhook = %self.webhook, status = self.status.as_u16(), reason = %self.reason, "Discord says this webhook does not exist or its token is wrong; it is disabled until factorio-isr restarts. Check its URL.");
        metrics.errors.record(DiscordErrorKind::WebhookDisabled);
        count_dropped(metrics, DropReason::WebhookDisabled, self.dropped);
    }
}

/// Discord refused a message with a 4xx other than 429, 404 and 401; it is dropped, never
/// retried.
pub struct MessageRejected<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// The answer's status.
    pub status: StatusCode,
    /// Discord's reason.
    pub reason: &'a str,
    /// The events the message held.
    pub dropped: u64,
}

impl MessageRejected<'_> {
    /// Logs a warning, counts a `rejected` error and the dropped events.
    pub fn emit(self, metrics: &DiscordMetrics) {
        warn!(target: TARGET, webhook = %self.webhook, status = self.status.as_u16(), reason = %self.reason, "Discord refused a message; it is dropped.");
        metrics.errors.record(DiscordErrorKind::Rejected);
        count_dropped(metrics, DropReason::Rejected, self.dropped);
    }
}

/// The webhook URL answered a redirect (3xx). Redirects are never followed (the token would
/// go to another address, and the message would be lost on the way), so the message is
/// dropped, not retried: the same URL would answer the same.
pub struct MessageRedirected<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// The answer's status (never its `Location`, which may hold the token).
    pub status: StatusCode,
    /// The events the message held.
    pub dropped: u64,
}

impl MessageRedirected<'_> {
    /// Logs a warning, counts a `redirected` error and the dropped events.
    pub fn emit(self, metrics: &DiscordMetrics) {
        warn!(target: TARGET, webhook = %self.webhook, status = self.status.as_u16(), "The webhook URL answered a redirect, which is not followed; the message is dropped. Check that the URL is Discord's webhook URL (https://discord.com/api/webhooks/ID/TOKEN).");
        metrics.errors.record(DiscordErrorKind::Redirected);
        count_dropped(metrics, DropReason::Redirected, self.dropped);
    }
}

/// A request failed (5xx, timeout, broken connection) and the message will be tried again.
pub struct RequestRetried<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// What went wrong (never the URL).
    pub error: &'a str,
    /// The wait before the next attempt.
    pub retry_in: Duration,
}

impl RequestRetried<'_> {
    /// Counts a `request_failed` error and logs a warning.
    pub fn emit(self, metrics: &DiscordMetrics) {
        metrics.errors.record(DiscordErrorKind::RequestFailed);
        warn!(target: TARGET, webhook = %self.webhook, error = %self.error, retry_in_ms = self.retry_in.as_millis() as u64, "Posting to Discord failed; retrying.");
    }
}

/// A request failed and it was the message's last attempt: the message is dropped.
pub struct RetriesExhausted<'a> {
    /// The webhook's name.
    pub webhook: &'a str,
    /// The attempts made.
    pub attempts: u32,
    /// What went wrong the last time (never the URL).
    pub error: &'a str,
    /// The events the message held.
    pub dropped: u64,
}

impl RetriesExhausted<'_> {
    /// Counts a `request_failed` error, logs a warning and counts the dropped events.
    pub fn emit(self, metrics: &DiscordMetrics) {
        metrics.errors.record(DiscordErrorKind::RequestFailed);
        warn!(target: TARGET, webhook = %self.webhook, attempts = self.attempts, error = %self.error, "Discord kept failing; dropping the message.");
        count_dropped(metrics, DropReason::RetriesExhausted, self.dropped);
    }
}

/// Events dropped without a request: a full queue, a disabled webhook, an old event, a
/// webhook that is not configured, a stop.
pub struct EventsDropped {
    /// Why.
    pub reason: DropReason,
    /// How many.
    pub events: u64,
}

impl EventsDropped {
    /// Counts the dropped events under their reason (nothing is logged: a burst would flood
    /// the log; the counter says it).
    pub fn emit(self, metrics: &DiscordMetrics) {
        count_dropped(metrics, self.reason, self.events);
    }
}

/// While a burst of too-old events goes on, the running count is logged this often.
pub const TOO_OLD_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Events too old for Discord, grouped into bursts so that the log says it once per burst,
/// not once per event. A burst starts with a too-old event (logged at once, with its age) and
/// ends with the next event young enough to send, or at shutdown (then the count of the rest
/// is logged); a burst that goes on logs its running count every [`TOO_OLD_REPORT_INTERVAL`].
#[derive(Debug, Default)]
pub struct TooOldBursts {
    /// When the burst started, or its count was last logged; `None` outside a burst.
    since: Option<Instant>,
    /// Events dropped since then, not logged yet.
    pending: u64,
    /// The oldest and newest age among them.
    oldest_age_ms: i64,
    newest_age_ms: i64,
}

/// What [`TooOldBursts`] says to log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TooOldReport {
    /// The first event of a burst, this old.
    First {
        /// Its age.
        age_ms: i64,
    },
    /// More events of the burst since the last line.
    More {
        /// How many.
        events: u64,
        /// The age of the oldest.
        oldest_age_ms: i64,
        /// The age of the newest.
        newest_age_ms: i64,
    },
}

impl TooOldBursts {
    /// An event `age_ms` old was dropped at `now`: what to log, if anything.
    pub fn dropped(&mut self, age_ms: i64, now: Instant) -> Option<TooOldReport> {
        let Some(since) = self.since else {
            self.since = Some(now);
            return Some(TooOldReport::First { age_ms });
        };
        if self.pending == 0 {
            (self.oldest_age_ms, self.newest_age_ms) = (age_ms, age_ms);
        } else {
            self.oldest_age_ms = self.oldest_age_ms.max(age_ms);
            self.newest_age_ms = self.newest_age_ms.min(age_ms);
        }
        self.pending += 1;
        if now.saturating_duration_since(since) >= TOO_OLD_REPORT_INTERVAL {
            self.since = Some(now);
            return self.take();
        }
        None
    }

    /// An event young enough was sent, or the sink stops: the burst ends; what to log.
    pub fn ended(&mut self) -> Option<TooOldReport> {
        self.since.take()?;
        self.take()
    }

    fn take(&mut self) -> Option<TooOldReport> {
        let events = std::mem::take(&mut self.pending);
        (events > 0).then_some(TooOldReport::More {
            events,
            oldest_age_ms: self.oldest_age_ms,
            newest_age_ms: self.newest_age_ms,
        })
    }
}

fn log_too_old(report: TooOldReport, max_event_age_ms: u64, event: Option<(&str, &str)>) {
    let (server, event_type) = event.unwrap_or_default();
    match report {
        TooOldReport::First { age_ms } => {
            warn!(target: TARGET, age_ms, max_event_age_ms, server, event_type, "An event older than max_event_age_ms was not sent to Discord; the rest of this burst is counted and summed up when it ends. If every event is this old, check `timezone`: factorio-isr reads the dates of a server's logs in that zone.");
        }
        TooOldReport::More {
            events,
            oldest_age_ms,
            newest_age_ms,
        } => {
            warn!(target: TARGET, events, oldest_age_ms, newest_age_ms, max_event_age_ms, "More events older than max_event_age_ms were not sent to Discord.");
        }
    }
}

/// An event older than `max_event_age_ms`, dropped: counted every time, logged once per burst.
pub struct EventTooOld<'a> {
    /// How old it is.
    pub age_ms: i64,
    /// The limit.
    pub max_event_age_ms: u64,
    /// Its server.
    pub server: &'a str,
    /// Its event type.
    pub event_type: &'a str,
}

impl EventTooOld<'_> {
    /// Counts the event and logs it if it opens a burst (or the burst is due a count).
    pub fn emit(self, metrics: &DiscordMetrics, bursts: &mut TooOldBursts, now: Instant) {
        count_dropped(metrics, DropReason::TooOld, 1);
        if let Some(report) = bursts.dropped(self.age_ms, now) {
            log_too_old(
                report,
                self.max_event_age_ms,
                Some((self.server, self.event_type)),
            );
        }
    }
}

/// A burst of too-old events ended (an event young enough came, or the sink stops).
pub struct TooOldBurstEnded {
    /// The limit.
    pub max_event_age_ms: u64,
}

impl TooOldBurstEnded {
    /// Logs the count of the burst's events not logged yet, if any.
    pub fn emit(self, bursts: &mut TooOldBursts) {
        if let Some(report) = bursts.ended() {
            log_too_old(report, self.max_event_age_ms, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::Metrics;

    #[test]
    fn too_old_events_are_reported_once_per_burst() {
        let mut b = TooOldBursts::default();
        let t0 = Instant::now();
        assert_eq!(
            b.dropped(5_000, t0),
            Some(TooOldReport::First { age_ms: 5_000 })
        );
        assert_eq!(b.dropped(7_000, t0), None);
        assert_eq!(b.dropped(6_000, t0 + Duration::from_secs(1)), None);
        // A young event ends the burst: the two not logged yet are summed up.
        assert_eq!(
            b.ended(),
            Some(TooOldReport::More {
                events: 2,
                oldest_age_ms: 7_000,
                newest_age_ms: 6_000
            })
        );
        assert_eq!(b.ended(), None);
        // A burst of one is logged once.
        assert!(matches!(b.dropped(1, t0), Some(TooOldReport::First { .. })));
        assert_eq!(b.ended(), None);
        // A burst that goes on logs its running count every interval.
        b.dropped(9, t0);
        assert_eq!(b.dropped(9, t0 + Duration::from_secs(30)), None);
        assert_eq!(
            b.dropped(8, t0 + TOO_OLD_REPORT_INTERVAL),
            Some(TooOldReport::More {
                events: 2,
                oldest_age_ms: 9,
                newest_age_ms: 8
            })
        );
        assert_eq!(b.ended(), None);
    }

    #[test]
    fn label_values_are_the_fixed_words() {
        let reasons: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "queue_full",
                "webhook_disabled",
                "rejected",
                "retries_exhausted",
                "redirected",
                "too_old",
                "no_webhook",
                "shutdown"
            ]
        );
        let errors: Vec<(&str, &str)> = DiscordErrorKind::ALL
            .iter()
            .map(|k| (k.component(), k.error_type()))
            .collect();
        assert_eq!(
            errors,
            [
                ("discord", "webhook_disabled"),
                ("discord", "rejected"),
                ("discord", "request_failed"),
                ("discord", "redirected")
            ]
        );
        assert_eq!(RateLimitScope::Bucket.as_str(), "bucket");
        assert_eq!(RateLimitScope::Global.as_str(), "global");
    }

    #[test]
    fn every_known_series_is_registered_at_zero() {
        let registry = Metrics::new();
        register(&registry.discord, ["main"]);
        let text = registry.encode();
        for want in [
            r#"factorio_isr_errors_total{component="discord",error_type="request_failed"} 0"#,
            r#"factorio_isr_discord_dropped_total{reason="too_old"} 0"#,
            r#"factorio_isr_discord_dropped_total{reason="shutdown"} 0"#,
            r#"factorio_isr_discord_rate_limited_total{webhook="main",scope="global"} 0"#,
            r#"factorio_isr_discord_events_sent_total{webhook="main"} 0"#,
            r#"factorio_isr_discord_queued_events{webhook="main"} 0"#,
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }

    #[test]
    fn each_event_counts_what_it_says() {
        let registry = Metrics::new();
        let metrics = &registry.discord;
        WebhookDisabled {
            webhook: "main",
            status: StatusCode::NOT_FOUND,
            reason: "10015: Unknown Webhook",
            dropped: 3,
        }
        .emit(metrics);
        MessageRejected {
            webhook: "main",
            status: StatusCode::BAD_REQUEST,
            reason: "50035: Invalid Form Body",
            dropped: 2,
        }
        .emit(metrics);
        RequestRetried {
            webhook: "main",
            error: "HTTP 502",
            retry_in: Duration::from_millis(800),
        }
        .emit(metrics);
        RetriesExhausted {
            webhook: "main",
            attempts: 5,
            error: "HTTP 502",
            dropped: 4,
        }
        .emit(metrics);
        EventsDropped {
            reason: DropReason::TooOld,
            events: 1,
        }
        .emit(metrics);
        RateLimitHit {
            webhook: "main",
            retry_after: Duration::from_millis(1500),
            global: true,
        }
        .emit(metrics);
        RateLimitAnnounced { webhook: "main" }.emit(metrics);
        for status in [Some(StatusCode::OK), None] {
            RequestFinished {
                webhook: "main",
                status,
                elapsed: Duration::from_millis(20),
            }
            .emit(metrics);
        }
        EventsDelivered {
            webhook: "main",
            events: 7,
        }
        .emit(metrics);

        let text = registry.encode();
        for want in [
            r#"factorio_isr_errors_total{component="discord",error_type="webhook_disabled"} 1"#,
            r#"factorio_isr_errors_total{component="discord",error_type="rejected"} 1"#,
            r#"factorio_isr_errors_total{component="discord",error_type="request_failed"} 2"#,
            r#"factorio_isr_discord_dropped_total{reason="webhook_disabled"} 3"#,
            r#"factorio_isr_discord_dropped_total{reason="rejected"} 2"#,
            r#"factorio_isr_discord_dropped_total{reason="retries_exhausted"} 4"#,
            r#"factorio_isr_discord_dropped_total{reason="too_old"} 1"#,
            r#"factorio_isr_discord_rate_limited_total{webhook="main",scope="global"} 1"#,
            r#"factorio_isr_discord_rate_limited_total{webhook="main",scope="bucket"} 1"#,
            r#"factorio_isr_discord_requests_total{webhook="main",status="200"} 1"#,
            r#"factorio_isr_discord_requests_total{webhook="main",status="error"} 1"#,
            r#"factorio_isr_discord_api_latency_seconds_count 1"#,
            r#"factorio_isr_discord_events_sent_total{webhook="main"} 7"#,
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
