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

/// Default of [`LogstashConfig::window_size`].
pub const fn default_window_size() -> u32 {
    2048
}

/// Default of [`LogstashConfig::pipelining`].
pub const fn default_pipelining() -> u32 {
    2
}

/// Default of [`LogstashConfig::ack_timeout_ms`].
pub const fn default_ack_timeout_ms() -> u64 {
    30_000
}

/// How events travel to Logstash: `[logstash] protocol`, `--logstash-protocol`,
/// `LOGSTASH_PROTOCOL`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogstashProtocol {
    /// One JSON line per event, for the `tcp` input with the `json_lines` codec. Nothing is
    /// acknowledged.
    #[default]
    Tcp,
    /// The beats protocol (Lumberjack v2), for the `beats` input: Logstash acknowledges every
    /// window of events, and the checkpoint moves only past acknowledged events.
    Beats,
}

impl LogstashProtocol {
    /// Its name in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogstashProtocol::Tcp => "tcp",
            LogstashProtocol::Beats => "beats",
        }
    }
}

impl std::str::FromStr for LogstashProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "tcp" => Ok(LogstashProtocol::Tcp),
            "beats" => Ok(LogstashProtocol::Beats),
            other => Err(format!(
                "`{other}` is not a Logstash protocol: use tcp (the tcp input with the json_lines codec) or beats (the beats input)"
            )),
        }
    }
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
    /// `tcp` (the default: the `tcp` input, `json_lines` codec) or `beats` (the `beats`
    /// input, acknowledged). With `beats`, acknowledgements replace `probation_ms`.
    #[serde(default)]
    pub protocol: LogstashProtocol,
    /// beats: events per window (one acknowledgement each). Default 2048.
    #[serde(default = "default_window_size")]
    pub window_size: u32,
    /// beats: windows sent before the oldest is acknowledged. Default 2.
    #[serde(default = "default_pipelining")]
    pub pipelining: u32,
    /// beats: zlib level of each window, 1 (fast) to 9 (small); 0 sends it uncompressed.
    /// Default 0.
    #[serde(default)]
    pub compression_level: u32,
    /// beats: how long Logstash may stay silent (no acknowledgement, not even a keep-alive)
    /// while a window waits, before the connection is dropped and its unacknowledged windows
    /// are sent again on a new one. Default 30000.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
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
            protocol: LogstashProtocol::Tcp,
            window_size: default_window_size(),
            pipelining: default_pipelining(),
            compression_level: 0,
            ack_timeout_ms: default_ack_timeout_ms(),
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
        if self.window_size == 0 {
            return Err(InvalidSetting::new(
                "logstash.window_size",
                "must be at least 1 (events per acknowledged window; Filebeat sends 2048)",
            ));
        }
        if self.pipelining == 0 {
            return Err(InvalidSetting::new(
                "logstash.pipelining",
                "must be at least 1 (windows in flight at once; 2 is the default)",
            ));
        }
        if self.compression_level > 9 {
            return Err(InvalidSetting::new(
                "logstash.compression_level",
                "must be 0 (off) to 9 (smallest)",
            ));
        }
        if self.ack_timeout_ms == 0 {
            return Err(InvalidSetting::new(
                "logstash.ack_timeout_ms",
                "must be at least 1; set it above the time Logstash's pipeline may block (it sends a keep-alive every 5 s meanwhile)",
            ));
        }
        Ok(())
    }
}

/// How long a write may block before `/ready` reports Logstash as not reading.
pub const STALL_MS: u64 = 5000;

/// beats: how long Logstash may send nothing (no acknowledgement, no keep-alive) while a
/// window waits before `/ready` reports it as not acknowledging: three of the keep-alives
/// Logstash sends every 5 s while its pipeline is blocked.
pub const ACK_STALL_MS: u64 = 15_000;

impl LogstashConfig {
    /// The sink, when an address is configured: reporting to the `logstash` health component
    /// and the Logstash metrics. Fails only on TLS settings that cannot work.
    pub fn build(&self, ctx: &SinkContext<'_>) -> Result<Option<LogstashSink>, TlsError> {
        let Some(address) = &self.address else {
            return Ok(None);
        };
        info!(%address, tls = self.tls.is_some(), protocol = self.protocol.as_str(), "Sending events to Logstash.");
        // Its error series show from the first scrape, at 0 (none when Logstash is not used).
        ctx.metrics.logstash.errors.register::<LogstashErrorKind>();
        let component = ctx
            .health
            .component("logstash", &format!("connecting to {address}"));
        component.set_probe(stall_probe(&ctx.metrics.logstash, STALL_MS, ACK_STALL_MS));
        let sink = LogstashSink::new(address.clone(), self, ctx.service)?
            .with_telemetry(ctx.metrics.logstash.clone(), component);
        Ok(Some(sink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_settings_are_checked() {
        let ok = LogstashConfig {
            protocol: LogstashProtocol::Beats,
            ..LogstashConfig::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        for (bad, key) in [
            (
                LogstashConfig {
                    window_size: 0,
                    ..ok.clone()
                },
                "logstash.window_size",
            ),
            (
                LogstashConfig {
                    pipelining: 0,
                    ..ok.clone()
                },
                "logstash.pipelining",
            ),
            (
                LogstashConfig {
                    compression_level: 10,
                    ..ok.clone()
                },
                "logstash.compression_level",
            ),
            (
                LogstashConfig {
                    ack_timeout_ms: 0,
                    ..ok.clone()
                },
                "logstash.ack_timeout_ms",
            ),
        ] {
            let e = bad.validate().unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
        let parsed: LogstashConfig =
            toml::from_str("address = \"l:5044\"\nprotocol = \"beats\"\ncompression_level = 3\n")
                .unwrap();
        assert_eq!(parsed.protocol, LogstashProtocol::Beats);
        assert_eq!(parsed.compression_level, 3);
        assert_eq!(parsed.window_size, 2048);
        assert!(toml::from_str::<LogstashConfig>("protocol = \"udp\"").is_err());
        assert_eq!("beats".parse(), Ok(LogstashProtocol::Beats));
        assert!("lumberjack".parse::<LogstashProtocol>().is_err());
    }

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
