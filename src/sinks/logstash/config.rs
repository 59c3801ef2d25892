//! The `[logstash]` section: where Logstash is, how to connect, and the TLS settings; its one
//! copy of each default, its validation, and the `build` that makes the sink.
//!
//! How it fails: `validate` names the key and what to write instead; `build` fails only on TLS
//! settings that cannot work (a file that cannot be read or parsed), naming the file.

use serde::Deserialize;
use tracing::info;

use super::internal_events::LogstashErrorKind;
use super::sink::{LogstashSink, stall_probe};
use super::tls::{TlsConfig, TlsError};
use crate::settings::{HostPort, InvalidSetting};
use crate::sinks::SinkContext;

/// Default of [`LogstashConfig::connect_timeout_ms`].
pub const fn default_connect_timeout_ms() -> u64 {
    5000
}

/// Default of [`LogstashConfig::backoff_initial_ms`].
pub const fn default_backoff_initial_ms() -> u64 {
    100
}

/// Default of [`LogstashConfig::backoff_max_ms`].
pub const fn default_backoff_max_ms() -> u64 {
    30_000
}

/// Default of [`LogstashConfig::probation_ms`].
pub const fn default_probation_ms() -> u64 {
    2000
}

/// The `[logstash]` section of the config file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LogstashConfig {
    /// `HOST:PORT` of Logstash's tcp input. `--logstash HOST:PORT` and `LOGSTASH_ADDR`
    /// override it. Unset: events go to stdout.
    #[serde(default)]
    pub address: Option<String>,
    /// How long one connection attempt may take. Default 5000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// First wait after a failed connection; doubles with every failure. Default 100.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest wait between two connection attempts. Default 30000.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// How long a new connection must stay open, once its first batch is written, before it
    /// counts as healthy: until then the batch is not delivered (it is written again if the
    /// connection closes), the backoff is not reset and `/ready` says not ready. A proxy or
    /// load balancer with no healthy Logstash behind it accepts and then closes or resets;
    /// set this above its backend connect timeout. 0: healthy once the first batch is
    /// written and the connection is still open. Default 2000.
    #[serde(default = "default_probation_ms")]
    pub probation_ms: u64,
    /// Send records no pattern matched (`event_type = "log"`). Default true.
    #[serde(default = "crate::settings::default_true")]
    pub forward_unmatched: bool,
    /// TLS settings; the section's presence turns TLS on. See [`TlsConfig`].
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl Default for LogstashConfig {
    fn default() -> Self {
        LogstashConfig {
            address: None,
            connect_timeout_ms: default_connect_timeout_ms(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            probation_ms: default_probation_ms(),
            forward_unmatched: true,
            tls: None,
        }
    }
}

impl LogstashConfig {
    /// Checks the values serde cannot: the address's form and the timeouts.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(addr) = &self.address
            && HostPort::parse(addr).is_err()
        {
            return Err(InvalidSetting::new(
                "logstash.address",
                "must be HOST:PORT, for example \"127.0.0.1:5044\"",
            ));
        }
        if self.connect_timeout_ms == 0 {
            return Err(InvalidSetting::new(
                "logstash.connect_timeout_ms",
                "must be at least 1 (a connection attempt needs some time)",
            ));
        }
        Ok(())
    }
}

/// How long a write may block before `/ready` reports Logstash as not reading.
pub const STALL_MS: u64 = 5000;

impl LogstashConfig {
    /// The sink, when an address is configured: reporting to the `logstash` health component
    /// and the Logstash metrics. Fails only on TLS settings that cannot work.
    pub fn build(&self, ctx: &SinkContext<'_>) -> Result<Option<LogstashSink>, TlsError> {
        let Some(address) = &self.address else {
            return Ok(None);
        };
        info!(%address, tls = self.tls.is_some(), "Sending events to Logstash.");
        // Its error series show from the first scrape, at 0 (none when Logstash is not used).
        ctx.metrics.logstash.errors.register::<LogstashErrorKind>();
        let component = ctx
            .health
            .component("logstash", &format!("connecting to {address}"));
        component.set_probe(stall_probe(&ctx.metrics.logstash, STALL_MS));
        let sink = LogstashSink::new(address.clone(), self, ctx.service)?
            .with_telemetry(ctx.metrics.logstash.clone(), component);
        Ok(Some(sink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_be_host_and_port() {
        for ok in ["127.0.0.1:5044", "logstash:5044", "[::1]:5044"] {
            assert!(HostPort::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            ":5044",
            "logstash:0",
            "logstash:http",
            "::1:5044",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }
}
