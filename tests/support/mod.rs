//! Helpers for tests that run the real `factorio-isr run` against real files: a test's
//! temporary directory with its logs, state and config ([`Env`]), a writer of
//! sequence-numbered log lines that can rotate and truncate its file, a handle on a running
//! `factorio-isr run` process that collects its events and its stderr, and a checker that every
//! sequence number arrived exactly once.
//!
//! Every log line a [`SeqWriter`] writes is a console chat line,
//!
//! ```text
//! 2025-10-08 08:58:34 [CHAT] w1: seq=000042 xxxxxxxx
//! ```
//!
//! so the shipped patterns turn it into a `chat` event whose `fields.player` is the writer's id
//! and whose `fields.message` starts with `seq=NNNNNN`. [`Isr::seqs`] reads them back.

// Shared by test crates that each use part of it.
#![allow(dead_code)]

pub mod beats;
pub mod discord;
pub mod logstash;
pub mod loki;
pub mod otlp;
pub mod prom_tools;
pub mod rcon;
pub mod schema;
pub mod tls;

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle, sleep};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// Polls `pred` every 20 ms until it holds or `timeout` passes; whether it held.
pub fn wait_until(mut pred: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        sleep(Duration::from_millis(20));
    }
    pred()
}

/// Polls `pred` every 20 ms until it holds, for as long as `progress` (a count of what has
/// arrived so far) keeps growing: gives up once it has not grown for `stall`. A loaded machine
/// takes longer, but work goes on; only a stall fails. Whether `pred` held.
pub fn wait_while_progressing(
    mut pred: impl FnMut() -> bool,
    mut progress: impl FnMut() -> usize,
    stall: Duration,
) -> bool {
    let mut last = progress();
    let mut since = Instant::now();
    loop {
        if pred() {
            return true;
        }
        let now = progress();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= stall {
            return pred();
        }
        sleep(Duration::from_millis(20));
    }
}

/// The value of the sample `name` (labels included, as written) in a `/metrics` text.
pub fn metric_sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)?
            .strip_prefix(' ')?
            .split(' ')
            .next()?
            .parse()
            .ok()
    })
}

/// Waits until the admin server at `admin` serves `sample` (as [`metric_sample`] names it) at
/// `value` on `GET /metrics`, at most `timeout`; returns the text last read, for the caller to
/// assert on (so a timeout shows what was there).
pub fn wait_metric(admin: SocketAddr, sample: &str, value: f64, timeout: Duration) -> String {
    let mut text = String::new();
    wait_until(
        || {
            text = http_get(admin, "/metrics").1;
            metric_sample(&text, sample) == Some(value)
        },
        timeout,
    );
    text
}

/// Waits until the admin server at `admin` answers `GET /ready` with `status` and a body that
/// contains `needle`, at most `timeout`; whether it did.
pub fn wait_ready_says(admin: SocketAddr, status: u16, needle: &str, timeout: Duration) -> bool {
    wait_until(
        || {
            let (got, body) = http_get(admin, "/ready");
            got == status && body.contains(needle)
        },
        timeout,
    )
}

/// A plain HTTP/1.1 GET: the status code and the body (empty on a connection failure, with
/// status 0).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_get_accept(addr, path, "*/*")
}

/// [`http_get`] with an `Accept` header (`application/openmetrics-text` asks `/metrics` for
/// OpenMetrics, with exemplars).
pub fn http_get_accept(addr: std::net::SocketAddr, path: &str, accept: &str) -> (u16, String) {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    );
    http_exchange(addr, &request, Duration::from_secs(10))
}

/// Sends one whole HTTP/1.1 `request` (with `Connection: close`) to `addr` and reads the
/// answer until the server closes, waiting at most `read_timeout` for each read: the status
/// code and the body (status 0 when the exchange failed).
pub fn http_exchange(
    addr: std::net::SocketAddr,
    request: &str,
    read_timeout: Duration,
) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(read_timeout));
    if s.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |b| b.1).to_owned();
    (status, body)
}

// --- the fakes' plumbing ----------------------------------------------------------------------

/// Binds `addr` (`127.0.0.1:0` for any free port), retrying every 20 ms for up to 10 s while
/// the port is taken: a fake restarted on the port of one just closed. Panics naming `what`.
pub fn bind_retrying(addr: SocketAddr, what: &str) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(e) if Instant::now() >= deadline => panic!("{what} cannot listen on {addr}: {e}"),
            Err(_) => sleep(Duration::from_millis(20)),
        }
    }
}

/// `127.0.0.1:port`.
pub fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A thread that takes connections off a listener and hands each (blocking) to `on_accept`,
/// until stopped: the accept loop of the fakes that speak plain TCP. Dropping it stops it.
pub struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Accepts on `listener` (made non-blocking, so the loop sees `stop` within 5 ms).
    pub fn spawn(
        listener: TcpListener,
        mut on_accept: impl FnMut(TcpStream) + Send + 'static,
    ) -> Acceptor {
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream
                                .set_nonblocking(false)
                                .expect("a blocking connection");
                            on_accept(stream);
                        }
                        Err(_) => sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Acceptor {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops accepting and closes the listener (connecting is refused from then on); returns
    /// once the thread has ended, with its panic if it panicked.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take()
            && let Err(panic) = t.join()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An async server on a thread of its own with its own tokio runtime, so that a test needs
/// no runtime. Dropping it stops the server and waits for the thread; connections still open
/// are cut when the runtime goes.
pub struct ServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Runs `serve(listener, stop)` on a runtime of `workers` threads; `stop` resolves when the
    /// `ServerThread` is dropped, and `serve` returns once it has stopped.
    pub fn spawn<F, Fut>(
        name: &str,
        workers: usize,
        listener: TcpListener,
        serve: F,
    ) -> ServerThread
    where
        F: FnOnce(tokio::net::TcpListener, tokio::sync::oneshot::Receiver<()>) -> Fut
            + Send
            + 'static,
        Fut: Future<Output = ()>,
    {
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                    serve(listener, stopped).await;
                });
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .expect("a server thread");
        ServerThread {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves the axum `app` on `listener` (see [`ServerThread`]) until dropped.
pub fn serve_axum(name: &'static str, listener: TcpListener, app: axum::Router) -> ServerThread {
    ServerThread::spawn(name, 1, listener, move |listener, stop| async move {
        tokio::select! {
            served = axum::serve(listener, app).into_future() => {
                served.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            _ = stop => {}
        }
    })
}

/// Waits until `pred` holds for what `state` guards, woken by `changed` (which whoever
/// changes the state notifies), at most `timeout`; whether it held. `pred` runs with the lock
/// held.
pub fn wait_on<T>(
    state: &Mutex<T>,
    changed: &Condvar,
    mut pred: impl FnMut(&T) -> bool,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut guard = lock(state);
    loop {
        if pred(&guard) {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        guard = changed
            .wait_timeout(guard, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

// --- writing log files ------------------------------------------------------------------------

/// Bytes of padding after the number, so lines are about 80 bytes long.
const PADDING: usize = 40;

/// Writes sequence-numbered chat lines to one log file, through an `O_APPEND` handle as Factorio
/// does, and remembers which sequence numbers it completed.
pub struct SeqWriter {
    /// The path the writer opened (and re-creates after a rename rotation).
    pub path: PathBuf,
    id: String,
    file: File,
    /// The handle of the file before the last `rotate_rename`, still open.
    old: Option<File>,
    next: u64,
    written: Vec<u64>,
    /// The rest of a line begun with `write_partial`.
    pending: Option<(u64, Vec<u8>)>,
    windows: Vec<Range<u64>>,
}

impl SeqWriter {
    /// Opens (creating it if needed) `path` for appending; lines carry `id` as the player name,
    /// which must not contain `:`.
    pub fn create(path: impl Into<PathBuf>, id: &str) -> SeqWriter {
        let path = path.into();
        assert!(
            !id.contains(':') && !id.contains(' '),
            "bad writer id {id:?}"
        );
        SeqWriter {
            file: open_append(&path),
            path,
            id: id.to_owned(),
            old: None,
            next: 1,
            written: Vec::new(),
            pending: None,
            windows: Vec::new(),
        }
    }

    /// The writer's id (the `player` of its chat lines).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The full line for `seq`, without its newline.
    pub fn line(&self, seq: u64) -> String {
        format!(
            "2025-10-08 08:58:34 [CHAT] {}: seq={seq:06} {}",
            self.id,
            "x".repeat(PADDING)
        )
    }

    /// Every sequence number written as a complete line, in order.
    pub fn written(&self) -> &[u64] {
        &self.written
    }

    /// The sequence number the next line will get.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// The copy→truncate windows of every `copytruncate` so far.
    pub fn windows(&self) -> &[Range<u64>] {
        &self.windows
    }

    /// Writes the next line whole, in one `write`. Returns its number.
    pub fn write_line(&mut self) -> u64 {
        let seq = self.take_seq();
        let line = format!("{}\n", self.line(seq));
        write_all(&mut self.file, line.as_bytes(), &self.path);
        self.written.push(seq);
        seq
    }

    /// Writes `n` lines in one `write`. Returns their numbers.
    pub fn write_lines(&mut self, n: usize) -> Range<u64> {
        let (seqs, buf) = self.next_lines(n);
        write_all(&mut self.file, buf.as_bytes(), &self.path);
        self.written.extend(seqs.clone());
        seqs
    }

    /// Numbers and formats the next `n` lines.
    fn next_lines(&mut self, n: usize) -> (Range<u64>, String) {
        let first = self.next;
        let mut buf = String::new();
        for _ in 0..n {
            let seq = self.take_seq();
            buf.push_str(&self.line(seq));
            buf.push('\n');
        }
        (first..self.next, buf)
    }

    /// Writes the first `at` bytes of the next line; `finish_partial` writes the rest.
    pub fn write_partial(&mut self, at: usize) -> u64 {
        assert!(self.pending.is_none(), "a partial line is already pending");
        let seq = self.take_seq();
        let line = format!("{}\n", self.line(seq));
        assert!(
            at > 0 && at < line.len() - 1,
            "split point {at} is not inside the line"
        );
        write_all(&mut self.file, &line.as_bytes()[..at], &self.path);
        self.pending = Some((seq, line.as_bytes()[at..].to_vec()));
        seq
    }

    /// Writes the rest of the line begun with `write_partial`, newline included.
    pub fn finish_partial(&mut self) -> u64 {
        let (seq, rest) = self.pending.take().expect("no partial line is pending");
        write_all(&mut self.file, &rest, &self.path);
        self.written.push(seq);
        seq
    }

    /// Writes bytes as they are (not counted as a sequence line).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        write_all(&mut self.file, bytes, &self.path);
    }

    /// Rename rotation: renames the file to `to` (replacing what is there), keeps the old handle
    /// open for `write_line_old`, and creates a new, empty file at the original path.
    pub fn rotate_rename(&mut self, to: &Path) {
        fs::rename(&self.path, to).unwrap_or_else(|e| {
            panic!("renaming {} to {}: {e}", self.path.display(), to.display())
        });
        let new = open_append(&self.path);
        self.old = Some(std::mem::replace(&mut self.file, new));
    }

    /// Writes the next line to the handle the last `rotate_rename` kept open.
    pub fn write_line_old(&mut self) -> u64 {
        let seq = self.take_seq();
        let line = format!("{}\n", self.line(seq));
        let old = self.old.as_mut().expect("no rotate_rename before");
        write_all(old, line.as_bytes(), Path::new("<old handle>"));
        self.written.push(seq);
        seq
    }

    /// copytruncate as logrotate does it: copies the file to `copy_to`, then (as if the copy
    /// took `copy_time` while the writer went on) writes `lines_during_copy` more lines paced
    /// over `copy_time`, then truncates the original in place with `set_len(0)`. The lines
    /// written from the start of the copy to the truncation are in the original only until the
    /// truncation: they are recorded as the window, and returned.
    pub fn copytruncate(
        &mut self,
        copy_to: &Path,
        lines_during_copy: usize,
        copy_time: Duration,
    ) -> Range<u64> {
        let start = self.next;
        let began = Instant::now();
        fs::copy(&self.path, copy_to).unwrap_or_else(|e| {
            panic!(
                "copying {} to {}: {e}",
                self.path.display(),
                copy_to.display()
            )
        });
        for i in 0..lines_during_copy {
            let due = began + copy_time.mul_f64(i as f64 / lines_during_copy as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                sleep(wait);
            }
            self.write_line();
        }
        if let Some(wait) = (began + copy_time).checked_duration_since(Instant::now()) {
            sleep(wait);
        }
        self.file
            .set_len(0)
            .unwrap_or_else(|e| panic!("truncating {}: {e}", self.path.display()));
        let window = start..self.next;
        self.windows.push(window.clone());
        window
    }

    /// Truncates the file in place and at once writes `n` new lines in one `write`: the lines
    /// are formatted first, so the two system calls follow each other within microseconds.
    pub fn truncate_and_write(&mut self, n: usize) -> Range<u64> {
        let (seqs, buf) = self.next_lines(n);
        self.truncate();
        write_all(&mut self.file, buf.as_bytes(), &self.path);
        self.written.extend(seqs.clone());
        seqs
    }

    /// Truncates the file in place (`> file`).
    pub fn truncate(&mut self) {
        self.file
            .set_len(0)
            .unwrap_or_else(|e| panic!("truncating {}: {e}", self.path.display()));
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        seq
    }
}

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {} for appending: {e}", path.display()))
}

fn write_all(file: &mut File, bytes: &[u8], path: &Path) {
    file.write_all(bytes)
        .unwrap_or_else(|e| panic!("writing to {}: {e}", path.display()));
}

/// Runs `step(i)` for `i` in `0..n`, paced at `per_sec` calls a second (in bursts of about
/// 10 ms, so the pace holds without sleeping for every call).
pub fn paced(n: usize, per_sec: u32, mut step: impl FnMut(usize)) {
    let start = Instant::now();
    let per_burst = (per_sec as usize / 100).max(1);
    let mut i = 0;
    while i < n {
        let due = start + Duration::from_secs_f64(i as f64 / f64::from(per_sec));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            sleep(wait);
        }
        for _ in 0..per_burst.min(n - i) {
            step(i);
            i += 1;
        }
    }
}

// --- a test's directories ---------------------------------------------------------------------

/// The `[tail]` section of every test config: fast discovery, polling, checkpoints and reloads.
const FAST: &str = "[tail]\n\
                    discovery_interval_ms = 100\n\
                    rotate_wait_ms = 500\n\
                    poll_interval_max_ms = 50\n\
                    checkpoint_interval_ms = 100\n\
                    record_flush_ms = 200\n\
                    reload_poll_interval_ms = 200\n";

/// A test's directories: a temporary directory (removed when dropped) holding `logs/`
/// (created), `state/` (not created: factorio-isr creates it) and the config file
/// `factorio-isr.toml`. Made by [`Env::new`] or [`Env::builder`].
pub struct Env {
    tmp: TempDir,
    /// `logs/`, the log directory `run` follows.
    pub logs: PathBuf,
    /// `state/`, the `--state-dir`.
    pub state: PathBuf,
    /// The config file.
    pub config: PathBuf,
    from_beginning: bool,
}

impl Env {
    /// The fast timings of [`EnvBuilder`] and nothing else; `run` without `--from-beginning`.
    pub fn new() -> Env {
        Env::builder().build()
    }

    /// A new temporary directory, whose config and command line the options set.
    pub fn builder() -> EnvBuilder {
        EnvBuilder {
            tmp: tempfile::tempdir().expect("a temporary directory"),
            tail_extra: String::new(),
            logstash: None,
            config_text: None,
            from_beginning: false,
        }
    }

    /// The temporary directory itself (for files beside `logs/`: staged files, patterns).
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// The path of the log file `name` in `logs/`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs.join(name)
    }

    /// Copies the shipped pattern files into `patterns/` (created) beside `logs/`; returns its
    /// path, for `--patterns`.
    pub fn shipped_patterns(&self) -> PathBuf {
        let patterns = self.root().join("patterns");
        fs::create_dir(&patterns).expect("creating patterns/");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("patterns");
        for entry in fs::read_dir(&shipped).expect("the shipped patterns") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let name = path.file_name().expect("a file name");
                fs::copy(&path, patterns.join(name))
                    .unwrap_or_else(|e| panic!("copying {}: {e}", path.display()));
            }
        }
        patterns
    }

    /// `factorio-isr run logs/ --state-dir state/ --server test --config factorio-isr.toml`,
    /// plus `--from-beginning` when the builder asked for it.
    pub fn isr(&self) -> IsrCmd {
        let cmd = IsrCmd::new(&self.logs, &self.state).config(&self.config);
        if self.from_beginning {
            cmd.start_at_beginning()
        } else {
            cmd
        }
    }
}

/// The options of an [`Env`]. The config is the fast `[tail]` timings (new files found within
/// 100 ms, polls at most 50 ms apart, checkpoints every 100 ms, records flushed after 200 ms,
/// pattern files looked at every 200 ms, a rotated file kept 500 ms) plus what
/// [`EnvBuilder::tail`] and [`EnvBuilder::logstash`] add, unless [`EnvBuilder::config_text`]
/// replaces it all.
pub struct EnvBuilder {
    tmp: TempDir,
    tail_extra: String,
    logstash: Option<String>,
    config_text: Option<String>,
    from_beginning: bool,
}

impl EnvBuilder {
    /// The temporary directory, for files the config names (certificates) made before it.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// More `[tail]` lines.
    pub fn tail(mut self, lines: &str) -> EnvBuilder {
        self.tail_extra.push_str(lines);
        self.tail_extra.push('\n');
        self
    }

    /// A `[logstash]` section with small backoffs (20 ms, at most 200 ms), plus `lines`
    /// (another call adds more lines to the same section; `lines` may end with sub-tables
    /// such as `[logstash.tls]`).
    pub fn logstash(mut self, lines: &str) -> EnvBuilder {
        let section = self.logstash.get_or_insert_with(|| {
            "[logstash]\nbackoff_initial_ms = 20\nbackoff_max_ms = 200\n".to_owned()
        });
        section.push_str(lines);
        section.push('\n');
        self
    }

    /// A `[logstash]` section with these backoffs instead of the small ones of
    /// [`EnvBuilder::logstash`] (which adds lines to it when called after).
    pub fn logstash_backoff(mut self, initial_ms: u64, max_ms: u64) -> EnvBuilder {
        assert!(self.logstash.is_none(), "logstash_backoff before logstash");
        self.logstash = Some(format!(
            "[logstash]\nbackoff_initial_ms = {initial_ms}\nbackoff_max_ms = {max_ms}\n"
        ));
        self
    }

    /// The whole config file instead of the fast timings and sections.
    pub fn config_text(mut self, text: impl Into<String>) -> EnvBuilder {
        self.config_text = Some(text.into());
        self
    }

    /// [`Env::isr`] adds `--from-beginning`: for logs created after the start, possibly before
    /// the first scan, which would read them from their end otherwise. (A restart resumes from
    /// checkpoints whatever the flag says.)
    pub fn start_at_beginning(mut self) -> EnvBuilder {
        self.from_beginning = true;
        self
    }

    /// Creates `logs/` and writes the config.
    pub fn build(self) -> Env {
        let root = self.tmp.path();
        let logs = root.join("logs");
        fs::create_dir(&logs).expect("creating logs/");
        let text = match self.config_text {
            Some(text) => {
                assert!(
                    self.tail_extra.is_empty() && self.logstash.is_none(),
                    "config_text replaces the [tail] and [logstash] options"
                );
                text
            }
            None => format!(
                "{FAST}{}{}",
                self.tail_extra,
                self.logstash.unwrap_or_default()
            ),
        };
        let config = root.join("factorio-isr.toml");
        fs::write(&config, text).unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        Env {
            logs,
            state: root.join("state"),
            config,
            from_beginning: self.from_beginning,
            tmp: self.tmp,
        }
    }
}

// --- the shipped fixtures ---------------------------------------------------------------------

/// Fixtures whose events together cover every kind of line (console, engine 1.x and 2.0,
/// companion mods): what a sink's end-to-end test sends through.
pub const FIXTURES: &[&str] = &[
    "console.log",
    "server-2.0-lifecycle.log",
    "engine-events-1.x.log",
    "companion-mods.log",
];

/// Copies the fixtures `names` into `env`'s `logs/` and returns the events `factorio-isr
/// replay` makes of the copies (`--server test`, UTC), in order: what `run` following them
/// must deliver. Fails the test if `replay` fails.
pub fn fixture_events(env: &Env, names: &[&str]) -> Vec<Value> {
    let files: Vec<PathBuf> = names
        .iter()
        .map(|name| {
            let to = env.log(name);
            let from = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(name);
            fs::copy(&from, &to).unwrap_or_else(|e| panic!("copying {}: {e}", from.display()));
            to
        })
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .arg("replay")
        .args(&files)
        .args(["--server", "test"])
        .env("TZ", "UTC")
        .env_remove("LOKI_URL")
        .output()
        .expect("run replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("replay prints UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("replay prints JSON lines"))
        .collect()
}

// --- running factorio-isr ---------------------------------------------------------------------

/// How to start `factorio-isr run`.
pub struct IsrCmd {
    dirs: Vec<PathBuf>,
    state: PathBuf,
    server: Option<String>,
    from_beginning: bool,
    config: Option<PathBuf>,
    extra: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    open_file_limit: Option<(u64, u64)>,
}

impl IsrCmd {
    /// `factorio-isr run DIR --state-dir STATE --server test`.
    pub fn new(dir: &Path, state: &Path) -> IsrCmd {
        IsrCmd {
            dirs: vec![dir.to_owned()],
            state: state.to_owned(),
            server: Some("test".to_owned()),
            from_beginning: false,
            config: None,
            extra: Vec::new(),
            envs: Vec::new(),
            open_file_limit: None,
        }
    }

    /// Another log directory (another server).
    pub fn dir(mut self, dir: &Path) -> IsrCmd {
        self.dirs.push(dir.to_owned());
        self
    }

    /// Leaves out `--server`, so each directory is tagged with its name.
    pub fn without_server(mut self) -> IsrCmd {
        self.server = None;
        self
    }

    /// Adds `--from-beginning`.
    pub fn start_at_beginning(mut self) -> IsrCmd {
        self.from_beginning = true;
        self
    }

    /// Adds `--config FILE`.
    pub fn config(mut self, file: &Path) -> IsrCmd {
        self.config = Some(file.to_owned());
        self
    }

    /// Adds any other argument.
    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> IsrCmd {
        self.extra.push(arg.as_ref().to_owned());
        self
    }

    /// Adds `--logstash ADDR`.
    pub fn logstash(self, addr: impl std::fmt::Display) -> IsrCmd {
        self.arg("--logstash").arg(addr.to_string())
    }

    /// Sets an environment variable of the process.
    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> IsrCmd {
        self.envs
            .push((OsString::from(key), value.as_ref().to_owned()));
        self
    }

    /// Starts the process with the open-file limits (`RLIMIT_NOFILE`) `soft` and `hard`, set by
    /// `sh` before it `exec`s the binary (the process id stays the binary's).
    pub fn open_file_limit(mut self, soft: u64, hard: u64) -> IsrCmd {
        self.open_file_limit = Some((soft, hard));
        self
    }

    /// Starts the process.
    pub fn spawn(&self) -> Isr {
        let bin = env!("CARGO_BIN_EXE_factorio-isr");
        let mut cmd = match self.open_file_limit {
            None => Command::new(bin),
            Some((soft, hard)) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!(
                        "ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$0\" \"$@\""
                    ))
                    .arg(bin);
                sh
            }
        };
        cmd.arg("run")
            .args(&self.dirs)
            .arg("--state-dir")
            .arg(&self.state);
        if let Some(server) = &self.server {
            cmd.arg("--server").arg(server);
        }
        if self.from_beginning {
            cmd.arg("--from-beginning");
        }
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("LOG_LEVEL", "info")
            .env_remove("SERVICE_NAME")
            .env_remove("SERVICE_VERSION")
            .env_remove("SERVICE_ENVIRONMENT")
            .env_remove("LOGSTASH_ADDR")
            .env_remove("LOGSTASH_PROTOCOL")
            .env_remove("METRICS_ENABLED")
            .env_remove("DISCORD_WEBHOOK_URL")
            .env_remove("LOKI_URL")
            // Tests run side by side: each admin server on a port of its own.
            .env("METRICS_PORT", "0")
            // Readable log lines, which tests search; a test may ask for JSON.
            .env("LOG_FORMAT", "console")
            .env_remove("TRACES_ENABLED")
            .env_remove("TRACES_EXPORTER")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT")
            // Log dates are read in the process's zone: the same on every machine (a test may
            // set another).
            .env("TZ", "UTC")
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.spawn().expect("the factorio-isr binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr_pipe = child.stderr.take().expect("stderr is piped");

        let events = Arc::new(Mutex::new(Vec::new()));
        let bad_lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let out_thread = {
            let events = events.clone();
            let bad_lines = bad_lines.clone();
            thread::spawn(move || read_events(stdout, &events, &bad_lines))
        };
        let err_thread = {
            let stderr = stderr.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = stderr_pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    lock(&stderr).extend_from_slice(&buf[..n]);
                }
            })
        };
        Isr {
            pid: child.id(),
            child,
            events,
            bad_lines,
            stderr,
            readers: vec![out_thread, err_thread],
            status: None,
        }
    }
}

fn read_events(stdout: ChildStdout, events: &Mutex<Vec<Value>>, bad: &Mutex<Vec<String>>) {
    for line in BufReader::new(stdout).split(b'\n') {
        let Ok(line) = line else { break };
        match serde_json::from_slice::<Value>(&line) {
            Ok(v) if v.is_object() => lock(events).push(v),
            _ => lock(bad).push(String::from_utf8_lossy(&line).chars().take(300).collect()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running `factorio-isr run`, its events and its stderr. Killed when dropped.
pub struct Isr {
    child: Child,
    pid: u32,
    events: Arc<Mutex<Vec<Value>>>,
    bad_lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Isr {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits until `pred` holds for the events so far, checking every 20 ms. Returns whether it
    /// did within `timeout`.
    pub fn wait_for(&self, mut pred: impl FnMut(&[Value]) -> bool, timeout: Duration) -> bool {
        wait_until(|| pred(&self.events()), timeout)
    }

    /// Waits until stderr contains `needle`. Returns whether it did within `timeout`.
    pub fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_stderr_count(needle, 1, timeout)
    }

    /// Waits until stderr contains `needle` at least `n` times.
    pub fn wait_for_stderr_count(&self, needle: &str, n: usize, timeout: Duration) -> bool {
        wait_until(|| self.stderr().matches(needle).count() >= n, timeout)
    }

    /// Waits until `pred` holds for the events so far, checking every 20 ms, for as long as
    /// events keep coming: gives up once none came for `stall`. Returns whether it held.
    pub fn wait_while_events_come(
        &self,
        mut pred: impl FnMut(&[Value]) -> bool,
        stall: Duration,
    ) -> bool {
        wait_while_progressing(|| pred(&self.events()), || lock(&self.events).len(), stall)
    }

    /// Waits until every number of `want` has a chat event from writer `id`, for as long as
    /// events keep coming: gives up once none came for `stall` (a loaded machine takes longer,
    /// but only a stall is a failure).
    pub fn wait_for_seqs(&self, id: &str, want: &[u64], stall: Duration) -> bool {
        self.wait_while_events_come(
            |events| {
                let got: HashSet<u64> = seqs_in(events, id).into_iter().collect();
                want.iter().all(|s| got.contains(s))
            },
            stall,
        )
    }

    /// The events printed so far. Panics if stdout held a line that is not a JSON object.
    pub fn events(&self) -> Vec<Value> {
        let bad = lock(&self.bad_lines);
        assert!(
            bad.is_empty(),
            "stdout lines that are not JSON objects: {:?}",
            &bad[..bad.len().min(3)]
        );
        lock(&self.events).clone()
    }

    /// The sequence numbers of writer `id`'s chat events, in the order they were printed.
    pub fn seqs(&self, id: &str) -> Vec<u64> {
        seqs_in(&self.events(), id)
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&lock(&self.stderr)).into_owned()
    }

    /// The last 40 lines of stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let s = self.stderr();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The address of the admin server (/metrics, /healthz, /ready), from the log line that
    /// announces it.
    pub fn admin_addr(&self) -> std::net::SocketAddr {
        let needle = "Serving /metrics";
        assert!(
            self.wait_for_stderr(needle, Duration::from_secs(10)),
            "no admin server announced:\n{}",
            self.stderr()
        );
        let stderr = self.stderr();
        let line = stderr
            .lines()
            .find(|l| l.contains(needle))
            .expect("the line was seen");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("address="))
            .unwrap_or_else(|| panic!("no address= in {line}"));
        addr.parse()
            .unwrap_or_else(|_| panic!("bad address in {line}"))
    }

    /// GETs `path` from the admin server: the status code and the body.
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http_get(self.admin_addr(), path)
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Waits up to `timeout` for the process to exit; once it has, waits for its stdout and
    /// stderr to be read to their end.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.status {
                return Some(s);
            }
            if let Some(s) = self.child.try_wait().expect("the child can be waited on") {
                self.status = Some(s);
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Stops the process with SIGSTOP and waits until every thread of it is stopped, so that
    /// it looks at no file until `thaw`.
    pub fn freeze(&self) {
        self.signal("STOP");
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.all_threads_stopped() {
            assert!(
                Instant::now() < deadline,
                "SIGSTOP did not stop {}",
                self.pid
            );
            sleep(Duration::from_millis(1));
        }
    }

    /// Lets a frozen process go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn all_threads_stopped(&self) -> bool {
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", self.pid)) else {
            return false;
        };
        tasks.filter_map(Result::ok).all(|t| {
            fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                let state = stat[stat.rfind(')').unwrap_or(0) + 1..].trim_start();
                state.starts_with('T') || state.starts_with('t')
            })
        })
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.pid.to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{name} {} failed", self.pid);
    }

    /// SIGTERM, then the exit status within `timeout`; panics (with stderr) if it does not exit.
    pub fn stop(&mut self, timeout: Duration) -> ExitStatus {
        self.sigterm();
        let started = Instant::now();
        self.wait_exit(timeout).unwrap_or_else(|| {
            panic!(
                "factorio-isr did not exit within {:?} of SIGTERM ({:?} waited); stderr:\n{}",
                timeout,
                started.elapsed(),
                self.stderr()
            )
        })
    }

    /// Resident set size and its peak (`VmRSS`, `VmHWM` of `/proc/PID/status`), in KiB.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid))
            .expect("/proc/PID/status is readable");
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in /proc/PID/status"))
        };
        (kib("VmRSS:"), kib("VmHWM:"))
    }

    /// CPU time used so far (user + system), in clock ticks (`/proc/PID/stat`).
    pub fn cpu_ticks(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .expect("/proc/PID/stat is readable");
        // Fields after the command name, which is in parentheses and may hold spaces: the
        // first is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
        let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let n = |i: usize| fields[i].parse::<u64>().expect("a tick count");
        n(11) + n(12)
    }

    /// The targets of the process's open file descriptors (`/proc/PID/fd`).
    pub fn fd_targets(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(format!("/proc/{}/fd", self.pid)) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|e| fs::read_link(e.path()).ok())
            .map(|t| t.to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Isr {
    fn drop(&mut self) {
        // SIGKILL ends a frozen (SIGSTOP) process too.
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The sequence numbers of writer `id`'s chat events in `events`, in order.
pub fn seqs_in(events: &[Value], id: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["event_type"] == "chat" && e["fields"]["player"] == id)
        .filter_map(|e| {
            let msg = e["fields"]["message"].as_str()?;
            let digits = msg.strip_prefix("seq=")?.split(' ').next()?;
            digits.parse().ok()
        })
        .collect()
}

/// The clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`).
pub fn clock_ticks_per_sec() -> u64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("getconf runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("getconf CLK_TCK prints a number")
}

// --- checking sequence numbers ----------------------------------------------------------------

/// Checks that every number of `once` occurs exactly once in `got`, every number of `at_most_once`
/// at most once, and nothing else occurs. Returns a compact description of what is wrong.
pub fn check_seqs(once: &[u64], at_most_once: &[u64], got: &[u64]) -> Result<(), String> {
    let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
    for &s in got {
        *counts.entry(s).or_default() += 1;
    }
    let missing: Vec<u64> = once
        .iter()
        .copied()
        .filter(|s| !counts.contains_key(s))
        .collect();
    let duplicated: Vec<(u64, usize)> = counts
        .iter()
        .filter(|&(_, &n)| n > 1)
        .map(|(&s, &n)| (s, n))
        .collect();
    let known: HashSet<u64> = once.iter().chain(at_most_once).copied().collect();
    let unexpected: Vec<u64> = counts
        .keys()
        .copied()
        .filter(|s| !known.contains(s))
        .collect();
    if missing.is_empty() && duplicated.is_empty() && unexpected.is_empty() {
        return Ok(());
    }
    let mut report = format!(
        "{} events for {} expected numbers ({} more allowed at most once):",
        got.len(),
        once.len(),
        at_most_once.len()
    );
    if !missing.is_empty() {
        report += &format!("\n  missing ({}): {}", missing.len(), ranges(&missing));
    }
    if !duplicated.is_empty() {
        let seqs: Vec<u64> = duplicated.iter().map(|d| d.0).collect();
        let most = duplicated.iter().map(|d| d.1).max().unwrap_or(0);
        report += &format!(
            "\n  duplicated ({}, up to {most} times each): {}",
            duplicated.len(),
            ranges(&seqs)
        );
    }
    if !unexpected.is_empty() {
        report += &format!(
            "\n  never written ({}): {}",
            unexpected.len(),
            ranges(&unexpected)
        );
    }
    Err(report)
}

/// Asserts that every number of `want` occurs exactly once in `got` and nothing else does;
/// the message names what is missing, duplicated or unknown, then `context` (stderr, say).
#[track_caller]
pub fn assert_each_once(what: &str, want: &[u64], got: &[u64], context: &str) {
    if let Err(report) = check_seqs(want, &[], got) {
        panic!("{what}: {report}\n{context}");
    }
}

/// `3, 5-9, 12` for `[3, 5, 6, 7, 8, 9, 12]` (sorted and deduplicated first).
pub fn ranges(nums: &[u64]) -> String {
    let mut v = nums.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        while i + 1 < v.len() && v[i + 1] == v[i] + 1 {
            i += 1;
        }
        parts.push(if v[i] == start {
            start.to_string()
        } else {
            format!("{start}-{}", v[i])
        });
        i += 1;
    }
    parts.join(", ")
}
