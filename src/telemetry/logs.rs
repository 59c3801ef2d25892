//! factorio-isr's own log lines, on stderr.
//!
//! `LOG_FORMAT=json` (the default when stderr is not a terminal: journald, Docker, a file)
//! writes one JSON object per line with `timestamp`, `level`, `message`, the event's fields,
//! and the current span with its `trace_id` and `span_id` when the line was written inside a
//! traced pipeline stage. `LOG_FORMAT=console` (the default on a terminal) writes readable
//! lines. `LOG_LEVEL` filters (`info` by default; `warn`, `debug`, or a directive list such as
//! `info,factorio_isr=debug`). The OpenTelemetry SDK's own messages are limited to warnings.
//!
//! When traces are on, the OpenTelemetry layer sees factorio-isr's spans whatever `LOG_LEVEL`
//! says: quieter logs do not mean fewer traces.
//!
//! How it fails: an unknown `LOG_FORMAT` is an error naming the variable; a `LOG_LEVEL` that
//! does not parse falls back to `info` with a warning.

use std::io::{self, IsTerminal};

use opentelemetry_sdk::trace::SdkTracer;
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Readable text.
    Console,
}

impl LogFormat {
    /// `LOG_FORMAT`, else JSON unless stderr is a terminal.
    pub fn from_env(value: Option<&str>) -> Result<LogFormat, String> {
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            None if io::stderr().is_terminal() => Ok(LogFormat::Console),
            None => Ok(LogFormat::Json),
            Some(v) if v.eq_ignore_ascii_case("json") => Ok(LogFormat::Json),
            Some(v) if v.eq_ignore_ascii_case("console") || v.eq_ignore_ascii_case("text") => {
                Ok(LogFormat::Console)
            }
            Some(v) => Err(format!("LOG_FORMAT: `{v}` is neither json nor console")),
        }
    }
}

/// Installs the subscriber: log lines on stderr, and spans to OpenTelemetry when `tracer` is
/// given.
pub fn init(format: LogFormat, level: Option<&str>, tracer: Option<SdkTracer>) {
    let directives = level.unwrap_or("info");
    let (filter, bad_level) = match EnvFilter::try_new(directives) {
        Ok(f) => (f, false),
        Err(_) => (EnvFilter::new("info"), true),
    };
    // The SDK reports export failures through `tracing`; keep them to warnings.
    let filter = filter
        .add_directive("opentelemetry_sdk=warn".parse().expect("a valid directive"))
        .add_directive(
            "opentelemetry_otlp=warn"
                .parse()
                .expect("a valid directive"),
        )
        .add_directive("opentelemetry=warn".parse().expect("a valid directive"));
    let fmt_layer = match format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Console => fmt::layer()
            .with_writer(io::stderr)
            .with_ansi(io::stderr().is_terminal())
            .with_target(false)
            .with_filter(filter)
            .boxed(),
    };
    let otel_layer = tracer.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_filter(Targets::new().with_target("factorio_isr", Level::INFO))
    });
    tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .init();
    if bad_level {
        tracing::warn!(
            LOG_LEVEL = directives,
            "LOG_LEVEL does not parse; logging at info."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_names() {
        assert_eq!(LogFormat::from_env(Some("json")), Ok(LogFormat::Json));
        assert_eq!(LogFormat::from_env(Some("Console")), Ok(LogFormat::Console));
        assert!(
            LogFormat::from_env(Some("xml"))
                .unwrap_err()
                .contains("LOG_FORMAT")
        );
    }
}
