//! The tailer: follows every matching file of each server's log directory.
//!
//! [`Tailer::poll`] does one pass: discovery when it is due, then for every open file a read of
//! what is new (at most `max_read_bytes_per_file`, so one busy file cannot starve the others),
//! framed into records and handed out as one [`TailBatch`] per chunk read, each as soon as it
//! is made: a caller that blocks on a batch stops the tailer reading. It never sleeps and never
//! spawns: the driver loop (`tail::follow`) decides when to poll, and tests step it directly.
//!
//! Each file is read through a [`FileReader`] (the per-file reader `replay` uses too); a binary
//! file is followed like any other. What happens to files is logged and counted in
//! [`super::internal_events`].
//!
//! What it does about each file hazard:
//!
//! - **Discovery**: every `discovery_interval` (and whenever the watcher asks) the directories
//!   are listed and matched against the server's globs. A file is identified by device and inode
//!   while it is open, and by its fingerprint (first line) across restarts.
//! - **Where a file starts**: see [`super::start`]. With a checkpoint, at the checkpoint's
//!   offset (0 if the file is now shorter: truncated while factorio-isr was stopped). The
//!   checkpoints looked in are those loaded at start plus where each file let go since stood
//!   (the last checkpoint handed out for it, which the pipeline delivers before anything read
//!   later), so a file that comes back resumes where it was, as after a restart. Without one:
//!   files found after the first scan start at 0 (they are new), and so do files present at the
//!   first scan when a checkpoint file exists (factorio-isr ran before and never followed them);
//!   at the very first run they start at their end (at the start of the last complete line),
//!   unless `start_at = Beginning`.
//! - **Recording**: every file is recorded as soon as it is opened at its end or at a
//!   checkpoint (a batch without records carrying its checkpoint), or else with its first
//!   records (a file starting at 0 has a complete first line to read, or no fingerprint yet),
//!   and again at least daily while it is idle, so the checkpoints know every file followed and
//!   do not forget an idle one.
//! - **Rename rotation** (`factorio-current.log` → `factorio-previous.log`): the open file keeps
//!   its offset under its new name and is read to its end, writes to the old handle included; the
//!   new file is new and starts at 0. Within a pass older files are read first.
//! - **Truncation** (copytruncate, `> file`): a size below the read offset, or a first line that
//!   changed (truncated and rewritten past the old offset between two looks; checked before
//!   every read of new data and at every discovery), restarts the file at 0 and is counted.
//!   Lines written between the copy and the truncation are lost to any tailer; they are in the
//!   copy.
//! - **Deletion**, or a rename to a name the globs do not match: the open file is read to its end
//!   and let go once it has had no new data for `rotate_wait`; a partial last line is then
//!   emitted as it is. Its last checkpoint is marked let go and kept a day
//!   ([`super::checkpoint::LET_GO_KEEP_MS`]).
//! - **Directory removed** (or unlistable, or empty, for longer than `rotate_wait`: renamed away,
//!   a remount, too many open files): its files are treated as deleted. When it comes back, a
//!   file with the same fingerprint, device and inode resumes where it was let go; other files
//!   are new files.
//! - A multi-line error record held open is emitted after `record_flush` of quiet.
//!
//! How it fails: an unreadable directory or file is logged once and retried at the next
//! discovery; a directory that cannot be listed also makes the `tailer` health component not
//! ready, naming it and why, until a discovery lists it again ([`Tailer::with_health`]); a read
//! error leaves the file where it was. Nothing here panics on file content.
//!
//! **Open files**: each followed file holds a descriptor. The tailer holds at most
//! [`OpenFileBudget::max_files`] (the open-file limit less a reserve for sockets and checkpoint
//! saves). When that many are open, or opening or listing fails with `EMFILE`/`ENFILE`, every
//! file already followed is kept (a directory that could not be listed for lack of descriptors
//! is not "gone": its files are not let go), the files not opened are tried again at every
//! discovery (a file present at the first scan then starts as it would have then), and the
//! shortage is logged and counted once per episode and shown in the health component until a
//! discovery follows everything.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use globset::{Glob, GlobSet, GlobSetBuilder};
use jiff::tz::TimeZone;

use super::checkpoint::{CheckpointStore, FileCheckpoint};
use super::config::TailConfig;
use super::file::{BinaryFiles, FileReader};
use super::fingerprint::{self, FileKey, Fingerprint};
use super::frame::{FramingLimits, Record};
use super::internal_events::TailEvents;
use super::open_files::{self, OpenFileBudget};
use super::start::{self, StartInputs};
use super::zone::LocalClock;
use crate::event::{LogSource, Timestamp};
use crate::telemetry::health::Component;
use crate::telemetry::metrics::PipelineMetrics;

/// How often the checkpoint of an idle file is handed out again: daily, well within
/// [`super::checkpoint::EXPIRE_AFTER_MS`].
const RECORD_IDLE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The root span of a batch's trace: the read of one chunk of `path`.
fn batch_span(server: &str, path: &Path) -> tracing::Span {
    crate::traced_span!(parent: None, "batch", server = %server, file = %path.display())
}

/// Why the directory `dir` cannot be followed, in the words `/ready` shows: `DIR is not a
/// directory`, or `cannot list DIR: No such file or directory` (the OS's words, without the
/// error number).
fn unlistable_reason(dir: &Path, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotADirectory {
        return format!("{} is not a directory", dir.display());
    }
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if text.ends_with(')') => &text[..i],
        _ => &text,
    };
    format!("cannot list {}: {text}", dir.display())
}

/// Default globs of a server's log directory.
pub fn default_globs() -> Vec<String> {
    [
        "factorio-current.log",
        "factorio-previous.log",
        "console.log",
        "*.log",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// One server's log directory.
#[derive(Clone, Debug)]
pub struct ServerSource {
    /// The `server` tag of its events.
    pub tag: Arc<str>,
    /// The directory.
    pub dir: PathBuf,
    globs: GlobSet,
    /// The zone of the dates in its logs (resolved once), UTC unless set with
    /// [`ServerSource::with_timezone`].
    pub timezone: TimeZone,
}

impl ServerSource {
    /// A server whose files are the entries of `dir` whose names match one of `globs`.
    pub fn new(tag: &str, dir: PathBuf, globs: &[String]) -> Result<Self, globset::Error> {
        let mut set = GlobSetBuilder::new();
        for g in globs {
            set.add(Glob::new(g)?);
        }
        Ok(ServerSource {
            tag: tag.into(),
            dir,
            globs: set.build()?,
            timezone: TimeZone::UTC,
        })
    }

    /// Reads the dates of this server's logs in `timezone`.
    pub fn with_timezone(mut self, timezone: TimeZone) -> Self {
        self.timezone = timezone;
        self
    }

    fn matches(&self, file_name: &std::ffi::OsStr) -> bool {
        self.globs.is_match(Path::new(file_name))
    }
}

/// Where files present at the first scan start when they have no checkpoint, at the first run
/// (at a later run such a file is new and starts at 0 either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// At their end: only what is written from now on (the default).
    End,
    /// At their start (`--from-beginning`).
    Beginning,
}

/// How the tailer behaves. Built from the config by [`TailConfig::options`].
#[derive(Clone, Debug)]
pub struct TailOptions {
    /// Line and record limits.
    pub limits: FramingLimits,
    /// Size of one read.
    pub read_chunk_bytes: usize,
    /// Most bytes read from one file in one pass.
    pub max_read_bytes_per_file: usize,
    /// How often directories are listed again.
    pub discovery_interval: Duration,
    /// How long a deleted or renamed-away file is kept open after its last new data.
    pub rotate_wait: Duration,
    /// A held multi-line error record is emitted after this much quiet.
    pub record_flush: Duration,
    /// Where files without a checkpoint start at the first scan of the first run.
    pub start_at: StartAt,
    /// How many files may be open at once.
    pub open_files: OpenFileBudget,
}

impl Default for TailOptions {
    /// The defaults of [`TailConfig`] and [`FramingLimits`], starting at the end.
    fn default() -> Self {
        TailConfig::default().options(FramingLimits::default(), StartAt::End)
    }
}

/// Records read from one file in one pass, and where that file stands after them.
#[derive(Debug)]
pub struct TailBatch {
    /// Server tag and path.
    pub source: Arc<LogSource>,
    /// Complete records, in file order (may be empty when only the checkpoint moved).
    pub records: Vec<Record>,
    /// When the bytes were read.
    pub read_time: Timestamp,
    /// Where the file stands once these records are delivered; `None` while the file has no
    /// fingerprint (its first line is incomplete).
    pub checkpoint: Option<FileCheckpoint>,
    /// The batch's root span (`batch`); later stages add their spans under it.
    pub span: tracing::Span,
}

/// Counters of what the tailer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailStats {
    /// Files opened.
    pub files_opened: u64,
    /// Files let go after deletion or rotation.
    pub files_closed: u64,
    /// Files found under a new name.
    pub renames: u64,
    /// Truncations detected (size below offset, or content replaced).
    pub truncations: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Lines framed.
    pub lines: u64,
    /// Lines cut at `max_line_bytes`.
    pub lines_cut: u64,
    /// Bytes dropped from cut lines.
    pub bytes_cut: u64,
    /// Lines that held invalid UTF-8 (replaced by U+FFFD).
    pub lines_invalid_utf8: u64,
    /// Failed opens, reads and directory listings.
    pub errors: u64,
}

/// What a discovery could not do for lack of descriptors (the open-file budget used up, or
/// `EMFILE`/`ENFILE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Shortage {
    /// Matching files not opened.
    files: usize,
    /// Directories not listed.
    dirs: usize,
}

impl Shortage {
    fn any(self) -> bool {
        self != Shortage::default()
    }

    /// Why the tailer is not ready, in the words `/ready` shows; `open` files are followed.
    fn reason(self, open: usize, budget: OpenFileBudget) -> String {
        let mut what = Vec::new();
        if self.files > 0 {
            let s = if self.files == 1 { "" } else { "s" };
            what.push(format!("follow {} more log file{s}", self.files));
        }
        if self.dirs > 0 {
            let ies = if self.dirs == 1 { "y" } else { "ies" };
            what.push(format!("list {} log director{ies}", self.dirs));
        }
        let limit = budget.limit.map_or(String::new(), |l| format!(" ({l})"));
        format!(
            "cannot {}: the open-file limit{limit} is reached ({open} log files open, {} kept for \
             sockets and checkpoints); raise the hard limit (systemd LimitNOFILE=, ulimit -Hn)",
            what.join(" or "),
            budget.reserve
        )
    }
}

/// A file being followed.
struct TailedFile {
    key: FileKey,
    server: usize,
    path: PathBuf,
    source: Arc<LogSource>,
    file: File,
    fingerprint: Option<Fingerprint>,
    reader: FileReader,
    last_data: Instant,
    /// When its checkpoint was last handed out without new data (at open, or idle for
    /// [`RECORD_IDLE_EVERY`]).
    recorded: Instant,
    /// Modification time at the last look: a file rewritten to exactly the size already read
    /// shows only in its modification time.
    last_mtime: Option<SystemTime>,
    /// Since when the file is no longer found under any matching name.
    gone_since: Option<Instant>,
}

impl TailedFile {
    fn checkpoint(&self) -> Option<FileCheckpoint> {
        Some(FileCheckpoint {
            server: self.source.server.to_string(),
            path: self.path.clone(),
            fingerprint: self.fingerprint?,
            key: self.key,
            offset: self.reader.safe_offset(),
            run_start_ms: self.reader.run_start_ms(),
            updated_ms: Timestamp::now().as_millis(),
            let_go_ms: None,
        })
    }

    /// A batch of `records` read now, with the checkpoint the file moves to.
    fn batch(&self, records: Vec<Record>, span: tracing::Span) -> TailBatch {
        TailBatch {
            source: self.source.clone(),
            records,
            read_time: Timestamp::now(),
            checkpoint: self.checkpoint(),
            span,
        }
    }

    /// The root span of a new batch of this file.
    fn batch_span(&self) -> tracing::Span {
        batch_span(&self.source.server, &self.path)
    }

    /// Takes the fingerprint once the first line is complete.
    fn ensure_fingerprint(&mut self) {
        if self.fingerprint.is_none() {
            self.fingerprint = fingerprint::fingerprint(&self.file).ok().flatten();
        }
    }

    /// Whether the first line is no longer the one fingerprinted: the file was truncated and
    /// rewritten, perhaps past the old offset, which the size alone would not show.
    fn content_replaced(&self) -> bool {
        self.fingerprint.is_some_and(|old| {
            fingerprint::fingerprint(&self.file).is_ok_and(|now| now != Some(old))
        })
    }

    fn restart_at_zero(&mut self) {
        self.reader.restart_at_zero();
        self.fingerprint = None;
    }

    /// Follows the file under its new name `path`.
    fn rename(&mut self, path: PathBuf) {
        self.path = path;
        self.source = Arc::new(LogSource {
            server: self.source.server.clone(),
            path: self.path.to_string_lossy().into(),
        });
    }
}

/// Follows the files of several servers. See the module docs.
pub struct Tailer {
    servers: Vec<ServerSource>,
    opts: TailOptions,
    files: Vec<TailedFile>,
    /// Where files seen before resume: the checkpoints as they were at start, updated with where
    /// each file let go since stands.
    resume: CheckpointStore,
    /// Per server (same order as `servers`): whether the checkpoints at start did not name it,
    /// so that this is the first run that follows it.
    first_run: Vec<bool>,
    scanned_once: bool,
    next_discovery: Option<Instant>,
    /// The servers whose directory cannot be listed, with why (`cannot list DIR: …`).
    missing_dirs: BTreeMap<usize, String>,
    /// Whether `missing_dirs` changed since the health component was last told.
    dirs_changed: bool,
    unreadable: HashSet<PathBuf>,
    /// What the discovery under way could not do for lack of descriptors.
    shortage: Shortage,
    /// The shortage the log and the health component were last told of.
    reported_shortage: Shortage,
    /// The servers whose directory the discovery under way could not list for lack of
    /// descriptors: their files are kept, not marked gone.
    unlisted: HashSet<usize>,
    /// Files present at the first scan that could not be opened then: when they can be, they
    /// start as they would have at the first scan.
    deferred_at_start: HashSet<FileKey>,
    buf: Vec<u8>,
    events: TailEvents,
    /// A listing error to fake (an OS error number), for tests.
    #[cfg(test)]
    fail_listing: Option<i32>,
    /// An error opening files to fake (an OS error number), for tests.
    #[cfg(test)]
    fail_opening: Option<i32>,
}

impl Tailer {
    /// A tailer for `servers`, resuming from the checkpoints in `store`.
    pub fn new(servers: Vec<ServerSource>, opts: TailOptions, store: &CheckpointStore) -> Self {
        let events = TailEvents::new(servers.iter().map(|s| &*s.tag), &PipelineMetrics::default());
        let first_run = servers
            .iter()
            .map(|s| !store.knows_server(&s.tag))
            .collect();
        Tailer {
            buf: vec![0; opts.read_chunk_bytes.max(4096)],
            servers,
            opts,
            files: Vec::new(),
            first_run,
            resume: store.clone(),
            scanned_once: false,
            next_discovery: None,
            missing_dirs: BTreeMap::new(),
            dirs_changed: true,
            unreadable: HashSet::new(),
            shortage: Shortage::default(),
            reported_shortage: Shortage::default(),
            unlisted: HashSet::new(),
            deferred_at_start: HashSet::new(),
            events,
            #[cfg(test)]
            fail_listing: None,
            #[cfg(test)]
            fail_opening: None,
        }
    }

    /// Updates `metrics` (lines and bytes read per server, read and frame times, errors).
    pub fn with_metrics(mut self, metrics: &PipelineMetrics) -> Self {
        let tags = self.servers.iter().map(|s| &*s.tag);
        self.events = self.events.with_metrics(tags, metrics);
        self
    }

    /// Reports to `health` whether every directory and file can be followed: ready after a
    /// discovery that listed them all and opened every matching file, not ready with each path
    /// and reason (or the open-file limit) otherwise.
    pub fn with_health(mut self, health: Component) -> Self {
        self.events = self.events.with_health(health);
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> TailStats {
        self.events.stats()
    }

    /// The servers' directories.
    pub fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.servers.iter().map(|s| s.dir.as_path())
    }

    /// Paths of the files open now.
    pub fn open_files(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path.clone()).collect()
    }

    /// Makes the next poll list the directories again (the watcher saw files come or go).
    pub fn request_discovery(&mut self) {
        self.next_discovery = None;
    }

    /// One pass; hands `emit` a batch per chunk read (and per file with a record to flush) as
    /// soon as it is made, so a blocking `emit` is backpressure. Returns the bytes read.
    pub fn poll(&mut self, now: Instant, emit: &mut dyn FnMut(TailBatch)) -> u64 {
        if self.next_discovery.is_none_or(|t| now >= t) {
            self.discover(now, emit);
            self.next_discovery = Some(now + self.opts.discovery_interval);
        }
        let mut total = 0;
        let mut closed = Vec::new();
        for i in 0..self.files.len() {
            let n = self.read_file(i, now, emit);
            total += n;
            if n == 0 && self.done_with(&self.files[i], now) {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            self.close(i, emit);
        }
        self.events.files_open(self.files.len());
        self.record_idle(now, emit);
        total
    }

    /// Hands out again the checkpoint of each file without new data for [`RECORD_IDLE_EVERY`],
    /// so its entry is fresh and not forgotten (an idle `factorio-previous.log` may stay
    /// unchanged for months).
    fn record_idle(&mut self, now: Instant, emit: &mut dyn FnMut(TailBatch)) {
        for f in &mut self.files {
            let since = f.recorded.max(f.last_data);
            if f.fingerprint.is_some() && now.saturating_duration_since(since) >= RECORD_IDLE_EVERY
            {
                f.recorded = now;
                emit(f.batch(Vec::new(), tracing::Span::none()));
            }
        }
    }

    /// Whether a file gone from its directory has been quiet for the rotate wait.
    fn done_with(&self, f: &TailedFile, now: Instant) -> bool {
        f.gone_since.is_some_and(|gone| {
            now.saturating_duration_since(gone.max(f.last_data)) >= self.opts.rotate_wait
        })
    }

    /// Lists the directories, opens new files, follows renames, notices deletions and content
    /// replacement.
    fn discover(&mut self, now: Instant, emit: &mut dyn FnMut(TailBatch)) {
        let first_scan = !self.scanned_once;
        let mut seen: HashSet<FileKey> = HashSet::new();
        self.shortage = Shortage::default();
        self.unlisted.clear();
        for si in 0..self.servers.len() {
            let Some(paths) = self.list_dir(si) else {
                continue;
            };
            for path in paths {
                self.discover_path(si, path, first_scan, &mut seen, now, emit);
            }
        }
        self.mark_gone(&seen, now);
        self.restart_replaced();
        self.scanned_once = true;
        let shortage_changed = self.report_shortage();
        if std::mem::take(&mut self.dirs_changed) || shortage_changed {
            let shortage = self
                .shortage
                .any()
                .then(|| self.shortage.reason(self.files.len(), self.opts.open_files));
            let problems: Vec<&str> = self
                .missing_dirs
                .values()
                .chain(&shortage)
                .map(String::as_str)
                .collect();
            self.events.dirs_followed(&problems);
        }
    }

    /// Logs and counts a lack of descriptors once per episode (when this discovery met one and
    /// the last did not) and its end. Returns whether it differs from what was last reported.
    fn report_shortage(&mut self) -> bool {
        let (now, before) = (self.shortage, self.reported_shortage);
        if now.any() && !before.any() {
            let (open, budget) = (self.files.len(), self.opts.open_files);
            let mut reason = now.reason(open, budget);
            reason[..1].make_ascii_uppercase();
            self.events
                .out_of_open_files(&reason, now.files, now.dirs, open, budget);
        } else if !now.any() && before.any() {
            self.events.open_files_enough_again();
        }
        self.reported_shortage = now;
        now != before
    }

    /// The sorted paths of server `si`'s directory that its globs match; `None` when it cannot
    /// be listed (reported once until it can again).
    fn list_dir(&mut self, si: usize) -> Option<Vec<PathBuf>> {
        let server = &self.servers[si];
        let entries = match self.read_dir(&server.dir) {
            Ok(e) => e,
            // Not "gone": nothing is known of its files, so every one is kept as it is.
            Err(e) if open_files::is_out_of_descriptors(&e) => {
                self.shortage.dirs += 1;
                self.unlisted.insert(si);
                return None;
            }
            Err(e) => {
                let reason = unlistable_reason(&server.dir, &e);
                if self.missing_dirs.get(&si) != Some(&reason) {
                    self.events.dir_unlistable(&server.dir, &e);
                    self.missing_dirs.insert(si, reason);
                    self.dirs_changed = true;
                }
                return None;
            }
        };
        if self.missing_dirs.remove(&si).is_some() {
            self.events.dir_readable_again(&server.dir);
            self.dirs_changed = true;
        }
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| server.matches(&e.file_name()))
            .map(|e| e.path())
            .collect();
        paths.sort();
        Some(paths)
    }

    fn read_dir(&self, dir: &Path) -> std::io::Result<fs::ReadDir> {
        #[cfg(test)]
        if let Some(code) = self.fail_listing {
            return Err(std::io::Error::from_raw_os_error(code));
        }
        fs::read_dir(dir)
    }

    fn open_log(&self, path: &Path) -> std::io::Result<File> {
        #[cfg(test)]
        if let Some(code) = self.fail_opening {
            return Err(std::io::Error::from_raw_os_error(code));
        }
        File::open(path)
    }

    /// One matching path: a file already followed (perhaps under another name), or a new one.
    fn discover_path(
        &mut self,
        si: usize,
        path: PathBuf,
        first_scan: bool,
        seen: &mut HashSet<FileKey>,
        now: Instant,
        emit: &mut dyn FnMut(TailBatch),
    ) {
        let Ok(meta) = fs::metadata(&path) else {
            return;
        };
        if !meta.is_file() {
            return;
        }
        let key = FileKey::of(&meta);
        if !seen.insert(key) {
            return; // a second name (hard link) of a file already handled
        }
        let Some(f) = self.files.iter_mut().find(|f| f.key == key) else {
            // A file that could not be opened at the first scan starts as it would have then.
            let as_first_scan = first_scan || self.deferred_at_start.contains(&key);
            let short = self.shortage.files;
            self.open(si, path, as_first_scan, now, emit);
            if self.shortage.files == short {
                self.deferred_at_start.remove(&key);
            } else if first_scan {
                self.deferred_at_start.insert(key);
            }
            return;
        };
        if f.path != path {
            self.events.renamed(&f.path, &path);
            f.rename(path);
        }
        f.gone_since = None;
    }

    /// Notes when open files that were not `seen` went missing; the files of a directory that
    /// could not be listed for lack of descriptors were not looked for, and are kept.
    fn mark_gone(&mut self, seen: &HashSet<FileKey>, now: Instant) {
        for f in &mut self.files {
            if self.unlisted.contains(&f.server) {
                continue;
            }
            if !seen.contains(&f.key) && f.gone_since.is_none() {
                self.events.gone(&f.path);
                f.gone_since = Some(now);
            }
        }
    }

    /// Restarts at 0 the files still in place whose first line changed.
    fn restart_replaced(&mut self) {
        for f in &mut self.files {
            if f.gone_since.is_none() && f.content_replaced() {
                self.events.content_replaced(&f.path);
                f.restart_at_zero();
            }
        }
    }

    /// Opens `path`, decides where it starts, and follows it.
    fn open(
        &mut self,
        si: usize,
        path: PathBuf,
        first_scan: bool,
        now: Instant,
        emit: &mut dyn FnMut(TailBatch),
    ) {
        let Some((file, meta, first_line)) = self.open_file(&path) else {
            return;
        };
        let key = FileKey::of(&meta);
        let fp = first_line.as_deref().map(fingerprint::of_line);
        let tag = self.servers[si].tag.clone();
        let checkpoint = fp.and_then(|fp| self.find_checkpoint(&tag, fp, key));
        let len = meta.len();
        let start = start::start_offset(
            StartInputs {
                checkpoint_offset: checkpoint.as_ref().map(|cp| cp.offset),
                len_bytes: len,
                first_scan,
                start_at: self.opts.start_at,
                first_run: self.first_run[si],
            },
            || last_line_start(&file, len),
        );
        self.events.file_opened(&path, start);
        let mut reader = FileReader::new(self.opts.limits, start.offset, BinaryFiles::Read)
            .with_clock(LocalClock::new(self.servers[si].timezone.clone()));
        let header_ms = first_line
            .as_deref()
            .and_then(|line| reader.run_header_ms(line));
        reader.set_run_start_ms(
            checkpoint
                .as_ref()
                .and_then(|cp| cp.run_start_ms)
                .or(header_ms),
        );
        let f = TailedFile {
            key,
            server: si,
            source: Arc::new(LogSource {
                server: tag,
                path: path.to_string_lossy().into(),
            }),
            path,
            file,
            fingerprint: fp,
            reader,
            last_data: now,
            recorded: now,
            last_mtime: None,
            gone_since: None,
        };
        // Record where the file stands when that is not 0 (at its end, or where it resumes: the
        // entry is fresh again and no longer let go), so the checkpoints know every file
        // followed. A file starting at 0 is recorded with its first records, read next.
        if f.fingerprint.is_some() && (start.offset > 0 || checkpoint.is_some()) {
            emit(f.batch(Vec::new(), tracing::Span::none()));
        }
        self.files.push(f);
    }

    /// The open file, its metadata and its first line; `None` when it cannot be opened
    /// (reported once until it can), or not for lack of descriptors (the budget is used up or
    /// the system says so: counted in the shortage, reported once per episode).
    fn open_file(&mut self, path: &Path) -> Option<(File, fs::Metadata, Option<Vec<u8>>)> {
        if self.files.len() >= self.opts.open_files.max_files() {
            self.shortage.files += 1;
            return None;
        }
        let opened = self.open_log(path).and_then(|file| {
            let meta = file.metadata()?;
            let first = fingerprint::first_line(&file)?;
            Ok((file, meta, first))
        });
        match opened {
            Ok(x) => {
                self.unreadable.remove(path);
                Some(x)
            }
            Err(e) if open_files::is_out_of_descriptors(&e) => {
                self.shortage.files += 1;
                None
            }
            Err(e) => {
                if self.unreadable.insert(path.to_owned()) {
                    self.events.open_failed(path, &e);
                }
                None
            }
        }
    }

    /// The checkpoint of a file of server `tag`, not taken by a file open now.
    fn find_checkpoint(&self, tag: &str, fp: Fingerprint, key: FileKey) -> Option<FileCheckpoint> {
        let open_keys: HashSet<FileKey> = self.files.iter().map(|f| f.key).collect();
        self.resume
            .find(tag, fp, key, |k| open_keys.contains(&k))
            .cloned()
    }

    /// Reads what is new in file `i`. Returns the bytes read.
    fn read_file(&mut self, i: usize, now: Instant, emit: &mut dyn FnMut(TailBatch)) -> u64 {
        let Tailer {
            files,
            opts,
            buf,
            events,
            ..
        } = self;
        let f = &mut files[i];
        let Some((len, mtime)) = stat(f, events) else {
            return 0;
        };
        check_truncation(f, len, mtime, events);
        f.last_mtime = mtime;
        let before = f.reader.stats();
        let (total, mut batch) =
            read_chunks(f, len, opts.max_read_bytes_per_file, buf, events, emit);
        let mut records = Vec::new();
        if total > 0 {
            f.last_data = now;
            f.ensure_fingerprint();
        } else {
            flush_if_quiet(f, now, opts.record_flush, &mut records);
        }
        let framed = f.reader.stats().since(before);
        events.data_read(f.server, &f.path, total, framed, opts.limits.max_line_bytes);
        if !records.is_empty() {
            if batch.is_none() {
                batch = f.batch_span();
            }
            emit(f.batch(records, batch));
        }
        total
    }

    /// Lets go of a deleted file, emitting its partial last line and held record.
    fn close(&mut self, i: usize, emit: &mut dyn FnMut(TailBatch)) {
        let mut f = self.files.remove(i);
        let mut records = Vec::new();
        f.reader.finish(&mut records);
        self.events.let_go(&f.path);
        let span = if records.is_empty() {
            tracing::Span::none()
        } else {
            f.batch_span()
        };
        let mut batch = f.batch(records, span);
        // Where it stands once this batch is delivered (the pipeline delivers in order, so
        // before anything read later): where it resumes if it comes back.
        if let Some(cp) = &mut batch.checkpoint {
            cp.let_go_ms = Some(cp.updated_ms);
            self.resume.expire(Timestamp(cp.updated_ms));
            self.resume.update(cp.clone());
        }
        emit(batch);
    }
}

/// Hands out a held error record of `f` once the file has been quiet for `record_flush`.
fn flush_if_quiet(
    f: &mut TailedFile,
    now: Instant,
    record_flush: Duration,
    records: &mut Vec<Record>,
) {
    if f.reader.is_holding() && now.saturating_duration_since(f.last_data) >= record_flush {
        f.reader.flush_held(records);
    }
}

/// The length and modification time of an open file; `None` when it cannot be stat'ed.
fn stat(f: &TailedFile, events: &mut TailEvents) -> Option<(u64, Option<SystemTime>)> {
    match f.file.metadata() {
        Ok(m) => Some((m.len(), m.modified().ok())),
        Err(e) => {
            events.stat_failed(&f.path, &e);
            None
        }
    }
}

/// Restarts `f` at 0 when it was truncated: it is shorter than what was read, or its first line
/// changed. Checked before reading, so nothing of new content is read from the old offset; the
/// first line is looked at only when there is new data or the file was modified at the same
/// size, so idle files cost no reads.
fn check_truncation(
    f: &mut TailedFile,
    len: u64,
    mtime: Option<SystemTime>,
    events: &mut TailEvents,
) {
    let offset = f.reader.offset();
    if len < offset {
        events.truncated(&f.path, len, offset);
        f.restart_at_zero();
    } else if (len > offset || (len > 0 && mtime != f.last_mtime)) && f.content_replaced() {
        events.content_replaced(&f.path);
        f.restart_at_zero();
    }
}

/// Reads and frames chunks of `f` until its end or `budget` bytes, emitting one batch per chunk
/// that completed records. Returns the bytes read and the span of a batch begun but not
/// emitted.
fn read_chunks(
    f: &mut TailedFile,
    len: u64,
    budget: usize,
    buf: &mut [u8],
    events: &mut TailEvents,
    emit: &mut dyn FnMut(TailBatch),
) -> (u64, tracing::Span) {
    let mut total: u64 = 0;
    let mut records = Vec::new();
    let mut batch = tracing::Span::none();
    while total < budget as u64 {
        // A batch's trace starts with the read of its chunk (only for data known to be there:
        // an idle file's empty reads make no spans).
        if batch.is_none() && f.reader.offset() < len {
            batch = f.batch_span();
        }
        let Some(n) = read_chunk(f, buf, &batch, events) else {
            break;
        };
        if batch.is_none() {
            batch = f.batch_span();
        }
        total += n as u64;
        frame_chunk(f, &buf[..n], &batch, events, &mut records);
        // One batch per chunk read: batches stay small, so the few in flight between the
        // stages bound memory whatever the backlog.
        if !records.is_empty() {
            f.ensure_fingerprint();
            let span = std::mem::replace(&mut batch, tracing::Span::none());
            emit(f.batch(std::mem::take(&mut records), span));
        }
    }
    (total, batch)
}

/// Reads the next chunk of `f` into `buf`, timed and traced under `batch`; `None` at the end
/// or on an error (reported).
fn read_chunk(
    f: &mut TailedFile,
    buf: &mut [u8],
    batch: &tracing::Span,
    events: &mut TailEvents,
) -> Option<usize> {
    let read_span = if batch.is_none() {
        tracing::Span::none()
    } else {
        crate::traced_span!(parent: batch, "tail.read")
    };
    let started = Instant::now();
    let read = read_span.in_scope(|| f.reader.read(&mut f.file, buf));
    drop(read_span);
    match read {
        Ok(0) => None,
        Ok(n) => {
            events.chunk_read(started.elapsed().as_secs_f64());
            Some(n)
        }
        Err(e) => {
            events.read_failed(&f.path, &e);
            None
        }
    }
}

/// Frames `chunk`, the bytes just read from `f`, into `records`, timed and traced under
/// `batch`.
fn frame_chunk(
    f: &mut TailedFile,
    chunk: &[u8],
    batch: &tracing::Span,
    events: &TailEvents,
    records: &mut Vec<Record>,
) {
    let started = Instant::now();
    crate::traced_span!(parent: batch, "frame", bytes = chunk.len()).in_scope(|| {
        // The tailer reads binary files too (`BinaryFiles::Read`): nothing is refused.
        let _ = f.reader.push(chunk, records);
    });
    events.chunk_framed(started.elapsed().as_secs_f64());
}

/// Start of the last complete line of a file of length `len`: its end when it ends with a
/// newline, else just after the last newline (within the last 64 KiB), else `len`.
fn last_line_start(file: &File, len: u64) -> u64 {
    const LOOK_BACK: u64 = 64 * 1024;
    if len == 0 {
        return 0;
    }
    let from = len.saturating_sub(LOOK_BACK);
    let mut tail = vec![0u8; (len - from) as usize];
    if file.read_exact_at(&mut tail, from).is_err() {
        return len;
    }
    match memchr::memrchr(b'\n', &tail) {
        Some(nl) => from + nl as u64 + 1,
        None if from == 0 => 0,
        None => len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    struct Setup {
        _root: tempfile::TempDir,
        dir: PathBuf,
        state: PathBuf,
    }

    fn setup() -> Setup {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("logs");
        let state = root.path().join("state");
        fs::create_dir_all(&dir).unwrap();
        Setup {
            dir,
            state,
            _root: root,
        }
    }

    /// The tests' options: discovery at every poll, a 5 s rotate wait, a 1 s record flush.
    fn test_opts(start_at: StartAt) -> TailOptions {
        TailOptions {
            discovery_interval: Duration::ZERO,
            rotate_wait: Duration::from_secs(5),
            record_flush: Duration::from_secs(1),
            start_at,
            ..TailOptions::default()
        }
    }

    /// A tailer of the server `t` in `s.dir`, on the checkpoints in `s.state`.
    fn tailer_of(s: &Setup, opts: TailOptions) -> Tailer {
        let (store, _) = CheckpointStore::open(&s.state).unwrap();
        let server = ServerSource::new("t", s.dir.clone(), &default_globs()).unwrap();
        Tailer::new(vec![server], opts, &store)
    }

    fn tailer(s: &Setup, start_at: StartAt) -> Tailer {
        tailer_of(s, test_opts(start_at))
    }

    fn texts(batches: &[TailBatch]) -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| b.records.iter().map(|r| r.text.clone()))
            .collect()
    }

    fn append(path: &Path, data: &[u8]) {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(data).unwrap();
    }

    #[test]
    fn files_present_at_start_begin_at_their_last_complete_line() {
        let s = setup();
        let log = s.dir.join("console.log");
        append(&log, b"old 1\nold 2\npart");
        let mut t = tailer(&s, StartAt::End);
        let mut out = Vec::new();
        let now = Instant::now();
        t.poll(now, &mut |b| out.push(b));
        // Nothing old is read; the start is recorded as a checkpoint right away.
        assert!(texts(&out).is_empty());
        assert_eq!(out[0].checkpoint.as_ref().unwrap().offset, 12);
        append(&log, b"ial\nnew\n");
        out.clear();
        t.poll(now, &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["partial", "new"]);
    }

    #[test]
    fn from_beginning_reads_everything() {
        let s = setup();
        append(&s.dir.join("console.log"), b"a\nb\n");
        let mut t = tailer(&s, StartAt::Beginning);
        let mut out = Vec::new();
        t.poll(Instant::now(), &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["a", "b"]);
    }

    #[test]
    fn non_matching_names_and_directories_are_ignored() {
        let s = setup();
        append(&s.dir.join("notes.txt"), b"x\n");
        fs::create_dir(s.dir.join("sub.log")).unwrap();
        let mut t = tailer(&s, StartAt::Beginning);
        let mut out = Vec::new();
        t.poll(Instant::now(), &mut |b| out.push(b));
        assert!(out.is_empty());
        assert!(t.open_files().is_empty());
    }

    #[test]
    fn a_checkpoint_past_the_end_restarts_at_zero() {
        let s = setup();
        let log = s.dir.join("console.log");
        append(&log, b"first line\nsecond line\n");
        {
            let mut t = tailer(&s, StartAt::Beginning);
            let mut out = Vec::new();
            t.poll(Instant::now(), &mut |b| out.push(b));
            let (mut store, _) = CheckpointStore::open(&s.state).unwrap();
            store.update(out.pop().unwrap().checkpoint.unwrap());
            store.save(Timestamp::now()).unwrap();
        }
        // Truncated while stopped, rewritten shorter with the same first line.
        fs::write(&log, b"first line\n").unwrap();
        let mut t = tailer(&s, StartAt::End);
        let mut out = Vec::new();
        t.poll(Instant::now(), &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["first line"]);
        assert_eq!(t.stats().truncations, 1);
    }

    /// Delivers `batches` to the store in `s.state` and saves it at `at`.
    fn deliver(s: &Setup, batches: &[TailBatch], at: Timestamp) {
        let (mut store, _) = CheckpointStore::open(&s.state).unwrap();
        // As `TailSource::build` records the servers followed.
        store.set_servers(["t".to_owned()]);
        for b in batches {
            if let Some(cp) = &b.checkpoint {
                store.update(cp.clone());
            }
        }
        store.save(at).unwrap();
    }

    #[test]
    fn a_file_the_checkpoints_do_not_know_is_read_from_its_start_whatever_its_mtime() {
        let s = setup();
        // A first run that saw nothing, saved at `saved`.
        let saved = Timestamp::now();
        let mut out = Vec::new();
        tailer(&s, StartAt::End).poll(Instant::now(), &mut |b| out.push(b));
        deliver(&s, &out, saved);
        // While stopped, a file is moved in (its modification time is an hour before the save,
        // as `mv` or `cp -p` keep it, or as a coarse or skewed clock stamps it).
        let log = s.dir.join("console.log");
        append(
            &log,
            b"written while stopped
second
",
        );
        let an_hour_before = std::time::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(saved.as_millis()).unwrap())
            - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&log)
            .unwrap()
            .set_modified(an_hour_before)
            .unwrap();
        let mut t = tailer(&s, StartAt::End);
        out.clear();
        t.poll(Instant::now(), &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["written while stopped", "second"]);
    }

    #[test]
    fn a_server_new_to_the_checkpoints_starts_its_files_at_their_end() {
        let s = setup();
        // An earlier run followed another server only.
        let (mut store, _) = CheckpointStore::open(&s.state).unwrap();
        store.set_servers(["other".to_owned()]);
        store.save(Timestamp::now()).unwrap();
        // This server is added to the configuration, its directory full of old logs.
        append(&s.dir.join("console.log"), b"old 1\nold 2\n");
        let mut out = Vec::new();
        let mut t = tailer(&s, StartAt::End);
        t.poll(Instant::now(), &mut |b| out.push(b));
        assert_eq!(texts(&out), Vec::<String>::new(), "old logs are not sent");
        append(&s.dir.join("console.log"), b"new\n");
        t.poll(Instant::now(), &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["new"]);
    }

    #[test]
    fn a_known_file_resumes_at_its_checkpoint_even_at_zero_and_is_recorded_daily() {
        let s = setup();
        let log = s.dir.join("console.log");
        append(&log, b"header\nline\n");
        // Known at 0: recorded before anything of it was delivered.
        let (mut store, _) = CheckpointStore::open(&s.state).unwrap();
        store.update(FileCheckpoint {
            server: "t".into(),
            path: log.clone(),
            fingerprint: fingerprint::of_line(b"header"),
            key: FileKey::of(&fs::metadata(&log).unwrap()),
            offset: 0,
            run_start_ms: None,
            updated_ms: Timestamp::now().as_millis(),
            let_go_ms: None,
        });
        store.save(Timestamp::now()).unwrap();
        let mut t = tailer(&s, StartAt::End);
        let now = Instant::now();
        let mut out = Vec::new();
        t.poll(now, &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["header", "line"]);
        // Recorded again when opened (the entry is fresh), and daily while idle, so its entry
        // never expires.
        assert!(out[0].records.is_empty());
        assert_eq!(out[0].checkpoint.as_ref().unwrap().offset, 0);
        out.clear();
        t.poll(now + Duration::from_secs(3600), &mut |b| out.push(b));
        assert!(out.is_empty());
        t.poll(now + RECORD_IDLE_EVERY, &mut |b| out.push(b));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].checkpoint.as_ref().unwrap().offset, 12);
    }

    #[test]
    fn a_file_let_go_that_comes_back_resumes_where_it_was() {
        let s = setup();
        let log = s.dir.join("console.log");
        append(&log, b"a\nb\n");
        let mut t = tailer(&s, StartAt::Beginning);
        let now = Instant::now();
        let mut out = Vec::new();
        t.poll(now, &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["a", "b"]);
        // The directory is renamed away for longer than the rotate wait: the file is let go.
        let away = s.dir.with_extension("away");
        fs::rename(&s.dir, &away).unwrap();
        out.clear();
        t.poll(now, &mut |b| out.push(b));
        t.poll(now + Duration::from_secs(6), &mut |b| out.push(b));
        assert!(t.open_files().is_empty());
        let last = out.last().unwrap().checkpoint.clone().unwrap();
        assert_eq!((last.offset, last.let_go_ms.is_some()), (4, true));
        // Back, with a line more: only that line is read.
        fs::rename(&away, &s.dir).unwrap();
        append(&log, b"c\n");
        out.clear();
        t.poll(now + Duration::from_secs(7), &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["c"]);
        assert_eq!(out[0].checkpoint.as_ref().unwrap().let_go_ms, None);
        // A file with another first line in its place is new.
        fs::remove_file(&log).unwrap();
        append(&log, b"other\n");
        out.clear();
        t.poll(now + Duration::from_secs(8), &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["other"]);
    }

    #[test]
    fn a_held_error_record_is_emitted_after_quiet() {
        let s = setup();
        let log = s.dir.join("factorio-current.log");
        let mut t = tailer(&s, StartAt::Beginning);
        let now = Instant::now();
        t.poll(now, &mut |_| {});
        append(&log, b"1.000 Error X.cpp:1: boom\n\ttraceback\n");
        let mut out = Vec::new();
        t.poll(now, &mut |b| out.push(b));
        assert!(texts(&out).is_empty(), "held while it may continue");
        t.poll(now + Duration::from_millis(500), &mut |b| out.push(b));
        assert!(texts(&out).is_empty());
        t.poll(now + Duration::from_secs(2), &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["1.000 Error X.cpp:1: boom\n\ttraceback"]);
    }

    #[test]
    fn a_deleted_file_is_read_to_its_end_and_let_go_with_its_partial_line() {
        let s = setup();
        let log = s.dir.join("console.log");
        let mut t = tailer(&s, StartAt::Beginning);
        let now = Instant::now();
        append(&log, b"a\n");
        let mut out = Vec::new();
        t.poll(now, &mut |b| out.push(b));
        append(&log, b"b\nlast without newline");
        fs::remove_file(&log).unwrap();
        out.clear();
        t.poll(now, &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["b"]);
        assert_eq!(t.open_files().len(), 1, "kept open for the rotate wait");
        out.clear();
        t.poll(now + Duration::from_secs(6), &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["last without newline"]);
        assert!(t.open_files().is_empty());
        assert_eq!(t.stats().files_closed, 1);
    }

    #[test]
    fn a_missing_directory_is_retried_and_recovered() {
        let s = setup();
        fs::remove_dir(&s.dir).unwrap();
        let mut t = tailer(&s, StartAt::End);
        let now = Instant::now();
        t.poll(now, &mut |_| {});
        assert_eq!(t.stats().errors, 1);
        t.poll(now, &mut |_| {});
        assert_eq!(t.stats().errors, 1, "logged and counted once");
        fs::create_dir(&s.dir).unwrap();
        append(&s.dir.join("console.log"), b"back\n");
        let mut out = Vec::new();
        t.poll(now, &mut |b| out.push(b));
        assert_eq!(
            texts(&out),
            vec!["back"],
            "a file in a recreated directory is new"
        );
    }

    #[test]
    fn the_health_component_names_each_directory_that_cannot_be_followed() {
        use crate::telemetry::health::{Health, State};
        let s = setup();
        fs::remove_dir(&s.dir).unwrap();
        let health = Health::new(Default::default());
        let mut t = tailer(&s, StartAt::End).with_health(health.component("tailer", "starting"));
        let state = || {
            let r = health.readiness();
            let c = &r.components["tailer"];
            (c.state.clone(), c.reason.clone().unwrap_or_default())
        };
        let now = Instant::now();
        t.poll(now, &mut |_| {});
        let dir = s.dir.display();
        assert_eq!(
            state(),
            (
                State::NotReady,
                format!("cannot list {dir}: No such file or directory")
            )
        );
        fs::write(&s.dir, b"").unwrap();
        t.poll(now, &mut |_| {});
        assert_eq!(
            state(),
            (State::NotReady, format!("{dir} is not a directory"))
        );
        fs::remove_file(&s.dir).unwrap();
        fs::create_dir(&s.dir).unwrap();
        t.poll(now, &mut |_| {});
        assert_eq!(state(), (State::Ready, String::new()));
    }

    /// A tailer whose open-file budget leaves room for `max_files` files, reporting to a
    /// health component; returns it with a reader of that component's state and reason.
    fn tailer_with_budget(
        s: &Setup,
        start_at: StartAt,
        max_files: u64,
    ) -> (
        Tailer,
        impl Fn() -> (crate::telemetry::health::State, String),
    ) {
        use crate::telemetry::health::Health;
        let opts = TailOptions {
            open_files: OpenFileBudget {
                limit: Some(64 + max_files),
                reserve: 64,
            },
            ..test_opts(start_at)
        };
        let health = Health::new(Default::default());
        let t = tailer_of(s, opts).with_health(health.component("tailer", "starting"));
        let state = move || {
            let r = health.readiness();
            let c = &r.components["tailer"];
            (c.state.clone(), c.reason.clone().unwrap_or_default())
        };
        (t, state)
    }

    /// Issue 12, item 2: a listing that failed with `EMFILE` says nothing about the directory's
    /// files, so none is let go (and read again from its start when it is found once more);
    /// one that failed because the directory is gone lets them go after the rotate wait.
    #[test]
    fn a_listing_that_fails_for_lack_of_descriptors_lets_no_file_go() {
        use crate::telemetry::health::State;
        let (emfile, enoent) = (libc::EMFILE, libc::ENOENT);
        let s = setup();
        append(&s.dir.join("console.log"), b"a\n");
        append(&s.dir.join("factorio-current.log"), b"b\n");
        let (mut t, state) = tailer_with_budget(&s, StartAt::Beginning, 100);
        let now = Instant::now();
        let mut out = Vec::new();
        t.poll(now, &mut |b| out.push(b));
        assert_eq!(t.open_files().len(), 2);
        t.fail_listing = Some(emfile);
        for later in [1, 10, 60] {
            t.poll(now + Duration::from_secs(later), &mut |b| out.push(b));
        }
        assert_eq!(t.open_files().len(), 2, "no file let go");
        assert_eq!(t.stats().files_closed, 0);
        assert_eq!(t.stats().errors, 1, "counted once per episode");
        let (st, reason) = state();
        assert_eq!(st, State::NotReady);
        assert!(
            reason.starts_with("cannot list 1 log directory: the open-file limit (164) is reached"),
            "{reason}"
        );
        t.fail_listing = None;
        append(&s.dir.join("console.log"), b"c\n");
        t.poll(now + Duration::from_secs(61), &mut |b| out.push(b));
        assert_eq!(state(), (State::Ready, String::new()));
        let mut lines = texts(&out);
        lines.sort();
        assert_eq!(lines, vec!["a", "b", "c"], "each line once");

        // A directory that is gone lets its files go after the rotate wait.
        t.fail_listing = Some(enoent);
        t.poll(now + Duration::from_secs(62), &mut |_| {});
        t.poll(now + Duration::from_secs(70), &mut |_| {});
        assert!(t.open_files().is_empty());
    }

    /// Issue 12, item 2: a file that cannot be opened for lack of descriptors waits, counted
    /// and shown once (not as an unreadable file), while the files followed are kept.
    #[test]
    fn a_file_that_cannot_be_opened_for_lack_of_descriptors_waits() {
        use crate::telemetry::health::State;
        let s = setup();
        append(&s.dir.join("console.log"), b"a\n");
        let (mut t, state) = tailer_with_budget(&s, StartAt::Beginning, 100);
        let now = Instant::now();
        let mut out = Vec::new();
        t.poll(now, &mut |b| out.push(b));
        t.fail_opening = Some(libc::EMFILE);
        append(&s.dir.join("factorio-current.log"), b"b\n");
        for later in [1, 10, 60] {
            t.poll(now + Duration::from_secs(later), &mut |b| out.push(b));
        }
        assert_eq!(t.open_files(), vec![s.dir.join("console.log")]);
        assert_eq!(t.stats().errors, 1, "counted once per episode");
        assert!(t.unreadable.is_empty(), "not reported as unreadable");
        let (st, reason) = state();
        assert_eq!(st, State::NotReady);
        assert!(
            reason
                .starts_with("cannot follow 1 more log file: the open-file limit (164) is reached"),
            "{reason}"
        );
        t.fail_opening = None;
        t.poll(now + Duration::from_secs(61), &mut |b| out.push(b));
        assert_eq!(state(), (State::Ready, String::new()));
        assert_eq!(texts(&out), vec!["a", "b"], "each line once");
    }

    /// Issue 12, item 2: beyond the open-file budget, the files followed are kept, the others
    /// wait (counted and shown once) and are followed as room is made, each line read once.
    #[test]
    fn files_beyond_the_open_file_budget_wait_and_none_is_read_twice() {
        use crate::telemetry::health::State;
        let s = setup();
        let names = ["a.log", "b.log", "c.log", "d.log"];
        for n in names {
            append(&s.dir.join(n), format!("{n} 1\n").as_bytes());
        }
        let (mut t, state) = tailer_with_budget(&s, StartAt::Beginning, 2);
        let now = Instant::now();
        let mut out = Vec::new();
        t.poll(now, &mut |b| out.push(b));
        assert_eq!(t.open_files().len(), 2);
        let (st, reason) = state();
        assert_eq!(st, State::NotReady);
        assert_eq!(
            reason,
            "cannot follow 2 more log files: the open-file limit (66) is reached (2 log files \
             open, 64 kept for sockets and checkpoints); raise the hard limit (systemd \
             LimitNOFILE=, ulimit -Hn)"
        );
        for n in names {
            append(&s.dir.join(n), format!("{n} 2\n").as_bytes());
        }
        t.poll(now, &mut |b| out.push(b));
        assert_eq!(t.stats().errors, 1, "counted once per episode");
        // Room is made as followed files are deleted and let go.
        let mut at = now;
        while !t.open_files().is_empty() {
            for p in t.open_files() {
                fs::remove_file(p).unwrap();
            }
            t.poll(at, &mut |b| out.push(b)); // notices they are gone
            at += Duration::from_secs(6);
            t.poll(at, &mut |b| out.push(b)); // lets them go
            t.poll(at, &mut |b| out.push(b)); // opens the next
        }
        assert_eq!(state(), (State::Ready, String::new()));
        let mut lines = texts(&out);
        lines.sort();
        let want: Vec<String> = names
            .iter()
            .flat_map(|n| [format!("{n} 1"), format!("{n} 2")])
            .collect();
        assert_eq!(lines, want, "each line once");
        assert_eq!(t.stats().files_opened, 4);
        assert_eq!(t.stats().errors, 1);
    }

    /// A file present at the first scan that could not be opened then starts as it would have
    /// at the first scan (at its end), not as a new file (from its start).
    #[test]
    fn a_file_deferred_at_the_first_scan_starts_at_its_end() {
        let s = setup();
        append(&s.dir.join("a.log"), b"old a\n");
        append(&s.dir.join("b.log"), b"old b\n");
        let (mut t, _) = tailer_with_budget(&s, StartAt::End, 1);
        let now = Instant::now();
        let mut out = Vec::new();
        t.poll(now, &mut |b| out.push(b));
        assert_eq!(t.open_files(), vec![s.dir.join("a.log")]);
        fs::remove_file(s.dir.join("a.log")).unwrap();
        t.poll(now, &mut |b| out.push(b));
        t.poll(now + Duration::from_secs(6), &mut |b| out.push(b));
        t.poll(now + Duration::from_secs(6), &mut |b| out.push(b));
        assert_eq!(t.open_files(), vec![s.dir.join("b.log")]);
        append(&s.dir.join("b.log"), b"new b\n");
        t.poll(now + Duration::from_secs(6), &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["new b"]);
    }

    #[test]
    fn invalid_utf8_lines_are_counted_in_the_stats() {
        let s = setup();
        append(&s.dir.join("console.log"), b"bad \xff\nok\n");
        let mut t = tailer(&s, StartAt::Beginning);
        let mut out = Vec::new();
        t.poll(Instant::now(), &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["bad \u{fffd}", "ok"]);
        let stats = t.stats();
        assert_eq!((stats.lines, stats.lines_invalid_utf8), (2, 1));
        assert_eq!(stats.errors, 0);
    }

    #[test]
    fn a_binary_looking_file_is_followed_all_the_same() {
        let s = setup();
        append(&s.dir.join("console.log"), b"PK\x03\x04\x00\x00\nnext\n");
        let mut t = tailer(&s, StartAt::Beginning);
        let mut out = Vec::new();
        t.poll(Instant::now(), &mut |b| out.push(b));
        assert_eq!(texts(&out), vec!["PK\x03\x04\0\0", "next"]);
        assert_eq!(t.stats().errors, 0);
    }

    #[test]
    fn last_line_start_finds_the_line_boundary() {
        let f = |data: &[u8]| {
            let mut tmp = tempfile::NamedTempFile::new().unwrap();
            tmp.write_all(data).unwrap();
            last_line_start(tmp.as_file(), data.len() as u64)
        };
        assert_eq!(f(b""), 0);
        assert_eq!(f(b"a\nb\n"), 4);
        assert_eq!(f(b"a\nbc"), 2);
        assert_eq!(f(b"no newline at all"), 0);
    }
}
