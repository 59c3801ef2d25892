//! A fake Logstash: what its `tcp` input with the `json_lines` codec does with what
//! `factorio-isr run --logstash ADDR` sends, and no more.
//!
//! It listens on 127.0.0.1 (an OS-assigned port), accepts connections on a thread, reads each
//! connection on its own thread through a buffered reader, splits on `\n`, ignores blank lines
//! and parses every other line as JSON. A line that does not parse is a parse failure (Logstash
//! tags such an event `_jsonparsefailure`); a line that parses but is not an object with every
//! key of the event schema is a schema failure. Events are recorded in arrival order.
//!
//! Controls: [`Logstash::pause_reading`] / [`Logstash::resume_reading`] (accepted connections
//! are not read meanwhile: the kernel buffers fill and the writer blocks),
//! [`Logstash::pause_after`], [`Logstash::kill`] (the listener and every connection closed, as
//! a server closes them: nothing in flight is lost), [`Logstash::crash`] (closed at once: what
//! the kernel holds unread is lost and the peer gets a reset) and [`Logstash::restart`]
//! (listening again on the same port).
//!
//! [`Logstash::start_resetting`] puts a TCP proxy with no healthy backend in front: the first
//! connections are accepted, what arrives first is read and thrown away, and the connection is
//! reset (`SO_LINGER` 0); the ones after reach the fake Logstash.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, sleep};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::schema::EVENT_KEYS;
use super::{Acceptor, bind_retrying, localhost, lock};

/// How long [`Logstash::kill`] waits for a peer to close its side of a connection.
pub const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// A chat event of a [`super::SeqWriter`]: its writer, its number, the connection it came on
/// (1 for the first connection accepted, 2 for the next…) and its line's length in bytes
/// (newline included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chat {
    pub conn: usize,
    pub player: String,
    pub seq: u64,
    pub bytes: usize,
}

/// Everything received, in arrival order.
#[derive(Default)]
pub struct Received {
    /// Every event (empty when the fake was started with [`Logstash::start_lean`]).
    pub events: Vec<Value>,
    /// Every chat event with a sequence number, lean or not.
    pub chats: Vec<Chat>,
    /// Events counted by `event_type`.
    pub by_type: HashMap<String, usize>,
    /// Non-blank lines received.
    pub lines: usize,
    /// Bytes taken off the connections as lines (newlines and blank lines included).
    pub bytes: usize,
    /// Lines that are not JSON (the first 300 characters of each).
    pub parse_failures: Vec<String>,
    /// JSON lines that are not objects with every schema key (the first 300 characters).
    pub schema_failures: Vec<String>,
    per_player: HashMap<String, usize>,
    /// Per writer, the numbers that arrived, for [`Logstash::wait_for_seqs`]: a look-up per
    /// wanted number rather than a set of every event built under the lock the readers need.
    seen: HashMap<String, HashSet<u64>>,
}

impl Received {
    /// The sequence numbers of writer `id`'s chat events, in arrival order.
    pub fn seqs(&self, id: &str) -> Vec<u64> {
        self.chats
            .iter()
            .filter(|c| c.player == id)
            .map(|c| c.seq)
            .collect()
    }

    /// Records one non-blank line (without its newline) that took `raw_len` bytes.
    fn record(&mut self, conn: usize, line: &[u8], raw_len: usize, keep: bool) {
        self.lines += 1;
        let excerpt = || String::from_utf8_lossy(line).chars().take(300).collect();
        let value: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(_) => {
                self.parse_failures.push(excerpt());
                return;
            }
        };
        let complete = value
            .as_object()
            .is_some_and(|o| EVENT_KEYS.iter().all(|k| o.contains_key(*k)));
        if !complete {
            self.schema_failures.push(excerpt());
        }
        if let Some(t) = value["event_type"].as_str() {
            *self.by_type.entry(t.to_owned()).or_default() += 1;
        }
        if let Some((player, seq)) = chat_seq(&value) {
            *self.per_player.entry(player.to_owned()).or_default() += 1;
            self.seen.entry(player.to_owned()).or_default().insert(seq);
            self.chats.push(Chat {
                conn,
                player: player.to_owned(),
                seq,
                bytes: raw_len,
            });
        }
        if keep {
            self.events.push(value);
        }
    }
}

/// The writer and number of a [`super::SeqWriter`] chat event (as [`super::seqs_in`] reads).
pub fn chat_seq(e: &Value) -> Option<(&str, u64)> {
    if e["event_type"] != "chat" {
        return None;
    }
    let player = e["fields"]["player"].as_str()?;
    let msg = e["fields"]["message"].as_str()?;
    let digits = msg.strip_prefix("seq=")?.split(' ').next()?;
    Some((player, digits.parse().ok()?))
}

struct Shared {
    keep_events: bool,
    received: Mutex<Received>,
    paused: Mutex<bool>,
    unpaused: Condvar,
    /// Reading pauses once this many lines were received (`usize::MAX`: never).
    pause_at: AtomicUsize,
    /// Set by `crash`: readers stop at once and record nothing more.
    discard: AtomicBool,
    accepted: AtomicUsize,
    /// Bytes read from connections (some may still wait in a reader's buffer).
    socket_bytes: AtomicUsize,
    /// Connections `kill` had to cut off: their peer had not closed within `CLOSE_GRACE`.
    cut_off: AtomicUsize,
    /// Connections still to be reset after their first read (`start_resetting`).
    resets_left: AtomicUsize,
    /// When each reset was done, in order.
    resets: Mutex<Vec<Instant>>,
    /// When each connection was accepted, in order.
    accept_times: Mutex<Vec<Instant>>,
    /// Every accepted connection not yet closed by `kill`: a handle to shut it down, and its
    /// reader thread.
    conns: Mutex<Vec<(TcpStream, JoinHandle<()>)>>,
}

impl Shared {
    fn wait_unpaused(&self) {
        let paused = lock(&self.paused);
        drop(
            self.unpaused
                .wait_while(paused, |p| *p)
                .unwrap_or_else(|p| p.into_inner()),
        );
    }

    fn set_paused(&self, paused: bool) {
        *lock(&self.paused) = paused;
        self.unpaused.notify_all();
    }
}

/// A fake Logstash `tcp` input with the `json_lines` codec. Closed when dropped.
pub struct Logstash {
    addr: SocketAddr,
    shared: Arc<Shared>,
    listening: Option<Acceptor>,
}

impl Logstash {
    /// Listens on `127.0.0.1:0` and records every event.
    pub fn start() -> Logstash {
        Logstash::bind(0, true)
    }

    /// Listens on `127.0.0.1:0`; every line is parsed and checked as with [`Logstash::start`],
    /// but only chat sequence numbers and counts are kept, not the events (millions of
    /// events).
    pub fn start_lean() -> Logstash {
        Logstash::bind(0, false)
    }

    /// Listens on `127.0.0.1:port` (retrying for up to 5 s while the port is busy).
    pub fn start_on(port: u16) -> Logstash {
        Logstash::bind(port, true)
    }

    /// As [`Logstash::start`] behind a proxy with no healthy backend for the first `resets`
    /// connections: each is accepted, what arrives first (up to 64 KiB, waiting at most 5 s)
    /// is read and dropped, and the connection is reset. Nothing of theirs is recorded.
    pub fn start_resetting(resets: usize) -> Logstash {
        let fake = Logstash::bind(0, true);
        fake.shared.resets_left.store(resets, Ordering::SeqCst);
        fake
    }

    fn bind(port: u16, keep_events: bool) -> Logstash {
        let shared = Arc::new(Shared {
            keep_events,
            received: Mutex::new(Received::default()),
            paused: Mutex::new(false),
            unpaused: Condvar::new(),
            pause_at: AtomicUsize::new(usize::MAX),
            discard: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            socket_bytes: AtomicUsize::new(0),
            cut_off: AtomicUsize::new(0),
            resets_left: AtomicUsize::new(0),
            resets: Mutex::new(Vec::new()),
            accept_times: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
        });
        let listener = bind_retrying(localhost(port), "the fake Logstash");
        Logstash {
            addr: listener.local_addr().expect("a bound listener's address"),
            listening: Some(listen(listener, &shared)),
            shared,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far, over every restart.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// When each connection was accepted (taken off the listen queue), in order.
    pub fn accept_times(&self) -> Vec<Instant> {
        lock(&self.shared.accept_times).clone()
    }

    /// When each reset of [`Logstash::start_resetting`] was done, in order.
    pub fn resets(&self) -> Vec<Instant> {
        lock(&self.shared.resets).clone()
    }

    /// Connections [`Logstash::kill`] had to cut off because their peer did not close its side
    /// within [`CLOSE_GRACE`] of the end-of-file.
    pub fn cut_off(&self) -> usize {
        self.shared.cut_off.load(Ordering::SeqCst)
    }

    /// Bytes read from the connections but not yet taken as lines: what waits in the readers'
    /// buffers (at most 64 KiB each).
    pub fn unconsumed(&self) -> usize {
        let read = self.shared.socket_bytes.load(Ordering::SeqCst);
        read - self.received().bytes
    }

    /// Accepted connections stop being read (a line already in the reader's buffer may still
    /// be taken): the kernel buffers fill up and the writer blocks.
    pub fn pause_reading(&self) {
        self.shared.set_paused(true);
    }

    /// Accepted connections are read again.
    pub fn resume_reading(&self) {
        self.shared.set_paused(false);
    }

    /// Reading pauses (as [`Logstash::pause_reading`]) as soon as `lines` lines in all were
    /// received.
    pub fn pause_after(&self, lines: usize) {
        self.shared.pause_at.store(lines, Ordering::SeqCst);
    }

    /// Logstash shuts down: the listener is closed (connecting is refused), and every accepted
    /// connection is closed as a server closes it: it sends end-of-file at once, reads on
    /// until the peer closes its side (which a peer does once it notices the end-of-file), then
    /// closes. A peer that has not closed within [`CLOSE_GRACE`] is cut off: what it writes
    /// afterwards is answered with a reset, and lost. Reading is resumed (a paused connection
    /// is drained too). Returns once every connection is closed.
    ///
    /// Reading on until the peer closes is what makes a close testable: a server that stops
    /// reading at the moment it closes loses whatever was in flight, and json_lines
    /// acknowledges nothing, so no sender can tell ([`Logstash::crash`] tests that).
    pub fn kill(&mut self) {
        self.close(true);
    }

    /// Logstash dies: the listener and every connection are closed at once. What the kernel
    /// holds unread on a connection is not read: it is lost, and the peer gets a reset.
    pub fn crash(&mut self) {
        self.close(false);
    }

    fn close(&mut self, graceful: bool) {
        if let Some(l) = self.listening.take() {
            l.stop();
        }
        let conns: Vec<_> = lock(&self.shared.conns).drain(..).collect();
        self.shared.pause_at.store(usize::MAX, Ordering::SeqCst);
        if graceful {
            for (stream, _) in &conns {
                let _ = stream.shutdown(Shutdown::Write);
            }
            self.resume_reading();
            let deadline = Instant::now() + CLOSE_GRACE;
            while Instant::now() < deadline && conns.iter().any(|(_, r)| !r.is_finished()) {
                sleep(Duration::from_millis(5));
            }
            let open = conns.iter().filter(|(_, r)| !r.is_finished()).count();
            self.shared.cut_off.fetch_add(open, Ordering::SeqCst);
        } else {
            self.shared.discard.store(true, Ordering::SeqCst);
        }
        // Readers still running stop at what is queued now (crash: at once).
        for (stream, _) in &conns {
            let _ = stream.shutdown(Shutdown::Both);
        }
        self.resume_reading();
        for (stream, reader) in conns {
            reader.join().expect("a reader thread");
            // The last handle: the socket closes now.
            drop(stream);
        }
        self.shared.discard.store(false, Ordering::SeqCst);
    }

    /// Listens again on the same port (after [`Logstash::kill`]), retrying for up to 5 s while
    /// the port is busy.
    pub fn restart(&mut self) {
        assert!(self.listening.is_none(), "restart without kill");
        let listener = bind_retrying(self.addr, "the fake Logstash");
        self.listening = Some(listen(listener, &self.shared));
    }

    /// What was received so far (locked: do not hold it long).
    pub fn received(&self) -> MutexGuard<'_, Received> {
        lock(&self.shared.received)
    }

    /// Every event received so far, in arrival order (empty for [`Logstash::start_lean`]).
    pub fn events(&self) -> Vec<Value> {
        self.received().events.clone()
    }

    /// The sequence numbers of writer `id`'s chat events, in arrival order.
    pub fn seqs(&self, id: &str) -> Vec<u64> {
        self.received().seqs(id)
    }

    /// Every chat event with a sequence number, in arrival order.
    pub fn chats(&self) -> Vec<Chat> {
        self.received().chats.clone()
    }

    /// Lines that did not parse as JSON.
    pub fn parse_failures(&self) -> Vec<String> {
        self.received().parse_failures.clone()
    }

    /// Lines that parsed but are not objects with every schema key.
    pub fn schema_failures(&self) -> Vec<String> {
        self.received().schema_failures.clone()
    }

    /// How many events of type `event_type` arrived.
    pub fn count_of_type(&self, event_type: &str) -> usize {
        self.received()
            .by_type
            .get(event_type)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until `pred` holds for the events so far (called with the lock held, every
    /// 20 ms). Returns whether it did within `timeout`.
    pub fn wait_for(&self, mut pred: impl FnMut(&[Value]) -> bool, timeout: Duration) -> bool {
        self.wait_until(|r| pred(&r.events), timeout)
    }

    /// Waits until `pred` holds for what was received (called with the lock held, every
    /// 20 ms). Returns whether it did within `timeout`.
    pub fn wait_until(&self, mut pred: impl FnMut(&Received) -> bool, timeout: Duration) -> bool {
        super::wait_until(|| pred(&self.received()), timeout)
    }

    /// Waits until every number of `want` has arrived from writer `id`, for as long as lines
    /// keep coming: gives up once none came for `stall` (a loaded machine takes longer, but
    /// only a stall is a failure).
    pub fn wait_for_seqs(&self, id: &str, want: &[u64], stall: Duration) -> bool {
        super::wait_while_progressing(
            || {
                let r = self.received();
                // Cheap test first: at least as many events as wanted.
                if r.per_player.get(id).copied().unwrap_or(0) < want.len() {
                    return false;
                }
                let Some(got) = r.seen.get(id) else {
                    return false;
                };
                want.iter().all(|s| got.contains(s))
            },
            || self.received().lines,
            stall,
        )
    }
}

impl Drop for Logstash {
    fn drop(&mut self) {
        self.crash();
    }
}

/// Accepts connections on `listener` until stopped.
fn listen(listener: TcpListener, shared: &Arc<Shared>) -> Acceptor {
    let shared = shared.clone();
    Acceptor::spawn(listener, move |stream| accept(stream, &shared))
}

/// One connection accepted: reset as a proxy without a backend would, or read on a thread of
/// its own.
fn accept(stream: TcpStream, shared: &Arc<Shared>) {
    lock(&shared.accept_times).push(Instant::now());
    let conn = shared.accepted.fetch_add(1, Ordering::SeqCst) + 1;
    let reset = shared
        .resets_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if reset {
        reset_after_first_read(stream);
        lock(&shared.resets).push(Instant::now());
        return;
    }
    let handle = stream.try_clone().expect("a second handle on a connection");
    let reader = {
        let shared = shared.clone();
        thread::spawn(move || read_connection(conn, stream, &shared))
    };
    lock(&shared.conns).push((handle, reader));
}

/// What a proxy without a backend does: takes what arrives first, then resets the connection.
fn reset_after_first_read(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.read(&mut vec![0u8; 64 * 1024]);
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0 on a connection");
    // Closing with a zero linger time sends a reset.
    drop(stream);
}

/// Reads one connection to its end, recording every non-blank line. What is left after the
/// last newline when the connection ends is recorded too (the codec flushes it on close).
fn read_connection(conn: usize, stream: TcpStream, shared: &Shared) {
    let mut reader = BufReader::with_capacity(64 * 1024, Counting(stream, shared));
    let mut line = Vec::new();
    loop {
        shared.wait_unpaused();
        if shared.discard.load(Ordering::SeqCst) {
            return;
        }
        line.clear();
        let ended = match reader.read_until(b'\n', &mut line) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => true,
        };
        if shared.discard.load(Ordering::SeqCst) {
            return;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let lines = {
            let mut r = lock(&shared.received);
            r.bytes += line.len();
            if !text.iter().all(u8::is_ascii_whitespace) {
                r.record(conn, text, line.len(), shared.keep_events);
            }
            r.lines
        };
        if lines >= shared.pause_at.load(Ordering::SeqCst) {
            shared.pause_at.store(usize::MAX, Ordering::SeqCst);
            shared.set_paused(true);
        }
        if ended {
            return;
        }
    }
}

/// A connection that counts the bytes read from it.
struct Counting<'a>(TcpStream, &'a Shared);

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.socket_bytes.fetch_add(n, Ordering::SeqCst);
        Ok(n)
    }
}
