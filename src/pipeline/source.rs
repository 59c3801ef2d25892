//! The [`Source`] seam: what feeds the pipeline.
//!
//! A source produces [`Batch`]es of records, each with the [`Receipt`] that moves the source's
//! checkpoint once the batch is delivered. The tailer following log directories is one source
//! (`tail::TailSource`), `replay`'s reader of whole files another (`tail::ReplaySource`);
//! sources that poll a server or receive webhooks implement the same trait.
//!
//! The contract, call by call:
//!
//! - [`Source::run`] runs on its own thread. It produces batches until it is stopped, runs out
//!   (a replay reached the end of its files) or the pipeline is gone, and returns its report.
//!   Handing a batch on ([`Output::send`]) blocks while the match workers are busy: that is
//!   backpressure, and a log-file source simply stops reading. `send` returning `false` means
//!   the pipeline stopped (a reliable sink failed): the source returns at once.
//! - [`Source::stop_handle`] is taken before `run` starts; calling it from any thread (a signal
//!   handler) makes `run` return soon, after handing on what it has already read.
//! - A batch's [`Receipt::delivered`] is called on the sink thread once every reliable sink has
//!   flushed the batch, in the order the source sent them. Only then may the source's checkpoint
//!   move past it. A batch that is never delivered (the pipeline stopped on an error) is never
//!   receipted, so a restart reads it again: at-least-once.
//! - [`Source::checkpoints`] gives the stop path a way to save where delivery stands from the
//!   main thread, when draining missed its deadline.
//!
//! How a source fails: what it cannot read is retried and reported by the source itself (logs,
//! metrics, `/ready`); `run` returns only when told to or when it has nothing more to read.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::event::{LogSource, Record, Timestamp};
use crate::telemetry::now_unix_ms;

/// Records read together from one file (or made by one poll), and what delivering them moves.
pub struct Batch {
    /// Server tag and path of the records.
    pub source: Arc<LogSource>,
    /// When they were read: the time stamp of records whose lines carry none.
    pub read_time: Timestamp,
    /// Complete records, in source order. May be empty when only the checkpoint moves.
    pub records: Vec<Record>,
    /// Moves the source's checkpoint once the batch is delivered; `None` for sources without
    /// checkpoints (`replay`).
    pub receipt: Option<Arc<dyn Receipt>>,
    /// The batch's root span; the stages add theirs under it.
    pub span: tracing::Span,
}

/// What delivering a batch moves: its source's checkpoint.
pub trait Receipt: Send + Sync {
    /// Every reliable sink has taken the batch. Called on the sink thread, in batch order; must
    /// be quick (an update in memory; a checkpoint file is saved at most every
    /// `checkpoint_interval_ms`).
    fn delivered(&self);

    /// A forced stop cut the write of this batch short: the events before file offset
    /// `offset` were handed on, the rest were not. Called on the main thread instead of
    /// [`Receipt::delivered`], just before [`Checkpoints::save`].
    fn cut_short(&self, offset: u64);
}

/// Where a source keeps what was delivered.
pub trait Checkpoints: Send + Sync {
    /// Saves what has been delivered so far, now. Called from the main thread by a forced stop,
    /// and by the pipeline once more when it ends.
    fn save(&self) -> io::Result<()>;
}

/// Makes a running source stop; callable from any thread.
pub type StopHandle = Arc<dyn Fn() + Send + Sync>;

/// What feeds the pipeline. See the module docs for the contract.
pub trait Source: Send {
    /// What `run` returns: the source's counters, files it could not read.
    type Report: Send;

    /// A handle that makes [`Source::run`] return soon. Taken before `run` starts.
    fn stop_handle(&self) -> StopHandle;

    /// The source's checkpoint store, when it has one.
    fn checkpoints(&self) -> Option<Arc<dyn Checkpoints>> {
        None
    }

    /// Produces batches into `out` until stopped, exhausted, or `out.send` returns `false`.
    fn run(self, out: &mut Output<'_>) -> Self::Report;
}

/// Where a running source hands its batches, and shows that it is alive.
pub struct Output<'a> {
    pub(super) send: &'a mut dyn FnMut(Batch) -> bool,
    pub(super) progress: &'a Progress,
}

impl Output<'_> {
    /// Hands `batch` to the match workers; blocks while they are busy. `false`: the pipeline
    /// is gone and the source should return.
    pub fn send(&mut self, batch: Batch) -> bool {
        (self.send)(batch)
    }

    /// The source made a pass (read or looked for data): the liveness check's sign of life.
    pub fn alive(&self) {
        self.progress
            .source_pass_unix_ms
            .store(now_unix_ms(), Ordering::Relaxed);
    }
}

/// Signs of life of a running pipeline, for `/healthz`: when the source last made a pass, and
/// since when the sinks have been flushing (0: not flushing).
#[derive(Debug, Default)]
pub struct Progress {
    pub(super) source_pass_unix_ms: AtomicU64,
    pub(super) flushing_since_unix_ms: AtomicU64,
}

impl Progress {
    /// `Some(reason)` when the pipeline looks wedged: the source has made no pass for `after`
    /// while no sink is busy writing. A sink that blocks in a write (Logstash not reading, a
    /// full stdout pipe) blocks the source too, and is backpressure, not a hang.
    pub fn wedged(&self, after: Duration) -> Option<String> {
        let now = now_unix_ms();
        let last = self.source_pass_unix_ms.load(Ordering::Relaxed);
        let flushing = self.flushing_since_unix_ms.load(Ordering::Relaxed);
        let idle_ms = now.saturating_sub(last);
        (last != 0 && flushing == 0 && idle_ms >= after.as_millis() as u64).then(|| {
            format!(
                "the pipeline has made no progress for {} s with no sink write pending",
                idle_ms / 1000
            )
        })
    }

    /// The sinks started (`true`) or finished (`false`) flushing a batch.
    pub(super) fn flushing(&self, busy: bool) {
        let v = if busy { now_unix_ms() } else { 0 };
        self.flushing_since_unix_ms.store(v, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pipeline_is_wedged_only_when_stalled_with_no_sink_write_pending() {
        let p = Progress::default();
        let minute = Duration::from_secs(60);
        assert_eq!(p.wedged(minute), None, "not started yet");
        p.source_pass_unix_ms
            .store(now_unix_ms(), Ordering::Relaxed);
        assert_eq!(p.wedged(minute), None);
        p.source_pass_unix_ms
            .store(now_unix_ms() - 90_000, Ordering::Relaxed);
        let reason = p.wedged(minute).expect("wedged");
        assert!(reason.contains("90 s"), "{reason}");
        // A sink blocked in a write is backpressure.
        p.flushing_since_unix_ms
            .store(now_unix_ms() - 80_000, Ordering::Relaxed);
        assert_eq!(p.wedged(minute), None);
    }
}
