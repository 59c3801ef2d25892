//! What the Loki sink counts: its errors in `errors_total{component="loki"}`, one
//! `error_type` per [`PushFailure`]. Logging, `loki_requests_total{result}`,
//! `loki_events_sent_total`, `loki_events_rejected_total`, `loki_request_latency_seconds` and
//! the `loki` component of `/ready` are reported where every pushing sink reports them, in
//! [`crate::sinks::push`].
//!
//! How it fails: it does not; counting never blocks or returns an error.

use crate::sinks::push::PushFailure;
use crate::telemetry::metrics::ErrorKind;

/// The errors the Loki sink counts in `errors_total` (component `loki`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LokiErrorKind(pub PushFailure);

impl ErrorKind for LokiErrorKind {
    const ALL: &'static [Self] = &[
        LokiErrorKind(PushFailure::RateLimited),
        LokiErrorKind(PushFailure::ServerError),
        LokiErrorKind(PushFailure::Unreachable),
        LokiErrorKind(PushFailure::Timeout),
        LokiErrorKind(PushFailure::Refused),
        LokiErrorKind(PushFailure::Rejected),
    ];

    fn component(self) -> &'static str {
        "loki"
    }

    fn error_type(self) -> &'static str {
        self.0.as_str()
    }
}
