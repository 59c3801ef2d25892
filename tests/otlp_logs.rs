//! The OTLP logs sink, end to end: the real `factorio-isr run` with `[otlp_logs]` follows real
//! files and exports every event as a log record to an OTLP/gRPC receiver
//! (`support::otlp`, a real `LogsService` from `opentelemetry-proto`) that keeps every field,
//! fails on demand, and goes away.
//!
//! Every wait is bounded and waits for a state, never for time.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{Value, json};
use support::otlp::{OtlpReceiver, ReceivedLog};
use support::{Env, Isr, SeqWriter, metric_sample};

/// How long events may take to arrive on a loaded machine with a debug build.
const ARRIVE: Duration = Duration::from_secs(60);

fn millis_of(rfc3339: &str) -> u64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("bad @timestamp {rfc3339}: {e}"))
        .timestamp_millis() as u64
}

fn now_ms() -> u64 {
    chrono::Utc::now().timestamp_millis() as u64
}

/// The sequence numbers of writer `id`'s chat records.
fn seqs_of(logs: &[ReceivedLog], id: &str) -> Vec<u64> {
    logs.iter()
        .filter(|l| l.event_name == "chat" && l.attr("factorio.player") == Some(&json!(id)))
        .filter_map(|l| {
            let msg = l.attr("factorio.message")?.as_str()?;
            msg.strip_prefix("seq=")?.split(' ').next()?.parse().ok()
        })
        .collect()
}

#[track_caller]
fn expect_seqs(rx: &OtlpReceiver, isr: &Isr, id: &str, want: &[u64]) {
    let ok = rx.wait_for_logs(
        |logs| {
            let got: BTreeSet<u64> = seqs_of(logs, id).into_iter().collect();
            want.iter().all(|s| got.contains(s))
        },
        ARRIVE,
    );
    if !ok {
        let got: BTreeSet<u64> = seqs_of(&rx.logs(), id).into_iter().collect();
        let missing: Vec<_> = want.iter().filter(|s| !got.contains(s)).collect();
        panic!(
            "{} records missing, first {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            isr.stderr_tail()
        );
    }
}

/// Every event of the fixtures arrives once as a log record with every field the issue names:
/// its time, when it was observed, severity number and text, the message as body, the event
/// type, server, pattern, typed fields, file and offset as attributes, the batch's trace and
/// span, and the service as resource; each export is a span under the batch's sink span. The
/// endpoint comes from `OTEL_EXPORTER_OTLP_ENDPOINT` (`[otlp_logs] enabled = true`).
#[test]
fn fixture_events_arrive_as_log_records_with_every_field() {
    let rx = OtlpReceiver::start();
    let env = Env::builder()
        .tail("[otlp_logs]\nenabled = true\nbackoff_initial_ms = 20\nbackoff_max_ms = 200")
        .start_at_beginning()
        .build();
    let started_ms = now_ms();
    let want = support::fixture_events(&env, support::FIXTURES);
    assert!(want.len() > 100);
    let isr = env
        .isr()
        .env("TRACES_ENABLED", "true")
        .env("TRACES_SAMPLE_RATE", "1.0")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", rx.endpoint())
        .spawn();
    let n = want.len();
    assert!(
        rx.wait_for_logs(|l| l.len() >= n, ARRIVE),
        "{} of {n} records\n{}",
        rx.logs().len(),
        isr.stderr_tail()
    );
    assert!(isr.events().is_empty(), "stdout carried events");
    let logs = rx.logs();
    let done_ms = now_ms();
    let by_key: BTreeMap<(String, i64), &Value> = want
        .iter()
        .map(|e| {
            (
                (
                    e["log"]["path"].as_str().unwrap().to_owned(),
                    e["log"]["offset"].as_i64().unwrap(),
                ),
                e,
            )
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut traces = BTreeSet::new();
    for r in &logs {
        let key = (
            r.attr("log.file.path")
                .and_then(Value::as_str)
                .expect("log.file.path")
                .to_owned(),
            r.attr("log.offset")
                .and_then(Value::as_i64)
                .expect("log.offset is an int"),
        );
        let e = by_key
            .get(&key)
            .unwrap_or_else(|| panic!("unexpected record {r:?}"));
        assert!(seen.insert(key.clone()), "record twice: {key:?}");
        let at = millis_of(e["@timestamp"].as_str().unwrap());
        assert!(
            r.time_unix_nano == at * 1_000_000
                || (at >= started_ms && r.time_unix_nano >= started_ms * 1_000_000),
            "time of {r:?}"
        );
        assert!(
            r.observed_time_unix_nano >= started_ms * 1_000_000
                && r.observed_time_unix_nano <= done_ms * 1_000_000,
            "observed time of {r:?}"
        );
        let severity = e["severity"].as_str().unwrap();
        let number = match severity {
            "debug" => 5,
            "info" => 9,
            "warning" => 13,
            "error" => 17,
            "critical" => 21,
            other => panic!("severity {other}"),
        };
        assert_eq!(
            (r.severity_number, r.severity_text.as_str()),
            (number, severity)
        );
        assert_eq!(r.body, e["message"], "body of {r:?}");
        assert_eq!(r.event_name, e["event_type"].as_str().unwrap());
        assert_eq!(r.attr("event.type"), Some(&e["event_type"]));
        assert_eq!(r.attr("server"), Some(&json!("test")));
        assert_eq!(r.attr("pattern"), e.get("pattern"), "pattern of {r:?}");
        let fields = e["fields"].as_object().unwrap();
        for (name, value) in fields {
            assert_eq!(
                r.attr(&format!("factorio.{name}")),
                Some(value),
                "field {name} of {r:?}"
            );
        }
        let factorio = r
            .attributes
            .iter()
            .filter(|(k, _)| k.starts_with("factorio."))
            .count();
        assert_eq!(factorio, fields.len(), "{r:?}");
        assert_eq!(r.trace_id.len(), 32, "trace id of {r:?}");
        assert_eq!(r.span_id.len(), 16, "span id of {r:?}");
        assert_eq!(r.flags, 1);
        traces.insert(r.trace_id.clone());
        assert_eq!(r.resource_attr("service.name"), Some("factorio-isr"));
        assert_eq!(
            r.resource_attr("service.version"),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(
            r.resource_attr("deployment.environment"),
            Some("production")
        );
        assert_eq!(r.scope, "factorio-isr");
    }
    assert_eq!(seen.len(), n);
    // Typed fields keep their type: some fixture field is a number.
    assert!(
        logs.iter().any(|r| r
            .attributes
            .iter()
            .any(|(k, v)| k.starts_with("factorio.") && v.is_number())),
        "no typed field arrived as a number"
    );
    // The records' trace and span are the batch's: spans of those traces arrive, and each
    // export is a span under its batch's sink span.
    let need: BTreeSet<String> = logs.iter().map(|r| r.span_id.clone()).collect();
    assert!(
        rx.wait_for(
            |s| {
                let ids: BTreeSet<&str> = s.iter().map(|s| s.span_id.as_str()).collect();
                s.iter().filter(|s| s.name == "otlp_logs.export").count() >= traces.len()
                    && need.iter().all(|id| ids.contains(id.as_str()))
            },
            ARRIVE
        ),
        "spans missing"
    );
    let spans = rx.spans();
    let by_id: HashMap<&str, &support::otlp::ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for r in &logs {
        let span = by_id
            .get(r.span_id.as_str())
            .unwrap_or_else(|| panic!("the record's span {} never arrived", r.span_id));
        assert_eq!(span.trace_id, r.trace_id);
    }
    for export in spans.iter().filter(|s| s.name == "otlp_logs.export") {
        let parent = by_id
            .get(export.parent_span_id.as_str())
            .expect("the export span's parent");
        assert_eq!(parent.name, "sink.otlp_logs");
        assert_eq!(export.attr("status"), Some("ok"));
    }
}

/// The receiver goes away twice while lines are written: every line arrives once it is back,
/// and `/ready` says why while it is away.
#[test]
fn a_receiver_restart_loses_nothing() {
    let mut rx = OtlpReceiver::start();
    let addr = rx.addr();
    let (_env, isr, admin, mut w) = following(&rx, 50, "request_timeout_ms = 2000");
    let mut stored: Vec<u64> = Vec::new();
    for _ in 0..2 {
        stored.extend(seqs_of(&rx.logs(), "w1"));
        drop(rx);
        w.write_lines(50);
        assert!(
            support::wait_ready_says(admin, 503, "OTLP logs receiver", ARRIVE),
            "/ready does not say the receiver is away\n{}",
            isr.stderr_tail()
        );
        rx = OtlpReceiver::start_on(addr);
        w.write_lines(50);
        let want: Vec<u64> = w
            .written()
            .iter()
            .copied()
            .filter(|s| !stored.contains(s))
            .collect();
        expect_seqs(&rx, &isr, "w1", &want);
    }
    stored.extend(seqs_of(&rx.logs(), "w1"));
    let all: BTreeSet<u64> = stored.iter().copied().collect();
    let written: BTreeSet<u64> = w.written().iter().copied().collect();
    assert_eq!(all, written, "lost lines");
    // The receiver stores an export before factorio-isr reads its answer: wait for that.
    assert!(support::wait_ready_says(admin, 200, "", ARRIVE));
    // The last batch is counted once its answer is read, after the receiver stored it.
    let metrics = support::wait_metric(
        admin,
        "factorio_isr_otlp_logs_events_sent_total",
        stored.len() as f64,
        ARRIVE,
    );
    assert_eq!(
        metric_sample(&metrics, "factorio_isr_otlp_logs_events_sent_total"),
        Some(stored.len() as f64)
    );
}

/// `UNAVAILABLE` is retried and loses nothing; `INVALID_ARGUMENT` drops that one batch,
/// counted and logged, and later lines go on arriving.
#[test]
fn unavailable_is_retried_and_a_bad_batch_is_dropped_not_wedged() {
    let rx = OtlpReceiver::start();
    let (_env, isr, admin, mut w) = following(&rx, 10, "");
    rx.fail_logs(2, tonic::Code::Unavailable);
    let batch: Vec<u64> = w.write_lines(10).collect();
    expect_seqs(&rx, &isr, "w1", &batch);
    rx.fail_logs(1, tonic::Code::InvalidArgument);
    let before = rx.log_requests();
    let dropped: Vec<u64> = w.write_lines(5).collect();
    assert!(support::wait_until(|| rx.log_requests() > before, ARRIVE));
    assert!(
        isr.wait_for_stderr("test receiver fails on purpose", ARRIVE),
        "{}",
        isr.stderr_tail()
    );
    let after: Vec<u64> = w.write_lines(5).collect();
    expect_seqs(&rx, &isr, "w1", &after);
    let got = seqs_of(&rx.logs(), "w1");
    assert!(
        dropped.iter().all(|s| !got.contains(s)),
        "dropped batch sent again"
    );
    let metrics = support::http_get(admin, "/metrics").1;
    assert_eq!(
        metric_sample(&metrics, "factorio_isr_otlp_logs_events_rejected_total"),
        Some(dropped.len() as f64),
        "{metrics}"
    );
    for (result, n) in [("server_error", 2.0), ("rejected", 1.0)] {
        assert_eq!(
            metric_sample(
                &metrics,
                &format!("factorio_isr_otlp_logs_requests_total{{result=\"{result}\"}}")
            ),
            Some(n),
            "{result}\n{metrics}"
        );
    }
}

/// factorio-isr following `console.log` into `rx` with small backoffs (20 ms, at most
/// 200 ms) and the `[otlp_logs]` lines `extra`, the first `lines` lines of writer `w1`
/// delivered: the test's directories (kept until the end of the test), the process, its admin
/// address and the writer.
fn following(
    rx: &OtlpReceiver,
    lines: usize,
    extra: &str,
) -> (Env, Isr, std::net::SocketAddr, SeqWriter) {
    let env = Env::builder()
        .tail(&format!(
            "[otlp_logs]\nendpoint = \"{}\"\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n{extra}",
            rx.endpoint()
        ))
        .start_at_beginning()
        .build();
    let isr = env.isr().spawn();
    let admin = isr.admin_addr();
    let mut w = SeqWriter::create(env.log("console.log"), "w1");
    w.write_lines(lines);
    expect_seqs(rx, &isr, "w1", w.written());
    (env, isr, admin, w)
}

/// A partial success: the records the receiver names are counted as rejected and its reason
/// logged; the export is not sent again (it succeeded) and later lines go on.
#[test]
fn a_partial_success_counts_the_rejected_records_and_logs_why() {
    let rx = OtlpReceiver::start();
    let (_env, isr, admin, mut w) = following(&rx, 10, "");
    // One record (an export holds at least one, however the lines are batched).
    rx.partial_success_next(1, "1 record too old on purpose");
    let batch: Vec<u64> = w.write_lines(5).collect();
    expect_seqs(&rx, &isr, "w1", &batch);
    assert!(
        isr.wait_for_stderr("1 record too old on purpose", ARRIVE),
        "the receiver's reason is not logged\n{}",
        isr.stderr_tail()
    );
    let after: Vec<u64> = w.write_lines(5).collect();
    expect_seqs(&rx, &isr, "w1", &after);
    // Every record was exported once (the fake keeps them all); one of them is counted as
    // rejected, the others as sent.
    let written = w.written().len() as f64;
    let metrics = support::wait_metric(
        admin,
        "factorio_isr_otlp_logs_events_sent_total",
        written - 1.0,
        ARRIVE,
    );
    assert_eq!(seqs_of(&rx.logs(), "w1").len(), w.written().len());
    for (sample, want) in [
        ("factorio_isr_otlp_logs_events_sent_total", written - 1.0),
        ("factorio_isr_otlp_logs_events_rejected_total", 1.0),
        (
            "factorio_isr_otlp_logs_requests_total{result=\"rejected\"}",
            0.0,
        ),
        (
            "factorio_isr_errors_total{component=\"otlp_logs\",error_type=\"rejected\"}",
            0.0,
        ),
    ] {
        assert_eq!(
            metric_sample(&metrics, sample),
            Some(want),
            "{sample}\n{metrics}"
        );
    }
}

/// `UNAUTHENTICATED`: the receiver refuses factorio-isr, not the batch. The batch is sent again
/// at the slowest pace (`backoff_max_ms`), each refusal counted, `/ready` saying why; once the
/// receiver takes it again nothing is lost and nothing was counted as rejected.
#[test]
fn unauthenticated_is_retried_at_the_slowest_pace_and_loses_nothing() {
    let rx = OtlpReceiver::start();
    let (_env, isr, admin, mut w) = following(&rx, 5, "");
    rx.fail_logs(1_000_000, tonic::Code::Unauthenticated);
    let batch: Vec<u64> = w.write_lines(5).collect();
    let refused = "reason=\"refused\"";
    assert!(
        isr.wait_for_stderr_count(refused, 2, ARRIVE),
        "{}",
        isr.stderr_tail()
    );
    let (status, ready) = support::http_get(admin, "/ready");
    assert!(
        status == 503 && ready.contains("refused") && ready.contains("Unauthenticated"),
        "{status} {ready}"
    );
    rx.stop_failing_logs();
    expect_seqs(&rx, &isr, "w1", &batch);
    assert!(support::wait_until(
        || support::http_get(admin, "/ready").0 == 200,
        ARRIVE
    ));
    // Each refusal waited the longest backoff, not the short one of a transient failure.
    let stderr = isr.stderr();
    let waits: Vec<&str> = stderr.lines().filter(|l| l.contains(refused)).collect();
    assert!(
        waits.len() >= 2 && waits.iter().all(|l| l.ends_with(" retry_in_ms=200")),
        "{waits:?}"
    );
    let metrics = support::wait_metric(
        admin,
        "factorio_isr_otlp_logs_events_sent_total",
        w.written().len() as f64,
        ARRIVE,
    );
    let refusals = metric_sample(
        &metrics,
        "factorio_isr_otlp_logs_requests_total{result=\"refused\"}",
    )
    .unwrap_or(0.0);
    assert!(refusals >= 2.0, "{metrics}");
    assert_eq!(
        metric_sample(
            &metrics,
            "factorio_isr_errors_total{component=\"otlp_logs\",error_type=\"refused\"}"
        ),
        Some(refusals),
        "{metrics}"
    );
    assert_eq!(
        metric_sample(&metrics, "factorio_isr_otlp_logs_events_rejected_total"),
        Some(0.0)
    );
}
