//! The tailer: follows every matching file of each server's log directory.
//!
//! [`Tailer::poll`] does one pass: discovery when it is due, then for every open file a read of
//! what is new (at most `max_read_bytes_per_file`, so one busy file cannot starve the others),
//! framed into records and handed out as one [`TailBatch`] per chunk read, each as soon as it
//! is made: a caller that blocks on a batch stops the tailer reading. It never sleeps and never
//! spawns: the driver loop (`tail::follow`) decides when to poll, and tests step it directly.
//!
//! What it does about each file hazard:
//!
//! - **Discovery**: every `discovery_interval` (and whenever the watcher asks) the directories
//!   are listed and matched against the server's globs. A file is identified by device and inode
//!   while it is open, and by its fingerprint (first line) across restarts.
//! - **Where a file starts**: with a checkpoint, at the checkpoint's offset (0 if the file is now
//!   shorter: truncated while factorio-isr was stopped). Without one: files found after the first
//!   scan start at 0 (they are new); files present at the first scan start at 0 when they were
//!   written after the last checkpoint save (they changed while factorio-isr was stopped), else
//!   at their end (at the start of the last complete line), unless `start_at = Beginning`.
//! - **Rename rotation** (`factorio-current.log` → `factorio-previous.log`): the open file keeps
//!   its offset under its new name and is read to its end, writes to the old handle included; the
//!   new file is new and starts at 0. Within a pass older files are read first.
//! - **Truncation** (copytruncate, `> file`): a size below the read offset, or a first line that
//!   changed (truncated and rewritten past the old offset between two looks; checked before
//!   every read of new data and at every discovery), restarts the file at 0 and is counted. Lines written between the copy and the truncation are lost to any
//!   tailer; they are in the copy.
//! - **Deletion**, or a rename to a name the globs do not match: the open file is read to its end
//!   and let go once it has had no new data for `rotate_wait`; a partial last line is then
//!   emitted as it is.
//! - **Directory removed**: its files are treated as deleted; when it comes back, its files are
//!   new files.
//! - A multi-line error record held open is emitted after `record_flush` of quiet.
//!
//! How it fails: an unreadable directory or file is logged once and retried at the next
//! discovery; a read error leaves the file where it was. Nothing here panics on file content.

use std::collections::HashSet;
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use globset::{Glob, GlobSet, GlobSetBuilder};
use tracing::{info, warn};

use super::checkpoint::{CheckpointStore, FileCheckpoint};
use super::fingerprint::{self, FileKey, Fingerprint};
use super::frame::{FramingLimits, LineFramer, Record, RecordAssembler};
use super::shape::{self, Shape};
use crate::event::{LogSource, Timestamp};
use crate::telemetry::metrics::{ErrorCounter, PipelineMetrics, ServerLabels};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// The root span of a batch's trace: the read of one chunk of `path`.
fn batch_span(server: &str, path: &Path) -> tracing::Span {
    crate::traced_span!(parent: None, "batch", server = %server, file = %path.display())
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
}

impl TailMetrics {
    fn new(servers: &[ServerSource], m: &PipelineMetrics) -> Self {
        let label = |s: &ServerSource| ServerLabels {
            server: s.tag.to_string(),
        };
        TailMetrics {
            lines: servers
                .iter()
                .map(|s| m.lines_read.get_or_create(&label(s)).clone())
                .collect(),
            bytes: servers
                .iter()
                .map(|s| m.bytes_read.get_or_create(&label(s)).clone())
                .collect(),
            read: m.stage("tail"),
            frame: m.stage("frame"),
            errors: m.errors.clone(),
        }
    }
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
        })
    }

    fn matches(&self, file_name: &std::ffi::OsStr) -> bool {
        self.globs.is_match(Path::new(file_name))
    }
}

/// Where files present at the first scan start when they have no checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// At their end: only what is written from now on (the default).
    End,
    /// At their start (`--from-beginning`).
    Beginning,
}

/// How the tailer behaves.
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
    /// Where files without a checkpoint start at the first scan.
    pub start_at: StartAt,
}

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            limits: FramingLimits::default(),
            read_chunk_bytes: 256 * 1024,
            max_read_bytes_per_file: 4 * 1024 * 1024,
            discovery_interval: Duration::from_secs(1),
            rotate_wait: Duration::from_secs(10),
            record_flush: Duration::from_secs(1),
            start_at: StartAt::End,
        }
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
    /// Failed opens, reads and directory listings.
    pub errors: u64,
}

struct TailedFile {
    key: FileKey,
    server: usize,
    path: PathBuf,
    source: Arc<LogSource>,
    file: File,
    fingerprint: Option<Fingerprint>,
    /// Next byte to read.
    read_offset: u64,
    framer: LineFramer,
    asm: RecordAssembler,
    last_data: Instant,
    /// Modification time at the last look: a file rewritten to exactly the size already read
    /// shows only in its modification time.
    last_mtime: Option<std::time::SystemTime>,
    /// Since when the file is no longer found under any matching name.
    gone_since: Option<Instant>,
}

impl TailedFile {
    /// Where a restart must resume: before a held record, else after the last complete line.
    fn safe_offset(&self) -> u64 {
        self.asm
            .held_offset()
            .unwrap_or_else(|| self.framer.consumed_offset())
    }

    fn checkpoint(&self, tag: &str) -> Option<FileCheckpoint> {
        Some(FileCheckpoint {
            server: tag.to_owned(),
            path: self.path.clone(),
            fingerprint: self.fingerprint?,
            key: self.key,
            offset: self.safe_offset(),
            run_start_ms: self.asm.run_start_ms(),
            updated_ms: Timestamp::now().as_millis(),
        })
    }

    fn restart_at_zero(&mut self) {
        self.read_offset = 0;
        self.framer.reset(0);
        self.asm.reset();
        self.fingerprint = None;
    }
}

/// Follows the files of several servers. See the module docs.
pub struct Tailer {
    servers: Vec<ServerSource>,
    opts: TailOptions,
    files: Vec<TailedFile>,
    /// The checkpoints as they were at start: where files seen before resume.
    resume: CheckpointStore,
    scanned_once: bool,
    next_discovery: Option<Instant>,
    missing_dirs: HashSet<usize>,
    unreadable: HashSet<PathBuf>,
    buf: Vec<u8>,
    stats: TailStats,
    metrics: TailMetrics,
}

impl Tailer {
    /// A tailer for `servers`, resuming from the checkpoints in `store`.
    pub fn new(servers: Vec<ServerSource>, opts: TailOptions, store: &CheckpointStore) -> Self {
        let metrics = TailMetrics::new(&servers, &PipelineMetrics::default());
        Tailer {
            buf: vec![0; opts.read_chunk_bytes.max(4096)],
            servers,
            opts,
            files: Vec::new(),
            resume: store.clone(),
            scanned_once: false,
            next_discovery: None,
            missing_dirs: HashSet::new(),
            unreadable: HashSet::new(),
            stats: TailStats::default(),
            metrics,
        }
    }

    /// Updates `metrics` (lines and bytes read per server, read and frame times, errors).
    pub fn with_metrics(mut self, metrics: &PipelineMetrics) -> Self {
        self.metrics = TailMetrics::new(&self.servers, metrics);
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> TailStats {
        self.stats
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
            let f = &self.files[i];
            if n == 0
                && let Some(gone) = f.gone_since
                && now.saturating_duration_since(gone.max(f.last_data)) >= self.opts.rotate_wait
            {
                closed.push(i);
            }
        }
        for i in closed.into_iter().rev() {
            self.close(i, emit);
        }
        total
    }

    /// Lists the directories, opens new files, follows renames, notices deletions and content
    /// replacement.
    fn discover(&mut self, now: Instant, emit: &mut dyn FnMut(TailBatch)) {
        let first_scan = !self.scanned_once;
        let mut seen: HashSet<FileKey> = HashSet::new();
        for si in 0..self.servers.len() {
            let dir = self.servers[si].dir.clone();
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) => {
                    if self.missing_dirs.insert(si) {
                        self.stats.errors += 1;
                        self.metrics.errors.count("tailer", "list_dir");
                        warn!(dir = %dir.display(), error = %e, "Cannot list the log directory; will retry.");
                    }
                    continue;
                }
            };
            if self.missing_dirs.remove(&si) {
                info!(dir = %dir.display(), "The log directory is readable again.");
            }
            let mut paths: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .filter(|e| self.servers[si].matches(&e.file_name()))
                .map(|e| e.path())
                .collect();
            paths.sort();
            for path in paths {
                let Ok(meta) = fs::metadata(&path) else {
                    continue;
                };
                if !meta.is_file() {
                    continue;
                }
                let key = FileKey::of(&meta);
                if !seen.insert(key) {
                    continue; // a second name (hard link) of a file already handled
                }
                if let Some(f) = self.files.iter_mut().find(|f| f.key == key) {
                    if f.path != path {
                        info!(from = %f.path.display(), to = %path.display(), "Log file renamed; following it.");
                        self.stats.renames += 1;
                        f.path = path;
                        f.source = Arc::new(LogSource {
                            server: f.source.server.clone(),
                            path: f.path.to_string_lossy().into(),
                        });
                    }
                    f.gone_since = None;
                    continue;
                }
                self.open(si, path, first_scan, now, emit);
            }
        }
        for f in &mut self.files {
            if !seen.contains(&f.key) && f.gone_since.is_none() {
                info!(path = %f.path.display(), "Log file deleted or rotated away; reading what is left.");
                f.gone_since = Some(now);
            }
        }
        // A first line that changed means the file was truncated and rewritten between two
        // looks, perhaps past the old offset, which the size alone would not show.
        for f in &mut self.files {
            if f.gone_since.is_some() {
                continue;
            }
            let Some(old) = f.fingerprint else { continue };
            if let Ok(now_fp) = fingerprint::fingerprint(&f.file)
                && now_fp != Some(old)
            {
                warn!(path = %f.path.display(), "Log file content replaced (truncated and rewritten); reading it from the start.");
                self.stats.truncations += 1;
                f.restart_at_zero();
            }
        }
        self.scanned_once = true;
    }

    fn open(
        &mut self,
        si: usize,
        path: PathBuf,
        first_scan: bool,
        now: Instant,
        emit: &mut dyn FnMut(TailBatch),
    ) {
        let opened = File::open(&path).and_then(|file| {
            let meta = file.metadata()?;
            let first = fingerprint::first_line(&file)?;
            Ok((file, meta, first))
        });
        let (file, meta, first_line) = match opened {
            Ok(x) => x,
            Err(e) => {
                if self.unreadable.insert(path.clone()) {
                    self.stats.errors += 1;
                    self.metrics.errors.count("tailer", "open");
                    warn!(path = %path.display(), error = %e, "Cannot open log file; will retry.");
                }
                return;
            }
        };
        self.unreadable.remove(&path);
        let key = FileKey::of(&meta);
        let fp = first_line.as_deref().map(fingerprint::of_line);
        let mut run_start_ms = first_line
            .as_deref()
            .and_then(|l| match shape::classify(l) {
                Shape::Engine { run_start_ms, .. } => run_start_ms,
                _ => None,
            });
        let tag = self.servers[si].tag.clone();
        let len = meta.len();
        let open_keys: HashSet<FileKey> = self.files.iter().map(|f| f.key).collect();
        let checkpoint = fp
            .and_then(|fp| self.resume.find(&tag, fp, key, |k| open_keys.contains(&k)))
            .cloned();
        let (offset, why) = if let Some(cp) = &checkpoint {
            run_start_ms = cp.run_start_ms.or(run_start_ms);
            if cp.offset > len {
                self.stats.truncations += 1;
                (
                    0,
                    "its checkpoint is past its end (truncated while stopped): from the start",
                )
            } else {
                (cp.offset, "resuming at its checkpoint")
            }
        } else if !first_scan {
            (0, "new file: from the start")
        } else if self.opts.start_at == StartAt::Beginning {
            (0, "from the start (--from-beginning)")
        } else if self
            .resume
            .previous_save_ms()
            .is_some_and(|saved| mtime_ms(&meta).is_some_and(|m| m >= saved))
        {
            (0, "written while factorio-isr was stopped: from the start")
        } else {
            (last_line_start(&file, len), "first seen: from its end")
        };
        info!(path = %path.display(), offset, "Following log file: {why}.");
        self.stats.files_opened += 1;
        let mut asm = RecordAssembler::new(self.opts.limits);
        asm.set_run_start_ms(run_start_ms);
        let f = TailedFile {
            key,
            server: si,
            source: Arc::new(LogSource {
                server: tag.clone(),
                path: path.to_string_lossy().into(),
            }),
            path,
            file,
            fingerprint: fp,
            read_offset: offset,
            framer: LineFramer::new(self.opts.limits.max_line_bytes, offset),
            asm,
            last_data: now,
            last_mtime: None,
            gone_since: None,
        };
        // Record where a file that starts at its end stands, so a restart knows it.
        if offset > 0 && checkpoint.is_none() {
            emit(TailBatch {
                source: f.source.clone(),
                records: Vec::new(),
                read_time: Timestamp::now(),
                checkpoint: f.checkpoint(&tag),
                span: tracing::Span::none(),
            });
        }
        self.files.push(f);
    }

    /// Reads what is new in file `i`. Returns the bytes read.
    fn read_file(&mut self, i: usize, now: Instant, emit: &mut dyn FnMut(TailBatch)) -> u64 {
        let Tailer {
            files,
            servers,
            opts,
            buf,
            stats,
            metrics,
            ..
        } = self;
        let f = &mut files[i];
        let (len, mtime) = match f.file.metadata() {
            Ok(m) => (m.len(), m.modified().ok()),
            Err(e) => {
                stats.errors += 1;
                metrics.errors.count("tailer", "stat");
                warn!(path = %f.path.display(), error = %e, "Cannot stat log file.");
                return 0;
            }
        };
        if len < f.read_offset {
            warn!(path = %f.path.display(), size = len, offset = f.read_offset, "Log file truncated; reading it from the start.");
            stats.truncations += 1;
            f.restart_at_zero();
        } else if (len > f.read_offset || (len > 0 && mtime != f.last_mtime))
            && let Some(old) = f.fingerprint
            && fingerprint::fingerprint(&f.file).is_ok_and(|now| now != Some(old))
        {
            // Truncated and rewritten past (or exactly to) the old offset since the last look:
            // the size alone does not show it, the first line does. Checked before reading, so
            // nothing of the new content is read from the old offset; checked at the same size
            // only when the file was modified, so idle files cost no reads.
            warn!(path = %f.path.display(), "Log file content replaced (truncated and rewritten); reading it from the start.");
            stats.truncations += 1;
            f.restart_at_zero();
        }
        f.last_mtime = mtime;
        let before = f.framer.stats();
        let mut records = Vec::new();
        let mut total: u64 = 0;
        let tag = &servers[f.server].tag;
        let mut batch = tracing::Span::none();
        while total < opts.max_read_bytes_per_file as u64 {
            // A batch's trace starts with the read of its chunk (only for data known to be
            // there: an idle file's empty reads make no spans).
            if batch.is_none() && f.read_offset < len {
                batch = batch_span(tag, &f.path);
            }
            let read_span = if batch.is_none() {
                tracing::Span::none()
            } else {
                crate::traced_span!(parent: &batch, "tail.read")
            };
            let started = Instant::now();
            let read = read_span.in_scope(|| f.file.read_at(buf, f.read_offset));
            drop(read_span);
            let n = match read {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    stats.errors += 1;
                    metrics.errors.count("tailer", "read");
                    warn!(path = %f.path.display(), error = %e, "Reading log file failed; will retry.");
                    break;
                }
            };
            metrics.read.observe(started.elapsed().as_secs_f64());
            if batch.is_none() {
                batch = batch_span(tag, &f.path);
            }
            f.read_offset += n as u64;
            total += n as u64;
            let asm = &mut f.asm;
            let started = Instant::now();
            crate::traced_span!(parent: &batch, "frame", bytes = n).in_scope(|| {
                f.framer
                    .push(&buf[..n], &mut |line| asm.push_line(line, &mut records));
            });
            metrics.frame.observe(started.elapsed().as_secs_f64());
            // One batch per chunk read: batches stay small, so the few in flight between the
            // stages bound memory whatever the backlog.
            if !records.is_empty() {
                if f.fingerprint.is_none() {
                    f.fingerprint = fingerprint::fingerprint(&f.file).ok().flatten();
                }
                emit(TailBatch {
                    source: f.source.clone(),
                    records: std::mem::take(&mut records),
                    read_time: Timestamp::now(),
                    checkpoint: f.checkpoint(tag),
                    span: std::mem::replace(&mut batch, tracing::Span::none()),
                });
            }
        }
        if total > 0 {
            f.last_data = now;
            if f.fingerprint.is_none() {
                f.fingerprint = fingerprint::fingerprint(&f.file).ok().flatten();
            }
        } else if f.asm.is_holding()
            && now.saturating_duration_since(f.last_data) >= opts.record_flush
        {
            f.asm.flush(&mut records);
        }
        let after = f.framer.stats();
        stats.bytes += total;
        stats.lines += after.lines - before.lines;
        if total > 0 {
            metrics.bytes[f.server].inc_by(total);
            metrics.lines[f.server].inc_by(after.lines - before.lines);
        }
        stats.lines_cut += after.lines_cut - before.lines_cut;
        stats.bytes_cut += after.bytes_cut - before.bytes_cut;
        if after.lines_cut > before.lines_cut {
            warn!(path = %f.path.display(), max_line_bytes = opts.limits.max_line_bytes, "A line longer than the limit was cut.");
        }
        if !records.is_empty() {
            if batch.is_none() {
                batch = batch_span(tag, &f.path);
            }
            emit(TailBatch {
                source: f.source.clone(),
                records,
                read_time: Timestamp::now(),
                checkpoint: f.checkpoint(tag),
                span: batch,
            });
        }
        total
    }

    /// Lets go of a deleted file, emitting its partial last line and held record.
    fn close(&mut self, i: usize, emit: &mut dyn FnMut(TailBatch)) {
        let mut f = self.files.remove(i);
        let mut records = Vec::new();
        let asm = &mut f.asm;
        f.framer
            .finish(&mut |line| asm.push_line(line, &mut records));
        f.asm.flush(&mut records);
        info!(path = %f.path.display(), "Let go of deleted or rotated log file.");
        self.stats.files_closed += 1;
        let tag = self.servers[f.server].tag.clone();
        let span = if records.is_empty() {
            tracing::Span::none()
        } else {
            batch_span(&tag, &f.path)
        };
        emit(TailBatch {
            source: f.source.clone(),
            records,
            read_time: Timestamp::now(),
            checkpoint: f.checkpoint(&tag),
            span,
        });
    }
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

fn mtime_ms(meta: &fs::Metadata) -> Option<i64> {
    let t = meta.modified().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
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

    fn tailer(s: &Setup, start_at: StartAt) -> Tailer {
        let (store, _) = CheckpointStore::open(&s.state).unwrap();
        let server = ServerSource::new("t", s.dir.clone(), &default_globs()).unwrap();
        let opts = TailOptions {
            discovery_interval: Duration::ZERO,
            rotate_wait: Duration::from_secs(5),
            record_flush: Duration::from_secs(1),
            start_at,
            ..TailOptions::default()
        };
        Tailer::new(vec![server], opts, &store)
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
