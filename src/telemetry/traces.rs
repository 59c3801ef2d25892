//! OpenTelemetry traces: one trace per batch of lines, with a span per pipeline stage.
//!
//! A batch's root span (`batch`) starts when the tailer reads a chunk of a file, with children
//! `tail.read` and `frame` there, `match` on a match worker, `route` and `sink.logstash` (or
//! `sink.stdout`) on the sink thread, and `sink.discord` for each Discord request that carries
//! the batch's events. The ids of the `match` span go into every event of the batch
//! (`trace_id`, `span_id` in the JSON Logstash receives), the Discord request carries a W3C
//! `traceparent` header, and every log line written inside one of these spans carries its ids.
//!
//! Settings come from the environment, with OpenTelemetry's own names where they exist:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `TRACES_ENABLED` | `false` | export traces at all |
//! | `TRACES_EXPORTER` | `otlp` | `otlp` (gRPC), `stdout` (needs `--logstash`: stdout carries the events otherwise), `none` |
//! | `TRACES_SAMPLE_RATE` | `1.0` | share of batches traced, 0.0 to 1.0 |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | `http://localhost:4317` | the collector |
//! | `SERVICE_NAME`, `SERVICE_VERSION`, `SERVICE_ENVIRONMENT` | | resource attributes |
//!
//! Spans are exported in the background by the SDK's batch processor on its own thread, with a
//! bounded queue: an unreachable collector costs failed exports (logged by the SDK at warn
//! level) and dropped spans, never a slower pipeline.
//!
//! How it fails: a setting that does not parse is a [`TraceError`] at start, naming the
//! variable; an exporter that cannot be built is one too.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use thiserror::Error;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::event::{ServiceInfo, TraceIds};

/// Default of `OTEL_EXPORTER_OTLP_ENDPOINT`.
pub fn default_otlp_endpoint() -> String {
    "http://localhost:4317".to_owned()
}

/// Default of `TRACES_SAMPLE_RATE`.
pub const fn default_sample_rate() -> f64 {
    1.0
}

/// Where spans go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exporter {
    /// OTLP over gRPC.
    Otlp,
    /// One JSON document per span on stdout.
    Stdout,
    /// Nowhere (spans still give log lines their context).
    None,
}

/// The trace settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceConfig {
    /// `TRACES_ENABLED`.
    pub enabled: bool,
    /// `TRACES_EXPORTER`.
    pub exporter: Exporter,
    /// `TRACES_SAMPLE_RATE`.
    pub sample_rate: f64,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
}

/// A trace setting that cannot work.
#[derive(Debug, Error)]
pub enum TraceError {
    /// A variable does not parse.
    #[error("{variable}: `{value}` {problem}")]
    Setting {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The exporter cannot be built.
    #[error("cannot set up the trace exporter: {0}")]
    Exporter(String),
}

impl Default for TraceConfig {
    /// Traces off, as with no `TRACES_*` variable set.
    fn default() -> Self {
        TraceConfig {
            enabled: false,
            exporter: Exporter::Otlp,
            sample_rate: default_sample_rate(),
            endpoint: default_otlp_endpoint(),
        }
    }
}

impl TraceConfig {
    /// Reads the settings from `env`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<TraceConfig, TraceError> {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let enabled = match get("TRACES_ENABLED") {
            None => false,
            Some(v) => crate::settings::parse_bool(&v).ok_or(TraceError::Setting {
                variable: "TRACES_ENABLED",
                value: v,
                problem: "is neither true nor false",
            })?,
        };
        let exporter = match get("TRACES_EXPORTER").as_deref() {
            None | Some("otlp") => Exporter::Otlp,
            Some("stdout") => Exporter::Stdout,
            Some("none") => Exporter::None,
            Some(v) => {
                return Err(TraceError::Setting {
                    variable: "TRACES_EXPORTER",
                    value: v.to_owned(),
                    problem: "is not otlp, stdout or none",
                });
            }
        };
        let sample_rate = match get("TRACES_SAMPLE_RATE") {
            None => default_sample_rate(),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or(TraceError::Setting {
                    variable: "TRACES_SAMPLE_RATE",
                    value: v,
                    problem: "is not a number from 0.0 to 1.0",
                })?,
        };
        Ok(TraceConfig {
            enabled,
            exporter,
            sample_rate,
            endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(default_otlp_endpoint),
        })
    }
}

/// A running trace pipeline: flush it with [`Traces::shutdown`] before exiting.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Builds the exporter and provider. Must run inside a tokio runtime (the gRPC client
    /// needs one); `None` when traces are off.
    pub fn start(
        config: &TraceConfig,
        service: &ServiceInfo,
    ) -> Result<Option<(Traces, SdkTracer)>, TraceError> {
        if !config.enabled || config.exporter == Exporter::None {
            return Ok(None);
        }
        let resource = Resource::builder()
            .with_service_name(service.name.clone())
            .with_attributes([
                KeyValue::new("service.version", service.version.clone()),
                KeyValue::new("deployment.environment", service.environment.clone()),
            ])
            .build();
        let sampler =
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_rate)));
        let builder = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(sampler);
        let provider = match config.exporter {
            Exporter::Otlp => {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(config.endpoint.clone())
                    .with_timeout(Duration::from_secs(5))
                    .build()
                    .map_err(|e| TraceError::Exporter(e.to_string()))?;
                builder.with_batch_exporter(exporter).build()
            }
            Exporter::Stdout => builder
                .with_batch_exporter(opentelemetry_stdout::SpanExporter::default())
                .build(),
            Exporter::None => return Ok(None),
        };
        let tracer = provider.tracer("factorio-isr");
        Ok(Some((Traces { provider }, tracer)))
    }

    /// Exports what is pending, for at most 2 s, and stops.
    pub fn shutdown(self) {
        let _ = self.provider.shutdown_with_timeout(Duration::from_secs(2));
    }
}

/// An info-level span named `$name` under `parent:` (a `&Span`, or `None` for a root), with
/// `trace_id` and `span_id` fields filled in when it is sampled, so log lines written inside
/// it carry them. More fields may follow, as with `tracing::info_span!`.
#[macro_export]
macro_rules! traced_span {
    (parent: $parent:expr, $name:literal $(, $($field:tt)*)?) => {{
        let span = ::tracing::info_span!(
            parent: $parent,
            $name,
            trace_id = ::tracing::field::Empty,
            span_id = ::tracing::field::Empty
            $(, $($field)*)?
        );
        $crate::telemetry::traces::record_ids(&span);
        span
    }};
}

/// The trace ids of `span` when it is sampled (exported), for events and log lines.
pub fn sampled_ids(span: &tracing::Span) -> Option<Arc<TraceIds>> {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    (sc.is_valid() && sc.is_sampled()).then(|| {
        Arc::new(TraceIds {
            trace_id: sc.trace_id().to_string(),
            span_id: sc.span_id().to_string(),
        })
    })
}

/// Records `span`'s own ids in its `trace_id` and `span_id` fields (declared empty), so log
/// lines written inside it carry them. Returns the ids when sampled.
pub fn record_ids(span: &tracing::Span) -> Option<Arc<TraceIds>> {
    let ids = sampled_ids(span)?;
    span.record("trace_id", ids.trace_id.as_str());
    span.record("span_id", ids.span_id.as_str());
    Some(ids)
}

/// Makes `span` a child of the span `ids` names (a batch's span, seen by another task).
pub fn set_parent(span: &tracing::Span, ids: &TraceIds) {
    let (Ok(trace_id), Ok(span_id)) = (
        TraceId::from_hex(&ids.trace_id),
        SpanId::from_hex(&ids.span_id),
    ) else {
        return;
    };
    let parent = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

/// The W3C `traceparent` header value of `ids` (sampled).
pub fn traceparent(ids: &TraceIds) -> String {
    format!("00-{}-{}-01", ids.trace_id, ids.span_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn settings_come_from_the_environment_with_defaults() {
        let c = TraceConfig::from_env(env(&[])).unwrap();
        assert!(!c.enabled);
        assert_eq!(c.exporter, Exporter::Otlp);
        assert_eq!(c.sample_rate, 1.0);
        assert_eq!(c.endpoint, "http://localhost:4317");
        let c = TraceConfig::from_env(env(&[
            ("TRACES_ENABLED", "true"),
            ("TRACES_EXPORTER", "stdout"),
            ("TRACES_SAMPLE_RATE", "0.01"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4317"),
        ]))
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.exporter, Exporter::Stdout);
        assert_eq!(c.sample_rate, 0.01);
        assert_eq!(c.endpoint, "http://jaeger:4317");
    }

    #[test]
    fn bad_settings_name_the_variable() {
        for (k, v) in [
            ("TRACES_ENABLED", "maybe"),
            ("TRACES_EXPORTER", "jaeger"),
            ("TRACES_SAMPLE_RATE", "1.5"),
            ("TRACES_SAMPLE_RATE", "often"),
        ] {
            let err = TraceConfig::from_env(env(&[(k, v)]))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(k) && err.contains(v), "{err}");
        }
    }

    #[test]
    fn traceparent_is_w3c() {
        let ids = TraceIds {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
        };
        assert_eq!(
            traceparent(&ids),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }
}
