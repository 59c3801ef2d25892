//! Sinks: where events leave factorio-isr, and the [`Sink`] seam every one of them implements.
//!
//! - [`stdout`]: every event as one JSON line on standard output, the default when no other
//!   reliable sink is configured and what `replay` writes.
//! - [`logstash`]: every event as one JSON line over TCP (or TLS) to Logstash's `json_lines`
//!   input, reconnecting with backoff and writing a failed batch again (at-least-once).
//! - [`discord`]: events whose pattern has a Discord template, formatted, to webhooks;
//!   best-effort, on its own queue and tasks, so it never stalls the pipeline.
//! - [`loki`]: every event to Loki's push API, one stream per bounded label set; reliable,
//!   retried until Loki answers 2xx (the retry loop it shares is in [`push`]).
//! - [`otlp_logs`]: every event as an OpenTelemetry log record over OTLP/gRPC; reliable as
//!   Loki is.
//!
//! Adding a sink: a folder `sinks/<name>/` with its config section (one serde struct with its
//! defaults and `validate()`), a `build` that returns a `Box<dyn Sink>`, its internal events and
//! its tests; then one line where the application registers its sinks (`App::build` in
//! `src/app.rs`) and one field in `Config`.
//!
//! How they fail: a reliable sink's error is returned to the pipeline, which stops feeding it
//! and saves the checkpoints of what was delivered. A best-effort sink never returns one. A
//! closed stdout (`factorio-isr replay … | head`) is a normal end, not an error.

pub mod discord;
pub mod logstash;
pub mod loki;
pub mod otlp_logs;
pub mod push;
pub mod stdout;

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::event::{Event, ServiceInfo};
use crate::telemetry::health::Health;
use crate::telemetry::metrics::Metrics;

/// What every sink's `build` gets: who is sending, where to count and report, and the runtime
/// for sinks with async work.
pub struct SinkContext<'a> {
    /// The `service` object of events.
    pub service: &'a ServiceInfo,
    /// The metrics registry's handles.
    pub metrics: &'a Metrics,
    /// Where components report their state for `/ready`.
    pub health: &'a Arc<Health>,
    /// The runtime of async work (Discord's requests).
    pub runtime: &'a tokio::runtime::Handle,
}

/// Whether a sink's delivery moves the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A batch is delivered once this sink's [`Sink::flush`] returned `Ok`; only then may the
    /// checkpoint move past it (Logstash, stdout).
    Reliable,
    /// The sink queues what it can and counts what it drops; it never holds the checkpoint
    /// back and never returns an error (Discord).
    BestEffort,
}

/// Where the pipeline delivers events.
///
/// The pipeline owns every sink on one thread, the sink thread. For each batch, in source
/// order, it calls [`Sink::write`] once per event, then [`Sink::flush`] once on every reliable
/// sink; a source's checkpoint moves past the batch only when every reliable sink's `flush`
/// returned `Ok`. So a reliable sink must not report success for events it has not handed on,
/// and a best-effort sink must not block.
pub trait Sink: Send {
    /// The sink's name: the `sink` label of `factorio_isr_event_latency_seconds`, and the
    /// suffix of its span (`sink.<name>`). A fixed word: `stdout`, `logstash`, `discord`.
    fn name(&self) -> &'static str;

    /// Whether its delivery moves the checkpoint.
    fn delivery(&self) -> Delivery;

    /// Takes one event of the batch being delivered. It may buffer (Logstash encodes into one
    /// buffer per batch) or write out (stdout writes when its buffer is full, so it may block on
    /// a full pipe). A best-effort sink only queues. Errors end the pipeline.
    fn write(&mut self, event: &Event) -> io::Result<()>;

    /// The batch is complete: hand on everything taken. For a reliable sink, `Ok` means the
    /// batch is as durable as this sink can make it (written to the socket, to stdout), and
    /// may block as long as that takes (a Logstash that is down or does not read blocks here:
    /// that is backpressure, and the log files are the buffer). A best-effort sink returns at
    /// once.
    fn flush(&mut self) -> io::Result<()>;

    /// The span of one [`Sink::flush`], under the batch's span `parent`. Reliable sinks name
    /// theirs `sink.<name>` with `traced_span!`; the default makes none.
    fn flush_span(&self, parent: &tracing::Span, events: usize) -> tracing::Span {
        let _ = (parent, events);
        tracing::Span::none()
    }

    /// What the stop path needs while the sink itself is busy on the sink thread. Taken once,
    /// before the pipeline starts.
    fn handle(&self) -> SinkHandle {
        SinkHandle::default()
    }
}

/// A sink's controls for the stop path, usable from another thread.
#[derive(Default)]
pub struct SinkHandle {
    /// For a reliable sink whose write a forced stop can cut short: while a batch is being
    /// written, the file offset of its first event not yet wholly handed on; [`NO_CUT`]
    /// otherwise. A forced stop saves the checkpoint there, so a restart sends only the rest.
    pub cut_offset: Option<Arc<AtomicU64>>,
    /// Stops the sink's background work, waiting at most its own deadline (Discord sends what
    /// it has queued for up to `shutdown_flush_ms`). Called once, after the pipeline ended or
    /// its drain deadline passed.
    pub shutdown: Option<Box<dyn FnOnce() + Send>>,
}

/// [`SinkHandle::cut_offset`]'s value when no write is cut short.
pub const NO_CUT: u64 = u64::MAX;

/// A reliable sink that hands every event to a closure: for tests, benchmarks and library users
/// who want the events in their own code. `flush` does nothing.
pub struct FnSink<F>(pub F);

impl<F: FnMut(&Event) -> io::Result<()> + Send> Sink for FnSink<F> {
    fn name(&self) -> &'static str {
        "fn"
    }

    fn delivery(&self) -> Delivery {
        Delivery::Reliable
    }

    fn write(&mut self, event: &Event) -> io::Result<()> {
        (self.0)(event)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
