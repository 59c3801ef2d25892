//! The Prometheus metrics of factorio-isr, named as in DESIGN's contract (`factorio_isr_*`).
//!
//! [`Metrics::new`] registers every family in one registry; the stages get clones of the
//! handles they update ([`LogstashMetrics`], [`DiscordMetrics`]). Handles are atomics behind
//! an `Arc`, so a clone is cheap and updating one never blocks. A handle made with `default()`
//! is registered nowhere: it counts, and nobody reads it (tests, `replay`).
//!
//! Label values are server tags, event types, component and webhook names from the config,
//! and fixed words (reasons, results): never a player name, never a webhook URL.
//!
//! Every series whose labels are known at start is created at 0 where its component is built
//! ([`ErrorCounter::register`], [`PipelineMetrics::register_events`], each component's
//! `internal_events`), so `rate()` and alerts see it from the first scrape.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// `{component}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    /// `tailer`, `logstash`, `discord.<webhook>`, `patterns`…
    pub component: String,
}

/// `{webhook}`: the webhook's name in the config.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// The webhook's name.
    pub webhook: String,
}

/// `{webhook, scope}` of a rate limit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    /// The webhook's name.
    pub webhook: String,
    /// `bucket` (the webhook's own limit) or `global` (Discord's limit for this address).
    pub scope: String,
}

/// `{reason}` of a dropped Discord event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `queue_full`, `webhook_disabled`, `rejected` (a 4xx other than 429), `retries_exhausted`,
    /// `redirected` (a 3xx, never followed), `too_old`, `no_webhook`, `shutdown`.
    pub reason: String,
}

/// `{webhook, status}` of a Discord request: the HTTP status, or `error` without a response.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The webhook's name.
    pub webhook: String,
    /// `200`, `429`, `404`… or `error`.
    pub status: String,
}

/// `{result}` of a pattern reload.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `reloaded` or `failed`.
    pub result: String,
}

/// The `result` label of `pattern_reloads_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReloadResult {
    /// The changed files loaded and the new set is running.
    Reloaded,
    /// The changed files do not load; the previous set keeps running.
    Failed,
}

impl ReloadResult {
    /// Every value, for registering the label sets up front.
    pub const ALL: &'static [ReloadResult] = &[ReloadResult::Reloaded, ReloadResult::Failed];

    /// The label value: `reloaded` or `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Reloaded => "reloaded",
            ReloadResult::Failed => "failed",
        }
    }
}

/// What pattern hot reload updates.
#[derive(Clone, Debug, Default)]
pub struct ReloadMetrics {
    /// Reloads by result.
    pub reloads: Family<ResultLabels, Counter>,
    /// Errors by component and type.
    pub errors: ErrorCounter,
}

impl ReloadMetrics {
    /// Counts one reload with `result` (a failed reload's error is counted by the caller).
    pub fn count(&self, result: ReloadResult) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.as_str().to_owned(),
            })
            .inc();
    }
}

/// `{server}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    /// The server's tag.
    pub server: String,
}

/// `{server, event_type}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The server's tag.
    pub server: String,
    /// The event type (`log` for unmatched records).
    pub event_type: String,
}

/// `{component, error_type}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `tailer`, `checkpoint`, `logstash`, `discord`, `patterns`.
    pub component: String,
    /// A fixed word: `read`, `save`, `connect`, `connection_lost`, `http_5xx`, `reload`…
    pub error_type: String,
}

/// `{stage}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// `tail` (reading), `frame` (lines and records), `match`, `route`, `sink`.
    pub stage: String,
}

/// A stage of the data path, the `stage` label of `processing_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Reading a chunk of a file.
    Tail,
    /// Cutting it into lines and records.
    Frame,
    /// Matching records to patterns.
    Match,
    /// Handing a batch's events to the sinks.
    Route,
    /// Flushing the reliable sinks.
    Sink,
}

impl Stage {
    /// Every stage, in data-path order.
    pub const ALL: &'static [Stage] = &[
        Stage::Tail,
        Stage::Frame,
        Stage::Match,
        Stage::Route,
        Stage::Sink,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Tail => "tail",
            Stage::Frame => "frame",
            Stage::Match => "match",
            Stage::Route => "route",
            Stage::Sink => "sink",
        }
    }
}

/// `{sink}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// `logstash` or `stdout`.
    pub sink: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The exemplar label of a latency observation: the trace of the batch it measured.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TraceLabel {
    /// 32 hex digits.
    pub trace_id: String,
}

/// A latency histogram whose buckets keep the trace id of a recent observation.
pub type LatencyHistogram = HistogramWithExemplars<TraceLabel>;

/// The delivery SLO's threshold: events delivered within this many seconds are good
/// (`deploy/prometheus/slo.yml` reads the `le="5"` bucket of `event_latency_seconds`).
pub const DELIVERY_SLO_SECONDS: f64 = 5.0;

/// 1 ms to about 16 s, doubling, plus the delivery SLO's threshold.
fn latency_with_exemplars() -> LatencyHistogram {
    let mut buckets: Vec<f64> = exponential_buckets(0.001, 2.0, 15).collect();
    buckets.push(DELIVERY_SLO_SECONDS);
    buckets.sort_by(f64::total_cmp);
    HistogramWithExemplars::new(buckets.into_iter())
}

/// Stage time buckets: 10 µs to about 5 s.
fn stage_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 2.5, 15))
}

/// Errors by component and type.
#[derive(Clone, Debug, Default)]
pub struct ErrorCounter {
    errors: Family<ErrorLabels, Counter>,
}

/// A kind of error a component counts in `factorio_isr_errors_total{component,error_type}`.
///
/// Each component declares its errors as an enum implementing this (in its `internal_events`
/// module), so label values are fixed words written once, and every label set can be
/// registered at 0 from the start ([`ErrorKind::ALL`]).
pub trait ErrorKind: Copy + 'static {
    /// Every value, for registering the label sets up front.
    const ALL: &'static [Self];
    /// The `component` label: `tailer`, `checkpoint`, `logstash`, `discord`, `patterns`…
    fn component(self) -> &'static str;
    /// The `error_type` label: a fixed word such as `read`, `save`, `connect`.
    fn error_type(self) -> &'static str;
}

impl ErrorCounter {
    /// Counts one error of kind `kind`.
    pub fn record(&self, kind: impl ErrorKind) {
        self.count(kind.component(), kind.error_type());
    }

    /// Registers every label set of `K` at 0, so `rate()` and alerts see the series before
    /// the first error.
    pub fn register<K: ErrorKind>(&self) {
        for k in K::ALL {
            let _ = self.errors.get_or_create(&ErrorLabels {
                component: k.component().to_owned(),
                error_type: k.error_type().to_owned(),
            });
        }
    }

    /// Counts one error.
    fn count(&self, component: &str, error_type: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                component: component.to_owned(),
                error_type: error_type.to_owned(),
            })
            .inc();
    }
}

/// What the pipeline's stages update, once per chunk or batch.
#[derive(Clone, Debug)]
pub struct PipelineMetrics {
    /// Lines read, per server.
    pub lines_read: Family<ServerLabels, Counter>,
    /// Bytes read, per server.
    pub bytes_read: Family<ServerLabels, Counter>,
    /// Events handed to the sinks, per server and type.
    pub events_processed: Family<EventLabels, Counter>,
    /// Errors by component and type.
    pub errors: ErrorCounter,
    /// The process's soft open-file limit (`RLIMIT_NOFILE`) after raising it at start.
    pub open_files_limit: Gauge,
    /// Log files the tailer holds open.
    pub tail_files_open: Gauge,
    /// The most log files the tailer holds open at once: the open-file limit less the reserve.
    pub tail_files_max: Gauge,
    stages: HistogramFamily<StageLabels>,
    latency: Family<SinkLabels, LatencyHistogram, fn() -> LatencyHistogram>,
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        PipelineMetrics {
            lines_read: Family::default(),
            bytes_read: Family::default(),
            events_processed: Family::default(),
            errors: ErrorCounter::default(),
            open_files_limit: Gauge::default(),
            tail_files_open: Gauge::default(),
            tail_files_max: Gauge::default(),
            stages: Family::new_with_constructor(stage_histogram),
            latency: Family::new_with_constructor(latency_with_exemplars),
        }
    }
}

impl PipelineMetrics {
    /// The time histogram of `stage`.
    pub fn stage(&self, stage: Stage) -> Histogram {
        self.stages
            .get_or_create(&StageLabels {
                stage: stage.as_str().to_owned(),
            })
            .clone()
    }

    /// Registers `events_processed_total` at 0 for every server of `servers` and every type
    /// of `event_types`, so the series show from the first scrape.
    pub fn register_events<'a>(
        &self,
        servers: &[&str],
        event_types: impl IntoIterator<Item = &'a str>,
    ) {
        for event_type in event_types {
            for server in servers {
                let _ = self.events_processed.get_or_create(&EventLabels {
                    server: (*server).to_owned(),
                    event_type: event_type.to_owned(),
                });
            }
        }
    }

    /// The read-to-delivered latency histogram of `sink`.
    pub fn latency(&self, sink: &str) -> LatencyHistogram {
        self.latency
            .get_or_create(&SinkLabels {
                sink: sink.to_owned(),
            })
            .clone()
    }
}

/// What the Logstash sink updates.
#[derive(Clone, Debug, Default)]
pub struct LogstashMetrics {
    /// 1 while connected, on a connection that passed its probation.
    pub connected: Gauge,
    /// Connections made after the first.
    pub reconnects: Counter,
    /// Connection attempts that failed.
    pub connect_failures: Counter,
    /// Events written to the socket (a batch written again after a failed write counts once).
    pub events_sent: Counter,
    /// Events written again that may have reached Logstash before: an upper bound of
    /// duplicates.
    pub events_resent: Counter,
    /// When the write in progress started (milliseconds since the Unix epoch), 0 when no
    /// write is in progress: how `/ready` tells a Logstash that stopped reading.
    pub write_started_unix_ms: Arc<AtomicU64>,
    /// Errors by component and type.
    pub errors: ErrorCounter,
    /// What only the beats protocol updates.
    pub beats: BeatsMetrics,
}

/// What the Logstash sink updates when it speaks the beats protocol.
#[derive(Clone, Debug)]
pub struct BeatsMetrics {
    /// Events Logstash acknowledged.
    pub events_acked: Counter,
    /// Windows sent again on a new connection because theirs failed or went silent before
    /// they were wholly acknowledged.
    pub windows_resent: Counter,
    /// Seconds from sending a window to its last acknowledgement.
    pub ack_latency_seconds: Histogram,
    /// Since when (milliseconds since the Unix epoch) Logstash has sent nothing while a
    /// window waits for its acknowledgement, 0 when none waits: how `/ready` tells a Logstash
    /// that accepts but does not acknowledge.
    pub ack_wait_since_unix_ms: Arc<AtomicU64>,
}

impl Default for BeatsMetrics {
    fn default() -> Self {
        BeatsMetrics {
            events_acked: Counter::default(),
            windows_resent: Counter::default(),
            ack_latency_seconds: latency_histogram(),
            ack_wait_since_unix_ms: Arc::default(),
        }
    }
}

/// What the Discord sink updates.
#[derive(Clone, Debug)]
pub struct DiscordMetrics {
    /// Seconds from sending a request to its response.
    pub api_latency_seconds: Histogram,
    /// Requests by webhook and status.
    pub requests: Family<RequestLabels, Counter>,
    /// 429 answers and waits announced by `X-RateLimit-Remaining: 0`.
    pub rate_limited: Family<RateLimitLabels, Counter>,
    /// Events not delivered, by reason.
    pub dropped: Family<ReasonLabels, Counter>,
    /// Events delivered.
    pub events_sent: Family<WebhookLabels, Counter>,
    /// Events waiting in the webhook's queue.
    pub queued: Family<WebhookLabels, Gauge>,
    /// Errors by component and type.
    pub errors: ErrorCounter,
}

impl Default for DiscordMetrics {
    fn default() -> Self {
        DiscordMetrics {
            api_latency_seconds: latency_histogram(),
            requests: Family::default(),
            rate_limited: Family::default(),
            dropped: Family::default(),
            events_sent: Family::default(),
            queued: Family::default(),
            errors: ErrorCounter::default(),
        }
    }
}

impl DiscordMetrics {
    /// Counts `n` events dropped for `reason`.
    pub fn drop_events(&self, reason: &str, n: u64) {
        self.dropped
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc_by(n);
    }
}

/// `{status}` of an Alertmanager notification.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertStatusLabels {
    /// `firing` or `resolved`: the notification's (its group's) status.
    pub status: String,
}

/// The Alertmanager receiver's handles (`POST /alertmanager`).
#[derive(Clone, Debug, Default)]
pub struct AlertmanagerMetrics {
    /// `alertmanager_notifications_total{status}`: notifications taken (queued for Discord).
    pub notifications: Family<AlertStatusLabels, Counter>,
    /// `alertmanager_alerts_posted_total`: alerts of those notifications queued for Discord.
    pub alerts_posted: Counter,
    /// `alertmanager_requests_rejected_total{reason}`: requests refused: `unauthorized`,
    /// `too_large`, `bad_request`, `queue_full`, `webhook_disabled`, `stopping`.
    pub rejected: Family<ReasonLabels, Counter>,
}

/// `{result}` of a Loki push or an OTLP logs export.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushResultLabels {
    /// `ok`, or why it failed: `rate_limited`, `server_error`, `unreachable`, `timeout`,
    /// `refused` (authentication, authorisation, wrong path), `rejected` (a bad batch).
    pub result: String,
}

/// What a sink that pushes batches in requests updates (Loki, OTLP logs): registered under
/// its own prefix (`loki_`, `otlp_logs_`).
#[derive(Clone, Debug)]
pub struct PushMetrics {
    /// Requests by result.
    pub requests: Family<PushResultLabels, Counter>,
    /// Events the receiver accepted.
    pub events_sent: Counter,
    /// Events the receiver refused for good (a 4xx for the batch, a partial success that
    /// names them): dropped, not sent again.
    pub events_rejected: Counter,
    /// Seconds from sending a request to its answer.
    pub request_latency_seconds: Histogram,
    /// Errors by component and type.
    pub errors: ErrorCounter,
}

impl Default for PushMetrics {
    fn default() -> Self {
        PushMetrics {
            requests: Family::default(),
            events_sent: Counter::default(),
            events_rejected: Counter::default(),
            request_latency_seconds: latency_histogram(),
            errors: ErrorCounter::default(),
        }
    }
}

impl PushMetrics {
    /// Counts one request with `result`.
    pub fn request(&self, result: &str) {
        self.requests
            .get_or_create(&PushResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// Registers the metrics under `prefix` (`loki`, `otlp_logs`) in `registry`; `what` names
    /// the receiver in the help texts.
    fn register(&self, registry: &mut Registry, prefix: &str, what: &str) {
        registry.register(
            format!("{prefix}_requests"),
            format!("Requests to {what} by result"),
            self.requests.clone(),
        );
        registry.register(
            format!("{prefix}_events_sent"),
            format!("Events {what} accepted"),
            self.events_sent.clone(),
        );
        registry.register(
            format!("{prefix}_events_rejected"),
            format!("Events {what} refused for good (a bad batch): dropped, counted, logged"),
            self.events_rejected.clone(),
        );
        registry.register(
            format!("{prefix}_request_latency_seconds"),
            format!("Seconds from a request to {what} to its answer"),
            self.request_latency_seconds.clone(),
        );
    }
}

/// Latency buckets from 1 ms to about 16 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric, in one registry.
pub struct Metrics {
    registry: Registry,
    started: Instant,
    uptime_seconds: Gauge<f64, AtomicU64>,
    /// 1 healthy / 0 not, per component.
    pub component_status: Family<ComponentLabels, Gauge<i64, AtomicI64>>,
    /// The Logstash sink's handles.
    pub logstash: LogstashMetrics,
    /// The Discord sink's handles.
    pub discord: DiscordMetrics,
    /// The Alertmanager receiver's handles.
    pub alertmanager: AlertmanagerMetrics,
    /// Pattern reload's handles.
    pub reload: ReloadMetrics,
    /// The Loki sink's handles.
    pub loki: PushMetrics,
    /// The OTLP logs sink's handles.
    pub otlp_logs: PushMetrics,
    /// The stages' handles.
    pub pipeline: PipelineMetrics,
    /// The RCON pollers' handles.
    pub rcon: RconMetrics,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("factorio_isr");
        let uptime_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "uptime_seconds",
            "Seconds since factorio-isr started",
            uptime_seconds.clone(),
        );
        let component_status = Family::<ComponentLabels, Gauge>::default();
        registry.register(
            "component_status",
            "1 when the component is healthy, 0 when not",
            component_status.clone(),
        );
        let errors = ErrorCounter::default();
        let logstash = LogstashMetrics {
            errors: errors.clone(),
            ..LogstashMetrics::default()
        };
        registry.register(
            "logstash_connected",
            "1 while connected to Logstash on a connection that passed its probation",
            logstash.connected.clone(),
        );
        registry.register(
            "logstash_reconnects",
            "Connections to Logstash made again after the first",
            logstash.reconnects.clone(),
        );
        registry.register(
            "logstash_connect_failures",
            "Connection attempts to Logstash that failed",
            logstash.connect_failures.clone(),
        );
        registry.register(
            "logstash_events_sent",
            "Events written to the Logstash connection",
            logstash.events_sent.clone(),
        );
        registry.register(
            "logstash_events_resent",
            "Events written again that may have reached Logstash before: an upper bound of duplicates",
            logstash.events_resent.clone(),
        );
        registry.register(
            "logstash_events_acked",
            "Events Logstash acknowledged (beats protocol)",
            logstash.beats.events_acked.clone(),
        );
        registry.register(
            "logstash_windows_resent",
            "Windows sent again on a new connection before Logstash acknowledged them wholly (beats protocol)",
            logstash.beats.windows_resent.clone(),
        );
        registry.register(
            "logstash_ack_latency_seconds",
            "Seconds from sending a window to Logstash until its last acknowledgement (beats protocol)",
            logstash.beats.ack_latency_seconds.clone(),
        );
        let discord = DiscordMetrics {
            errors: errors.clone(),
            ..DiscordMetrics::default()
        };
        registry.register(
            "discord_api_latency_seconds",
            "Seconds from a Discord request to its response",
            discord.api_latency_seconds.clone(),
        );
        registry.register(
            "discord_requests",
            "Discord webhook requests by HTTP status",
            discord.requests.clone(),
        );
        registry.register(
            "discord_rate_limited",
            "Times Discord's rate limit made a webhook wait",
            discord.rate_limited.clone(),
        );
        registry.register(
            "discord_dropped",
            "Events not delivered to Discord, by reason",
            discord.dropped.clone(),
        );
        registry.register(
            "discord_events_sent",
            "Events delivered to Discord",
            discord.events_sent.clone(),
        );
        registry.register(
            "discord_queued_events",
            "Events waiting in a webhook's queue",
            discord.queued.clone(),
        );
        let alertmanager = AlertmanagerMetrics::default();
        registry.register(
            "alertmanager_notifications",
            "Alertmanager notifications taken and queued for Discord, by status",
            alertmanager.notifications.clone(),
        );
        registry.register(
            "alertmanager_alerts_posted",
            "Alerts from Alertmanager queued for Discord",
            alertmanager.alerts_posted.clone(),
        );
        registry.register(
            "alertmanager_requests_rejected",
            "Requests to POST /alertmanager refused, by reason",
            alertmanager.rejected.clone(),
        );
        let reload = ReloadMetrics {
            errors: errors.clone(),
            ..ReloadMetrics::default()
        };
        registry.register(
            "pattern_reloads",
            "Pattern directory reloads by result",
            reload.reloads.clone(),
        );
        let loki = PushMetrics {
            errors: errors.clone(),
            ..PushMetrics::default()
        };
        loki.register(&mut registry, "loki", "Loki");
        let otlp_logs = PushMetrics {
            errors: errors.clone(),
            ..PushMetrics::default()
        };
        otlp_logs.register(&mut registry, "otlp_logs", "the OTLP logs receiver");
        let pipeline = PipelineMetrics {
            errors,
            ..PipelineMetrics::default()
        };
        registry.register(
            "lines_read",
            "Lines read from log files",
            pipeline.lines_read.clone(),
        );
        registry.register(
            "bytes_read",
            "Bytes read from log files",
            pipeline.bytes_read.clone(),
        );
        registry.register(
            "events_processed",
            "Events handed to the sinks, by server and event type",
            pipeline.events_processed.clone(),
        );
        registry.register(
            "errors",
            "Errors by component and type",
            pipeline.errors.errors.clone(),
        );
        registry.register(
            "open_files_limit",
            "The process's open-file limit (soft RLIMIT_NOFILE, raised to the hard limit at start)",
            pipeline.open_files_limit.clone(),
        );
        registry.register(
            "tail_files_open",
            "Log files the tailer holds open",
            pipeline.tail_files_open.clone(),
        );
        registry.register(
            "tail_files_max",
            "The most log files the tailer holds open at once: the open-file limit less tail.reserved_open_files",
            pipeline.tail_files_max.clone(),
        );
        registry.register(
            "processing_seconds",
            "Seconds each pipeline stage spent on one chunk or batch",
            pipeline.stages.clone(),
        );
        registry.register(
            "event_latency_seconds",
            "Seconds from reading a batch of lines to its sink taking it",
            pipeline.latency.clone(),
        );
        // Every stage shows from the first scrape, before it has work.
        for stage in Stage::ALL {
            pipeline.stage(*stage);
        }
        let rcon = RconMetrics::default();
        rcon.register(&mut registry);
        Metrics {
            pipeline,
            rcon,
            reload,
            registry,
            started: Instant::now(),
            uptime_seconds,
            component_status,
            logstash,
            discord,
            alertmanager,
            loki,
            otlp_logs,
        }
    }

    /// The OpenMetrics text of every metric, as `/metrics` serves it.
    pub fn encode(&self) -> String {
        self.uptime_seconds
            .set(self.started.elapsed().as_secs_f64());
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// `{server, command}` of an RCON command.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RconCommandLabels {
    /// The server tag.
    pub server: String,
    /// A fixed word: `players`, `tick`, `version`.
    pub command: String,
}

/// `{server, error_type}` of an RCON error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RconErrorLabels {
    /// The server tag.
    pub server: String,
    /// A fixed word: `connect`, `auth`, `timeout`, `connection_lost`, `protocol`,
    /// `unexpected_answer`.
    pub error_type: String,
}

/// `{server, version}` of `server_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerInfoLabels {
    /// The server tag.
    pub server: String,
    /// Factorio's version as `/version` answers it (`2.0.28`).
    pub version: String,
}

/// What the RCON pollers update, per server.
#[derive(Clone, Debug)]
pub struct RconMetrics {
    /// 1 while connected and authenticated.
    pub connected: Family<ServerLabels, Gauge>,
    /// Seconds from sending a command to its whole answer.
    pub command_latency_seconds: Family<RconCommandLabels, Histogram, fn() -> Histogram>,
    /// Failures by type.
    pub errors: Family<RconErrorLabels, Counter>,
    /// Players `/players online` lists.
    pub players_online: Family<ServerLabels, Gauge>,
    /// Game ticks per wall-clock second between two polls (`[rcon] ups = true`).
    pub game_ups: Family<ServerLabels, Gauge<f64, AtomicU64>>,
    /// 1 for the version the server's `/version` answered.
    pub server_info: Family<ServerInfoLabels, Gauge>,
}

impl Default for RconMetrics {
    fn default() -> Self {
        RconMetrics {
            connected: Family::default(),
            command_latency_seconds: Family::new_with_constructor(latency_histogram),
            errors: Family::default(),
            players_online: Family::default(),
            game_ups: Family::default(),
            server_info: Family::default(),
        }
    }
}

impl RconMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "rcon_connected",
            "1 while the RCON connection to the server is up and authenticated",
            self.connected.clone(),
        );
        registry.register(
            "rcon_command_latency_seconds",
            "Seconds from sending an RCON command to its whole answer",
            self.command_latency_seconds.clone(),
        );
        registry.register("rcon_errors", "RCON failures by type", self.errors.clone());
        registry.register(
            "players_online",
            "Players online by the server's /players online",
            self.players_online.clone(),
        );
        registry.register(
            "game_ups",
            "Game updates (ticks) per second between two RCON polls",
            self.game_ups.clone(),
        );
        registry.register(
            "server_info",
            "1 for the Factorio version the server answers /version with",
            self.server_info.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        let m = Metrics::new();
        m.logstash.events_resent.inc_by(3);
        m.discord.drop_events("queue_full", 2);
        m.component_status
            .get_or_create(&ComponentLabels {
                component: "logstash".into(),
            })
            .set(1);
        let text = m.encode();
        for want in [
            "factorio_isr_uptime_seconds ",
            "factorio_isr_logstash_connected 0",
            "factorio_isr_logstash_reconnects_total 0",
            "factorio_isr_logstash_events_resent_total 3",
            "factorio_isr_discord_dropped_total{reason=\"queue_full\"} 2",
            "factorio_isr_component_status{component=\"logstash\"} 1",
            "factorio_isr_discord_api_latency_seconds_bucket{le=\"0.001\"} 0",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    /// Issue 15: the delivery SLO counts batches taken within 5 s, so the event latency
    /// histogram has a bucket there (`deploy/prometheus/slo.yml` selects `le="5.0"`, or `"5"` as Prometheus 3 writes it).
    #[test]
    fn event_latency_has_the_delivery_slo_bucket() {
        let m = Metrics::new();
        let h = m.pipeline.latency("logstash");
        h.observe(4.5, None, None);
        h.observe(6.0, None, None);
        let text = m.encode();
        for want in [
            "factorio_isr_event_latency_seconds_bucket{le=\"4.096\",sink=\"logstash\"} 0",
            "factorio_isr_event_latency_seconds_bucket{le=\"5.0\",sink=\"logstash\"} 1",
            "factorio_isr_event_latency_seconds_bucket{le=\"8.192\",sink=\"logstash\"} 2",
        ] {
            assert!(text.contains(want), "{want} missing from\n{text}");
        }
    }
}
