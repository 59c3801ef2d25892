//! Self-test of the OTLP/gRPC trace receiver the tracing tests use, driven by the real
//! OpenTelemetry SDK and OTLP exporter.

#[path = "support/otlp.rs"]
mod otlp;

use std::time::{Duration, Instant};

use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Array, Context, KeyValue, StringValue, Value};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

use otlp::{OtlpReceiver, ReceivedSpan, dangling_parents};

const WAIT: Duration = Duration::from_secs(10);

/// A tracer provider exporting over OTLP/gRPC to `endpoint` through a batch processor, the way
/// the application sets one up. Must be called inside a tokio runtime: the tonic channel is
/// created here.
fn provider(endpoint: String) -> SdkTracerProvider {
    let exporter = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .expect("build the OTLP span exporter");
    SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name("selftest").build())
        .with_batch_exporter(exporter)
        .build()
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} in {spans:#?}"))
}

fn names(spans: &[ReceivedSpan]) -> Vec<&str> {
    spans.iter().map(|s| s.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receives_parent_and_child_from_the_sdk() {
    let receiver = OtlpReceiver::start();
    assert!(receiver.endpoint().starts_with("http://127.0.0.1:"));
    let provider = provider(receiver.endpoint());
    let tracer = provider.tracer("selftest-scope");

    let parent = tracer.start("parent");
    let parent_cx = parent.span_context().clone();
    let cx = Context::current_with_span(parent);
    let mut child = tracer
        .span_builder("child")
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("text", "hello"),
            KeyValue::new("count", 42_i64),
            KeyValue::new("ratio", 1.5_f64),
            KeyValue::new("whole", 2.0_f64),
            KeyValue::new("flag", true),
            KeyValue::new("ints", Value::Array(Array::I64(vec![1, 2]))),
            KeyValue::new(
                "strs",
                Value::Array(Array::String(vec![
                    StringValue::from("a"),
                    StringValue::from("b"),
                ])),
            ),
        ])
        .start_with_context(&tracer, &cx);
    child.set_attribute(KeyValue::new("late", "set after start"));
    let child_cx = child.span_context().clone();
    child.end();
    cx.span().end();

    provider.force_flush().expect("force_flush");
    assert!(
        receiver.wait_for(|s| s.len() >= 2, WAIT),
        "spans: {:#?}",
        receiver.spans()
    );
    provider.shutdown().expect("shutdown");

    let spans = receiver.spans();
    assert_eq!(spans.len(), 2, "{spans:#?}");
    assert!(receiver.requests() >= 1);
    let parent = named(&spans, "parent");
    let child = named(&spans, "child");

    // The ids are the SDK's own, in its textual form.
    assert_eq!(parent.trace_id, parent_cx.trace_id().to_string());
    assert_eq!(parent.span_id, parent_cx.span_id().to_string());
    assert_eq!(child.span_id, child_cx.span_id().to_string());
    assert_eq!(parent.trace_id.len(), 32);
    assert_eq!(parent.span_id.len(), 16);
    assert!(
        parent
            .trace_id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    );

    assert!(parent.is_root());
    assert_eq!(parent.parent_span_id, "");
    assert_eq!(child.parent_span_id, parent.span_id);
    assert_eq!(child.trace_id, parent.trace_id);

    assert_eq!(parent.kind, 1, "internal");
    assert_eq!(child.kind, 3, "client");
    assert!(parent.start_unix_nanos > 0);
    assert!(parent.start_unix_nanos <= child.start_unix_nanos);
    assert!(child.end_unix_nanos <= parent.end_unix_nanos);

    assert_eq!(child.attr("text"), Some("hello"));
    assert_eq!(child.attr("count"), Some("42"));
    assert_eq!(child.attr("ratio"), Some("1.5"));
    assert_eq!(child.attr("whole"), Some("2.0"));
    assert_eq!(child.attr("flag"), Some("true"));
    assert_eq!(child.attr("ints"), Some("[1,2]"));
    assert_eq!(child.attr("strs"), Some(r#"["a","b"]"#));
    assert_eq!(child.attr("late"), Some("set after start"));
    assert_eq!(child.attr("missing"), None);
    assert!(parent.attributes.is_empty(), "{:?}", parent.attributes);

    for span in [parent, child] {
        assert_eq!(span.resource_attr("service.name"), Some("selftest"));
        assert_eq!(span.scope, "selftest-scope");
    }

    let traces = receiver.traces();
    assert_eq!(traces.len(), 1);
    assert_eq!(names(&traces[&parent.trace_id]).len(), 2);
    assert_eq!(dangling_parents(&spans), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_collector_rejects_then_recovers() {
    let receiver = OtlpReceiver::start();
    let provider = provider(receiver.endpoint());
    let tracer = provider.tracer("selftest-scope");

    receiver.set_failing(true);
    tracer.start("lost").end();
    let flushed = provider.force_flush();
    assert!(
        flushed.is_err(),
        "export to a failing collector succeeded: {flushed:?}"
    );
    let attempts = receiver.requests();
    assert!(attempts >= 1, "the exporter never reached the receiver");
    assert!(receiver.spans().is_empty(), "{:#?}", receiver.spans());

    receiver.set_failing(false);
    tracer.start("after-recovery").end();
    provider.force_flush().expect("force_flush after recovery");
    assert!(
        receiver.wait_for(|s| !s.is_empty(), WAIT),
        "nothing arrived after recovery"
    );
    provider.shutdown().expect("shutdown");

    // The batch that failed is dropped by the SDK, not resent.
    assert_eq!(names(&receiver.spans()), ["after-recovery"]);
    assert!(receiver.requests() > attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_stops_promptly_with_a_client_still_connected() {
    let receiver = OtlpReceiver::start();
    let provider = provider(receiver.endpoint());
    provider.tracer("selftest-scope").start("one").end();
    provider.force_flush().expect("force_flush");
    assert!(receiver.wait_for(|s| s.len() == 1, WAIT));

    // The exporter's connection is still open: dropping must not wait for it to go away.
    let started = Instant::now();
    drop(receiver);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drop took {:?}",
        started.elapsed()
    );
    drop(provider);
}

#[test]
fn wait_for_times_out_when_nothing_arrives() {
    let receiver = OtlpReceiver::start();
    let started = Instant::now();
    assert!(!receiver.wait_for(|s| !s.is_empty(), Duration::from_millis(200)));
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(receiver.wait_for(|s| s.is_empty(), Duration::ZERO));
    assert_eq!(receiver.requests(), 0);
    assert!(receiver.traces().is_empty());
}

fn span(trace: &str, id: &str, parent: &str, name: &str) -> ReceivedSpan {
    ReceivedSpan {
        trace_id: trace.repeat(32),
        span_id: id.repeat(16),
        parent_span_id: parent.repeat(16),
        name: name.into(),
        kind: 1,
        start_unix_nanos: 1,
        end_unix_nanos: 2,
        attributes: Vec::new(),
        resource: Vec::new(),
        scope: String::new(),
    }
}

#[test]
fn dangling_parents_finds_missing_and_cross_trace_parents() {
    let good = [span("1", "a", "", "root"), span("1", "b", "a", "child")];
    assert!(dangling_parents(&good).is_empty());
    // Parents need not arrive first.
    let reversed = [span("1", "b", "a", "child"), span("1", "a", "", "root")];
    assert!(dangling_parents(&reversed).is_empty());

    let bad = [
        span("1", "a", "", "root"),
        span("1", "b", "f", "orphan"),
        span("2", "c", "a", "stray"),
    ];
    let problems = dangling_parents(&bad);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems[0].contains("\"orphan\""), "{}", problems[0]);
    assert!(
        !problems[0].contains("a span with that id"),
        "{}",
        problems[0]
    );
    assert!(problems[1].contains("\"stray\""), "{}", problems[1]);
    assert!(
        problems[1].contains(&format!("is in trace {}", "1".repeat(32))),
        "{}",
        problems[1]
    );
}
