//! The Alertmanager receiver: a source that takes Prometheus alerts from Alertmanager's webhook
//! (`POST /alertmanager` on the admin server) and hands them, as Discord embeds, straight to the
//! Discord sink's queues. Alerts do not go through the log pipeline: they have no checkpoint
//! and no other sink wants them.
//!
//! - [`config`]: the `[alertmanager]` section: the token, the webhook, per-severity routes.
//! - [`payload`]: the webhook payload (version 4).
//! - [`format`](mod@format): each alert as an embed (🚨 firing, ✅ resolved).
//! - [`internal_events`]: what the receiver logs and counts.
//!
//! The receiver is off unless a token is configured (`[alertmanager] token_file` or
//! `ALERTMANAGER_TOKEN`); then every request must carry `Authorization: Bearer <token>`,
//! compared in constant time. A request is answered:
//!
//! - `401` without the right token (and nothing else is read);
//! - `413` with a body over [`MAX_BODY_BYTES`] (1 MiB);
//! - `400` with the reason when the body is not Alertmanager's JSON version 4;
//! - `503` when a Discord queue has no room for the notification's alerts, its webhook was
//!   disabled, or factorio-isr is stopping: nothing of it is queued (unless its alerts go to several webhooks and only a
//!   later one is full), and Alertmanager sends it again;
//! - `200` once every alert is queued. Delivery to Discord is then the Discord sink's: rate
//!   limits, retries, and the drops it counts.
//!
//! Where an alert goes: the webhook of `[alertmanager.routes.<severity>]` for its `severity`
//! label, else `[alertmanager] webhook`, else the Discord default webhook. Whom it pings, only
//! while it fires: that route's `mention_roles`, and for a `critical` alert the
//! `mention_roles` of the `[[servers]]` entry its `server` label names. Nothing in an alert's
//! labels or annotations can ping anyone (see [`format`](mod@format)).
//!
//! How it fails: at start, a token file that cannot be read is an error before anything runs;
//! at run time every problem is an answer to Alertmanager, logged and counted in
//! `alertmanager_requests_rejected_total{reason}`, never a crash. The token is never logged.

pub mod config;
pub mod format;
pub mod internal_events;
pub mod payload;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use subtle::ConstantTimeEq;

pub use self::config::{AlertRoute, AlertmanagerConfig, AlertmanagerError};
use self::format::render_alert;
use self::internal_events::{NotificationQueued, Rejection, RequestRejected};
use self::payload::{AlertStatus, Notification};
use crate::settings::Secret;
use crate::sinks::discord::Discord;
use crate::sinks::discord::format::Item;
use crate::sinks::discord::worker::QueueRefused;
use crate::telemetry::metrics::AlertmanagerMetrics;

/// The largest request body taken: 1 MiB (a notification of hundreds of alerts fits).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The path the receiver serves.
pub const PATH: &str = "/alertmanager";

/// The running receiver.
pub struct Receiver {
    token: Secret,
    config: AlertmanagerConfig,
    discord: Arc<Discord>,
    metrics: AlertmanagerMetrics,
}

impl Receiver {
    /// A receiver that accepts `token` and queues into `discord`'s webhooks as `config` routes.
    pub fn new(
        config: AlertmanagerConfig,
        token: Secret,
        discord: Arc<Discord>,
        metrics: AlertmanagerMetrics,
    ) -> Receiver {
        internal_events::register(&metrics);
        Receiver {
            token,
            config,
            discord,
            metrics,
        }
    }

    /// `POST /alertmanager`, for the admin server ([`crate::telemetry::admin::serve_with`]).
    pub fn routes(self: Arc<Self>) -> Router {
        Router::new().route(PATH, post(receive)).with_state(self)
    }

    /// Whether `headers` carry `Authorization: Bearer <the token>`.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let (scheme, token) = value.split_at(value.len().min(7));
        scheme.eq_ignore_ascii_case(b"bearer ")
            && bool::from(token.ct_eq(self.token.expose().as_bytes()))
    }

    /// Queues every alert of `notification` for its webhook; the number queued.
    pub fn take(&self, notification: &Notification) -> Result<u64, (Rejection, String)> {
        if self.discord.is_stopping() {
            return Err((
                Rejection::Stopping,
                "factorio-isr is stopping; send it again later".to_owned(),
            ));
        }
        let mut by_webhook: BTreeMap<&str, Vec<Item>> = BTreeMap::new();
        for alert in &notification.alerts {
            let severity = alert.label("severity").unwrap_or_default();
            let route = self.config.route(severity);
            let webhook = route
                .and_then(|r| r.webhook.as_deref())
                .or(self.config.webhook.as_deref())
                .unwrap_or(self.discord.default_webhook());
            let mut mentions = Vec::new();
            if alert.status == AlertStatus::Firing {
                if let Some(r) = route {
                    mentions.extend(r.mention_roles.iter().cloned());
                }
                if severity.eq_ignore_ascii_case("critical")
                    && let Some(server) = alert.label("server")
                {
                    mentions.extend(self.discord.server_roles(server).iter().cloned());
                }
            }
            by_webhook
                .entry(webhook)
                .or_default()
                .push(render_alert(alert, mentions));
        }
        let mut queued = 0u64;
        for (webhook, items) in by_webhook {
            let Some(queue) = self.discord.queue(webhook) else {
                // `check` makes sure every webhook named is configured.
                return Err((
                    Rejection::WebhookDisabled,
                    format!("the Discord webhook `{webhook}` is not configured"),
                ));
            };
            let n = items.len() as u64;
            match queue.try_push_all(items) {
                Ok(()) => queued += n,
                Err(QueueRefused::Full) => {
                    return Err((
                        Rejection::QueueFull,
                        format!(
                            "the queue of the Discord webhook `{webhook}` is full; send it again later"
                        ),
                    ));
                }
                Err(QueueRefused::Disabled) => {
                    return Err((
                        Rejection::WebhookDisabled,
                        format!(
                            "the Discord webhook `{webhook}` is disabled (Discord refused it); see /ready"
                        ),
                    ));
                }
            }
        }
        Ok(queued)
    }

    fn refuse(&self, status: StatusCode, rejection: Rejection, detail: &str) -> Response {
        RequestRejected { rejection, detail }.emit(&self.metrics);
        let mut response = (status, format!("{detail}\n")).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// `POST /alertmanager`.
async fn receive(State(receiver): State<Arc<Receiver>>, request: Request) -> Response {
    let r = &receiver;
    if !r.authorized(request.headers()) {
        return r.refuse(
            StatusCode::UNAUTHORIZED,
            Rejection::Unauthorized,
            "missing or wrong bearer token: set Alertmanager's http_config.authorization credentials to factorio-isr's token",
        );
    }
    let too_large = format!(
        "the body is over {MAX_BODY_BYTES} bytes: lower max_alerts in Alertmanager's webhook_config"
    );
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return r.refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::TooLarge,
            &too_large,
        );
    }
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return r.refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                Rejection::TooLarge,
                &too_large,
            );
        }
        Err(e) => {
            let detail = format!("the body could not be read: {e}");
            return r.refuse(StatusCode::BAD_REQUEST, Rejection::BadRequest, &detail);
        }
    };
    let notification = match Notification::parse(&body) {
        Ok(n) => n,
        Err(e) => {
            let detail = format!("not an Alertmanager webhook payload: {e}");
            return r.refuse(StatusCode::BAD_REQUEST, Rejection::BadRequest, &detail);
        }
    };
    if let Err(detail) = notification.check_version() {
        return r.refuse(StatusCode::BAD_REQUEST, Rejection::BadRequest, &detail);
    }
    match r.take(&notification) {
        Ok(alerts) => {
            NotificationQueued {
                status: notification.status.as_str(),
                alerts,
                truncated: notification.truncated_alerts,
            }
            .emit(&r.metrics);
            (StatusCode::OK, format!("queued {alerts} alerts\n")).into_response()
        }
        Err((rejection, detail)) => r.refuse(StatusCode::SERVICE_UNAVAILABLE, rejection, &detail),
    }
}

#[cfg(test)]
mod tests;
