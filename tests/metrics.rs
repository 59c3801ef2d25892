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
    assert_promtool_clean(promtool, &text);
}

/// `promtool check metrics` on `text`: passes when it has nothing to say.
fn assert_promtool_clean(promtool: &str, text: &str) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
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

/// Waits until the tailer is ready (it is built last and says so after its first look at
/// the directories), so every component is built; returns `/metrics` then.
fn metrics_once_built(isr: &Isr) -> String {
    let deadline = Instant::now() + ARRIVE;
    loop {
        let text = metrics(isr);
        let tailer = "factorio_isr_component_status{component=\"tailer\"}";
        if metric_sample(&text, tailer) == Some(1.0) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the tailer never got ready:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_labelled_family_is_at_zero_before_anything_happens() {
    let env = Env::builder().logstash("").start_at_beginning().build();
    let patterns = env.shipped_patterns();
    // Logstash: a listener whose backlog takes the connection; nothing is ever sent.
    let logstash = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake = support::discord::FakeDiscord::start(support::discord::FakeConfig::default());
    let isr = env
        .isr()
        .arg("--patterns")
        .arg(&patterns)
        .logstash(logstash.local_addr().unwrap())
        .env("DISCORD_WEBHOOK_URL", fake.webhook_url("main"))
        .spawn();
    let text = metrics_once_built(&isr);
    let zero = |name: &str| zero_in(&text, name);
    for (component, error_type) in [
        ("tailer", "list_dir"),
        ("tailer", "open"),
        ("tailer", "stat"),
        ("tailer", "read"),
        ("tailer", "line_cut"),
        ("checkpoint", "save"),
        ("logstash", "connect"),
        ("logstash", "connection_lost"),
        ("discord", "webhook_disabled"),
        ("discord", "rejected"),
        ("discord", "request_failed"),
        ("discord", "redirected"),
        ("patterns", "reload"),
    ] {
        zero(&format!(
            "factorio_isr_errors_total{{component=\"{component}\",error_type=\"{error_type}\"}}"
        ));
    }
    for reason in [
        "queue_full",
        "webhook_disabled",
        "rejected",
        "retries_exhausted",
        "redirected",
        "too_old",
        "no_webhook",
        "shutdown",
    ] {
        zero(&format!(
            "factorio_isr_discord_dropped_total{{reason=\"{reason}\"}}"
        ));
    }
    zero("factorio_isr_discord_events_sent_total{webhook=\"default\"}");
    zero("factorio_isr_discord_queued_events{webhook=\"default\"}");
    for scope in ["bucket", "global"] {
        zero(&format!(
            "factorio_isr_discord_rate_limited_total{{webhook=\"default\",scope=\"{scope}\"}}"
        ));
    }
    zero("factorio_isr_pattern_reloads_total{result=\"reloaded\"}");
    zero("factorio_isr_pattern_reloads_total{result=\"failed\"}");
    for event_type in ["log", "chat", "player_join", "server_crashed"] {
        zero(&format!(
            "factorio_isr_events_processed_total{{server=\"test\",event_type=\"{event_type}\"}}"
        ));
    }
    zero("factorio_isr_lines_read_total{server=\"test\"}");
    zero("factorio_isr_bytes_read_total{server=\"test\"}");
    zero("factorio_isr_event_latency_seconds_count{sink=\"logstash\"}");
    for component in ["tailer", "discord.default", "patterns"] {
        assert_component_status(&text, component, Some(1.0));
    }
    // Logstash connects at its first write: not ready yet, but its series is there.
    assert_component_status(&text, "logstash", Some(0.0));
    assert!(fake.requests().is_empty(), "nothing was sent to Discord");
    if let Some(promtool) = tool("promtool") {
        assert_promtool_clean(promtool, &text);
    }
    drop(isr);

    // Without Logstash and Discord, their error series do not exist: no component is built
    // for them, and a series that can never move would only mislead.
    let env = metrics_env();
    let isr = env.isr().spawn();
    let text = metrics_once_built(&isr);
    zero_in(
        &text,
        "factorio_isr_errors_total{component=\"tailer\",error_type=\"read\"}",
    );
    zero_in(
        &text,
        "factorio_isr_errors_total{component=\"checkpoint\",error_type=\"save\"}",
    );
    zero_in(
        &text,
        "factorio_isr_events_processed_total{server=\"test\",event_type=\"chat\"}",
    );
    zero_in(
        &text,
        "factorio_isr_event_latency_seconds_count{sink=\"stdout\"}",
    );
    for absent in [
        "component=\"logstash\"",
        "component=\"discord\"",
        "pattern_reloads_total{",
    ] {
        assert!(!text.contains(absent), "{absent} in\n{text}");
    }
}

fn assert_component_status(text: &str, component: &str, want: Option<f64>) {
    let name = format!("factorio_isr_component_status{{component=\"{component}\"}}");
    assert_eq!(metric_sample(text, &name), want, "{name} in\n{text}");
}

fn zero_in(text: &str, name: &str) {
    assert_eq!(
        metric_sample(text, name),
        Some(0.0),
        "{name} is not 0 in\n{text}"
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
