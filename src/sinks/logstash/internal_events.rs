//! What the Logstash sink tells its operators: the one place where each thing that happens to
//! the connection is logged, counted and reported to `/ready` together.
//!
//! - [`connected`]: `info`, `logstash_connected` 1, `logstash_reconnects_total` after the first,
//!   the component ready.
//! - [`connect_failed`]: `warn` with the retry wait, `logstash_connect_failures_total`,
//!   `errors_total{component="logstash",error_type="connect"}`, the component not ready with
//!   the reason.
//! - [`connection_lost`]: `warn`, `logstash_connected` 0,
//!   `errors_total{component="logstash",error_type="connection_lost"}`, not ready.
//!
//! How it fails: it does not; logging and counting never block or return an error.

use std::io;
use std::time::Duration;

use tracing::{info, warn};

use crate::telemetry::health::Component;
use crate::telemetry::metrics::{ErrorKind, LogstashMetrics};

/// The errors the Logstash sink counts in `errors_total` (component `logstash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogstashErrorKind {
    /// A connection attempt failed (`connect`).
    Connect,
    /// An open connection failed (`connection_lost`).
    ConnectionLost,
}

impl ErrorKind for LogstashErrorKind {
    const ALL: &'static [Self] = &[
        LogstashErrorKind::Connect,
        LogstashErrorKind::ConnectionLost,
    ];

    fn component(self) -> &'static str {
        "logstash"
    }

    fn error_type(self) -> &'static str {
        match self {
            LogstashErrorKind::Connect => "connect",
            LogstashErrorKind::ConnectionLost => "connection_lost",
        }
    }
}

/// Where the events of one sink are reported.
pub(super) struct Report<'a> {
    pub metrics: &'a LogstashMetrics,
    pub health: &'a Component,
    pub address: &'a str,
    pub tls: bool,
}

/// Connection number `connects` (1 for the first) is up.
pub(super) fn connected(r: &Report<'_>, connects: u64) {
    if connects > 1 {
        r.metrics.reconnects.inc();
    }
    r.metrics.connected.set(1);
    r.health.ready();
    info!(address = %r.address, tls = r.tls, "Connected to Logstash.");
}

/// A connection attempt failed with `error`; the next one is in `retry_in`.
pub(super) fn connect_failed(r: &Report<'_>, error: &io::Error, retry_in: Duration) {
    r.metrics.connect_failures.inc();
    r.metrics.errors.record(LogstashErrorKind::Connect);
    r.health
        .not_ready(format!("cannot connect to {}: {error}", r.address));
    warn!(address = %r.address, error = %error, retry_in_ms = retry_in.as_millis() as u64, "Cannot connect to Logstash; retrying.");
}

/// The open connection failed with `why`.
pub(super) fn connection_lost(r: &Report<'_>, why: &io::Error) {
    r.metrics.connected.set(0);
    r.metrics.errors.record(LogstashErrorKind::ConnectionLost);
    r.health
        .not_ready(format!("lost the connection to {}: {why}", r.address));
    warn!(address = %r.address, error = %why, "Lost the connection to Logstash; reconnecting.");
}
