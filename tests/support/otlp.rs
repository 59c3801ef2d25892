//! An OTLP/gRPC trace receiver for tests: a real `TraceService` served by tonic on
//! `127.0.0.1:0`, in its own thread with its own tokio runtime, that keeps every span it is sent,
//! flattened into a [`ReceivedSpan`] for assertions.
//!
//! Point an OTLP exporter at [`OtlpReceiver::endpoint`] (the value `OTEL_EXPORTER_OTLP_ENDPOINT`
//! takes), let it export, then [`OtlpReceiver::wait_for`] what should have arrived. With
//! [`OtlpReceiver::set_failing`] the receiver plays a collector in trouble and answers every
//! export with gRPC `UNAVAILABLE`, keeping nothing.
//!
//! It is an OTLP logs receiver too (`LogsService`): every log record it is sent is kept as a
//! [`ReceivedLog`] with each field the OTLP logs sink fills in, its attributes with their OTLP
//! types. [`OtlpReceiver::fail_logs`] answers the next log exports with a gRPC status and keeps
//! nothing of them, [`OtlpReceiver::partial_success_next`] with a partial success;
//! [`OtlpReceiver::start_on`] starts a receiver on a port a dropped one used
//! (a restart).

// Shared by test crates that each use part of it, and included on its own by the pipeline
// benchmark: it uses nothing else of `tests/support`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use tokio::sync::oneshot;

/// How long a dropped receiver gives open connections to finish before its runtime is torn
/// down regardless.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// A span as received, flattened for assertions.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    /// 32 lowercase hex characters, the same text as `TraceId::to_string()`.
    pub trace_id: String,
    /// 16 lowercase hex characters, the same text as `SpanId::to_string()`.
    pub span_id: String,
    /// 16 lowercase hex characters, or empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// The OTLP `SpanKind` number: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer,
    /// 5 consumer.
    pub kind: i32,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// The span's attributes in the order sent, values rendered as text: a string as itself, an
    /// int, double or bool as its JSON text (`42`, `1.5`, `true`), an array or key-value list
    /// as JSON (`[1,2]`, `["a","b"]`, `{"k":"v"}`), bytes as lowercase hex, no value as "".
    pub attributes: Vec<(String, String)>,
    /// The attributes of the resource the span came with (`service.name`, ...), rendered the
    /// same way.
    pub resource: Vec<(String, String)>,
    /// The name of the instrumentation scope the span came with.
    pub scope: String,
}

impl ReceivedSpan {
    /// The text of the span's first attribute named `key`.
    pub fn attr(&self, key: &str) -> Option<&str> {
        lookup(&self.attributes, key)
    }

    /// The text of the first resource attribute named `key`.
    pub fn resource_attr(&self, key: &str) -> Option<&str> {
        lookup(&self.resource, key)
    }

    /// Whether this span has no parent.
    pub fn is_root(&self) -> bool {
        self.parent_span_id.is_empty()
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A log record as received.
#[derive(Clone, Debug)]
pub struct ReceivedLog {
    pub time_unix_nano: u64,
    pub observed_time_unix_nano: u64,
    pub severity_number: i32,
    pub severity_text: String,
    /// The body as JSON (a string body is a JSON string).
    pub body: serde_json::Value,
    pub event_name: String,
    /// Attributes with their OTLP types kept: a string as a JSON string, an int as a JSON
    /// integer, a double as a JSON float, a bool as a JSON bool.
    pub attributes: Vec<(String, serde_json::Value)>,
    pub trace_id: String,
    pub span_id: String,
    pub flags: u32,
    pub resource: Vec<(String, String)>,
    pub scope: String,
}

impl ReceivedLog {
    /// The first attribute named `key`.
    pub fn attr(&self, key: &str) -> Option<&serde_json::Value> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The text of the first resource attribute named `key`.
    pub fn resource_attr(&self, key: &str) -> Option<&str> {
        lookup(&self.resource, key)
    }
}

/// What the server thread and the test share.
#[derive(Default)]
struct Shared {
    logs: Mutex<Vec<ReceivedLog>>,
    /// Signalled whenever `logs` grows.
    logs_arrived: Condvar,
    log_requests: AtomicUsize,
    /// gRPC codes to answer the next log exports with.
    log_failures: Mutex<std::collections::VecDeque<tonic::Code>>,
    /// Partial successes (rejected records, message) to answer the next log exports with.
    log_partials: Mutex<std::collections::VecDeque<(i64, String)>>,
    spans: Mutex<Vec<ReceivedSpan>>,
    /// Signalled whenever `spans` grows.
    arrived: Condvar,
    requests: AtomicUsize,
    failing: AtomicBool,
}

impl Shared {
    fn spans(&self) -> MutexGuard<'_, Vec<ReceivedSpan>> {
        // A panicking test thread must not hide what arrived from the others.
        self.spans.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Collector(Arc<Shared>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.requests.fetch_add(1, Ordering::SeqCst);
        if self.0.failing.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable(
                "test collector is failing on purpose",
            ));
        }
        let received = flatten(request.into_inner());
        if !received.is_empty() {
            self.0.spans().extend(received);
            self.0.arrived.notify_all();
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.log_requests.fetch_add(1, Ordering::SeqCst);
        let failure = self
            .0
            .log_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front();
        if let Some(code) = failure {
            return Err(tonic::Status::new(code, "test receiver fails on purpose"));
        }
        let partial = self
            .0
            .log_partials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .map(|(rejected, message)| ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: message,
            });
        let received = flatten_logs(request.into_inner());
        if !received.is_empty() {
            self.0
                .logs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(received);
            self.0.logs_arrived.notify_all();
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: partial,
        }))
    }
}

fn flatten_logs(request: ExportLogsServiceRequest) -> Vec<ReceivedLog> {
    let mut out = Vec::new();
    for resource_logs in request.resource_logs {
        let resource = resource_logs
            .resource
            .map(|r| render_pairs(&r.attributes))
            .unwrap_or_default();
        for scope_logs in resource_logs.scope_logs {
            let scope = scope_logs.scope.map(|s| s.name).unwrap_or_default();
            for r in scope_logs.log_records {
                out.push(ReceivedLog {
                    time_unix_nano: r.time_unix_nano,
                    observed_time_unix_nano: r.observed_time_unix_nano,
                    severity_number: r.severity_number,
                    severity_text: r.severity_text,
                    body: to_json(r.body.as_ref()),
                    event_name: r.event_name,
                    attributes: r
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), to_json(kv.value.as_ref())))
                        .collect(),
                    trace_id: hex(&r.trace_id),
                    span_id: hex(&r.span_id),
                    flags: r.flags,
                    resource: resource.clone(),
                    scope: scope.clone(),
                });
            }
        }
    }
    out
}

fn flatten(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| render_pairs(&r.attributes))
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for span in scope_spans.spans {
                out.push(ReceivedSpan {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                    attributes: render_pairs(&span.attributes),
                    resource: resource.clone(),
                    scope: scope.clone(),
                });
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn render_pairs(pairs: &[KeyValue]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
        .collect()
}

fn render(value: Option<&AnyValue>) -> String {
    match to_json(value) {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

fn to_json(value: Option<&AnyValue>) -> serde_json::Value {
    use serde_json::Value as J;
    match value.and_then(|v| v.value.as_ref()) {
        None | Some(Value::StringValueStrindex(_)) => J::Null,
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(J::Number)
            .unwrap_or_else(|| J::String(d.to_string())),
        Some(Value::ArrayValue(a)) => J::Array(a.values.iter().map(|v| to_json(Some(v))).collect()),
        Some(Value::KvlistValue(l)) => J::Object(
            l.values
                .iter()
                .map(|kv| (kv.key.clone(), to_json(kv.value.as_ref())))
                .collect(),
        ),
        Some(Value::BytesValue(b)) => J::String(hex(b)),
    }
}

/// A running OTLP/gRPC trace receiver. Dropping it stops the server.
pub struct OtlpReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Starts a receiver on a free port of 127.0.0.1; it accepts exports as soon as this
    /// returns.
    pub fn start() -> OtlpReceiver {
        OtlpReceiver::start_on("127.0.0.1:0".parse().expect("an address"))
    }

    /// Starts a receiver on `addr` (the port of a receiver that was dropped: a restart),
    /// waiting up to 10 s for the port to be free.
    pub fn start_on(addr: SocketAddr) -> OtlpReceiver {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match std::net::TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("bind the OTLP receiver on {addr}: {e}"),
            }
        };
        let addr = listener.local_addr().expect("OTLP receiver address");
        listener
            .set_nonblocking(true)
            .expect("make the OTLP receiver's socket non-blocking");
        let shared = Arc::new(Shared::default());
        let service = TraceServiceServer::new(Collector(Arc::clone(&shared)))
            .max_decoding_message_size(64 * 1024 * 1024);
        let logs_service = LogsServiceServer::new(Collector(Arc::clone(&shared)))
            .max_decoding_message_size(64 * 1024 * 1024);
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("otlp-receiver".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("OTLP receiver runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener)
                        .expect("register the OTLP receiver's socket");
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    let (drain, drained) = oneshot::channel::<()>();
                    let server = tonic::transport::Server::builder()
                        .add_service(service)
                        .add_service(logs_service)
                        .serve_with_incoming_shutdown(incoming, async {
                            let _ = drained.await;
                        });
                    tokio::pin!(server);
                    tokio::select! {
                        result = &mut server => {
                            if let Err(e) = result {
                                eprintln!("OTLP receiver stopped: {e}");
                            }
                            return;
                        }
                        _ = stopped => {}
                    }
                    let _ = drain.send(());
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, server).await;
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("spawn the OTLP receiver thread");
        OtlpReceiver {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The address exporters should send to, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the receiver listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every span kept so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.shared.spans().clone()
    }

    /// How many Export calls arrived, counting those answered with an error while failing.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Waits until `pred` holds for the spans kept so far, or `timeout` passes; returns whether
    /// it held.
    pub fn wait_for(&self, pred: impl Fn(&[ReceivedSpan]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut spans = self.shared.spans();
        loop {
            if pred(&spans) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            spans = self
                .shared
                .arrived
                .wait_timeout(spans, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The spans kept so far grouped by trace id, each trace's spans in arrival order.
    pub fn traces(&self) -> BTreeMap<String, Vec<ReceivedSpan>> {
        let mut traces: BTreeMap<String, Vec<ReceivedSpan>> = BTreeMap::new();
        for span in self.shared.spans().iter() {
            traces
                .entry(span.trace_id.clone())
                .or_default()
                .push(span.clone());
        }
        traces
    }

    /// Every log record kept so far, in arrival order.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.shared
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many log exports arrived, counting those answered with an error.
    pub fn log_requests(&self) -> usize {
        self.shared.log_requests.load(Ordering::SeqCst)
    }

    /// Answers the next `n` log exports with `code`, keeping nothing of them.
    pub fn fail_logs(&self, n: usize, code: tonic::Code) {
        let mut failures = self
            .shared
            .log_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        failures.extend(std::iter::repeat_n(code, n));
    }

    /// Forgets the failures [`OtlpReceiver::fail_logs`] queued and not yet answered.
    pub fn stop_failing_logs(&self) {
        self.shared
            .log_failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Answers the next log export (after the failures queued) with a partial success that
    /// names `rejected` records and `message`; it keeps every record all the same.
    pub fn partial_success_next(&self, rejected: i64, message: &str) {
        self.shared
            .log_partials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back((rejected, message.to_owned()));
    }

    /// Waits until `pred` holds for the log records kept so far, or `timeout` passes. `pred`
    /// runs with the records locked: it must not call the receiver.
    pub fn wait_for_logs(&self, pred: impl Fn(&[ReceivedLog]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut logs = self.shared.logs.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if pred(&logs) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            logs = self
                .shared
                .logs_arrived
                .wait_timeout(logs, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// While `fail` is set, answers every export with gRPC `UNAVAILABLE` and keeps nothing.
    pub fn set_failing(&self, fail: bool) {
        self.shared.failing.store(fail, Ordering::SeqCst);
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checks that every span's parent, if it has one, was received in the same trace; returns one
/// line per span whose parent is missing.
pub fn dangling_parents(spans: &[ReceivedSpan]) -> Vec<String> {
    let known: HashSet<(&str, &str)> = spans
        .iter()
        .map(|s| (s.trace_id.as_str(), s.span_id.as_str()))
        .collect();
    let trace_of: HashMap<&str, &str> = spans
        .iter()
        .map(|s| (s.span_id.as_str(), s.trace_id.as_str()))
        .collect();
    spans
        .iter()
        .filter(|s| {
            !s.is_root() && !known.contains(&(s.trace_id.as_str(), s.parent_span_id.as_str()))
        })
        .map(|s| {
            let mut problem = format!(
                "span {:?} ({}) in trace {} has parent {}, which is not in that trace",
                s.name, s.span_id, s.trace_id, s.parent_span_id
            );
            if let Some(other) = trace_of.get(s.parent_span_id.as_str()) {
                problem.push_str(&format!(" (a span with that id is in trace {other})"));
            }
            problem
        })
        .collect()
}
