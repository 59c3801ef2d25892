//! The `[rcon]` section (how often and how patiently every server is asked), and the resolved
//! per-server target (`[[servers]] rcon_address` with its password).
//!
//! ```toml
//! [[servers]]
//! tag = "primary"
//! log_dir = "/srv/factorio/primary"
//! rcon_address = "127.0.0.1:27015"
//! rcon_password_file = "/etc/factorio-isr/rcon-primary.password"
//!
//! [rcon]
//! poll_interval_ms = 10000
//! command_timeout_ms = 5000
//! ups = false
//! ```
//!
//! How it fails: [`RconConfig::validate`] names the key that is out of range; the password's
//! problems are found where the targets are resolved (`config`), never showing the password.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::settings::{InvalidSetting, Secret};

/// `[rcon]`: how every server with an `rcon_address` is polled.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RconConfig {
    /// How often each server is asked who is online (and its tick), in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// How long a command (and the connection and authentication) may take before the
    /// connection is given up and made again, in milliseconds.
    #[serde(default = "default_command_timeout_ms")]
    pub command_timeout_ms: u64,
    /// Also ask `/sc rcon.print(game.tick)` each poll for `factorio_isr_game_ups`. A Lua
    /// command: Factorio disables achievements on a save that ran one, hence off by default.
    #[serde(default)]
    pub ups: bool,
}

/// `[rcon] poll_interval_ms` default: 10 s.
pub fn default_poll_interval_ms() -> u64 {
    10_000
}

/// `[rcon] command_timeout_ms` default: 5 s.
pub fn default_command_timeout_ms() -> u64 {
    5_000
}

impl Default for RconConfig {
    fn default() -> Self {
        RconConfig {
            poll_interval_ms: default_poll_interval_ms(),
            command_timeout_ms: default_command_timeout_ms(),
            ups: false,
        }
    }
}

impl RconConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if !(100..=3_600_000).contains(&self.poll_interval_ms) {
            return Err(InvalidSetting::new(
                "rcon.poll_interval_ms",
                "must be between 100 (0.1 s) and 3600000 (an hour), e.g. 10000",
            ));
        }
        if !(100..=600_000).contains(&self.command_timeout_ms) {
            return Err(InvalidSetting::new(
                "rcon.command_timeout_ms",
                "must be between 100 (0.1 s) and 600000 (10 minutes), e.g. 5000",
            ));
        }
        Ok(())
    }

    /// The poll interval.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// The command timeout.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_ms)
    }
}

/// One server to poll: its tag, `HOST:PORT` and password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RconTarget {
    /// The server tag (the `server` of its events and metrics).
    pub server: String,
    /// `HOST:PORT` of Factorio's RCON (`--rcon-port`).
    pub address: String,
    /// Factorio's `--rcon-password`.
    pub password: Secret,
}

/// Reads an optional secret string (`rcon_password`) into a [`Secret`], so the config's
/// `Debug` never shows it.
pub fn optional_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(Secret::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ranges() {
        let c: RconConfig = toml::from_str("").unwrap();
        assert_eq!(c, RconConfig::default());
        assert_eq!(c.poll_interval(), Duration::from_secs(10));
        assert_eq!(c.command_timeout(), Duration::from_secs(5));
        assert!(!c.ups, "Lua commands disable achievements: off by default");
        let bad = RconConfig {
            poll_interval_ms: 10,
            ..c.clone()
        };
        assert_eq!(bad.validate().unwrap_err().key, "rcon.poll_interval_ms");
        let bad = RconConfig {
            command_timeout_ms: 0,
            ..c
        };
        assert_eq!(bad.validate().unwrap_err().key, "rcon.command_timeout_ms");
    }
}
