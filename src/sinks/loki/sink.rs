//! The Loki sink itself: events grouped into one stream per label set, each stream's entries
//! in time order, the push request, and the [`Sink`] calls.
//!
//! How it fails: see [`crate::sinks::push`]; `flush` returns only once Loki answered 2xx or
//! refused the batch for good, and never returns an error.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};

use super::config::{Credentials, LokiConfig, LokiError};
use super::internal_events::LokiErrorKind;
use super::proto::{
    EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, encode_snappy,
    prost_types_timestamp::Timestamp,
};
use crate::event::{Event, EventEncoder, LOG_EVENT_TYPE, ServiceInfo, Severity};
use crate::sinks::push::{Outcome, PushFailure, Pusher, one_line};
use crate::sinks::{Delivery, Sink};

/// The stream labels of an event: its server, type and severity (the service is the same for
/// every event). Never a player, never free text.
type StreamKey = (Arc<str>, Arc<str>, Severity);

/// Sends events to Loki. See the module docs of [`super`].
pub struct LokiSink {
    endpoint: Endpoint,
    pusher: Pusher<LokiErrorKind>,
    encoder: EventEncoder,
    service_name: String,
    structured_metadata: bool,
    forward_unmatched: bool,
    /// The batch's streams, and where each label set's stream is.
    streams: Vec<StreamAdapter>,
    index: HashMap<StreamKey, usize>,
    /// Events in `streams`.
    pending: u64,
    /// The next entry's text, empty, with room for a line like the last one.
    line: Vec<u8>,
}

impl LokiSink {
    /// A sink pushing to `push_url` with `config`'s tenant, credentials and timeouts, its
    /// requests made on `runtime` and reported through `pusher`.
    pub(super) fn new(
        config: &LokiConfig,
        push_url: String,
        service: &ServiceInfo,
        runtime: tokio::runtime::Handle,
        pusher: Pusher<LokiErrorKind>,
    ) -> Result<LokiSink, LokiError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        if let Some(tenant) = &config.tenant {
            let value = HeaderValue::from_str(tenant)
                .map_err(|_| LokiError::Client("loki.tenant is not a valid header value".into()))?;
            headers.insert("X-Scope-OrgID", value);
        }
        let auth = match config.credentials()? {
            Credentials::None => None,
            Credentials::Basic { username, password } => {
                use std::fmt::Write;
                let mut plain = String::new();
                let _ = write!(plain, "{username}:{}", password.expose());
                Some(format!("Basic {}", base64(plain.as_bytes())))
            }
            Credentials::Bearer(token) => Some(format!("Bearer {}", token.expose())),
        };
        if let Some(auth) = auth {
            let mut value = HeaderValue::from_str(&auth).map_err(|_| {
                LokiError::Client(
                    "the Loki credentials hold characters a header cannot carry".into(),
                )
            })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let timeout = Duration::from_millis(config.request_timeout_ms.max(1));
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("factorio-isr/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout)
            // A redirect would carry the credentials elsewhere: it is an answer, counted as
            // refused, with the place it points to in the reason.
            .redirect(reqwest::redirect::Policy::none())
            .referer(false);
        for cert in config.ca_certificates()? {
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| LokiError::Client(e.without_url().to_string()))?;
        Ok(LokiSink {
            endpoint: Endpoint {
                url: push_url,
                client,
                headers,
                runtime,
            },
            pusher,
            encoder: EventEncoder::new(service),
            service_name: service.name.clone(),
            structured_metadata: config.structured_metadata,
            forward_unmatched: config.forward_unmatched,
            streams: Vec::new(),
            index: HashMap::new(),
            pending: 0,
            line: Vec::with_capacity(1024),
        })
    }

    /// The request of the batch taken so far: each stream's entries sorted by time (stable,
    /// so events of the same millisecond keep their order), then the streams emptied.
    fn take_request(&mut self) -> PushRequest {
        let mut streams = std::mem::take(&mut self.streams);
        for s in &mut streams {
            s.entries
                .sort_by_key(|e| e.timestamp.map(|t| (t.seconds, t.nanos)));
        }
        self.index.clear();
        self.pending = 0;
        PushRequest { streams }
    }
}

/// Where pushes go and how they are sent.
struct Endpoint {
    url: String,
    client: reqwest::Client,
    headers: HeaderMap,
    runtime: tokio::runtime::Handle,
}

impl Endpoint {
    /// One push of `body`.
    fn push(&self, body: Vec<u8>, attempt: u32, events: u64) -> Outcome {
        let span = crate::traced_span!(
            parent: &tracing::Span::current(),
            "loki.push",
            attempt = attempt,
            events = events,
            status = tracing::field::Empty
        );
        let request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body);
        let outcome = self.runtime.block_on(async {
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers(), SystemTime::now());
                    let location = response
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let text = if status.is_success() {
                        String::new()
                    } else {
                        response.text().await.unwrap_or_default()
                    };
                    classify(status, &text, retry_after, location.as_deref())
                }
                Err(e) => {
                    let failure = if e.is_timeout() {
                        PushFailure::Timeout
                    } else {
                        PushFailure::Unreachable
                    };
                    Outcome::Failed {
                        failure,
                        detail: error_chain(&e.without_url()),
                        retry_after: None,
                    }
                }
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

/// What an HTTP answer means for the batch.
fn classify(
    status: StatusCode,
    body: &str,
    retry_after: Option<Duration>,
    location: Option<&str>,
) -> Outcome {
    if status.is_success() {
        return Outcome::Accepted {
            rejected: 0,
            detail: String::new(),
        };
    }
    let reason = one_line(body, 300);
    let detail = if reason.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {reason}")
    };
    let failure = match status.as_u16() {
        429 => PushFailure::RateLimited,
        500..=599 => PushFailure::ServerError,
        401 | 403 | 404 | 405 => PushFailure::Refused,
        400..=499 => PushFailure::Rejected,
        _ => {
            let detail = match location {
                Some(to) if status.is_redirection() => format!(
                    "HTTP {status}: redirects to {}; set loki.url to where Loki is",
                    one_line(to.split('?').next().unwrap_or(""), 200)
                ),
                _ => detail,
            };
            return Outcome::Failed {
                failure: PushFailure::Refused,
                detail,
                retry_after: None,
            };
        }
    };
    Outcome::Failed {
        failure,
        detail,
        retry_after,
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): a number of seconds, or an HTTP date in any of its three
/// forms (IMF-fixdate, RFC 850, asctime), as the time from `now` until then (zero for a date
/// gone by). [`Pusher`] caps both forms alike.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// An error and its causes on one line (`error sending request: connection refused`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    one_line(&text, 300)
}

/// Standard base64 with padding, for the basic-authentication header.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `{name="value"}` label text, values escaped as LogQL strings.
fn label_text(pairs: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

impl Sink for LokiSink {
    fn name(&self) -> &'static str {
        "loki"
    }

    fn delivery(&self) -> Delivery {
        Delivery::Reliable
    }

    fn flush_span(&self, parent: &tracing::Span, events: usize) -> tracing::Span {
        crate::traced_span!(parent: parent, "sink.loki", events = events)
    }

    fn write(&mut self, event: &Event) -> io::Result<()> {
        if !self.forward_unmatched && &*event.event_type == LOG_EVENT_TYPE {
            return Ok(());
        }
        let key = (
            event.source.server.clone(),
            event.event_type.clone(),
            event.severity,
        );
        let at = match self.index.get(&key) {
            Some(&at) => at,
            None => {
                let labels = label_text(&[
                    ("event_type", &event.event_type),
                    ("server", &event.source.server),
                    ("service", &self.service_name),
                    ("severity", event.severity.as_str()),
                ]);
                self.streams.push(StreamAdapter {
                    labels,
                    entries: Vec::new(),
                    hash: 0,
                });
                self.index.insert(key, self.streams.len() - 1);
                self.streams.len() - 1
            }
        };
        // The encoder writes into a buffer the size of the last line, which becomes the entry's
        // text as it is: one allocation per entry, no copy.
        let mut bytes = std::mem::take(&mut self.line);
        self.encoder.write(event, &mut bytes);
        self.line = Vec::with_capacity(bytes.len());
        let line = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        let structured_metadata = match (&event.trace, self.structured_metadata) {
            (Some(t), true) => vec![LabelPairAdapter {
                name: "trace_id".into(),
                value: t.trace_id.clone(),
            }],
            _ => Vec::new(),
        };
        self.streams[at].entries.push(EntryAdapter {
            timestamp: Some(Timestamp::from_millis(event.timestamp.as_millis())),
            line,
            structured_metadata,
        });
        self.pending += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let events = self.pending;
        let body = encode_snappy(&self.take_request());
        let endpoint = &self.endpoint;
        self.pusher
            .deliver(events, |n| endpoint.push(body.clone(), n, events));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn event(server: &str, event_type: &str, at_ms: i64, raw: &str) -> Event {
        Event {
            timestamp: crate::event::Timestamp(at_ms),
            event_type: event_type.into(),
            severity: Severity::Info,
            pattern: None,
            fields: vec![],
            raw: raw.to_owned(),
            message_start: 0,
            source: Arc::new(crate::event::LogSource {
                server: server.into(),
                path: "console.log".into(),
            }),
            offset: 0,
            trace: None,
        }
    }

    /// Each stream's entries as `(millis, message)`, by the stream's labels.
    fn streams(request: &PushRequest) -> Vec<(String, Vec<(i64, String)>)> {
        request
            .streams
            .iter()
            .map(|s| {
                let entries = s
                    .entries
                    .iter()
                    .map(|e| {
                        let t = e.timestamp.expect("a time");
                        let json: serde_json::Value = serde_json::from_str(&e.line).unwrap();
                        (
                            t.seconds * 1000 + i64::from(t.nanos) / 1_000_000,
                            json["message"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect();
                (s.labels.clone(), entries)
            })
            .collect()
    }

    /// Loki refuses a stream whose entries go back in time within a push; events of one
    /// stream reach the sink out of order (lines with their own date among lines stamped when
    /// read, two files of one server): each stream's entries are sent in time order, those of
    /// one millisecond in the order they came, and streams do not mix.
    #[test]
    fn each_streams_entries_are_sent_in_time_order() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let config = LokiConfig::default();
        let pusher = Pusher::new("Loki", "http://t".into(), 1, 4, LokiErrorKind);
        let mut sink = LokiSink::new(
            &config,
            "http://127.0.0.1:9/loki/api/v1/push".into(),
            &ServiceInfo::default(),
            runtime.handle().clone(),
            pusher,
        )
        .unwrap();
        let written = [
            ("a", "chat", 3_000, "a3"),
            ("a", "chat", 1_000, "a1"),
            ("b", "chat", 2_000, "b2"),
            ("a", "chat", 2_000, "a2 first"),
            ("a", "player_join", 500, "j"),
            ("a", "chat", 2_000, "a2 second"),
            ("b", "chat", 1_500, "b1"),
            ("a", "chat", 2_000, "a2 third"),
            ("a", "chat", 1_000_001, "a-late"),
        ];
        for (server, event_type, at_ms, raw) in written {
            sink.write(&event(server, event_type, at_ms, raw)).unwrap();
        }
        let labels = |server: &str, event_type: &str| {
            label_text(&[
                ("event_type", event_type),
                ("server", server),
                ("service", "factorio-isr"),
                ("severity", "info"),
            ])
        };
        let entries = |e: &[(i64, &str)]| -> Vec<(i64, String)> {
            e.iter().map(|(t, m)| (*t, (*m).to_owned())).collect()
        };
        assert_eq!(
            streams(&sink.take_request()),
            vec![
                (
                    labels("a", "chat"),
                    entries(&[
                        (1_000, "a1"),
                        (2_000, "a2 first"),
                        (2_000, "a2 second"),
                        (2_000, "a2 third"),
                        (3_000, "a3"),
                        (1_000_001, "a-late"),
                    ])
                ),
                (
                    labels("b", "chat"),
                    entries(&[(1_500, "b1"), (2_000, "b2")])
                ),
                (labels("a", "player_join"), entries(&[(500, "j")])),
            ]
        );
        // The next batch starts afresh.
        sink.write(&event("b", "chat", 10, "next")).unwrap();
        assert_eq!(
            streams(&sink.take_request()),
            vec![(labels("b", "chat"), entries(&[(10, "next")]))]
        );
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pa ss"), "dXNlcjpwYSBzcw==");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(
            label_text(&[("a", "x\"y\\z"), ("b", "c")]),
            r#"{a="x\"y\\z", b="c"}"#
        );
    }

    #[test]
    fn answers_are_classed() {
        let failure = |status: u16| match classify(
            StatusCode::from_u16(status).unwrap(),
            "entry too far behind",
            None,
            None,
        ) {
            Outcome::Accepted { .. } => None,
            Outcome::Failed { failure, .. } => Some(failure),
        };
        assert_eq!(failure(204), None);
        assert_eq!(failure(429), Some(PushFailure::RateLimited));
        assert_eq!(failure(503), Some(PushFailure::ServerError));
        assert_eq!(failure(401), Some(PushFailure::Refused));
        assert_eq!(failure(404), Some(PushFailure::Refused));
        assert_eq!(failure(302), Some(PushFailure::Refused));
        assert_eq!(failure(400), Some(PushFailure::Rejected));
        assert_eq!(failure(413), Some(PushFailure::Rejected));
    }

    #[test]
    fn retry_after_takes_an_http_date_in_each_of_its_three_forms() {
        // RFC 9110 §10.2.3 and §5.6.7: a recipient accepts the IMF-fixdate and the two
        // obsolete forms.
        let now = UNIX_EPOCH + Duration::from_secs(946_684_799 - 90); // 1999-12-31 23:58:29 UTC
        for date in [
            "Fri, 31 Dec 1999 23:59:59 GMT",
            "Friday, 31-Dec-99 23:59:59 GMT",
            "Fri Dec 31 23:59:59 1999",
        ] {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_static(date));
            assert_eq!(
                retry_after(&h, now),
                Some(Duration::from_secs(90)),
                "{date}"
            );
            // A date gone by: send again at once (the backoff still applies).
            let later = now + Duration::from_secs(3600);
            assert_eq!(retry_after(&h, later), Some(Duration::ZERO), "{date}");
        }
        // A date far ahead is waited for only as long as a number of seconds would be.
        let mut h = HeaderMap::new();
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Fri, 31 Dec 1999 23:59:59 GMT"),
        );
        let far = retry_after(&h, UNIX_EPOCH).unwrap();
        let mut pusher = Pusher::new("Loki", "http://t".into(), 1, 4, LokiErrorKind);
        let capped = pusher.wait(PushFailure::RateLimited, Some(far));
        let mut secs = HeaderMap::new();
        secs.insert(RETRY_AFTER, HeaderValue::from_static("999999999"));
        let secs = retry_after(&secs, UNIX_EPOCH);
        assert_eq!(
            capped,
            pusher.wait(PushFailure::RateLimited, secs),
            "a date and seconds are capped alike"
        );
        assert!(capped < far);
        h.insert(RETRY_AFTER, HeaderValue::from_static("Fri, 31 Dec 1999"));
        assert_eq!(retry_after(&h, now), None, "not a date");
    }

    #[test]
    fn retry_after_takes_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, UNIX_EPOCH), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, UNIX_EPOCH), None);
    }
}
