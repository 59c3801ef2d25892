//! Sinks: where events leave factorio-isr.
//!
//! - [`stdout`]: every event as one JSON line on standard output, the default when no other
//!   sink is configured and what `replay` writes.
//! - [`discord`]: events whose pattern has a Discord template, formatted, to webhooks;
//!   best-effort, on its own queue and tasks, so it never stalls the pipeline.
//! - [`logstash`]: every event as one JSON line over TCP to Logstash's `json_lines` input,
//!   reconnecting with backoff and writing a failed batch again (at-least-once).
//!
//! How they fail: a sink's write error is returned to the pipeline, which stops feeding it. A
//! closed stdout (`factorio-isr replay … | head`) is a normal end, not an error.

pub mod discord;
pub mod logstash;
pub mod stdout;

use std::io;

use crate::event::Event;

/// Where the pipeline delivers events.
///
/// The pipeline calls [`Sink::write`] for every event of a batch, then [`Sink::flush`]; a file's
/// checkpoint moves past a batch only after `flush` returned `Ok`, so a sink must not report
/// success for events it has not handed on.
pub trait Sink {
    /// Takes one event (it may be buffered).
    fn write(&mut self, event: &Event) -> io::Result<()>;
    /// Hands on everything taken so far.
    fn flush(&mut self) -> io::Result<()>;
}
