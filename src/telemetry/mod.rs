//! How factorio-isr reports on itself.
//!
//! - [`metrics`]: the Prometheus metrics (`factorio_isr_*`), kept in prometheus-client handles
//!   that the stages update once per batch or per connection event, never per line.
//! - [`health`]: the state of every component (tailer, sinks, patterns) behind `/healthz` and
//!   `/ready`.
//! - [`admin`]: the HTTP server for `/metrics`, `/healthz` and `/ready`, on 127.0.0.1 unless
//!   told otherwise, with timeouts and a connection cap so no client can hold it, and its
//!   `[metrics]` section.
//! - [`traces`]: OpenTelemetry spans per batch and stage, exported over OTLP/gRPC.
//! - [`logs`]: factorio-isr's own log lines (JSON or console), carrying the trace id.
//! - [`service`]: the `[service]` section, who is sending.
//!
//! How it fails: an admin address that cannot be bound is an error when `run` starts (naming
//! the address and the flag to change it); once running, nothing here can stop or slow the
//! pipeline: the stages only touch atomics and, on state changes, a short-held lock.

use crate::event::Timestamp;

pub mod admin;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod service;
pub mod traces;

/// Milliseconds since the Unix epoch, at least 1: the signs-of-life atomics use 0 for "never"
/// or "not now".
pub fn now_unix_ms() -> u64 {
    u64::try_from(Timestamp::now().as_millis())
        .unwrap_or(0)
        .max(1)
}
