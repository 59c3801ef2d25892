//! Alertmanager's webhook payload, version 4: one notification of a group of alerts.
//!
//! Only what the receiver uses is required (`version`, `status`, `alerts` and each alert's
//! `status`); every other field may be missing, and unknown fields are ignored, so a newer
//! Alertmanager that adds fields still gets through. Labels and annotations are strings.
//!
//! How it fails: a body that is not this JSON is a [`serde_json::Error`] (with its line and
//! column), a version other than 4 is refused by [`Notification::check_version`]; the receiver
//! answers both with 400 and the reason.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A notification: the alerts of one group, firing or resolved.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The payload's version: `"4"`.
    pub version: String,
    /// Identifies the group.
    #[serde(default)]
    pub group_key: String,
    /// Alerts left out because of the receiver's `max_alerts`.
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `firing` when at least one alert fires, else `resolved`.
    pub status: AlertStatus,
    /// The receiver's name in Alertmanager's config.
    #[serde(default)]
    pub receiver: String,
    /// The labels the group is made by.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert has.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert has.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Alertmanager's own address.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// One alert of a notification.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: AlertStatus,
    /// Its labels: `alertname`, `severity`, `server`, `service`…
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its annotations: `summary`, `description`…
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When it started firing, RFC 3339.
    #[serde(default)]
    pub starts_at: String,
    /// When it was resolved, RFC 3339 (`0001-01-01T00:00:00Z` while it fires).
    #[serde(default)]
    pub ends_at: String,
    /// The rule's page in Prometheus.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Identifies the alert.
    #[serde(default)]
    pub fingerprint: String,
}

/// Whether an alert (or a notification) fires.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Firing.
    Firing,
    /// Resolved.
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

impl Notification {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<Notification, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// `Err` with the reason when the payload is not version 4.
    pub fn check_version(&self) -> Result<(), String> {
        if self.version == "4" {
            Ok(())
        } else {
            Err(format!(
                "payload version {:?} is not supported: factorio-isr reads Alertmanager's webhook payload version 4",
                self.version
            ))
        }
    }
}

impl Alert {
    /// A label's value, when the alert has it and it is not blank.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// An annotation's value, when the alert has it and it is not blank.
    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A notification as Alertmanager 0.25 sends it.
    pub(crate) const SAMPLE: &str = r#"{
      "receiver": "factorio-isr", "status": "firing",
      "alerts": [{
        "status": "firing",
        "labels": {"alertname": "FactorioIsrDown", "severity": "critical", "server": "primary"},
        "annotations": {"summary": "factorio-isr is down"},
        "startsAt": "2026-01-15T10:00:00.123Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph", "fingerprint": "c0ffee"
      }],
      "groupLabels": {"alertname": "FactorioIsrDown"},
      "commonLabels": {"alertname": "FactorioIsrDown"}, "commonAnnotations": {},
      "externalURL": "http://alertmanager:9093", "version": "4",
      "groupKey": "{}:{alertname=\"FactorioIsrDown\"}", "truncatedAlerts": 0,
      "somethingNew": true
    }"#;

    #[test]
    fn version_4_parses_and_other_versions_are_refused() {
        let n = Notification::parse(SAMPLE.as_bytes()).unwrap();
        n.check_version().unwrap();
        assert_eq!(n.status, AlertStatus::Firing);
        assert_eq!(n.alerts[0].label("server"), Some("primary"));
        assert_eq!(
            n.alerts[0].annotation("summary"),
            Some("factorio-isr is down")
        );
        let old = SAMPLE.replace(r#""version": "4""#, r#""version": "3""#);
        let err = Notification::parse(old.as_bytes())
            .unwrap()
            .check_version()
            .unwrap_err();
        assert!(err.contains("version 4"), "{err}");
        let err = Notification::parse(b"{\"version\": \"4\"}").unwrap_err();
        assert!(err.to_string().contains("status"), "{err}");
    }
}
