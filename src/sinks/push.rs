//! What the sinks that push batches in requests share (Loki over HTTP, OTLP logs over gRPC):
//! how an answer is classed, the retry loop with backoff that makes them reliable, and the one
//! place where each attempt is logged, counted and reported to `/ready`.
//!
//! A batch is sent again until the receiver accepts it, so the checkpoint moves only past
//! events the receiver has:
//!
//! - `rate_limited` (HTTP 429, gRPC `RESOURCE_EXHAUSTED`), `server_error` (5xx, `UNAVAILABLE`
//!   and the other transient gRPC codes), `unreachable` (no connection) and `timeout`: sent
//!   again after the backoff (`backoff_initial_ms` doubling up to `backoff_max_ms`, each wait
//!   randomised between half and all of it) or after the receiver's `Retry-After`, whichever
//!   is longer. The pipeline waits meanwhile; the log files are the buffer.
//! - `refused` (401, 403, 404, 405; `UNAUTHENTICATED`, `PERMISSION_DENIED`, `UNIMPLEMENTED`):
//!   the receiver refuses factorio-isr itself (credentials, tenant, URL), not this batch.
//!   Dropping would lose every event until someone notices; so the batch is sent again every
//!   `backoff_max_ms`, `/ready` says why, and nothing is lost once the setting is fixed.
//! - `rejected` (any other 4xx, `INVALID_ARGUMENT` and the other permanent codes): the
//!   receiver refuses this batch (Loki's "entry too far behind", a line over its size limit).
//!   Sending it again cannot succeed, and holding it would stop every server's events for
//!   good; so it is dropped: logged as an error with the receiver's reason, its events counted
//!   in `<sink>_events_rejected_total`, and the checkpoint moves on. Loki itself stores the
//!   valid entries of a batch it answers 400 for.
//!
//! How it fails: it does not return an error; it blocks until the batch is accepted or
//! rejected.

use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::telemetry::health::Component;
use crate::telemetry::metrics::{ErrorKind, PushMetrics};

/// Why a request did not deliver its batch: the `result` label of `<sink>_requests_total` and
/// the `error_type` of `errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushFailure {
    /// The receiver asks to slow down (429, `RESOURCE_EXHAUSTED`): sent again.
    RateLimited,
    /// The receiver failed (5xx, `UNAVAILABLE`…): sent again.
    ServerError,
    /// No connection could be made or it broke: sent again.
    Unreachable,
    /// No answer within the request timeout: sent again.
    Timeout,
    /// The receiver refuses factorio-isr (credentials, tenant, path): sent again every
    /// `backoff_max_ms` until it is fixed.
    Refused,
    /// The receiver refuses this batch for good: dropped and counted.
    Rejected,
}

impl PushFailure {
    /// Every value, for registering label sets up front.
    pub const ALL: &'static [PushFailure] = &[
        PushFailure::RateLimited,
        PushFailure::ServerError,
        PushFailure::Unreachable,
        PushFailure::Timeout,
        PushFailure::Refused,
        PushFailure::Rejected,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PushFailure::RateLimited => "rate_limited",
            PushFailure::ServerError => "server_error",
            PushFailure::Unreachable => "unreachable",
            PushFailure::Timeout => "timeout",
            PushFailure::Refused => "refused",
            PushFailure::Rejected => "rejected",
        }
    }
}

/// The answer to one request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The receiver took the batch; it refused `rejected` of its events for good (an OTLP
    /// partial success), saying `detail`.
    Accepted { rejected: u64, detail: String },
    /// It did not; `detail` is the receiver's reason (never a secret), `retry_after` its
    /// `Retry-After`.
    Failed {
        failure: PushFailure,
        detail: String,
        retry_after: Option<Duration>,
    },
}

/// The longest `Retry-After` honoured as given; longer ones are waited this long.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(300);

/// The retry loop and the reporting of one pushing sink.
pub(crate) struct Pusher<K: ErrorKind> {
    /// `Loki`, `the OTLP logs receiver`: the receiver in log messages and `/ready`.
    pub what: &'static str,
    /// Where it is, without credentials.
    pub target: String,
    pub metrics: PushMetrics,
    pub health: Component,
    pub kind: fn(PushFailure) -> K,
    backoff_initial: Duration,
    backoff_max: Duration,
    backoff: Duration,
    /// Whether the last request failed (so a success is logged once).
    failing: bool,
}

impl<K: ErrorKind> Pusher<K> {
    pub fn new(
        what: &'static str,
        target: String,
        backoff_initial_ms: u64,
        backoff_max_ms: u64,
        kind: fn(PushFailure) -> K,
    ) -> Self {
        let initial = Duration::from_millis(backoff_initial_ms.max(1));
        Pusher {
            what,
            target,
            metrics: PushMetrics::default(),
            health: Component::default(),
            kind,
            backoff_initial: initial,
            backoff_max: Duration::from_millis(backoff_max_ms.max(backoff_initial_ms).max(1)),
            backoff: initial,
            failing: false,
        }
    }

    /// Registers the error series at 0.
    pub fn register(&self) {
        self.metrics.errors.register::<K>();
        let results = std::iter::once("ok").chain(PushFailure::ALL.iter().map(|f| f.as_str()));
        for result in results {
            let labels = crate::telemetry::metrics::PushResultLabels {
                result: result.to_owned(),
            };
            let _ = self.metrics.requests.get_or_create(&labels);
        }
    }

    /// Sends a batch of `events` with `attempt` until the receiver accepts or rejects it.
    /// `attempt` gets the attempt number (1 for the first). Returns the events accepted.
    pub fn deliver(&mut self, events: u64, mut attempt: impl FnMut(u32) -> Outcome) -> u64 {
        let mut n = 0u32;
        loop {
            n += 1;
            let started = Instant::now();
            let outcome = attempt(n);
            self.metrics
                .request_latency_seconds
                .observe(started.elapsed().as_secs_f64());
            match outcome {
                Outcome::Accepted { rejected, detail } => {
                    self.metrics.request("ok");
                    let rejected = rejected.min(events);
                    let sent = events - rejected;
                    self.metrics.events_sent.inc_by(sent);
                    if rejected > 0 {
                        self.drop_rejected(rejected, &detail);
                    }
                    self.backoff = self.backoff_initial;
                    self.health.ready();
                    if std::mem::take(&mut self.failing) {
                        info!(target_url = %self.target, attempts = n, "{} accepts events again.", self.what);
                    }
                    return sent;
                }
                Outcome::Failed {
                    failure,
                    detail,
                    retry_after,
                } => {
                    self.metrics.request(failure.as_str());
                    self.metrics.errors.record((self.kind)(failure));
                    if failure == PushFailure::Rejected {
                        self.drop_rejected(events, &detail);
                        return 0;
                    }
                    let wait = self.wait(failure, retry_after);
                    self.failing = true;
                    let wait_ms = wait.as_millis() as u64;
                    self.health.not_ready(format!(
                        "{} at {} did not take a batch ({}: {detail}); retrying in {wait_ms} ms, reading waits, nothing is lost",
                        self.what,
                        self.target,
                        failure.as_str(),
                    ));
                    warn!(
                        target_url = %self.target,
                        reason = failure.as_str(),
                        detail = %detail,
                        attempt = n,
                        retry_in_ms = wait_ms,
                        "{} did not take a batch; sending it again.",
                        self.what
                    );
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// The wait before the next attempt after `failure`.
    pub(crate) fn wait(&mut self, failure: PushFailure, retry_after: Option<Duration>) -> Duration {
        if failure == PushFailure::Refused {
            return self.backoff_max;
        }
        let base = self.backoff;
        self.backoff = (base * 2).min(self.backoff_max);
        let jittered = base / 2 + base.mul_f64(fastrand::f64() / 2.0);
        match retry_after {
            Some(after) => after.min(RETRY_AFTER_MAX).max(jittered),
            None => jittered,
        }
    }

    /// Counts and logs `events` the receiver refused for good.
    fn drop_rejected(&self, events: u64, detail: &str) {
        self.metrics.events_rejected.inc_by(events);
        error!(
            target_url = %self.target,
            events,
            detail = %detail,
            "{} refused events for good; they are dropped (factorio_isr_{}_events_rejected_total).",
            self.what,
            (self.kind)(PushFailure::Rejected).component()
        );
    }
}

/// The first `max_chars` characters of a receiver's answer on one line, for logs and `/ready`.
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect();
    if text.chars().count() > max_chars {
        out.push('…');
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct TestKind(PushFailure);

    impl ErrorKind for TestKind {
        const ALL: &'static [Self] = &[TestKind(PushFailure::Rejected)];
        fn component(self) -> &'static str {
            "test"
        }
        fn error_type(self) -> &'static str {
            self.0.as_str()
        }
    }

    fn pusher() -> Pusher<TestKind> {
        Pusher::new("Test", "http://t".into(), 1, 4, TestKind)
    }

    #[test]
    fn transient_failures_are_sent_again_until_accepted() {
        let mut p = pusher();
        let mut answers = vec![
            Outcome::Accepted {
                rejected: 0,
                detail: String::new(),
            },
            Outcome::Failed {
                failure: PushFailure::Refused,
                detail: "401".into(),
                retry_after: None,
            },
            Outcome::Failed {
                failure: PushFailure::RateLimited,
                detail: "429".into(),
                retry_after: Some(Duration::from_millis(2)),
            },
            Outcome::Failed {
                failure: PushFailure::ServerError,
                detail: "500".into(),
                retry_after: None,
            },
        ];
        let mut attempts = 0;
        let sent = p.deliver(3, |n| {
            attempts = n;
            answers.pop().unwrap()
        });
        assert_eq!((sent, attempts), (3, 4));
        assert_eq!(p.metrics.events_sent.get(), 3);
        assert_eq!(p.metrics.events_rejected.get(), 0);
    }

    #[test]
    fn a_rejected_batch_is_dropped_and_counted_not_sent_again() {
        let mut p = pusher();
        let mut attempts = 0;
        let sent = p.deliver(5, |n| {
            attempts = n;
            Outcome::Failed {
                failure: PushFailure::Rejected,
                detail: "entry too far behind".into(),
                retry_after: None,
            }
        });
        assert_eq!((sent, attempts), (0, 1));
        assert_eq!(p.metrics.events_rejected.get(), 5);
    }

    /// The `requests` series as `/metrics` shows them: `(result, count)`, sorted. Reading the
    /// text creates no series (unlike `get_or_create`), so a series missing here was never
    /// registered.
    fn request_series(p: &Pusher<TestKind>) -> Vec<(String, u64)> {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("test_requests", "", p.metrics.requests.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let mut series: Vec<(String, u64)> = text
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("test_requests_total{result=\"")?;
                let (result, value) = rest.split_once("\"} ")?;
                Some((result.to_owned(), value.parse().ok()?))
            })
            .collect();
        series.sort();
        series
    }

    #[test]
    fn registering_the_series_counts_no_request() {
        let mut p = pusher();
        assert_eq!(request_series(&p), vec![], "nothing before registering");
        p.register();
        let mut want: Vec<(String, u64)> = std::iter::once("ok")
            .chain(PushFailure::ALL.iter().map(|f| f.as_str()))
            .map(|r| (r.to_owned(), 0))
            .collect();
        want.sort();
        assert_eq!(
            request_series(&p),
            want,
            "every result at 0 once registered"
        );
        // Registering again (a rebuilt sink on the same metrics) counts nothing either.
        p.register();
        assert_eq!(request_series(&p), want);
        // One request counts one, in its own series only.
        p.deliver(1, |_| Outcome::Accepted {
            rejected: 0,
            detail: String::new(),
        });
        for (result, n) in &mut want {
            if result == "ok" {
                *n = 1;
            }
        }
        assert_eq!(request_series(&p), want);
    }

    #[test]
    fn a_partial_success_counts_the_records_it_names_as_rejected() {
        let mut p = pusher();
        p.register();
        let sent = p.deliver(10, |_| Outcome::Accepted {
            rejected: 3,
            detail: "3 records too old".into(),
        });
        assert_eq!(sent, 7);
        assert_eq!(p.metrics.events_sent.get(), 7);
        assert_eq!(p.metrics.events_rejected.get(), 3);
        // The request itself succeeded: it is not sent again, nor counted as a failure.
        let count = |series: &[(String, u64)], result: &str| {
            series.iter().find(|(r, _)| r == result).map(|s| s.1)
        };
        let series = request_series(&p);
        assert_eq!(count(&series, "ok"), Some(1));
        assert_eq!(count(&series, "rejected"), Some(0));
        // A receiver naming more records than the batch had rejects the batch, no more.
        let sent = p.deliver(2, |_| Outcome::Accepted {
            rejected: 5,
            detail: String::new(),
        });
        assert_eq!(sent, 0);
        assert_eq!(p.metrics.events_sent.get(), 7);
        assert_eq!(p.metrics.events_rejected.get(), 5);
    }

    /// A receiver that refuses factorio-isr itself (401, `UNAUTHENTICATED`) is asked again at
    /// the slowest pace (`backoff_max_ms`, whatever its `Retry-After` says), each refusal
    /// counted, `/ready` saying why; nothing is dropped, and the batch goes once it is fixed.
    #[test]
    fn a_refusal_is_counted_shown_and_asked_again_at_the_slowest_pace() {
        let health = crate::telemetry::health::Health::new(Default::default());
        let metrics = crate::telemetry::metrics::Metrics::new();
        let mut p = pusher();
        p.metrics = metrics.loki.clone();
        p.health = health.component("test", "starting");
        p.register();
        let mut reasons = Vec::new();
        let sent = p.deliver(4, |n| {
            reasons.push(health.readiness().reasons);
            if n <= 3 {
                Outcome::Failed {
                    failure: PushFailure::Refused,
                    detail: "HTTP 401 Unauthorized: bad credentials".into(),
                    retry_after: Some(Duration::from_millis(1)),
                }
            } else {
                Outcome::Accepted {
                    rejected: 0,
                    detail: String::new(),
                }
            }
        });
        assert_eq!(sent, 4, "nothing dropped");
        assert_eq!(p.metrics.events_rejected.get(), 0);
        let series = request_series(&p);
        let count = |result: &str| series.iter().find(|(r, _)| r == result).map(|s| s.1);
        assert_eq!((count("refused"), count("ok")), (Some(3), Some(1)));
        let text = metrics.encode();
        assert!(
            text.lines()
                .any(|l| l
                    == "factorio_isr_errors_total{component=\"test\",error_type=\"refused\"} 3"),
            "{text}"
        );
        // Before the second attempt, /ready says who refuses and why.
        let shown = reasons[1].join("\n");
        assert!(
            shown.contains("refused") && shown.contains("bad credentials"),
            "{shown}"
        );
        assert!(health.readiness().ok, "ready again once accepted");
        // The pace: the longest backoff every time, never faster, a Retry-After not heeded.
        for _ in 0..3 {
            let wait = p.wait(PushFailure::Refused, Some(Duration::from_millis(1)));
            assert_eq!(wait, Duration::from_millis(4));
        }
    }

    #[test]
    fn retry_after_is_honoured_when_longer_than_the_backoff() {
        let mut p = pusher();
        let wait = p.wait(PushFailure::RateLimited, Some(Duration::from_secs(7)));
        assert_eq!(wait, Duration::from_secs(7));
        let wait = p.wait(PushFailure::RateLimited, Some(Duration::from_secs(7200)));
        assert_eq!(wait, RETRY_AFTER_MAX);
        assert!(p.wait(PushFailure::ServerError, None) <= Duration::from_millis(4));
        assert_eq!(p.wait(PushFailure::Refused, None), Duration::from_millis(4));
    }
}
