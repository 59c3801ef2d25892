//! The admin server cannot be held by its clients: against the real `factorio-isr run`, a
//! slowloris header and a silent connection are closed after `header_read_timeout_ms`, an idle
//! kept-alive connection after `idle_timeout_ms`, a connection over `max_connections` is
//! refused at once (and `/healthz` answers again as soon as one closes), and accepts that fail
//! for lack of file descriptors neither spin nor flood the log. Each is counted in
//! `errors_total{component="admin"}`.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread::sleep;
use std::time::{Duration, Instant};

use support::{Env, Isr, clock_ticks_per_sec, http_get, metric_sample, wait_until};

/// Far longer than any timeout the tests set: a connection still open then is held.
const CLOSED_WITHIN: Duration = Duration::from_secs(20);
/// How long an answer may take on a busy machine.
const ANSWER: Duration = Duration::from_secs(10);

/// `factorio-isr run` with `[metrics]` set to `metrics` (the other settings at their defaults).
fn run_with(metrics: &str) -> (Env, Isr) {
    let env = Env::builder()
        .config_text(format!("[metrics]\n{metrics}\n"))
        .build();
    let isr = env.isr().spawn();
    (env, isr)
}

fn admin_errors(isr: &Isr, error_type: &str) -> Option<f64> {
    let (status, text) = isr.admin_get("/metrics");
    assert_eq!(status, 200, "{text}");
    metric_sample(
        &text,
        &format!("factorio_isr_errors_total{{component=\"admin\",error_type=\"{error_type}\"}}"),
    )
}

/// Waits, retrying while the server may still be closing other connections, until
/// `/metrics` answers and the admin's `error_type` count satisfies `pred`; the last count.
fn wait_admin_errors(isr: &Isr, error_type: &str, pred: impl Fn(f64) -> bool) -> Option<f64> {
    let mut last = None;
    wait_until(
        || {
            let (status, text) = isr.admin_get("/metrics");
            last = metric_sample(
                &text,
                &format!(
                    "factorio_isr_errors_total{{component=\"admin\",error_type=\"{error_type}\"}}"
                ),
            );
            status == 200 && last.is_some_and(&pred)
        },
        Duration::from_secs(30),
    );
    last
}

/// Reads (and discards whatever comes) until the peer closes the connection (end of file or
/// a reset), or `within` passes: when it closed, or `None` while still open.
fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some(Instant::now()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(Instant::now()),
        }
    }
}

/// Sends `GET path` on a kept-alive connection and reads its response: the status, or `None`
/// when the connection was closed, reset or did not answer within [`ANSWER`].
fn get_kept_alive(s: &mut TcpStream, path: &str) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n");
    s.write_all(request.as_bytes()).ok()?;
    read_response(s)
}

/// Reads one response from `s`: its status, or `None` when the connection was closed, reset
/// or did not answer within [`ANSWER`].
fn read_response(s: &mut TcpStream) -> Option<u16> {
    s.set_read_timeout(Some(ANSWER)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return head.split_whitespace().nth(1)?.parse().ok();
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn a_slowloris_header_and_a_silent_connection_are_closed_after_header_read_timeout_ms() {
    let (_env, isr) = run_with("header_read_timeout_ms = 300");
    let addr = isr.admin_addr();
    assert_eq!(admin_errors(&isr, "timeout"), Some(0.0), "registered at 0");

    let silent = TcpStream::connect(addr).unwrap();
    let mut slow = TcpStream::connect(addr).unwrap();
    let connected = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nX-Slow: ")
        .unwrap();
    // A byte of the header every 50 ms, never its end: each keeps the connection busy, none
    // may extend its time.
    slow.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 256];
    let closed = loop {
        if slow.write_all(b"a").is_err() {
            break Some(Instant::now());
        }
        match slow.read(&mut buf) {
            Ok(0) => break Some(Instant::now()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break Some(Instant::now()),
        }
        if connected.elapsed() > CLOSED_WITHIN {
            break None;
        }
    };
    let closed = closed.unwrap_or_else(|| {
        panic!(
            "a header trickled for {CLOSED_WITHIN:?} is still read:\n{}",
            isr.stderr_tail()
        )
    });
    assert!(
        closed - connected >= Duration::from_millis(300),
        "closed after {:?}, before its header time ran out",
        closed - connected
    );
    let mut silent = silent;
    assert!(
        closed_within(&mut silent, CLOSED_WITHIN).is_some(),
        "a connection that never sent anything is still open after {CLOSED_WITHIN:?}"
    );
    // Counted before they were closed.
    assert!(
        admin_errors(&isr, "timeout").is_some_and(|n| n >= 2.0),
        "{:?}",
        admin_errors(&isr, "timeout")
    );
    assert_eq!(isr.admin_get("/healthz").0, 200);
}

#[test]
fn an_idle_kept_alive_connection_is_closed_after_idle_timeout_ms() {
    let (_env, isr) = run_with("idle_timeout_ms = 300");
    let mut s = TcpStream::connect(isr.admin_addr()).unwrap();
    let sent = Instant::now();
    assert_eq!(
        get_kept_alive(&mut s, "/healthz"),
        Some(200),
        "{}",
        isr.stderr_tail()
    );
    let closed = closed_within(&mut s, CLOSED_WITHIN).unwrap_or_else(|| {
        panic!(
            "an idle connection is still open after {CLOSED_WITHIN:?}:\n{}",
            isr.stderr_tail()
        )
    });
    assert!(
        closed - sent >= Duration::from_millis(300),
        "closed {:?} after the request, before its idle time ran out",
        closed - sent
    );
    // Idle connections closing is the normal end of keep-alive, not an error.
    assert_eq!(admin_errors(&isr, "timeout"), Some(0.0));
}

#[test]
fn a_client_that_does_not_read_its_responses_is_cut_off_after_response_timeout_ms() {
    // Idle and header times far longer than the test: only the response time can close it.
    let (_env, isr) = run_with(
        "response_timeout_ms = 300\nheader_read_timeout_ms = 600000\nidle_timeout_ms = 600000",
    );
    let addr = isr.admin_addr();
    assert_eq!(admin_errors(&isr, "timeout"), Some(0.0), "registered at 0");
    let mut s = TcpStream::connect(addr).unwrap();
    // Thousands of /metrics asked for at once and never read: tens of megabytes, far more
    // than the socket buffers hold, so the server's writes stall.
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..3000 {
            if w.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n")
                .is_err()
            {
                break;
            }
        }
    });
    let timeouts = wait_admin_errors(&isr, "timeout", |n| n >= 1.0);
    assert!(
        timeouts.is_some_and(|n| n >= 1.0),
        "a response nobody reads is still being written: {timeouts:?}\n{}",
        isr.stderr_tail()
    );
    assert!(
        closed_within(&mut s, CLOSED_WITHIN).is_some(),
        "the connection whose responses were not taken is still open"
    );
    writer.join().unwrap();
}

#[test]
fn a_connection_over_max_connections_is_refused_at_once_and_healthz_answers_when_one_closes() {
    // Timeouts far longer than the test: the held connections stay until they are dropped.
    let (_env, isr) =
        run_with("max_connections = 3\nheader_read_timeout_ms = 600000\nidle_timeout_ms = 600000");
    let addr = isr.admin_addr();
    assert_eq!(admin_errors(&isr, "refused"), Some(0.0), "registered at 0");

    // Each is answered once, so the server holds it, idle, when the next one connects.
    let mut held: Vec<TcpStream> = (0..3)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            assert_eq!(
                get_kept_alive(&mut s, "/healthz"),
                Some(200),
                "connection {i}:\n{}",
                isr.stderr_tail()
            );
            s
        })
        .collect();

    let mut extra = TcpStream::connect(addr).unwrap();
    let status = get_kept_alive(&mut extra, "/healthz");
    assert!(
        matches!(status, None | Some(503)),
        "a fourth connection got {status:?} instead of being refused"
    );
    assert!(
        closed_within(&mut extra, ANSWER).is_some(),
        "a refused connection is kept waiting (queued) instead of being closed"
    );

    drop(held.pop());
    assert!(
        wait_until(
            || http_get(addr, "/healthz").0 == 200,
            Duration::from_secs(30)
        ),
        "/healthz is not answered after a connection closed:\n{}",
        isr.stderr_tail()
    );
    let refused = wait_admin_errors(&isr, "refused", |n| n >= 1.0);
    assert!(refused.is_some_and(|n| n >= 1.0), "{refused:?}");
    assert!(
        isr.stderr()
            .contains("The admin server has all its connections open"),
        "{}",
        isr.stderr_tail()
    );
    // The ones still held were never disturbed.
    for s in &mut held {
        assert_eq!(get_kept_alive(s, "/healthz"), Some(200));
    }
}

#[test]
fn accepts_failing_for_lack_of_descriptors_back_off_and_are_logged_once() {
    use rustix::process::{Pid, Resource, Rlimit, prlimit};

    let (_env, isr) = run_with("max_connections = 64");
    let addr = isr.admin_addr();
    assert_eq!(admin_errors(&isr, "accept"), Some(0.0), "registered at 0");
    let pid = Pid::from_raw(isr.pid() as i32).expect("a process id");
    let (soft, hard) = open_files_limit(isr.pid());
    let with_soft = |current: u64| Rlimit {
        current: Some(current),
        maximum: hard,
    };

    // No descriptor left (the soft limit at the number open): the next accept fails with
    // EMFILE. A descriptor the process frees meanwhile may admit one more connection, hence
    // several.
    let open = isr.fd_targets().len() as u64;
    prlimit(Some(pid), Resource::Nofile, with_soft(open)).unwrap();
    let warning = "Cannot accept connections to the admin server";
    let again = "Accepting connections to the admin server again";
    let mut waiting = Vec::new();
    let request = || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n")
            .unwrap();
        s
    };
    for _ in 0..8 {
        waiting.push(request());
        if isr.wait_for_stderr(warning, Duration::from_secs(3)) {
            break;
        }
    }
    assert!(
        isr.wait_for_stderr(warning, Duration::from_secs(10)),
        "accepts never failed:\n{}",
        isr.stderr_tail()
    );
    // This one waits in the listen queue while accepts fail.
    let mut queued = request();

    // Two seconds of failing accepts: a loop that retried at once would burn a core.
    let (ticks, started) = (isr.cpu_ticks(), Instant::now());
    sleep(Duration::from_secs(2));
    let used = (isr.cpu_ticks() - ticks) as f64 / clock_ticks_per_sec() as f64;
    let window = started.elapsed().as_secs_f64();
    assert!(
        used < 0.25 * window,
        "{used:.2} s of CPU in {window:.2} s while accepts failed"
    );

    prlimit(Some(pid), Resource::Nofile, with_soft(soft)).unwrap();
    assert_eq!(
        read_response(&mut queued),
        Some(200),
        "the queued connection is not served once descriptors are free:\n{}",
        isr.stderr_tail()
    );
    for s in &mut waiting {
        assert_eq!(read_response(s), Some(200), "{}", isr.stderr_tail());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let failed = wait_admin_errors(&isr, "accept", |n| n >= 1.0).unwrap_or(0.0);
    // 5 ms doubling to a second: about ten in the first second, one a second after.
    assert!(
        (1.0..=20.0 + 2.0 * elapsed).contains(&failed),
        "{failed} failed accepts counted in {elapsed:.1} s"
    );
    // Each run of failures is logged when it starts and when it ends, not at every failure
    // (the end may still be on its way through the pipe).
    let runs = || {
        let stderr = isr.stderr();
        (
            stderr.matches(warning).count(),
            stderr.matches(again).count(),
        )
    };
    assert!(
        wait_until(
            || matches!(runs(), (s, e) if s >= 1 && s == e),
            Duration::from_secs(10)
        ),
        "{:?} runs of failed accepts logged, and ends:\n{}",
        runs(),
        isr.stderr_tail()
    );
}

/// The soft and hard limits of open files of process `pid` (`None`: unlimited).
fn open_files_limit(pid: u32) -> (u64, Option<u64>) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a limit of open files");
    let values: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    let soft = values[0].parse().expect("a finite soft limit");
    (soft, values[1].parse().ok())
}
