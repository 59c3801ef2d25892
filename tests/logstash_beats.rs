//! The Logstash sink with `protocol = "beats"`, end to end: the real `factorio-isr run` follows
//! real files and sends every event in acknowledged windows to a fake Logstash `beats` input
//! (`support::beats`), which acknowledges in full, in part, late with keep-alives, not at
//! all, or dies before or after acknowledging.
//!
//! Every test has its own temporary directory, its own fake (an OS-assigned port) and a config
//! with fast timings and small backoffs. Every wait is bounded; the plain sleeps are the fake's
//! slow pipeline (acknowledgements late by design) and outages a scenario needs.

mod support;

use std::collections::HashMap;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::beats::{Acking, Beats};
use support::{Env, EnvBuilder, Isr, SeqWriter, check_seqs};

/// How long lines may go on not arriving before a wait gives up.
const ARRIVE: Duration = Duration::from_secs(60);

/// A test's directories with fast timings, small backoffs, `--from-beginning`, and the beats
/// protocol with `lines` added to `[logstash]`.
fn beats_env(lines: &str) -> EnvBuilder {
    Env::builder()
        .logstash(&format!("protocol = \"beats\"\n{lines}"))
        .start_at_beginning()
}

fn summary(fake: &Beats) -> String {
    let r = fake.received();
    format!(
        "fake beats input: {} connections, {} windows, {} events, {} acknowledgements sent ({} keep-alives), {} protocol failures {:?}, {} schema failures {:?}",
        fake.accepted(),
        r.windows.len(),
        r.events.len(),
        r.acks_sent,
        r.keepalives_sent,
        r.protocol_failures.len(),
        &r.protocol_failures[..r.protocol_failures.len().min(2)],
        r.schema_failures.len(),
        &r.schema_failures[..r.schema_failures.len().min(2)],
    )
}

/// Waits until every line `w` wrote has arrived; panics with what is missing otherwise.
#[track_caller]
fn expect_arrive(fake: &Beats, isr: &Isr, w: &SeqWriter) {
    if !fake.wait_for_seqs(w.id(), w.written(), ARRIVE) {
        let report = check_seqs(w.written(), &[], &fake.received().seqs(w.id()))
            .err()
            .unwrap_or_default();
        panic!(
            "not every line arrived: {report}\n{}\nstderr:\n{}",
            summary(fake),
            isr.stderr_tail()
        );
    }
}

/// Every frame followed the protocol and every event has the schema's keys.
#[track_caller]
fn assert_well_formed(fake: &Beats) {
    let r = fake.received();
    assert!(
        r.protocol_failures.is_empty() && r.schema_failures.is_empty(),
        "{}",
        summary(fake)
    );
}

/// The extra copies of writer `w`'s numbers that arrived more than once (a number that came
/// three times is in it twice); panics when a number is missing or came more than
/// `max_copies` times.
#[track_caller]
fn duplicates(fake: &Beats, w: &SeqWriter, max_copies: usize) -> Vec<u64> {
    let got = fake.received().seqs(w.id());
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for s in &got {
        *counts.entry(*s).or_default() += 1;
    }
    assert!(
        counts.len() == w.written().len() && counts.values().all(|&n| n <= max_copies),
        "{}",
        check_seqs(w.written(), &[], &got).err().unwrap_or_default()
    );
    let mut dups: Vec<u64> = counts
        .into_iter()
        .flat_map(|(s, n)| std::iter::repeat_n(s, n - 1))
        .collect();
    dups.sort_unstable();
    dups
}

fn metric(isr: &Isr, name: &str) -> f64 {
    let (status, body) = isr.admin_get("/metrics");
    assert_eq!(status, 200, "{body}");
    support::metric_sample(&body, name)
        .unwrap_or_else(|| panic!("no sample {name} on /metrics:\n{body}"))
}

/// Waits until a metric reaches `at_least`.
#[track_caller]
fn expect_metric(isr: &Isr, name: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + ARRIVE;
    loop {
        let v = metric(isr, name);
        if v >= at_least {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is {v}, not {at_least}:\n{}",
            isr.stderr_tail()
        );
        sleep(Duration::from_millis(50));
    }
}

/// Every event arrives once, in windows of at most `window_size`, compressed when asked; the
/// acknowledgements are counted.
fn arrive_once_in_windows(compression_level: u32) {
    let env = beats_env(&format!(
        "window_size = 100\ncompression_level = {compression_level}"
    ))
    .build();
    let fake = Beats::start();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(3000);
    let isr = env.isr().logstash(fake.addr()).spawn();
    expect_arrive(&fake, &isr, &w);
    assert_well_formed(&fake);
    assert!(duplicates(&fake, &w, 2).is_empty(), "{}", summary(&fake));
    {
        let r = fake.received();
        assert!(
            r.windows.iter().all(|x| x.size <= 100),
            "{}",
            summary(&fake)
        );
        assert!(
            r.windows
                .iter()
                .all(|x| x.compressed == (compression_level > 0)),
            "compression_level = {compression_level}, but windows came {:?}",
            r.windows.iter().map(|x| x.compressed).collect::<Vec<_>>()
        );
        // The events are today's JSON events, in order.
        assert_eq!(r.seqs("w"), w.written());
    }
    expect_metric(&isr, "factorio_isr_logstash_events_acked_total", 3000.0);
    assert_eq!(
        metric(&isr, "factorio_isr_logstash_windows_resent_total"),
        0.0
    );
    assert!(metric(&isr, "factorio_isr_logstash_ack_latency_seconds_count") >= 30.0);
    assert_eq!(fake.accepted(), 1, "{}", summary(&fake));
    let (status, body) = isr.admin_get("/ready");
    assert_eq!(status, 200, "acknowledged: ready; {body}");
}

#[test]
fn every_event_arrives_once_in_acknowledged_windows() {
    arrive_once_in_windows(0);
}

#[test]
fn compressed_windows_carry_every_event_once() {
    arrive_once_in_windows(6);
}

/// A slow pipeline: partial acknowledgements, then keep-alives for twice the ack timeout
/// before each window's last acknowledgement. The connection is kept and nothing is sent again.
#[test]
fn partial_acks_and_keep_alives_keep_a_slow_logstash_connected() {
    let env = beats_env("window_size = 50\nack_timeout_ms = 1000").build();
    let fake = Beats::start_with(Acking {
        every: Some(20),
        delay: Duration::from_millis(2000),
        keepalive: Some(Duration::from_millis(100)),
    });
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(120);
    let isr = env.isr().logstash(fake.addr()).spawn();
    expect_arrive(&fake, &isr, &w);
    expect_metric(&isr, "factorio_isr_logstash_events_acked_total", 120.0);
    assert_well_formed(&fake);
    assert!(fake.received().keepalives_sent >= 10, "{}", summary(&fake));
    assert_eq!(
        fake.accepted(),
        1,
        "a busy Logstash was taken for a dead one: {}",
        isr.stderr_tail()
    );
    assert_eq!(
        metric(&isr, "factorio_isr_logstash_windows_resent_total"),
        0.0
    );
    assert!(duplicates(&fake, &w, 2).is_empty());
}

/// A Logstash that accepts and never acknowledges (no keep-alive either): `/ready` says so,
/// the window is sent again on a new connection after `ack_timeout_ms`, and once Logstash
/// acknowledges again everything is there, the duplicates counted.
#[test]
fn a_logstash_that_does_not_acknowledge_is_not_ready_and_its_windows_are_sent_again() {
    let env = beats_env("window_size = 50\npipelining = 1\nack_timeout_ms = 500").build();
    let fake = Beats::start();
    fake.hold_acks();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(200);
    let isr = env.isr().logstash(fake.addr()).spawn();
    assert!(
        isr.wait_for_stderr("sent no acknowledgement", ARRIVE),
        "{}\n{}",
        summary(&fake),
        isr.stderr_tail()
    );
    let (status, body) = isr.admin_get("/ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("logstash") && body.contains("acknowledg"),
        "{body}"
    );
    assert!(
        support::wait_until(|| fake.accepted() >= 2, ARRIVE),
        "{}",
        summary(&fake)
    );
    fake.release_acks();
    expect_arrive(&fake, &isr, &w);
    expect_metric(&isr, "factorio_isr_logstash_events_acked_total", 200.0);
    let dups = duplicates(&fake, &w, fake.accepted());
    assert!(!dups.is_empty(), "windows went to several connections");
    let resent = metric(&isr, "factorio_isr_logstash_events_resent_total");
    assert!(
        dups.len() as f64 <= resent,
        "{} duplicates, {resent} counted",
        dups.len()
    );
    assert!(metric(&isr, "factorio_isr_logstash_windows_resent_total") >= 1.0);
    // Each connection given up is counted once its thread has noticed it is gone.
    assert!(
        fake.wait_until(|r| dups.len() <= r.unacked_at_close, ARRIVE),
        "duplicates beyond what was received unacknowledged: {}",
        summary(&fake)
    );
}

/// Logstash dies after receiving a window and before acknowledging it: the window is sent
/// again, its events arrive twice (counted), nothing is lost.
#[test]
fn a_crash_between_receiving_and_acknowledging_resends_the_window() {
    let env = beats_env("window_size = 100\npipelining = 1").build();
    let fake = Beats::start();
    fake.crash_before_ack(3);
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(1000);
    let isr = env.isr().logstash(fake.addr()).spawn();
    expect_arrive(&fake, &isr, &w);
    expect_metric(&isr, "factorio_isr_logstash_events_acked_total", 1000.0);
    assert_well_formed(&fake);
    let dups = duplicates(&fake, &w, 2);
    assert_eq!(
        dups.len(),
        100,
        "the third window, again: {}",
        support::ranges(&dups)
    );
    assert_eq!(fake.received().unacked_at_close, 100);
    assert_eq!(
        metric(&isr, "factorio_isr_logstash_windows_resent_total"),
        1.0
    );
    assert_eq!(
        metric(&isr, "factorio_isr_logstash_events_resent_total"),
        100.0
    );
    // The log pipe may lag behind the metrics.
    assert!(isr.wait_for_stderr("Lost the connection to Logstash", ARRIVE));
}

/// Logstash dies right after acknowledging a window: nothing it acknowledged is sent again.
#[test]
fn a_crash_after_acknowledging_sends_nothing_twice() {
    let env = beats_env("window_size = 100\npipelining = 1").build();
    let fake = Beats::start();
    fake.crash_after_ack(3);
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(1000);
    let isr = env.isr().logstash(fake.addr()).spawn();
    expect_arrive(&fake, &isr, &w);
    expect_metric(&isr, "factorio_isr_logstash_events_acked_total", 1000.0);
    assert_well_formed(&fake);
    assert!(duplicates(&fake, &w, 2).is_empty(), "{}", summary(&fake));
    assert!(fake.accepted() >= 2, "{}", summary(&fake));
    // The window sent after the acknowledged one may have reached the dead Logstash: it counts
    // as possibly sent twice (an upper bound; here it was never read).
    assert!(metric(&isr, "factorio_isr_logstash_events_resent_total") <= 100.0);
}

/// The crash test of the json_lines sink, with beats: Logstash's pipeline is blocked (it
/// stops acknowledging) while 16 MB of log wait, then it dies with what it received and did
/// not acknowledge, and comes back. Nothing is lost; the duplicates are at most what the dead
/// Logstash had received unacknowledged, and are counted.
#[test]
fn logstash_crashing_with_beats_loses_nothing_and_counts_its_duplicates() {
    let env = beats_env("window_size = 500").build();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    for _ in 0..10 {
        w.write_lines(20_000);
    }
    let mut fake = Beats::start();
    let isr = env.isr().logstash(fake.addr()).spawn();
    assert!(
        fake.wait_until(|r| r.events.len() >= 20_000, ARRIVE),
        "{}\nstderr:\n{}",
        summary(&fake),
        isr.stderr_tail()
    );
    // The pipeline blocks: windows are received, not acknowledged.
    fake.hold_acks();
    let held_at = fake.received().acks_sent;
    sleep(Duration::from_millis(300));
    fake.kill();
    let at_crash = fake.received().events.len();
    sleep(Duration::from_millis(300));
    fake.release_acks();
    fake.restart();
    expect_arrive(&fake, &isr, &w);
    assert_well_formed(&fake);
    let dups = duplicates(&fake, &w, 2);
    let unacked = fake.received().unacked_at_close;
    assert!(
        dups.len() <= unacked,
        "{} duplicates, but Logstash had only {unacked} events unacknowledged when it died",
        dups.len()
    );
    let resent = expect_metric(
        &isr,
        "factorio_isr_logstash_events_resent_total",
        dups.len() as f64,
    );
    assert!(metric(&isr, "factorio_isr_logstash_windows_resent_total") >= 1.0);
    eprintln!(
        "beats crash: {} lines, {at_crash} events received by the crash ({held_at} acknowledgements before the pipeline blocked), 0 lost, {} duplicates ({}), {unacked} received unacknowledged by the dead Logstash, {resent} counted as possibly sent twice, {} connections",
        w.written().len(),
        dups.len(),
        support::ranges(&dups),
        fake.accepted()
    );
}

/// `--logstash-protocol beats` selects the protocol without a config file entry, and
/// `LOGSTASH_PROTOCOL` does too.
#[test]
fn the_flag_and_the_environment_select_beats() {
    for how in ["flag", "env"] {
        let env = Env::builder().start_at_beginning().build();
        let fake = Beats::start();
        let mut w = SeqWriter::create(env.log("console.log"), "w");
        w.write_lines(10);
        let cmd = env.isr().logstash(fake.addr());
        let cmd = match how {
            "flag" => cmd.arg("--logstash-protocol").arg("beats"),
            _ => cmd.env("LOGSTASH_PROTOCOL", "beats"),
        };
        let isr = cmd.spawn();
        expect_arrive(&fake, &isr, &w);
        assert_well_formed(&fake);
    }
}

/// A beats receiver nobody on this project wrote (the server of the PyPI package
/// `timbersnake`, run by `support/beats_timbersnake.py`), killed when dropped.
struct Timbersnake {
    child: std::process::Child,
    port: u16,
    events: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    not_json: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Timbersnake {
    fn start(python: &str) -> Timbersnake {
        use std::io::BufRead;
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/support/beats_timbersnake.py"
        );
        let mut child = std::process::Command::new(python)
            .arg(script)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("python3 starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("timbersnake says its port")
                .expect("its stdout");
            if let Some(p) = line.strip_prefix("PORT ") {
                break p.parse().expect("a port number");
            }
        };
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let not_json = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let (events, not_json) = (events.clone(), not_json.clone());
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    let Some(doc) = line.strip_prefix("EVENT ") else {
                        continue;
                    };
                    match serde_json::from_str(doc) {
                        Ok(v) => events.lock().unwrap().push(v),
                        Err(_) => not_json.lock().unwrap().push(line),
                    }
                }
            });
        }
        Timbersnake {
            child,
            port,
            events,
            not_json,
        }
    }
}

impl Drop for Timbersnake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// factorio-isr's framing, checked by code nobody here wrote: an independent beats receiver
/// decodes every event factorio-isr sends, uncompressed (acknowledging every event on its own,
/// partial acknowledgements) and compressed, including text that JSON must escape.
#[test]
fn an_independent_beats_receiver_decodes_every_event_compressed_and_not() {
    let Some(python) = support::prom_tools::python_module("timbersnake", "timbersnake==0.1.0")
    else {
        return;
    };
    let odd = "héllo \"wörld\" \\ tab\t ünïcödé ✓ {\"not\": json}";
    for level in [0, 6] {
        let env = beats_env(&format!("window_size = 64\ncompression_level = {level}")).build();
        let receiver = Timbersnake::start(python);
        let mut w = SeqWriter::create(env.log("console.log"), "w");
        w.write_lines(500);
        w.write_raw(format!("2025-10-08 08:58:35 [CHAT] odd: {odd}\n").as_bytes());
        let isr = env
            .isr()
            .logstash(format!("127.0.0.1:{}", receiver.port))
            .spawn();
        expect_metric(&isr, "factorio_isr_logstash_events_acked_total", 501.0);
        // Each was printed before its acknowledgement was sent; the pipe may lag behind.
        support::wait_until(|| receiver.events.lock().unwrap().len() >= 501, ARRIVE);
        let events = receiver.events.lock().unwrap().clone();
        assert!(receiver.not_json.lock().unwrap().is_empty());
        let seqs: Vec<u64> = events
            .iter()
            .filter_map(|e| support::logstash::chat_seq(e).map(|(_, s)| s))
            .collect();
        assert_eq!(seqs, w.written(), "compression_level = {level}");
        let last = events.last().expect("events");
        assert_eq!(last["fields"]["player"], "odd", "{last}");
        assert_eq!(last["fields"]["message"], odd, "{last}");
        assert_eq!(events.len(), 501, "compression_level = {level}");
        for e in &events {
            let keys = e.as_object().expect("an object");
            assert!(
                support::schema::EVENT_KEYS
                    .iter()
                    .all(|k| keys.contains_key(*k)),
                "{e}"
            );
        }
    }
}

/// Terminates TLS (with `pki`'s server certificate, no client certificate asked) in front of
/// `backend` and relays bytes both ways: a beats input with `ssl_enabled => true`.
fn tls_front(pki: &support::tls::Pki, backend: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::io::{ErrorKind, Read, Write};
    let config = pki.server_config(false);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let addr = listener.local_addr().expect("an address");
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let config = config.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).expect("a TLS connection");
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut plain = std::net::TcpStream::connect(backend).expect("the backend");
                let tick = Some(Duration::from_millis(5));
                tls.sock.set_read_timeout(tick).expect("a read timeout");
                plain.set_read_timeout(tick).expect("a read timeout");
                let mut buf = vec![0u8; 64 * 1024];
                let quiet = |e: &std::io::Error| {
                    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                };
                loop {
                    match tls.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            if plain.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                        Err(e) if quiet(&e) => {}
                        Err(_) => return,
                    }
                    match plain.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            if tls.write_all(&buf[..n]).and_then(|()| tls.flush()).is_err() {
                                return;
                            }
                        }
                        Err(e) if quiet(&e) => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    addr
}

/// Beats over TLS: the same `[logstash.tls]` section as for `tcp`; acknowledgements come back
/// through TLS, read with timeouts, and every event arrives once.
#[test]
fn beats_over_tls_delivers_and_reads_acknowledgements() {
    let builder = beats_env("window_size = 100\ncompression_level = 3");
    let pki = support::tls::Pki::create(builder.root());
    let fake = Beats::start_with(Acking {
        every: Some(30),
        delay: Duration::from_millis(50),
        keepalive: Some(Duration::from_millis(20)),
    });
    let front = tls_front(&pki, fake.addr());
    let env = builder
        .logstash(&format!(
            "[logstash.tls]\nca_file = {:?}\n",
            pki.ca.display().to_string()
        ))
        .build();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(1000);
    let isr = env.isr().logstash(front).spawn();
    expect_arrive(&fake, &isr, &w);
    expect_metric(&isr, "factorio_isr_logstash_events_acked_total", 1000.0);
    assert_well_formed(&fake);
    assert!(duplicates(&fake, &w, 2).is_empty(), "{}", summary(&fake));
    assert_eq!(fake.accepted(), 1, "{}", summary(&fake));
}
