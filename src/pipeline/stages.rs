//! The stage machinery shared by `replay` and `run`: a source thread, match workers, and an
//! in-order consumer on the calling thread.
//!
//! A batch of at most [`INLINE_MATCH_MAX_RECORDS`] records (a live server's few new lines) is
//! matched on the source's thread and handed straight to the consumer; larger ones (a file read
//! from its start) are matched by the workers in parallel. Either way the consumer puts them
//! back in source order.
//!
//! A second way in, the [`Inlet`], takes batches of events already built elsewhere (a poll of
//! the server over RCON): they skip matching, carry no receipt, and reach the consumer between
//! two source batches, in the order they were sent. Sending never blocks the sender.
//!
//! How it stops: when the source returns, its sender is dropped and the workers drain and stop;
//! each worker says so as it stops, and once every worker has the consumer closes the inlet,
//! consumes the batches it still holds, in order, and returns. An inlet may still be held
//! elsewhere (a poller racing the shutdown): a send either lands before the close, returns
//! `true` and its batch is consumed, or comes after it and returns `false`; a batch is only
//! lost when the consumer itself failed first (the run then ends with that error).
//!
//! When the consumer returns an error, its receiver is dropped, the workers' sends fail and
//! they stop, the last one drops the work receiver, and the source's next send fails. No
//! thread can be left blocked.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};

use arc_swap::ArcSwap;
use prometheus_client::metrics::histogram::Histogram;
use std::time::Instant;

use super::source::{Batch, Receipt};
use crate::event::Event;
use crate::patterns::PatternSet;
use crate::settings::lock;

/// Batches queued between two stages, per match worker.
const BATCHES_PER_WORKER: usize = 2;

/// Most match workers, whatever the core count.
const MAX_WORKERS: usize = 8;

/// Match workers to use: one per core, at most 8.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS)
}

/// A batch numbered in source order, and when the source handed it on.
struct Work {
    seq: u64,
    batch: Batch,
    read_at: Instant,
}

/// The events of one batch, and what delivering them moves.
pub struct Matched {
    /// Events in source order.
    pub events: Vec<Event>,
    /// Moves the source's checkpoint once the events are delivered.
    pub receipt: Option<Arc<dyn Receipt>>,
    /// When the batch was handed on by the source (just after it was read).
    pub read_at: Instant,
    /// The batch's root span.
    pub span: tracing::Span,
}

struct Done {
    seq: u64,
    matched: Matched,
}

/// What the consumer receives.
enum Handed {
    /// A matched source batch.
    Done(Done),
    /// An inlet sent a batch: look at the inlet's queue.
    Wake,
    /// A match worker stopped.
    WorkerStopped,
}

/// A batch sent through an [`Inlet`].
struct Extra {
    events: Vec<Event>,
    span: tracing::Span,
    read_at: Instant,
}

/// The inlet's side of its queue: `None` once the consumer has closed it. Every inlet shares
/// it, so the close and a send never interleave.
type InletQueue = Arc<Mutex<Option<mpsc::Sender<Extra>>>>;

/// A second way into a pipeline: batches of events made outside the match stage (by a source
/// that polls a server), delivered to the sinks like the source's, without a receipt. Cheap
/// to clone; sending never blocks.
#[derive(Clone)]
pub struct Inlet {
    extras: InletQueue,
    wake: mpsc::SyncSender<Handed>,
}

impl Inlet {
    /// Hands `events` (made under `span`, their root span) to the sink thread; `false` when
    /// the pipeline has stopped. After `true` the batch is consumed, even when the pipeline
    /// stops right after (unless a sink fails first).
    pub fn send(&self, events: Vec<Event>, span: tracing::Span) -> bool {
        let extra = Extra {
            events,
            span,
            read_at: Instant::now(),
        };
        let queued = lock(&self.extras)
            .as_ref()
            .is_some_and(|tx| tx.send(extra).is_ok());
        if !queued {
            return false;
        }
        // A full channel means the consumer has messages to take: it looks at the queue
        // before each.
        !matches!(
            self.wake.try_send(Handed::Wake),
            Err(mpsc::TrySendError::Disconnected(_))
        )
    }
}

/// The channels the consumer reads, made before the run so inlets can be handed out.
pub(super) struct Merge {
    done_tx: mpsc::SyncSender<Handed>,
    done_rx: mpsc::Receiver<Handed>,
    extras: mpsc::Receiver<Extra>,
    /// Closed (emptied) by the consumer once the last match worker has stopped.
    inlets: InletQueue,
    /// Called on the consumer's thread once the last match worker has stopped: where a test
    /// sends through an inlet at the very end of a run.
    #[cfg(test)]
    ended: Option<Box<dyn FnOnce() + Send>>,
}

/// The consumer's channels for `workers` match workers, and an inlet into them.
pub(super) fn merge(workers: usize) -> (Inlet, Merge) {
    let (done_tx, done_rx) = mpsc::sync_channel::<Handed>(workers.max(1) * BATCHES_PER_WORKER);
    let (extras_tx, extras) = mpsc::channel();
    let inlets = Arc::new(Mutex::new(Some(extras_tx)));
    let inlet = Inlet {
        extras: inlets.clone(),
        wake: done_tx.clone(),
    };
    (
        inlet,
        Merge {
            done_tx,
            done_rx,
            extras,
            inlets,
            #[cfg(test)]
            ended: None,
        },
    )
}

impl Extra {
    fn matched(self) -> Matched {
        Matched {
            events: self.events,
            receipt: None,
            read_at: self.read_at,
            span: self.span,
        }
    }
}

/// How far the source may run ahead of the consumer: a batch may be sent only when fewer than
/// `limit` batches are between the source and the end of the consumer. The queues between the
/// stages are bounded already, but batches a worker finishes while an earlier one is still being
/// matched wait for it in the consumer's reorder buffer; without this bound a worker that is not
/// scheduled for a while (a busy machine) lets the others fill that buffer with everything the
/// source reads meanwhile.
struct InFlight {
    /// Batches the consumer has finished (the next sequence number it waits for), and whether
    /// it has stopped.
    state: Mutex<(u64, bool)>,
    moved: Condvar,
    limit: u64,
    /// Whether the source is waiting for the consumer (for tests).
    waiting: AtomicBool,
}

impl InFlight {
    fn new(limit: usize) -> Self {
        InFlight {
            state: Mutex::new((0, false)),
            moved: Condvar::new(),
            limit: limit as u64,
            waiting: AtomicBool::new(false),
        }
    }

    /// Blocks until batch `seq` may be sent; `false` when the consumer has stopped.
    fn wait_to_send(&self, seq: u64) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        while seq >= state.0 + self.limit && !state.1 {
            self.waiting.store(true, Ordering::Release);
            state = match self.moved.wait(state) {
                Ok(state) => state,
                Err(_) => return false,
            };
        }
        self.waiting.store(false, Ordering::Release);
        !state.1
    }

    /// The consumer finished every batch before `next`.
    fn consumed(&self, next: u64) {
        if let Ok(mut state) = self.state.lock() {
            state.0 = next;
        }
        self.moved.notify_all();
    }

    /// The consumer stopped: no more waiting.
    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.1 = true;
        }
        self.moved.notify_all();
    }
}

/// A batch of at most this many records is matched on the source's thread and handed
/// straight to the consumer: a live line then crosses one thread less on its way to the sinks.
/// Larger batches (a file read from its start) go to the match workers, which run in parallel.
pub const INLINE_MATCH_MAX_RECORDS: usize = 32;

/// What the source's thread needs to match a small batch itself.
struct Inline<'a> {
    patterns: &'a ArcSwap<PatternSet>,
    match_seconds: &'a Histogram,
    done: mpsc::SyncSender<Handed>,
}

/// Numbers batches and hands them to the match workers (a small one it matches itself).
pub struct Sequencer<'a> {
    tx: &'a mpsc::SyncSender<Work>,
    in_flight: &'a InFlight,
    inline: Inline<'a>,
    next: u64,
}

impl Sequencer<'_> {
    /// Sends one batch; blocks while the workers are busy or the source is as far ahead of the
    /// consumer as it may be. Returns false when the pipeline is gone and the source should
    /// stop.
    pub fn send(&mut self, batch: Batch) -> bool {
        if !self.in_flight.wait_to_send(self.next) {
            return false;
        }
        let work = Work {
            seq: self.next,
            batch,
            read_at: Instant::now(),
        };
        self.next += 1;
        if work.batch.records.len() <= INLINE_MATCH_MAX_RECORDS {
            let done = match_batch(self.inline.patterns, self.inline.match_seconds, work);
            return self.inline.done.send(Handed::Done(done)).is_ok();
        }
        self.tx.send(work).is_ok()
    }
}

/// Runs `produce` on its own thread and `workers` match workers, and hands every batch to
/// `consume` on the calling thread in source order, with the inlet's batches of `merge` in
/// between. Stops early when `consume` fails. The time each batch takes to match is observed
/// in `match_seconds`.
pub(super) fn run_stages<R: Send, E>(
    workers: usize,
    patterns: &ArcSwap<PatternSet>,
    match_seconds: &Histogram,
    merge: Merge,
    produce: impl FnOnce(&mut Sequencer<'_>) -> R + Send,
    mut consume: impl FnMut(Matched) -> Result<(), E>,
) -> (R, Result<(), E>) {
    let workers = workers.max(1);
    let (work_tx, work_rx) = mpsc::sync_channel::<Work>(workers * BATCHES_PER_WORKER);
    let Merge {
        done_tx,
        done_rx,
        extras,
        inlets,
        #[cfg(test)]
        ended,
    } = merge;
    // Only the workers own the work receiver: when the last of them stops, it is dropped and
    // the source's next send fails.
    let work_rx = Arc::new(Mutex::new(work_rx));
    // Each worker's batch in hand and the queued ones, and one being consumed.
    let in_flight = InFlight::new(workers * (BATCHES_PER_WORKER + 1) + 1);
    /// Lets the source go when the consumer stops, however it stops (a panic too).
    struct Closing<'a>(&'a InFlight);
    impl Drop for Closing<'_> {
        fn drop(&mut self) {
            self.0.close();
        }
    }

    std::thread::scope(|scope| {
        let in_flight = &in_flight;
        let inline = Inline {
            patterns,
            match_seconds,
            done: done_tx.clone(),
        };
        let source = scope.spawn(move || {
            let mut seq = Sequencer {
                tx: &work_tx,
                in_flight,
                inline,
                next: 0,
            };
            produce(&mut seq)
        });
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let work_rx = Arc::clone(&work_rx);
            scope.spawn(move || match_worker(patterns, match_seconds, &work_rx, &done_tx));
        }
        drop(done_tx);
        drop(work_rx);
        let closing = Closing(in_flight);

        let mut result = Ok(());
        let mut next_seq = 0u64;
        let mut waiting: BTreeMap<u64, Matched> = BTreeMap::new();
        let mut stopped = 0;
        'batches: while let Ok(handed) = done_rx.recv() {
            // The inlet's batches first: they were sent before this message was taken.
            while let Ok(extra) = extras.try_recv() {
                if let Err(e) = consume(extra.matched()) {
                    result = Err(e);
                    break 'batches;
                }
            }
            let Done { seq, matched } = match handed {
                Handed::Done(done) => done,
                Handed::Wake => continue,
                Handed::WorkerStopped => {
                    stopped += 1;
                    if stopped == workers {
                        break;
                    }
                    continue;
                }
            };
            waiting.insert(seq, matched);
            while let Some(matched) = waiting.remove(&next_seq) {
                next_seq += 1;
                if let Err(e) = consume(matched) {
                    result = Err(e);
                    break 'batches;
                }
                in_flight.consumed(next_seq);
            }
        }
        #[cfg(test)]
        if let Some(ended) = ended {
            ended();
        }
        // Close the inlet: a send from now on is refused, and every batch it took is in the
        // queue. They are consumed unless the consumer has failed.
        drop(lock(&inlets).take());
        if result.is_ok() {
            while let Ok(extra) = extras.try_recv() {
                if let Err(e) = consume(extra.matched()) {
                    result = Err(e);
                    break;
                }
            }
        }
        drop(extras);
        drop(done_rx);
        drop(closing);
        let produced = match source.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        (produced, result)
    })
}

/// A match worker: takes batches until the source is done or the consumer is gone. The
/// pattern set is loaded per batch, so a reload applies from the next batch on.
fn match_worker(
    patterns: &ArcSwap<PatternSet>,
    match_seconds: &Histogram,
    work: &Mutex<mpsc::Receiver<Work>>,
    done: &mpsc::SyncSender<Handed>,
) {
    /// Tells the consumer this worker stopped, however it stops (a panic too).
    struct Stopped<'a>(&'a mpsc::SyncSender<Handed>);
    impl Drop for Stopped<'_> {
        fn drop(&mut self) {
            let _ = self.0.send(Handed::WorkerStopped);
        }
    }
    let _stopped = Stopped(done);
    loop {
        // Hold the lock only to take one batch. A poisoned lock means another worker panicked;
        // the scope re-raises that panic, so this one just stops.
        let next = match work.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(work) = next else {
            return;
        };
        if done
            .send(Handed::Done(match_batch(patterns, match_seconds, work)))
            .is_err()
        {
            return;
        }
    }
}

/// Matches one batch with the pattern set in force, and observes the time it took.
fn match_batch(patterns: &ArcSwap<PatternSet>, match_seconds: &Histogram, work: Work) -> Done {
    let Work {
        seq,
        batch:
            Batch {
                source,
                read_time,
                records,
                receipt,
                span,
            },
        read_at,
    } = work;
    let started = Instant::now();
    let match_span = crate::traced_span!(parent: &span, "match", records = records.len());
    // The events of a sampled batch carry the ids of the span that made them.
    let trace = crate::telemetry::traces::sampled_ids(&match_span);
    let events = match_span.in_scope(|| {
        let set = patterns.load();
        records
            .into_iter()
            .map(|record| {
                let mut event = set.to_event(record, &source, read_time);
                event.trace.clone_from(&trace);
                event
            })
            .collect()
    });
    drop(match_span);
    match_seconds.observe(started.elapsed().as_secs_f64());
    Done {
        seq,
        matched: Matched {
            events,
            receipt,
            read_at,
            span,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::sync::mpsc;

    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

    use super::*;
    use crate::event::{FieldValue, LogSource, Timestamp};

    /// Waits (yielding) until `ready` holds; no clock involved.
    fn until(ready: impl Fn() -> bool) {
        while !ready() {
            std::thread::yield_now();
        }
    }

    #[test]
    fn the_source_waits_when_it_is_as_far_ahead_of_the_consumer_as_it_may_be() {
        let in_flight = InFlight::new(3);
        let sent = AtomicU64::new(0);
        std::thread::scope(|scope| {
            let source = scope.spawn(|| {
                for seq in 0.. {
                    if !in_flight.wait_to_send(seq) {
                        return seq;
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                unreachable!()
            });
            // Three batches go out, then the source waits for the consumer.
            until(|| in_flight.waiting.load(Ordering::Acquire));
            assert_eq!(sent.load(Ordering::SeqCst), 3);
            // Each batch consumed lets one more go.
            in_flight.consumed(1);
            until(|| sent.load(Ordering::SeqCst) == 4 && in_flight.waiting.load(Ordering::Acquire));
            in_flight.consumed(3);
            until(|| sent.load(Ordering::SeqCst) == 6 && in_flight.waiting.load(Ordering::Acquire));
            assert_eq!(sent.load(Ordering::SeqCst), 6);
            // A consumer that stops lets the waiting source go, and refuses what it sends.
            in_flight.close();
            assert_eq!(source.join().unwrap(), 6);
        });
        assert!(!in_flight.wait_to_send(0));
    }

    fn leave(player: &str) -> Event {
        crate::pipeline::testing::leave(player, true)
    }

    /// Runs stages whose source sends `early` through the inlet and returns at once; once the
    /// last worker has stopped, `late` is sent. Returns the players consumed, in order, and
    /// whether sending `late` said it was taken.
    fn run_with_inlet(workers: usize) -> (Vec<String>, bool) {
        let patterns = ArcSwap::from_pointee(crate::patterns::shipped().unwrap());
        let match_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 4));
        let (inlet, mut merge) = merge(workers);
        let (late_tx, late_rx) = mpsc::channel();
        let late = inlet.clone();
        merge.ended = Some(Box::new(move || {
            let _ = late_tx.send(late.send(vec![leave("late")], tracing::Span::none()));
        }));
        let mut consumed = Vec::new();
        let (sent, result) = run_stages(
            workers,
            &patterns,
            &match_seconds,
            merge,
            |_seq| inlet.send(vec![leave("early")], tracing::Span::none()),
            |matched| {
                consumed.extend(
                    matched
                        .events
                        .iter()
                        .filter_map(|e| e.field("player").map(FieldValue::to_text)),
                );
                Ok::<(), ()>(())
            },
        );
        assert!(sent, "the run was going when `early` was sent");
        result.unwrap();
        assert!(
            !inlet.send(vec![leave("after")], tracing::Span::none()),
            "the run has ended"
        );
        (
            consumed,
            late_rx.recv().expect("the end of the run was reached"),
        )
    }

    #[test]
    fn inlet_batches_sent_until_the_end_of_the_run_are_consumed_in_order() {
        for workers in [1, 2] {
            let (consumed, late_taken) = run_with_inlet(workers);
            assert!(late_taken, "the consumer still ran when `late` was sent");
            assert_eq!(consumed, ["early", "late"], "{workers} workers");
        }
    }

    #[test]
    fn small_batches_matched_by_the_source_and_large_ones_by_the_workers_come_out_in_order() {
        let patterns = ArcSwap::from_pointee(crate::patterns::shipped().unwrap());
        let match_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 4));
        let source = Arc::new(LogSource {
            server: "a".into(),
            path: "p".into(),
        });
        let sizes = [
            1,
            200,
            3,
            INLINE_MATCH_MAX_RECORDS,
            INLINE_MATCH_MAX_RECORDS + 1,
            1,
            500,
            2,
        ];
        let mut offset = 0u64;
        let batches: Vec<Batch> = sizes
            .iter()
            .map(|&n| Batch {
                source: source.clone(),
                read_time: Timestamp(0),
                records: (0..n)
                    .map(|_| {
                        offset += 1;
                        crate::event::Record {
                            offset,
                            end_offset: offset + 1,
                            text: format!("2025-01-01 00:00:00 [CHAT] p{offset}: hi"),
                            message_start: 0,
                            lines: 1,
                            time_ms: None,
                        }
                    })
                    .collect(),
                receipt: None,
                span: tracing::Span::none(),
            })
            .collect();
        let total = offset;
        let (_inlet, merge) = merge(2);
        let mut seen = Vec::new();
        let (sent, result) = run_stages(
            2,
            &patterns,
            &match_seconds,
            merge,
            |seq| batches.into_iter().all(|b| seq.send(b)),
            |matched| {
                for e in &matched.events {
                    assert_eq!(&*e.event_type, "chat");
                    assert_eq!(
                        e.field("player").map(FieldValue::to_text),
                        Some(format!("p{}", e.offset))
                    );
                    seen.push(e.offset);
                }
                Ok::<(), ()>(())
            },
        );
        assert!(sent);
        result.unwrap();
        assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    }
}
