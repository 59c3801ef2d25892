//! The Logstash sink itself: the connection, the batch buffer, and the [`Sink`] calls.
//!
//! How it fails: see the module docs of [`super`]; a write error is never returned to the
//! pipeline, the batch is written again on a new connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::config::LogstashConfig;
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
    /// Batches written.
    pub batches: u64,
    /// Events written.
    pub events: u64,
    /// Events written again after a failed write (possible duplicates at Logstash).
    pub events_resent: u64,
    /// Events not sent because `forward_unmatched` is off.
    pub events_skipped: u64,
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
        let mut scratch = [0u8; 512];
        let result = loop {
            let read = match self {
                Connection::Plain(s) => s.read(&mut scratch),
                Connection::Tls(s) => s.read(&mut scratch),
            };
            match read {
                Ok(0) => {
                    break Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "Logstash closed the connection",
                    ));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.tcp().set_nonblocking(false)?;
        result
    }

    /// The socket underneath.
    fn tcp(&self) -> &TcpStream {
        match self {
            Connection::Plain(s) => s,
            Connection::Tls(s) => &s.sock,
        }
    }
}

/// Sends events to Logstash. See the module docs.
pub struct LogstashSink {
    address: String,
    tls: Option<Tls>,
    connect_timeout: Duration,
    backoff_initial: Duration,
    backoff_max: Duration,
    forward_unmatched: bool,
    encoder: EventEncoder,
    buf: Vec<u8>,
    /// Events in `buf`.
    pending: u64,
    conn: Option<Connection>,
    stats: LogstashStats,
    metrics: LogstashMetrics,
    health: Component,
    /// Per event in `buf`: where its line ends in `buf`, and its record's offset in its file.
    ends: Vec<(usize, u64)>,
    /// While a batch is being written over plain TCP: the file offset of its first event not
    /// yet wholly taken by the kernel; [`NO_CUT`] otherwise; handed out as [`SinkHandle::cut_offset`].
    cut: Arc<AtomicU64>,
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
            forward_unmatched: config.forward_unmatched,
            encoder: EventEncoder::new(service),
            buf: Vec::with_capacity(256 * 1024),
            pending: 0,
            conn: None,
            stats: LogstashStats::default(),
            metrics: LogstashMetrics::default(),
            health: Component::default(),
            ends: Vec::new(),
            cut: Arc::new(AtomicU64::new(NO_CUT)),
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

    /// Connects, retrying with backoff until it works.
    fn connect(&mut self) -> &mut Connection {
        let mut wait = self.backoff_initial;
        loop {
            match self.try_connect() {
                Ok(stream) => {
                    self.stats.connects += 1;
                    internal_events::connected(&self.report(), self.stats.connects);
                    return self.conn.insert(stream);
                }
                Err(e) => {
                    self.stats.connect_failures += 1;
                    // Half of the wait is fixed, half random.
                    let jittered = wait / 2 + wait.mul_f64(fastrand::f64() / 2.0);
                    internal_events::connect_failed(&self.report(), &e, jittered);
                    std::thread::sleep(jittered);
                    wait = (wait * 2).min(self.backoff_max);
                }
            }
        }
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

    /// Drops the connection after a failure.
    fn disconnect(&mut self, why: &io::Error) {
        if self.conn.take().is_some() {
            self.stats.disconnects += 1;
            internal_events::connection_lost(&self.report(), why);
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
        let mut attempt = 0u32;
        loop {
            if self.conn.is_none() {
                self.connect();
            }
            let Some(stream) = self.conn.as_mut() else {
                continue;
            };
            let result = stream.check_alive().and_then(|()| {
                self.metrics
                    .write_started_unix_ms
                    .store(now_unix_ms(), Ordering::Relaxed);
                let (ends, cut) = (&self.ends, &self.cut);
                let written = stream.write_all(&self.buf, |done| {
                    // The first event not wholly written; the ones before it are.
                    let whole = ends.partition_point(|&(end, _)| end <= done);
                    if whole > 0 {
                        let next = ends.get(whole).map_or(NO_CUT, |&(_, offset)| offset);
                        cut.store(next, Ordering::Relaxed);
                    }
                });
                self.cut.store(NO_CUT, Ordering::Relaxed);
                self.metrics
                    .write_started_unix_ms
                    .store(0, Ordering::Relaxed);
                written
            });
            match result {
                Ok(()) => {
                    self.stats.batches += 1;
                    self.stats.events += self.pending;
                    self.metrics.events_sent.inc_by(self.pending);
                    if attempt > 0 {
                        self.stats.events_resent += self.pending;
                        self.metrics.events_resent.inc_by(self.pending);
                    }
                    self.buf.clear();
                    self.ends.clear();
                    self.pending = 0;
                    return Ok(());
                }
                Err(e) => {
                    attempt += 1;
                    self.disconnect(&e);
                }
            }
        }
    }
}

/// A probe for `/ready`: `Some(reason)` while a write has been blocked for `stall_ms` or more,
/// which means Logstash accepts but does not read (backpressure; the log files buffer).
pub fn stall_probe(metrics: &LogstashMetrics, stall_ms: u64) -> crate::telemetry::health::Probe {
    let started = metrics.write_started_unix_ms.clone();
    Box::new(move || {
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
            ..LogstashConfig::default()
        }
    }

    fn read_lines(listener: &TcpListener, n: usize) -> Vec<serde_json::Value> {
        let (conn, _) = listener.accept().unwrap();
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
        let got = reader.join().unwrap();
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
        let got = reader.join().unwrap();
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
        // The first connection is read, then closed by the peer.
        assert_eq!(first.join().unwrap().len(), 1);
        std::thread::sleep(Duration::from_millis(50));
        let second = std::thread::spawn(move || read_lines(&listener, 1));
        sink.write(&event(1, "chat")).unwrap();
        sink.flush().unwrap();
        let got = second.join().unwrap();
        assert_eq!(got[0]["log"]["offset"], 1);
        assert_eq!(sink.stats().connects, 2);
        assert_eq!(sink.stats().disconnects, 1);
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
        // Far more than the socket buffers hold; nobody reads yet.
        const EVENTS: u64 = 200_000;
        for i in 0..EVENTS {
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
        assert!(seen > 0 && seen < EVENTS, "cut at {seen}");
        // Everything before the cut is whole in the socket: read it all, then the rest.
        let got = read_lines(&listener, EVENTS as usize);
        assert_eq!(got.len(), EVENTS as usize);
        flusher.join().unwrap().unwrap();
        assert_eq!(cut.load(Ordering::Relaxed), NO_CUT, "no cut once written");
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
        let mut sink = LogstashSink::new(addr.clone(), &config(), &ServiceInfo::default()).unwrap();
        sink.write(&event(7, "chat")).unwrap();
        let flusher = std::thread::spawn(move || {
            sink.flush().unwrap();
            sink
        });
        std::thread::sleep(Duration::from_millis(150));
        let listener = TcpListener::bind(&addr).unwrap();
        let got = read_lines(&listener, 1);
        let sink = flusher.join().unwrap();
        assert_eq!(got[0]["log"]["offset"], 7);
        assert!(sink.stats().connect_failures >= 2, "{:?}", sink.stats());
    }
}
