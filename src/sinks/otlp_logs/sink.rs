//! The OTLP logs sink itself: events turned into `LogRecord`s, the export request, and the
//! [`Sink`] calls.
//!
//! How it fails: see [`crate::sinks::push`]; `flush` returns only once the export succeeded
//! or the receiver refused the batch for good, and never returns an error.

use std::io;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use super::config::{OtlpLogsConfig, OtlpLogsError};
use super::internal_events::OtlpLogsErrorKind;
use crate::event::{Event, FieldValue, LOG_EVENT_TYPE, ServiceInfo, Severity, Timestamp};
use crate::sinks::push::{Outcome, PushFailure, Pusher, one_line};
use crate::sinks::{Delivery, Sink};

/// Sends events to an OTLP logs receiver. See the module docs of [`super`].
pub struct OtlpLogsSink {
    exporter: Exporter,
    pusher: Pusher<OtlpLogsErrorKind>,
    resource: Resource,
    forward_unmatched: bool,
    records: Vec<LogRecord>,
}

impl OtlpLogsSink {
    /// A sink exporting to `endpoint` on `runtime`, reported through `pusher`. Nothing
    /// connects until the first export.
    pub(super) fn new(
        config: &OtlpLogsConfig,
        endpoint: String,
        service: &ServiceInfo,
        runtime: tokio::runtime::Handle,
        pusher: Pusher<OtlpLogsErrorKind>,
    ) -> Result<OtlpLogsSink, OtlpLogsError> {
        let bad = |problem: String| OtlpLogsError::Endpoint {
            endpoint: endpoint.clone(),
            problem,
        };
        let timeout = Duration::from_millis(config.request_timeout_ms.max(1));
        let mut channel = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| bad(e.to_string()))?
            .connect_timeout(timeout)
            .timeout(timeout);
        if endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(pem) = config.ca_pem()? {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            channel = channel.tls_config(tls).map_err(|e| bad(e.to_string()))?;
        }
        let channel = {
            let _inside = runtime.enter();
            channel.connect_lazy()
        };
        Ok(OtlpLogsSink {
            exporter: Exporter {
                client: LogsServiceClient::new(channel),
                runtime,
                timeout,
            },
            pusher,
            resource: resource(service),
            forward_unmatched: config.forward_unmatched,
            records: Vec::new(),
        })
    }
}

/// Where exports go and how they are sent.
struct Exporter {
    client: LogsServiceClient<Channel>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl Exporter {
    /// One export of `request`.
    fn export(&self, request: ExportLogsServiceRequest, attempt: u32, events: u64) -> Outcome {
        let span = crate::traced_span!(
            parent: &tracing::Span::current(),
            "otlp_logs.export",
            attempt = attempt,
            events = events,
            status = tracing::field::Empty
        );
        let mut client = self.client.clone();
        let mut request = tonic::Request::new(request);
        request.set_timeout(self.timeout);
        let outcome = self.runtime.block_on(async move {
            match client.export(request).await {
                Ok(response) => accepted(response.into_inner()),
                Err(status) => classify(&status),
            }
        });
        let status = match &outcome {
            Outcome::Accepted { .. } => "ok",
            Outcome::Failed { failure, .. } => failure.as_str(),
        };
        span.record("status", status);
        outcome
    }
}

/// What a successful export's answer means: the records a partial success names are
/// rejected for good (a negative count is none).
fn accepted(response: ExportLogsServiceResponse) -> Outcome {
    let (rejected, detail) = response
        .partial_success
        .map(|p| (p.rejected_log_records.max(0) as u64, p.error_message))
        .unwrap_or_default();
    Outcome::Accepted {
        rejected,
        detail: one_line(&detail, 300),
    }
}

/// What a gRPC error means for the batch.
fn classify(status: &tonic::Status) -> Outcome {
    let from_transport = std::error::Error::source(status).is_some();
    let failure = match status.code() {
        Code::Unavailable if from_transport => PushFailure::Unreachable,
        Code::DeadlineExceeded => PushFailure::Timeout,
        Code::ResourceExhausted => PushFailure::RateLimited,
        Code::Unavailable
        | Code::Cancelled
        | Code::Aborted
        | Code::OutOfRange
        | Code::DataLoss
        | Code::Internal
        | Code::Unknown => PushFailure::ServerError,
        Code::Unauthenticated | Code::PermissionDenied | Code::Unimplemented | Code::NotFound => {
            PushFailure::Refused
        }
        _ => PushFailure::Rejected,
    };
    let mut detail = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    Outcome::Failed {
        failure,
        detail: one_line(&detail, 300),
        retry_after: None,
    }
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// The resource of every export: who is sending.
fn resource(service: &ServiceInfo) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", Value::StringValue(service.name.clone())),
            kv(
                "service.version",
                Value::StringValue(service.version.clone()),
            ),
            kv(
                "deployment.environment",
                Value::StringValue(service.environment.clone()),
            ),
        ],
        ..Resource::default()
    }
}

/// OpenTelemetry's severity number of `severity`.
pub(super) fn severity_number(severity: Severity) -> i32 {
    match severity {
        Severity::Debug => 5,
        Severity::Info => 9,
        Severity::Warning => 13,
        Severity::Error => 17,
        Severity::Critical => 21,
    }
}

fn unix_nanos(t: Timestamp) -> u64 {
    u64::try_from(t.as_millis()).unwrap_or(0) * 1_000_000
}

/// The bytes of a lowercase hex id; empty when it is not hex.
fn hex_bytes(hex: &str) -> Vec<u8> {
    if !hex.len().is_multiple_of(2) {
        return Vec::new();
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .unwrap_or_default()
}

/// The record of `event`, observed at `observed`.
pub(super) fn record(event: &Event, observed: Timestamp) -> LogRecord {
    let mut attributes = Vec::with_capacity(6 + event.fields.len());
    attributes.push(kv(
        "event.type",
        Value::StringValue(event.event_type.to_string()),
    ));
    attributes.push(kv(
        "server",
        Value::StringValue(event.source.server.to_string()),
    ));
    if let Some(p) = event.pattern_name() {
        attributes.push(kv("pattern", Value::StringValue(p.to_owned())));
    }
    for (name, value) in &event.fields {
        let value = match value {
            FieldValue::Str(s) => Value::StringValue(s.clone()),
            FieldValue::Int(v) => Value::IntValue(*v),
            FieldValue::UInt(v) => match i64::try_from(*v) {
                Ok(v) => Value::IntValue(v),
                Err(_) => Value::StringValue(v.to_string()),
            },
            FieldValue::Float(v) => Value::DoubleValue(*v),
            FieldValue::Bool(v) => Value::BoolValue(*v),
        };
        attributes.push(kv(&format!("factorio.{name}"), value));
    }
    attributes.push(kv(
        "log.file.path",
        Value::StringValue(event.source.path.to_string()),
    ));
    attributes.push(kv(
        "log.offset",
        Value::IntValue(i64::try_from(event.offset).unwrap_or(i64::MAX)),
    ));
    let (trace_id, span_id, flags) = match &event.trace {
        Some(t) => (hex_bytes(&t.trace_id), hex_bytes(&t.span_id), 1),
        None => (Vec::new(), Vec::new(), 0),
    };
    LogRecord {
        time_unix_nano: unix_nanos(event.timestamp),
        observed_time_unix_nano: unix_nanos(observed),
        severity_number: severity_number(event.severity),
        severity_text: event.severity.as_str().to_owned(),
        body: Some(AnyValue {
            value: Some(Value::StringValue(event.message().to_owned())),
        }),
        attributes,
        dropped_attributes_count: 0,
        flags,
        trace_id,
        span_id,
        event_name: event.event_type.to_string(),
    }
}

impl Sink for OtlpLogsSink {
    fn name(&self) -> &'static str {
        "otlp_logs"
    }

    fn delivery(&self) -> Delivery {
        Delivery::Reliable
    }

    fn flush_span(&self, parent: &tracing::Span, events: usize) -> tracing::Span {
        crate::traced_span!(parent: parent, "sink.otlp_logs", events = events)
    }

    fn write(&mut self, event: &Event) -> io::Result<()> {
        if !self.forward_unmatched && &*event.event_type == LOG_EVENT_TYPE {
            return Ok(());
        }
        self.records.push(record(event, Timestamp::now()));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.records.is_empty() {
            return Ok(());
        }
        let events = self.records.len() as u64;
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "factorio-isr".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: std::mem::take(&mut self.records),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let exporter = &self.exporter;
        self.pusher
            .deliver(events, |n| exporter.export(request.clone(), n, events));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_decode_from_hex() {
        assert_eq!(hex_bytes("00ff10"), vec![0, 255, 16]);
        assert_eq!(hex_bytes("0"), Vec::<u8>::new());
        assert_eq!(hex_bytes("zz"), Vec::<u8>::new());
    }

    #[test]
    fn a_partial_success_names_the_records_rejected_and_why() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
        let answer = |partial: Option<(i64, &str)>| match accepted(ExportLogsServiceResponse {
            partial_success: partial.map(|(n, why)| ExportLogsPartialSuccess {
                rejected_log_records: n,
                error_message: why.to_owned(),
            }),
        }) {
            Outcome::Accepted { rejected, detail } => (rejected, detail),
            Outcome::Failed { .. } => unreachable!(),
        };
        assert_eq!(answer(None), (0, String::new()));
        assert_eq!(
            answer(Some((3, "3 records\ntoo old"))),
            (3, "3 records too old".to_owned())
        );
        // A warning without rejected records, and a nonsense count, reject nothing.
        assert_eq!(answer(Some((0, "slow down"))).0, 0);
        assert_eq!(answer(Some((-2, ""))).0, 0);
    }

    #[test]
    fn unauthenticated_is_a_refusal_with_the_receivers_reason() {
        match classify(&tonic::Status::unauthenticated("missing api key")) {
            Outcome::Failed {
                failure,
                detail,
                retry_after,
            } => {
                assert_eq!(failure, PushFailure::Refused);
                assert_eq!(detail, "Unauthenticated: missing api key");
                assert_eq!(retry_after, None);
            }
            Outcome::Accepted { .. } => unreachable!(),
        }
    }

    #[test]
    fn grpc_codes_are_classed() {
        let failure = |code| match classify(&tonic::Status::new(code, "x")) {
            Outcome::Failed { failure, .. } => failure,
            Outcome::Accepted { .. } => unreachable!(),
        };
        assert_eq!(failure(Code::Unavailable), PushFailure::ServerError);
        assert_eq!(failure(Code::ResourceExhausted), PushFailure::RateLimited);
        assert_eq!(failure(Code::DeadlineExceeded), PushFailure::Timeout);
        assert_eq!(failure(Code::Unauthenticated), PushFailure::Refused);
        assert_eq!(failure(Code::InvalidArgument), PushFailure::Rejected);
    }
}
