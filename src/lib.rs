//! factorio-isr follows the logs of Factorio servers, turns the lines that matter into typed
//! events with patterns users edit, and forwards them.
//!
//! Data flows one way, from a source through the stages to the sinks:
//!
//! ```text
//!  source ─────────► match ─────────► route ──────► sinks
//!  (tail: discover,  (patterns:       (every         (stdout, logstash: reliable;
//!   read, frame;      record → typed   event to       discord: best-effort)
//!   replay: whole     Event)           every sink)
//!   files)
//!  ◄──────── a batch's receipt moves the source's checkpoint once every reliable sink has it ◄──
//! ```
//!
//! The modules, bottom first; a module uses only those above it in this list (checked by
//! `tests/module_graph.rs`):
//!
//! - [`settings`]: small shared helpers (booleans from the environment, `HOST:PORT`, secrets,
//!   line:column, a poison-tolerant lock). Imports nothing of the crate.
//! - [`event`]: the [`event::Record`] a source reads, the [`event::Event`] the match stage makes
//!   and its JSON form (a contract with Logstash pipelines and index templates), and the
//!   [`event::PatternInfo`] an event carries so routing never looks anything up.
//! - [`telemetry`]: Prometheus metrics, OpenTelemetry traces, factorio-isr's own logs, the
//!   health of every component, the admin server (`/metrics`, `/healthz`, `/ready`).
//! - [`patterns`]: the pattern files (spec, template, load, errors), the compiled set that is
//!   the match stage, and hot reload.
//! - [`sinks`]: the [`sinks::Sink`] seam and its implementations: stdout, Logstash, Discord.
//! - [`alertmanager`]: the Alertmanager receiver (`POST /alertmanager`, `[alertmanager]`): a
//!   source that turns Prometheus alerts into Discord embeds and queues them on the Discord
//!   sink's webhooks, past the log pipeline.
//! - [`pipeline`]: the [`pipeline::Source`] seam, the stages (match workers, in-order delivery,
//!   route) and [`pipeline::Pipeline`], which runs one source into its sinks.
//! - [`tail`]: the log-file sources: following directories through rotation, truncation and
//!   deletion with checkpoints ([`tail::TailSource`]), and reading whole files for `replay`
//!   ([`tail::ReplaySource`]); framing bytes into lines and records; the `[tail]` and
//!   `[framing]` sections.
//! - [`rcon`]: Factorio's remote console: who is online and how fast the game runs, per
//!   server, and a `player_leave` for a player the logs missed leaving (through the
//!   pipeline's inlet); the `[rcon]` section.
//! - [`config`]: gathers every component's section, loads the file, and applies the
//!   environment and the command line over it in one place.
//! - [`app`]: `Config` → [`app::App::build`] → run → ordered shutdown; `replay` and `check`.
//! - [`cli`]: the command line, turned into config overrides.
//!
//! Each component owns its config section (one serde struct with the one copy of each default,
//! `validate()`, and a build step), its internal events (what it logs and counts, in one place,
//! with label values as enums) and its tests. Adding a sink is a folder under `sinks/` plus one
//! line in `App::build`; a source, a folder (a module under `tail/` for files, a new top-level
//! `sources/` for others) implementing `pipeline::Source`; a config knob, one field with its
//! default in its component's section.
//!
//! How it fails: configuration and pattern problems are reported all at once, each with its
//! file, line and what to do, before anything runs; a log file that cannot be read is named and
//! retried (or skipped by `replay`) while the others go on; a reliable sink that is away makes
//! the pipeline wait, never drop; log content itself never fails (invalid UTF-8 is replaced,
//! over-long lines are cut, both counted). Nothing panics on input.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod alertmanager;
pub mod app;
pub mod cli;
pub mod config;
pub mod event;
pub mod patterns;
pub mod pipeline;
pub mod rcon;
pub mod settings;
pub mod sinks;
pub mod tail;
pub mod telemetry;
