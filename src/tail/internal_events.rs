//! What happens to the files the tailer follows, each logged and counted in one place.
//!
//! Every occurrence (a directory that cannot be listed, a file opened, renamed, truncated, let
//! go, a read that failed, a line cut, data read) is one call on `TailEvents`, which writes
//! its log line, bumps the tailer's [`TailStats`] and updates the metrics together, so the
//! three cannot drift apart. Failures are counted in `errors_total{component="tailer"}` with the
//! error types of [`TailerError`].
//!
//! How it fails: it does not; logging and counting never fail.

use std::path::Path;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tracing::{info, warn};

use super::frame::FrameStats;
use super::open_files::OpenFileBudget;
use super::start::{Start, StartReason};
use super::tailer::TailStats;
use crate::telemetry::health::Component;
use crate::telemetry::metrics::{ErrorCounter, ErrorKind, PipelineMetrics, ServerLabels, Stage};

/// The tailer's errors, as counted in `errors_total{component="tailer",error_type}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailerError {
    /// A log directory could not be listed (`list_dir`).
    ListDir,
    /// A log file could not be opened (`open`).
    Open,
    /// An open log file could not be stat'ed (`stat`).
    Stat,
    /// Reading a log file failed (`read`).
    Read,
    /// A read cut one or more lines longer than `framing.max_line_bytes` (`line_cut`); counted
    /// once per warning, as logged.
    LineCut,
    /// Files could not be opened, or directories listed, for lack of descriptors: the
    /// open-file limit less the reserve, or `EMFILE`/`ENFILE` (`too_many_open_files`); counted
    /// once per episode, as logged.
    TooManyOpenFiles,
}

impl ErrorKind for TailerError {
    const ALL: &'static [Self] = &[
        TailerError::ListDir,
        TailerError::Open,
        TailerError::Stat,
        TailerError::Read,
        TailerError::LineCut,
        TailerError::TooManyOpenFiles,
    ];

    fn component(self) -> &'static str {
        "tailer"
    }

    fn error_type(self) -> &'static str {
        match self {
            TailerError::ListDir => "list_dir",
            TailerError::Open => "open",
            TailerError::Stat => "stat",
            TailerError::Read => "read",
            TailerError::LineCut => "line_cut",
            TailerError::TooManyOpenFiles => "too_many_open_files",
        }
    }
}

/// The tailer's metric handles: per server (by index) lines and bytes, and the time of reads
/// and of framing.
#[derive(Clone, Debug)]
struct TailMetrics {
    lines: Vec<Counter>,
    bytes: Vec<Counter>,
    read: Histogram,
    frame: Histogram,
    errors: ErrorCounter,
    files_open: Gauge,
}

impl TailMetrics {
    fn new<'a>(servers: impl Iterator<Item = &'a str>, m: &PipelineMetrics) -> Self {
        let (mut lines, mut bytes) = (Vec::new(), Vec::new());
        for tag in servers {
            let label = ServerLabels {
                server: tag.to_owned(),
            };
            lines.push(m.lines_read.get_or_create(&label).clone());
            bytes.push(m.bytes_read.get_or_create(&label).clone());
        }
        // Every error series shows from the first scrape, at 0.
        m.errors.register::<TailerError>();
        TailMetrics {
            lines,
            bytes,
            read: m.stage(Stage::Tail),
            frame: m.stage(Stage::Frame),
            errors: m.errors.clone(),
            files_open: m.tail_files_open.clone(),
        }
    }
}

/// What happened to the followed files: counters, metrics and log lines. See the module docs.
#[derive(Clone, Debug)]
pub(super) struct TailEvents {
    stats: TailStats,
    metrics: TailMetrics,
    /// The `tailer` health component, told whether every directory can be followed.
    health: Option<Component>,
}

impl TailEvents {
    /// Events of the servers tagged `servers` (by index), counted in `metrics`.
    pub(super) fn new<'a>(
        servers: impl Iterator<Item = &'a str>,
        metrics: &PipelineMetrics,
    ) -> Self {
        TailEvents {
            stats: TailStats::default(),
            metrics: TailMetrics::new(servers, metrics),
            health: None,
        }
    }

    /// The same counters, with the metrics now going to `metrics`.
    pub(super) fn with_metrics<'a>(
        self,
        servers: impl Iterator<Item = &'a str>,
        metrics: &PipelineMetrics,
    ) -> Self {
        TailEvents {
            metrics: TailMetrics::new(servers, metrics),
            ..self
        }
    }

    /// The same, now reporting to the health component `health`.
    pub(super) fn with_health(self, health: Component) -> Self {
        TailEvents {
            health: Some(health),
            ..self
        }
    }

    /// Counters so far.
    pub(super) fn stats(&self) -> TailStats {
        self.stats
    }

    fn error(&mut self, kind: TailerError) {
        self.stats.errors += 1;
        self.metrics.errors.record(kind);
    }

    /// A log directory cannot be listed (reported once until it is readable again).
    pub(super) fn dir_unlistable(&mut self, dir: &Path, error: &std::io::Error) {
        self.error(TailerError::ListDir);
        warn!(dir = %dir.display(), error = %error, "Cannot list the log directory; will retry.");
    }

    /// A log directory that could not be listed can be again.
    pub(super) fn dir_readable_again(&self, dir: &Path) {
        info!(dir = %dir.display(), "The log directory is readable again.");
    }

    /// After a discovery that changed which directories and files can be followed: `problems`
    /// holds why each directory that cannot be is not (`cannot list DIR: …`) and, when files
    /// wait for the open-file limit, how many; none makes the tailer ready.
    pub(super) fn dirs_followed(&self, problems: &[&str]) {
        let Some(health) = &self.health else { return };
        if problems.is_empty() {
            health.ready();
        } else {
            health.not_ready(problems.join("; "));
        }
    }

    /// A log file cannot be opened (reported once until it can).
    pub(super) fn open_failed(&mut self, path: &Path, error: &std::io::Error) {
        self.error(TailerError::Open);
        warn!(path = %path.display(), error = %error, "Cannot open log file; will retry.");
    }

    /// A discovery could not open `files` matching files or list `dirs` directories for lack
    /// of descriptors, with `open` files followed under `budget`; `reason` says so in words
    /// (reported once per episode).
    pub(super) fn out_of_open_files(
        &mut self,
        reason: &str,
        files: usize,
        dirs: usize,
        open: usize,
        budget: OpenFileBudget,
    ) {
        self.error(TailerError::TooManyOpenFiles);
        let limit = budget.limit.map_or("unknown".to_owned(), |l| l.to_string());
        warn!(
            files_not_followed = files,
            dirs_not_listed = dirs,
            files_open = open,
            open_files_limit = %limit,
            reserved_open_files = budget.reserve,
            "{reason}. The files followed are kept; the others are tried again at every \
             discovery."
        );
    }

    /// Every file can be opened and every directory listed again.
    pub(super) fn open_files_enough_again(&self) {
        info!("Every log file is followed again: the open-file limit is no longer in the way.");
    }

    /// The tailer holds `n` files open.
    pub(super) fn files_open(&self, n: usize) {
        self.metrics
            .files_open
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A log file is followed from `start`. A checkpoint past its end is a truncation.
    pub(super) fn file_opened(&mut self, path: &Path, start: Start) {
        if start.reason == StartReason::CheckpointPastEnd {
            self.stats.truncations += 1;
        }
        info!(path = %path.display(), offset = start.offset, "Following log file: {}.", start.reason);
        self.stats.files_opened += 1;
    }

    /// A followed file is found under a new name.
    pub(super) fn renamed(&mut self, from: &Path, to: &Path) {
        info!(from = %from.display(), to = %to.display(), "Log file renamed; following it.");
        self.stats.renames += 1;
    }

    /// A followed file is no longer found under a matching name.
    pub(super) fn gone(&self, path: &Path) {
        info!(path = %path.display(), "Log file deleted or rotated away; reading what is left.");
    }

    /// A followed file was let go after its rotate wait.
    pub(super) fn let_go(&mut self, path: &Path) {
        info!(path = %path.display(), "Let go of deleted or rotated log file.");
        self.stats.files_closed += 1;
    }

    /// An open log file cannot be stat'ed.
    pub(super) fn stat_failed(&mut self, path: &Path, error: &std::io::Error) {
        self.error(TailerError::Stat);
        warn!(path = %path.display(), error = %error, "Cannot stat log file.");
    }

    /// A read of a log file failed; it is tried again at the next pass.
    pub(super) fn read_failed(&mut self, path: &Path, error: &std::io::Error) {
        self.error(TailerError::Read);
        warn!(path = %path.display(), error = %error, "Reading log file failed; will retry.");
    }

    /// A followed file is shorter than what was read of it.
    pub(super) fn truncated(&mut self, path: &Path, size: u64, offset: u64) {
        warn!(path = %path.display(), size, offset, "Log file truncated; reading it from the start.");
        self.stats.truncations += 1;
    }

    /// A followed file's first line changed: truncated and rewritten between two looks.
    pub(super) fn content_replaced(&mut self, path: &Path) {
        warn!(path = %path.display(), "Log file content replaced (truncated and rewritten); reading it from the start.");
        self.stats.truncations += 1;
    }

    /// One chunk was read in `seconds`.
    pub(super) fn chunk_read(&self, seconds: f64) {
        self.metrics.read.observe(seconds);
    }

    /// One chunk was framed in `seconds`.
    pub(super) fn chunk_framed(&self, seconds: f64) {
        self.metrics.frame.observe(seconds);
    }

    /// One pass over a file of server `server` read `bytes` and framed what `framed` counts
    /// (the difference of the reader's counters over the pass).
    pub(super) fn data_read(
        &mut self,
        server: usize,
        path: &Path,
        bytes: u64,
        framed: FrameStats,
        max_line_bytes: usize,
    ) {
        self.stats.bytes += bytes;
        self.stats.lines += framed.lines;
        if bytes > 0 {
            self.metrics.bytes[server].inc_by(bytes);
            self.metrics.lines[server].inc_by(framed.lines);
        }
        self.stats.lines_invalid_utf8 += framed.lines_invalid_utf8;
        self.stats.lines_cut += framed.lines_cut;
        self.stats.bytes_cut += framed.bytes_cut;
        if framed.lines_cut > 0 {
            self.metrics.errors.record(TailerError::LineCut);
            warn!(path = %path.display(), max_line_bytes, "A line longer than the limit was cut.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_labels_are_today_s_words() {
        let labels: Vec<_> = TailerError::ALL
            .iter()
            .map(|k| (k.component(), k.error_type()))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("tailer", "list_dir"),
                ("tailer", "open"),
                ("tailer", "stat"),
                ("tailer", "read"),
                ("tailer", "line_cut"),
                ("tailer", "too_many_open_files"),
            ]
        );
    }

    #[test]
    fn each_occurrence_is_counted_once() {
        let metrics = PipelineMetrics::default();
        let mut ev = TailEvents::new(["a"].into_iter(), &metrics);
        let err = std::io::Error::other("boom");
        ev.dir_unlistable(Path::new("/d"), &err);
        ev.open_failed(Path::new("/d/x.log"), &err);
        ev.stat_failed(Path::new("/d/x.log"), &err);
        ev.read_failed(Path::new("/d/x.log"), &err);
        ev.out_of_open_files(
            "why",
            3,
            0,
            5,
            OpenFileBudget {
                limit: Some(69),
                reserve: 64,
            },
        );
        ev.truncated(Path::new("/d/x.log"), 1, 2);
        ev.content_replaced(Path::new("/d/x.log"));
        ev.file_opened(
            Path::new("/d/x.log"),
            Start {
                offset: 0,
                reason: StartReason::CheckpointPastEnd,
            },
        );
        ev.renamed(Path::new("/d/x.log"), Path::new("/d/y.log"));
        ev.let_go(Path::new("/d/y.log"));
        ev.data_read(
            0,
            Path::new("/d/y.log"),
            10,
            FrameStats {
                lines: 2,
                bytes: 10,
                lines_cut: 1,
                bytes_cut: 3,
                lines_invalid_utf8: 1,
            },
            4,
        );
        let s = ev.stats();
        assert_eq!(
            s,
            TailStats {
                files_opened: 1,
                files_closed: 1,
                renames: 1,
                truncations: 3,
                bytes: 10,
                lines: 2,
                lines_cut: 1,
                bytes_cut: 3,
                lines_invalid_utf8: 1,
                errors: 5,
            }
        );
    }
}
