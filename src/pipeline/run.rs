//! A pipeline: one [`Source`], the match workers, and the sinks, run until the source ends or
//! is stopped.
//!
//! [`Pipeline::new`] takes a built source and built sinks (everything that can fail at start
//! has failed by then) and returns the pipeline with its [`Control`]. [`Pipeline::run`] runs
//! the stages on the calling thread (the sink thread) until the source returns.
//!
//! Delivery: after every reliable sink has flushed a batch, the batch's receipt moves the
//! source's checkpoint (the offset just past the records in it, never past a held partial line
//! or multi-line record). When the run ends the source's checkpoints are saved once more. A
//! clean stop therefore resumes exactly where delivery stopped: no line lost, none twice.
//!
//! Stopping: [`Control::stop`] makes the source stop reading; batches already read drain
//! through the match workers to the sinks, the checkpoints are saved, and `run` returns. When
//! draining misses its deadline, [`Control::save_checkpoints`] saves what was delivered from
//! the main thread, cutting the batch in flight where the reliable sink says its write stopped.
//!
//! How it fails: a reliable sink's error ends `run` with [`RunError::Sink`] after saving the
//! checkpoints of what was delivered; a failed save is reported by the source and retried.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use thiserror::Error;

use super::presence::Presence;
use super::route::Router;
use super::source::{Checkpoints, Output, Progress, Receipt, Source, StopHandle};
use super::stages::{Inlet, Merge, merge, run_stages};
use crate::patterns::PatternSet;
use crate::settings::lock;
use crate::sinks::{Delivery, NO_CUT, Sink};
use crate::telemetry::metrics::{PipelineMetrics, Stage};

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Match workers.
    pub workers: usize,
    /// Where the stages count and time their work.
    pub metrics: PipelineMetrics,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            workers: super::default_workers(),
            metrics: PipelineMetrics::default(),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default)]
pub struct RunSummary<R> {
    /// The source's report.
    pub source: R,
    /// Events delivered.
    pub events: u64,
    /// Events delivered, by event type.
    pub events_by_type: BTreeMap<String, u64>,
    /// Why the last save of the source's checkpoints failed, when it did.
    pub checkpoint_error: Option<String>,
}

/// The pipeline stopped on an error.
#[derive(Debug, Error)]
pub enum RunError {
    /// A reliable sink failed; checkpoints of what was delivered were saved.
    #[error("writing events failed: {0}")]
    Sink(#[source] io::Error),
}

/// Controls a running pipeline from another thread (a signal handler, a test).
#[derive(Clone)]
pub struct Control {
    stop: StopHandle,
    checkpoints: Option<Arc<dyn Checkpoints>>,
    progress: Arc<Progress>,
    in_flight: Arc<Mutex<Option<Arc<dyn Receipt>>>>,
    /// The cut offset of the only reliable sink, when it has one.
    cut: Option<Arc<AtomicU64>>,
}

impl Control {
    /// The pipeline's signs of life.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Asks the source to stop; the pipeline then drains and saves its checkpoints.
    pub fn stop(&self) {
        (self.stop)();
    }

    /// Saves the checkpoints of what has been delivered so far, now: for a forced exit when
    /// draining does not finish in time. When the reliable sink reports where its write of
    /// the batch in flight stopped taking whole events, that batch's file resumes there
    /// rather than at the batch's start.
    pub fn save_checkpoints(&self) -> io::Result<()> {
        let Some(checkpoints) = &self.checkpoints else {
            return Ok(());
        };
        let cut = self
            .cut
            .as_ref()
            .map(|c| c.load(Ordering::Relaxed))
            .filter(|&c| c != NO_CUT);
        if let (Some(receipt), Some(offset)) = (lock(&self.in_flight).clone(), cut) {
            receipt.cut_short(offset);
        }
        checkpoints.save()
    }
}

/// A built pipeline, ready to run.
pub struct Pipeline<'a, S: Source> {
    source: S,
    router: Router<'a>,
    patterns: Arc<ArcSwap<PatternSet>>,
    options: RunOptions,
    control: Control,
    merge: Merge,
    inlet: Inlet,
    presence: Presence,
}

impl<'a, S: Source> Pipeline<'a, S> {
    /// A pipeline from `source` through the patterns in force to `sinks` (in that order).
    pub fn new(
        source: S,
        sinks: Vec<Box<dyn Sink + 'a>>,
        patterns: Arc<ArcSwap<PatternSet>>,
        options: RunOptions,
    ) -> (Self, Control) {
        let reliable: Vec<&Box<dyn Sink + 'a>> = sinks
            .iter()
            .filter(|s| s.delivery() == Delivery::Reliable)
            .collect();
        // A cut is only meaningful when one sink decides what is durable.
        let cut = match reliable.as_slice() {
            [only] => only.handle().cut_offset,
            _ => None,
        };
        let control = Control {
            stop: source.stop_handle(),
            checkpoints: source.checkpoints(),
            progress: Arc::new(Progress::default()),
            in_flight: Arc::new(Mutex::new(None)),
            cut,
        };
        let presence = Presence::default();
        let router = Router::new(sinks, &options.metrics).with_presence(presence.clone());
        let (inlet, merge) = merge(options.workers);
        (
            Pipeline {
                source,
                router,
                patterns,
                options,
                control: control.clone(),
                merge,
                inlet,
                presence,
            },
            control,
        )
    }

    /// A second way in: batches of events already built (by a source that polls a server),
    /// delivered between the source's batches, without a receipt.
    pub fn inlet(&self) -> Inlet {
        self.inlet.clone()
    }

    /// Who the delivered `player_join` / `player_leave` events say is online, per server
    /// tracked with [`Presence::track`].
    pub fn presence(&self) -> Presence {
        self.presence.clone()
    }

    /// Runs until the source returns or a reliable sink fails; the sinks run on the calling
    /// thread.
    pub fn run(self) -> Result<RunSummary<S::Report>, RunError> {
        let Pipeline {
            source,
            mut router,
            patterns,
            options,
            control,
            merge,
            inlet,
            presence: _,
        } = self;
        drop(inlet);
        let match_seconds = options.metrics.stage(Stage::Match);
        let mut events = 0;
        let mut events_by_type = BTreeMap::new();
        let progress = control.progress.clone();
        let (report, result) = run_stages(
            options.workers,
            &patterns,
            &match_seconds,
            merge,
            |seq| {
                let mut send = |batch| seq.send(batch);
                let mut out = Output {
                    send: &mut send,
                    progress: &progress,
                };
                source.run(&mut out)
            },
            |matched| {
                events += router.deliver(
                    matched,
                    &control.progress,
                    &control.in_flight,
                    &mut events_by_type,
                )?;
                Ok(())
            },
        );
        // A failed save was logged and counted by the source; the caller decides what it means.
        let checkpoint_error = control
            .checkpoints
            .as_ref()
            .and_then(|c| c.save().err())
            .map(|e| e.to_string());
        result.map_err(RunError::Sink)?;
        Ok(RunSummary {
            source: report,
            events,
            events_by_type,
            checkpoint_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::event::{Event, FieldValue};
    use crate::sinks::FnSink;

    /// A source that reads nothing and returns when its gate is opened (or dropped).
    struct Gate(mpsc::Receiver<()>);

    impl Source for Gate {
        type Report = ();

        fn stop_handle(&self) -> StopHandle {
            Arc::new(|| {})
        }

        fn run(self, _out: &mut Output<'_>) {
            let _ = self.0.recv();
        }
    }

    fn leave(player: &str) -> Event {
        crate::pipeline::testing::leave(player, false)
    }

    #[test]
    fn inlet_batches_reach_the_sinks_while_the_source_is_idle_and_a_held_inlet_does_not_keep_the_run_going()
     {
        let patterns = Arc::new(ArcSwap::from_pointee(crate::patterns::shipped().unwrap()));
        let (open, gate) = mpsc::channel();
        let (seen_tx, seen) = mpsc::channel();
        let sink = FnSink(move |e: &Event| {
            let _ = seen_tx.send(e.field("player").map(FieldValue::to_text));
            Ok(())
        });
        let (pipeline, _control) = Pipeline::new(
            Gate(gate),
            vec![Box::new(sink)],
            patterns,
            RunOptions {
                workers: 2,
                metrics: PipelineMetrics::default(),
            },
        );
        let inlet = pipeline.inlet();
        let presence = pipeline.presence();
        presence.track("a");
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || done_tx.send(pipeline.run().map(|s| s.events)));
        for player in ["x", "y"] {
            assert!(inlet.send(vec![leave(player)], tracing::Span::none()));
            let got = seen
                .recv_timeout(Duration::from_secs(30))
                .expect("delivered");
            assert_eq!(got.as_deref(), Some(player));
        }
        open.send(()).unwrap();
        let events = done.recv_timeout(Duration::from_secs(30));
        assert_eq!(events.expect("the run ends").unwrap(), 2);
        assert!(
            !inlet.send(vec![leave("z")], tracing::Span::none()),
            "the pipeline has stopped"
        );
    }
}
