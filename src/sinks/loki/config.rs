//! The `[loki]` section: where Loki is, who factorio-isr is to it (tenant, credentials), how
//! long to wait and retry; its one copy of each default, its validation, and the `build` that
//! makes the sink.
//!
//! How it fails: `validate` names the key and what to write instead; [`LokiConfig::credentials`]
//! and `build` fail on a secret or CA file that cannot be read, naming the file and never its
//! content.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use tracing::info;

use super::internal_events::LokiErrorKind;
use super::sink::LokiSink;
use crate::settings::{InvalidSetting, Secret};
use crate::sinks::SinkContext;
use crate::sinks::push::Pusher;

/// Default of [`LokiConfig::request_timeout_ms`].
pub const fn default_request_timeout_ms() -> u64 {
    10_000
}

/// Default of [`LokiConfig::backoff_initial_ms`].
pub const fn default_backoff_initial_ms() -> u64 {
    250
}

/// Default of [`LokiConfig::backoff_max_ms`].
pub const fn default_backoff_max_ms() -> u64 {
    30_000
}

/// The path of Loki's push API, added to a `url` that does not end with it.
pub const PUSH_PATH: &str = "/loki/api/v1/push";

/// The `[loki]` section of the config file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// Loki's base URL (`http://loki:3100`) or its push URL (`…/loki/api/v1/push`).
    /// `--loki URL` and `LOKI_URL` override it. Unset: no Loki sink.
    #[serde(default)]
    pub url: Option<String>,
    /// The tenant (`X-Scope-OrgID`) of a multi-tenant Loki. Unset: no header.
    #[serde(default)]
    pub tenant: Option<String>,
    /// The user of HTTP basic authentication; the password is in `password_file`.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the basic-authentication password (surrounding blanks are ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A file holding a bearer token (Grafana Cloud, a gateway); not with `username`.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// A PEM file of the CA certificates that sign Loki's certificate, for an `https` URL
    /// with a private CA. Unset: the system's trust store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long one push may take, connection included. Default 10000.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// First wait after a failed push; doubles with every failure. Default 250.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest wait between two pushes of a batch, and the wait after Loki refused the
    /// credentials. Default 30000.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Send the batch's `trace_id` as structured metadata. Loki 2.x without the v13 schema
    /// refuses structured metadata: set false there. Default true.
    #[serde(default = "crate::settings::default_true")]
    pub structured_metadata: bool,
    /// Send records no pattern matched (`event_type = "log"`). Default true.
    #[serde(default = "crate::settings::default_true")]
    pub forward_unmatched: bool,
}

impl Default for LokiConfig {
    fn default() -> Self {
        LokiConfig {
            url: None,
            tenant: None,
            username: None,
            password_file: None,
            bearer_token_file: None,
            ca_file: None,
            request_timeout_ms: default_request_timeout_ms(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            structured_metadata: true,
            forward_unmatched: true,
        }
    }
}

/// How factorio-isr authenticates to Loki.
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    /// No `Authorization` header.
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// The user.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: Bearer …`.
    Bearer(Secret),
}

/// A Loki setting that cannot work.
#[derive(Debug, Error)]
pub enum LokiError {
    /// A secret or certificate file cannot be read.
    #[error("loki.{key}: cannot read {}: {source}; check the path and that factorio-isr may read it", path.display())]
    File {
        /// The key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A secret file is empty.
    #[error("loki.{key}: {} is empty; write the secret into it", path.display())]
    Empty {
        /// The key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// The CA file holds no usable certificate.
    #[error("loki.ca_file: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    BadCa {
        /// The file.
        path: PathBuf,
    },
    /// The HTTP client cannot start.
    #[error("loki: the HTTP client did not start: {0}")]
    Client(String),
}

impl LokiConfig {
    /// Checks the values serde cannot: the URL's form, the credentials' combination, the
    /// timeouts.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(url) = &self.url {
            check_url(url).map_err(|problem| InvalidSetting::new("loki.url", problem))?;
        }
        if self.bearer_token_file.is_some()
            && (self.username.is_some() || self.password_file.is_some())
        {
            return Err(InvalidSetting::new(
                "loki.bearer_token_file",
                "cannot be used with username/password_file: choose one way to authenticate",
            ));
        }
        if self.username.is_some() != self.password_file.is_some() {
            return Err(InvalidSetting::new(
                "loki.username",
                "and loki.password_file go together: set both for basic authentication, or neither",
            ));
        }
        if let Some(t) = &self.tenant
            && (t.is_empty() || t.chars().any(|c| c.is_control()))
        {
            return Err(InvalidSetting::new(
                "loki.tenant",
                "must be a non-empty tenant id without control characters, e.g. \"factorio\"",
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(InvalidSetting::new(
                "loki.request_timeout_ms",
                "must be at least 1 (a push needs some time)",
            ));
        }
        Ok(())
    }

    /// Makes the file paths relative to the config file's directory `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.password_file,
            &mut self.bearer_token_file,
            &mut self.ca_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// The credentials, read from their files.
    pub fn credentials(&self) -> Result<Credentials, LokiError> {
        if let Some(path) = &self.bearer_token_file {
            return Ok(Credentials::Bearer(read_secret("bearer_token_file", path)?));
        }
        match (&self.username, &self.password_file) {
            (Some(username), Some(path)) => Ok(Credentials::Basic {
                username: username.clone(),
                password: read_secret("password_file", path)?,
            }),
            _ => Ok(Credentials::None),
        }
    }

    /// The CA certificates of `ca_file`, if set.
    pub fn ca_certificates(&self) -> Result<Vec<reqwest::Certificate>, LokiError> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let pem = std::fs::read(path).map_err(|source| LokiError::File {
            key: "ca_file",
            path: path.clone(),
            source,
        })?;
        match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => Ok(certs),
            _ => Err(LokiError::BadCa { path: path.clone() }),
        }
    }

    /// Everything `check` and `run` verify before starting: the files can be read.
    pub fn preflight(&self) -> Result<(), LokiError> {
        if self.url.is_none() {
            return Ok(());
        }
        self.credentials()?;
        self.ca_certificates()?;
        Ok(())
    }

    /// The sink, when a URL is configured: reporting to the `loki` health component and the
    /// Loki metrics.
    pub fn build(&self, ctx: &SinkContext<'_>) -> Result<Option<LokiSink>, LokiError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let push_url = push_url(url);
        let shown = redacted(&push_url);
        info!(url = %shown, tenant = self.tenant.as_deref().unwrap_or(""), "Sending events to Loki.");
        let mut pusher = Pusher::new(
            "Loki",
            shown.clone(),
            self.backoff_initial_ms,
            self.backoff_max_ms,
            LokiErrorKind,
        );
        pusher.metrics = ctx.metrics.loki.clone();
        pusher.health = ctx.health.component("loki", "no batch sent yet");
        // An HTTP sink holds no connection that could be down before it has something to send.
        pusher.health.ready();
        pusher.register();
        let sink = LokiSink::new(self, push_url, ctx.service, ctx.runtime.clone(), pusher)?;
        Ok(Some(sink))
    }
}

fn read_secret(key: &'static str, path: &Path) -> Result<Secret, LokiError> {
    let text = std::fs::read_to_string(path).map_err(|source| LokiError::File {
        key,
        path: path.to_owned(),
        source,
    })?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(LokiError::Empty {
            key,
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(secret))
}

/// Whether `url` can be Loki's: `http` or `https`, a host, no credentials in it.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| "is not a URL; write Loki's address, e.g. \"http://loki:3100\"")?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must start with http:// or https://, e.g. \"http://loki:3100\"");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host; write Loki's address, e.g. \"http://loki:3100\"");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "must not hold credentials (they would show in logs); use loki.username and loki.password_file",
        );
    }
    Ok(())
}

/// The push URL of `url`: `url` itself when it ends with [`PUSH_PATH`], else with it added.
pub fn push_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with(PUSH_PATH) {
        trimmed.to_owned()
    } else {
        format!("{trimmed}{PUSH_PATH}")
    }
}

/// `url` without its query (which may carry a token), for logs and `/ready`.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            let _ = u.set_password(None);
            let _ = u.set_username("");
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_the_push_path_once() {
        assert_eq!(
            push_url("http://loki:3100"),
            "http://loki:3100/loki/api/v1/push"
        );
        assert_eq!(
            push_url("http://loki:3100/"),
            "http://loki:3100/loki/api/v1/push"
        );
        assert_eq!(
            push_url("https://gw/loki/api/v1/push"),
            "https://gw/loki/api/v1/push"
        );
    }

    #[test]
    fn bad_urls_and_credential_mixes_are_refused() {
        for bad in [
            "loki:3100",
            "ftp://loki",
            "http://",
            "http://user:pw@loki:3100",
        ] {
            let c = LokiConfig {
                url: Some(bad.into()),
                ..LokiConfig::default()
            };
            assert_eq!(c.validate().unwrap_err().key, "loki.url", "{bad}");
        }
        let c = LokiConfig {
            url: Some("http://loki:3100".into()),
            username: Some("u".into()),
            ..LokiConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "loki.username");
        let c = LokiConfig {
            url: Some("http://loki:3100".into()),
            username: Some("u".into()),
            password_file: Some("p".into()),
            bearer_token_file: Some("t".into()),
            ..LokiConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "loki.bearer_token_file");
    }

    #[test]
    fn a_secret_file_error_names_the_file_not_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "  s3cret-TOKEN\n").unwrap();
        let c = LokiConfig {
            url: Some("http://loki:3100".into()),
            bearer_token_file: Some(token.clone()),
            ..LokiConfig::default()
        };
        match c.credentials().unwrap() {
            Credentials::Bearer(t) => assert_eq!(t.expose(), "s3cret-TOKEN"),
            other => panic!("{other:?}"),
        }
        assert!(!format!("{:?}", c.credentials().unwrap()).contains("s3cret"));
        std::fs::write(&token, "\n").unwrap();
        let e = c.credentials().unwrap_err().to_string();
        assert!(
            e.contains("loki.bearer_token_file") && e.contains("empty"),
            "{e}"
        );
        let missing = LokiConfig {
            bearer_token_file: Some(dir.path().join("nope")),
            ..c
        };
        let e = missing.credentials().unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("cannot read"), "{e}");
    }
}
