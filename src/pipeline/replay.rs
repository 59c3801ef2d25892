//! `replay`: files read once, start to end, through the stages.
//!
//! How it fails: a file that cannot be read (missing, a directory, binary, an I/O error
//! part-way) is reported in [`ReplaySummary::file_errors`] and the other files are still
//! replayed; records read before an I/O error are still emitted. An error from the sink stops
//! the replay and is returned as [`ReplayError::Sink`].

use std::collections::BTreeMap;
use std::io;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use thiserror::Error;

use crate::event::{Event, LogSource, Timestamp};
use crate::patterns::PatternSet;
use crate::tail::frame::{FrameStats, FramingLimits};
use crate::tail::read::{ReadError, read_records};

use super::stages::{Sequencer, default_workers, run_stages};

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

/// Replays `paths` start to end through the match stage, handing every event to `sink` on the
/// calling thread, in file order.
pub fn replay(
    paths: &[PathBuf],
    patterns: Arc<PatternSet>,
    options: &ReplayOptions,
    mut sink: impl FnMut(&Event) -> io::Result<()>,
) -> Result<ReplaySummary, ReplayError> {
    let patterns = ArcSwap::new(patterns);
    let mut counts: BTreeMap<Arc<str>, u64> = BTreeMap::new();
    // `replay` serves no metrics: the histogram is a detached one.
    let match_seconds = prometheus_client::metrics::histogram::Histogram::new([1.0]);
    let (mut summary, result) = run_stages(
        default_workers(),
        &patterns,
        &match_seconds,
        |seq| read_and_frame(paths, options, seq),
        |matched| {
            for event in &matched.events {
                sink(event)?;
                match counts.get_mut(&event.event_type) {
                    Some(n) => *n += 1,
                    None => {
                        counts.insert(event.event_type.clone(), 1);
                    }
                }
            }
            Ok(())
        },
    );
    result.map_err(ReplayError::Sink)?;
    summary.events_by_type = counts
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Ok(summary)
}

/// The source: read and frame every file, one batch per chunk. Stops early when the pipeline
/// is gone.
fn read_and_frame(
    paths: &[PathBuf],
    options: &ReplayOptions,
    seq: &mut Sequencer<'_>,
) -> ReplaySummary {
    let mut summary = ReplaySummary::default();
    for path in paths {
        let source = Arc::new(LogSource {
            server: options.server.clone(),
            path: path.to_string_lossy().into(),
        });
        let bar = options.progress.then(|| progress_bar(path)).flatten();
        let mut pipeline_gone = false;
        let result = read_records(
            path,
            options.limits,
            |bytes| {
                if let Some(bar) = &bar {
                    bar.set_position(bytes);
                }
            },
            |records, read_time| {
                let read_time = options.read_time.unwrap_or(read_time);
                if seq.send(
                    source.clone(),
                    read_time,
                    std::mem::take(records),
                    None,
                    tracing::Span::none(),
                ) {
                    ControlFlow::Continue(())
                } else {
                    pipeline_gone = true;
                    ControlFlow::Break(())
                }
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
        if pipeline_gone {
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
        let set = Arc::new(crate::patterns::shipped().unwrap());
        let a = file((0..50_000).map(|i| format!("2025-01-01 00:00:00 [CHAT] a: {i}")));
        let b = file((0..50_000).map(|i| format!("2025-01-01 00:00:00 [CHAT] b: {i}")));
        let paths = [a.path().to_owned(), b.path().to_owned()];
        let mut seen = Vec::new();
        let summary = replay(&paths, set.clone(), &options(), |e| {
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
        let set = Arc::new(crate::patterns::shipped().unwrap());
        let a = file((0..200_000).map(|i| format!("line {i}")));
        let mut n = 0;
        let err = replay(&[a.path().to_owned()], set.clone(), &options(), |_| {
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
        let set = Arc::new(crate::patterns::shipped().unwrap());
        let a = file((0..60_000).map(|i| format!("line {i}")));
        let b = file((0..60_000).map(|i| format!("other {i}")));
        let paths = [a.path().to_owned(), b.path().to_owned()];
        for stop_at in [1, 2, 100, 4_000, 30_000, 59_999, 60_001, 119_999] {
            let mut n = 0;
            let result = replay(&paths, set.clone(), &options(), |_| {
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
        let set = Arc::new(crate::patterns::shipped().unwrap());
        let good = file(std::iter::once("hello".to_owned()));
        let paths = [PathBuf::from("/nonexistent/x.log"), good.path().to_owned()];
        let mut n = 0;
        let summary = replay(&paths, set.clone(), &options(), |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(summary.files_read, 1);
        assert_eq!(summary.file_errors.len(), 1);
    }
}
