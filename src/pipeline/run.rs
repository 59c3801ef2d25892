//! `run`: follow log directories, deliver every record as an event, checkpoint what was
//! delivered.
//!
//! [`Pipeline::new`] builds everything that can fail before anything runs: it opens (and if
//! needed creates) the state directory and its checkpoints, and sets up the tailer and the file
//! watcher. [`Pipeline::run`] then runs the stages until a [`Stopper`] stops it.
//!
//! Delivery: after the sink has written and flushed a batch, the batch's file checkpoint (the
//! offset just past the records in it, never past a held partial line or multi-line record)
//! is recorded, and the checkpoint file is saved at most every `checkpoint_interval` and once
//! more at the end. A clean stop therefore resumes exactly where delivery stopped: no line lost,
//! none twice. After a crash, lines delivered since the last save are delivered again.
//!
//! Stopping: [`Stopper::stop`] makes the tailer stop reading; batches already read drain through
//! the match workers to the sink, the checkpoints are saved, and `run` returns.
//!
//! How it fails: an unusable state directory is a [`RunError::StateDir`] from `new`; a
//! corrupt checkpoint file is logged and ignored; a sink error ends `run` with
//! [`RunError::Sink`] after saving the checkpoints of what was delivered; a failed checkpoint
//! save is logged and retried at the next interval.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use thiserror::Error;
use tracing::{debug, info, warn};

use super::stages::{Matched, run_stages};
use crate::event::Timestamp;
use crate::patterns::PatternSet;
use crate::settings::lock;
use crate::sinks::Sink;
use crate::tail::checkpoint::{CheckpointStore, FileCheckpoint};
use crate::tail::tailer::{ServerSource, TailOptions, TailStats, Tailer};
use crate::tail::watch::{WakeHandle, Waker, follow};
use crate::telemetry::metrics::{EventLabels, PipelineMetrics, TraceLabel};
use crate::telemetry::now_unix_ms;

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The servers to follow.
    pub servers: Vec<ServerSource>,
    /// Tailer behaviour.
    pub tail: TailOptions,
    /// Where checkpoints are kept.
    pub state_dir: PathBuf,
    /// Never use file-system notifications (Docker bind mounts, network file systems).
    pub poll_only: bool,
    /// Longest wait between two looks at the files when nothing happens.
    pub poll_interval_max: Duration,
    /// Checkpoints are saved at most this often.
    pub checkpoint_interval: Duration,
    /// Match workers.
    pub workers: usize,
    /// Where the stages count and time their work.
    pub metrics: PipelineMetrics,
    /// The `sink` label of the reliable sink (`logstash`, `stdout`).
    pub sink_name: &'static str,
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary {
    /// The tailer's counters.
    pub tail: TailStats,
    /// Events delivered.
    pub events: u64,
    /// Checkpoint files written.
    pub checkpoint_saves: u64,
}

/// `run` could not start or stopped on an error.
#[derive(Debug, Error)]
pub enum RunError {
    /// The state directory cannot hold checkpoints.
    #[error("{}: cannot use the state directory: {source}; pass --state-dir DIR with a writable directory", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The sink failed; checkpoints of what it took were saved.
    #[error("writing events failed: {0}")]
    Sink(#[source] io::Error),
}

/// Signs of life of a running pipeline, for `/healthz`: when the tail loop last made a pass,
/// and since when the sink has been flushing (0: not flushing).
#[derive(Debug, Default)]
pub struct Progress {
    tail_pass_unix_ms: AtomicU64,
    flushing_since_unix_ms: AtomicU64,
}

impl Progress {
    /// `Some(reason)` when the pipeline looks wedged: the tail loop has made no pass for
    /// `after` while the sink is not busy writing. A sink that blocks in a write (Logstash not
    /// reading, a full stdout pipe) blocks the tail loop too, and is backpressure, not a hang.
    pub fn wedged(&self, after: Duration) -> Option<String> {
        let now = now_unix_ms();
        let last = self.tail_pass_unix_ms.load(Ordering::Relaxed);
        let flushing = self.flushing_since_unix_ms.load(Ordering::Relaxed);
        let idle_ms = now.saturating_sub(last);
        (last != 0 && flushing == 0 && idle_ms >= after.as_millis() as u64).then(|| {
            format!(
                "the pipeline has made no progress for {} s with no sink write pending",
                idle_ms / 1000
            )
        })
    }
}

/// Stops a running pipeline from another thread (a signal handler, a test).
#[derive(Clone)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    wake: WakeHandle,
    store: Arc<Mutex<CheckpointStore>>,
    progress: Arc<Progress>,
    in_flight: Arc<Mutex<Option<FileCheckpoint>>>,
}

impl Stopper {
    /// The pipeline's signs of life.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Asks the pipeline to stop reading, drain and save its checkpoints.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.wake();
    }

    /// Saves the checkpoints of what has been delivered so far, now. For a forced exit when
    /// draining does not finish in time. `cut`: where the sink's cut-short write of the batch
    /// in flight stopped taking whole events (a file offset, see
    /// [`crate::sinks::logstash::LogstashSink::cut_offset`]); that batch's file then resumes
    /// there rather than at the batch's start.
    pub fn save_checkpoints(&self, cut: Option<u64>) -> io::Result<()> {
        let mut store = lock(&self.store);
        let in_flight = lock(&self.in_flight).clone();
        if let (Some(cp), Some(offset)) = (in_flight, cut)
            && offset < cp.offset
        {
            store.update(FileCheckpoint { offset, ..cp });
        }
        store.save(Timestamp::now())
    }
}

/// A built pipeline, ready to run.
pub struct Pipeline {
    tailer: Tailer,
    waker: Waker,
    stop: Arc<AtomicBool>,
    store: Arc<Mutex<CheckpointStore>>,
    poll_interval_max: Duration,
    checkpoint_interval: Duration,
    workers: usize,
    metrics: PipelineMetrics,
    sink_name: &'static str,
    progress: Arc<Progress>,
    in_flight: Arc<Mutex<Option<FileCheckpoint>>>,
}

impl Pipeline {
    /// Opens the state directory and sets up the tailer and the watcher.
    pub fn new(opts: RunOptions) -> Result<(Pipeline, Stopper), RunError> {
        let (store, warning) =
            CheckpointStore::open(&opts.state_dir).map_err(|source| RunError::StateDir {
                path: opts.state_dir.clone(),
                source,
            })?;
        if let Some(w) = warning {
            warn!("{w}");
        }
        // Fail now, not at the first save, when the directory is not writable.
        let probe = opts.state_dir.join(".write-test");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|source| RunError::StateDir {
                path: opts.state_dir.clone(),
                source,
            })?;
        let tailer = Tailer::new(opts.servers, opts.tail, &store).with_metrics(&opts.metrics);
        let waker = Waker::new(opts.poll_only);
        let stop = Arc::new(AtomicBool::new(false));
        let store = Arc::new(Mutex::new(store));
        let progress = Arc::new(Progress::default());
        let in_flight = Arc::new(Mutex::new(None));
        let stopper = Stopper {
            stop: stop.clone(),
            wake: waker.handle(),
            store: store.clone(),
            progress: progress.clone(),
            in_flight: in_flight.clone(),
        };
        Ok((
            Pipeline {
                tailer,
                waker,
                stop,
                store,
                poll_interval_max: opts.poll_interval_max,
                checkpoint_interval: opts.checkpoint_interval,
                workers: opts.workers,
                metrics: opts.metrics,
                sink_name: opts.sink_name,
                progress,
                in_flight,
            },
            stopper,
        ))
    }

    /// Runs until stopped or the sink fails; the sink runs on the calling thread.
    pub fn run(
        self,
        patterns: &ArcSwap<PatternSet>,
        sink: &mut dyn Sink,
    ) -> Result<RunSummary, RunError> {
        let Pipeline {
            tailer,
            waker,
            stop,
            store,
            poll_interval_max,
            checkpoint_interval,
            workers,
            metrics,
            sink_name,
            progress,
            in_flight,
        } = self;
        let match_seconds = metrics.stage("match");
        let route_seconds = metrics.stage("route");
        let sink_seconds = metrics.stage("sink");
        let latency = metrics.latency(sink_name);
        let mut types = EventTypeCounts::default();
        let mut summary = RunSummary::default();
        let mut last_save = Instant::now();
        let save = |summary: &mut RunSummary| {
            let mut store = lock(&store);
            if !store.is_dirty() {
                return;
            }
            match store.save(Timestamp::now()) {
                Ok(()) => summary.checkpoint_saves += 1,
                Err(e) => {
                    metrics.errors.count("checkpoint", "save");
                    warn!(error = %e, "Saving checkpoints failed; will retry.");
                }
            }
        };

        let (tail_stats, result) = run_stages(
            workers,
            patterns,
            &match_seconds,
            |seq| {
                let beat = || {
                    progress
                        .tail_pass_unix_ms
                        .store(now_unix_ms(), Ordering::Relaxed)
                };
                follow(tailer, waker, poll_interval_max, &stop, beat, |batch| {
                    seq.send(
                        batch.source,
                        batch.read_time,
                        batch.records,
                        batch.checkpoint,
                        batch.span,
                    )
                })
            },
            |Matched {
                 events,
                 checkpoint,
                 read_at,
                 span,
             }| {
                let started = Instant::now();
                // Writing may block on the sink (stdout's buffer writes out as it fills).
                progress
                    .flushing_since_unix_ms
                    .store(now_unix_ms(), Ordering::Relaxed);
                crate::traced_span!(parent: &span, "route", events = events.len()).in_scope(
                    || -> io::Result<()> {
                        for event in &events {
                            sink.write(event)?;
                        }
                        Ok(())
                    },
                )?;
                let routed = Instant::now();
                route_seconds.observe((routed - started).as_secs_f64());
                let sink_span = match sink_name {
                    "logstash" => {
                        crate::traced_span!(parent: &span, "sink.logstash", events = events.len())
                    }
                    _ => crate::traced_span!(parent: &span, "sink.stdout", events = events.len()),
                };
                // Where the file ends up once this batch is delivered, for a forced stop that
                // cuts its write short.
                lock(&in_flight).clone_from(&checkpoint);
                let flushed = sink_span.in_scope(|| -> io::Result<()> {
                    sink.flush()?;
                    debug!(events = events.len(), "Batch delivered.");
                    Ok(())
                });
                progress.flushing_since_unix_ms.store(0, Ordering::Relaxed);
                flushed?;
                drop(sink_span);
                let flushed = Instant::now();
                sink_seconds.observe((flushed - routed).as_secs_f64());
                let exemplar = events
                    .first()
                    .and_then(|e| e.trace.as_ref())
                    .map(|t| TraceLabel {
                        trace_id: t.trace_id.clone(),
                    });
                latency.observe((flushed - read_at).as_secs_f64(), exemplar, None);
                types.count(&events, &metrics);
                summary.events += events.len() as u64;
                if let Some(cp) = checkpoint {
                    lock(&store).update(cp);
                }
                *lock(&in_flight) = None;
                if last_save.elapsed() >= checkpoint_interval {
                    save(&mut summary);
                    last_save = Instant::now();
                }
                Ok(())
            },
        );
        summary.tail = tail_stats;
        save(&mut summary);
        result.map_err(RunError::Sink)?;
        info!(
            events = summary.events,
            files_opened = summary.tail.files_opened,
            truncations = summary.tail.truncations,
            "Stopped; checkpoints saved."
        );
        Ok(summary)
    }
}

/// Counts a batch's events by server and type into `events_processed_total`. A batch comes
/// from one file and has few distinct types, so a short list beats a map per event; types
/// are usually the same `Arc` (a pattern's), compared by pointer first.
#[derive(Default)]
struct EventTypeCounts {
    counts: Vec<(Arc<str>, u64)>,
}

impl EventTypeCounts {
    fn count(&mut self, events: &[crate::event::Event], metrics: &PipelineMetrics) {
        let Some(first) = events.first() else { return };
        self.counts.clear();
        for e in events {
            match self
                .counts
                .iter_mut()
                .find(|(t, _)| Arc::ptr_eq(t, &e.event_type) || **t == *e.event_type)
            {
                Some((_, n)) => *n += 1,
                None => self.counts.push((e.event_type.clone(), 1)),
            }
        }
        for (event_type, n) in &self.counts {
            metrics
                .events_processed
                .get_or_create(&EventLabels {
                    server: first.source.server.to_string(),
                    event_type: event_type.to_string(),
                })
                .inc_by(*n);
        }
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
        p.tail_pass_unix_ms.store(now_unix_ms(), Ordering::Relaxed);
        assert_eq!(p.wedged(minute), None);
        p.tail_pass_unix_ms
            .store(now_unix_ms() - 90_000, Ordering::Relaxed);
        let reason = p.wedged(minute).expect("wedged");
        assert!(reason.contains("90 s"), "{reason}");
        // A sink blocked in a write is backpressure.
        p.flushing_since_unix_ms
            .store(now_unix_ms() - 80_000, Ordering::Relaxed);
        assert_eq!(p.wedged(minute), None);
    }
}
