//! A fake of Discord's "Execute Webhook" endpoint (`POST /api/webhooks/{id}/{token}`), strict
//! where Discord is strict, so a sink that passes against it has a fair chance against Discord.
//!
//! It follows these parts of Discord's developer documentation:
//!
//! - **Execute Webhook** (Resources › Webhook): `?wait=true` answers `200` with the created
//!   message object, without it the answer is `204 No Content`; `thread_id` is accepted. The
//!   body must carry a non-empty `content` or at least one embed, else `400` with code `50006`
//!   ("Cannot send an empty message"). Whitespace-only `content` counts as empty, as Discord
//!   trims it. A webhook `username` must be 1–80 characters and must not contain `discord` or
//!   `clyde` (any case).
//! - **Message** and **Embed limits** (Resources › Message): content ≤ 2000 characters, ≤ 10
//!   embeds, title ≤ 256, description ≤ 4096, ≤ 25 fields, field name ≤ 256 and value ≤ 1024
//!   (both required and non-empty), footer text ≤ 2048 (required when a footer is given), author
//!   name ≤ 256 (required when an author is given), and title + description + field names +
//!   field values + footer text + author name summed over all embeds ≤ 6000. Lengths are counted
//!   in Unicode scalar values (`chars()`), not bytes. Violations are answered `400` with code
//!   `50035` ("Invalid Form Body") and an `errors` object nested like Discord's, e.g.
//!   `{"embeds": {"0": {"title": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", ...}]}}}}`.
//!   A body that is not JSON is `400` code `50109`; a `Content-Type` other than
//!   `application/json` leaves Discord with no JSON payload, so it is `400` code `50006`.
//! - **Rate Limits** (Topics › Rate Limits): every answer from the bucket, successful or a `400`,
//!   carries `X-RateLimit-Limit`, `-Remaining`, `-Reset` (epoch seconds, 3 decimals),
//!   `-Reset-After` (seconds, 3 decimals) and `-Bucket`. A `429` carries `Retry-After` (whole
//!   seconds, rounded up), `X-RateLimit-Scope` (`user`, `shared` or `global`) and the body
//!   `{"message": "You are being rate limited.", "retry_after": <float seconds>, "global": ...}`;
//!   a global one also carries `X-RateLimit-Global: true` and no bucket headers. Times in the
//!   headers are rounded *up* to the millisecond, so a client that waits exactly what it was
//!   told is never early.
//! - **Errors**: `404` code `10015` ("Unknown Webhook") for a deleted webhook, `401` code
//!   `50027` ("Invalid Webhook Token") for a wrong token, `404` `{"message": "404: Not Found",
//!   "code": 0}` for every other path or method.
//!
//! The documentation says every request must send a `User-Agent`; the fake enforces that with a
//! `400 {"message": "400: Bad Request", "code": 0}` (what Discord really does without one is not
//! documented).
//!
//! A request to the webhook route goes through, in order: method and token; the webhook's
//! [`Mode`] (whose error answers carry no rate-limit headers and do not use the bucket); the
//! global limit and the bucket (a `429` ends it here); validation (`User-Agent`, `Content-Type`,
//! JSON, form body and `wait`/`thread_id` query, then the empty-message check); success. The
//! rate limit comes before validation, as at Discord, so a `400` uses up the bucket too and
//! carries its headers.
//!
//! Buckets are fixed windows: when a request arrives at or after the bucket's reset time the
//! bucket refills to `bucket_limit` and the next reset is `bucket_window` away. The fake records
//! whether each request arrived inside a window the fake had *announced* (a response said
//! `X-RateLimit-Remaining: 0`, until that reset; or a `429` said `retry_after`, until it ran
//! out): those are rate-limit violations, the thing a well-behaved client never commits.
//!
//! Test controls: [`FakeDiscord::set_mode`] (deleted webhook, bad token, a run of 5xx, a slow
//! answer, connections reset without any answer, a redirect to a [`Recorder`]) and [`FakeDiscord::force_429`] (a 429 caused
//! by "someone else" using the bucket, or a global one).
//!
//! Not faked: `multipart/form-data` bodies and attachments (rejected like any non-JSON body),
//! the contents of `components`, `allowed_mentions` and `poll`, the per-channel message limit,
//! the invalid-request limit (Cloudflare bans), TLS and HTTP/2.
//!
//! The server runs on 127.0.0.1 (an OS-assigned port) on its own thread with its own tokio
//! runtime, so it can be used from plain `#[test]` functions and from inside any runtime.
//! Dropping the [`FakeDiscord`] stops it.

// Shared by test crates that each use part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::IntoFuture;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::any;
use axum::serve::{IncomingStream, Listener};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

// --- Discord's documented limits --------------------------------------------------------------

pub const CONTENT_MAX: usize = 2000;
pub const EMBEDS_MAX: usize = 10;
pub const TITLE_MAX: usize = 256;
pub const DESCRIPTION_MAX: usize = 4096;
pub const FIELDS_MAX: usize = 25;
pub const FIELD_NAME_MAX: usize = 256;
pub const FIELD_VALUE_MAX: usize = 1024;
pub const FOOTER_TEXT_MAX: usize = 2048;
pub const AUTHOR_NAME_MAX: usize = 256;
/// Title, description, field names and values, footer text and author name over all embeds.
pub const EMBED_TOTAL_MAX: usize = 6000;
pub const USERNAME_MAX: usize = 80;

/// `Recorded::status` of a request whose connection was reset without an answer.
pub const STATUS_RESET: u16 = 0;

/// Milliseconds from the Unix epoch to Discord's epoch (2015-01-01), the base of snowflakes.
const DISCORD_EPOCH_MS: u128 = 1_420_070_400_000;

// --- configuration ----------------------------------------------------------------------------

/// How the fake rate-limits.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    /// Requests per bucket per window (`X-RateLimit-Limit`). Discord's webhook limit is 5.
    pub bucket_limit: u32,
    /// The bucket's window. Discord's webhook window is 2 s.
    pub bucket_window: Duration,
    /// All webhooks in one bucket (as when Discord shares a limit across resources).
    pub shared_bucket: bool,
    /// A limit across all webhooks: this many requests per this window, answered with global
    /// `429`s beyond it.
    pub global_limit: Option<(u32, Duration)>,
    /// A request this close to the end of an announced window is not a violation.
    pub tolerance: Duration,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            bucket_limit: 5,
            bucket_window: Duration::from_secs(2),
            shared_bucket: false,
            global_limit: None,
            tolerance: Duration::from_millis(20),
        }
    }
}

/// How one webhook answers, set with [`FakeDiscord::set_mode`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Normal behaviour.
    Ok,
    /// The webhook was deleted: `404 {"message": "Unknown Webhook", "code": 10015}`.
    Gone,
    /// The token is no longer valid: `401 {"message": "Invalid Webhook Token", "code": 50027}`.
    Unauthorized,
    /// The next `remaining` requests get `status` (a 502 as Cloudflare's plain-text page, any
    /// other status as Discord's JSON `{"message": "503: Service Unavailable", "code": 0}`);
    /// then [`Mode::Ok`].
    ServerError { remaining: u32, status: u16 },
    /// Every request is answered normally, but only after this long.
    Slow(Duration),
    /// Every request waits, unanswered, until the test sets another mode; it is then answered
    /// normally. A client's message is in flight meanwhile, for as long as the test wants.
    Hold,
    /// The next `remaining` requests are read in full and their connection is then reset
    /// (`SO_LINGER` 0, so the client sees a TCP RST) without a byte of HTTP response; then
    /// [`Mode::Ok`].
    Reset { remaining: u32 },
    /// Every request is answered `status` (a 3xx) with this `Location` and no body, like a
    /// misconfigured proxy or a URL that moved (see [`Recorder`] for a target that records what
    /// a client that follows it would send).
    Redirect { status: u16, location: String },
}

// --- records ----------------------------------------------------------------------------------

/// One request to the webhook route, as received and as answered.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// When it arrived.
    pub at: Instant,
    pub method: String,
    pub webhook_id: String,
    /// E.g. `/api/webhooks/1/tok-1-SECRET?wait=true`.
    pub path_and_query: String,
    /// Header names lower-cased, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body as JSON, `Value::Null` if it is not JSON.
    pub body: Value,
    pub raw_body: String,
    /// The status answered, [`STATUS_RESET`] if the connection was reset instead. For a
    /// [`Mode::Slow`] request it is the status the fake answered, whether or not the client was
    /// still waiting.
    pub status: u16,
    /// It arrived inside a window the fake had announced (remaining 0 until the reset, or a
    /// 429's `retry_after`): a rate-limit violation.
    pub in_retry_window: bool,
    /// Why it was not accepted, e.g. `"content: Must be 2000 or fewer in length."`.
    pub rejection: Option<String>,
}

impl Recorded {
    /// The first value of a request header (`name` in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The status was 2xx.
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// All the text a reader of the message would see, one piece a line: the content, then for
/// every embed its author name, title, description, field names and values, and footer text.
pub fn all_text(r: &Recorded) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if let Some(s) = r.body.get("content").and_then(Value::as_str) {
        parts.push(s);
    }
    for embed in items(r.body.get("embeds")) {
        parts.extend(str_of(embed.pointer("/author/name")));
        parts.extend(str_of(embed.get("title")));
        parts.extend(str_of(embed.get("description")));
        for field in items(embed.get("fields")) {
            parts.extend(str_of(field.get("name")));
            parts.extend(str_of(field.get("value")));
        }
        parts.extend(str_of(embed.pointer("/footer/text")));
    }
    parts.join("\n")
}

fn str_of(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

/// The items of an array; none when it is absent or not an array.
fn items(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

// --- the fake ---------------------------------------------------------------------------------

/// A running fake Discord. Dropping it stops the server.
pub struct FakeDiscord {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _server: super::ServerThread,
}

impl FakeDiscord {
    /// Starts a fake on 127.0.0.1 with an OS-assigned port. Needs no runtime from the caller.
    pub fn start(config: FakeConfig) -> FakeDiscord {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake Discord");
        let addr = listener.local_addr().expect("fake Discord address");
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(Inner::default()),
            messages: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/api/webhooks/{id}/{token}", any(webhook))
            .fallback(not_found)
            .with_state(shared.clone());
        // Dropping the server's runtime cancels every connection task and closes its socket.
        let server = super::ServerThread::spawn("fake-discord", 2, listener, |listener, stop| {
            let server = axum::serve(
                ResettableListener { inner: listener },
                app.into_make_service_with_connect_info::<ConnHandle>(),
            );
            async move {
                tokio::select! {
                    result = server.into_future() => result.expect("fake Discord server"),
                    _ = stop => {}
                }
            }
        });
        FakeDiscord {
            addr,
            shared,
            _server: server,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The execute URL of webhook `id`, with its valid token.
    pub fn webhook_url(&self, id: &str) -> String {
        format!("{}/api/webhooks/{id}/{}", self.base_url(), self.token(id))
    }

    /// The valid token of webhook `id`: `tok-<id>-SECRET`, easy to grep for in logs.
    pub fn token(&self, id: &str) -> String {
        token_for(id)
    }

    /// The `X-RateLimit-Bucket` webhook `id`'s answers carry.
    pub fn bucket_hash(&self, id: &str) -> String {
        bucket_hash(&self.shared.bucket_key(id))
    }

    /// Changes how webhook `id` answers from its next request on.
    pub fn set_mode(&self, id: &str, mode: Mode) {
        self.shared.lock().modes.insert(id.to_owned(), mode);
    }

    /// How webhook `id` answers now ([`Mode::ServerError`] and [`Mode::Reset`] count down).
    pub fn mode(&self, id: &str) -> Mode {
        self.shared
            .lock()
            .modes
            .get(id)
            .cloned()
            .unwrap_or(Mode::Ok)
    }

    /// The next request to webhook `id` that gets past its [`Mode`] is answered `429` with this
    /// `retry_after`, as if another client had used up the limit. From then on the limit is
    /// exhausted for that long: the webhook's bucket (scope `shared`), or every webhook if
    /// `global` (scope `global`). Requests in that time get `429`s and are violations.
    pub fn force_429(&self, id: &str, retry_after: Duration, global: bool) {
        self.shared
            .lock()
            .forced
            .insert(id.to_owned(), (retry_after, global));
    }

    /// Every request to the webhook route, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().records.clone()
    }

    /// Every request to webhook `id`, in arrival order.
    pub fn requests_to(&self, id: &str) -> Vec<Recorded> {
        let state = self.shared.lock();
        state
            .records
            .iter()
            .filter(|r| r.webhook_id == id)
            .cloned()
            .collect()
    }

    /// Every request answered 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Recorded> {
        let state = self.shared.lock();
        state
            .records
            .iter()
            .filter(|r| r.accepted())
            .cloned()
            .collect()
    }

    /// Every request not answered 2xx, in arrival order.
    pub fn rejected(&self) -> Vec<Recorded> {
        let state = self.shared.lock();
        state
            .records
            .iter()
            .filter(|r| !r.accepted())
            .cloned()
            .collect()
    }

    /// How many requests arrived inside an announced rate-limit window.
    pub fn violations(&self) -> usize {
        let state = self.shared.lock();
        state.records.iter().filter(|r| r.in_retry_window).count()
    }

    /// Forgets the recorded requests (modes, forced 429s and rate-limit state stay).
    pub fn clear(&self) {
        self.shared.lock().records.clear();
    }

    /// Polls (blocking the calling thread) until `pred` holds for the requests so far; false if
    /// it still does not after `timeout`. From async code on a single-threaded runtime that also
    /// runs the client, use [`FakeDiscord::wait_for_async`].
    pub fn wait_for(&self, pred: impl Fn(&[Recorded]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.requests()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`FakeDiscord::wait_for`] that sleeps on the caller's tokio runtime.
    pub async fn wait_for_async(
        &self,
        pred: impl Fn(&[Recorded]) -> bool,
        timeout: Duration,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(&self.requests()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn token_for(id: &str) -> String {
    format!("tok-{id}-SECRET")
}

/// An opaque 32-hex-digit bucket id derived from the bucket's key (two FNV-1a hashes).
fn bucket_hash(key: &str) -> String {
    let fnv = |seed: u64| {
        key.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x6c62_272e_07bb_0142)
    )
}

// --- shared state -----------------------------------------------------------------------------

struct Shared {
    config: FakeConfig,
    state: Mutex<Inner>,
    /// Messages created so far (the low bits of their snowflakes).
    messages: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bucket_key(&self, id: &str) -> String {
        if self.config.shared_bucket {
            "shared".to_owned()
        } else {
            format!("webhook:{id}")
        }
    }
}

#[derive(Default)]
struct Inner {
    modes: HashMap<String, Mode>,
    /// Pending [`FakeDiscord::force_429`]s by webhook id: (retry_after, global).
    forced: HashMap<String, (Duration, bool)>,
    /// By bucket key.
    buckets: HashMap<String, Bucket>,
    global: Global,
    /// In arrival order.
    records: Vec<Recorded>,
}

#[derive(Default)]
struct Bucket {
    remaining: u32,
    /// `None` until the first request.
    reset_at: Option<Instant>,
    /// The end of the last window the fake announced for this bucket.
    announced_until: Option<Instant>,
}

#[derive(Default)]
struct Global {
    /// Requests counted in the current window of [`FakeConfig::global_limit`].
    count: u32,
    reset_at: Option<Instant>,
    /// Until when a forced global 429 holds.
    blocked_until: Option<Instant>,
    /// The end of the last global window announced by a global 429.
    announced_until: Option<Instant>,
}

fn announce(until: &mut Option<Instant>, end: Instant) {
    if until.is_none_or(|u| u < end) {
        *until = Some(end);
    }
}

/// What a request gets before validation and rate limiting.
enum Action {
    NotFound,
    BadToken,
    Gone,
    Unauthorized,
    ServerError(u16),
    Reset,
    Redirect(u16, String),
    /// Proceed, after sleeping this long if any.
    Proceed(Option<Duration>),
    /// Proceed once the mode is no longer [`Mode::Hold`].
    Hold,
}

/// The rate-limit headers of an answer from a bucket.
struct RateHeaders {
    limit: u32,
    remaining: u32,
    reset_after: Duration,
    bucket: String,
}

/// A 429.
struct Limited {
    retry_after: Duration,
    global: bool,
    scope: &'static str,
    /// The bucket's headers (none for a global 429).
    bucket: Option<RateHeaders>,
}

impl Inner {
    fn in_announced_window(&self, key: &str, now: Instant, tolerance: Duration) -> bool {
        let inside = |until: Option<Instant>| until.is_some_and(|u| now + tolerance < u);
        inside(self.buckets.get(key).and_then(|b| b.announced_until))
            || inside(self.global.announced_until)
    }

    fn take_action(&mut self, id: &str) -> Action {
        let Some(mode) = self.modes.get_mut(id) else {
            return Action::Proceed(None);
        };
        match mode {
            Mode::Ok => Action::Proceed(None),
            Mode::Gone => Action::Gone,
            Mode::Unauthorized => Action::Unauthorized,
            Mode::Slow(delay) => Action::Proceed(Some(*delay)),
            Mode::Hold => Action::Hold,
            Mode::Redirect { status, location } => Action::Redirect(*status, location.clone()),
            Mode::ServerError { remaining, status } => {
                let status = *status;
                let action = if *remaining > 0 {
                    *remaining -= 1;
                    Action::ServerError(status)
                } else {
                    Action::Proceed(None)
                };
                if *remaining == 0 {
                    *mode = Mode::Ok;
                }
                action
            }
            Mode::Reset { remaining } => {
                let action = if *remaining > 0 {
                    *remaining -= 1;
                    Action::Reset
                } else {
                    Action::Proceed(None)
                };
                if *remaining == 0 {
                    *mode = Mode::Ok;
                }
                action
            }
        }
    }

    /// Counts a request against the global limit and its bucket, or says why it is a 429.
    fn rate_limit(
        &mut self,
        config: &FakeConfig,
        id: &str,
        key: &str,
        now: Instant,
    ) -> Result<RateHeaders, Limited> {
        let global_429 = |g: &mut Global, until: Instant| {
            announce(&mut g.announced_until, until);
            Limited {
                retry_after: until - now,
                global: true,
                scope: "global",
                bucket: None,
            }
        };
        if let Some(until) = self.global.blocked_until
            && now < until
        {
            return Err(global_429(&mut self.global, until));
        }
        if let Some((retry_after, global)) = self.forced.remove(id) {
            let until = now + retry_after;
            if global {
                self.global.blocked_until = Some(until);
                return Err(global_429(&mut self.global, until));
            }
            let bucket = self.buckets.entry(key.to_owned()).or_default();
            bucket.remaining = 0;
            bucket.reset_at = Some(until);
            announce(&mut bucket.announced_until, until);
            return Err(Limited {
                retry_after,
                global: false,
                scope: "shared",
                bucket: Some(headers_of(config, key, bucket, now)),
            });
        }
        if let Some((limit, window)) = config.global_limit {
            let g = &mut self.global;
            if g.reset_at.is_none_or(|r| now >= r) {
                g.count = 0;
                g.reset_at = Some(now + window);
            }
            if g.count >= limit {
                let until = g.reset_at.expect("set above");
                return Err(global_429(g, until));
            }
            g.count += 1;
        }
        let bucket = self.buckets.entry(key.to_owned()).or_default();
        if bucket.reset_at.is_none_or(|r| now >= r) {
            bucket.remaining = config.bucket_limit;
            bucket.reset_at = Some(now + config.bucket_window);
        }
        let reset_at = bucket.reset_at.expect("set above");
        if bucket.remaining == 0 {
            announce(&mut bucket.announced_until, reset_at);
            return Err(Limited {
                retry_after: reset_at - now,
                global: false,
                scope: "user",
                bucket: Some(headers_of(config, key, bucket, now)),
            });
        }
        bucket.remaining -= 1;
        if bucket.remaining == 0 {
            announce(&mut bucket.announced_until, reset_at);
        }
        Ok(headers_of(config, key, bucket, now))
    }

    fn record(&mut self, r: Recorded) {
        // Slow requests finish late: keep arrival order.
        let at = self.records.partition_point(|x| x.at <= r.at);
        self.records.insert(at, r);
    }
}

fn headers_of(config: &FakeConfig, key: &str, bucket: &Bucket, now: Instant) -> RateHeaders {
    RateHeaders {
        limit: config.bucket_limit,
        remaining: bucket.remaining,
        reset_after: bucket
            .reset_at
            .map_or(Duration::ZERO, |r| r.saturating_duration_since(now)),
        bucket: bucket_hash(key),
    }
}

// --- HTTP -------------------------------------------------------------------------------------

/// A request as taken off the wire.
struct Incoming {
    arrived: Instant,
    method: Method,
    id: String,
    token: String,
    path_and_query: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

/// An answer, or a reset of the connection.
struct Outcome {
    response: Response,
    reset: bool,
}

async fn webhook(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    method: Method,
    Path((id, token)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = Incoming {
        arrived: Instant::now(),
        method,
        id,
        token,
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
        query: uri.query().map(str::to_owned),
        headers,
        body,
    };
    // On its own task, so a request is handled and recorded even if the client hangs up.
    match tokio::spawn(handle(shared, incoming)).await {
        Ok(Outcome { response, reset }) => {
            if reset {
                conn.reset();
            }
            response
        }
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("fake failed: {e}"),
        ),
    }
}

async fn not_found() -> Response {
    NOT_FOUND.response()
}

/// One of Discord's JSON error answers: `{"message": …, "code": …}` with its status.
struct ErrorAnswer {
    status: StatusCode,
    message: &'static str,
    /// Discord's JSON error code (0 for a plain HTTP error).
    code: u32,
}

/// A path or method the webhook route does not serve.
const NOT_FOUND: ErrorAnswer = ErrorAnswer {
    status: StatusCode::NOT_FOUND,
    message: "404: Not Found",
    code: 0,
};

/// A token that is wrong or no longer valid.
const INVALID_TOKEN: ErrorAnswer = ErrorAnswer {
    status: StatusCode::UNAUTHORIZED,
    message: "Invalid Webhook Token",
    code: 50027,
};

/// A webhook that was deleted.
const UNKNOWN_WEBHOOK: ErrorAnswer = ErrorAnswer {
    status: StatusCode::NOT_FOUND,
    message: "Unknown Webhook",
    code: 10015,
};

impl ErrorAnswer {
    fn response(&self) -> Response {
        json_response(
            self.status,
            &json!({"message": self.message, "code": self.code}),
        )
    }

    /// The answer to a request turned away for `reason`: the response, the rejection
    /// recorded, and no connection reset.
    fn rejecting(&self, reason: impl Into<String>) -> (Response, Option<String>, bool) {
        (self.response(), Some(reason.into()), false)
    }
}

async fn handle(shared: Arc<Shared>, req: Incoming) -> Outcome {
    let key = shared.bucket_key(&req.id);
    let (in_retry_window, action) = {
        let mut state = shared.lock();
        let in_window = state.in_announced_window(&key, req.arrived, shared.config.tolerance);
        let action = if req.method != Method::POST {
            Action::NotFound
        } else if req.token != token_for(&req.id) {
            Action::BadToken
        } else {
            state.take_action(&req.id)
        };
        (in_window, action)
    };
    let action = match action {
        Action::Hold => {
            while matches!(shared.lock().modes.get(&req.id), Some(Mode::Hold)) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Action::Proceed(None)
        }
        other => other,
    };

    let (response, rejection, reset) = match action {
        Action::NotFound => {
            NOT_FOUND.rejecting(format!("{} is not served on the webhook route", req.method))
        }
        Action::BadToken => INVALID_TOKEN.rejecting("wrong token"),
        Action::Unauthorized => INVALID_TOKEN.rejecting("mode: unauthorized"),
        Action::Gone => UNKNOWN_WEBHOOK.rejecting("mode: unknown webhook"),
        Action::ServerError(status) => (
            server_error(status),
            Some(format!("mode: server error {status}")),
            false,
        ),
        Action::Reset => (
            // Never reaches the client: the connection is reset before a byte is written.
            plain(StatusCode::INTERNAL_SERVER_ERROR, "reset"),
            Some("mode: connection reset".to_owned()),
            true,
        ),
        Action::Redirect(status, location) => (
            Response::builder()
                .status(StatusCode::from_u16(status).expect("a redirect status"))
                .header(header::LOCATION, location)
                .body(Body::empty())
                .expect("response"),
            Some(format!("mode: redirect {status}")),
            false,
        ),
        Action::Hold => unreachable!("held above"),
        Action::Proceed(delay) => {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            let verdict = validate(&req);
            let now = Instant::now();
            let limited = shared.lock().rate_limit(&shared.config, &req.id, &key, now);
            match limited {
                Err(limited) => {
                    let reason = if limited.global {
                        "rate limited (global)"
                    } else {
                        "rate limited"
                    };
                    (too_many(&limited), Some(reason.to_owned()), false)
                }
                Ok(rate) => match verdict {
                    Err(bad) => {
                        let mut response = json_response(StatusCode::BAD_REQUEST, &bad.body);
                        add_rate_headers(&mut response, &rate);
                        (response, Some(bad.reason), false)
                    }
                    Ok(valid) => {
                        let mut response = if valid.wait {
                            let message = message_object(&shared, &req.id, &valid);
                            json_response(StatusCode::OK, &message)
                        } else {
                            empty(StatusCode::NO_CONTENT)
                        };
                        add_rate_headers(&mut response, &rate);
                        (response, None, false)
                    }
                },
            }
        }
    };

    let status = if reset {
        STATUS_RESET
    } else {
        response.status().as_u16()
    };
    let recorded = Recorded {
        at: req.arrived,
        method: req.method.to_string(),
        webhook_id: req.id.clone(),
        path_and_query: req.path_and_query.clone(),
        headers: req
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&req.body).unwrap_or(Value::Null),
        raw_body: String::from_utf8_lossy(&req.body).into_owned(),
        status,
        in_retry_window,
        rejection,
    };
    shared.lock().record(recorded);
    Outcome { response, reset }
}

// --- validation -------------------------------------------------------------------------------

/// A request that passed validation.
struct Valid {
    wait: bool,
    thread_id: Option<String>,
    body: Map<String, Value>,
}

/// A 400.
struct Invalid {
    body: Value,
    reason: String,
}

impl Invalid {
    fn new(body: Value, reason: impl Into<String>) -> Invalid {
        Invalid {
            body,
            reason: reason.into(),
        }
    }

    fn empty_message(reason: &str) -> Invalid {
        Invalid::new(
            json!({"message": "Cannot send an empty message", "code": 50006}),
            reason,
        )
    }
}

/// Discord's nested `errors` object of an "Invalid Form Body" answer.
#[derive(Default)]
struct FormErrors {
    tree: Map<String, Value>,
    reasons: Vec<String>,
}

impl FormErrors {
    /// Adds an error at `path` (e.g. `["embeds", "0", "title"]`; empty for the body itself).
    fn add(&mut self, path: &[&str], code: &str, message: impl Into<String>) {
        let message = message.into();
        let mut node = &mut self.tree;
        for segment in path {
            node = node
                .entry(segment.to_string())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("error nodes are objects");
        }
        let errors = node
            .entry("_errors")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("_errors is an array");
        errors.push(json!({"code": code, "message": message}));
        let at = if path.is_empty() {
            "body".to_owned()
        } else {
            path.join(".")
        };
        self.reasons.push(format!("{at}: {message}"));
    }

    fn into_result(self) -> Result<(), Invalid> {
        if self.reasons.is_empty() {
            return Ok(());
        }
        Err(Invalid::new(
            json!({"code": 50035, "message": "Invalid Form Body", "errors": self.tree}),
            self.reasons.join("; "),
        ))
    }
}

fn validate(req: &Incoming) -> Result<Valid, Invalid> {
    let user_agent = req
        .headers
        .get(header::USER_AGENT)
        .is_some_and(|v| !v.as_bytes().iter().all(u8::is_ascii_whitespace));
    if !user_agent {
        return Err(Invalid::new(
            json!({"message": "400: Bad Request", "code": 0}),
            "missing User-Agent",
        ));
    }
    let json_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Err(Invalid::empty_message(
            "Content-Type is not application/json",
        ));
    }
    let body: Value = serde_json::from_slice(&req.body).map_err(|e| {
        Invalid::new(
            json!({"message": "The request body contains invalid JSON.", "code": 50109}),
            format!("invalid JSON: {e}"),
        )
    })?;

    let mut errors = FormErrors::default();
    let (wait, thread_id) = validate_query(req.query.as_deref(), &mut errors);
    let Value::Object(body) = body else {
        errors.add(
            &[],
            "DICT_TYPE_CONVERT",
            "Only dictionaries may be used in a DictType",
        );
        errors.into_result()?;
        unreachable!("an error was added");
    };
    validate_body(&body, &mut errors);
    errors.into_result()?;

    let content = body
        .get("content")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.trim().is_empty());
    let non_empty_list = |key: &str| {
        body.get(key)
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    };
    let poll = body.get("poll").is_some_and(Value::is_object);
    if !(content || non_empty_list("embeds") || non_empty_list("components") || poll) {
        return Err(Invalid::empty_message("no content and no embeds"));
    }
    Ok(Valid {
        wait,
        thread_id,
        body,
    })
}

fn validate_query(query: Option<&str>, errors: &mut FormErrors) -> (bool, Option<String>) {
    let mut wait = false;
    let mut thread_id = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "wait" => match value.to_ascii_lowercase().as_str() {
                "true" | "1" => wait = true,
                "false" | "0" => wait = false,
                _ => errors.add(
                    &["wait"],
                    "BASE_TYPE_BOOLEAN",
                    "Must be either true or false.",
                ),
            },
            "thread_id" => {
                if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
                    thread_id = Some(value.to_owned());
                } else {
                    errors.add(
                        &["thread_id"],
                        "NUMBER_TYPE_COERCE",
                        format!("Value \"{value}\" is not snowflake."),
                    );
                }
            }
            _ => {}
        }
    }
    (wait, thread_id)
}

fn validate_body(body: &Map<String, Value>, errors: &mut FormErrors) {
    if let Some(s) = string_field(body, "content", &[], errors) {
        max_len(s, CONTENT_MAX, &["content"], errors);
    }
    if let Some(name) = string_field(body, "username", &[], errors) {
        let n = name.chars().count();
        if !(1..=USERNAME_MAX).contains(&n) {
            errors.add(
                &["username"],
                "BASE_TYPE_BAD_LENGTH",
                format!("Must be between 1 and {USERNAME_MAX} in length."),
            );
        }
        let lower = name.to_lowercase();
        for banned in ["discord", "clyde"] {
            if lower.contains(banned) {
                errors.add(
                    &["username"],
                    "USERNAME_INVALID_CONTAINS",
                    format!("Username cannot contain \"{banned}\""),
                );
            }
        }
    }
    if let Some(url) = string_field(body, "avatar_url", &[], errors) {
        url_check(url, &["avatar_url"], errors);
    }
    if let Some(tts) = body.get("tts")
        && !tts.is_null()
        && !tts.is_boolean()
    {
        errors.add(
            &["tts"],
            "BASE_TYPE_BOOLEAN",
            "Must be either true or false.",
        );
    }
    match body.get("embeds") {
        None | Some(Value::Null) => {}
        Some(Value::Array(embeds)) if embeds.len() > EMBEDS_MAX => errors.add(
            &["embeds"],
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {EMBEDS_MAX} or fewer in length."),
        ),
        Some(Value::Array(embeds)) => {
            let mut total = 0;
            for (i, embed) in embeds.iter().enumerate() {
                total += validate_embed(embed, &i.to_string(), errors);
            }
            if total > EMBED_TOTAL_MAX {
                errors.add(
                    &["embeds"],
                    "MAX_EMBED_SIZE_EXCEEDED",
                    format!("Embed size exceeds maximum size of {EMBED_TOTAL_MAX}"),
                );
            }
        }
        Some(_) => errors.add(
            &["embeds"],
            "LIST_TYPE_CONVERT",
            "Only iterables may be used in a ListType",
        ),
    }
}

/// Checks embed number `i`; returns the characters it counts toward [`EMBED_TOTAL_MAX`].
fn validate_embed(embed: &Value, i: &str, errors: &mut FormErrors) -> usize {
    let Value::Object(embed) = embed else {
        errors.add(
            &["embeds", i],
            "DICT_TYPE_CONVERT",
            "Only dictionaries may be used in a DictType",
        );
        return 0;
    };
    let mut total = 0;
    let parent = ["embeds", i];
    let at = |leaf: &'static str| ["embeds", i, leaf];
    if let Some(title) = string_field(embed, "title", &parent, errors) {
        total += max_len(title, TITLE_MAX, &at("title"), errors);
    }
    if let Some(d) = string_field(embed, "description", &parent, errors) {
        total += max_len(d, DESCRIPTION_MAX, &at("description"), errors);
    }
    if let Some(url) = string_field(embed, "url", &parent, errors) {
        url_check(url, &at("url"), errors);
    }
    if let Some(ts) = string_field(embed, "timestamp", &parent, errors)
        && !looks_iso8601(ts)
    {
        errors.add(
            &at("timestamp"),
            "DATE_TIME_TYPE_PARSE",
            format!("Could not parse {ts}. Should be ISO8601."),
        );
    }
    match embed.get("color") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|c| c <= 0xFF_FFFF) => {}
        Some(Value::Number(_)) => errors.add(
            &at("color"),
            "NUMBER_TYPE_MAX",
            "int value should be less than or equal to 16777215.",
        ),
        Some(_) => errors.add(&at("color"), "NUMBER_TYPE_COERCE", "Value is not int."),
    }
    total += required_text(embed, "footer", "text", FOOTER_TEXT_MAX, i, errors);
    total += required_text(embed, "author", "name", AUTHOR_NAME_MAX, i, errors);
    match embed.get("fields") {
        None | Some(Value::Null) => {}
        Some(Value::Array(fields)) if fields.len() > FIELDS_MAX => errors.add(
            &at("fields"),
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {FIELDS_MAX} or fewer in length."),
        ),
        Some(Value::Array(fields)) => {
            for (j, field) in fields.iter().enumerate() {
                let j = j.to_string();
                let Value::Object(field) = field else {
                    errors.add(
                        &["embeds", i, "fields", &j],
                        "DICT_TYPE_CONVERT",
                        "Only dictionaries may be used in a DictType",
                    );
                    continue;
                };
                for (key, max) in [("name", FIELD_NAME_MAX), ("value", FIELD_VALUE_MAX)] {
                    let path = ["embeds", i, "fields", &j, key];
                    match field.get(key) {
                        Some(Value::String(s)) if !s.is_empty() => {
                            total += max_len(s, max, &path, errors);
                        }
                        None | Some(Value::Null) | Some(Value::String(_)) => {
                            errors.add(&path, "BASE_TYPE_REQUIRED", "This field is required");
                        }
                        Some(other) => not_a_string(other, &path, errors),
                    }
                }
                if let Some(inline) = field.get("inline")
                    && !inline.is_null()
                    && !inline.is_boolean()
                {
                    errors.add(
                        &["embeds", i, "fields", &j, "inline"],
                        "BASE_TYPE_BOOLEAN",
                        "Must be either true or false.",
                    );
                }
            }
        }
        Some(_) => errors.add(
            &at("fields"),
            "LIST_TYPE_CONVERT",
            "Only iterables may be used in a ListType",
        ),
    }
    total
}

/// An embed's `footer` or `author` object: if present, `key` is required and at most `max`
/// long. Returns its length.
fn required_text(
    embed: &Map<String, Value>,
    object: &'static str,
    key: &'static str,
    max: usize,
    i: &str,
    errors: &mut FormErrors,
) -> usize {
    match embed.get(object) {
        None | Some(Value::Null) => 0,
        Some(Value::Object(o)) => match o.get(key) {
            Some(Value::String(s)) if !s.is_empty() => {
                max_len(s, max, &["embeds", i, object, key], errors)
            }
            None | Some(Value::Null) | Some(Value::String(_)) => {
                errors.add(
                    &["embeds", i, object, key],
                    "BASE_TYPE_REQUIRED",
                    "This field is required",
                );
                0
            }
            Some(other) => {
                not_a_string(other, &["embeds", i, object, key], errors);
                0
            }
        },
        Some(_) => {
            errors.add(
                &["embeds", i, object],
                "DICT_TYPE_CONVERT",
                "Only dictionaries may be used in a DictType",
            );
            0
        }
    }
}

/// `obj[key]` if it is a string; an error if it is present, not null and not a string.
/// `parent` is the error path of `obj`.
fn string_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    parent: &[&str],
    errors: &mut FormErrors,
) -> Option<&'a str> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            let mut path = parent.to_vec();
            path.push(key);
            not_a_string(other, &path, errors);
            None
        }
    }
}

fn not_a_string(value: &Value, path: &[&str], errors: &mut FormErrors) {
    errors.add(
        path,
        "BASE_TYPE_STRING",
        format!("Could not interpret \"{value}\" as string."),
    );
}

/// Adds an error if `s` is longer than `max` characters; returns its length in characters.
fn max_len(s: &str, max: usize, path: &[&str], errors: &mut FormErrors) -> usize {
    let n = s.chars().count();
    if n > max {
        errors.add(
            path,
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {max} or fewer in length."),
        );
    }
    n
}

fn url_check(url: &str, path: &[&str], errors: &mut FormErrors) {
    let scheme_ok = ["http://", "https://", "attachment://"]
        .iter()
        .any(|s| url.len() > s.len() && url[..s.len()].eq_ignore_ascii_case(s));
    if !scheme_ok {
        errors.add(path, "URL_TYPE_INVALID_URL", "Not a well formed URL.");
    }
}

/// `YYYY-MM-DDTHH:MM:SS` at the start (what Discord's ISO 8601 parser needs at least).
fn looks_iso8601(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    b.len() >= 19
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
}

// --- answers ----------------------------------------------------------------------------------

/// The message object Discord returns for `?wait=true`.
fn message_object(shared: &Shared, webhook_id: &str, valid: &Valid) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let seq = shared.messages.fetch_add(1, Ordering::Relaxed);
    let id = (now.as_millis().saturating_sub(DISCORD_EPOCH_MS) << 22) | u128::from(seq & 0xfff);
    let channel_id = valid
        .thread_id
        .clone()
        .unwrap_or_else(|| channel_of(webhook_id));
    let body = &valid.body;
    let embeds: Vec<Value> = items(body.get("embeds"))
        .map(|e| {
            let mut e = e.clone();
            if let Value::Object(o) = &mut e {
                o.entry("type").or_insert_with(|| json!("rich"));
            }
            e
        })
        .collect();
    json!({
        "id": id.to_string(),
        "type": 0,
        "content": body.get("content").and_then(Value::as_str).unwrap_or(""),
        "channel_id": channel_id,
        "author": {
            "bot": true,
            "id": webhook_id,
            "username": body.get("username").and_then(Value::as_str).unwrap_or("Fake Webhook"),
            "avatar": null,
            "discriminator": "0000",
        },
        "attachments": [],
        "embeds": embeds,
        "mentions": [],
        "mention_roles": [],
        "pinned": false,
        "mention_everyone": false,
        "tts": body.get("tts").and_then(Value::as_bool).unwrap_or(false),
        "timestamp": iso8601(now),
        "edited_timestamp": null,
        "flags": 0,
        "components": [],
        "webhook_id": webhook_id,
    })
}

/// A stable snowflake-like channel id for a webhook.
fn channel_of(webhook_id: &str) -> String {
    let h = webhook_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (h >> 2).to_string()
}

/// `2025-10-08T08:58:34.123000+00:00`, Discord's timestamp format.
fn iso8601(since_epoch: Duration) -> String {
    chrono::DateTime::<chrono::Utc>::UNIX_EPOCH
        .checked_add_signed(chrono::TimeDelta::from_std(since_epoch).unwrap_or_default())
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

fn ceil_millis(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000)
}

/// Seconds with 3 decimals, rounded up: `1.234`.
fn seconds_3(d: Duration) -> String {
    let ms = ceil_millis(d);
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn add_rate_headers(response: &mut Response, rate: &RateHeaders) {
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + rate.reset_after;
    let h = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        h.insert(name, value.parse().expect("header value"));
    };
    set("x-ratelimit-limit", rate.limit.to_string());
    set("x-ratelimit-remaining", rate.remaining.to_string());
    set("x-ratelimit-reset", seconds_3(reset));
    set("x-ratelimit-reset-after", seconds_3(rate.reset_after));
    set("x-ratelimit-bucket", rate.bucket.clone());
}

fn too_many(limited: &Limited) -> Response {
    let retry_after = ceil_millis(limited.retry_after) as f64 / 1000.0;
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": limited.global,
        }),
    );
    if let Some(rate) = &limited.bucket {
        add_rate_headers(&mut response, rate);
    }
    let h = response.headers_mut();
    let retry_secs = limited.retry_after.as_nanos().div_ceil(1_000_000_000);
    h.insert(header::RETRY_AFTER, retry_secs.to_string().parse().unwrap());
    h.insert("x-ratelimit-scope", limited.scope.parse().unwrap());
    if limited.global {
        h.insert("x-ratelimit-global", "true".parse().unwrap());
    }
    response
}

fn server_error(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code == StatusCode::BAD_GATEWAY {
        // What Cloudflare answers when Discord's origin is down: not JSON.
        return plain(code, "error code: 502");
    }
    let reason = code.canonical_reason().unwrap_or("Server Error");
    json_response(
        code,
        &json!({"message": format!("{}: {reason}", code.as_u16()), "code": 0}),
    )
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("response")
}

fn plain(status: StatusCode, body: &str) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=UTF-8")
        .body(Body::from(body.to_owned()))
        .expect("response")
}

fn empty(status: StatusCode) -> Response {
    Response::builder()
        .status(status)
        .body(Body::empty())
        .expect("response")
}

// --- a redirect's target ----------------------------------------------------------------------

/// A plain HTTP server on 127.0.0.1 that records every request it gets (any method, any path,
/// with its headers) and answers `200 {}`: where a [`Mode::Redirect`] points, to see what a
/// client that follows redirects would leak. Dropping it stops it.
pub struct Recorder {
    addr: SocketAddr,
    records: Arc<Mutex<Vec<Recorded>>>,
    _server: super::ServerThread,
}

impl Recorder {
    /// Starts a recorder with an OS-assigned port. Needs no runtime from the caller.
    pub fn start() -> Recorder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind recorder");
        let addr = listener.local_addr().expect("recorder address");
        let records: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let app = Router::new()
            .fallback(record_any)
            .with_state(records.clone());
        Recorder {
            addr,
            records,
            _server: super::serve_axum("recorder", listener, app),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received, in arrival order (`webhook_id` empty, `status` 200).
    pub fn requests(&self) -> Vec<Recorded> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

async fn record_any(
    State(records): State<Arc<Mutex<Vec<Recorded>>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        at: Instant::now(),
        method: method.to_string(),
        webhook_id: String::new(),
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw_body: String::from_utf8_lossy(&body).into_owned(),
        status: 200,
        in_retry_window: false,
        rejection: None,
    };
    records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(recorded);
    json_response(StatusCode::OK, &json!({}))
}

// --- connections that can be reset -------------------------------------------------------------

/// A TCP listener whose connections a handler can reset (see [`Mode::Reset`]).
struct ResettableListener {
    inner: tokio::net::TcpListener,
}

/// A handler's handle on its connection, given to it as `ConnectInfo`.
#[derive(Clone, Debug, Default)]
struct ConnHandle(Arc<AtomicBool>);

impl ConnHandle {
    /// Makes the connection fail on its next read or write: nothing more is written, and the
    /// socket is closed with a TCP RST.
    fn reset(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, _)) => {
                    let handle = ConnHandle::default();
                    let io = ResettableStream {
                        inner: stream,
                        reset: handle.0.clone(),
                    };
                    return (io, handle);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr().map(|_| ConnHandle::default())
    }
}

impl Connected<IncomingStream<'_, ResettableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

struct ResettableStream {
    inner: tokio::net::TcpStream,
    reset: Arc<AtomicBool>,
}

impl ResettableStream {
    /// If the connection was reset: sets `SO_LINGER` 0 so that dropping the socket sends a RST,
    /// and returns the error that makes the server drop it.
    fn check(&self) -> io::Result<()> {
        if !self.reset.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _ = self.inner.set_zero_linger();
        Err(io::Error::from(io::ErrorKind::ConnectionReset))
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
