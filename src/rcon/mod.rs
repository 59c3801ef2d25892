//! RCON: factorio-isr asks each Factorio server that has an `rcon_address`, over Factorio's
//! remote console, who is online (and how fast the game runs), beside reading its logs.
//!
//! - [`protocol`]: the Source RCON packets as Factorio speaks them, and the answers of the
//!   commands used (pure; Factorio's quirks are documented and tested there).
//! - [`client`]: one connection: connect, authenticate, one command at a time.
//! - [`poller`]: one task per server: poll every `poll_interval_ms`, reconnect with jittered
//!   backoff, reconcile the logs' view of who is online with the server's, and send a
//!   `player_leave` (`fields.reconciled = true`) through the pipeline's inlet for a player the
//!   server no longer lists.
//! - [`config`]: the `[rcon]` section and the resolved per-server target.
//! - [`internal_events`]: what is logged, counted (`rcon_*`, `players_online`, `game_ups`,
//!   `server_info`) and shown in `/ready` (`rcon.<server>`).
//!
//! Without any `rcon_address` nothing here runs. How it fails: a server that cannot be
//! reached or refuses the password is retried forever and shown in `/ready` (503) and
//! `rcon_connected`; it never holds up the log pipeline.

pub mod client;
pub mod config;
pub mod internal_events;
pub mod poller;
pub mod protocol;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use config::{RconConfig, RconTarget};

use crate::patterns::PatternSet;
use crate::pipeline::{Inlet, Presence};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::RconMetrics;

/// The pollers of `targets`, ready to be spawned.
pub fn pollers(
    targets: Vec<RconTarget>,
    options: &RconConfig,
    metrics: &RconMetrics,
    health: &Arc<Health>,
    presence: &Presence,
    inlet: &Inlet,
    patterns: &Arc<ArcSwap<PatternSet>>,
) -> Vec<poller::Poller> {
    targets
        .into_iter()
        .map(|target| {
            let report = internal_events::Report {
                server: target.server.clone(),
                address: target.address.clone(),
                metrics: metrics.clone(),
                health: health.component(&format!("rcon.{}", target.server), "connecting"),
                version: Default::default(),
            };
            presence.track(&target.server);
            poller::Poller {
                target,
                options: options.clone(),
                report,
                presence: presence.clone(),
                inlet: inlet.clone(),
                patterns: patterns.clone(),
            }
        })
        .collect()
}
