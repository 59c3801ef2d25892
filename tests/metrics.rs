//! factorio-isr's own metrics, end to end: the real `factorio-isr run` reads a real file and
//! `/metrics` says exactly what it did; `promtool check metrics` finds nothing to complain
//! about; and a real Prometheus (the Debian package `prometheus`) scrapes it and answers
//! queries with its series.

mod support;

use std::fs;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Env, Isr, SeqWriter, http_get, metric_sample};

const ARRIVE: Duration = Duration::from_secs(30);

fn metrics(isr: &Isr) -> String {
    let (status, body) = isr.admin_get("/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// A test's directories: fast timings, `--from-beginning`.
fn metrics_env() -> Env {
    Env::builder().start_at_beginning().build()
}

/// Starts `factorio-isr run` in `env` with a console log of `chats` chat lines, `joins` join
/// lines and `other` lines no pattern matches; waits until every event is out.
fn run_with_lines(env: &Env, chats: usize, joins: usize, other: usize) -> (Isr, u64) {
    let isr = env.isr().spawn();
    let path = env.log("console.log");
    let mut w = SeqWriter::create(&path, "w");
    w.write_lines(chats);
    for i in 0..joins {
        w.write_raw(format!("2025-10-08 08:58:34 [JOIN] p{i} joined the game\n").as_bytes());
    }
    for i in 0..other {
        w.write_raw(format!("not a factorio line {i}\n").as_bytes());
    }
    let total = chats + joins + other;
    assert!(
        isr.wait_for(|e| e.len() >= total, ARRIVE),
        "{} of {total} events:\n{}",
        isr.events().len(),
        isr.stderr()
    );
    let size = fs::metadata(&path).unwrap().len();
    (isr, size)
}

#[test]
fn metric_values_equal_what_was_read_and_delivered() {
    let env = metrics_env();
    let (isr, size) = run_with_lines(&env, 300, 40, 25);
    // The counters are updated as the batch is delivered; give the last one a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = metrics(&isr);
        let done = metric_sample(
            &text,
            "factorio_isr_events_processed_total{server=\"test\",event_type=\"log\"}",
        ) == Some(25.0);
        if done || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let get =
        |name: &str| metric_sample(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    assert_eq!(
        get("factorio_isr_events_processed_total{server=\"test\",event_type=\"chat\"}"),
        300.0
    );
    assert_eq!(
        get("factorio_isr_events_processed_total{server=\"test\",event_type=\"player_join\"}"),
        40.0
    );
    assert_eq!(
        get("factorio_isr_events_processed_total{server=\"test\",event_type=\"log\"}"),
        25.0
    );
    assert_eq!(get("factorio_isr_lines_read_total{server=\"test\"}"), 365.0);
    assert_eq!(
        get("factorio_isr_bytes_read_total{server=\"test\"}"),
        size as f64
    );
    for stage in ["tail", "frame", "match", "route", "sink"] {
        let n = get(&format!(
            "factorio_isr_processing_seconds_count{{stage=\"{stage}\"}}"
        ));
        assert!(n >= 1.0, "stage {stage} observed {n} times");
    }
    assert!(get("factorio_isr_event_latency_seconds_count{sink=\"stdout\"}") >= 1.0);
    assert_eq!(
        get("factorio_isr_component_status{component=\"tailer\"}"),
        1.0
    );
    assert!(get("factorio_isr_uptime_seconds") > 0.0);
    // No player name is ever a label value.
    assert!(!text.contains("p0\"") && !text.contains("\"w\""), "{text}");
}

#[test]
fn promtool_check_metrics_is_clean() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let env = metrics_env();
    let (isr, _) = run_with_lines(&env, 10, 2, 1);
    let text = metrics(&isr);
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics:\n{report}"
    );
}

#[test]
fn a_broken_pattern_file_shows_in_ready_while_the_old_patterns_keep_running() {
    let env = metrics_env();
    let patterns = env.shipped_patterns();
    let isr = env.isr().arg("--patterns").arg(&patterns).spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(5);
    assert!(isr.wait_for(|e| e.len() >= 5, ARRIVE), "{}", isr.stderr());
    assert_eq!(isr.admin_get("/ready").0, 200);
    fs::write(
        patterns.join("broken.toml"),
        "[[pattern]]\nname = \"x\"\nregex = '(unclosed'\n",
    )
    .unwrap();
    let deadline = Instant::now() + ARRIVE;
    let body = loop {
        let (status, body) = isr.admin_get("/ready");
        if status == 503 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never showed the broken file"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        body.contains("patterns") && body.contains("broken.toml"),
        "{body}"
    );
    assert_eq!(
        isr.admin_get("/healthz").0,
        200,
        "a broken pattern file is not a liveness failure"
    );
    let text = metrics(&isr);
    assert_eq!(
        metric_sample(
            &text,
            "factorio_isr_pattern_reloads_total{result=\"failed\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // The old patterns keep matching.
    w.write_lines(5);
    assert!(isr.wait_for(
        |e| e.iter().filter(|x| x["event_type"] == "chat").count() >= 10,
        ARRIVE
    ));
    // Fixed: ready again.
    fs::remove_file(patterns.join("broken.toml")).unwrap();
    let deadline = Instant::now() + ARRIVE;
    while isr.admin_get("/ready").0 != 200 {
        assert!(Instant::now() < deadline, "/ready stayed 503 after the fix");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kills the Prometheus server when the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_prometheus_scrapes_our_series() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    let env = metrics_env();
    let (isr, _) = run_with_lines(&env, 50, 5, 5);
    let target = isr.admin_addr();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = env.root().join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: factorio-isr\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let _server = Server(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                env.root().join("data").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let query = "/api/v1/query?query=factorio_isr_events_processed_total";
    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (status, body) = http_get(addr, query);
        if status == 200 && body.contains("\"event_type\":\"chat\"") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never returned our series: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(body.contains("\"job\":\"factorio-isr\""), "{body}");
    assert!(body.contains("\"server\":\"test\""), "{body}");
    assert!(body.contains("\"50\""), "50 chat events expected in {body}");
    // The scrape itself is healthy.
    let (_, up) = http_get(addr, "/api/v1/query?query=up");
    assert!(up.contains("\"1\""), "{up}");
}

/// A tool from the Debian package `prometheus`, which CI installs. Missing: the test is skipped
/// with a note, unless FACTORIO_ISR_REQUIRE_PROMTOOL=1 requires it.
fn tool(name: &'static str) -> Option<&'static str> {
    support::prom_tools::tool(name)
}

#[test]
fn the_admin_server_binds_loopback_and_can_be_turned_off() {
    let env = metrics_env();
    let (isr, _) = run_with_lines(&env, 3, 0, 0);
    assert!(isr.admin_addr().ip().is_loopback());
    drop(isr);

    let env = metrics_env();
    let isr = env.isr().env("METRICS_ENABLED", "false").spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(3);
    assert!(isr.wait_for(|e| e.len() >= 3, ARRIVE), "{}", isr.stderr());
    assert!(
        !isr.stderr().contains("Serving /metrics"),
        "{}",
        isr.stderr()
    );
}
