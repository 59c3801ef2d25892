//! One worker per webhook: a bounded queue of rendered events, and a task that posts them.
//!
//! The route stage pushes into the queue without ever waiting ([`Queue::push`]); when the
//! queue is full the oldest event of the lowest severity goes (chat before crashes), counted
//! as `queue_full`. The task takes events from the front, as many as fit one message
//! ([`super::format::build_body`]), waits for the rate limits, and posts them. Events it puts
//! back (what did not fit the message, a message to retry) go to the front and obey the same
//! bound: the queue filled up while they were out, so the oldest least severe events go
//! until it holds at most `queue_events` again.
//!
//! What an answer does:
//! - 2xx: the events are delivered; the rate-limit headers are taken in.
//! - 429: the message goes back to the front and waits for `retry_after`.
//! - 404 or 401: the webhook was deleted or its token is wrong. It is disabled: logged once,
//!   shown in `/ready`; its queue and every later event are dropped (`webhook_disabled`).
//! - another 4xx: Discord refuses the message itself; it is dropped (`rejected`) and logged
//!   with Discord's reason. Never retried.
//! - 3xx: redirects are never followed (the token would travel to another address and the
//!   message would be lost on the way); the message is dropped (`redirected`), never retried,
//!   and logged with the status only, never the `Location`.
//! - 5xx, a timeout or a broken connection: retried with exponential backoff (with jitter),
//!   at most `max_attempts` times, then dropped (`retries_exhausted`).
//!
//! The webhook URL never appears in a log line or error: errors are stripped of it and the
//! webhook is named by its name in the config.
//!
//! Each of these outcomes is logged and counted by one event of [`super::internal_events`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::Notify;
use tracing::Instrument;

use super::config::{DiscordConfig, WebhookUrl};
use super::format::{Item, build_body};
use super::internal_events::{
    DropReason, EventsDelivered, EventsDropped, MessageRedirected, MessageRejected,
    RateLimitAnnounced, RateLimitHit, RateLimitWait, RequestFinished, RequestRetried,
    RetriesExhausted, WebhookDisabled,
};
use super::ratelimit::{RateLimits, parse_429};
use crate::event::Severity;
use crate::telemetry::health::Component;
use crate::telemetry::metrics::{DiscordMetrics, WebhookLabels};

/// Most events looked at to build one message (a message holds at most 10 embeds, and lines
/// up to 2000 characters).
const TAKE_MAX: usize = 100;

/// The events waiting for one webhook.
pub struct Queue {
    items: Mutex<VecDeque<Item>>,
    capacity: usize,
    notify: Notify,
    disabled: AtomicBool,
    metrics: DiscordMetrics,
    labels: WebhookLabels,
}

impl Queue {
    /// An empty queue of at most `capacity` events.
    pub fn new(webhook: &str, capacity: usize, metrics: DiscordMetrics) -> Queue {
        Queue {
            items: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            notify: Notify::new(),
            disabled: AtomicBool::new(false),
            metrics,
            labels: WebhookLabels {
                webhook: webhook.to_owned(),
            },
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Item>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an event without waiting. When full, the oldest event of the lowest severity is
    /// dropped (the new one, when it is less severe than everything queued).
    pub fn push(&self, item: Item) {
        if self.disabled.load(Ordering::Relaxed) {
            self.dropped(DropReason::WebhookDisabled, 1);
            return;
        }
        let mut items = self.lock();
        if items.len() >= self.capacity {
            let lowest = items
                .iter()
                .map(|i| i.severity)
                .min()
                .unwrap_or(Severity::Critical);
            if item.severity < lowest {
                drop(items);
                self.dropped(DropReason::QueueFull, 1);
                return;
            }
            if let Some(pos) = items.iter().position(|i| i.severity == lowest) {
                items.remove(pos);
                self.dropped(DropReason::QueueFull, 1);
            }
        }
        items.push_back(item);
        self.set_gauge(items.len());
        drop(items);
        self.notify.notify_one();
    }

    /// Adds all of `items`, or none of them: refused when the queue has no room for them all
    /// (nothing queued is dropped for them) or the webhook is disabled. For a sender that can
    /// try again later (Alertmanager retries a notification that was not taken).
    pub fn try_push_all(&self, items: Vec<Item>) -> Result<(), QueueRefused> {
        if self.disabled.load(Ordering::Relaxed) {
            return Err(QueueRefused::Disabled);
        }
        let mut queued = self.lock();
        if queued.len() + items.len() > self.capacity {
            return Err(QueueRefused::Full);
        }
        queued.extend(items);
        self.set_gauge(queued.len());
        drop(queued);
        self.notify.notify_one();
        Ok(())
    }

    /// Takes up to `n` events from the front.
    fn take_front(&self, n: usize) -> Vec<Item> {
        let mut items = self.lock();
        let n = n.min(items.len());
        let taken: Vec<Item> = items.drain(..n).collect();
        self.set_gauge(items.len());
        taken
    }

    /// Puts events back at the front, in order. Events queued while they were out may have
    /// filled the queue: the oldest of the lowest severity go, counted as `queue_full`, until
    /// it is within its capacity.
    fn put_back(&self, back: Vec<Item>) {
        let mut items = self.lock();
        for item in back.into_iter().rev() {
            items.push_front(item);
        }
        let mut dropped = 0u64;
        while items.len() > self.capacity {
            let lowest = items
                .iter()
                .map(|i| i.severity)
                .min()
                .unwrap_or(Severity::Critical);
            match items.iter().position(|i| i.severity == lowest) {
                Some(pos) => drop(items.remove(pos)),
                None => break,
            }
            dropped += 1;
        }
        self.set_gauge(items.len());
        drop(items);
        if dropped > 0 {
            self.dropped(DropReason::QueueFull, dropped);
        }
    }

    /// A copy of the events waiting, in order.
    pub fn snapshot(&self) -> Vec<Item> {
        self.lock().iter().cloned().collect()
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops everything queued, counting it under `reason`.
    pub fn drop_all(&self, reason: DropReason) {
        let n = self.take_front(usize::MAX).len();
        if n > 0 {
            self.dropped(reason, n as u64);
        }
    }

    fn dropped(&self, reason: DropReason, events: u64) {
        EventsDropped { reason, events }.emit(&self.metrics);
    }

    fn set_gauge(&self, len: usize) {
        self.metrics
            .queued
            .get_or_create(&self.labels)
            .set(len as i64);
    }
}

/// Why [`Queue::try_push_all`] took nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueRefused {
    /// The queue has no room for them all.
    Full,
    /// The webhook was disabled (Discord answered 404 or 401).
    Disabled,
}

/// What the worker of one webhook needs.
pub struct Worker {
    /// The webhook's name in the config.
    pub name: String,
    /// Its URL (secret).
    pub url: WebhookUrl,
    /// Its queue.
    pub queue: Arc<Queue>,
    /// Shared rate-limit windows.
    pub limits: Arc<RateLimits>,
    /// HTTP client (User-Agent and timeouts set).
    pub client: reqwest::Client,
    /// Settings.
    pub config: DiscordConfig,
    /// Counters.
    pub metrics: DiscordMetrics,
    /// Its `/ready` entry.
    pub health: Component,
    /// Set when factorio-isr stops: send what is queued without waiting for more, then end.
    pub stopping: Arc<AtomicBool>,
    /// Woken when `stopping` is set.
    pub stop_notify: Arc<Notify>,
}

/// How one request ended.
enum Outcome {
    Delivered,
    RateLimited,
    /// 404 or 401, with Discord's reason.
    Disabled(StatusCode, String),
    /// Another 4xx, with Discord's reason.
    Rejected(StatusCode, String),
    /// A 3xx: not followed.
    Redirected(StatusCode),
    Failed(String),
}

impl Worker {
    /// Posts queued events until stopped and drained (or disabled).
    pub async fn run(self) {
        let mut attempts = 0u32;
        let mut backoff = Duration::from_millis(self.config.retry_initial_ms.max(1));
        loop {
            if self.queue.is_empty() {
                if self.stopping.load(Ordering::Acquire) {
                    return;
                }
                tokio::select! {
                    _ = self.queue.notify.notified() => {}
                    _ = self.stop_notify.notified() => {}
                }
                if !self.stopping.load(Ordering::Acquire) && self.config.coalesce_ms > 0 {
                    // The first event of a burst waits a moment for the rest to join it.
                    tokio::time::sleep(Duration::from_millis(self.config.coalesce_ms)).await;
                }
                continue;
            }
            while let Some(wait) = self.limits.wait(&self.name, Instant::now()) {
                RateLimitWait {
                    webhook: &self.name,
                    wait,
                }
                .emit();
                tokio::time::sleep(wait).await;
            }
            let mut batch = self.queue.take_front(TAKE_MAX);
            let (n, body) = build_body(&batch, self.config.username.as_deref());
            let rest = batch.split_off(n.min(batch.len()));
            self.queue.put_back(rest);
            // The request continues the trace of its first traced event's batch; the parent is
            // set before anything reads the span's ids.
            let span = tracing::info_span!(
                parent: None,
                "sink.discord",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
                webhook = %self.name,
                events = n
            );
            if let Some(ids) = batch.iter().find_map(|i| i.trace.as_deref()) {
                crate::telemetry::traces::set_parent(&span, ids);
            }
            crate::telemetry::traces::record_ids(&span);
            let traceparent = crate::telemetry::traces::sampled_ids(&span)
                .map(|ids| crate::telemetry::traces::traceparent(&ids));
            let outcome = self
                .post(&body, traceparent.as_deref())
                .instrument(span.clone())
                .await;
            match outcome {
                Outcome::Delivered => {
                    attempts = 0;
                    backoff = Duration::from_millis(self.config.retry_initial_ms.max(1));
                    EventsDelivered {
                        webhook: &self.name,
                        events: batch.len() as u64,
                    }
                    .emit(&self.metrics);
                    self.health.ready();
                }
                Outcome::RateLimited => self.queue.put_back(batch),
                Outcome::Disabled(status, reason) => {
                    self.queue.disabled.store(true, Ordering::Relaxed);
                    let queued = self.queue.take_front(usize::MAX).len();
                    // Logged in the request's span, like what Discord's answer says.
                    span.in_scope(|| {
                        WebhookDisabled {
                            webhook: &self.name,
                            status,
                            reason: &reason,
                            dropped: (batch.len() + queued) as u64,
                        }
                        .emit(&self.metrics)
                    });
                    self.health.not_ready(format!(
                        "disabled: Discord answered {} ({reason}); check the webhook URL and restart",
                        status.as_u16()
                    ));
                    return;
                }
                Outcome::Rejected(status, reason) => span.in_scope(|| {
                    MessageRejected {
                        webhook: &self.name,
                        status,
                        reason: &reason,
                        dropped: batch.len() as u64,
                    }
                    .emit(&self.metrics)
                }),
                Outcome::Redirected(status) => span.in_scope(|| {
                    MessageRedirected {
                        webhook: &self.name,
                        status,
                        dropped: batch.len() as u64,
                    }
                    .emit(&self.metrics)
                }),
                Outcome::Failed(why) => {
                    // The request's span ends with the request, not after the wait below.
                    drop(span);
                    attempts += 1;
                    if attempts >= self.config.max_attempts.max(1) {
                        RetriesExhausted {
                            webhook: &self.name,
                            attempts,
                            error: &why,
                            dropped: batch.len() as u64,
                        }
                        .emit(&self.metrics);
                        attempts = 0;
                        continue;
                    }
                    self.health
                        .not_ready(format!("Discord is failing ({why}); retrying"));
                    let jittered = backoff / 2 + backoff.mul_f64(fastrand::f64() / 2.0);
                    RequestRetried {
                        webhook: &self.name,
                        error: &why,
                        retry_in: jittered,
                    }
                    .emit(&self.metrics);
                    self.queue.put_back(batch);
                    if !self.stopping.load(Ordering::Acquire) {
                        tokio::time::sleep(jittered).await;
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(self.config.retry_max_ms));
                }
            }
        }
    }

    async fn post(&self, body: &serde_json::Value, traceparent: Option<&str>) -> Outcome {
        let started = Instant::now();
        let mut request = self.client.post(self.url.with_wait()).json(body);
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        let sent = request.send().await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                RequestFinished {
                    webhook: &self.name,
                    status: None,
                    elapsed: started.elapsed(),
                }
                .emit(&self.metrics);
                // reqwest's errors carry the URL, which holds the webhook's token.
                return Outcome::Failed(e.without_url().to_string());
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap_or_default();
        RequestFinished {
            webhook: &self.name,
            status: Some(status),
            elapsed: started.elapsed(),
        }
        .emit(&self.metrics);
        let now = Instant::now();
        if status.is_success() {
            if self.limits.update(&self.name, &headers, now) {
                RateLimitAnnounced {
                    webhook: &self.name,
                }
                .emit(&self.metrics);
            }
            return Outcome::Delivered;
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let limited = parse_429(&headers, &bytes);
            self.limits.limited(&self.name, limited, &headers, now);
            RateLimitHit {
                webhook: &self.name,
                retry_after: limited.retry_after,
                global: limited.global,
            }
            .emit(&self.metrics);
            return Outcome::RateLimited;
        }
        if status.is_redirection() {
            return Outcome::Redirected(status);
        }
        let reason = discord_reason(&bytes);
        if status == StatusCode::NOT_FOUND || status == StatusCode::UNAUTHORIZED {
            return Outcome::Disabled(status, reason);
        }
        if status.is_client_error() {
            self.limits.update(&self.name, &headers, now);
            return Outcome::Rejected(status, reason);
        }
        Outcome::Failed(format!("HTTP {}", status.as_u16()))
    }
}

/// Discord's `code: message` from an error body, or a short excerpt of a body that is not
/// Discord's JSON (a proxy's page).
fn discord_reason(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => {
            let message = v
                .get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("no message");
            match v.get("code").and_then(serde_json::Value::as_i64) {
                Some(code) => format!("{code}: {message}"),
                None => message.to_owned(),
            }
        }
        Err(_) => String::from_utf8_lossy(body).chars().take(120).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::discord::format::ItemBody;

    fn item(severity: Severity, text: &str) -> Item {
        Item {
            severity,
            body: ItemBody::Line(text.to_owned()),
            trace: None,
            mentions: Vec::new(),
        }
    }

    fn texts(q: &Queue) -> Vec<String> {
        q.lock()
            .iter()
            .map(|i| match &i.body {
                ItemBody::Line(t) => t.clone(),
                ItemBody::Embed(e) => e.title.clone(),
            })
            .collect()
    }

    #[test]
    fn a_full_queue_drops_the_oldest_least_severe_event_first() {
        let metrics = DiscordMetrics::default();
        let q = Queue::new("main", 3, metrics.clone());
        q.push(item(Severity::Info, "join 1"));
        q.push(item(Severity::Critical, "crash"));
        q.push(item(Severity::Info, "join 2"));
        q.push(item(Severity::Info, "join 3"));
        assert_eq!(texts(&q), ["crash", "join 2", "join 3"]);
        q.push(item(Severity::Error, "error"));
        q.push(item(Severity::Error, "error 2"));
        assert_eq!(texts(&q), ["crash", "error", "error 2"]);
        // Less severe than everything queued: the new event is the one dropped.
        q.push(item(Severity::Info, "join 4"));
        assert_eq!(texts(&q), ["crash", "error", "error 2"]);
        let dropped = metrics
            .dropped
            .get_or_create(&crate::telemetry::metrics::ReasonLabels {
                reason: "queue_full".into(),
            })
            .get();
        assert_eq!(dropped, 4);
    }

    /// A webhook that takes one request, says so on `received`, and answers 500 once told to
    /// on `answer`.
    fn failing_webhook(
        received: std::sync::mpsc::Sender<()>,
        answer: std::sync::mpsc::Receiver<()>,
    ) -> WebhookUrl {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // The headers, then as much body as they announce.
            loop {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "the worker closed the connection");
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length: usize = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            received.send(()).unwrap();
            answer.recv().unwrap();
            conn.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .unwrap();
        });
        WebhookUrl::parse(&format!("http://{addr}/api/webhooks/1/token")).unwrap()
    }

    #[test]
    fn a_failed_message_put_back_keeps_the_queue_within_queue_events() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (received_tx, received) = std::sync::mpsc::channel();
        let (answer, answer_rx) = std::sync::mpsc::channel();
        let url = failing_webhook(received_tx, answer_rx);
        let config = DiscordConfig {
            queue_events: 3,
            coalesce_ms: 0,
            max_attempts: 5,
            // After the failure the worker waits a minute: long enough for the asserts.
            retry_initial_ms: 60_000,
            retry_max_ms: 60_000,
            ..DiscordConfig::default()
        };
        let metrics = DiscordMetrics::default();
        let queue = Arc::new(Queue::new("main", config.queue_events, metrics.clone()));
        queue.push(item(Severity::Info, "join 1"));
        queue.push(item(Severity::Critical, "crash"));
        queue.push(item(Severity::Info, "join 2"));
        let worker = Worker {
            name: "main".to_owned(),
            url,
            queue: queue.clone(),
            limits: Arc::new(RateLimits::default()),
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            config,
            metrics: metrics.clone(),
            health: Component::default(),
            stopping: Arc::new(AtomicBool::new(false)),
            stop_notify: Arc::new(Notify::new()),
        };
        runtime.spawn(worker.run());
        // The three are in one message, in flight; the queue fills up again meanwhile.
        received
            .recv_timeout(Duration::from_secs(30))
            .expect("the worker posts the queued events");
        assert!(queue.is_empty(), "{:?}", texts(&queue));
        for text in ["join 3", "join 4", "join 5"] {
            queue.push(item(Severity::Info, text));
        }
        // The post fails (500): the message goes back to the front, for a retry.
        answer.send(()).unwrap();
        let queue_full = || {
            metrics
                .dropped
                .get_or_create(&crate::telemetry::metrics::ReasonLabels {
                    reason: "queue_full".into(),
                })
                .get()
        };
        let started = Instant::now();
        while queue_full() == 0 && queue.len() <= 3 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the worker never put the failed message back"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Still at most `queue_events`: the oldest least severe went, the crash stays.
        assert_eq!(texts(&queue), ["crash", "join 4", "join 5"]);
        assert_eq!(queue_full(), 3);
        runtime.shutdown_background();
    }

    #[test]
    fn error_bodies_give_discords_reason() {
        assert_eq!(
            discord_reason(br#"{"message": "Unknown Webhook", "code": 10015}"#),
            "10015: Unknown Webhook"
        );
        assert_eq!(discord_reason(b"Bad Gateway"), "Bad Gateway");
    }
}
