//! The pipeline: the stages wired together.
//!
//! [`replay`] runs the stages once over whole files, in order: read (large chunks) → frame
//! (lines, multi-line records) → match (typed events) → the caller's sink. Work moves in
//! batches (the records of one chunk) over bounded channels:
//!
//! ```text
//!  reader thread ──(seq, records)──► match workers ×N ──(seq, events)──► caller's thread
//!  read + frame                      match                               reorder by seq → sink
//! ```
//!
//! Matching is where the time goes, so it runs on as many workers as there are cores; reading
//! and framing stay on one thread because a file's records depend on the lines before them.
//! Every batch carries a sequence number and the caller's thread hands events to the sink in
//! that order, so the output is in file order whatever the workers' timing. The channel bounds
//! keep memory flat when the sink is slower than matching.
//!
//! How it fails: a file that cannot be read (missing, a directory, binary, an I/O error
//! part-way) is reported in [`ReplaySummary::file_errors`] and the other files are still
//! replayed; records read before an I/O error are still emitted. An error from the sink stops
//! the replay and is returned as [`ReplayError::Sink`].

use std::collections::BTreeMap;
use std::io;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use thiserror::Error;

use crate::event::{Event, LogSource, Timestamp};
use crate::patterns::PatternSet;
use crate::tail::frame::{FrameStats, FramingLimits};
use crate::tail::read::{ReadError, read_records};

/// Files smaller than this get no progress bar.
pub const PROGRESS_MIN_BYTES: u64 = 16 * 1024 * 1024;

/// How to replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// The `server` tag of every event.
    pub server: Arc<str>,
    /// Line and record limits.
    pub limits: FramingLimits,
    /// A fixed "time read" for records whose lines carry no time (reproducible output in
    /// tests); `None` uses the clock.
    pub read_time: Option<Timestamp>,
    /// Draw a progress bar on stderr for large files.
    pub progress: bool,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    /// Files read to the end.
    pub files_read: usize,
    /// Events emitted, by event type.
    pub events_by_type: BTreeMap<String, u64>,
    /// Framing counters summed over all files.
    pub frame: FrameStats,
    /// Files that could not be read, in the order given.
    pub file_errors: Vec<ReadError>,
}

impl ReplaySummary {
    /// Events emitted in all.
    pub fn events(&self) -> u64 {
        self.events_by_type.values().sum()
    }
}

/// A replay stopped early.
#[derive(Debug, Error)]
pub enum ReplayError {
    /// The sink refused an event.
    #[error("writing events failed: {0}")]
    Sink(#[source] io::Error),
}

/// Batches queued between two stages, per match worker.
const BATCHES_PER_WORKER: usize = 2;

/// Most match workers, whatever the core count.
const MAX_WORKERS: usize = 8;

/// The records of one chunk, numbered in reading order.
struct Work {
    seq: u64,
    source: Arc<LogSource>,
    read_time: Timestamp,
    records: Vec<crate::tail::frame::Record>,
}

/// The events of one chunk.
struct Matched {
    seq: u64,
    events: Vec<Event>,
}

/// Replays `paths` start to end through the match stage, handing every event to `sink` on the
/// calling thread, in file order.
pub fn replay(
    paths: &[PathBuf],
    patterns: &PatternSet,
    options: &ReplayOptions,
    mut sink: impl FnMut(&Event) -> io::Result<()>,
) -> Result<ReplaySummary, ReplayError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS);
    let (work_tx, work_rx) = mpsc::sync_channel::<Work>(workers * BATCHES_PER_WORKER);
    let (done_tx, done_rx) = mpsc::sync_channel::<Matched>(workers * BATCHES_PER_WORKER);
    // Only the workers own the work receiver: when the last of them stops (the caller is
    // gone), it is dropped and the reader's next send fails, so the reader stops too.
    let work_rx = Arc::new(Mutex::new(work_rx));

    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_and_frame(paths, options, &work_tx));
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let work_rx = Arc::clone(&work_rx);
            scope.spawn(move || match_worker(patterns, &work_rx, &done_tx));
        }
        drop(done_tx);
        drop(work_rx);

        let mut counts: BTreeMap<Arc<str>, u64> = BTreeMap::new();
        let mut sink_error = None;
        let mut next_seq = 0u64;
        let mut waiting: BTreeMap<u64, Vec<Event>> = BTreeMap::new();
        'batches: for Matched { seq, events } in done_rx.iter() {
            waiting.insert(seq, events);
            while let Some(events) = waiting.remove(&next_seq) {
                next_seq += 1;
                for event in &events {
                    if let Err(e) = sink(event) {
                        sink_error = Some(e);
                        break 'batches;
                    }
                    match counts.get_mut(&event.event_type) {
                        Some(n) => *n += 1,
                        None => {
                            counts.insert(event.event_type.clone(), 1);
                        }
                    }
                }
            }
        }
        // Dropping the receiver makes the workers' sends fail; they stop, and with them the
        // reader, whose sends then fail too.
        drop(done_rx);
        let mut summary = match reader.join() {
            Ok(summary) => summary,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let Some(e) = sink_error {
            return Err(ReplayError::Sink(e));
        }
        summary.events_by_type = counts
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        Ok(summary)
    })
}

/// A match worker: takes batches of records until the reader is done or the caller is gone.
fn match_worker(
    patterns: &PatternSet,
    work: &Mutex<mpsc::Receiver<Work>>,
    done: &mpsc::SyncSender<Matched>,
) {
    loop {
        // Hold the lock only to take one batch. A poisoned lock means another worker
        // panicked; the scope re-raises that panic, so this one just stops.
        let next = match work.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(Work {
            seq,
            source,
            read_time,
            records,
        }) = next
        else {
            return;
        };
        let events = records
            .into_iter()
            .map(|record| patterns.to_event(record, &source, read_time))
            .collect();
        if done.send(Matched { seq, events }).is_err() {
            return;
        }
    }
}

/// The reader: read and frame every file, sending one numbered batch per chunk. Stops early
/// when the workers are gone.
fn read_and_frame(
    paths: &[PathBuf],
    options: &ReplayOptions,
    tx: &mpsc::SyncSender<Work>,
) -> ReplaySummary {
    let mut summary = ReplaySummary::default();
    let mut seq = 0u64;
    for path in paths {
        let source = Arc::new(LogSource {
            server: options.server.clone(),
            path: path.to_string_lossy().into(),
        });
        let bar = options.progress.then(|| progress_bar(path)).flatten();
        let mut receiver_gone = false;
        let result = read_records(
            path,
            options.limits,
            |bytes| {
                if let Some(bar) = &bar {
                    bar.set_position(bytes);
                }
            },
            |records, read_time| {
                let work = Work {
                    seq,
                    source: source.clone(),
                    read_time: options.read_time.unwrap_or(read_time),
                    records: std::mem::take(records),
                };
                seq += 1;
                if tx.send(work).is_err() {
                    receiver_gone = true;
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            },
        );
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        match result {
            Ok(stats) => {
                summary.files_read += 1;
                summary.frame.lines += stats.lines;
                summary.frame.bytes += stats.bytes;
                summary.frame.lines_cut += stats.lines_cut;
                summary.frame.bytes_cut += stats.bytes_cut;
                summary.frame.lines_invalid_utf8 += stats.lines_invalid_utf8;
            }
            Err(e) => summary.file_errors.push(e),
        }
        if receiver_gone {
            break;
        }
    }
    summary
}

fn progress_bar(path: &std::path::Path) -> Option<indicatif::ProgressBar> {
    let len = std::fs::metadata(path).ok()?.len();
    if len < PROGRESS_MIN_BYTES {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(path.display().to_string());
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn options() -> ReplayOptions {
        ReplayOptions {
            server: "t".into(),
            limits: FramingLimits::default(),
            read_time: Some(Timestamp(0)),
            progress: false,
        }
    }

    fn file(lines: impl Iterator<Item = String>) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        f
    }

    #[test]
    fn events_arrive_in_file_order_across_chunks_and_files() {
        let set = crate::patterns::shipped().unwrap();
        let a = file((0..50_000).map(|i| format!("2025-01-01 00:00:00 [CHAT] a: {i}")));
        let b = file((0..50_000).map(|i| format!("2025-01-01 00:00:00 [CHAT] b: {i}")));
        let paths = [a.path().to_owned(), b.path().to_owned()];
        let mut seen = Vec::new();
        let summary = replay(&paths, &set, &options(), |e| {
            seen.push(e.raw.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(summary.files_read, 2);
        assert_eq!(summary.events(), 100_000);
        assert_eq!(summary.events_by_type["chat"], 100_000);
        for (i, raw) in seen.iter().enumerate() {
            let (who, n) = if i < 50_000 {
                ("a", i)
            } else {
                ("b", i - 50_000)
            };
            assert_eq!(raw, &format!("2025-01-01 00:00:00 [CHAT] {who}: {n}"));
        }
    }

    #[test]
    fn a_failing_sink_stops_the_replay_with_its_error() {
        let set = crate::patterns::shipped().unwrap();
        let a = file((0..200_000).map(|i| format!("line {i}")));
        let mut n = 0;
        let err = replay(&[a.path().to_owned()], &set, &options(), |_| {
            n += 1;
            if n == 10 {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(matches!(err, ReplayError::Sink(ref e) if e.kind() == io::ErrorKind::BrokenPipe));
        assert_eq!(n, 10, "no event after the failing one");
    }

    #[test]
    fn stopping_early_never_deadlocks_whatever_the_point() {
        let set = crate::patterns::shipped().unwrap();
        let a = file((0..60_000).map(|i| format!("line {i}")));
        let b = file((0..60_000).map(|i| format!("other {i}")));
        let paths = [a.path().to_owned(), b.path().to_owned()];
        for stop_at in [1, 2, 100, 4_000, 30_000, 59_999, 60_001, 119_999] {
            let mut n = 0;
            let result = replay(&paths, &set, &options(), |_| {
                n += 1;
                if n == stop_at {
                    Err(io::Error::other("stop"))
                } else {
                    Ok(())
                }
            });
            assert!(result.is_err(), "stop at {stop_at}");
            assert_eq!(n, stop_at);
        }
    }

    #[test]
    fn unreadable_files_are_reported_and_the_rest_replayed() {
        let set = crate::patterns::shipped().unwrap();
        let good = file(std::iter::once("hello".to_owned()));
        let paths = [PathBuf::from("/nonexistent/x.log"), good.path().to_owned()];
        let mut n = 0;
        let summary = replay(&paths, &set, &options(), |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(summary.files_read, 1);
        assert_eq!(summary.file_errors.len(), 1);
    }
}
