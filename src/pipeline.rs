//! The pipeline: the stages wired together.
//!
//! [`replay`] runs the stages once over whole files, in order: read (large chunks) → frame
//! (lines, multi-line records) → match (typed events) → the caller's sink. It is synchronous:
//! there is nothing to wait for, and a single thread keeps events in file order.
//!
//! How it fails: a file that cannot be read (missing, a directory, binary, an I/O error
//! part-way) is reported in [`ReplaySummary::file_errors`] and the other files are still
//! replayed; records read before an I/O error are still emitted. An error from the sink stops
//! the replay and is returned as [`ReplayError::Sink`].

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

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

/// Replays `paths` start to end through the match stage, handing every event to `sink`.
pub fn replay(
    paths: &[PathBuf],
    patterns: &PatternSet,
    options: &ReplayOptions,
    mut sink: impl FnMut(&Event) -> io::Result<()>,
) -> Result<ReplaySummary, ReplayError> {
    let mut summary = ReplaySummary::default();
    let mut counts: BTreeMap<Arc<str>, u64> = BTreeMap::new();
    for path in paths {
        let source = Arc::new(LogSource {
            server: options.server.clone(),
            path: path.to_string_lossy().into(),
        });
        let bar = options.progress.then(|| progress_bar(path)).flatten();
        let mut sink_error = None;
        let result = read_records(
            path,
            options.limits,
            |bytes| {
                if let Some(bar) = &bar {
                    bar.set_position(bytes);
                }
            },
            |records, read_time| {
                if sink_error.is_some() {
                    return;
                }
                let read_time = options.read_time.unwrap_or(read_time);
                for record in records.drain(..) {
                    let event = patterns.to_event(record, &source, read_time);
                    if let Err(e) = sink(&event) {
                        sink_error = Some(e);
                        return;
                    }
                    *counts.entry(event.event_type).or_insert(0) += 1;
                }
            },
        );
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if let Some(e) = sink_error {
            return Err(ReplayError::Sink(e));
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
    }
    summary.events_by_type = counts
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    Ok(summary)
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
