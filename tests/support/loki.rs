//! A fake Loki: `POST /loki/api/v1/push` with a snappy-compressed protobuf `PushRequest`, the
//! way Promtail pushes, decoded with message definitions written here from Loki's `push.proto`
//! (not the sink's), and checked as Loki checks:
//!
//! - `Content-Type: application/x-protobuf`, a body that snappy (block format) and protobuf
//!   decode, else `400`;
//! - every stream's label text parses (`{name="value", …}`), else `400`; the fake also records
//!   any label name outside the bounded set (`service`, `server`, `event_type`, `severity`)
//!   and every distinct label set, for the tests to bound the cardinality;
//! - every stream's entries in time order within the request, else `400` "entry out of
//!   order" (recorded as a violation);
//! - with [`FakeLoki::require_tenant`] / [`FakeLoki::require_auth`], a missing or wrong
//!   `X-Scope-OrgID` or `Authorization` is `401`.
//!
//! Test controls: [`FakeLoki::fail_next`] answers the next requests with a status (429 with
//! `Retry-After`, 500, 400 …) and keeps nothing of them. Dropping the fake closes its socket;
//! [`FakeLoki::start_on`] starts a new one on the same port: a Loki restart.
//!
//! It runs on 127.0.0.1 on its own thread with its own tokio runtime.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;

use super::ServerThread;

/// Loki's `push.proto`, as the fake reads it.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<Stream>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Stream {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<Entry>,
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPair>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPair {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// The label names factorio-isr may use.
pub const ALLOWED_LABELS: [&str; 4] = ["event_type", "server", "service", "severity"];

/// One entry as stored.
#[derive(Clone, Debug)]
pub struct Entry {
    pub labels: BTreeMap<String, String>,
    pub unix_nanos: i128,
    /// The line, parsed as JSON (`Value::Null` when it is not JSON).
    pub json: serde_json::Value,
    pub line: String,
    pub metadata: Vec<(String, String)>,
}

/// What a request with headers sent.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub tenant: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Default)]
struct Inner {
    entries: Vec<Entry>,
    requests: u64,
    /// The status of every answer, in order.
    answers: Vec<u16>,
    /// Requests answered 2xx.
    accepted: u64,
    /// Statuses to answer the next requests with (and `Retry-After` seconds).
    failures: VecDeque<(u16, Option<u64>)>,
    /// Label sets seen.
    label_sets: BTreeSet<String>,
    /// Label names outside [`ALLOWED_LABELS`].
    bad_labels: BTreeSet<String>,
    /// Streams whose entries went back in time within a request.
    order_violations: Vec<String>,
    /// Requests refused as malformed, with the reason.
    malformed: Vec<String>,
    last: Seen,
    tenant: Option<String>,
    auth: Option<String>,
}

struct Shared {
    inner: Mutex<Inner>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running fake Loki.
pub struct FakeLoki {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _server: ServerThread,
}

impl FakeLoki {
    /// A fake on an OS-assigned port.
    pub fn start() -> FakeLoki {
        FakeLoki::start_on("127.0.0.1:0".parse().unwrap())
    }

    /// A fake on `addr` (the port of a fake that was dropped: a restart).
    pub fn start_on(addr: SocketAddr) -> FakeLoki {
        let listener = super::bind_retrying(addr, "the fake Loki");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            arrived: Condvar::new(),
        });
        let app = Router::new()
            .route("/loki/api/v1/push", post(push))
            .with_state(shared.clone());
        FakeLoki {
            addr,
            shared,
            _server: super::serve_axum("fake-loki", listener, app),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next `n` requests with `status` (and `Retry-After: retry_after_s`), keeping
    /// nothing of them.
    pub fn fail_next(&self, n: usize, status: u16, retry_after_s: Option<u64>) {
        let mut inner = self.shared.lock();
        for _ in 0..n {
            inner.failures.push_back((status, retry_after_s));
        }
    }

    /// Requests must carry `X-Scope-OrgID: tenant`.
    pub fn require_tenant(&self, tenant: &str) {
        self.shared.lock().tenant = Some(tenant.to_owned());
    }

    /// Requests must carry `Authorization: value`.
    pub fn require_auth(&self, value: &str) {
        self.shared.lock().auth = Some(value.to_owned());
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.shared.lock().entries.clone()
    }

    /// The sequence numbers of writer `id`'s chat events stored, in arrival order.
    pub fn seqs(&self, id: &str) -> Vec<u64> {
        seqs_of(&self.entries(), id)
    }

    pub fn requests(&self) -> u64 {
        self.shared.lock().requests
    }

    /// The status of every answer so far, in order.
    pub fn answers(&self) -> Vec<u16> {
        self.shared.lock().answers.clone()
    }

    pub fn accepted(&self) -> u64 {
        self.shared.lock().accepted
    }

    pub fn label_sets(&self) -> BTreeSet<String> {
        self.shared.lock().label_sets.clone()
    }

    pub fn bad_labels(&self) -> BTreeSet<String> {
        self.shared.lock().bad_labels.clone()
    }

    pub fn order_violations(&self) -> Vec<String> {
        self.shared.lock().order_violations.clone()
    }

    pub fn malformed(&self) -> Vec<String> {
        self.shared.lock().malformed.clone()
    }

    pub fn last_seen(&self) -> Seen {
        self.shared.lock().last.clone()
    }

    /// Waits until `pred` holds for the entries stored, at most `timeout`. `pred` runs with the
    /// fake locked: it must not call the fake.
    pub fn wait_for(&self, mut pred: impl FnMut(&[Entry]) -> bool, timeout: Duration) -> bool {
        super::wait_on(
            &self.shared.inner,
            &self.shared.arrived,
            |inner| pred(&inner.entries),
            timeout,
        )
    }

    /// Waits until `requests()` reaches `n`, at most `timeout`.
    pub fn wait_requests(&self, n: u64, timeout: Duration) -> bool {
        super::wait_on(
            &self.shared.inner,
            &self.shared.arrived,
            |inner| inner.requests >= n,
            timeout,
        )
    }
}

/// The sequence numbers of writer `id`'s chat events in `entries`, in order.
pub fn seqs_of(entries: &[Entry], id: &str) -> Vec<u64> {
    let events: Vec<serde_json::Value> = entries.iter().map(|e| e.json.clone()).collect();
    super::seqs_in(&events, id)
}

/// Parses `{a="x", b="y"}` into its pairs.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| format!("labels not in braces: {text}"))?;
    let mut out = BTreeMap::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name `{name}` in {text}"));
        }
        if chars.next() != Some('"') {
            return Err(format!("label `{name}` value not quoted in {text}"));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => return Err(format!("dangling escape in {text}")),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => return Err(format!("unterminated value in {text}")),
            }
        }
        if out.insert(name.clone(), value).is_some() {
            return Err(format!("label `{name}` twice in {text}"));
        }
    }
    Ok(out)
}

async fn push(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let mut inner = shared.lock();
    let response = answer(&mut inner, &headers, &body);
    inner.answers.push(response.status().as_u16());
    drop(inner);
    shared.arrived.notify_all();
    response
}

/// The answer to one push, with what it stores stored.
fn answer(inner: &mut Inner, headers: &HeaderMap, body: &Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    inner.requests += 1;
    inner.last = Seen {
        tenant: header("x-scope-orgid"),
        authorization: header("authorization"),
        content_type: header("content-type"),
    };
    if let Some((status, retry_after)) = inner.failures.pop_front() {
        let mut response = (
            StatusCode::from_u16(status).unwrap(),
            format!("fake Loki answers {status} on purpose"),
        )
            .into_response();
        if let Some(s) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, s.to_string().parse().unwrap());
        }
        return response;
    }
    if inner.tenant.is_some() && inner.last.tenant != inner.tenant {
        return (StatusCode::UNAUTHORIZED, "no org id").into_response();
    }
    if inner.auth.is_some() && inner.last.authorization != inner.auth {
        return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
    }
    let refuse = |inner: &mut Inner, why: String| {
        inner.malformed.push(why.clone());
        (StatusCode::BAD_REQUEST, why).into_response()
    };
    if inner.last.content_type.as_deref() != Some("application/x-protobuf") {
        let why = format!("unexpected content type {:?}", inner.last.content_type);
        return refuse(inner, why);
    }
    let raw = match snap::raw::Decoder::new().decompress_vec(body) {
        Ok(raw) => raw,
        Err(e) => return refuse(inner, format!("snappy: {e}")),
    };
    let request = match proto::PushRequest::decode(raw.as_slice()) {
        Ok(r) => r,
        Err(e) => return refuse(inner, format!("protobuf: {e}")),
    };
    let mut stored = Vec::new();
    for stream in &request.streams {
        let labels = match parse_labels(&stream.labels) {
            Ok(l) => l,
            Err(e) => return refuse(inner, e),
        };
        let mut last = i128::MIN;
        for e in &stream.entries {
            let ts = e.timestamp.unwrap_or_default();
            let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
            if nanos < last {
                let why = format!("entry out of order for stream {}", stream.labels);
                inner.order_violations.push(why.clone());
                return (StatusCode::BAD_REQUEST, why).into_response();
            }
            last = nanos;
            stored.push(Entry {
                labels: labels.clone(),
                unix_nanos: nanos,
                json: serde_json::from_str(&e.line).unwrap_or(serde_json::Value::Null),
                line: e.line.clone(),
                metadata: e
                    .structured_metadata
                    .iter()
                    .map(|p| (p.name.clone(), p.value.clone()))
                    .collect(),
            });
        }
        for name in labels.keys() {
            if !ALLOWED_LABELS.contains(&name.as_str()) {
                inner.bad_labels.insert(name.clone());
            }
        }
        inner.label_sets.insert(stream.labels.clone());
    }
    inner.entries.extend(stored);
    inner.accepted += 1;
    StatusCode::NO_CONTENT.into_response()
}
