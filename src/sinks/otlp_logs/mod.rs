//! The OTLP logs sink: every event as an OpenTelemetry `LogRecord`, exported over gRPC to an
//! OpenTelemetry Collector (or any OTLP receiver), for teams whose logs go through one.
//!
//! Each event becomes one record:
//!
//! - `time_unix_nano`: the event's `@timestamp`; `observed_time_unix_nano`: when the sink
//!   took it (moments after it was read);
//! - `severity_number` / `severity_text` from the event's severity (debug 5, info 9,
//!   warning 13, error 17, critical 21 = FATAL);
//! - `body`: the message; `event_name`: the event type;
//! - attributes: `event.type`, `server`, `pattern` (matched events), every typed field as
//!   `factorio.<field>` (integers, floats and booleans keep their type), `log.file.path`,
//!   `log.offset`;
//! - `trace_id` / `span_id` of the batch that carried it, when traced;
//! - one resource per export with the service attributes (`service.name`, `service.version`,
//!   `deployment.environment`), one scope `factorio-isr`.
//!
//! How it fails: a batch is delivered once the export returned OK, and only then does `flush`
//! return and the checkpoint move. A receiver that is away, overloaded (`UNAVAILABLE`,
//! `RESOURCE_EXHAUSTED`) or slow is retried with backoff; one that refuses factorio-isr
//! (`UNAUTHENTICATED`, `PERMISSION_DENIED`, `UNIMPLEMENTED`) is retried slowly and shown in
//! `/ready`; one that refuses the batch for good (`INVALID_ARGUMENT` and the other permanent
//! codes), or the records a partial success names, are dropped, logged and counted. See
//! [`crate::sinks::push`].

mod config;
mod internal_events;
mod sink;

pub use self::config::{
    DEFAULT_ENDPOINT, OtlpLogsConfig, OtlpLogsError, check_endpoint, default_backoff_initial_ms,
    default_backoff_max_ms, default_request_timeout_ms,
};
pub use self::internal_events::OtlpLogsErrorKind;
pub use self::sink::OtlpLogsSink;
