//! The Logstash sink, end to end: the real `factorio-isr run --logstash ADDR` follows real files
//! and sends every event as one JSON line over TCP to a fake Logstash (`support::logstash`: a
//! `tcp` input with the `json_lines` codec that parses every line it receives), which the tests
//! pause, kill and restart.
//!
//! Every test has its own temporary directory, its own fake (an OS-assigned port) and a config
//! with fast timings and small backoffs (20 ms, at most 200 ms). Every wait is bounded; the
//! only plain sleeps are outages a scenario needs (Logstash down for half a second) and the
//! pacing of writers.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use support::logstash::{CLOSE_GRACE, Chat, Logstash};
use support::schema::EVENT_KEYS;
use support::{Env, EnvBuilder, Isr, SeqWriter, assert_each_once, check_seqs, paced};

/// How long lines may take to arrive (normally milliseconds; generous for a loaded machine
/// running the suite in parallel with a debug build). Waits for sequence numbers
/// ([`expect_arrive`]) give up only after this long with no line arriving.
const ARRIVE: Duration = Duration::from_secs(30);

/// How long a wait for hundreds of thousands of lines may go on with none arriving (their
/// whole journey takes seconds normally; a debug build and a fake that parses every line, on a
/// loaded machine, take minutes, but lines keep coming).
const BULK: Duration = Duration::from_secs(180);

/// How long after SIGTERM the process must have exited when Logstash is up (the default
/// `shutdown_timeout_ms` is 10 s).
const EXIT: Duration = Duration::from_secs(15);

/// Peak resident memory allowed while Logstash does not read.
const RSS_LIMIT_KIB: u64 = 128 * 1024;

/// A test's directories with fast timings, small backoffs and `--from-beginning` (the logs
/// are created after the start).
fn logstash_env() -> EnvBuilder {
    Env::builder().logstash("").start_at_beginning()
}

/// What the fake received, in a few words, for failure messages.
fn summary(fake: &Logstash) -> String {
    let r = fake.received();
    format!(
        "fake Logstash: {} connections accepted, {} lines, {} chat events, {} parse failures {:?}, {} schema failures {:?}",
        fake.accepted(),
        r.lines,
        r.chats.len(),
        r.parse_failures.len(),
        &r.parse_failures[..r.parse_failures.len().min(2)],
        r.schema_failures.len(),
        &r.schema_failures[..r.schema_failures.len().min(2)],
    )
}

/// Waits until every number of `want` from writer `id` has reached the fake; panics with what
/// is missing otherwise.
#[track_caller]
fn expect_arrive(fake: &Logstash, isr: &Isr, id: &str, want: &[u64], timeout: Duration) {
    if !fake.wait_for_seqs(id, want, timeout) {
        let report = check_seqs(want, &[], &fake.seqs(id))
            .err()
            .unwrap_or_default();
        panic!(
            "writer {id}: not every line reached Logstash (none for {timeout:?}): {report}\n{}\nstderr (end):\n{}",
            summary(fake),
            isr.stderr_tail()
        );
    }
}

/// Waits until the fake has received nothing new for 500 ms (at most 10 s), so that late
/// duplicates show before counting.
fn settle(fake: &Logstash) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = fake.received().lines;
    let mut since = Instant::now();
    while Instant::now() < deadline {
        sleep(Duration::from_millis(50));
        let now = fake.received().lines;
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_millis(500) {
            return;
        }
    }
}

/// Every line was JSON and every event an object with the schema keys.
#[track_caller]
fn assert_well_formed(fake: &Logstash) {
    let r = fake.received();
    assert!(
        r.parse_failures.is_empty() && r.schema_failures.is_empty(),
        "lines Logstash would tag _jsonparsefailure: {} {:?}; events without every key of {EVENT_KEYS:?}: {} {:?}",
        r.parse_failures.len(),
        &r.parse_failures[..r.parse_failures.len().min(3)],
        r.schema_failures.len(),
        &r.schema_failures[..r.schema_failures.len().min(3)],
    );
}

/// Nothing on stdout: with a Logstash sink, events go only to Logstash.
#[track_caller]
fn assert_no_stdout(isr: &Isr) {
    let events = isr.events();
    assert!(
        events.is_empty(),
        "{} events printed on stdout with --logstash, e.g. {}",
        events.len(),
        events[0]
    );
}

/// Lines of stderr that report a failed or lost connection to Logstash ("Cannot connect to
/// Logstash; retrying.", "Lost the connection to Logstash; reconnecting.").
fn connection_failures(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("logstash")
                && (l.contains("cannot connect") || l.contains("lost the connection"))
        })
        .count()
}

/// Waits until stderr reports a failed connection to Logstash.
#[track_caller]
fn expect_connection_failure_logged(isr: &Isr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while connection_failures(&isr.stderr()) == 0 {
        assert!(
            Instant::now() < deadline,
            "no failed connection to Logstash logged within {timeout:?}; stderr:\n{}",
            isr.stderr_tail()
        );
        sleep(Duration::from_millis(20));
    }
}

/// A port nothing listens on: bound by the OS, then let go.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    l.local_addr().expect("an address").port()
}

/// Waits (at most a minute) until factorio-isr uses under 10 % of a CPU over half a second:
/// it is blocked. Returns the clock ticks it used in the last half second; panics if it never
/// got that quiet.
#[track_caller]
fn wait_until_blocked(isr: &Isr, why: &str) -> u64 {
    let tps = support::clock_ticks_per_sec();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let before = isr.cpu_ticks();
        sleep(Duration::from_millis(500));
        let busy = isr.cpu_ticks() - before;
        if busy * 20 <= tps {
            return busy;
        }
        assert!(
            Instant::now() < deadline,
            "factorio-isr still used {busy} ticks per 500 ms after a minute {why}:\n{}",
            isr.stderr_tail()
        );
    }
}

/// Bytes queued on the loopback connections to `port` (`/proc/net/tcp`): (not yet sent or
/// acknowledged by the client, received but not read by the server).
fn socket_queues(port: u16) -> (u64, u64) {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let (mut tx, mut rx) = (0, 0);
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let port_of = |addr: &str| {
            addr.rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
        };
        let Some((t, r)) = cols.get(4).and_then(|q| q.split_once(':')) else {
            continue;
        };
        let (t, r) = (
            u64::from_str_radix(t, 16).unwrap_or(0),
            u64::from_str_radix(r, 16).unwrap_or(0),
        );
        if cols.get(2).and_then(|a| port_of(a)) == Some(port) {
            tx += t;
        }
        if cols.get(1).and_then(|a| port_of(a)) == Some(port) {
            rx += r;
        }
    }
    (tx, rx)
}

/// The length (newline included) of the JSON line of the chat event for `seq` of a file of
/// [`SeqWriter`] lines `line_len` bytes long each, from one that arrived: events differ only
/// in their number (of fixed width) and the digits of their `log.offset`.
fn event_bytes(chats: &[Chat], seq: u64, line_len: usize) -> usize {
    let digits = |s: u64| ((s - 1) * line_len as u64).to_string().len();
    let c = chats.first().expect("an event arrived");
    c.bytes - digits(c.seq) + digits(seq)
}

/// Whether `seqs` is strictly increasing.
fn increasing(seqs: &[u64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

/// Duplicates of writer `id` after a reconnect: checks that every number of `want` arrived, no
/// other number did, none more than twice; that each connection delivered its numbers in
/// increasing order; and that every duplicate arrived first on one connection and again among
/// the first events of a later one (the batch that was being written when the connection
/// died, sent again). Returns the duplicated numbers.
fn check_reconnect_duplicates(chats: &[Chat], id: &str, want: &[u64]) -> Result<Vec<u64>, String> {
    let mine: Vec<&Chat> = chats.iter().filter(|c| c.player == id).collect();
    let got: Vec<u64> = mine.iter().map(|c| c.seq).collect();
    let mut counts: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for c in &mine {
        counts.entry(c.seq).or_default().push(c.conn);
    }
    let dups: Vec<u64> = counts
        .iter()
        .filter(|(_, conns)| conns.len() > 1)
        .map(|(&s, _)| s)
        .collect();
    // Missing or unknown numbers (duplicates are judged below).
    let missing: Vec<u64> = want
        .iter()
        .copied()
        .filter(|s| !counts.contains_key(s))
        .collect();
    let known: HashSet<u64> = want.iter().copied().collect();
    let unknown: Vec<u64> = counts
        .keys()
        .copied()
        .filter(|s| !known.contains(s))
        .collect();
    if !missing.is_empty() || !unknown.is_empty() {
        return Err(format!(
            "{} events for {} numbers: missing ({}): {}; never written ({}): {}",
            got.len(),
            want.len(),
            missing.len(),
            support::ranges(&missing),
            unknown.len(),
            support::ranges(&unknown)
        ));
    }
    let mut by_conn: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for c in &mine {
        by_conn.entry(c.conn).or_default().push(c.seq);
    }
    for (conn, seqs) in &by_conn {
        if !increasing(seqs) {
            return Err(format!(
                "connection {conn} delivered numbers out of order: {:?}…",
                &seqs[..seqs.len().min(20)]
            ));
        }
    }
    for &d in &dups {
        let conns = &counts[&d];
        if conns.len() > 2 {
            return Err(format!("seq {d} arrived {} times", conns.len()));
        }
        if conns[0] >= conns[1] {
            return Err(format!(
                "seq {d} arrived twice on connection {}: a duplicate not caused by a reconnect",
                conns[0]
            ));
        }
        // Its second arrival is among the first events of the later connection.
        let later = &by_conn[&conns[1]];
        let pos = later.iter().position(|&s| s == d).unwrap_or(usize::MAX);
        if pos >= dups.len() {
            return Err(format!(
                "seq {d} arrived again as event {pos} of connection {}, not with the batch re-sent after the reconnect ({} duplicates in all: {})",
                conns[1],
                dups.len(),
                support::ranges(&dups)
            ));
        }
    }
    Ok(dups)
}

// --- delivery ---------------------------------------------------------------------------------

/// A writer "w" of ~3000 lines/s into a file, on a thread of its own until
/// [`SteadyWriter::finish`], so that lines keep coming through an outage however slow the
/// machine.
struct SteadyWriter {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<SeqWriter>,
}

impl SteadyWriter {
    fn start(path: PathBuf) -> SteadyWriter {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut w = SeqWriter::create(&path, "w");
                while !stop.load(Ordering::SeqCst) {
                    paced(300, 3000, |_| {
                        w.write_line();
                    });
                }
                w
            })
        };
        SteadyWriter { stop, thread }
    }

    /// Stops the writer and returns it, with every number it wrote.
    fn finish(self) -> SeqWriter {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the writer thread")
    }
}

/// The start of an outage scenario: factorio-isr sends to a fake Logstash what a
/// [`SteadyWriter`] writes into `console.log`. Returns once the first 2000 lines have arrived.
#[track_caller]
fn steady_stream(env: &Env) -> (Logstash, Isr, SteadyWriter) {
    let fake = Logstash::start();
    let isr = env.isr().logstash(fake.addr()).spawn();
    let writer = SteadyWriter::start(env.log("console.log"));
    assert!(
        fake.wait_until(|r| r.chats.len() >= 2000, ARRIVE),
        "the first 2000 lines did not arrive:\n{}\nstderr:\n{}",
        summary(&fake),
        isr.stderr_tail()
    );
    (fake, isr, writer)
}

/// The end of an outage scenario, once Logstash is back: waits until 2000 lines have come
/// through a connection after the first, stops the writer and expects every line it wrote to
/// arrive. Returns the writer.
#[track_caller]
fn expect_flowing_again(fake: &Logstash, isr: &Isr, writer: SteadyWriter) -> SeqWriter {
    let flowing = fake.wait_until(
        |r| r.chats.iter().filter(|c| c.conn >= 2).count() >= 2000,
        ARRIVE,
    );
    let w = writer.finish();
    assert!(
        flowing,
        "lines did not flow again after the restart:\n{}\nstderr:\n{}",
        summary(fake),
        isr.stderr_tail()
    );
    expect_arrive(fake, isr, "w", w.written(), ARRIVE);
    w
}

/// After a stop and a restart: asserts that every number of `want` arrived (in `got`), none
/// more than twice and nothing else; returns the numbers that arrived twice.
#[track_caller]
fn restart_duplicates(want: &[u64], got: &[u64]) -> Vec<u64> {
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for &s in got {
        *counts.entry(s).or_default() += 1;
    }
    assert!(
        counts.values().all(|&n| n <= 2) && counts.len() == want.len(),
        "{}",
        check_seqs(want, &[], got).err().unwrap_or_default()
    );
    counts
        .into_iter()
        .filter(|e| e.1 > 1)
        .map(|e| e.0)
        .collect()
}

/// Sends SIGTERM and expects exit code 0 within `shutdown_timeout_ms = 1000` plus 2 s of
/// margin. Returns how long the exit took.
#[track_caller]
fn sigterm_and_expect_exit_0_by_the_deadline(isr: &mut Isr, situation: &str) -> Duration {
    isr.sigterm();
    let signalled = Instant::now();
    let status = isr.wait_exit(Duration::from_secs(10)).unwrap_or_else(|| {
        panic!(
            "no exit within 10 s of SIGTERM {situation}:\n{}",
            isr.stderr_tail()
        )
    });
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", isr.stderr_tail());
    assert!(
        took <= Duration::from_millis(1000 + 2000),
        "exit took {took:?} with shutdown_timeout_ms = 1000:\n{}",
        isr.stderr_tail()
    );
    took
}

#[test]
fn a_hundred_thousand_lines_arrive_in_order_once_each_as_schema_events() {
    let env = logstash_env().build();
    let fake = Logstash::start();
    let mut isr = env.isr().logstash(fake.addr()).spawn();
    let mut a = SeqWriter::create(env.log("console.log"), "a");
    let mut b = SeqWriter::create(env.log("factorio-current.log"), "b");
    for _ in 0..10 {
        a.write_lines(5000);
        b.write_lines(5000);
    }
    expect_arrive(&fake, &isr, "a", a.written(), BULK);
    expect_arrive(&fake, &isr, "b", b.written(), BULK);
    settle(&fake);

    assert_well_formed(&fake);
    for w in [&a, &b] {
        let got = fake.seqs(w.id());
        assert_each_once(w.id(), w.written(), &got, &summary(&fake));
        assert!(
            increasing(&got),
            "writer {}: lines out of file order",
            w.id()
        );
    }
    let events = fake.events();
    assert_eq!(events.len(), 100_000, "{}", summary(&fake));
    let file_of = |id: &str| {
        if id == "a" {
            "console.log"
        } else {
            "factorio-current.log"
        }
    };
    for e in &events {
        assert_eq!(e["event_type"], "chat", "{e}");
        assert_eq!(e["server"], "test", "{e}");
        let player = e["fields"]["player"].as_str().unwrap_or_default();
        let path = e["log"]["path"].as_str().unwrap_or_default();
        assert!(
            path.ends_with(&format!("/{}", file_of(player))),
            "an event of writer {player} from {path}: {e}"
        );
    }
    let status = isr.stop(EXIT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", isr.stderr_tail());
    // stdout was read to its end by now.
    assert_no_stdout(&isr);
    eprintln!("100k lines: {} connection(s) accepted", fake.accepted());
}

#[test]
fn logstash_killed_and_restarted_mid_stream_loses_nothing() {
    let env = logstash_env().build();
    let (mut fake, isr, writer) = steady_stream(&env);
    // Logstash closes the connection (and reads on until factorio-isr closes its side).
    fake.kill();
    let at_kill = fake.received().chats.len();
    // Logstash is down for half a second while lines keep coming.
    sleep(Duration::from_millis(500));
    fake.restart();
    // 2000 more lines through the new connection, then the writer stops.
    let w = expect_flowing_again(&fake, &isr, writer);
    settle(&fake);

    assert_well_formed(&fake);
    let dups = check_reconnect_duplicates(&fake.chats(), "w", w.written()).unwrap_or_else(|e| {
        panic!(
            "kill and restart: {e}\n{}\nstderr:\n{}",
            summary(&fake),
            isr.stderr_tail()
        )
    });
    assert_eq!(
        fake.cut_off(),
        0,
        "factorio-isr went on writing to the closed connection for {CLOSE_GRACE:?}:\n{}",
        isr.stderr_tail()
    );
    assert!(
        isr.stderr().contains("Lost the connection to Logstash"),
        "the lost connection is not logged:\n{}",
        isr.stderr_tail()
    );
    assert!(
        fake.accepted() >= 2,
        "Logstash was restarted but saw {} connection(s)",
        fake.accepted()
    );
    let resent = expect_resent_at_least(&isr, dups.len());
    assert_no_stdout(&isr);
    eprintln!(
        "kill/restart: {} lines written, {} arrived by the end of the kill, {} duplicates ({}), {resent} counted as possibly sent twice, {} connections accepted, {} connection failures logged",
        w.written().len(),
        at_kill,
        dups.len(),
        support::ranges(&dups),
        fake.accepted(),
        connection_failures(&isr.stderr())
    );
}

/// The value of the sample `name` (with its labels, if any) on `/metrics`.
fn metric(isr: &Isr, name: &str) -> f64 {
    let (status, body) = isr.admin_get("/metrics");
    assert_eq!(status, 200, "{body}");
    support::metric_sample(&body, name)
        .unwrap_or_else(|| panic!("no sample {name} on /metrics:\n{body}"))
}

/// Waits until `/ready` answers 200: every component is ready, the Logstash connection has
/// passed its probation.
#[track_caller]
fn expect_ready(isr: &Isr) {
    let deadline = Instant::now() + ARRIVE;
    loop {
        let (status, body) = isr.admin_get("/ready");
        if status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/ready is still {status} after {ARRIVE:?}: {body}\nstderr:\n{}",
            isr.stderr_tail()
        );
        sleep(Duration::from_millis(50));
    }
}

/// `factorio_isr_logstash_events_resent_total` is an upper bound of the `dups` duplicates
/// that arrived. Returns it.
#[track_caller]
fn expect_resent_at_least(isr: &Isr, dups: usize) -> f64 {
    let resent = metric(isr, "factorio_isr_logstash_events_resent_total");
    assert!(
        dups as f64 <= resent,
        "{dups} duplicates arrived but only {resent} events were counted as possibly sent twice"
    );
    resent
}

/// The acceptance run, as a new user would try it: `run DIR --from-beginning
/// --logstash ADDR` while a receiver vanishes for seconds and comes back, then accepts but
/// stops reading.
#[test]
fn a_receiver_that_vanishes_then_stalls_loses_nothing_and_health_stays_up() {
    let env = logstash_env().build();
    let (mut fake, isr, writer) = steady_stream(&env);
    // The receiver vanishes for three seconds: it shuts down (closing its connections as a
    // server does) and nothing listens. A receiver that crashes with unread data loses that
    // data whatever the sender does (json_lines acknowledges nothing); that case has its own
    // test, `logstash_crashing_loses_at_most_what_the_sockets_held_and_the_rest_arrives`.
    fake.kill();
    sleep(Duration::from_secs(3));
    let (status, body) = isr.admin_get("/ready");
    assert_eq!(status, 503, "/ready while Logstash is gone: {body}");
    assert!(body.contains("logstash"), "{body}");
    assert_eq!(isr.admin_get("/healthz").0, 200);
    fake.restart();
    let mut w = expect_flowing_again(&fake, &isr, writer);
    expect_ready(&isr);

    // Then it accepts but stops reading while 300,000 more lines are written.
    fake.pause_reading();
    for _ in 0..15 {
        w.write_lines(20_000);
    }
    wait_until_blocked(&isr, "while Logstash does not read");
    let (_, peak_kib) = isr.rss_kib();
    assert!(
        peak_kib < RSS_LIMIT_KIB,
        "peak RSS {peak_kib} KiB while Logstash stalls"
    );
    assert_eq!(
        isr.admin_get("/healthz").0,
        200,
        "/healthz while Logstash stalls"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let stalled_reason = loop {
        let (status, body) = isr.admin_get("/ready");
        if status == 503 && body.contains("does not read") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never reported the stall: {status} {body}"
        );
        sleep(Duration::from_millis(200));
    };
    fake.resume_reading();
    expect_arrive(&fake, &isr, "w", w.written(), BULK);
    settle(&fake);
    assert_well_formed(&fake);

    // Every line arrived; duplicates only with a batch re-sent after the reconnect, and
    // counted: no more than the sink says it sent again.
    let dups = check_reconnect_duplicates(&fake.chats(), "w", w.written())
        .unwrap_or_else(|e| panic!("{e}\n{}", isr.stderr_tail()));
    let resent = expect_resent_at_least(&isr, dups.len());
    assert!(metric(&isr, "factorio_isr_logstash_reconnects_total") >= 1.0);
    assert_eq!(metric(&isr, "factorio_isr_logstash_connected"), 1.0);
    // A batch whose write failed counts once, when it was written whole.
    let sent = metric(&isr, "factorio_isr_logstash_events_sent_total");
    assert_eq!(sent as usize, w.written().len());
    let mut isr = isr;
    sigterm_and_expect_exit_0_by_the_deadline(&mut isr, "after the stall");
    eprintln!(
        "vanish then stall: {} lines, {} duplicates ({}), {resent} counted as re-sent, peak RSS {peak_kib} KiB; /ready said: {stalled_reason}",
        w.written().len(),
        dups.len(),
        support::ranges(&dups),
    );
}

#[test]
fn logstash_that_never_reads_blocks_factorio_isr_with_bounded_memory() {
    const LINES: usize = 1_000_000;
    const CHUNK: usize = 20_000;
    let env = logstash_env().build();
    let fake = Logstash::start_lean();
    fake.pause_reading();
    let isr = env.isr().logstash(fake.addr()).spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    let mut peak_writing = 0;
    for _ in 0..LINES / CHUNK {
        w.write_lines(CHUNK);
        peak_writing = peak_writing.max(isr.rss_kib().1);
    }
    assert!(
        fake.wait_until(|_| fake.accepted() >= 1, ARRIVE),
        "factorio-isr never connected:\n{}",
        isr.stderr_tail()
    );
    // factorio-isr has filled the socket buffers and blocks: it uses (almost) no CPU.
    let busy = wait_until_blocked(&isr, "while Logstash does not read");
    let (rss_blocked, hwm_blocked) = isr.rss_kib();
    assert_eq!(fake.received().lines, 0, "the paused fake read something");

    // Delivery is checked before memory, so that a memory failure still shows whether
    // everything arrives.
    fake.resume_reading();
    let all_arrived = fake.wait_until(|r| r.chats.len() >= LINES, 2 * BULK);
    settle(&fake);
    let (_, hwm_end) = isr.rss_kib();
    eprintln!(
        "never reads: {LINES} lines ({} MB); peak RSS while writing {peak_writing} KiB, while blocked {hwm_blocked} KiB (current {rss_blocked} KiB, {busy} ticks / 500 ms), after delivering everything {hwm_end} KiB",
        LINES * (w.line(1).len() + 1) / 1_000_000
    );
    assert!(all_arrived, "after resuming: {}", summary(&fake));
    assert_well_formed(&fake);
    let got = fake.seqs("w");
    assert_each_once("after resuming", w.written(), &got, &summary(&fake));
    assert!(increasing(&got), "lines out of file order");
    assert_no_stdout(&isr);
    assert!(
        hwm_blocked < RSS_LIMIT_KIB && hwm_end < RSS_LIMIT_KIB,
        "peak RSS {hwm_blocked} KiB while Logstash did not read ({LINES} lines in the log), {hwm_end} KiB after delivering them; the limit is {RSS_LIMIT_KIB} KiB"
    );
}

#[test]
fn logstash_crashing_loses_at_most_what_the_sockets_held_and_the_rest_arrives() {
    let env = logstash_env().build();
    // 16 MB of log before the start.
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    for _ in 0..10 {
        w.write_lines(20_000);
    }
    // Logstash reads the first 1000 events and stops reading; factorio-isr blocks.
    let mut fake = Logstash::start();
    fake.pause_after(1000);
    let isr = env.isr().logstash(fake.addr()).spawn();
    assert!(
        fake.wait_until(|r| r.lines >= 1000, ARRIVE),
        "{}\nstderr:\n{}",
        summary(&fake),
        isr.stderr_tail()
    );
    wait_until_blocked(&isr, "while Logstash does not read");
    // Logstash dies with what its socket holds unread (lost with it: json_lines acknowledges
    // nothing, so no sender can know), and is back at once. factorio-isr is frozen meanwhile,
    // so that what it has written, measured just before the crash, is all it wrote on the
    // dead connection.
    isr.freeze();
    let last_before = fake.seqs("w").last().copied().unwrap_or(0);
    let (unsent, unread) = socket_queues(fake.port());
    let unconsumed = fake.unconsumed();
    fake.crash();
    isr.thaw();
    fake.restart();
    let last = *w.written().last().expect("lines were written");
    expect_arrive(&fake, &isr, "w", &[last], BULK);
    settle(&fake);
    assert_well_formed(&fake);

    // What is missing is one run of lines right after the last one read before the crash,
    // and no more than was written and not read: in factorio-isr's socket, in Logstash's
    // socket, and in the fake's read buffer. (The batch being written at the crash is sent
    // again whole; a batch dropped instead would be missing on top of that.)
    let chats = fake.chats();
    let got: HashSet<u64> = chats.iter().map(|c| c.seq).collect();
    let missing: Vec<u64> = w
        .written()
        .iter()
        .copied()
        .filter(|s| !got.contains(s))
        .collect();
    let contiguous = missing
        .iter()
        .enumerate()
        .all(|(i, &s)| s == last_before + 1 + i as u64);
    let missing_bytes: usize = missing
        .iter()
        .map(|&s| event_bytes(&chats, s, w.line(1).len() + 1))
        .sum();
    let held = (unsent + unread) as usize + unconsumed;
    assert!(
        contiguous && missing_bytes <= held,
        "lost at the crash: {} lines ({missing_bytes} bytes: {}), but the sockets held {unread} + {unsent} bytes and the fake's buffer {unconsumed}; the last line read was {last_before}",
        missing.len(),
        support::ranges(&missing)
    );
    // Everything else arrived, duplicates only with the batch sent again after reconnecting.
    let rest: Vec<u64> = w
        .written()
        .iter()
        .copied()
        .filter(|s| got.contains(s))
        .collect();
    let dups = check_reconnect_duplicates(&fake.chats(), "w", &rest).unwrap_or_else(|e| {
        panic!(
            "crash: {e}\n{}\nstderr:\n{}",
            summary(&fake),
            isr.stderr_tail()
        )
    });
    assert!(fake.accepted() >= 2, "{}", summary(&fake));
    assert!(
        isr.stderr().contains("Lost the connection to Logstash"),
        "the lost connection is not logged:\n{}",
        isr.stderr_tail()
    );
    let resent = expect_resent_at_least(&isr, dups.len());
    assert_no_stdout(&isr);
    eprintln!(
        "crash: {} lines; {unread} bytes unread in Logstash's socket, {unconsumed} in its read buffer and {unsent} unsent in factorio-isr's at the crash; {} lines ({missing_bytes} bytes) lost ({}), {} duplicates ({}), {resent} counted as possibly sent twice, {} connections",
        w.written().len(),
        missing.len(),
        support::ranges(&missing),
        dups.len(),
        support::ranges(&dups),
        fake.accepted()
    );
}

/// Issue 12, item 3: a TCP proxy or load balancer with no healthy Logstash behind it accepts,
/// takes the first bytes, and resets. Such a connection never counts as healthy: what it took
/// is written again on the next connection (nothing is lost), the connections follow the
/// doubling backoff rather than restarting it at every accept, and `/ready` says not ready
/// throughout. Then Logstash is there, and everything arrives.
#[test]
fn a_receiver_that_accepts_and_resets_loses_nothing_backs_off_and_is_not_ready() {
    const RESETS: usize = 6;
    const INITIAL_MS: u64 = 100;
    const MAX_MS: u64 = 1600;
    let env = Env::builder()
        .logstash_backoff(INITIAL_MS, MAX_MS)
        .start_at_beginning()
        .build();
    let fake = Logstash::start_resetting(RESETS);
    let isr = env.isr().logstash(fake.addr()).spawn();
    let admin = isr.admin_addr();
    let writer = SteadyWriter::start(env.log("console.log"));

    // `/ready` through the reset phase, with when each answer came.
    let mut samples = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while fake.resets().len() < RESETS && Instant::now() < deadline {
        if fake.accepted() > 0 {
            let (status, body) = support::http_get(admin, "/ready");
            samples.push((status, body, Instant::now()));
        }
        sleep(Duration::from_millis(20));
    }
    let resets = fake.resets();
    assert_eq!(
        resets.len(),
        RESETS,
        "the proxy was reached only {} times:\n{}",
        resets.len(),
        isr.stderr_tail()
    );
    let phase_end = resets[RESETS - 1];
    // The connection after the resets reaches Logstash and carries lines.
    let flowing = fake.wait_until(
        |r| r.chats.iter().filter(|c| c.conn > RESETS).count() >= 1000,
        ARRIVE,
    );
    let w = writer.finish();
    assert!(
        flowing,
        "lines did not flow after the proxy's resets:\n{}\nstderr:\n{}",
        summary(&fake),
        isr.stderr_tail()
    );

    let mut failures = Vec::new();
    // (a) Every line arrived at least once: what the resetting connections took was written
    // again.
    if !fake.wait_for_seqs("w", w.written(), ARRIVE) {
        let got: HashSet<u64> = fake.seqs("w").into_iter().collect();
        let missing: Vec<u64> = w
            .written()
            .iter()
            .copied()
            .filter(|s| !got.contains(s))
            .collect();
        failures.push(format!(
            "(a) {} of {} lines never arrived: {}",
            missing.len(),
            w.written().len(),
            support::ranges(&missing)
        ));
    }
    // (b) The connections follow the backoff: the wait after the k-th lost connection is
    // randomised between half and all of min(INITIAL_MS * 2^k, MAX_MS), so consecutive
    // accepts are at least half of it apart, however slow the machine (slowness only adds).
    let accepts = fake.accept_times();
    let gaps: Vec<Duration> = accepts
        .windows(2)
        .take(RESETS)
        .map(|p| p[1] - p[0])
        .collect();
    for (k, gap) in gaps.iter().enumerate() {
        let least = Duration::from_millis((INITIAL_MS << k).min(MAX_MS) / 2);
        if *gap < least {
            failures.push(format!(
                "(b) connection {} came {gap:?} after connection {}: the backoff allows no less than {least:?}",
                k + 2,
                k + 1
            ));
        }
    }
    // (c) `/ready` never said ready while the proxy reset connections.
    let during: Vec<&(u16, String, Instant)> = samples.iter().filter(|s| s.2 < phase_end).collect();
    let ready: Vec<&&(u16, String, Instant)> = during
        .iter()
        .filter(|s| s.0 != 503 || !s.1.contains("logstash"))
        .collect();
    if during.is_empty() || !ready.is_empty() {
        failures.push(format!(
            "(c) {} of {} answers of /ready during the resets did not say Logstash is not ready, e.g. {:?}",
            ready.len(),
            during.len(),
            ready.first().map(|s| (s.0, &s.1))
        ));
    }
    assert!(
        failures.is_empty(),
        "{}\n{}\nstderr:\n{}",
        failures.join("\n"),
        summary(&fake),
        isr.stderr_tail()
    );

    expect_ready(&isr);
    settle(&fake);
    assert_well_formed(&fake);
    // The fake behind the proxy recorded nothing of the reset connections: no duplicates,
    // and the lines the proxy took were counted as possibly sent twice.
    let got = fake.seqs("w");
    let dups = got.len() - got.iter().collect::<HashSet<_>>().len();
    let resent = expect_resent_at_least(&isr, dups);
    assert!(
        resent >= 1.0,
        "the batch the proxy took was written again but not counted"
    );
    assert_eq!(
        metric(&isr, "factorio_isr_logstash_events_sent_total") as usize,
        got.len(),
        "events sent counts each delivered batch once"
    );
    assert_no_stdout(&isr);
    eprintln!(
        "accept and reset: {} lines; {RESETS} resets, accepts {:?} apart; {} of {} /ready answers during the resets; {resent} counted as possibly sent twice",
        w.written().len(),
        gaps,
        during.len(),
        samples.len()
    );
}

/// Issue 12, item 10: `logstash_events_resent_total` counts only events that may have reached
/// Logstash before. Logstash is down at the start, comes up, then goes away while
/// factorio-isr is idle (the close is noticed before the next batch is written) and comes back:
/// nothing was sent twice, and nothing is counted.
#[test]
fn nothing_counts_as_resent_when_logstash_is_down_at_start_and_between_batches() {
    let env = logstash_env().build();
    let port = free_port();
    let isr = env.isr().logstash(format!("127.0.0.1:{port}")).spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(500);
    expect_connection_failure_logged(&isr, ARRIVE);
    let mut fake = Logstash::start_on(port);
    expect_arrive(&fake, &isr, "w", w.written(), ARRIVE);
    // The connection has proved healthy: nothing is in flight.
    expect_ready(&isr);
    // Logstash goes away; it had read everything, so its close is a plain end-of-file.
    fake.crash();
    let failures = connection_failures(&isr.stderr());
    w.write_lines(500);
    assert!(
        support::wait_until(|| connection_failures(&isr.stderr()) > failures, ARRIVE),
        "the closed connection was not noticed:\n{}",
        isr.stderr_tail()
    );
    fake.restart();
    expect_arrive(&fake, &isr, "w", w.written(), ARRIVE);
    settle(&fake);
    assert_well_formed(&fake);
    assert_each_once(
        "down at start and between batches",
        w.written(),
        &fake.seqs("w"),
        &summary(&fake),
    );
    let resent = metric(&isr, "factorio_isr_logstash_events_resent_total");
    assert_eq!(
        resent, 0.0,
        "nothing was sent twice, but {resent} events were counted as possibly sent twice"
    );
    assert_no_stdout(&isr);
}

#[test]
fn connection_refused_at_start_is_retried_until_logstash_is_up() {
    let env = logstash_env().build();
    let port = free_port();
    let isr = env.isr().logstash(format!("127.0.0.1:{port}")).spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(2000);
    let written_at = Instant::now();
    expect_connection_failure_logged(&isr, ARRIVE);
    // Logstash comes up a second after the lines were written.
    if let Some(rest) = Duration::from_secs(1).checked_sub(written_at.elapsed()) {
        sleep(rest);
    }
    let failures_while_down = connection_failures(&isr.stderr());
    let fake = Logstash::start_on(port);
    expect_arrive(&fake, &isr, "w", w.written(), ARRIVE);
    // The connection, once made, carries what comes next.
    w.write_lines(500);
    expect_arrive(&fake, &isr, "w", w.written(), ARRIVE);
    settle(&fake);
    assert_well_formed(&fake);
    assert_each_once(
        "refused at start",
        w.written(),
        &fake.seqs("w"),
        &summary(&fake),
    );
    assert!(increasing(&fake.seqs("w")), "lines out of file order");
    assert_no_stdout(&isr);
    eprintln!(
        "refused at start: {failures_while_down} connection failures logged in the first second; {} connection(s) accepted",
        fake.accepted()
    );
}

// --- stopping ---------------------------------------------------------------------------------

#[test]
fn sigterm_delivers_what_was_read_and_a_restart_sends_the_rest_once() {
    let env = logstash_env().build();
    let fake = Logstash::start();
    let cmd = env.isr().logstash(fake.addr());
    let mut isr = cmd.spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(3000);
    expect_arrive(&fake, &isr, "w", w.written(), ARRIVE);
    w.write_lines(3000);
    let status = isr.stop(EXIT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", isr.stderr_tail());
    assert_no_stdout(&isr);
    let run1 = fake.seqs("w").len();

    let isr2 = cmd.spawn();
    expect_arrive(&fake, &isr2, "w", w.written(), ARRIVE);
    settle(&fake);
    assert_well_formed(&fake);
    assert_each_once(
        "across a SIGTERM and a restart",
        w.written(),
        &fake.seqs("w"),
        &format!("{}\nrun 1 stderr:\n{}", summary(&fake), isr.stderr()),
    );
    assert_no_stdout(&isr2);
    eprintln!(
        "SIGTERM: run 1 delivered {run1} of {} lines, run 2 the rest",
        w.written().len()
    );
}

#[test]
fn sigterm_with_logstash_down_exits_at_the_deadline_and_loses_nothing() {
    let env = logstash_env().tail("shutdown_timeout_ms = 1000").build();
    let mut fake = Logstash::start();
    let cmd = env.isr().logstash(fake.addr());
    let mut isr = cmd.spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(1000);
    expect_arrive(&fake, &isr, "w", w.written(), ARRIVE);
    // Logstash dies while factorio-isr is idle (nothing in flight).
    fake.crash();
    w.write_lines(1000);
    // factorio-isr found Logstash gone and is retrying.
    expect_connection_failure_logged(&isr, ARRIVE);
    let took = sigterm_and_expect_exit_0_by_the_deadline(&mut isr, "with Logstash down");
    assert_no_stdout(&isr);

    fake.restart();
    let isr2 = cmd.spawn();
    expect_arrive(&fake, &isr2, "w", w.written(), ARRIVE);
    settle(&fake);
    assert_well_formed(&fake);
    let dups = restart_duplicates(w.written(), &fake.seqs("w"));
    eprintln!(
        "SIGTERM with Logstash down: exit after {took:?}; {} duplicates after the restart ({})",
        dups.len(),
        support::ranges(&dups)
    );
}

#[test]
fn sigterm_while_logstash_does_not_read_exits_at_the_deadline_and_loses_nothing() {
    let env = logstash_env().tail("shutdown_timeout_ms = 1000").build();
    let fake = Logstash::start();
    let cmd = env.isr().logstash(fake.addr());
    let mut isr = cmd.spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(1000);
    expect_arrive(&fake, &isr, "w", w.written(), ARRIVE);
    // The connection has proved healthy (what a connection on probation took is sent again
    // after a forced stop).
    expect_ready(&isr);
    // Logstash stops reading; factorio-isr blocks in the middle of a write.
    fake.pause_reading();
    for _ in 0..10 {
        w.write_lines(20_000);
    }
    wait_until_blocked(&isr, "while Logstash does not read");
    let took = sigterm_and_expect_exit_0_by_the_deadline(&mut isr, "while Logstash does not read");
    assert_no_stdout(&isr);

    // Logstash reads again: what the first run's socket held arrives, then the second run
    // sends what was not delivered: the cut batch resumes at its first event the kernel had
    // not wholly taken, so nothing arrives twice.
    fake.resume_reading();
    let isr2 = cmd.spawn();
    expect_arrive(&fake, &isr2, "w", w.written(), BULK);
    settle(&fake);
    let r = fake.received();
    // The first run's socket may end in the middle of a line (its last batch cut by the
    // exit): at most one line Logstash cannot parse.
    assert!(
        r.parse_failures.len() <= 1 && r.schema_failures.is_empty(),
        "{} parse failures {:?}, {} schema failures",
        r.parse_failures.len(),
        &r.parse_failures[..r.parse_failures.len().min(2)],
        r.schema_failures.len()
    );
    let got = r.seqs("w");
    let cut_lines = r.parse_failures.len();
    drop(r);
    let dups = restart_duplicates(w.written(), &got);
    assert_no_stdout(&isr2);
    assert!(
        dups.is_empty(),
        "{} lines arrived twice after a forced stop ({})",
        dups.len(),
        support::ranges(&dups)
    );
    eprintln!(
        "SIGTERM while Logstash does not read: exit after {took:?}; {} duplicates after the restart, {cut_lines} cut line(s)",
        dups.len()
    );
}

// --- configuration ----------------------------------------------------------------------------

#[test]
fn forward_unmatched_false_drops_log_events() {
    let env = logstash_env().logstash("forward_unmatched = false").build();
    let fake = Logstash::start();
    let isr = env.isr().logstash(fake.addr()).spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_raw(b"hello world\n");
    w.write_lines(3);
    w.write_raw(b"another line no pattern matches\n");
    // Events go in file order: once the last line is in, the others would have been.
    w.write_line();
    expect_arrive(&fake, &isr, "w", w.written(), ARRIVE);
    settle(&fake);
    assert_well_formed(&fake);
    let events = fake.events();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(types, ["chat"; 4], "{events:?}");
    assert_no_stdout(&isr);
}

#[test]
fn logstash_addr_in_the_environment_selects_the_sink_and_unmatched_lines_are_forwarded() {
    let env = logstash_env().build();
    let fake = Logstash::start();
    let isr = env
        .isr()
        .env("LOGSTASH_ADDR", fake.addr().to_string())
        .spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_raw(b"hello world\n");
    w.write_lines(3);
    expect_arrive(&fake, &isr, "w", w.written(), ARRIVE);
    settle(&fake);
    assert_well_formed(&fake);
    let events = fake.events();
    let hello: Vec<_> = events
        .iter()
        .filter(|e| e["message"] == "hello world")
        .collect();
    assert_eq!(hello.len(), 1, "{events:?}");
    assert_eq!(hello[0]["event_type"], "log", "{}", hello[0]);
    assert_eq!(events.len(), 4, "{events:?}");
    assert_no_stdout(&isr);
}

#[test]
fn the_config_file_address_selects_the_sink() {
    let fake = Logstash::start();
    // A host name, resolved by factorio-isr.
    let env = logstash_env()
        .logstash(&format!("address = \"localhost:{}\"", fake.port()))
        .build();
    let isr = env.isr().spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(5);
    expect_arrive(&fake, &isr, "w", w.written(), ARRIVE);
    settle(&fake);
    assert_well_formed(&fake);
    assert_each_once(
        "config address",
        w.written(),
        &fake.seqs("w"),
        &summary(&fake),
    );
    assert_no_stdout(&isr);
}

#[test]
fn the_flag_beats_the_environment_which_beats_the_config_file() {
    let flag = Logstash::start();
    let env_var = Logstash::start();
    let file = Logstash::start();
    let run = |with_flag: bool| {
        let env = logstash_env()
            .logstash(&format!("address = \"{}\"", file.addr()))
            .build();
        let mut cmd = env.isr().env("LOGSTASH_ADDR", env_var.addr().to_string());
        if with_flag {
            cmd = cmd.logstash(flag.addr());
        }
        let isr = cmd.spawn();
        let mut w = SeqWriter::create(env.log("console.log"), if with_flag { "f" } else { "e" });
        w.write_lines(5);
        let winner = if with_flag { &flag } else { &env_var };
        expect_arrive(winner, &isr, w.id(), w.written(), ARRIVE);
        settle(winner);
        assert_each_once(w.id(), w.written(), &winner.seqs(w.id()), &summary(winner));
        assert_no_stdout(&isr);
    };
    run(true);
    run(false);
    assert_eq!(flag.accepted(), 1, "--logstash");
    assert_eq!(
        env_var.accepted(),
        1,
        "LOGSTASH_ADDR: only without --logstash"
    );
    assert_eq!(
        file.accepted(),
        0,
        "the config file's address is overridden both times"
    );
    assert!(flag.seqs("e").is_empty() && env_var.seqs("f").is_empty());
}

#[test]
fn connect_timeout_ms_0_is_refused_or_means_no_timeout() {
    let env = logstash_env().logstash("connect_timeout_ms = 0").build();
    let fake = Logstash::start();
    let mut isr = env.isr().logstash(fake.addr()).spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(5);
    // Either the config is refused at start (exit 1 naming the key), or the events arrive.
    let delivered = fake.wait_until(
        |r| r.chats.len() >= 5 || isr.wait_exit(Duration::ZERO).is_some(),
        Duration::from_secs(10),
    );
    if let Some(status) = isr.wait_exit(Duration::from_millis(100)) {
        assert!(
            !status.success() && isr.stderr().contains("connect_timeout_ms"),
            "exit {status:?} without naming connect_timeout_ms:\n{}",
            isr.stderr_tail()
        );
        return;
    }
    assert!(
        delivered && fake.seqs("w") == w.written(),
        "connect_timeout_ms = 0 is accepted, but nothing arrives ({} connections accepted): stderr:\n{}",
        fake.accepted(),
        isr.stderr_tail()
    );
}
