//! What the Alertmanager receiver logs and counts, each in one place.

use crate::telemetry::metrics::{AlertStatusLabels, AlertmanagerMetrics, ReasonLabels};

/// Why a request to `POST /alertmanager` was refused: the `reason` label of
/// `alertmanager_requests_rejected_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization: Bearer` header, or the wrong token (401).
    Unauthorized,
    /// A body over 1 MiB (413).
    TooLarge,
    /// Not Alertmanager's JSON, or not version 4 (400).
    BadRequest,
    /// The Discord queue has no room (503, Alertmanager retries).
    QueueFull,
    /// The Discord webhook was disabled after Discord refused it (503).
    WebhookDisabled,
    /// factorio-isr is stopping: Discord takes nothing more (503, Alertmanager retries).
    Stopping,
}

impl Rejection {
    /// Every value, to show every series from the start.
    pub const ALL: &'static [Rejection] = &[
        Rejection::Unauthorized,
        Rejection::TooLarge,
        Rejection::BadRequest,
        Rejection::QueueFull,
        Rejection::WebhookDisabled,
        Rejection::Stopping,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Unauthorized => "unauthorized",
            Rejection::TooLarge => "too_large",
            Rejection::BadRequest => "bad_request",
            Rejection::QueueFull => "queue_full",
            Rejection::WebhookDisabled => "webhook_disabled",
            Rejection::Stopping => "stopping",
        }
    }
}

/// Shows every series at 0 from the start.
pub fn register(metrics: &AlertmanagerMetrics) {
    for r in Rejection::ALL {
        let _ = metrics.rejected.get_or_create(&reason(*r));
    }
    for status in ["firing", "resolved"] {
        let _ = metrics.notifications.get_or_create(&AlertStatusLabels {
            status: status.to_owned(),
        });
    }
}

fn reason(r: Rejection) -> ReasonLabels {
    ReasonLabels {
        reason: r.as_str().to_owned(),
    }
}

/// A request was refused. `detail` never holds the token.
pub struct RequestRejected<'a> {
    /// Why.
    pub rejection: Rejection,
    /// What the client is told.
    pub detail: &'a str,
}

impl RequestRejected<'_> {
    /// Logs (a warning: each is a mistake in Alertmanager's config or a Discord that is behind)
    /// and counts it.
    pub fn emit(&self, metrics: &AlertmanagerMetrics) {
        metrics
            .rejected
            .get_or_create(&reason(self.rejection))
            .inc();
        tracing::warn!(
            reason = self.rejection.as_str(),
            detail = self.detail,
            "Refused a notification on POST /alertmanager."
        );
    }
}

/// A notification's alerts were queued for Discord.
pub struct NotificationQueued<'a> {
    /// `firing` or `resolved`.
    pub status: &'a str,
    /// Alerts queued.
    pub alerts: u64,
    /// Alerts Alertmanager left out (its `max_alerts`).
    pub truncated: u64,
}

impl NotificationQueued<'_> {
    /// Logs and counts it.
    pub fn emit(&self, metrics: &AlertmanagerMetrics) {
        metrics
            .notifications
            .get_or_create(&AlertStatusLabels {
                status: self.status.to_owned(),
            })
            .inc();
        metrics.alerts_posted.inc_by(self.alerts);
        tracing::info!(
            status = self.status,
            alerts = self.alerts,
            truncated = self.truncated,
            "Queued an Alertmanager notification for Discord."
        );
    }
}
