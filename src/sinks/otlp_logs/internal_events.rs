//! What the OTLP logs sink counts: its errors in `errors_total{component="otlp_logs"}`, one
//! `error_type` per [`PushFailure`]. Logging, `otlp_logs_requests_total{result}`,
//! `otlp_logs_events_sent_total`, `otlp_logs_events_rejected_total`,
//! `otlp_logs_request_latency_seconds` and the `otlp_logs` component of `/ready` are reported
//! where every pushing sink reports them, in [`crate::sinks::push`].
//!
//! How it fails: it does not; counting never blocks or returns an error.

use crate::sinks::push::PushFailure;
use crate::telemetry::metrics::ErrorKind;

/// The errors the OTLP logs sink counts in `errors_total` (component `otlp_logs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OtlpLogsErrorKind(pub PushFailure);

impl ErrorKind for OtlpLogsErrorKind {
    const ALL: &'static [Self] = &[
        OtlpLogsErrorKind(PushFailure::RateLimited),
        OtlpLogsErrorKind(PushFailure::ServerError),
        OtlpLogsErrorKind(PushFailure::Unreachable),
        OtlpLogsErrorKind(PushFailure::Timeout),
        OtlpLogsErrorKind(PushFailure::Refused),
        OtlpLogsErrorKind(PushFailure::Rejected),
    ];

    fn component(self) -> &'static str {
        "otlp_logs"
    }

    fn error_type(self) -> &'static str {
        self.0.as_str()
    }
}
