//! The admin HTTP server: `GET /metrics`, `GET /healthz` (liveness) and
//! `GET /ready` (readiness), both JSON with `ok`, `reasons` and every component's state, and
//! status 200 or 503.
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
//! How it fails: an address that is not `HOST:PORT` or cannot be bound (in use, not local) is
//! an [`AdminError`] before the pipeline starts.

use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use thiserror::Error;

use crate::settings::{HostPort, InvalidSetting};

use super::health::{Health, Report};
use super::metrics::Metrics;

/// Default of [`MetricsConfig::address`].
pub fn default_metrics_address() -> String {
    "127.0.0.1:9464".to_owned()
}

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
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            address: default_metrics_address(),
        }
    }
}

impl MetricsConfig {
    /// Checks the values serde cannot: the address's form (port 0 lets the system pick one).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if HostPort::parse_listen(&self.address).is_err() {
            return Err(InvalidSetting::new(
                "metrics.address",
                "must be HOST:PORT, for example \"127.0.0.1:9464\"",
            ));
        }
        Ok(())
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

/// Serves the routes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(shutdown)
        .await
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
        let server = rt.spawn(serve(listener, metrics, health, async {
            let _ = stop_rx.await;
        }));

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
