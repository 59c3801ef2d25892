//! `replay`'s source: whole files, read once from start to end, in the order given. The path
//! `-` is standard input, read to its end; its events' `log.path` is `-`.
//!
//! Each file is read and framed in chunks ([`read_records`]); the records of every chunk are
//! one batch. Records whose lines carry no time are stamped with the time their chunk was
//! read, or with a fixed time ([`ReplayOptions::read_time`]) for reproducible output. There
//! are no checkpoints: a replay always reads everything.
//!
//! How it fails: a file that cannot be read (missing, a directory, binary, an I/O error
//! part-way) is reported in [`ReplayReport::file_errors`] and the other files are still
//! replayed; records read before an I/O error are still handed on.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jiff::tz::TimeZone;

use super::frame::{FrameStats, FramingLimits};
use super::read::{ReadError, read_records};
use super::zone::LocalClock;
use crate::event::{LogSource, Timestamp};
use crate::pipeline::{Batch, Output, Source, StopHandle};

/// Files smaller than this get no progress bar.
pub const PROGRESS_MIN_BYTES: u64 = 16 * 1024 * 1024;

/// How to replay.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// The `server` tag of every event.
    pub server: Arc<str>,
    /// Line and record limits.
    pub limits: FramingLimits,
    /// The zone of the dates in the files (`--timezone`, `timezone`; default the zone of
    /// this machine).
    pub timezone: TimeZone,
    /// A fixed "time read" for records whose lines carry no time (reproducible output in
    /// tests); `None` uses the clock.
    pub read_time: Option<Timestamp>,
    /// Draw a progress bar on stderr for large files.
    pub progress: bool,
}

/// What the reading side of a replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Files read to the end.
    pub files_read: usize,
    /// Framing counters summed over all files.
    pub frame: FrameStats,
    /// Files that could not be read, in the order given.
    pub file_errors: Vec<ReadError>,
}

/// Reads `paths` start to end. See the module docs.
pub struct ReplaySource {
    paths: Vec<PathBuf>,
    options: ReplayOptions,
    stop: Arc<AtomicBool>,
}

impl ReplaySource {
    /// A source of the records of `paths`, in that order.
    pub fn new(paths: &[PathBuf], options: ReplayOptions) -> Self {
        ReplaySource {
            paths: paths.to_vec(),
            options,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Source for ReplaySource {
    type Report = ReplayReport;

    fn stop_handle(&self) -> StopHandle {
        let stop = self.stop.clone();
        Arc::new(move || stop.store(true, Ordering::Release))
    }

    fn run(self, out: &mut Output<'_>) -> ReplayReport {
        let mut report = ReplayReport::default();
        for path in &self.paths {
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            let source = Arc::new(LogSource {
                server: self.options.server.clone(),
                path: path.to_string_lossy().into(),
            });
            let bar = self.options.progress.then(|| progress_bar(path)).flatten();
            let mut pipeline_gone = false;
            let result = read_records(
                path,
                self.options.limits,
                LocalClock::new(self.options.timezone.clone()),
                |bytes| {
                    if let Some(bar) = &bar {
                        bar.set_position(bytes);
                    }
                },
                |records, read_time| {
                    out.alive();
                    let batch = Batch {
                        source: source.clone(),
                        read_time: self.options.read_time.unwrap_or(read_time),
                        records: std::mem::take(records),
                        receipt: None,
                        span: tracing::Span::none(),
                    };
                    if out.send(batch) && !self.stop.load(Ordering::Acquire) {
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
                    report.files_read += 1;
                    report.frame.lines += stats.lines;
                    report.frame.bytes += stats.bytes;
                    report.frame.lines_cut += stats.lines_cut;
                    report.frame.bytes_cut += stats.bytes_cut;
                    report.frame.lines_invalid_utf8 += stats.lines_invalid_utf8;
                }
                Err(e) => report.file_errors.push(e),
            }
            if pipeline_gone {
                break;
            }
        }
        report
    }
}

fn progress_bar(path: &Path) -> Option<indicatif::ProgressBar> {
    if super::read::is_stdin(path) {
        return None;
    }
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
