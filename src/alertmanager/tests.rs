//! The receiver's answers and routing, with the Discord sink's workers held still (their
//! runtime never runs), so what was queued can be read.

use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::http::Request as HttpRequest;
use serde_json::{Value, json};

use super::*;
use crate::sinks::discord::format::{ItemBody, build_body};
use crate::sinks::discord::{DiscordConfig, ServerRoute, WebhookUrl};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

const TOKEN: &str = "am-SECRET-token";
const ONCALL_ROLE: &str = "111111111111111111";
const SERVER_ROLE: &str = "222222222222222222";

struct Fixture {
    receiver: Arc<Receiver>,
    metrics: Metrics,
    run: tokio::runtime::Runtime,
    // Holds the workers: never driven, so nothing leaves the queues.
    _idle: tokio::runtime::Runtime,
}

fn fixture(queue_events: usize) -> Fixture {
    let idle = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    fixture_on(
        DiscordConfig {
            queue_events,
            ..DiscordConfig::default()
        },
        idle,
    )
}

/// The fixture with the Discord workers on `idle` (held still unless it runs by itself).
fn fixture_on(discord_config: DiscordConfig, idle: tokio::runtime::Runtime) -> Fixture {
    let metrics = Metrics::new();
    let health = Health::new(metrics.component_status.clone());
    let url = |n| WebhookUrl::parse(&format!("http://127.0.0.1:9/api/webhooks/{n}/token")).unwrap();
    let webhooks = BTreeMap::from([
        (discord_config.default_webhook.clone(), url(1)),
        ("oncall".to_owned(), url(2)),
    ]);
    let servers = HashMap::from([(
        "primary".to_owned(),
        ServerRoute {
            mention_roles: vec![SERVER_ROLE.to_owned()],
            ..ServerRoute::default()
        },
    )]);
    let discord = Discord::start(
        &discord_config,
        webhooks,
        servers,
        idle.handle(),
        metrics.discord.clone(),
        &health,
    )
    .unwrap();
    let config: AlertmanagerConfig = toml::from_str(&format!(
        "[routes.critical]\nwebhook = \"oncall\"\nmention_roles = [\"{ONCALL_ROLE}\"]\n"
    ))
    .unwrap();
    let receiver = Receiver::new(
        config,
        Secret::new(TOKEN),
        Arc::new(discord),
        metrics.alertmanager.clone(),
    );
    Fixture {
        receiver: Arc::new(receiver),
        metrics,
        run: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        _idle: idle,
    }
}

impl Fixture {
    fn post(&self, auth: Option<&str>, body: impl Into<Body>) -> (StatusCode, String) {
        let mut request = HttpRequest::post(PATH);
        if let Some(a) = auth {
            request = request.header(header::AUTHORIZATION, a);
        }
        let request = request.body(body.into()).unwrap();
        self.run.block_on(async {
            let response = receive(State(self.receiver.clone()), request).await;
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        })
    }

    fn queued(&self, webhook: &str) -> Vec<Item> {
        self.receiver.discord.queue(webhook).unwrap().snapshot()
    }

    fn metric(&self, needle: &str) -> bool {
        self.metrics.encode().lines().any(|l| l == needle)
    }
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn alert(status: &str, name: &str, severity: &str, server: &str) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": name, "severity": severity, "server": server},
        "annotations": {"summary": format!("{name} on {server}")},
        "startsAt": "2026-01-15T10:00:00Z",
        "endsAt": if status == "firing" { "0001-01-01T00:00:00Z" } else { "2026-01-15T10:05:00Z" },
    })
}

fn notification(status: &str, alerts: Vec<Value>) -> String {
    json!({
        "version": "4", "status": status, "receiver": "factorio-isr",
        "groupKey": "{}:{}", "truncatedAlerts": 0, "groupLabels": {},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am:9093",
        "alerts": alerts,
    })
    .to_string()
}

fn titles(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|i| match &i.body {
            ItemBody::Embed(e) => e.title.clone(),
            ItemBody::Line(l) => l.clone(),
        })
        .collect()
}

#[test]
fn requests_without_the_right_token_are_refused_before_the_body_is_read() {
    let f = fixture(100);
    let body = notification("firing", vec![alert("firing", "A", "warning", "x")]);
    for auth in [
        None,
        Some("Bearer wrong".to_owned()),
        Some(format!("Basic {TOKEN}")),
        Some(format!("Bearer {TOKEN}x")),
        Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1])),
        Some(TOKEN.to_owned()),
    ] {
        let (status, text) = f.post(auth.as_deref(), body.clone());
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert!(!text.contains(TOKEN), "{text}");
    }
    assert!(f.queued("default").is_empty());
    assert!(
        f.metric(r#"factorio_isr_alertmanager_requests_rejected_total{reason="unauthorized"} 6"#)
    );
    // The scheme is case-insensitive, as HTTP says.
    let (status, _) = f.post(Some(&format!("bearer {TOKEN}")), body);
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn bodies_over_a_mebibyte_are_refused_whether_announced_or_streamed() {
    let f = fixture(100);
    let big = "x".repeat(MAX_BODY_BYTES + 1);
    let (status, text) = f.post(Some(&bearer()), big.clone());
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    // Without a length: a stream of chunks.
    let chunks = big
        .as_bytes()
        .chunks(64 * 1024)
        .map(Bytes::copy_from_slice)
        .collect();
    let stream = Body::new(Chunks(chunks));
    let (status, _) = f.post(Some(&bearer()), stream);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(f.metric(r#"factorio_isr_alertmanager_requests_rejected_total{reason="too_large"} 2"#));
}

use axum::body::Bytes;

/// A body of chunks whose length is not announced.
struct Chunks(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        std::task::Poll::Ready(
            self.get_mut()
                .0
                .pop_front()
                .map(|c| Ok(hyper::body::Frame::data(c))),
        )
    }
}

#[test]
fn bad_payloads_get_400_with_the_reason() {
    let f = fixture(100);
    let (status, text) = f.post(Some(&bearer()), "{not json");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text.contains("not an Alertmanager webhook payload") && text.contains("line 1"),
        "{text}"
    );
    let v3 = notification("firing", vec![]).replace(r#""version":"4""#, r#""version":"3""#);
    let (status, text) = f.post(Some(&bearer()), v3);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("version 4"), "{text}");
    let (status, text) = f.post(Some(&bearer()), r#"{"version":"4","status":"firing"}"#);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(text.contains("alerts"), "{text}");
    assert!(
        f.metric(r#"factorio_isr_alertmanager_requests_rejected_total{reason="bad_request"} 3"#)
    );
    assert!(f.queued("default").is_empty());
}

#[test]
fn alerts_are_queued_by_severity_route_and_ping_only_where_the_config_says() {
    let f = fixture(100);
    let body = notification(
        "firing",
        vec![
            alert("firing", "Crashed", "critical", "primary"),
            alert("firing", "Slow", "warning", "primary"),
            alert("resolved", "Gone", "critical", "primary"),
            alert("firing", "Other", "critical", "elsewhere"),
        ],
    );
    let (status, text) = f.post(Some(&bearer()), body);
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(titles(&f.queued("default")), ["🚨 Slow"]);
    assert!(f.queued("default")[0].mentions.is_empty());
    let oncall = f.queued("oncall");
    assert_eq!(titles(&oncall), ["🚨 Crashed", "✅ Gone", "🚨 Other"]);
    // Firing critical on `primary`: the route's role and the server's.
    assert_eq!(oncall[0].mentions, [ONCALL_ROLE, SERVER_ROLE]);
    // Resolved: nobody.
    assert!(oncall[1].mentions.is_empty());
    // Another server: the route's role only.
    assert_eq!(oncall[2].mentions, [ONCALL_ROLE]);
    // The first message pings exactly those roles; the resolved one goes in a message of its own.
    let (n, first) = build_body(&oncall, None);
    assert_eq!(n, 1);
    assert_eq!(
        first["content"],
        format!("<@&{ONCALL_ROLE}> <@&{SERVER_ROLE}>")
    );
    assert_eq!(
        first["allowed_mentions"],
        json!({"parse": [], "roles": [ONCALL_ROLE, SERVER_ROLE]})
    );
    let (_, second) = build_body(&oncall[1..], None);
    assert_eq!(second["allowed_mentions"], json!({"parse": []}));
    assert!(second.get("content").is_none(), "{second}");
    assert!(f.metric(r#"factorio_isr_alertmanager_notifications_total{status="firing"} 1"#));
    assert!(f.metric("factorio_isr_alertmanager_alerts_posted_total 4"));
}

#[test]
fn a_full_queue_refuses_the_whole_notification_with_503() {
    let f = fixture(2);
    let three = notification(
        "firing",
        (0..3)
            .map(|i| alert("firing", &format!("A{i}"), "warning", "x"))
            .collect(),
    );
    let (status, text) = f.post(Some(&bearer()), three);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("full"), "{text}");
    assert!(
        f.queued("default").is_empty(),
        "nothing of a refused notification is queued"
    );
    let two = notification(
        "firing",
        (0..2)
            .map(|i| alert("firing", &format!("B{i}"), "warning", "x"))
            .collect(),
    );
    assert_eq!(f.post(Some(&bearer()), two).0, StatusCode::OK);
    let one = notification("firing", vec![alert("firing", "C", "warning", "x")]);
    assert_eq!(
        f.post(Some(&bearer()), one).0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(titles(&f.queued("default")), ["🚨 B0", "🚨 B1"]);
    assert!(
        f.metric(r#"factorio_isr_alertmanager_requests_rejected_total{reason="queue_full"} 2"#)
    );
}

#[test]
fn once_factorio_isr_stops_notifications_get_503_to_be_sent_again() {
    // Workers that run, so that the stop can end them.
    let workers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let f = fixture_on(
        DiscordConfig {
            shutdown_flush_ms: 1,
            ..DiscordConfig::default()
        },
        workers,
    );
    f.receiver.discord.shutdown(f._idle.handle());
    let body = notification("firing", vec![alert("firing", "Late", "warning", "x")]);
    let (status, text) = f.post(Some(&bearer()), body);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("stopping"), "{text}");
    assert!(f.queued("default").is_empty());
    assert!(f.metric(r#"factorio_isr_alertmanager_requests_rejected_total{reason="stopping"} 1"#));
}
