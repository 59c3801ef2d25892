//! Alerts as Discord embeds: title `🚨 <alertname>` when firing and `✅ <alertname>` when
//! resolved, the `summary` and `description` annotations as the description, the colour by
//! status and severity (green when resolved; red for `critical` and `error`, orange for
//! `warning`, blue otherwise), fields Status, Severity, and Server and Service when the alert
//! has those labels, and the time it started (firing) or ended (resolved).
//!
//! Every label and annotation is text from elsewhere (a rule file, a label from a scraped
//! target): it is escaped like player text, so it can neither format the message nor ping
//! anyone. Sizes are cut to Discord's limits by the Discord sink's helpers.
//!
//! How it fails: it does not; an alert without a name or a time still renders.

use crate::event::Severity;
use crate::sinks::discord::format::{
    COLOR_ERROR, COLOR_INFO, COLOR_WARNING, DESCRIPTION_MAX, Embed, EmbedField, FIELD_VALUE_MAX,
    Item, ItemBody, TITLE_MAX, escape_markdown, truncate,
};

use super::payload::{Alert, AlertStatus};

/// Embed colour of a resolved alert (green).
pub const COLOR_RESOLVED: u32 = 0x2E_CC71;

/// The severity an alert's `severity` label stands for: it orders the Discord queue (the
/// least severe goes first when it is full) and picks the colour.
pub fn severity_of(label: Option<&str>) -> Severity {
    match label.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "page" | "fatal") => Severity::Critical,
        Some("error") => Severity::Error,
        Some("info" | "none" | "ticket") => Severity::Info,
        _ => Severity::Warning,
    }
}

/// The embed of `alert`, pinging `mentions` (role ids from the config).
pub fn render_alert(alert: &Alert, mentions: Vec<String>) -> Item {
    let firing = alert.status == AlertStatus::Firing;
    let severity = severity_of(alert.label("severity"));
    let name = alert.label("alertname").unwrap_or("alert");
    let title = format!(
        "{} {}",
        if firing { "🚨" } else { "✅" },
        escape_markdown(&one_line(name))
    );
    let text: Vec<String> = ["summary", "description"]
        .into_iter()
        .filter_map(|a| alert.annotation(a))
        .map(escape_markdown)
        .collect();
    let description =
        (!text.is_empty()).then(|| truncate(&text.join("\n\n"), DESCRIPTION_MAX).into_owned());
    let color = if !firing {
        COLOR_RESOLVED
    } else {
        match severity {
            Severity::Critical | Severity::Error => COLOR_ERROR,
            Severity::Warning => COLOR_WARNING,
            Severity::Info | Severity::Debug => COLOR_INFO,
        }
    };
    let mut fields = vec![
        field("Status", alert.status.as_str()),
        field("Severity", alert.label("severity").unwrap_or("none")),
    ];
    for (label, shown) in [("server", "Server"), ("service", "Service")] {
        if let Some(v) = alert.label(label) {
            fields.push(field(shown, v));
        }
    }
    let at = if firing {
        &alert.starts_at
    } else {
        &alert.ends_at
    };
    Item {
        severity: if firing { severity } else { Severity::Info },
        body: ItemBody::Embed(Embed {
            title: truncate(&title, TITLE_MAX).into_owned(),
            description,
            color: Some(color),
            fields,
            footer: None,
            timestamp: timestamp(at),
        }),
        trace: None,
        mentions,
    }
}

/// An inline field with the escaped, single-line `value`.
fn field(name: &str, value: &str) -> EmbedField {
    let value = escape_markdown(&one_line(value));
    EmbedField {
        name: name.to_owned(),
        value: truncate(&value, FIELD_VALUE_MAX).into_owned(),
        inline: true,
    }
}

/// `text` with its line breaks made spaces.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r']).collect::<Vec<_>>().join(" ")
}

/// An RFC 3339 time as Discord's embed timestamp (UTC, whole seconds); `None` when it does not
/// parse or is Alertmanager's "no time" (`0001-01-01T00:00:00Z`).
fn timestamp(at: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(at).ok()?;
    let t = t.with_timezone(&chrono::Utc);
    (chrono::Datelike::year(&t) > 1970)
        .then(|| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn alert(status: AlertStatus, labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Alert {
        let map = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        Alert {
            status,
            labels: map(labels),
            annotations: map(annotations),
            starts_at: "2026-01-15T10:00:00.123Z".into(),
            ends_at: "2026-01-15T10:05:00Z".into(),
            generator_url: String::new(),
            fingerprint: String::new(),
        }
    }

    fn embed(item: &Item) -> &Embed {
        match &item.body {
            ItemBody::Embed(e) => e,
            ItemBody::Line(l) => panic!("a line: {l}"),
        }
    }

    #[test]
    fn a_firing_alert_is_a_red_embed_with_its_fields_and_start() {
        let a = alert(
            AlertStatus::Firing,
            &[
                ("alertname", "FactorioIsrDown"),
                ("severity", "critical"),
                ("server", "primary"),
                ("service", "factorio-isr"),
            ],
            &[
                ("summary", "factorio-isr is down"),
                ("description", "No scrape for 5 minutes."),
            ],
        );
        let item = render_alert(&a, vec!["123456789012345678".into()]);
        assert_eq!(item.severity, Severity::Critical);
        assert_eq!(item.mentions, ["123456789012345678"]);
        let e = embed(&item);
        assert_eq!(e.title, "🚨 FactorioIsrDown");
        assert_eq!(
            e.description.as_deref(),
            Some("factorio\\-isr is down\n\nNo scrape for 5 minutes.")
        );
        assert_eq!(e.color, Some(COLOR_ERROR));
        let fields: Vec<(&str, &str)> = e
            .fields
            .iter()
            .map(|f| (f.name.as_str(), f.value.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("Status", "firing"),
                ("Severity", "critical"),
                ("Server", "primary"),
                ("Service", "factorio\\-isr"),
            ]
        );
        assert_eq!(e.timestamp.as_deref(), Some("2026-01-15T10:00:00Z"));
    }

    #[test]
    fn a_resolved_alert_is_green_with_its_end_and_warning_is_orange() {
        let a = alert(AlertStatus::Resolved, &[("alertname", "Slow")], &[]);
        let item = render_alert(&a, Vec::new());
        let e = embed(&item);
        assert_eq!(e.title, "✅ Slow");
        assert_eq!(e.color, Some(COLOR_RESOLVED));
        assert_eq!(e.description, None);
        assert_eq!(e.timestamp.as_deref(), Some("2026-01-15T10:05:00Z"));
        assert_eq!(e.fields[1].value, "none");
        let w = alert(AlertStatus::Firing, &[("severity", "warning")], &[]);
        let w = render_alert(&w, Vec::new());
        assert_eq!(embed(&w).color, Some(COLOR_WARNING));
        assert_eq!(embed(&w).title, "🚨 alert");
        let mut never = alert(AlertStatus::Resolved, &[], &[]);
        never.ends_at = "0001-01-01T00:00:00Z".into();
        assert_eq!(embed(&render_alert(&never, Vec::new())).timestamp, None);
    }

    #[test]
    fn labels_and_annotations_cannot_ping_or_format() {
        let a = alert(
            AlertStatus::Firing,
            &[
                ("alertname", "**Bold** <@&123456789012345678>\n# head"),
                ("server", "@everyone"),
            ],
            &[("summary", "<@1234567890123456789> [link](http://x) `code`")],
        );
        let item = render_alert(&a, Vec::new());
        let e = embed(&item);
        assert_eq!(
            e.title,
            "🚨 \\*\\*Bold\\*\\* \\<@&123456789012345678\\> \\# head"
        );
        let d = e.description.as_deref().unwrap();
        assert!(
            d.starts_with("\\<@1234567890123456789\\> \\[link\\]\\(http\\:"),
            "{d}"
        );
        assert_eq!(e.fields[2].value, "@\u{200B}everyone");
        assert!(item.mentions.is_empty());
    }
}
