//! The Loki sink, end to end: the real `factorio-isr run --loki URL` follows real files and
//! pushes to a fake Loki (`support::loki`) that decodes the snappy protobuf push as Loki does,
//! checks labels and per-stream order, and answers 429/500/400 on demand or goes away.
//!
//! Every wait is bounded and waits for a state, never for time.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::loki::{ALLOWED_LABELS, FakeLoki};
use support::otlp::OtlpReceiver;
use support::{Env, SeqWriter, metric_sample};

/// How long events may take to arrive on a loaded machine with a debug build.
const ARRIVE: Duration = Duration::from_secs(60);

/// What identifies an event across sinks: its file, offset and type.
fn key(e: &Value) -> (String, u64, String) {
    (
        e["log"]["path"].as_str().unwrap_or_default().to_owned(),
        e["log"]["offset"].as_u64().unwrap_or(u64::MAX),
        e["event_type"].as_str().unwrap_or_default().to_owned(),
    )
}

fn millis_of(rfc3339: &str) -> i128 {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("bad @timestamp {rfc3339}: {e}"));
    i128::from(t.timestamp_millis())
}

/// Every event of the fixtures reaches Loki once, as its JSON line, with its time, the four
/// bounded labels matching the event, and the batch's trace id as structured metadata; each
/// push is a `loki.push` span under the batch's `sink.loki` span.
#[test]
fn fixture_events_arrive_with_bounded_labels_in_order_with_their_trace() {
    let env = Env::builder().start_at_beginning().build();
    // Lines without a date of their own are stamped when read: after this.
    let started_ms = i128::from(chrono::Utc::now().timestamp_millis());
    let want = support::fixture_events(&env, support::FIXTURES);
    assert!(want.len() > 100, "the fixtures make {} events", want.len());
    let loki = FakeLoki::start();
    let traces = OtlpReceiver::start();
    let isr = env
        .isr()
        .arg("--loki")
        .arg(loki.url())
        .env("TRACES_ENABLED", "true")
        .env("TRACES_SAMPLE_RATE", "1.0")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", traces.endpoint())
        .spawn();
    assert!(
        loki.wait_for(|e| e.len() >= want.len(), ARRIVE),
        "{} of {} events arrived\n{}",
        loki.entries().len(),
        want.len(),
        isr.stderr_tail()
    );
    let got = loki.entries();
    assert!(loki.malformed().is_empty(), "{:?}", loki.malformed());
    assert!(loki.order_violations().is_empty());
    assert!(loki.bad_labels().is_empty(), "{:?}", loki.bad_labels());
    // Nothing on stdout: Loki replaces it.
    assert!(isr.events().is_empty(), "stdout carried events");

    let want_keys: BTreeMap<_, _> = want.iter().map(|e| (key(e), e)).collect();
    let mut seen = BTreeSet::new();
    let mut types = BTreeSet::new();
    for entry in &got {
        let e = &entry.json;
        let k = key(e);
        assert!(
            want_keys.contains_key(&k),
            "unexpected event {}",
            entry.line
        );
        assert!(seen.insert(k.clone()), "event twice: {k:?}");
        let expected = want_keys[&k];
        for field in ["event_type", "server", "severity", "message", "raw"] {
            assert_eq!(e[field], expected[field], "{field} of {}", entry.line);
        }
        let (at, want_at) = (
            millis_of(e["@timestamp"].as_str().unwrap()),
            millis_of(expected["@timestamp"].as_str().unwrap()),
        );
        assert!(
            at == want_at || (at >= started_ms && want_at >= started_ms),
            "@timestamp of {}: replay says {want_at}",
            entry.line
        );
        let labels: Vec<&str> = entry.labels.keys().map(String::as_str).collect();
        assert_eq!(labels, ALLOWED_LABELS, "labels of {}", entry.line);
        assert_eq!(entry.labels["server"], "test");
        assert_eq!(entry.labels["service"], "factorio-isr");
        assert_eq!(
            entry.labels["event_type"],
            e["event_type"].as_str().unwrap()
        );
        assert_eq!(entry.labels["severity"], e["severity"].as_str().unwrap());
        types.insert(entry.labels["event_type"].clone());
        assert_eq!(
            entry.unix_nanos,
            millis_of(e["@timestamp"].as_str().unwrap()) * 1_000_000,
            "time of {}",
            entry.line
        );
        let trace_id = e["trace_id"].as_str().expect("a sampled batch's trace id");
        assert_eq!(
            entry.metadata,
            vec![("trace_id".to_owned(), trace_id.to_owned())]
        );
    }
    assert_eq!(seen.len(), want.len());
    // One stream per server × type × severity, no more.
    assert!(
        loki.label_sets().len() <= types.len() * 5,
        "{:?}",
        loki.label_sets()
    );
    // Each push is a span under the batch's sink span.
    assert!(
        traces.wait_for(|s| s.iter().any(|s| s.name == "loki.push"), ARRIVE),
        "no loki.push span"
    );
    let spans = traces.spans();
    let by_id: HashMap<&str, &support::otlp::ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    for push in spans.iter().filter(|s| s.name == "loki.push") {
        let parent = by_id
            .get(push.parent_span_id.as_str())
            .unwrap_or_else(|| panic!("loki.push without its parent: {push:?}"));
        assert_eq!(parent.name, "sink.loki");
        assert_eq!(push.attr("status"), Some("ok"));
    }
}

/// A test's directories whose config has a `[loki]` section for `url` with small backoffs,
/// plus `lines`, and a 1 s drain at stop.
fn loki_env(url: &str, lines: &str) -> Env {
    Env::builder()
        .tail(&format!(
            "shutdown_timeout_ms = 1000\n[loki]\nurl = \"{url}\"\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n{lines}"
        ))
        .start_at_beginning()
        .build()
}

/// Waits until every line of `want` from writer `id` is in `loki`; panics with what is missing.
#[track_caller]
fn expect_seqs(loki: &FakeLoki, isr: &support::Isr, id: &str, want: &[u64]) {
    let ok = loki.wait_for(
        |entries| {
            let got: BTreeSet<u64> = support::loki::seqs_of(entries, id).into_iter().collect();
            want.iter().all(|s| got.contains(s))
        },
        ARRIVE,
    );
    if !ok {
        let got: BTreeSet<u64> = loki.seqs(id).into_iter().collect();
        let missing: Vec<_> = want.iter().filter(|s| !got.contains(s)).collect();
        panic!(
            "{} lines missing in Loki, first {:?}\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            isr.stderr_tail()
        );
    }
}

/// Loki goes away twice while lines are written: every line arrives once it is back (the
/// batch in flight is pushed again), and `/ready` says why while it is away.
#[test]
fn a_loki_restart_loses_nothing() {
    let mut loki = FakeLoki::start();
    let addr = loki.addr();
    let env = loki_env(&loki.url(), "");
    let isr = env.isr().spawn();
    let admin = isr.admin_addr();
    let mut w = SeqWriter::create(env.log("console.log"), "w1");
    let mut stored: Vec<u64> = Vec::new();
    w.write_lines(50);
    expect_seqs(&loki, &isr, "w1", w.written());
    for _ in 0..2 {
        stored.extend(loki.seqs("w1"));
        drop(loki);
        // Lines written while Loki is away are pushed, refused, and pushed again.
        w.write_lines(50);
        assert!(
            support::wait_ready_says(admin, 503, "Loki", ARRIVE),
            "/ready does not say Loki is away\n{}",
            isr.stderr_tail()
        );
        loki = FakeLoki::start_on(addr);
        w.write_lines(50);
        let want: Vec<u64> = w
            .written()
            .iter()
            .copied()
            .filter(|s| !stored.contains(s))
            .collect();
        expect_seqs(&loki, &isr, "w1", &want);
    }
    stored.extend(loki.seqs("w1"));
    let all: BTreeSet<u64> = stored.iter().copied().collect();
    let written: BTreeSet<u64> = w.written().iter().copied().collect();
    assert_eq!(all, written, "lost lines");
    // Loki stores a push before factorio-isr reads its answer: wait for that.
    assert!(support::wait_ready_says(admin, 200, "", ARRIVE));
    // The last batch is counted once its answer is read, after the receiver stored it.
    let metrics = support::wait_metric(
        admin,
        "factorio_isr_loki_events_sent_total",
        stored.len() as f64,
        ARRIVE,
    );
    assert_eq!(
        metric_sample(&metrics, "factorio_isr_loki_events_sent_total"),
        Some(stored.len() as f64)
    );
    assert!(
        metric_sample(
            &metrics,
            "factorio_isr_loki_requests_total{result=\"unreachable\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );
}

/// 500s and a 429 with `Retry-After` are retried (the 429 not before its second is up) and
/// lose nothing; a 400 drops that one batch, counted and logged with Loki's reason, and later
/// lines go on arriving.
#[test]
fn retryable_answers_are_retried_and_a_bad_batch_is_dropped_not_wedged() {
    let loki = FakeLoki::start();
    let env = loki_env(&loki.url(), "");
    let isr = env.isr().spawn();
    let admin = isr.admin_addr();
    let mut w = SeqWriter::create(env.log("console.log"), "w1");
    w.write_lines(10);
    expect_seqs(&loki, &isr, "w1", w.written());

    loki.fail_next(2, 500, None);
    loki.fail_next(1, 429, Some(1));
    let before = loki.answers().len();
    let batch = w.write_lines(10);
    let want: Vec<u64> = batch.clone().collect();
    expect_seqs(&loki, &isr, "w1", &want);
    // Sent again once after each failure, then taken (the lines may have come in two
    // batches: the second is taken at once).
    let answers = loki.answers()[before..].to_vec();
    assert!(
        answers.starts_with(&[500, 500, 429, 204]) && answers[4..].iter().all(|a| *a == 204),
        "{answers:?}"
    );
    // The wait after the 429 is its Retry-After (1 s), longer than any backoff here
    // (200 ms at most): the sink logs the wait it chose before it waits, so no clock is
    // read here.
    let rate_limited = "reason=\"rate_limited\"";
    assert!(
        isr.wait_for_stderr(rate_limited, ARRIVE),
        "{}",
        isr.stderr_tail()
    );
    let stderr = isr.stderr();
    let waits: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(rate_limited))
        .collect();
    assert!(
        waits.len() == 1 && waits[0].ends_with(" retry_in_ms=1000"),
        "the 429's Retry-After was not honoured: {waits:?}\n{}",
        isr.stderr_tail()
    );

    // A 400: that batch is dropped, and the pipeline goes on.
    loki.fail_next(1, 400, None);
    let before = loki.requests();
    let dropped: Vec<u64> = w.write_lines(5).collect();
    assert!(loki.wait_requests(before + 1, ARRIVE));
    assert!(
        isr.wait_for_stderr("fake Loki answers 400 on purpose", ARRIVE),
        "Loki's reason is not logged\n{}",
        isr.stderr_tail()
    );
    let after: Vec<u64> = w.write_lines(5).collect();
    expect_seqs(&loki, &isr, "w1", &after);
    let got = loki.seqs("w1");
    assert!(
        dropped.iter().all(|s| !got.contains(s)),
        "the 400 batch was sent again"
    );
    let metrics = support::http_get(admin, "/metrics").1;
    assert_eq!(
        metric_sample(&metrics, "factorio_isr_loki_events_rejected_total"),
        Some(dropped.len() as f64),
        "{metrics}"
    );
    for (result, n) in [
        ("server_error", 2.0),
        ("rate_limited", 1.0),
        ("rejected", 1.0),
    ] {
        assert_eq!(
            metric_sample(
                &metrics,
                &format!("factorio_isr_loki_requests_total{{result=\"{result}\"}}")
            ),
            Some(n),
            "{result}\n{metrics}"
        );
        assert_eq!(
            metric_sample(
                &metrics,
                &format!("factorio_isr_errors_total{{component=\"loki\",error_type=\"{result}\"}}")
            ),
            Some(n),
            "{result}\n{metrics}"
        );
    }
}

/// factorio-isr is stopped while Loki answers 500: the checkpoint has not moved past the
/// batch Loki never took, so the next run sends it.
#[test]
fn a_batch_loki_never_took_is_sent_by_the_next_run() {
    let loki = FakeLoki::start();
    let env = loki_env(&loki.url(), "");
    let mut isr = env.isr().spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w1");
    w.write_lines(5);
    expect_seqs(&loki, &isr, "w1", w.written());
    loki.fail_next(1_000_000, 500, None);
    let before = loki.requests();
    w.write_lines(20);
    assert!(
        loki.wait_requests(before + 2, ARRIVE),
        "{}",
        isr.stderr_tail()
    );
    isr.stop(Duration::from_secs(30));
    let addr = loki.addr();
    drop(loki);
    let loki = FakeLoki::start_on(addr);
    let isr = env.isr().spawn();
    expect_seqs(&loki, &isr, "w1", &w.written()[5..]);
}

/// The tenant and the basic-authentication password reach Loki in their headers, and the
/// password never reaches factorio-isr's logs.
#[test]
fn tenant_and_credentials_are_sent_and_the_password_is_never_logged() {
    let loki = FakeLoki::start();
    loki.require_tenant("factorio");
    // "isr:pa55-SECRET" in base64.
    loki.require_auth("Basic aXNyOnBhNTUtU0VDUkVU");
    let pre = Env::builder().build();
    let password = pre.root().join("loki-password");
    fs::write(&password, "pa55-SECRET\n").unwrap();
    let env = loki_env(
        &loki.url(),
        &format!(
            "tenant = \"factorio\"\nusername = \"isr\"\npassword_file = \"{}\"\n",
            password.display()
        ),
    );
    let isr = env.isr().spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w1");
    w.write_lines(3);
    expect_seqs(&loki, &isr, "w1", w.written());
    assert_eq!(loki.last_seen().tenant.as_deref(), Some("factorio"));
    // A refused password is retried, and its reason shown, without the password.
    loki.require_auth("Basic other");
    w.write_lines(1);
    assert!(
        isr.wait_for_stderr("bad credentials", ARRIVE),
        "{}",
        isr.stderr_tail()
    );
    let (_, ready) = isr.admin_get("/ready");
    assert!(ready.contains("refused"), "{ready}");
    let (_, metrics) = isr.admin_get("/metrics");
    for text in [isr.stderr(), ready, metrics] {
        assert!(!text.contains("pa55-SECRET"), "the password leaked");
        assert!(!text.contains("aXNyOnBhNTUtU0VDUkVU"), "the header leaked");
    }
}

/// `check` names the Loki secret file it cannot read, and a bad `LOKI_URL` or `--loki` is
/// refused naming the variable or flag, before anything runs.
#[test]
fn unusable_loki_settings_are_refused_with_the_key_and_what_to_do() {
    let env = Env::builder()
        .tail("[loki]\nurl = \"http://loki:3100\"\nbearer_token_file = \"no-such-token\"")
        .build();
    let config = env.root().join("factorio-isr.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("LOKI_URL")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("loki.bearer_token_file") && err.contains("no-such-token"),
        "{err}"
    );
    let bad_url = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["check", "--config"])
        .arg(&config)
        .env("LOKI_URL", "loki:3100")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad_url.stderr);
    assert_ne!(bad_url.status.code(), Some(0));
    assert!(err.contains("LOKI_URL") && err.contains("http://"), "{err}");
    let flag = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["run", "--loki", "http://user:pw@loki:3100"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&flag.stderr);
    assert_eq!(flag.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--loki") && err.contains("credentials"),
        "{err}"
    );
    assert!(!err.contains("pw@"), "the password is echoed: {err}");
}
