//! The Loki sink: every event pushed to Loki's `POST /loki/api/v1/push` as Promtail pushes
//! (protobuf, snappy-compressed), so Grafana finds it with `{service="factorio-isr"} | json`.
//!
//! What Loki gets:
//!
//! - Stream labels from a small, bounded set: `service` (the service name), `server` (the
//!   server tag), `event_type` and `severity`. Never a player, never free text: each label
//!   set is a stream in Loki, and a stream per player would ruin its index.
//! - The line: the event's JSON, exactly what Logstash and stdout get.
//! - The time: the event's `@timestamp`; each stream's entries of a batch in time order (one
//!   ordered stream per label set per request), so Loki never sees a stream go backwards
//!   within a batch.
//! - `trace_id` of the batch as structured metadata (`structured_metadata = false` for Loki
//!   versions that refuse it).
//! - The tenant in `X-Scope-OrgID`; basic authentication or a bearer token read from a file
//!   at start; TLS with rustls for an `https` URL (the system's trust store, or `ca_file`).
//!
//! How it fails: a batch is delivered once Loki answered 2xx, and only then does `flush`
//! return and the checkpoint move. Rate limits, server errors, timeouts and an unreachable
//! Loki are retried with backoff, honouring `Retry-After`; credentials Loki refuses are retried
//! slowly; a batch Loki rejects for good (another 4xx) is dropped, logged with Loki's reason
//! and counted. See [`crate::sinks::push`] for the details, and `/ready` for the state.

mod config;
mod internal_events;
pub mod proto;
mod sink;

pub use self::config::{
    Credentials, LokiConfig, LokiError, PUSH_PATH, check_url, default_backoff_initial_ms,
    default_backoff_max_ms, default_request_timeout_ms, push_url,
};
pub use self::internal_events::LokiErrorKind;
pub use self::sink::LokiSink;
