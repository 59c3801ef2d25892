//! factorio-isr follows the logs of Factorio servers, turns the lines that matter into typed
//! events with patterns users edit, and forwards them.
//!
//! Data flows one way through the stages, each a module:
//!
//! ```text
//!  log files ──► tail ──────────► patterns ──────► sinks
//!               (read, frame:     (match: record   (stdout: JSON lines)
//!                lines, records)   → typed Event)
//! ```
//!
//! - [`config`]: the TOML config file, environment variables and their defaults.
//! - [`event`]: the [`event::Event`] every later stage passes along, and its JSON form (a
//!   contract with Logstash pipelines and index templates).
//! - [`tail`]: reading log files in large chunks, framing bytes into lines and multi-line
//!   error records, and what a line's prefix says (engine, console, bare; its time).
//! - [`patterns`]: loading and validating the pattern files, the compiled set, and the match
//!   stage that turns a record into an event.
//! - [`pipeline`]: wiring the stages together (`replay`: files start to end → events).
//! - [`sinks`]: where events go (stdout).
//!
//! How it fails: configuration and pattern problems are reported all at once, each with its
//! file, line and what to do, before anything runs; a log file that cannot be read is named and
//! skipped while the others go on; log content itself never fails (invalid UTF-8 is replaced,
//! over-long lines are cut, both counted). Nothing panics on input.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod event;
pub mod patterns;
pub mod pipeline;
pub mod sinks;
pub mod tail;
