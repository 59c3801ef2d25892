//! The `[otlp_logs]` section: whether the sink is on, where the receiver is, how long to wait
//! and retry; its one copy of each default, its validation, and the `build` that makes the
//! sink.
//!
//! How it fails: `validate` names the key and what to write instead; `build` fails on a CA
//! file that cannot be read, naming the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;
use tracing::info;

use super::internal_events::OtlpLogsErrorKind;
use super::sink::OtlpLogsSink;
use crate::settings::InvalidSetting;
use crate::sinks::SinkContext;
use crate::sinks::push::Pusher;

/// Default of [`OtlpLogsConfig::request_timeout_ms`].
pub const fn default_request_timeout_ms() -> u64 {
    10_000
}

/// Default of [`OtlpLogsConfig::backoff_initial_ms`].
pub const fn default_backoff_initial_ms() -> u64 {
    250
}

/// Default of [`OtlpLogsConfig::backoff_max_ms`].
pub const fn default_backoff_max_ms() -> u64 {
    30_000
}

/// The endpoint when neither the file nor the environment names one: a local collector.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4317";

/// The `[otlp_logs]` section of the config file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OtlpLogsConfig {
    /// Turns the sink on with the endpoint of the environment
    /// (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT`, else
    /// `http://localhost:4317`). Setting `endpoint`, or `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`,
    /// turns it on too. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// The OTLP/gRPC receiver (`http://otel-collector:4317`; `https://` for TLS).
    /// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` overrides it.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A PEM file of the CA certificates that sign the receiver's certificate, for an
    /// `https` endpoint with a private CA. Unset: the system's trust store.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long one export may take. Default 10000.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// First wait after a failed export; doubles with every failure. Default 250.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest wait between two exports of a batch. Default 30000.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// Send records no pattern matched (`event_type = "log"`). Default true.
    #[serde(default = "crate::settings::default_true")]
    pub forward_unmatched: bool,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: the endpoint when `endpoint` is unset (not a file key).
    #[serde(skip)]
    pub default_endpoint: Option<String>,
}

impl Default for OtlpLogsConfig {
    fn default() -> Self {
        OtlpLogsConfig {
            enabled: false,
            endpoint: None,
            ca_file: None,
            request_timeout_ms: default_request_timeout_ms(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            forward_unmatched: true,
            default_endpoint: None,
        }
    }
}

/// An OTLP logs setting that cannot work.
#[derive(Debug, Error)]
pub enum OtlpLogsError {
    /// The CA file cannot be read.
    #[error("otlp_logs.ca_file: cannot read {}: {source}; check the path and that factorio-isr may read it", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The endpoint cannot be used.
    #[error("otlp_logs.endpoint `{endpoint}` cannot be used: {problem}")]
    Endpoint {
        /// The endpoint.
        endpoint: String,
        /// Why.
        problem: String,
    },
}

impl OtlpLogsConfig {
    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(e) = &self.endpoint {
            check_endpoint(e).map_err(|p| InvalidSetting::new("otlp_logs.endpoint", p))?;
        }
        if self.request_timeout_ms == 0 {
            return Err(InvalidSetting::new(
                "otlp_logs.request_timeout_ms",
                "must be at least 1 (an export needs some time)",
            ));
        }
        Ok(())
    }

    /// Whether the sink runs.
    pub fn is_on(&self) -> bool {
        self.enabled || self.endpoint.is_some()
    }

    /// Makes `ca_file` relative to the config file's directory `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &mut self.ca_file
            && p.is_relative()
        {
            *p = base.join(&*p);
        }
    }

    /// The PEM text of `ca_file`, if set.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, OtlpLogsError> {
        let Some(path) = &self.ca_file else {
            return Ok(None);
        };
        std::fs::read(path)
            .map(Some)
            .map_err(|source| OtlpLogsError::CaFile {
                path: path.clone(),
                source,
            })
    }

    /// The endpoint in force: `endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`, else
    /// [`DEFAULT_ENDPOINT`]; checked.
    pub fn effective_endpoint(&self) -> Result<String, OtlpLogsError> {
        let endpoint = self
            .endpoint
            .as_deref()
            .or(self.default_endpoint.as_deref())
            .unwrap_or(DEFAULT_ENDPOINT)
            .to_owned();
        match check_endpoint(&endpoint) {
            Ok(()) => Ok(endpoint),
            Err(p) => Err(OtlpLogsError::Endpoint {
                endpoint,
                problem: p.to_owned(),
            }),
        }
    }

    /// Everything `check` and `run` verify before starting: the endpoint and the CA file.
    pub fn preflight(&self) -> Result<(), OtlpLogsError> {
        if !self.is_on() {
            return Ok(());
        }
        self.effective_endpoint()?;
        self.ca_pem()?;
        Ok(())
    }

    /// The sink, when on: reporting to the `otlp_logs` health component and metrics.
    pub fn build(&self, ctx: &SinkContext<'_>) -> Result<Option<OtlpLogsSink>, OtlpLogsError> {
        if !self.is_on() {
            return Ok(None);
        }
        let endpoint = self.effective_endpoint()?;
        info!(endpoint = %endpoint, "Sending events to an OTLP logs receiver.");
        let mut pusher = Pusher::new(
            "The OTLP logs receiver",
            endpoint.clone(),
            self.backoff_initial_ms,
            self.backoff_max_ms,
            OtlpLogsErrorKind,
        );
        pusher.metrics = ctx.metrics.otlp_logs.clone();
        pusher.health = ctx.health.component("otlp_logs", "no batch sent yet");
        // Connections are made when there is something to send.
        pusher.health.ready();
        pusher.register();
        OtlpLogsSink::new(self, endpoint, ctx.service, ctx.runtime.clone(), pusher).map(Some)
    }
}

/// Whether `endpoint` can be an OTLP/gRPC receiver: `http` or `https` with a host.
pub fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let parsed = reqwest::Url::parse(endpoint).map_err(
        |_| "is not a URL; write the receiver's address, e.g. \"http://otel-collector:4317\"",
    )?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("must start with http:// or https://, e.g. \"http://otel-collector:4317\"");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host, e.g. \"http://otel-collector:4317\"");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("must not hold credentials (they would show in logs)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_and_an_endpoint_turns_the_sink_on() {
        assert!(check_endpoint("http://otel-collector:4317").is_ok());
        assert!(check_endpoint("https://collector.example").is_ok());
        for bad in ["otel:4317", "grpc://otel:4317", "http://u:p@otel:4317"] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
        let c = OtlpLogsConfig::default();
        assert!(!c.is_on());
        let c = OtlpLogsConfig {
            endpoint: Some("http://otel:4317".into()),
            ..c
        };
        assert!(c.is_on());
        assert!(c.validate().is_ok());
    }
}
