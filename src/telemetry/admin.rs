//! The admin HTTP server: `GET /metrics`, `GET /healthz` (liveness) and
//! `GET /ready` (readiness), both JSON with `ok`, `reasons` and every component's state, and
//! status 200 or 503. Components above telemetry add routes of their own through
//! [`serve_with`] (the Alertmanager receiver's `POST /alertmanager`).
//!
//! `/metrics` answers in OpenMetrics text when the client asks for it (Prometheus does, and
//! gets exemplars), else in the classic Prometheus text format 0.0.4 (`curl`, `promtool check
//! metrics`, older scrapers), which names counters' metadata with `_total` and has no `# EOF`.
//!
//! It binds `127.0.0.1:9464` unless told otherwise (`[metrics] address`, `--metrics-addr`,
//! `METRICS_PORT`), so the metrics are not on the network by accident. It runs on the
//! runtime that waits for signals, apart from the pipeline's threads: a blocked pipeline
//! cannot keep it from answering.
//!
//! No client can hold it, or the descriptors the tailer needs: HTTP/1.1 connections are served
//! one task each (hyper) from an accept loop that admits at most `max_connections` at a time
//! and refuses the next at once (a `503` written without waiting, then closed; never queued).
//! A connection is closed when its request header has not arrived `header_read_timeout_ms`
//! after it connected or sent the first byte of a request (slowloris), when its response has
//! not been taken `response_timeout_ms` after the header arrived (a client that does not
//! read), and when it has been idle between requests for `idle_timeout_ms` (keep-alive; a
//! scraper simply connects again). Refused connections, failed accepts and closes for a
//! timeout are counted in `errors_total{component="admin"}` ([`AdminErrorKind`]).
//!
//! How it fails: an address that is not `HOST:PORT` or cannot be bound (in use, not local) is
//! an [`AdminError`] before the pipeline starts. An accept that fails later (no descriptors
//! left) is logged once per episode, counted, and retried after a short pause that grows to a
//! second, so it never spins; the connections already open keep being served.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

use crate::settings::{HostPort, InvalidSetting};

use super::health::{Health, Report};
use super::metrics::{ErrorCounter, ErrorKind, Metrics};

/// Default of [`MetricsConfig::address`].
pub fn default_metrics_address() -> String {
    "127.0.0.1:9464".to_owned()
}

/// Default of [`MetricsConfig::header_read_timeout_ms`].
pub const fn default_header_read_timeout_ms() -> u64 {
    5000
}

/// Default of [`MetricsConfig::idle_timeout_ms`].
pub const fn default_idle_timeout_ms() -> u64 {
    30_000
}

/// Default of [`MetricsConfig::response_timeout_ms`].
pub const fn default_response_timeout_ms() -> u64 {
    10_000
}

/// Default of [`MetricsConfig::max_connections`].
pub const fn default_max_connections() -> usize {
    64
}

/// The longest timeout `[metrics]` accepts: an hour.
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// The most connections `[metrics] max_connections` allows (each costs a file descriptor).
const MAX_CONNECTIONS: usize = 4096;

/// The `[metrics]` section: the admin server of `/metrics`, `/healthz` and `/ready`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve the admin endpoints. `METRICS_ENABLED=false` turns them off. Default true.
    #[serde(default = "crate::settings::default_true")]
    pub enabled: bool,
    /// `HOST:PORT` to listen on. `--metrics-addr` overrides it; `METRICS_PORT` overrides the
    /// port. Default `127.0.0.1:9464`: use `0.0.0.0:9464` to let other hosts scrape.
    #[serde(default = "default_metrics_address")]
    pub address: String,
    /// A connection whose request header has not wholly arrived this long after it connected,
    /// or after the first byte of a later request, is closed (slowloris). Default 5000.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// A kept-alive connection idle this long between requests is closed; the client connects
    /// again. Default 30000.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// A response not taken by the client this long after its request arrived is abandoned
    /// and the connection closed. Default 10000.
    #[serde(default = "default_response_timeout_ms")]
    pub response_timeout_ms: u64,
    /// Connections served at once; the next is refused at once (503, closed). Default 64.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            address: default_metrics_address(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            response_timeout_ms: default_response_timeout_ms(),
            max_connections: default_max_connections(),
        }
    }
}

impl MetricsConfig {
    /// Checks the values serde cannot: the address's form (port 0 lets the system pick one),
    /// timeouts of 1 ms to an hour, and 1 to 4096 connections.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if HostPort::parse_listen(&self.address).is_err() {
            return Err(InvalidSetting::new(
                "metrics.address",
                "must be HOST:PORT, for example \"127.0.0.1:9464\"",
            ));
        }
        let timeouts = [
            (
                "metrics.header_read_timeout_ms",
                self.header_read_timeout_ms,
            ),
            ("metrics.idle_timeout_ms", self.idle_timeout_ms),
            ("metrics.response_timeout_ms", self.response_timeout_ms),
        ];
        for (key, ms) in timeouts {
            if !(1..=MAX_TIMEOUT_MS).contains(&ms) {
                return Err(InvalidSetting::new(
                    key,
                    "must be between 1 and 3600000 milliseconds (an hour)",
                ));
            }
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return Err(InvalidSetting::new(
                "metrics.max_connections",
                "must be between 1 and 4096 (each connection holds a file descriptor)",
            ));
        }
        Ok(())
    }

    /// The admin server's limits these settings give.
    pub fn limits(&self) -> AdminLimits {
        let ms = Duration::from_millis;
        AdminLimits {
            header_read_timeout: ms(self.header_read_timeout_ms),
            idle_timeout: ms(self.idle_timeout_ms),
            response_timeout: ms(self.response_timeout_ms),
            max_connections: self.max_connections,
        }
    }

    /// The address to serve on, or `None` when the server is off.
    pub fn serve_address(&self) -> Option<&str> {
        self.enabled.then_some(self.address.as_str())
    }
}

/// The admin server cannot start.
#[derive(Debug, Error)]
pub enum AdminError {
    /// Binding failed.
    #[error(
        "cannot serve /metrics on {address}: {source}; choose another with --metrics-addr HOST:PORT or METRICS_PORT, or set METRICS_ENABLED=false"
    )]
    Bind {
        /// The address.
        address: String,
        /// The cause.
        source: io::Error,
    },
}

/// Binds the admin address now, so a busy port is reported before anything runs.
pub fn bind(address: &str) -> Result<TcpListener, AdminError> {
    let bind_error = |source| AdminError::Bind {
        address: address.to_owned(),
        source,
    };
    let listener = TcpListener::bind(address).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok(listener)
}

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The routes.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(healthz))
        .route("/ready", get(ready))
        .with_state(AdminState { metrics, health })
}

/// How long the admin server waits for a client, and how many it serves at once (see
/// [`MetricsConfig`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminLimits {
    /// From connecting, or from a request's first byte, to its whole header.
    pub header_read_timeout: Duration,
    /// Between two requests on a kept-alive connection.
    pub idle_timeout: Duration,
    /// From a request's header to its response taken by the client.
    pub response_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for AdminLimits {
    fn default() -> Self {
        MetricsConfig::default().limits()
    }
}

/// The admin server's errors, as counted in `errors_total{component="admin",error_type}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminErrorKind {
    /// A connection refused because `max_connections` were open (`refused`).
    Refused,
    /// Accepting a connection failed, typically for lack of file descriptors (`accept`).
    Accept,
    /// A connection closed because its request header or the taking of its response took
    /// too long (`timeout`). Idle keep-alive connections closed are not errors.
    Timeout,
}

impl ErrorKind for AdminErrorKind {
    const ALL: &'static [Self] = &[
        AdminErrorKind::Refused,
        AdminErrorKind::Accept,
        AdminErrorKind::Timeout,
    ];

    fn component(self) -> &'static str {
        "admin"
    }

    fn error_type(self) -> &'static str {
        match self {
            AdminErrorKind::Refused => "refused",
            AdminErrorKind::Accept => "accept",
            AdminErrorKind::Timeout => "timeout",
        }
    }
}

/// The first pause after a failed accept; it doubles up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest pause after failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves the routes on `listener` within `limits` until `shutdown` completes; then stops
/// accepting, lets each connection finish the request it is answering (idle ones close at
/// once) and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    limits: AdminLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, metrics, health, limits, Router::new(), shutdown).await
}

/// [`serve`] with more routes beside the admin endpoints: those of components above
/// telemetry (the Alertmanager receiver's `POST /alertmanager`), under the same limits.
pub async fn serve_with(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    limits: AdminLimits,
    routes: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let errors = metrics.pipeline.errors.clone();
    errors.register::<AdminErrorKind>();
    let router = router(metrics, health).merge(routes);
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    let refusal = refusal(max);
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    // Failed accepts in a row, and refused connections since the last admitted one: each run
    // is logged once when it starts and once when it ends.
    let mut failed_accepts: u64 = 0;
    let mut refused: u64 = 0;
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                errors.record(AdminErrorKind::Accept);
                if failed_accepts == 0 {
                    tracing::warn!(error = %e, "Cannot accept connections to the admin server; retrying, the open ones are still served.");
                }
                failed_accepts += 1;
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        if failed_accepts > 0 {
            tracing::info!(
                failed = failed_accepts,
                "Accepting connections to the admin server again."
            );
            failed_accepts = 0;
            backoff = ACCEPT_BACKOFF_MIN;
        }
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                if refused > 0 {
                    tracing::info!(refused, "The admin server admits connections again.");
                    refused = 0;
                }
                tokio::spawn(connection(
                    stream,
                    router.clone(),
                    limits,
                    stopped.clone(),
                    errors.clone(),
                    permit,
                ));
            }
            Err(_) => {
                errors.record(AdminErrorKind::Refused);
                if refused == 0 {
                    tracing::warn!(
                        max_connections = max,
                        "The admin server has all its connections open; refusing more until one closes."
                    );
                }
                refused += 1;
                refuse(stream, &refusal);
            }
        }
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it is closed.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
    Ok(())
}

/// Answers `stream` with `refusal` and closes it, without waiting for anything: what the
/// client already sent is read first (so the close does not reset the answer away), and the
/// answer fits the empty buffer of a new socket.
fn refuse(stream: TcpStream, refusal: &[u8]) {
    use std::io::{Read, Write};
    // Still non-blocking.
    let Ok(mut stream) = stream.into_std() else {
        return;
    };
    let mut request = [0u8; 4096];
    let _ = stream.read(&mut request);
    let _ = stream.write(refusal);
}

/// The answer to a connection over `max_connections`.
fn refusal(max: usize) -> Vec<u8> {
    let body = format!(
        "The admin server has its {max} connections (max_connections) open; try again later.\n"
    );
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Where a connection is, as far as its timeouts go, and since when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's header: from connecting, or from a later request's first byte.
    Header,
    /// Answering a request: from its header until its response is handed to hyper.
    Busy,
    /// Still answering: the response is handed to hyper, which has not yet written its last
    /// byte to the socket (a client that does not read). Since the same time as `Busy`.
    Answered,
    /// Kept alive between requests, nothing of the next one read.
    Idle,
}

/// A connection's phase, set by its socket (bytes read), its service (a request arrived) and
/// its responses (the last byte taken), and watched by its timer.
type PhaseCell = Arc<watch::Sender<(Phase, Instant)>>;

/// Serves one connection until it ends, one of its timeouts passes, or the server stops.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: AdminLimits,
    mut stopped: watch::Receiver<bool>,
    errors: ErrorCounter,
    _permit: OwnedSemaphorePermit,
) {
    let phase: PhaseCell = Arc::new(watch::Sender::new((Phase::Header, Instant::now())));
    let io = TokioIo::new(Tracked {
        stream,
        phase: phase.clone(),
    });
    let routes = TowerToHyperService::new(router);
    let answering = phase.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let busy = Busy::start(answering.clone());
        let response = hyper::service::Service::call(&routes, request);
        async move {
            let response = response.await?;
            Ok::<_, Infallible>(response.map(|body| Body::new(Answer { body, _busy: busy })))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    let mut conn = std::pin::pin!(conn);
    let mut expired = std::pin::pin!(expiry(phase.subscribe(), limits));
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "An admin connection ended with an error.");
                }
                return;
            }
            phase = &mut expired => {
                // Dropping the connection closes it.
                if phase != Phase::Idle {
                    errors.record(AdminErrorKind::Timeout);
                    tracing::debug!(?phase, "Closed an admin connection that took too long.");
                }
                return;
            }
            _ = stopped.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Completes with the phase whose time ran out.
async fn expiry(mut phases: watch::Receiver<(Phase, Instant)>, limits: AdminLimits) -> Phase {
    loop {
        let (phase, since) = *phases.borrow_and_update();
        let limit = match phase {
            Phase::Header => limits.header_read_timeout,
            Phase::Busy | Phase::Answered => limits.response_timeout,
            Phase::Idle => limits.idle_timeout,
        };
        tokio::select! {
            biased;
            changed = phases.changed() => {
                if changed.is_err() {
                    // The connection is gone; its task ends anyway.
                    std::future::pending::<()>().await;
                }
            }
            () = tokio::time::sleep_until(since + limit) => return phase,
        }
    }
}

/// The socket of a connection: a byte read while idle starts a request's header time; a
/// flush after a response was handed over (hyper flushes its socket once its own buffer is
/// written out) ends the request.
struct Tracked {
    stream: TcpStream,
    phase: PhaseCell,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.phase.send_if_modified(|p| {
                let idle = p.0 == Phase::Idle;
                if idle {
                    *p = (Phase::Header, Instant::now());
                }
                idle
            });
        }
        read
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.stream).poll_flush(cx);
        if flushed.is_ready() {
            this.phase.send_if_modified(|p| {
                let answered = p.0 == Phase::Answered;
                if answered {
                    *p = (Phase::Idle, Instant::now());
                }
                answered
            });
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A request being answered: busy from its start until dropped (with its response's body,
/// once hyper has taken the last byte), then answered until hyper has written it all.
struct Busy(PhaseCell);

impl Busy {
    fn start(phase: PhaseCell) -> Busy {
        phase.send_replace((Phase::Busy, Instant::now()));
        Busy(phase)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_if_modified(|p| {
            let busy = p.0 == Phase::Busy;
            if busy {
                p.0 = Phase::Answered;
            }
            busy
        });
    }
}

/// A response's body, which keeps its request busy until hyper drops it.
struct Answer {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

async fn serve_metrics(State(s): State<AdminState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let text = s.metrics.encode();
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            prometheus_text(&text),
        )
            .into_response()
    }
}

/// OpenMetrics text as Prometheus text format 0.0.4: counters' `# HELP` and `# TYPE` name the
/// `_total` series, `# UNIT` and `# EOF` go, exemplars (` # {…} v`) are cut off.
pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{total} {tail}"));
            }
            None if line.starts_with('#') => out.push_str(line),
            None => out.push_str(line.split_once(" # ").map_or(line, |(sample, _)| sample)),
        }
        out.push('\n');
    }
    out
}

fn json_report(report: Report) -> Response {
    let status = if report.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(report)).into_response()
}

async fn healthz(State(s): State<AdminState>) -> Response {
    json_report(s.health.liveness())
}

async fn ready(State(s): State<AdminState>) -> Response {
    json_report(s.health.readiness())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// GETs `path` over a real socket; returns the status line and the body.
    fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text.lines().next().unwrap_or_default().to_owned();
        let body = text.split_once("\r\n\r\n").map(|b| b.1).unwrap_or_default();
        (status, body.to_owned())
    }

    #[test]
    fn endpoints_answer_with_state_and_reasons() {
        let metrics = Arc::new(Metrics::new());
        let health = Health::new(metrics.component_status.clone());
        let logstash = health.component("logstash", "connecting to 127.0.0.1:5044");
        let listener = bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(serve(
            listener,
            metrics,
            health,
            AdminLimits::default(),
            async {
                let _ = stop_rx.await;
            },
        ));

        let (status, body) = get(addr, "/ready");
        assert!(status.contains("503"), "{status}");
        assert!(
            body.contains("logstash: connecting to 127.0.0.1:5044"),
            "{body}"
        );
        let (status, _) = get(addr, "/healthz");
        assert!(status.contains("200"), "{status}");

        logstash.ready();
        let (status, _) = get(addr, "/ready");
        assert!(status.contains("200"), "{status}");
        let (status, body) = get(addr, "/metrics");
        assert!(status.contains("200"), "{status}");
        assert!(
            body.contains("factorio_isr_component_status{component=\"logstash\"} 1"),
            "{body}"
        );

        logstash.failed("the sink thread died");
        let (status, body) = get(addr, "/healthz");
        assert!(
            status.contains("503") && body.contains("the sink thread died"),
            "{status} {body}"
        );
        let _ = stop_tx.send(());
        rt.block_on(server).unwrap().unwrap();
    }

    #[test]
    fn limits_are_read_and_checked() {
        let c: MetricsConfig = toml::from_str(
            "header_read_timeout_ms = 300\nidle_timeout_ms = 400\nresponse_timeout_ms = 500\nmax_connections = 3",
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.limits(),
            AdminLimits {
                header_read_timeout: Duration::from_millis(300),
                idle_timeout: Duration::from_millis(400),
                response_timeout: Duration::from_millis(500),
                max_connections: 3,
            }
        );
        MetricsConfig::default().validate().unwrap();
        let bad = |edit: fn(&mut MetricsConfig)| {
            let mut c = MetricsConfig::default();
            edit(&mut c);
            c.validate().unwrap_err().key
        };
        assert_eq!(
            bad(|c| c.header_read_timeout_ms = 0),
            "metrics.header_read_timeout_ms"
        );
        assert_eq!(
            bad(|c| c.idle_timeout_ms = u64::MAX),
            "metrics.idle_timeout_ms"
        );
        assert_eq!(
            bad(|c| c.response_timeout_ms = 0),
            "metrics.response_timeout_ms"
        );
        assert_eq!(bad(|c| c.max_connections = 0), "metrics.max_connections");
        assert_eq!(bad(|c| c.max_connections = 5000), "metrics.max_connections");
    }

    #[test]
    fn a_stop_closes_idle_and_silent_connections_at_once() {
        let metrics = Arc::new(Metrics::new());
        let health = Health::new(metrics.component_status.clone());
        let listener = bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // Timeouts far beyond the test: only the stop can close these.
        let hour = Duration::from_secs(3600);
        let limits = AdminLimits {
            header_read_timeout: hour,
            idle_timeout: hour,
            response_timeout: hour,
            max_connections: 4,
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(serve(listener, metrics, health, limits, async {
            let _ = stop_rx.await;
        }));
        let mut idle = std::net::TcpStream::connect(addr).unwrap();
        write!(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 4096];
        let n = idle.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        let silent = std::net::TcpStream::connect(addr).unwrap();
        // The silent one is served (holds a permit) once a third is answered after it.
        let (status, _) = get(addr, "/healthz");
        assert!(status.contains("200"), "{status}");

        let _ = stop_tx.send(());
        let stopped =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), server).await });
        assert!(
            matches!(stopped, Ok(Ok(Ok(())))),
            "the server did not stop with connections open: {stopped:?}"
        );
        drop(silent);
    }

    #[test]
    fn prometheus_text_names_counters_with_total_and_drops_openmetrics_only_lines() {
        let om = "# HELP x_lines Lines read.\n# TYPE x_lines counter\nx_lines_total{s=\"a\"} 3\n\
                  # HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n\
                  # HELP x_seconds Time.\n# TYPE x_seconds histogram\n# UNIT x_seconds seconds\n\
                  x_seconds_bucket{le=\"1\"} 1 # {trace_id=\"ab\"} 0.5\n# EOF\n";
        assert_eq!(
            prometheus_text(om),
            "# HELP x_lines_total Lines read.\n# TYPE x_lines_total counter\nx_lines_total{s=\"a\"} 3\n\
             # HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n\
             # HELP x_seconds Time.\n# TYPE x_seconds histogram\nx_seconds_bucket{le=\"1\"} 1\n"
        );
    }

    #[test]
    fn a_busy_port_names_the_address_and_the_fix() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let err = bind(&addr).unwrap_err().to_string();
        assert!(
            err.contains(&addr) && err.contains("--metrics-addr"),
            "{err}"
        );
    }
}
