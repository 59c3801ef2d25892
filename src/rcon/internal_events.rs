//! What an RCON poller tells its operators: the one place where each thing that happens to a
//! server's RCON connection is logged, counted and reported to `/ready` together.
//!
//! - [`Report::connected`]: `info` with the server's version, `rcon_connected` 1,
//!   `server_info{version}` 1, the component `rcon.<server>` ready.
//! - [`Report::failed`]: `warn` with the cause and the retry wait (`error` for a refused
//!   password), `rcon_errors_total{error_type}`, `rcon_connected` 0, the component not ready
//!   with the reason.
//! - [`Report::command_done`] observes `rcon_command_latency_seconds{command}`.
//! - [`Report::players`] sets `players_online`.
//! - [`Report::ups`] sets `game_ups`.
//! - [`Report::reconciled`]: `info` per player the logs had online and the server no longer
//!   lists (the `player_leave` event itself goes through the pipeline).
//!
//! Never the password: it is not in any error, and nothing here sees it.
//!
//! How it fails: it does not; logging and counting never block or return an error.

use std::time::Duration;

use tracing::{error, info, warn};

use super::client::RconError;
use crate::telemetry::health::Component;
use crate::telemetry::metrics::{
    RconCommandLabels, RconErrorLabels, RconMetrics, ServerInfoLabels, ServerLabels,
};

/// A fixed command word: the `command` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// `/players online`.
    Players,
    /// `/sc rcon.print(game.tick)`.
    Tick,
    /// `/version`.
    Version,
}

impl CommandKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Players => "players",
            CommandKind::Tick => "tick",
            CommandKind::Version => "version",
        }
    }

    /// The console command sent.
    pub fn command(self) -> &'static str {
        match self {
            CommandKind::Players => "/players online",
            CommandKind::Tick => "/sc rcon.print(game.tick)",
            CommandKind::Version => "/version",
        }
    }
}

/// Where the events of one server's poller are reported.
pub struct Report {
    /// The server tag.
    pub server: String,
    /// Its `HOST:PORT`.
    pub address: String,
    /// The metric handles.
    pub metrics: RconMetrics,
    /// `rcon.<server>`.
    pub health: Component,
    /// The version last shown in `server_info`, removed when another is shown.
    pub version: std::sync::Mutex<Option<String>>,
}

impl Report {
    fn server_labels(&self) -> ServerLabels {
        ServerLabels {
            server: self.server.clone(),
        }
    }

    /// Creates the server's series at 0, so alerts see them from the first scrape.
    pub fn register(&self, commands: &[CommandKind]) {
        let _ = self.metrics.connected.get_or_create(&self.server_labels());
        for error_type in RconError::ERROR_TYPES {
            let _ = self.metrics.errors.get_or_create(&RconErrorLabels {
                server: self.server.clone(),
                error_type: (*error_type).to_owned(),
            });
        }
        for c in commands {
            self.latency(*c);
        }
    }

    fn latency(&self, command: CommandKind) -> prometheus_client::metrics::histogram::Histogram {
        self.metrics
            .command_latency_seconds
            .get_or_create(&RconCommandLabels {
                server: self.server.clone(),
                command: command.as_str().to_owned(),
            })
            .clone()
    }

    /// Connected and authenticated; the server runs `version` when it said.
    pub fn connected(&self, version: Option<&str>) {
        info!(server = %self.server, address = %self.address, version = version.unwrap_or("unknown"), "RCON connected.");
        self.metrics
            .connected
            .get_or_create(&self.server_labels())
            .set(1);
        if let Some(v) = version {
            let labels = |version: String| ServerInfoLabels {
                server: self.server.clone(),
                version,
            };
            let mut shown = crate::settings::lock(&self.version);
            if let Some(old) = shown.replace(v.to_owned()) {
                self.metrics.server_info.remove(&labels(old));
            }
            self.metrics
                .server_info
                .get_or_create(&labels(v.to_owned()))
                .set(1);
        }
        self.health.ready();
    }

    /// Talking to the server failed with `e`; the next attempt comes in `retry_in`.
    pub fn failed(&self, e: &RconError, retry_in: Duration) {
        let retry_ms = retry_in.as_millis() as u64;
        if matches!(e, RconError::AuthRefused) {
            error!(server = %self.server, address = %self.address, retry_ms, "RCON authentication failed: {e}");
        } else {
            warn!(server = %self.server, address = %self.address, retry_ms, "RCON failed: {e}");
        }
        self.metrics
            .errors
            .get_or_create(&RconErrorLabels {
                server: self.server.clone(),
                error_type: e.error_type().to_owned(),
            })
            .inc();
        self.metrics
            .connected
            .get_or_create(&self.server_labels())
            .set(0);
        self.health
            .not_ready(format!("RCON at {}: {e}", self.address));
    }

    /// `command` answered in `seconds`.
    pub fn command_done(&self, command: CommandKind, seconds: f64) {
        self.latency(command).observe(seconds);
    }

    /// The server lists `n` players online.
    pub fn players(&self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.metrics
            .players_online
            .get_or_create(&self.server_labels())
            .set(n);
    }

    /// The game ran `ups` updates per second since the last poll.
    pub fn ups(&self, ups: f64) {
        self.metrics
            .game_ups
            .get_or_create(&self.server_labels())
            .set(ups);
    }

    /// `player` was online by the logs and is no longer listed by the server.
    pub fn reconciled(&self, player: &str) {
        info!(server = %self.server, player, "Player no longer online by RCON and no leave line was read: sending player_leave (reconciled).");
    }
}
