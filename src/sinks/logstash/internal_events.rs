//! What the Logstash sink tells its operators: the one place where each thing that happens to
//! the connection is logged, counted and reported to `/ready` together.
//!
//! - [`connected`]: `info`, `logstash_reconnects_total` after the first, the component still
//!   not ready: the connection is on probation.
//! - [`beats_connected`]: as [`connected`], for the beats protocol: the connection counts once
//!   Logstash acknowledges on it.
//! - [`proven`]: `info`, `logstash_connected` 1, the component ready.
//! - [`connect_failed`]: `warn` with the retry wait, `logstash_connect_failures_total`,
//!   `errors_total{component="logstash",error_type="connect"}`, the component not ready with
//!   the reason.
//! - [`connection_lost`]: `warn`, `logstash_connected` 0,
//!   `errors_total{component="logstash",error_type="connection_lost"}`, not ready.
//! - [`lost_on_probation`]: as [`connection_lost`], with the retry wait and the hint that a
//!   proxy without a healthy Logstash behind it does this.
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

/// Connection number `connects` (1 for the first) is up, on probation for `probation`.
pub(super) fn connected(r: &Report<'_>, connects: u64, probation: Duration) {
    if connects > 1 {
        r.metrics.reconnects.inc();
    }
    let probation_ms = probation.as_millis() as u64;
    r.health.not_ready(format!(
        "connected to {}; the connection counts once it has carried data for {probation_ms} ms without being closed",
        r.address
    ));
    info!(address = %r.address, tls = r.tls, probation_ms, "Connected to Logstash; on probation.");
}

/// beats: connection number `connects` is up; it counts once Logstash acknowledges.
pub(super) fn beats_connected(r: &Report<'_>, connects: u64) {
    if connects > 1 {
        r.metrics.reconnects.inc();
    }
    r.health.not_ready(format!(
        "connected to {}; the connection counts once Logstash acknowledges events on it",
        r.address
    ));
    info!(address = %r.address, tls = r.tls, "Connected to Logstash's beats input; waiting for its first acknowledgement.");
}

/// The connection carried its first batch through its probation (beats: Logstash
/// acknowledged events on it): it is healthy.
pub(super) fn proven(r: &Report<'_>) {
    r.metrics.connected.set(1);
    r.health.ready();
    info!(address = %r.address, "The connection to Logstash holds.");
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

/// The connection failed with `why` `after` it was made, before its probation was over; the
/// next attempt is in `retry_in`.
pub(super) fn lost_on_probation(
    r: &Report<'_>,
    why: &io::Error,
    after: Duration,
    retry_in: Duration,
) {
    r.metrics.connected.set(0);
    r.metrics.errors.record(LogstashErrorKind::ConnectionLost);
    r.health.not_ready(format!(
        "{} accepted the connection but it failed {} ms later: {why} (a proxy or load balancer with no healthy Logstash behind it does this)",
        r.address,
        after.as_millis()
    ));
    warn!(
        address = %r.address,
        error = %why,
        after_ms = after.as_millis() as u64,
        retry_in_ms = retry_in.as_millis() as u64,
        "Lost the connection to Logstash before it proved healthy; what it carried is sent again after the backoff."
    );
}
