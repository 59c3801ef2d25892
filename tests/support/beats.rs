//! A fake Logstash `beats` input: it decodes the beats protocol (Lumberjack v2) as Logstash's
//! input does and acknowledges windows as the test tells it to.
//!
//! It listens on 127.0.0.1 (an OS-assigned port) and reads each connection on its own thread.
//! Frames: `'2' 'W' count` starts a window; `'2' 'J' seq len JSON` is one event, numbered 1 to
//! `count` in order; `'2' 'C' len zlib` holds data frames compressed. Anything else (another
//! version byte, a number out of order, a `C` frame that does not inflate, JSON that does not
//! parse, an event that lacks a schema key) is recorded as a protocol or schema failure, and
//! the connection is closed, as Logstash closes it. Events are recorded as they arrive, before
//! any acknowledgement: that is what a Logstash that dies before acknowledging has taken.
//!
//! Acknowledgements ([`Acking`]): once a window is complete, after `delay` (keep-alives every
//! `keepalive` meanwhile, repeating the last number acknowledged, 0 when none, as Logstash and
//! `go-lumber` do), `'2' 'A' count`; with `every`, also `'2' 'A' k` after every `k` events
//! (partial acknowledgements). [`Beats::hold_acks`] stops acknowledging (keep-alives go on if
//! set) until [`Beats::release_acks`]. While a connection waits to acknowledge it reads
//! nothing more, as Logstash handles one window per connection at a time.
//!
//! Failures: [`Beats::crash_before_ack`] (the connection of the n-th complete window is closed
//! once that window is received, unacknowledged), [`Beats::crash_after_ack`] (closed right
//! after its acknowledgement), [`Beats::kill`] / [`Beats::restart`] (every connection reset
//! and the listener closed, then listening again on the same port). Per connection that ends,
//! the events it received but never acknowledged are counted
//! ([`Received::unacked_at_close`]): at most those may arrive twice.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::logstash::{Chat, chat_seq};
use super::schema::EVENT_KEYS;
use super::{Acceptor, bind_retrying, localhost, lock};

/// How the fake acknowledges.
#[derive(Clone, Copy, Debug, Default)]
pub struct Acking {
    /// Also acknowledge after every this many events of a window (partial acknowledgements).
    pub every: Option<u32>,
    /// Wait this long after a window is complete before acknowledging it (a slow pipeline).
    pub delay: Duration,
    /// While waiting to acknowledge, send a keep-alive this often.
    pub keepalive: Option<Duration>,
}

/// One window as it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSeen {
    /// The connection (1 for the first accepted).
    pub conn: usize,
    /// Events announced by its `W` frame.
    pub size: u32,
    /// Whether its events came in a `C` frame.
    pub compressed: bool,
}

/// Everything received, in arrival order.
#[derive(Default)]
pub struct Received {
    /// Every event.
    pub events: Vec<Value>,
    /// Every chat event with a sequence number.
    pub chats: Vec<Chat>,
    /// Every window.
    pub windows: Vec<WindowSeen>,
    /// Frames that break the protocol, and JSON that does not parse.
    pub protocol_failures: Vec<String>,
    /// Events that lack a key of the event schema (first 300 characters).
    pub schema_failures: Vec<String>,
    /// Acknowledgement frames sent (keep-alives included).
    pub acks_sent: usize,
    /// Keep-alives sent.
    pub keepalives_sent: usize,
    /// Over every connection that ended: events it received and never acknowledged.
    pub unacked_at_close: usize,
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

    fn record(&mut self, conn: usize, doc: &[u8]) {
        let value: Value = match serde_json::from_slice(doc) {
            Ok(v) => v,
            Err(e) => {
                let text: String = String::from_utf8_lossy(doc).chars().take(300).collect();
                self.protocol_failures
                    .push(format!("JSON that does not parse ({e}): {text}"));
                return;
            }
        };
        let complete = value
            .as_object()
            .is_some_and(|o| EVENT_KEYS.iter().all(|k| o.contains_key(*k)));
        if !complete {
            self.schema_failures
                .push(String::from_utf8_lossy(doc).chars().take(300).collect());
        }
        if let Some((player, seq)) = chat_seq(&value) {
            self.seen.entry(player.to_owned()).or_default().insert(seq);
            self.chats.push(Chat {
                conn,
                player: player.to_owned(),
                seq,
                bytes: doc.len(),
            });
        }
        self.events.push(value);
    }
}

#[derive(Default)]
struct Switches {
    acking: Acking,
    held: bool,
    /// Windows completed over every connection.
    windows_done: usize,
    crash_before_ack: Option<usize>,
    crash_after_ack: Option<usize>,
}

struct Shared {
    received: Mutex<Received>,
    switches: Mutex<Switches>,
    changed: Condvar,
    accepted: AtomicUsize,
    conns: Mutex<Vec<(TcpStream, JoinHandle<()>)>>,
    /// Set while [`Beats::kill`] closes the connections: one waiting to acknowledge stops.
    killing: AtomicBool,
}

/// A fake Logstash `beats` input. Closed when dropped.
pub struct Beats {
    addr: SocketAddr,
    shared: Arc<Shared>,
    listening: Option<Acceptor>,
}

impl Beats {
    /// Listens on `127.0.0.1:0`; acknowledges every window at once.
    pub fn start() -> Beats {
        Beats::start_with(Acking::default())
    }

    /// Listens on `127.0.0.1:0`; acknowledges as `acking` says.
    pub fn start_with(acking: Acking) -> Beats {
        let shared = Arc::new(Shared {
            received: Mutex::new(Received::default()),
            switches: Mutex::new(Switches {
                acking,
                ..Switches::default()
            }),
            changed: Condvar::new(),
            accepted: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
            killing: AtomicBool::new(false),
        });
        let listener = bind_retrying(localhost(0), "the fake beats input");
        Beats {
            addr: listener.local_addr().expect("a bound listener's address"),
            listening: Some(listen(listener, &shared)),
            shared,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far, over every restart.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Acknowledges as `acking` says from now on.
    pub fn set_acking(&self, acking: Acking) {
        lock(&self.shared.switches).acking = acking;
        self.shared.changed.notify_all();
    }

    /// Stops acknowledging (keep-alives go on, if set).
    pub fn hold_acks(&self) {
        lock(&self.shared.switches).held = true;
    }

    /// Acknowledges again.
    pub fn release_acks(&self) {
        lock(&self.shared.switches).held = false;
        self.shared.changed.notify_all();
    }

    /// The connection that completes window number `n` (1 for the first, over every
    /// connection) is closed as soon as that window is received, before acknowledging it.
    pub fn crash_before_ack(&self, n: usize) {
        lock(&self.shared.switches).crash_before_ack = Some(n);
    }

    /// The connection that completes window number `n` is closed right after acknowledging it.
    pub fn crash_after_ack(&self, n: usize) {
        lock(&self.shared.switches).crash_after_ack = Some(n);
    }

    /// Logstash dies: the listener is closed and every connection reset at once; what was
    /// received and not acknowledged is counted in [`Received::unacked_at_close`].
    pub fn kill(&mut self) {
        if let Some(l) = self.listening.take() {
            l.stop();
        }
        let conns: Vec<_> = lock(&self.shared.conns).drain(..).collect();
        self.shared.killing.store(true, Ordering::SeqCst);
        for (stream, _) in &conns {
            let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
            let _ = stream.shutdown(Shutdown::Both);
        }
        // A connection waiting to acknowledge wakes up and finds its socket shut.
        self.shared.changed.notify_all();
        for (stream, reader) in conns {
            reader.join().expect("a connection thread");
            drop(stream);
        }
        self.shared.killing.store(false, Ordering::SeqCst);
    }

    /// Listens again on the same port after [`Beats::kill`].
    pub fn restart(&mut self) {
        assert!(self.listening.is_none(), "restart without kill");
        let listener = bind_retrying(self.addr, "the fake beats input");
        self.listening = Some(listen(listener, &self.shared));
    }

    /// What was received so far (locked: do not hold it long).
    pub fn received(&self) -> MutexGuard<'_, Received> {
        lock(&self.shared.received)
    }

    /// Waits until `pred` holds for what was received (checked every 20 ms).
    pub fn wait_until(&self, mut pred: impl FnMut(&Received) -> bool, timeout: Duration) -> bool {
        super::wait_until(|| pred(&self.received()), timeout)
    }

    /// Waits until every number of `want` has arrived from writer `id`, for as long as events
    /// keep coming: gives up once none came for `stall`.
    pub fn wait_for_seqs(&self, id: &str, want: &[u64], stall: Duration) -> bool {
        super::wait_while_progressing(
            || {
                let r = self.received();
                r.seen
                    .get(id)
                    .is_some_and(|got| want.iter().all(|s| got.contains(s)))
            },
            || self.received().events.len(),
            stall,
        )
    }
}

impl Drop for Beats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Accepts connections on `listener` until stopped.
fn listen(listener: TcpListener, shared: &Arc<Shared>) -> Acceptor {
    let shared = shared.clone();
    Acceptor::spawn(listener, move |stream| accept(stream, &shared))
}

/// One connection accepted: served on a thread of its own.
fn accept(stream: TcpStream, shared: &Arc<Shared>) {
    let conn = shared.accepted.fetch_add(1, Ordering::SeqCst) + 1;
    let handle = stream.try_clone().expect("a second handle on a connection");
    let thread = {
        let shared = shared.clone();
        thread::spawn(move || serve(conn, stream, &shared))
    };
    lock(&shared.conns).push((handle, thread));
}

/// One connection: reads windows and acknowledges them until the peer closes, the protocol
/// breaks, or a switch closes it. Counts what it received and did not acknowledge.
fn serve(conn: usize, stream: TcpStream, shared: &Shared) {
    let mut state = Conn {
        conn,
        out: stream.try_clone().expect("a writing handle"),
        shared,
        received_unacked: 0,
    };
    let mut input = BufReader::with_capacity(64 * 1024, stream);
    let result = state.run(&mut input);
    if let Err(why) = result
        && why.kind() == ErrorKind::InvalidData
    {
        lock(&shared.received)
            .protocol_failures
            .push(format!("connection {conn}: {why}"));
    }
    lock(&shared.received).unacked_at_close += state.received_unacked;
    let _ = state.out.shutdown(Shutdown::Both);
}

struct Conn<'a> {
    conn: usize,
    out: TcpStream,
    shared: &'a Shared,
    /// Events received on this connection and not acknowledged yet.
    received_unacked: usize,
}

fn bad(what: String) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, what)
}

fn u32_from(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

impl Conn<'_> {
    fn run(&mut self, input: &mut impl Read) -> io::Result<()> {
        loop {
            let mut head = [0u8; 2];
            input.read_exact(&mut head)?;
            match head {
                [b'2', b'W'] => {}
                [v, t] => {
                    return Err(bad(format!(
                        "expected a window frame '2' 'W', got {:?} {:?}",
                        v as char, t as char
                    )));
                }
            }
            let size = u32_from(input)?;
            if size == 0 {
                return Err(bad("a window of 0 events".into()));
            }
            let mut docs = Vec::with_capacity(size as usize);
            let mut compressed = false;
            while docs.len() < size as usize {
                let mut head = [0u8; 2];
                input.read_exact(&mut head)?;
                match head {
                    [b'2', b'J'] => docs.push(read_json(input, docs.len() as u32 + 1)?),
                    [b'2', b'C'] => {
                        compressed = true;
                        let len = u32_from(input)? as usize;
                        let mut packed = vec![0u8; len];
                        input.read_exact(&mut packed)?;
                        let mut inflated = Vec::new();
                        flate2::read::ZlibDecoder::new(&packed[..])
                            .read_to_end(&mut inflated)
                            .map_err(|e| bad(format!("a C frame that does not inflate: {e}")))?;
                        let mut inner = &inflated[..];
                        while !inner.is_empty() {
                            let mut head = [0u8; 2];
                            inner.read_exact(&mut head)?;
                            if head != *b"2J" {
                                return Err(bad(format!(
                                    "a C frame holding {:?}, not data frames",
                                    String::from_utf8_lossy(&head)
                                )));
                            }
                            docs.push(read_json(&mut inner, docs.len() as u32 + 1)?);
                        }
                        if docs.len() > size as usize {
                            return Err(bad(format!(
                                "{} events in a window of {size}",
                                docs.len()
                            )));
                        }
                    }
                    [v, t] => {
                        return Err(bad(format!(
                            "expected a data frame, got {:?} {:?}",
                            v as char, t as char
                        )));
                    }
                }
            }
            self.window(size, compressed, &docs)?;
        }
    }

    /// A complete window: records it and its events, then acknowledges as switched.
    fn window(&mut self, size: u32, compressed: bool, docs: &[Vec<u8>]) -> io::Result<()> {
        {
            let mut r = lock(&self.shared.received);
            r.windows.push(WindowSeen {
                conn: self.conn,
                size,
                compressed,
            });
            for d in docs {
                r.record(self.conn, d);
            }
        }
        let acking = lock(&self.shared.switches).acking;
        self.received_unacked += docs.len();
        let n = {
            let mut s = lock(&self.shared.switches);
            s.windows_done += 1;
            s.windows_done
        };
        if lock(&self.shared.switches).crash_before_ack == Some(n) {
            return Err(io::Error::other("crash before acknowledging"));
        }
        let mut acked = 0;
        if let Some(every) = acking.every {
            for seq in (every..size).step_by(every as usize) {
                self.ack(seq, false)?;
                self.received_unacked -= (seq - acked) as usize;
                acked = seq;
            }
        }
        // A slow or blocked pipeline: keep-alives while waiting, until the peer goes.
        let until = Instant::now() + acking.delay;
        let mut last_keepalive = Instant::now();
        loop {
            let held = lock(&self.shared.switches).held;
            let now = Instant::now();
            if now >= until && !held {
                break;
            }
            if self.shared.killing.load(Ordering::SeqCst) {
                return Err(io::Error::other("killed while waiting to acknowledge"));
            }
            if self.peer_gone() {
                return Err(io::Error::other(
                    "the peer left while waiting to acknowledge",
                ));
            }
            if let Some(every) = acking.keepalive
                && now - last_keepalive >= every
            {
                self.ack(acked, true)?;
                last_keepalive = now;
            }
            let s = lock(&self.shared.switches);
            drop(
                self.shared
                    .changed
                    .wait_timeout(s, Duration::from_millis(10))
                    .unwrap_or_else(|p| p.into_inner()),
            );
        }
        self.ack(size, false)?;
        self.received_unacked -= (size - acked) as usize;
        if lock(&self.shared.switches).crash_after_ack == Some(n) {
            return Err(io::Error::other("crash after acknowledging"));
        }
        Ok(())
    }

    /// Whether the peer closed the connection while nothing it sent is waiting to be read (a
    /// peer that leaves with a window still unread here is not noticed until it is read).
    fn peer_gone(&self) -> bool {
        if self.out.set_nonblocking(true).is_err() {
            return true;
        }
        let gone = match self.out.peek(&mut [0u8; 1]) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        };
        let _ = self.out.set_nonblocking(false);
        gone
    }

    fn ack(&mut self, seq: u32, keepalive: bool) -> io::Result<()> {
        let mut frame = [b'2', b'A', 0, 0, 0, 0];
        frame[2..].copy_from_slice(&seq.to_be_bytes());
        self.out.write_all(&frame)?;
        let mut r = lock(&self.shared.received);
        r.acks_sent += 1;
        r.keepalives_sent += usize::from(keepalive);
        Ok(())
    }
}

/// The rest of a `J` frame, which must be number `want`.
fn read_json(input: &mut impl Read, want: u32) -> io::Result<Vec<u8>> {
    let seq = u32_from(input)?;
    if seq != want {
        return Err(bad(format!("data frame number {seq} where {want} was due")));
    }
    let len = u32_from(input)? as usize;
    let mut doc = vec![0u8; len];
    input.read_exact(&mut doc)?;
    Ok(doc)
}
