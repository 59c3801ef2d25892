//! The Logstash sink itself: the connection, its probation, the batch buffer, and the
//! [`Sink`] calls.
//!
//! How it fails: see the module docs of [`super`]; a write error is never returned to the
//! pipeline, the batch is written again on a new connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::beats::{AckEffect, AckReader, InFlight, encode_window};
use super::config::{LogstashConfig, LogstashProtocol};
use super::internal_events;
use super::tls::{Tls, TlsError, TlsStream};
use crate::event::{Event, EventEncoder, LOG_EVENT_TYPE, ServiceInfo};
use crate::sinks::{Delivery, NO_CUT, Sink, SinkHandle};
use crate::telemetry::health::Component;
use crate::telemetry::metrics::LogstashMetrics;
use crate::telemetry::now_unix_ms;

/// Counters of the Logstash sink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogstashStats {
    /// Connections made.
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Connections lost (closed by the peer, reset, write errors).
    pub disconnects: u64,
    /// Connections lost before their probation was over (part of `disconnects`).
    pub probation_failures: u64,
    /// Batches written.
    pub batches: u64,
    /// Events written.
    pub events: u64,
    /// Events written again that may have reached Logstash on a connection that then failed
    /// (an upper bound of duplicates at Logstash).
    pub events_resent: u64,
    /// Events not sent because `forward_unmatched` is off.
    pub events_skipped: u64,
    /// beats: events Logstash acknowledged.
    pub events_acked: u64,
    /// beats: windows sent again because their connection failed or went silent before
    /// Logstash acknowledged them wholly.
    pub windows_resent: u64,
}

/// A connection to Logstash, plain or encrypted.
enum Connection {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Connection {
    /// Writes all of `buf`. Over plain TCP, `progress` is told how many bytes the kernel has
    /// taken after every write; over TLS, bytes taken by rustls may not be on the wire yet, so
    /// it is not told.
    fn write_all(&mut self, buf: &[u8], mut progress: impl FnMut(usize)) -> io::Result<()> {
        match self {
            Connection::Plain(s) => {
                let mut done = 0;
                while done < buf.len() {
                    match s.write(&buf[done..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            done += n;
                            progress(done);
                        }
                        // The write timeout passed with nothing taken: Logstash is not
                        // reading. Wait on; that is backpressure.
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::Interrupted
                                    | io::ErrorKind::WouldBlock
                                    | io::ErrorKind::TimedOut
                            ) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Connection::Tls(s) => {
                s.write_all(buf)?;
                // rustls hands the last records to the socket on flush, and reports its
                // errors only there.
                s.flush()
            }
        }
    }

    /// `Err` when the peer closed or reset the connection. Anything Logstash sent (it sends
    /// nothing on a tcp input; over TLS, session tickets) is read and discarded.
    fn check_alive(&mut self) -> io::Result<()> {
        self.tcp().set_nonblocking(true)?;
        let result = self.read_until_quiet(true);
        self.tcp().set_nonblocking(false)?;
        result
    }

    /// Waits up to `timeout` for the peer to close or reset the connection: `Err` when it
    /// did, `Ok` when the time passed (or the peer sent something, which is discarded).
    fn wait_closed(&mut self, timeout: Duration) -> io::Result<()> {
        self.tcp()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let result = self.read_until_quiet(false);
        self.tcp().set_read_timeout(None)?;
        result
    }

    /// Reads and discards what the peer sent until a read would wait (a non-blocking socket)
    /// or timed out, or, unless `drain`, until the first read that returns data: `Err` when
    /// the peer closed or reset the connection.
    fn read_until_quiet(&mut self, drain: bool) -> io::Result<()> {
        let mut scratch = [0u8; 512];
        loop {
            let read = match self {
                Connection::Plain(s) => s.read(&mut scratch),
                Connection::Tls(s) => s.read(&mut scratch),
            };
            match read {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "Logstash closed the connection",
                    ));
                }
                Ok(_) if drain => {}
                Ok(_) => return Ok(()),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads what the peer sent into `buf`, waiting up to `timeout`: `Ok(0)` when nothing
    /// came, `Err` when the peer closed or reset the connection.
    fn read_within(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<usize> {
        self.tcp()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let read = match self {
            Connection::Plain(s) => s.read(buf),
            Connection::Tls(s) => s.read(buf),
        };
        nothing_yet_or(read)
    }

    /// Reads what the peer sent into `buf` without waiting: `Ok(0)` when nothing came, `Err`
    /// when the peer closed or reset the connection.
    fn read_now(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp().set_nonblocking(true)?;
        let read = match self {
            Connection::Plain(s) => s.read(buf),
            Connection::Tls(s) => s.read(buf),
        };
        self.tcp().set_nonblocking(false)?;
        nothing_yet_or(read)
    }

    /// Whether [`Connection::write_all`] reports its progress.
    fn is_plain(&self) -> bool {
        matches!(self, Connection::Plain(_))
    }

    /// The socket underneath.
    fn tcp(&self) -> &TcpStream {
        match self {
            Connection::Plain(s) => s,
            Connection::Tls(s) => &s.sock,
        }
    }
}

/// A read's result as the readers above give it: `Ok(0)` when nothing came in time (a timeout,
/// a non-blocking read with nothing there, a signal), `Err` when the peer closed the connection
/// or it failed.
fn nothing_yet_or(read: io::Result<usize>) -> io::Result<usize> {
    match read {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "Logstash closed the connection",
        )),
        Ok(n) => Ok(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

/// Sends events to Logstash. See the module docs.
pub struct LogstashSink {
    address: String,
    tls: Option<Tls>,
    connect_timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    probation: Duration,
    forward_unmatched: bool,
    encoder: EventEncoder,
    buf: Vec<u8>,
    /// Events in `buf`.
    pending: u64,
    conn: Option<Connection>,
    /// When `conn` was made.
    connected_at: Instant,
    /// Whether `conn` has passed its probation.
    proven: bool,
    /// The wait after the next failure, before jitter: doubles with every failed attempt and
    /// every connection lost on probation, back to `backoff_initial` once a connection proves
    /// healthy.
    backoff: Duration,
    /// The wait before the next connection attempt, when the last one failed or its
    /// connection was lost on probation.
    retry_in: Option<Duration>,
    stats: LogstashStats,
    metrics: LogstashMetrics,
    health: Component,
    /// Per event in `buf`: where its line ends in `buf`, and its record's offset in its file.
    ends: Vec<(usize, u64)>,
    /// While a batch is being written over plain TCP on a connection that passed its
    /// probation: the file offset of its first event not yet wholly taken by the kernel;
    /// [`NO_CUT`] otherwise (nothing written on a connection on probation is delivered);
    /// handed out as [`SinkHandle::cut_offset`]. With beats: the offset of the batch's first
    /// event not yet acknowledged, once some are.
    cut: Arc<AtomicU64>,
    /// `tcp` (json_lines) or `beats`.
    protocol: LogstashProtocol,
    /// beats: events per window.
    window_size: usize,
    /// beats: windows in flight at most.
    pipelining: usize,
    /// beats: zlib level, 0 for none.
    compression_level: u32,
    /// beats: how long Logstash may stay silent while a window waits.
    ack_timeout: Duration,
    /// beats: the frames of the window being sent, and the compressor's input.
    frame: Vec<u8>,
    scratch: Vec<u8>,
    /// beats: what the connection sent back, cut into acknowledgements.
    acks: AckReader,
}

/// How often a blocked plain-TCP write reports how far it got.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

impl LogstashSink {
    /// A sink for `address` (`HOST:PORT`). Nothing connects until the first flush. Fails only
    /// on TLS settings that cannot work.
    pub fn new(
        address: String,
        config: &LogstashConfig,
        service: &ServiceInfo,
    ) -> Result<Self, TlsError> {
        let tls = match &config.tls {
            Some(t) => Some(Tls::new(t, &address)?),
            None => None,
        };
        Ok(LogstashSink {
            address,
            tls,
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            backoff_initial: Duration::from_millis(config.backoff_initial_ms.max(1)),
            backoff_max: Duration::from_millis(config.backoff_max_ms.max(1)),
            probation: Duration::from_millis(config.probation_ms),
            forward_unmatched: config.forward_unmatched,
            encoder: EventEncoder::new(service),
            buf: Vec::with_capacity(256 * 1024),
            pending: 0,
            conn: None,
            connected_at: Instant::now(),
            proven: false,
            backoff: Duration::from_millis(config.backoff_initial_ms.max(1)),
            retry_in: None,
            stats: LogstashStats::default(),
            metrics: LogstashMetrics::default(),
            health: Component::default(),
            ends: Vec::new(),
            cut: Arc::new(AtomicU64::new(NO_CUT)),
            protocol: config.protocol,
            window_size: config.window_size.max(1) as usize,
            pipelining: config.pipelining.max(1) as usize,
            compression_level: config.compression_level.min(9),
            ack_timeout: Duration::from_millis(config.ack_timeout_ms.max(1)),
            frame: Vec::new(),
            scratch: Vec::new(),
            acks: AckReader::default(),
        })
    }

    /// Updates `metrics` and reports to `health` from now on.
    pub fn with_telemetry(mut self, metrics: LogstashMetrics, health: Component) -> Self {
        self.metrics = metrics;
        self.health = health;
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> LogstashStats {
        self.stats
    }

    /// Whether a connection is up now.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Connects, retrying with backoff until it works; first waits out the backoff of the last
    /// failure, if any. The new connection is on probation.
    fn connect(&mut self) {
        loop {
            if let Some(wait) = self.retry_in.take() {
                std::thread::sleep(wait);
            }
            match self.try_connect() {
                Ok(stream) => {
                    self.stats.connects += 1;
                    self.connected_at = Instant::now();
                    self.proven = false;
                    match self.protocol {
                        LogstashProtocol::Tcp => internal_events::connected(
                            &self.report(),
                            self.stats.connects,
                            self.probation,
                        ),
                        LogstashProtocol::Beats => {
                            self.acks.clear();
                            internal_events::beats_connected(&self.report(), self.stats.connects)
                        }
                    }
                    self.conn = Some(stream);
                    return;
                }
                Err(e) => {
                    self.stats.connect_failures += 1;
                    let wait = self.next_backoff();
                    internal_events::connect_failed(&self.report(), &e, wait);
                    self.retry_in = Some(wait);
                }
            }
        }
    }

    /// The wait after a failure (half of the backoff fixed, half random), and the backoff
    /// doubled for the next.
    fn next_backoff(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (wait * 2).min(self.backoff_max);
        wait / 2 + wait.mul_f64(fastrand::f64() / 2.0)
    }

    /// Writes the batch on the connection. On failure, also says how many bytes of it may
    /// have reached Logstash: over plain TCP what the kernel took, over TLS all of it.
    fn write_batch(&mut self) -> Result<(), (io::Error, usize)> {
        let Some(stream) = self.conn.as_mut() else {
            return Err((io::ErrorKind::NotConnected.into(), 0));
        };
        self.metrics
            .write_started_unix_ms
            .store(now_unix_ms(), Ordering::Relaxed);
        let (ends, cut, proven) = (&self.ends, &self.cut, self.proven);
        let mut taken = if stream.is_plain() { 0 } else { self.buf.len() };
        let written = stream.write_all(&self.buf, |done| {
            taken = done;
            // The first event not wholly written; the ones before it are. Only a healthy
            // connection delivers.
            let whole = ends.partition_point(|&(end, _)| end <= done);
            if proven && whole > 0 {
                let next = ends.get(whole).map_or(NO_CUT, |&(_, offset)| offset);
                cut.store(next, Ordering::Relaxed);
            }
        });
        self.cut.store(NO_CUT, Ordering::Relaxed);
        self.metrics
            .write_started_unix_ms
            .store(0, Ordering::Relaxed);
        written.map_err(|e| (e, taken))
    }

    /// The probation of a new connection, once it has carried its first batch: it must stay
    /// open for `probation`. A peer that closes or resets it meanwhile is noticed at once.
    fn prove(&mut self) -> io::Result<()> {
        let Some(stream) = self.conn.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let until = Instant::now() + self.probation;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stream.wait_closed(left)?;
        }
        stream.check_alive()?;
        self.proven = true;
        self.backoff = self.backoff_initial;
        internal_events::proven(&self.report());
        Ok(())
    }

    /// How many events of the batch start within its first `bytes` bytes: those that may
    /// have reached Logstash.
    fn events_within(&self, bytes: usize) -> usize {
        if bytes == 0 {
            return 0;
        }
        let before = self.ends.partition_point(|&(end, _)| end < bytes);
        (before + 1).min(self.ends.len())
    }

    /// beats: sends the batch as windows of `window_size` events, at most `pipelining` of
    /// them in flight, and returns once Logstash acknowledged every event. A connection that
    /// fails or stays silent for `ack_timeout` is dropped and what it had not acknowledged is
    /// sent again on the next one.
    fn flush_beats(&mut self) -> io::Result<()> {
        let total = self.ends.len();
        let mut acked = 0;
        // Events that may have reached Logstash without an acknowledgement.
        let mut resent = 0;
        let mut inflight = InFlight::default();
        while acked < total {
            if self.conn.is_none() {
                self.connect();
            }
            if let Err(e) = self.beats_exchange(&mut inflight, &mut acked) {
                resent += inflight.unacked_events();
                let windows = inflight.clear() as u64;
                self.stats.windows_resent += windows;
                self.metrics.beats.windows_resent.inc_by(windows);
                self.disconnect(&e);
            }
        }
        self.metrics
            .beats
            .ack_wait_since_unix_ms
            .store(0, Ordering::Relaxed);
        self.cut.store(NO_CUT, Ordering::Relaxed);
        self.batch_delivered(resent);
        Ok(())
    }

    /// The batch is delivered: counts it (with `resent` of its events possibly sent before)
    /// and empties the buffer for the next.
    fn batch_delivered(&mut self, resent: u64) {
        self.stats.batches += 1;
        self.stats.events += self.pending;
        self.metrics.events_sent.inc_by(self.pending);
        if resent > 0 {
            self.stats.events_resent += resent;
            self.metrics.events_resent.inc_by(resent);
        }
        self.buf.clear();
        self.ends.clear();
        self.pending = 0;
    }

    /// beats: on the current connection, from the first event not acknowledged, sends windows
    /// and reads acknowledgements until every event of the batch is acknowledged (`Ok`) or the
    /// connection fails (`Err`; `inflight` then holds what it had not acknowledged).
    fn beats_exchange(&mut self, inflight: &mut InFlight, acked: &mut usize) -> io::Result<()> {
        let total = self.ends.len();
        let mut next = *acked;
        // When Logstash was last heard from, or the oldest window started waiting.
        let mut heard = Instant::now();
        let mut scratch = [0u8; 4096];
        if inflight.is_empty() {
            // A peer that closed the connection since the last batch is noticed before
            // anything is written into it (what it sent meanwhile, a late keep-alive, is kept).
            let stream = self.conn.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            loop {
                let n = stream.read_now(&mut scratch)?;
                if n == 0 {
                    break;
                }
                self.acks.push(&scratch[..n]);
            }
        }
        while *acked < total {
            while inflight.len() < self.pipelining && next < total {
                let end = (next + self.window_size).min(total);
                self.frame.clear();
                let (buf, ends) = (&self.buf, &self.ends);
                let docs = (next..end).map(|i| {
                    let start = if i == 0 { 0 } else { ends[i - 1].0 };
                    // The JSON without its newline.
                    &buf[start..ends[i].0 - 1]
                });
                encode_window(
                    docs,
                    self.compression_level,
                    &mut self.frame,
                    &mut self.scratch,
                );
                if inflight.is_empty() {
                    heard = Instant::now();
                }
                self.send_frame()?;
                inflight.sent(next, (end - next) as u32);
                next = end;
            }
            self.metrics.beats.ack_wait_since_unix_ms.store(
                now_unix_ms().saturating_sub(heard.elapsed().as_millis() as u64),
                Ordering::Relaxed,
            );
            let left = self.ack_timeout.saturating_sub(heard.elapsed());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "Logstash sent no acknowledgement for {} ms, not even a keep-alive (is this address a Logstash beats input?)",
                        self.ack_timeout.as_millis()
                    ),
                ));
            }
            let stream = self.conn.as_mut().ok_or(io::ErrorKind::NotConnected)?;
            let n = stream.read_within(&mut scratch, left)?;
            self.acks.push(&scratch[..n]);
            while let Some(seq) = self.acks.next().map_err(io::Error::other)? {
                heard = Instant::now();
                match inflight.apply(seq).map_err(io::Error::other)? {
                    AckEffect::KeepAlive => {}
                    AckEffect::Progress { events, done } => {
                        *acked += events as usize;
                        self.stats.events_acked += u64::from(events);
                        self.metrics.beats.events_acked.inc_by(u64::from(events));
                        if let Some(latency) = done {
                            self.metrics
                                .beats
                                .ack_latency_seconds
                                .observe(latency.as_secs_f64());
                        }
                        if let Some(&(_, offset)) = self.ends.get(*acked) {
                            self.cut.store(offset, Ordering::Relaxed);
                        }
                        if !self.proven {
                            self.proven = true;
                            self.backoff = self.backoff_initial;
                            internal_events::proven(&self.report());
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// beats: writes the window in `frame`.
    fn send_frame(&mut self) -> io::Result<()> {
        let stream = self.conn.as_mut().ok_or(io::ErrorKind::NotConnected)?;
        self.metrics
            .write_started_unix_ms
            .store(now_unix_ms(), Ordering::Relaxed);
        let written = stream.write_all(&self.frame, |_| {});
        self.metrics
            .write_started_unix_ms
            .store(0, Ordering::Relaxed);
        written
    }

    fn try_connect(&self) -> io::Result<Connection> {
        let addrs: Vec<SocketAddr> = self.address.to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    return match &self.tls {
                        None => {
                            // A blocked write returns what it has written every so often,
                            // so progress is known while Logstash does not read.
                            s.set_write_timeout(Some(PROGRESS_INTERVAL))?;
                            Ok(Connection::Plain(s))
                        }
                        Some(tls) => {
                            let stream = tls.connect(s, self.connect_timeout).map_err(|e| {
                                io::Error::new(e.kind(), format!("TLS handshake failed: {e}"))
                            })?;
                            Ok(Connection::Tls(Box::new(stream)))
                        }
                    };
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Drops the connection after a failure. A healthy connection is made again at once; one
    /// lost on probation only after the backoff, which goes on growing.
    fn disconnect(&mut self, why: &io::Error) {
        if self.conn.take().is_some() {
            self.stats.disconnects += 1;
            if self.proven {
                internal_events::connection_lost(&self.report(), why);
            } else {
                self.stats.probation_failures += 1;
                let wait = self.next_backoff();
                internal_events::lost_on_probation(
                    &self.report(),
                    why,
                    self.connected_at.elapsed(),
                    wait,
                );
                self.retry_in = Some(wait);
            }
            self.proven = false;
        }
    }

    fn report(&self) -> internal_events::Report<'_> {
        internal_events::Report {
            metrics: &self.metrics,
            health: &self.health,
            address: &self.address,
            tls: self.tls.is_some(),
        }
    }
}

impl Sink for LogstashSink {
    fn name(&self) -> &'static str {
        "logstash"
    }

    fn delivery(&self) -> Delivery {
        Delivery::Reliable
    }

    fn flush_span(&self, parent: &tracing::Span, events: usize) -> tracing::Span {
        crate::traced_span!(parent: parent, "sink.logstash", events = events)
    }

    fn handle(&self) -> SinkHandle {
        SinkHandle {
            cut_offset: Some(self.cut.clone()),
            shutdown: None,
        }
    }

    fn write(&mut self, event: &Event) -> io::Result<()> {
        if !self.forward_unmatched && &*event.event_type == LOG_EVENT_TYPE {
            self.stats.events_skipped += 1;
            return Ok(());
        }
        self.encoder.write_line(event, &mut self.buf);
        self.ends.push((self.buf.len(), event.offset));
        self.pending += 1;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.protocol == LogstashProtocol::Beats {
            return self.flush_beats();
        }
        // Events of the batch that may have reached Logstash on a connection that failed.
        let mut reached = 0;
        loop {
            if self.conn.is_none() {
                self.connect();
            }
            let Some(stream) = self.conn.as_mut() else {
                continue;
            };
            let result = match stream.check_alive() {
                Err(e) => Err((e, 0)),
                Ok(()) => self.write_batch().and_then(|()| {
                    if self.proven {
                        Ok(())
                    } else {
                        self.prove().map_err(|e| (e, self.buf.len()))
                    }
                }),
            };
            match result {
                Ok(()) => {
                    self.batch_delivered(reached as u64);
                    return Ok(());
                }
                Err((e, bytes)) => {
                    reached = reached.max(self.events_within(bytes));
                    self.disconnect(&e);
                }
            }
        }
    }
}

/// A probe for `/ready`: `Some(reason)` while a write has been blocked for `stall_ms` or more,
/// which means Logstash accepts but does not read (backpressure; the log files buffer), or
/// (beats) while a window has waited `ack_stall_ms` or more with nothing from Logstash, not
/// even a keep-alive.
pub fn stall_probe(
    metrics: &LogstashMetrics,
    stall_ms: u64,
    ack_stall_ms: u64,
) -> crate::telemetry::health::Probe {
    let started = metrics.write_started_unix_ms.clone();
    let waiting = metrics.beats.ack_wait_since_unix_ms.clone();
    Box::new(move || {
        let since = waiting.load(Ordering::Relaxed);
        let silent_ms = now_unix_ms().saturating_sub(since);
        if since != 0 && silent_ms >= ack_stall_ms {
            return Some(format!(
                "Logstash has acknowledged nothing for {} s, not even with a keep-alive (it accepts but does not acknowledge); reading waits, nothing is lost",
                silent_ms / 1000
            ));
        }
        let since = started.load(Ordering::Relaxed);
        let blocked_ms = now_unix_ms().saturating_sub(since);
        (since != 0 && blocked_ms >= stall_ms).then(|| {
            format!(
                "Logstash has not taken data for {} s (it accepts but does not read); reading waits, nothing is lost",
                blocked_ms / 1000
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{LogSource, Severity, Timestamp};
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::mpsc;

    fn event(i: u64, event_type: &str) -> Event {
        Event {
            timestamp: Timestamp(0),
            event_type: event_type.into(),
            severity: Severity::Info,
            pattern: None,
            fields: vec![],
            raw: format!("line {i}"),
            message_start: 0,
            source: Arc::new(LogSource {
                server: "s".into(),
                path: "p".into(),
            }),
            offset: i,
            trace: None,
        }
    }

    fn config() -> LogstashConfig {
        LogstashConfig {
            backoff_initial_ms: 5,
            backoff_max_ms: 20,
            probation_ms: 50,
            ..LogstashConfig::default()
        }
    }

    /// Accepts one connection and reads `n` lines from it; returns them with the connection,
    /// still open (a peer that closes at once would fail the sink's probation).
    fn read_lines(listener: &TcpListener, n: usize) -> (Vec<serde_json::Value>, TcpStream) {
        let (conn, _) = listener.accept().unwrap();
        let lines = read_more(&conn, n);
        (lines, conn)
    }

    fn read_more(conn: &TcpStream, n: usize) -> Vec<serde_json::Value> {
        BufReader::new(conn)
            .lines()
            .take(n)
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn a_batch_is_json_lines_on_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let reader = std::thread::spawn(move || read_lines(&listener, 3));
        let mut sink = LogstashSink::new(addr, &config(), &ServiceInfo::default()).unwrap();
        for i in 0..3 {
            sink.write(&event(i, "chat")).unwrap();
        }
        sink.flush().unwrap();
        let (got, _conn) = reader.join().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[2]["log"]["offset"], 2);
        assert_eq!(sink.stats().batches, 1);
        assert_eq!(sink.stats().events, 3);
    }

    #[test]
    fn unmatched_events_can_be_left_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let reader = std::thread::spawn(move || read_lines(&listener, 1));
        let cfg = LogstashConfig {
            forward_unmatched: false,
            ..config()
        };
        let mut sink = LogstashSink::new(addr, &cfg, &ServiceInfo::default()).unwrap();
        sink.write(&event(0, "log")).unwrap();
        sink.write(&event(1, "chat")).unwrap();
        sink.flush().unwrap();
        let (got, _conn) = reader.join().unwrap();
        assert_eq!(got[0]["event_type"], "chat");
        assert_eq!(sink.stats().events_skipped, 1);
    }

    #[test]
    fn a_closed_peer_is_noticed_and_the_batch_goes_to_the_next_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut sink = LogstashSink::new(addr, &config(), &ServiceInfo::default()).unwrap();
        let first = std::thread::spawn({
            let l = listener.try_clone().unwrap();
            move || read_lines(&l, 1)
        });
        sink.write(&event(0, "chat")).unwrap();
        sink.flush().unwrap();
        // The first connection is read and proved healthy, then closed by the peer.
        let (got, conn) = first.join().unwrap();
        assert_eq!(got.len(), 1);
        drop(conn);
        std::thread::sleep(Duration::from_millis(50));
        let second = std::thread::spawn(move || read_lines(&listener, 1));
        sink.write(&event(1, "chat")).unwrap();
        sink.flush().unwrap();
        let (got, _conn) = second.join().unwrap();
        assert_eq!(got[0]["log"]["offset"], 1);
        assert_eq!(sink.stats().connects, 2);
        assert_eq!(sink.stats().disconnects, 1);
        assert_eq!(sink.stats().probation_failures, 0);
        // The close was noticed before the batch was written: nothing was sent twice.
        assert_eq!(sink.stats().events_resent, 0);
    }

    #[test]
    fn a_connection_reset_on_probation_backs_off_and_its_batch_is_written_again() {
        const RESETS: usize = 3;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cfg = LogstashConfig {
            backoff_initial_ms: 40,
            backoff_max_ms: 100,
            probation_ms: 1000,
            ..LogstashConfig::default()
        };
        let mut sink = LogstashSink::new(addr, &cfg, &ServiceInfo::default()).unwrap();
        // A proxy with no backend: it accepts, takes what comes, and resets; then Logstash.
        let peer = std::thread::spawn(move || {
            let mut accepted = Vec::new();
            for _ in 0..RESETS {
                let (mut conn, _) = listener.accept().unwrap();
                accepted.push(Instant::now());
                let _ = conn.read(&mut [0u8; 4096]);
                socket2::SockRef::from(&conn)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            let (got, conn) = read_lines(&listener, 3);
            (accepted, got, conn)
        });
        for i in 0..3 {
            sink.write(&event(i, "chat")).unwrap();
        }
        sink.flush().unwrap();
        let (accepted, got, _conn) = peer.join().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0]["log"]["offset"], 0);
        let stats = sink.stats();
        assert_eq!(stats.connects, RESETS as u64 + 1, "{stats:?}");
        assert_eq!(stats.probation_failures, RESETS as u64, "{stats:?}");
        assert_eq!(stats.batches, 1);
        assert_eq!(stats.events, 3);
        // Each reset connection may have carried the batch.
        assert_eq!(stats.events_resent, 3);
        // The backoff grew across connections that were accepted: 40, 80, 100 ms, each
        // waited at least half.
        for (k, pair) in accepted.windows(2).enumerate() {
            let min = Duration::from_millis((40u64 << k).min(100) / 2);
            assert!(pair[1] - pair[0] >= min, "gap {k}: {:?}", pair[1] - pair[0]);
        }
        assert!(sink.proven);
        assert_eq!(
            sink.backoff,
            Duration::from_millis(40),
            "reset once healthy"
        );
    }

    #[test]
    fn only_events_that_may_have_reached_logstash_count_as_resent() {
        let mut sink =
            LogstashSink::new("127.0.0.1:1".into(), &config(), &ServiceInfo::default()).unwrap();
        for i in 0..3 {
            sink.write(&event(i, "chat")).unwrap();
        }
        let ends: Vec<usize> = sink.ends.iter().map(|&(end, _)| end).collect();
        assert_eq!(sink.events_within(0), 0);
        assert_eq!(sink.events_within(1), 1);
        assert_eq!(sink.events_within(ends[0]), 1);
        assert_eq!(sink.events_within(ends[0] + 1), 2);
        assert_eq!(sink.events_within(ends[2]), 3);
    }

    #[test]
    fn a_blocked_write_tells_where_whole_events_stop() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut sink = LogstashSink::new(addr, &config(), &ServiceInfo::default()).unwrap();
        let cut = sink
            .handle()
            .cut_offset
            .expect("the sink reports where a write stops");
        assert_eq!(cut.load(Ordering::Relaxed), NO_CUT);
        // Far more than the socket buffers hold; nobody reads it until told.
        const EVENTS: u64 = 200_000;
        let (go, wait) = mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let (first, conn) = read_lines(&listener, 1);
            wait.recv().unwrap();
            (first, read_more(&conn, EVENTS as usize), conn)
        });
        // A first batch proves the connection healthy.
        sink.write(&event(0, "chat")).unwrap();
        sink.flush().unwrap();
        for i in 1..=EVENTS {
            sink.write(&event(i, "chat")).unwrap();
        }
        let flusher = std::thread::spawn(move || sink.flush());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let seen = loop {
            let c = cut.load(Ordering::Relaxed);
            if c != NO_CUT {
                break c;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no cut offset while blocked"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(seen > 1 && seen < EVENTS, "cut at {seen}");
        // Everything before the cut is whole in the socket: read it all, then the rest.
        go.send(()).unwrap();
        let (first, got, _conn) = reader.join().unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(got.len(), EVENTS as usize);
        flusher.join().unwrap().unwrap();
        assert_eq!(cut.load(Ordering::Relaxed), NO_CUT, "no cut once written");
    }

    #[test]
    fn a_write_on_probation_sets_no_cut() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut sink = LogstashSink::new(addr, &config(), &ServiceInfo::default()).unwrap();
        let cut = sink.handle().cut_offset.expect("a cut offset");
        const EVENTS: u64 = 200_000;
        for i in 0..EVENTS {
            sink.write(&event(i, "chat")).unwrap();
        }
        let stats = sink.metrics.write_started_unix_ms.clone();
        let flusher = std::thread::spawn(move || sink.flush());
        let (conn, _) = listener.accept().unwrap();
        // The write has been blocked for a while (several progress reports).
        while stats.load(Ordering::Relaxed) == 0
            || now_unix_ms().saturating_sub(stats.load(Ordering::Relaxed))
                < 4 * PROGRESS_INTERVAL.as_millis() as u64
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            cut.load(Ordering::Relaxed),
            NO_CUT,
            "a forced stop must not save past what a connection on probation took"
        );
        assert_eq!(read_more(&conn, EVENTS as usize).len(), EVENTS as usize);
        flusher.join().unwrap().unwrap();
    }

    fn beats_config(window_size: u32, pipelining: u32) -> LogstashConfig {
        LogstashConfig {
            protocol: LogstashProtocol::Beats,
            window_size,
            pipelining,
            ..config()
        }
    }

    /// Reads one uncompressed beats window: its events' offsets.
    fn read_window(conn: &mut TcpStream) -> Vec<u64> {
        let mut head = [0u8; 6];
        conn.read_exact(&mut head).unwrap();
        assert_eq!(&head[..2], b"2W");
        let n = u32::from_be_bytes(head[2..].try_into().unwrap());
        (1..=n)
            .map(|want| {
                let mut h = [0u8; 10];
                conn.read_exact(&mut h).unwrap();
                assert_eq!(&h[..2], b"2J");
                assert_eq!(u32::from_be_bytes(h[2..6].try_into().unwrap()), want);
                let mut doc = vec![0u8; u32::from_be_bytes(h[6..].try_into().unwrap()) as usize];
                conn.read_exact(&mut doc).unwrap();
                let v: serde_json::Value = serde_json::from_slice(&doc).unwrap();
                v["log"]["offset"].as_u64().unwrap()
            })
            .collect()
    }

    fn ack(conn: &mut TcpStream, seq: u32) {
        let mut f = *b"2A\0\0\0\0";
        f[2..].copy_from_slice(&seq.to_be_bytes());
        conn.write_all(&f).unwrap();
    }

    #[test]
    fn beats_flush_returns_once_every_window_is_acknowledged() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut sink =
            LogstashSink::new(addr, &beats_config(2, 2), &ServiceInfo::default()).unwrap();
        let cut = sink.handle().cut_offset.unwrap();
        for i in 0..5 {
            sink.write(&event(i, "chat")).unwrap();
        }
        let flusher = std::thread::spawn(move || {
            sink.flush().unwrap();
            sink
        });
        let (mut conn, _) = listener.accept().unwrap();
        // Two windows in flight, the third waits for the first acknowledgement.
        assert_eq!(read_window(&mut conn), [0, 1]);
        assert_eq!(read_window(&mut conn), [2, 3]);
        // A partial acknowledgement: the first event is delivered, the flush goes on.
        ack(&mut conn, 1);
        while cut.load(Ordering::Relaxed) != 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!flusher.is_finished());
        ack(&mut conn, 0); // a keep-alive moves nothing
        ack(&mut conn, 2);
        assert_eq!(read_window(&mut conn), [4]);
        ack(&mut conn, 2);
        assert!(
            !flusher.is_finished(),
            "the last window is not acknowledged"
        );
        ack(&mut conn, 1);
        let sink = flusher.join().unwrap();
        let stats = sink.stats();
        assert_eq!((stats.events_acked, stats.events, stats.batches), (5, 5, 1));
        assert_eq!((stats.windows_resent, stats.events_resent), (0, 0));
        assert!(sink.proven, "acknowledged: healthy");
        assert_eq!(sink.metrics.beats.events_acked.get(), 5);
        assert_eq!(cut.load(Ordering::Relaxed), NO_CUT);
    }

    #[test]
    fn beats_windows_not_acknowledged_in_time_are_sent_again_from_the_first_unacknowledged() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cfg = LogstashConfig {
            ack_timeout_ms: 3000,
            ..beats_config(3, 2)
        };
        let mut sink = LogstashSink::new(addr, &cfg, &ServiceInfo::default()).unwrap();
        for i in 0..6 {
            sink.write(&event(i, "chat")).unwrap();
        }
        let flusher = std::thread::spawn(move || {
            sink.flush().unwrap();
            sink
        });
        let (mut first, _) = listener.accept().unwrap();
        assert_eq!(read_window(&mut first), [0, 1, 2]);
        assert_eq!(read_window(&mut first), [3, 4, 5]);
        // Two events acknowledged, then silence: the connection is given up.
        ack(&mut first, 2);
        let (mut second, _) = listener.accept().unwrap();
        assert_eq!(read_window(&mut second), [2, 3, 4]);
        assert_eq!(read_window(&mut second), [5]);
        ack(&mut second, 3);
        ack(&mut second, 1);
        let sink = flusher.join().unwrap();
        let stats = sink.stats();
        assert_eq!(stats.events_acked, 6);
        assert_eq!(stats.windows_resent, 2, "both windows were in flight");
        assert_eq!(
            stats.events_resent, 4,
            "events 2 to 5 may have reached Logstash"
        );
        assert_eq!(stats.connects, 2);
        drop(first);
    }

    #[test]
    fn beats_a_connection_closed_between_batches_is_noticed_before_writing() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut sink =
            LogstashSink::new(addr, &beats_config(10, 1), &ServiceInfo::default()).unwrap();
        let (flushed, wait_flushed) = mpsc::channel::<()>();
        let first = std::thread::spawn({
            let l = listener.try_clone().unwrap();
            move || {
                let (mut conn, _) = l.accept().unwrap();
                assert_eq!(read_window(&mut conn), [0]);
                ack(&mut conn, 1);
                // Once the batch is delivered: a late keep-alive, then Logstash restarts and
                // the connection closes.
                wait_flushed.recv().unwrap();
                ack(&mut conn, 0);
            }
        });
        sink.write(&event(0, "chat")).unwrap();
        sink.flush().unwrap();
        flushed.send(()).unwrap();
        first.join().unwrap();
        // The close has reached the sink's socket (CLOSE_WAIT, 08 in /proc/net/tcp).
        let port = sink
            .conn
            .as_ref()
            .unwrap()
            .tcp()
            .local_addr()
            .unwrap()
            .port();
        let local = format!(":{port:04X} ");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string("/proc/net/tcp")
            .unwrap()
            .lines()
            .any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && format!("{} ", f[1]).ends_with(&local) && f[3] == "08"
            })
        {
            assert!(Instant::now() < deadline, "the close never arrived");
            std::thread::sleep(Duration::from_millis(5));
        }
        let second = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let got = read_window(&mut conn);
            ack(&mut conn, 1);
            (got, conn)
        });
        sink.write(&event(1, "chat")).unwrap();
        sink.flush().unwrap();
        let (got, _conn) = second.join().unwrap();
        assert_eq!(got, [1]);
        let stats = sink.stats();
        assert_eq!((stats.connects, stats.disconnects), (2, 1));
        assert_eq!(
            stats.windows_resent, 0,
            "nothing was written into the closed connection"
        );
        assert_eq!(stats.events_resent, 0);
    }

    #[test]
    fn beats_bytes_that_are_no_acknowledgement_drop_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mut sink =
            LogstashSink::new(addr, &beats_config(10, 1), &ServiceInfo::default()).unwrap();
        sink.write(&event(0, "chat")).unwrap();
        let flusher = std::thread::spawn(move || {
            sink.flush().unwrap();
            sink
        });
        let (mut first, _) = listener.accept().unwrap();
        read_window(&mut first);
        first
            .write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            .unwrap();
        let (mut second, _) = listener.accept().unwrap();
        assert_eq!(read_window(&mut second), [0]);
        ack(&mut second, 1);
        let sink = flusher.join().unwrap();
        assert_eq!(sink.stats().windows_resent, 1);
        assert_eq!(
            sink.stats().probation_failures,
            1,
            "never acknowledged: not healthy"
        );
    }

    #[test]
    fn ready_says_when_a_window_has_waited_long_with_nothing_from_logstash() {
        let metrics = LogstashMetrics::default();
        let probe = stall_probe(&metrics, 5000, 15_000);
        assert_eq!(probe(), None);
        let since = &metrics.beats.ack_wait_since_unix_ms;
        since.store(now_unix_ms() - 1000, Ordering::Relaxed);
        assert_eq!(probe(), None, "a keep-alive a second ago");
        since.store(now_unix_ms() - 20_000, Ordering::Relaxed);
        let reason = probe().expect("not ready");
        assert!(reason.contains("acknowledged nothing for 20 s"), "{reason}");
    }

    #[test]
    fn connection_refused_is_retried_until_a_listener_comes() {
        // Take a free port, then let it go so nothing listens there.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let metrics = LogstashMetrics::default();
        let mut sink = LogstashSink::new(addr.clone(), &config(), &ServiceInfo::default())
            .unwrap()
            .with_telemetry(metrics.clone(), Component::default());
        sink.write(&event(7, "chat")).unwrap();
        let flusher = std::thread::spawn(move || {
            sink.flush().unwrap();
            sink
        });
        // Listen only once the sink was refused twice.
        let deadline = Instant::now() + Duration::from_secs(30);
        while metrics.connect_failures.get() < 2 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        let listener = TcpListener::bind(&addr).unwrap();
        let (got, _conn) = read_lines(&listener, 1);
        let sink = flusher.join().unwrap();
        assert_eq!(got[0]["log"]["offset"], 7);
        assert!(sink.stats().connect_failures >= 2, "{:?}", sink.stats());
        // Nothing reached a connection before this one.
        assert_eq!(sink.stats().events_resent, 0);
    }
}
