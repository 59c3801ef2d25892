//! factorio-isr follows the logs of Factorio servers, turns the lines that matter into typed
//! events with patterns users edit, and forwards them.
//!
//! Data flows one way through the stages, each a module:
//!
//! ```text
//!  log dirs ──► tail ─────────────► patterns ──────────► route ──► sinks
//!              (discover, read,     (match: record        (every    (logstash: json_lines over
//!               frame: lines and     → typed Event)        event;    TCP or TLS; stdout: JSON
//!               records)                                   Discord   lines; discord: webhooks,
//!                                                          events)   best-effort)
//!              ◄──────── checkpoint advances when the reliable sink has taken the batch ◄──
//! ```
//!
//! - [`config`]: the TOML config file, environment variables and their defaults.
//! - [`event`]: the [`event::Event`] every later stage passes along, and its JSON form (a
//!   contract with Logstash pipelines and index templates).
//! - [`tail`]: following log directories through rotation, truncation and deletion; reading in
//!   large chunks; framing bytes into lines and multi-line error records; what a line's prefix
//!   says (engine, console, bare; its time); fingerprints and checkpoints.
//! - [`patterns`]: loading and validating the pattern files, the compiled set, the match stage
//!   that turns a record into an event, and hot reload.
//! - [`pipeline`]: the stages wired together over bounded channels (`run`, `replay`), and the
//!   route stage that sends each event to its sinks.
//! - [`sinks`]: where events go (Logstash, stdout, Discord).
//! - [`telemetry`]: how factorio-isr reports on itself: Prometheus metrics, OpenTelemetry
//!   traces, its own logs, and the admin server with `/metrics`, `/healthz` and `/ready`.
//!
//! How it fails: configuration and pattern problems are reported all at once, each with its
//! file, line and what to do, before anything runs; a log file that cannot be read is named and
//! retried (or skipped by `replay`) while the others go on; a sink that is away makes the
//! pipeline wait, never drop; log content itself never fails (invalid UTF-8 is replaced,
//! over-long lines are cut, both counted). Nothing panics on input.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app;
pub mod cli;
pub mod config;
pub mod event;
pub mod patterns;
pub mod pipeline;
pub mod settings;
pub mod sinks;
pub mod tail;
pub mod telemetry;
