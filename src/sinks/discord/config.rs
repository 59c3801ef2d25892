//! The `[discord]` section of the config file, and the webhooks it names.
//!
//! [`DiscordConfig`] holds every Discord setting with its default (one named function each);
//! [`DiscordConfig::validate`] refuses values Discord itself would refuse, and
//! [`resolve_webhooks`] turns the configured webhooks (a URL, or a secret file holding one) and
//! the URL of `--discord-webhook` / `DISCORD_WEBHOOK_URL` into the URLs the workers post to.
//! [`ServerRoute`] is where one server's events go.
//!
//! The webhook URL is a secret: [`WebhookUrl`] never prints it, and no error here echoes it.
//!
//! How it fails: a value Discord would refuse is an [`InvalidSetting`] naming its key; a
//! webhook without a usable URL (none, two, an unreadable file, not a webhook URL) or one that
//! a server names but nobody configured is a [`DiscordError`] naming the webhook.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use super::format::USERNAME_MAX;
use crate::settings::InvalidSetting;

/// Default of [`DiscordConfig::default_webhook`]: the webhook `DISCORD_WEBHOOK_URL` and
/// `--discord-webhook` set.
pub fn default_webhook_name() -> String {
    "default".to_owned()
}

/// Default of [`DiscordConfig::queue_events`].
pub const fn default_queue_events() -> usize {
    500
}

/// Default of [`DiscordConfig::coalesce_ms`].
pub const fn default_coalesce_ms() -> u64 {
    250
}

/// Default of [`DiscordConfig::request_timeout_ms`].
pub const fn default_request_timeout_ms() -> u64 {
    10_000
}

/// Default of [`DiscordConfig::max_attempts`].
pub const fn default_max_attempts() -> u32 {
    5
}

/// Default of [`DiscordConfig::retry_initial_ms`].
pub const fn default_retry_initial_ms() -> u64 {
    1000
}

/// Default of [`DiscordConfig::retry_max_ms`].
pub const fn default_retry_max_ms() -> u64 {
    60_000
}

/// Default of [`DiscordConfig::max_event_age_ms`].
pub const fn default_max_event_age_ms() -> u64 {
    600_000
}

/// Default of [`DiscordConfig::shutdown_flush_ms`].
pub const fn default_shutdown_flush_ms() -> u64 {
    5000
}

/// A webhook URL. Secret: its `Debug` and `Display` show `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    /// Checks that `url` looks like a webhook URL; the error never contains the URL.
    pub fn parse(url: &str) -> Result<WebhookUrl, &'static str> {
        let url = url.trim();
        let parsed = reqwest::Url::parse(url).map_err(|_| "is not a URL")?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err("must be an https:// URL");
        }
        // The token travels in the path: in clear over http://, so only to this machine.
        if parsed.scheme() == "http" && !is_loopback(&parsed) {
            return Err(
                "must be an https:// URL (http:// would send the webhook's token in clear; \
                 it is allowed only to this machine: localhost, 127.0.0.0/8, ::1)",
            );
        }
        if !parsed.path().contains("/api/webhooks/") {
            return Err(
                "is not a webhook URL (expected https://discord.com/api/webhooks/ID/TOKEN)",
            );
        }
        Ok(WebhookUrl(url.to_owned()))
    }

    /// The URL with `wait=true`, so Discord confirms the message or says why not.
    pub(super) fn with_wait(&self) -> reqwest::Url {
        let mut url = reqwest::Url::parse(&self.0).unwrap_or_else(|_| {
            // Checked by `parse`; a URL that stops parsing cannot reach Discord anyway.
            reqwest::Url::parse("http://invalid.invalid/").expect("a fixed valid URL")
        });
        url.query_pairs_mut().append_pair("wait", "true");
        url
    }
}

/// The URL's host is this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One `[discord.webhooks.NAME]`: where its URL comes from.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The webhook URL. Prefer `url_file`: a config file is often readable by more people
    /// than a secret should be.
    #[serde(default)]
    pub url: Option<WebhookUrl>,
    /// A file holding the URL (a Docker or systemd secret). Relative to the config file.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
}

/// The `[discord]` section.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// Named webhooks. `DISCORD_WEBHOOK_URL` / `--discord-webhook` add (or replace) the one
    /// named by `default_webhook`.
    #[serde(default)]
    pub webhooks: BTreeMap<String, WebhookConfig>,
    /// The webhook of servers that name none. Default `default`.
    #[serde(default = "default_webhook_name")]
    pub default_webhook: String,
    /// The author name shown on messages (1–80 characters). Unset: the webhook's own name.
    #[serde(default)]
    pub username: Option<String>,
    /// Event types or pattern names (`file/name`) never sent to Discord, for every server.
    #[serde(default)]
    pub disabled: Vec<String>,
    /// Do not send chat that a Discord-to-game bridge wrote (`[CHAT] <server>: …`) back to
    /// Discord. Default true.
    #[serde(default = "crate::settings::default_true")]
    pub echo_guard: bool,
    /// Events queued per webhook; beyond it the oldest least severe go first. Default 500.
    #[serde(default = "default_queue_events")]
    pub queue_events: usize,
    /// How long the first event of a burst waits for others to share its message. Default 250.
    #[serde(default = "default_coalesce_ms")]
    pub coalesce_ms: u64,
    /// Timeout of one request. Default 10000.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Attempts of a message on 5xx answers, timeouts and broken connections. Default 5.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First wait before a retry; doubles each time. Default 1000.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// Longest wait before a retry. Default 60000.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Events older than this (a backlog read at start) are not sent. 0: no limit. Default
    /// 600000 (10 minutes).
    #[serde(default = "default_max_event_age_ms")]
    pub max_event_age_ms: u64,
    /// How long a stop waits for queued messages to be sent. Default 5000.
    #[serde(default = "default_shutdown_flush_ms")]
    pub shutdown_flush_ms: u64,
}

impl Default for DiscordConfig {
    fn default() -> Self {
        DiscordConfig {
            webhooks: BTreeMap::new(),
            default_webhook: default_webhook_name(),
            username: None,
            disabled: Vec::new(),
            echo_guard: true,
            queue_events: default_queue_events(),
            coalesce_ms: default_coalesce_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            max_attempts: default_max_attempts(),
            retry_initial_ms: default_retry_initial_ms(),
            retry_max_ms: default_retry_max_ms(),
            max_event_age_ms: default_max_event_age_ms(),
            shutdown_flush_ms: default_shutdown_flush_ms(),
        }
    }
}

impl DiscordConfig {
    /// Makes `url_file` paths absolute against `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        for w in self.webhooks.values_mut() {
            if let Some(p) = &mut w.url_file
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        }
    }

    /// Checks the values Discord would refuse: a `username` must be 1 to 80 characters (not
    /// counting surrounding blanks) and contain neither "discord" nor "clyde" in any case.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(name) = &self.username {
            let lower = name.to_lowercase();
            let len = name.trim().chars().count();
            if !(1..=USERNAME_MAX).contains(&len)
                || lower.contains("discord")
                || lower.contains("clyde")
            {
                return Err(InvalidSetting::new(
                    "discord.username",
                    "must be 1 to 80 characters and contain neither \"discord\" nor \"clyde\" (Discord refuses such names)",
                ));
            }
        }
        Ok(())
    }
}

/// A webhook that cannot be used.
#[derive(Debug, Error)]
pub enum DiscordError {
    /// The URL is wrong (never shown: it is a secret).
    #[error("discord webhook `{name}`: the URL {problem}")]
    BadUrl {
        /// The webhook.
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The URL of `DISCORD_WEBHOOK_URL` or `--discord-webhook` is wrong (never shown).
    #[error(
        "DISCORD_WEBHOOK_URL (or --discord-webhook), the URL of the discord webhook `{name}`, {problem}"
    )]
    BadDefaultUrl {
        /// The webhook it sets (`discord.default_webhook`).
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// Both or neither of `url` and `url_file`.
    #[error("discord webhook `{name}`: set exactly one of url and url_file")]
    UrlSource {
        /// The webhook.
        name: String,
    },
    /// The secret file cannot be read.
    #[error("discord webhook `{name}`: cannot read {}: {source}", path.display())]
    UrlFile {
        /// The webhook.
        name: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A server or pattern names a webhook that is not configured.
    #[error(
        "{who} posts to the discord webhook `{name}`, which is not configured; add [discord.webhooks.{name}]"
    )]
    Unknown {
        /// Who names it.
        who: String,
        /// The missing webhook.
        name: String,
    },
}

/// The webhooks in use, by name, with their URLs: the config's, then the one of the flag or
/// `DISCORD_WEBHOOK_URL` under `default_webhook`. Fails on the first unusable webhook; see
/// [`check_webhooks`] for all of them.
pub fn resolve_webhooks(
    config: &DiscordConfig,
    override_url: Option<&str>,
) -> Result<BTreeMap<String, WebhookUrl>, DiscordError> {
    let (webhooks, mut problems) = check_webhooks(config, override_url);
    if problems.is_empty() {
        Ok(webhooks)
    } else {
        Err(problems.swap_remove(0))
    }
}

/// The usable webhooks, by name, and a problem for every webhook that cannot be used (in
/// name order, the flag's or `DISCORD_WEBHOOK_URL`'s last).
pub fn check_webhooks(
    config: &DiscordConfig,
    override_url: Option<&str>,
) -> (BTreeMap<String, WebhookUrl>, Vec<DiscordError>) {
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    for (name, w) in &config.webhooks {
        let url = match (&w.url, &w.url_file) {
            (Some(u), None) => u.0.clone(),
            (None, Some(path)) => match std::fs::read_to_string(path) {
                Ok(text) => text.trim().to_owned(),
                Err(source) => {
                    problems.push(DiscordError::UrlFile {
                        name: name.clone(),
                        path: path.clone(),
                        source,
                    });
                    continue;
                }
            },
            _ => {
                // The flag or environment may supply the default webhook's URL.
                if !(override_url.is_some() && *name == config.default_webhook && w.url.is_none()) {
                    problems.push(DiscordError::UrlSource { name: name.clone() });
                }
                continue;
            }
        };
        match WebhookUrl::parse(&url) {
            Ok(url) => {
                out.insert(name.clone(), url);
            }
            Err(problem) => problems.push(DiscordError::BadUrl {
                name: name.clone(),
                problem,
            }),
        }
    }
    if let Some(u) = override_url {
        let name = config.default_webhook.clone();
        match WebhookUrl::parse(u) {
            Ok(url) => {
                out.insert(name, url);
            }
            Err(problem) => {
                out.remove(&name);
                problems.push(DiscordError::BadDefaultUrl { name, problem });
            }
        }
    }
    (out, problems)
}

/// Where one server's events go.
#[derive(Clone, Debug, Default)]
pub struct ServerRoute {
    /// Its webhook; `None`: the default webhook.
    pub webhook: Option<String>,
    /// Event types or pattern names not sent for this server.
    pub disabled: Vec<String>,
    /// Role ids pinged for this server's critical events (a crash) and critical alerts.
    pub mention_roles: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_never_shown() {
        let url = WebhookUrl::parse("https://discord.com/api/webhooks/1/SECRET").unwrap();
        assert_eq!(format!("{url} {url:?}"), "<redacted> <redacted>");
        assert_eq!(
            url.with_wait().as_str(),
            "https://discord.com/api/webhooks/1/SECRET?wait=true"
        );
        for bad in [
            "not a url SECRET",
            "ftp://x/api/webhooks/1/SECRET",
            "https://discord.com/SECRET",
        ] {
            let err = WebhookUrl::parse(bad).unwrap_err();
            assert!(!err.contains("SECRET"), "{err}");
        }
    }

    #[test]
    fn http_is_refused_except_to_this_machine() {
        for far in [
            "http://discord.com/api/webhooks/1/SECRET",
            "http://10.0.0.1:8080/api/webhooks/1/SECRET",
            "http://[2001:db8::1]/api/webhooks/1/SECRET",
            "http://localhost.example.com/api/webhooks/1/SECRET",
        ] {
            let err = WebhookUrl::parse(far).unwrap_err();
            assert!(
                err.contains("https://") && !err.contains("SECRET"),
                "{far}: {err}"
            );
        }
        for near in [
            "http://127.0.0.1:8080/api/webhooks/1/SECRET",
            "http://127.1.2.3/api/webhooks/1/SECRET",
            "http://[::1]:8080/api/webhooks/1/SECRET",
            "http://LOCALHOST:8080/api/webhooks/1/SECRET",
        ] {
            assert!(WebhookUrl::parse(near).is_ok(), "{near}");
        }
        let err = resolve_webhooks(
            &DiscordConfig::default(),
            Some("http://discord.com/api/webhooks/1/SECRET"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("default") && !err.contains("SECRET"), "{err}");
    }

    #[test]
    fn webhooks_come_from_the_config_a_file_or_the_override() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hook");
        std::fs::write(&file, "https://discord.com/api/webhooks/2/FILESECRET\n").unwrap();
        let mut config = DiscordConfig::default();
        config.webhooks.insert(
            "admins".into(),
            WebhookConfig {
                url: None,
                url_file: Some(file),
            },
        );
        let hooks =
            resolve_webhooks(&config, Some("https://discord.com/api/webhooks/1/ENV")).unwrap();
        assert_eq!(hooks.keys().collect::<Vec<_>>(), ["admins", "default"]);
        assert_eq!(
            hooks["admins"].0,
            "https://discord.com/api/webhooks/2/FILESECRET"
        );

        config
            .webhooks
            .insert("broken".into(), WebhookConfig::default());
        let err = resolve_webhooks(&config, None).unwrap_err().to_string();
        assert!(
            err.contains("`broken`") && err.contains("exactly one"),
            "{err}"
        );

        let config = DiscordConfig::default();
        let err = resolve_webhooks(&config, Some("https://example.com/hook?token=SECRET"))
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("SECRET") && err.contains("`default`"),
            "{err}"
        );
    }

    #[test]
    fn every_unusable_webhook_is_reported_not_only_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = DiscordConfig::default();
        let hook = |url: Option<&str>, file: Option<PathBuf>| WebhookConfig {
            url: url.map(|u| WebhookUrl(u.to_owned())),
            url_file: file,
        };
        config
            .webhooks
            .insert("a_bad".into(), hook(Some("not a url SECRET"), None));
        config.webhooks.insert(
            "b_file".into(),
            hook(None, Some(dir.path().join("missing"))),
        );
        config.webhooks.insert("c_none".into(), hook(None, None));
        config.webhooks.insert(
            "d_good".into(),
            hook(Some("https://discord.com/api/webhooks/1/SECRET"), None),
        );
        let (good, problems) = check_webhooks(&config, Some("https://example.com/SECRET"));
        assert_eq!(good.keys().collect::<Vec<_>>(), ["d_good"]);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 4, "{text:#?}");
        assert!(
            text[0].contains("`a_bad`: the URL is not a URL"),
            "{}",
            text[0]
        );
        assert!(text[1].contains("`b_file`: cannot read"), "{}", text[1]);
        assert!(text[2].contains("`c_none`: set exactly one"), "{}", text[2]);
        assert!(text[3].starts_with("DISCORD_WEBHOOK_URL"), "{}", text[3]);
        for t in &text {
            assert!(!t.contains("SECRET"), "{t}");
        }
    }

    #[test]
    fn usernames_discord_refuses_are_refused() {
        let with = |name: &str| DiscordConfig {
            username: Some(name.to_owned()),
            ..DiscordConfig::default()
        };
        let too_long = "x".repeat(81);
        for bad in [
            "",
            "   ",
            "My Discord Bot",
            "clyde",
            "CLYDE",
            too_long.as_str(),
        ] {
            let err = with(bad).validate().unwrap_err();
            assert_eq!(err.key, "discord.username", "{bad:?}");
            assert_eq!(
                err.problem,
                "must be 1 to 80 characters and contain neither \"discord\" nor \"clyde\" (Discord refuses such names)"
            );
            assert_eq!(
                err.to_string(),
                format!("`discord.username` {}", err.problem)
            );
        }
        for good in ["Factorio", " Factorio ", "x", &"x".repeat(80), "Ünïcödé ⚙"] {
            assert_eq!(with(good).validate(), Ok(()), "{good:?}");
        }
        assert_eq!(DiscordConfig::default().validate(), Ok(()));
    }
}
