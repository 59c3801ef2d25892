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
    /// `json` or `console` (also `text`), any case.
    pub fn parse(value: &str) -> Option<LogFormat> {
        let v = value.trim();
        if v.eq_ignore_ascii_case("json") {
            Some(LogFormat::Json)
        } else if v.eq_ignore_ascii_case("console") || v.eq_ignore_ascii_case("text") {
            Some(LogFormat::Console)
        } else {
            None
        }
    }

    /// The format when `LOG_FORMAT` is unset: console on a terminal, else JSON.
    pub fn default_for_stderr() -> LogFormat {
        if io::stderr().is_terminal() {
            LogFormat::Console
        } else {
            LogFormat::Json
        }
    }
}

/// Standard error for console logs, with the control characters a logged value may carry (a
/// file name, an error body from Discord) written as `\x1b`-style escapes, so a log line cannot
/// clear the screen, ring the bell or forge a line of its own. A line's final newline stays;
/// tabs stay. JSON logs need none of this: JSON escapes them already.
struct EscapedStderr;

impl io::Write for EscapedStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        io::stderr().lock().write_all(&escape_controls(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// `bytes` with every control character but tab and a final newline as `\xNN`.
fn escape_controls(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let (body, end) = match bytes.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (bytes, &b""[..]),
    };
    let control = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    if !body.iter().any(|&b| control(b)) {
        return std::borrow::Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() + 16);
    for &b in body {
        if control(b) {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(end);
    std::borrow::Cow::Owned(out)
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
        // No colours: every control character is escaped, the ones of colours included.
        LogFormat::Console => fmt::layer()
            .with_writer(|| EscapedStderr)
            .with_ansi(false)
            .with_target(false)
            .with_filter(filter)
            .boxed(),
    };
    let otel_layer = tracer.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t)
            .with_filter(Targets::new().with_target("factorio_isr", Level::INFO))
    });
    // A second App in one process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .try_init();
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
        assert_eq!(LogFormat::parse("json"), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("Console"), Some(LogFormat::Console));
        assert_eq!(LogFormat::parse("xml"), None);
    }

    #[test]
    fn console_logs_escape_control_characters_but_keep_the_line_end() {
        let line = b"path=/srv/\x1b[2Jx\x07 y\tz\nforged line\n";
        assert_eq!(
            &*escape_controls(line),
            &b"path=/srv/\\x1b[2Jx\\x07 y\tz\\x0aforged line\n"[..]
        );
        assert_eq!(&*escape_controls(b"plain\n"), b"plain\n");
    }
}
