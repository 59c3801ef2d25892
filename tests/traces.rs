//! factorio-isr's traces, end to end: the real `factorio-isr run` with `TRACES_ENABLED=true`
//! exports its spans over OTLP/gRPC to a receiver (`support::otlp`, built on the
//! opentelemetry-proto tonic server). One trace per batch, a span per stage with the right
//! parents, the same trace id in the events Logstash receives, in factorio-isr's own JSON log
//! lines and in Discord's `traceparent` header; and a collector that is down costs nothing.

mod support;

use std::collections::HashSet;
use std::fs;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::discord::{FakeConfig, FakeDiscord};
use support::logstash::Logstash;
use support::otlp::{OtlpReceiver, ReceivedSpan, dangling_parents};
use support::{Env, IsrCmd, SeqWriter};

const ARRIVE: Duration = Duration::from_secs(30);

const STAGES: [&str; 6] = [
    "batch",
    "tail.read",
    "frame",
    "match",
    "route",
    "sink.logstash",
];

/// A test's directories: fast timings, small backoffs, `--from-beginning`.
fn traces_env() -> Env {
    Env::builder().logstash("").start_at_beginning().build()
}

/// `factorio-isr run` in `env` with traces exported to `endpoint`.
fn traced(env: &Env, endpoint: &str) -> IsrCmd {
    env.isr()
        .env("TRACES_ENABLED", "true")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
}

fn by_name<'a>(trace: &'a [ReceivedSpan], name: &str) -> Option<&'a ReceivedSpan> {
    trace.iter().find(|s| s.name == name)
}

/// Traces that have every stage's span.
fn complete_traces(spans: &[ReceivedSpan]) -> Vec<Vec<ReceivedSpan>> {
    let mut traces: std::collections::BTreeMap<&str, Vec<ReceivedSpan>> = Default::default();
    for s in spans {
        traces.entry(&s.trace_id).or_default().push(s.clone());
    }
    traces
        .into_values()
        .filter(|t| STAGES.iter().all(|n| by_name(t, n).is_some()))
        .collect()
}

#[test]
fn every_stage_has_a_span_in_the_batch_trace_and_events_carry_its_ids() {
    let env = traces_env();
    let receiver = OtlpReceiver::start();
    let fake = Logstash::start();
    let mut isr = traced(&env, &receiver.endpoint())
        .logstash(fake.addr())
        .spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(200);
    assert!(
        fake.wait_for_seqs("w", w.written(), ARRIVE),
        "{}",
        isr.stderr()
    );
    assert!(
        receiver.wait_for(|spans| !complete_traces(spans).is_empty(), ARRIVE),
        "no complete trace; span names: {:?}\n{}",
        receiver
            .spans()
            .iter()
            .map(|s| s.name.clone())
            .collect::<HashSet<_>>(),
        isr.stderr()
    );
    let traces = complete_traces(&receiver.spans());
    let trace = &traces[0];
    let id = |n: &str| by_name(trace, n).unwrap().span_id.clone();
    let parent = |n: &str| by_name(trace, n).unwrap().parent_span_id.clone();
    assert_eq!(parent("batch"), "", "the batch span is the root");
    for child in ["tail.read", "frame", "match", "route", "sink.logstash"] {
        assert_eq!(parent(child), id("batch"), "{child} is a child of batch");
    }
    assert!(dangling_parents(&receiver.spans()).is_empty());
    let batch = by_name(trace, "batch").unwrap();
    assert_eq!(batch.attr("server"), Some("test"));
    assert!(
        batch
            .attr("file")
            .is_some_and(|f| f.ends_with("console.log"))
    );
    assert_eq!(batch.resource_attr("service.name"), Some("factorio-isr"));
    assert!(by_name(trace, "match").unwrap().attr("records").is_some());
    // The events of that batch carry the trace id and the match span's id.
    let events = fake.events();
    let traced: Vec<&Value> = events
        .iter()
        .filter(|e| e["trace_id"] == batch.trace_id.as_str())
        .collect();
    assert!(
        !traced.is_empty(),
        "no event carries trace {}",
        batch.trace_id
    );
    assert!(traced.iter().all(|e| e["span_id"] == id("match").as_str()));
    // The latency histogram's exemplars carry trace ids of delivered batches (OpenMetrics).
    let (status, om) = support::http_get_accept(
        isr.admin_addr(),
        "/metrics",
        "application/openmetrics-text; version=1.0.0",
    );
    assert_eq!(status, 200);
    let exemplar = om
        .lines()
        .filter(|l| l.starts_with("factorio_isr_event_latency_seconds_bucket"))
        .find_map(|l| l.split("trace_id=\"").nth(1)?.split('"').next())
        .unwrap_or_else(|| panic!("no exemplar in\n{om}"));
    assert!(
        events.iter().any(|e| e["trace_id"] == exemplar),
        "exemplar trace {exemplar} is no event's trace"
    );
    // Every event was traced (sample rate 1.0), and every trace id is one the receiver gets
    // (spans are exported in the background, a few seconds apart).
    let wanted: HashSet<String> = events
        .iter()
        .map(|e| e["trace_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(!wanted.contains(""), "an event without a trace id");
    let all_known = receiver.wait_for(
        |spans| {
            let known: HashSet<&str> = spans.iter().map(|s| s.trace_id.as_str()).collect();
            wanted.iter().all(|t| known.contains(t.as_str()))
        },
        ARRIVE,
    );
    assert!(all_known, "events carry traces the receiver never got");
    isr.sigterm();
    assert_eq!(
        isr.wait_exit(Duration::from_secs(15))
            .and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn json_log_lines_carry_the_trace_id_of_the_events_span() {
    let env = traces_env();
    let receiver = OtlpReceiver::start();
    let fake = Logstash::start();
    let mut isr = traced(&env, &receiver.endpoint())
        .logstash(fake.addr())
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info,factorio_isr=debug")
        .spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(50);
    assert!(
        fake.wait_for_seqs("w", w.written(), ARRIVE),
        "{}",
        isr.stderr()
    );
    let trace_ids: HashSet<String> = fake
        .events()
        .iter()
        .filter_map(|e| e["trace_id"].as_str().map(str::to_owned))
        .collect();
    assert!(!trace_ids.is_empty());
    let deadline = Instant::now() + ARRIVE;
    let line = loop {
        let stderr = isr.stderr();
        let found = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "Batch delivered.");
        if let Some(v) = found {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no JSON 'Batch delivered.' line:\n{stderr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let span = &line["span"];
    assert_eq!(span["name"], "sink.logstash", "{line}");
    let t = span["trace_id"].as_str().unwrap_or_default();
    assert!(
        trace_ids.contains(t),
        "log line trace `{t}` is not an event's trace: {line}"
    );
    assert_eq!(span["span_id"].as_str().map(str::len), Some(16), "{line}");
    // Every stderr line is JSON.
    for l in isr.stderr().lines() {
        assert!(serde_json::from_str::<Value>(l).is_ok(), "not JSON: {l}");
    }
    isr.sigterm();
    assert!(isr.wait_exit(Duration::from_secs(15)).is_some());
}

#[test]
fn a_collector_that_is_down_never_slows_the_pipeline() {
    let env = traces_env();
    // Nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let fake = Logstash::start();
    let mut isr = traced(&env, &format!("http://127.0.0.1:{port}"))
        .logstash(fake.addr())
        .spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    for _ in 0..10 {
        w.write_lines(5000);
    }
    assert!(
        fake.wait_for_seqs("w", w.written(), ARRIVE),
        "lines stopped while the collector is down:\n{}",
        isr.stderr()
    );
    let started = Instant::now();
    isr.sigterm();
    assert_eq!(
        isr.wait_exit(Duration::from_secs(15))
            .and_then(|s| s.code()),
        Some(0)
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "exit took {:?}",
        started.elapsed()
    );
}

#[test]
fn discord_requests_continue_the_trace_of_their_events() {
    let env = traces_env();
    let receiver = OtlpReceiver::start();
    let fake = Logstash::start();
    let discord = FakeDiscord::start(FakeConfig::default());
    let mut isr = traced(&env, &receiver.endpoint())
        .logstash(fake.addr())
        .env("DISCORD_WEBHOOK_URL", discord.webhook_url("main"))
        .spawn();
    let stamp = {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        chrono::DateTime::from_timestamp(secs, 0)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    fs::write(
        env.log("console.log"),
        format!("{stamp} [JOIN] tracy joined the game\n"),
    )
    .unwrap();
    assert!(
        discord.wait_for(|r| !r.is_empty(), ARRIVE),
        "{}",
        isr.stderr()
    );
    let request = &discord.requests()[0];
    let tp = request
        .header("traceparent")
        .expect("a traceparent header")
        .to_owned();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!((parts.len(), parts[0], parts[3]), (4, "00", "01"), "{tp}");
    // The join event's trace.
    assert!(fake.wait_until(|r| !r.events.is_empty(), ARRIVE));
    let event = fake
        .events()
        .into_iter()
        .find(|e| e["event_type"] == "player_join")
        .unwrap();
    assert_eq!(
        parts[1],
        event["trace_id"].as_str().unwrap(),
        "{tp} vs {event}"
    );
    // The sink.discord span is in that trace, under the match span.
    assert!(
        receiver.wait_for(|s| s.iter().any(|x| x.name == "sink.discord"), ARRIVE),
        "no sink.discord span"
    );
    let spans = receiver.spans();
    let sink = spans.iter().find(|s| s.name == "sink.discord").unwrap();
    assert_eq!(sink.trace_id, parts[1]);
    assert_eq!(sink.parent_span_id, event["span_id"].as_str().unwrap());
    assert_eq!(
        sink.span_id, parts[2],
        "the header names the sink.discord span"
    );
    assert_eq!(sink.attr("webhook"), Some("default"));
    isr.sigterm();
    assert!(isr.wait_exit(Duration::from_secs(15)).is_some());
}
