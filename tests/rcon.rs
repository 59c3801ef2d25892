//! RCON against a fake Factorio server (`support::rcon`): the client copes with every answer
//! Factorio (and Source-style servers) give and every misbehaviour; the real `factorio-isr
//! run --rcon` reports players online, latency, connection state and the server's version in
//! `/metrics` and `/ready`, reconciles a leave the log missed, survives a server that never
//! answers, closes mid-answer or restarts without stalling the log pipeline, retries a wrong
//! password slowly, and never shows the password.

mod support;

use std::time::Duration;

use factorio_isr::rcon::client::{Client, RconError};
use factorio_isr::rcon::protocol::parse_players_online;
use factorio_isr::settings::Secret;
use serde_json::Value;
use support::rcon::{FakeRcon, Misbehave, Tick};
use support::{Env, Isr, metric_sample, wait_until};

const ARRIVE: Duration = Duration::from_secs(30);

/// Names with spaces, brackets, and characters of several bytes, split anywhere.
const PLAYERS: &[&str] = &["bsalis", "Mr. Spaceman [AFK]", "名前-_.", "Ünïcødé 🚀"];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn players(fake: &FakeRcon) -> Result<Vec<String>, RconError> {
    let mut c = Client::connect(&fake.addr().to_string(), &Secret::new("pw")).await?;
    let answer = c.command("/players online").await?;
    Ok(parse_players_online(&answer).expect("a /players online answer"))
}

#[test]
fn the_client_reads_factorio_answers_and_source_style_ones() {
    let fake = FakeRcon::start("pw");
    fake.set_players(PLAYERS);
    let rt = runtime();
    assert_eq!(rt.block_on(players(&fake)).unwrap(), PLAYERS);
    // Source servers send an empty RESPONSE_VALUE before the auth response.
    fake.misbehave(Misbehave::SourceStyleAuth);
    assert_eq!(rt.block_on(players(&fake)).unwrap(), PLAYERS);
    // An answer split into packets of 5 bytes (cutting characters), written 7 bytes at a time.
    fake.misbehave(Misbehave::Split(5));
    assert_eq!(rt.block_on(players(&fake)).unwrap(), PLAYERS);
    // Nobody online.
    fake.set_players(&[]);
    assert_eq!(rt.block_on(players(&fake)).unwrap(), Vec::<String>::new());
}

#[test]
fn a_wrong_password_is_an_authentication_failure_that_does_not_show_it() {
    let fake = FakeRcon::start("right");
    let rt = runtime();
    let e = rt
        .block_on(Client::connect(
            &fake.addr().to_string(),
            &Secret::new("wrong-SECRET"),
        ))
        .unwrap_err();
    assert!(matches!(e, RconError::AuthRefused), "{e:?}");
    assert_eq!(e.error_type(), "auth");
    let text = format!("{e} {e:?}");
    assert!(!text.contains("SECRET"), "{text}");
    assert!(text.contains("--rcon-password"), "{text}");
}

#[test]
fn a_server_that_never_answers_or_closes_mid_answer_fails_the_command() {
    let fake = FakeRcon::start("pw");
    let rt = runtime();
    let addr = fake.addr().to_string();
    fake.misbehave(Misbehave::NeverAnswer);
    let r = rt.block_on(async {
        let mut c = Client::connect(&addr, &Secret::new("pw")).await.unwrap();
        tokio::time::timeout(Duration::from_millis(200), c.command("/players online")).await
    });
    assert!(r.is_err(), "no answer must not look like one: {r:?}");
    fake.misbehave(Misbehave::CloseMidResponse);
    let e = rt
        .block_on(async {
            let mut c = Client::connect(&addr, &Secret::new("pw")).await?;
            c.command("/players online").await
        })
        .unwrap_err();
    assert!(matches!(e, RconError::Closed { .. }), "{e:?}");
}

// --- factorio-isr run --rcon --------------------------------------------------------------------

const PASSWORD: &str = "rcon-SECRET-pw";

/// `factorio-isr run logs/ --server test --rcon FAKE` with `RCON_PASSWORD=password`, the fast
/// tail timings and `rcon` as the `[rcon]` section; the log is read from its beginning.
fn run(fake: &FakeRcon, password: &str, rcon: &str) -> (Env, Isr) {
    let env = Env::builder()
        .tail(&format!("[rcon]\n{rcon}"))
        .start_at_beginning()
        .build();
    std::fs::write(env.log("console.log"), "").unwrap();
    let isr = env
        .isr()
        .arg("--rcon")
        .arg(fake.addr().to_string())
        .env("RCON_PASSWORD", password)
        .spawn();
    (env, isr)
}

fn append(env: &Env, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(env.log("console.log"))
        .unwrap();
    writeln!(f, "{line}").unwrap();
}

fn sample(isr: &Isr, name: &str) -> Option<f64> {
    let (status, text) = isr.admin_get("/metrics");
    assert_eq!(status, 200, "{text}");
    metric_sample(&text, name)
}

fn wait_sample(isr: &Isr, name: &str, pred: impl Fn(f64) -> bool) -> f64 {
    let mut last = None;
    let ok = wait_until(
        || {
            last = sample(isr, name);
            last.is_some_and(&pred)
        },
        ARRIVE,
    );
    assert!(ok, "{name} stayed at {last:?}\n{}", isr.stderr_tail());
    last.unwrap()
}

fn reconciled(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event_type"] == "player_leave" && e["fields"]["reconciled"] == true)
        .map(|e| {
            e["fields"]["player"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Appends a chat line `marker` and waits until it is delivered: an inlet batch sent before
/// it was appended (a reconciled leave of an earlier poll) has been delivered by then too.
fn delivered_up_to_here(env: &Env, isr: &Isr, marker: &str) {
    append(env, &format!("2025-10-08 09:00:00 [CHAT] w: {marker}"));
    assert!(
        isr.wait_for(
            |e| e.iter().any(|e| e["fields"]["message"] == marker),
            ARRIVE
        ),
        "{marker} was not delivered\n{}",
        isr.stderr_tail()
    );
}

/// The `game_ups` each pair of consecutive tick answers on one connection can give, as
/// `(least, most)`: the poller reads its clock after an answer arrives and before it sends its
/// next command, so the seconds between two readings lie between the second answer less the
/// first's next command and the second's next command less the first answer. The tick answer
/// taking longer than the poll interval keeps the two close: the poller sends its next command
/// as soon as it has read the answer.
fn ups_bounds(ticks: &[Tick]) -> Vec<(f64, f64)> {
    ticks
        .windows(2)
        .filter(|w| w[0].connection == w[1].connection)
        .filter_map(|w| {
            let (a, b) = (w[0], w[1]);
            let (a_next, b_next) = (a.next_command_at?, b.next_command_at?);
            let ticks = b.tick.checked_sub(a.tick)? as f64;
            let least_s = b.answered_at.duration_since(a_next).as_secs_f64();
            let most_s = b_next.duration_since(a.answered_at).as_secs_f64();
            Some((ticks / most_s, ticks / least_s))
        })
        .collect()
}

/// Neither stderr, `/metrics` nor `/ready` shows `secret`.
fn assert_not_shown(isr: &Isr, secret: &str) {
    for (what, text) in [
        ("stderr", isr.stderr()),
        ("/metrics", isr.admin_get("/metrics").1),
        ("/ready", isr.admin_get("/ready").1),
    ] {
        assert!(!text.contains(secret), "{what} shows the password:\n{text}");
    }
}

#[test]
fn run_reports_players_latency_and_version_and_reconciles_a_leave_the_log_missed() {
    let fake = FakeRcon::start(PASSWORD);
    fake.set_players(&["Mr. Spaceman [AFK]"]);
    fake.delay_ticks(Duration::from_millis(200));
    let (env, isr) = run(&fake, PASSWORD, "poll_interval_ms = 100\nups = true");
    append(
        &env,
        "2025-10-08 08:58:34 [JOIN] Mr. Spaceman [AFK] joined the game",
    );
    append(&env, "2025-10-08 08:58:35 [JOIN] Ghost ü joined the game");

    let s = "{server=\"test\"}";
    wait_sample(&isr, &format!("factorio_isr_rcon_connected{s}"), |v| {
        v == 1.0
    });
    wait_sample(&isr, &format!("factorio_isr_players_online{s}"), |v| {
        v == 1.0
    });
    wait_sample(
        &isr,
        "factorio_isr_rcon_command_latency_seconds_count{server=\"test\",command=\"players\"}",
        |v| v >= 1.0,
    );
    wait_sample(
        &isr,
        "factorio_isr_server_info{server=\"test\",version=\"2.0.28\"}",
        |v| v == 1.0,
    );
    // game_ups is the ticks between two answers over the poller's seconds between them: the
    // fake runs 60 ticks a second, and game_ups is within what some pair of answers so far
    // allows (about 60, wider the busier the machine, never racing it), once each of them was
    // followed by a command.
    let ups = wait_sample(&isr, &format!("factorio_isr_game_ups{s}"), |v| v > 0.0);
    let answered = fake.seen(|s| s.ticks.len());
    assert!(fake.wait_for(
        |s| {
            s.ticks[..answered]
                .iter()
                .all(|t| t.next_command_at.is_some())
        },
        ARRIVE
    ));
    let bounds = ups_bounds(&fake.seen(|s| s.ticks[..answered].to_vec()));
    assert!(
        bounds
            .iter()
            .any(|&(least, most)| least * (1.0 - 1e-9) <= ups && ups <= most * (1.0 + 1e-9)),
        "game_ups {ups} is no pair's ticks over seconds: {bounds:?}"
    );
    assert_eq!(
        sample(
            &isr,
            "factorio_isr_component_status{component=\"rcon.test\"}"
        ),
        Some(1.0)
    );
    assert!(
        wait_until(|| isr.admin_get("/ready").0 == 200, ARRIVE),
        "{}",
        isr.admin_get("/ready").1
    );

    // The ghost, joined by the log and never listed, gets one reconciled leave.
    assert!(
        isr.wait_for(|e| !reconciled(e).is_empty(), ARRIVE),
        "no reconciled leave\n{}",
        isr.stderr_tail()
    );
    let leave = isr
        .events()
        .into_iter()
        .find(|e| e["fields"]["reconciled"] == true)
        .unwrap();
    assert_eq!(leave["server"], "test");
    assert_eq!(leave["pattern"], "rcon/player_leave");
    // A few polls more: the listed player stays, the ghost is not sent twice (a leave sent by
    // those polls was delivered before a line appended after them).
    let polls = fake.count("/players online");
    assert!(fake.wait_count("/players online", polls, 3, ARRIVE));
    delivered_up_to_here(&env, &isr, "after three polls");
    assert_eq!(reconciled(&isr.events()), ["Ghost ü"]);
    // A leave the log does see is not doubled either.
    append(
        &env,
        "2025-10-08 08:59:00 [LEAVE] Mr. Spaceman [AFK] left the game",
    );
    assert!(isr.wait_for(
        |e| {
            e.iter()
                .any(|e| e["event_type"] == "player_leave" && e["fields"]["reconciled"].is_null())
        },
        ARRIVE
    ));
    fake.set_players(&[]);
    let polls = fake.count("/players online");
    assert!(fake.wait_count("/players online", polls, 3, ARRIVE));
    delivered_up_to_here(&env, &isr, "after three more polls");
    assert_eq!(reconciled(&isr.events()), ["Ghost ü"]);
    assert_not_shown(&isr, PASSWORD);
}

#[test]
fn a_wrong_password_keeps_ready_503_and_is_retried_after_at_least_2_s() {
    let fake = FakeRcon::start("the-right-one");
    let (_env, isr) = run(&fake, PASSWORD, "poll_interval_ms = 100");
    assert!(
        fake.wait_for(|s| s.auths.len() >= 2, ARRIVE),
        "no second attempt"
    );
    let gap = fake.seen(|s| s.auths[1].0 - s.auths[0].0);
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    // It presents the password it was given, and only that.
    assert!(fake.seen(|s| s.passwords.iter().all(|p| p == PASSWORD)));
    let (status, body) = isr.admin_get("/ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("rcon.test") && body.contains("refused the RCON password"),
        "{body}"
    );
    assert_eq!(isr.admin_get("/healthz").0, 200);
    wait_sample(
        &isr,
        "factorio_isr_rcon_errors_total{server=\"test\",error_type=\"auth\"}",
        |v| v >= 1.0,
    );
    assert_eq!(
        sample(&isr, "factorio_isr_rcon_connected{server=\"test\"}"),
        Some(0.0)
    );
    assert_not_shown(&isr, PASSWORD);
}

#[test]
fn a_server_that_hangs_closes_mid_answer_or_restarts_never_stalls_the_logs() {
    let fake = FakeRcon::start(PASSWORD);
    let (env, isr) = run(
        &fake,
        PASSWORD,
        "poll_interval_ms = 100\ncommand_timeout_ms = 300",
    );
    let connected = "factorio_isr_rcon_connected{server=\"test\"}";
    let errors =
        |t: &str| format!("factorio_isr_rcon_errors_total{{server=\"test\",error_type=\"{t}\"}}");
    wait_sample(&isr, connected, |v| v == 1.0);
    let mut n = 0;
    let mut chat_arrives = |isr: &Isr| {
        n += 1;
        let message = format!("still flowing {n}");
        append(&env, &format!("2025-10-08 09:00:00 [CHAT] w: {message}"));
        assert!(
            isr.wait_for(
                |e| e.iter().any(|e| e["fields"]["message"] == message.as_str()),
                ARRIVE
            ),
            "the log stalled\n{}",
            isr.stderr_tail()
        );
    };

    fake.misbehave(Misbehave::NeverAnswer);
    wait_sample(&isr, &errors("timeout"), |v| v >= 1.0);
    chat_arrives(&isr);

    fake.misbehave(Misbehave::CloseMidResponse);
    wait_sample(&isr, &errors("connection_lost"), |v| v >= 1.0);
    chat_arrives(&isr);

    fake.misbehave(Misbehave::None);
    wait_sample(&isr, connected, |v| v == 1.0);
    let (connections, auths) = fake.seen(|s| (s.connections, s.auths.len()));
    fake.restart();
    // A new connection, authenticated again with the right password.
    assert!(
        fake.wait_for(
            |s| s.connections > connections && s.auths[auths..].iter().any(|&(_, ok)| ok),
            ARRIVE
        ),
        "no authenticated reconnection after the restart"
    );
    assert!(fake.seen(|s| s.passwords.iter().all(|p| p == PASSWORD)));
    let polls = fake.count("/players online");
    assert!(fake.wait_count("/players online", polls, 1, ARRIVE));
    wait_sample(&isr, connected, |v| v == 1.0);
    assert!(wait_until(|| isr.admin_get("/ready").0 == 200, ARRIVE));
    chat_arrives(&isr);
}

// --- configuration -------------------------------------------------------------------------------

fn isr_command(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(args)
        .current_dir(dir)
        .env_remove("RCON_PASSWORD")
        .env("LOG_FORMAT", "console")
        .env("METRICS_ENABLED", "false")
        .output()
        .expect("the binary runs")
}

#[test]
fn check_names_the_line_of_every_rcon_password_problem_and_never_shows_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("isr.toml");
    std::fs::write(
        &config,
        "[[servers]]\n\
         tag = \"a\"\n\
         log_dir = \".\"\n\
         rcon_address = \"127.0.0.1:27015\"\n\
         rcon_password_file = \"no-such-file\"\n\
         [[servers]]\n\
         tag = \"b\"\n\
         log_dir = \".\"\n\
         rcon_address = \"127.0.0.1:27016\"\n\
         [[servers]]\n\
         tag = \"c\"\n\
         log_dir = \".\"\n\
         rcon_address = \"127.0.0.1:27017\"\n\
         rcon_password = \"inline-SECRET\"\n\
         [rcon]\n\
         ups = true\n",
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let out = isr_command(&["check", "--config", config_arg], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{config_arg}:5"))
            && stderr.contains("cannot read rcon_password_file")
            && stderr.contains("no-such-file"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{config_arg}:9")) && stderr.contains("server `b`"),
        "{stderr}"
    );
    assert!(stderr.contains("RCON_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("server `c`"), "{stderr}");
    for text in [&stderr, &stdout] {
        assert!(!text.contains("SECRET"), "{text}");
    }

    // With the file there and RCON_PASSWORD for b, the config is valid.
    std::fs::write(dir.path().join("no-such-file"), "file-SECRET\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["check", "--config", config_arg])
        .env("RCON_PASSWORD", "env-SECRET")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(!all.contains("SECRET"), "{all}");
}

#[test]
fn rcon_settings_out_of_range_or_misplaced_are_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("isr.toml");
    std::fs::write(
        &config,
        "[[servers]]\ntag = \"a\"\nlog_dir = \".\"\nrcon_address = \"localhost\"\n",
    )
    .unwrap();
    let config_arg = config.to_str().unwrap();
    let out = isr_command(&["check", "--config", config_arg], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("servers.rcon_address") && stderr.contains("HOST:PORT"),
        "{stderr}"
    );

    std::fs::write(&config, "[rcon]\npoll_interval_ms = 5\n").unwrap();
    let out = isr_command(&["check", "--config", config_arg], dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rcon.poll_interval_ms"), "{stderr}");

    // --rcon belongs to a single LOG_DIR.
    std::fs::write(&config, "[[servers]]\ntag = \"a\"\nlog_dir = \".\"\n").unwrap();
    let out = isr_command(
        &["run", "--config", config_arg, "--rcon", "127.0.0.1:27015"],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--rcon") && stderr.contains("rcon_address"),
        "{stderr}"
    );
}

// --- traces --------------------------------------------------------------------------------------

#[test]
fn each_poll_is_a_trace_with_an_rcon_command_span_per_command() {
    use support::otlp::OtlpReceiver;
    let receiver = OtlpReceiver::start();
    let fake = FakeRcon::start(PASSWORD);
    let env = Env::builder()
        .tail("[rcon]\npoll_interval_ms = 100\nups = true")
        .build();
    let isr = env
        .isr()
        .arg("--rcon")
        .arg(fake.addr().to_string())
        .env("RCON_PASSWORD", PASSWORD)
        .env("TRACES_ENABLED", "true")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .spawn();
    let complete = |spans: &[support::otlp::ReceivedSpan]| {
        spans.iter().any(|root| {
            root.name == "rcon_poll"
                && ["players", "tick"].iter().all(|command| {
                    spans.iter().any(|s| {
                        s.name == "rcon_command"
                            && s.parent_span_id == root.span_id
                            && s.trace_id == root.trace_id
                            && s.attr("command") == Some(command)
                    })
                })
        })
    };
    assert!(
        receiver.wait_for(complete, ARRIVE),
        "no poll trace; span names: {:?}\n{}",
        receiver
            .spans()
            .iter()
            .map(|s| s.name.clone())
            .collect::<std::collections::BTreeSet<_>>(),
        isr.stderr_tail()
    );
    let spans = receiver.spans();
    let root = spans.iter().find(|s| s.name == "rcon_poll").unwrap();
    assert!(root.is_root());
    // The connection's /version is asked in its first poll.
    assert!(receiver.wait_for(
        |spans| spans.iter().any(|s| {
            s.attr("command") == Some("version")
                && spans
                    .iter()
                    .any(|p| p.name == "rcon_poll" && p.span_id == s.parent_span_id)
        }),
        ARRIVE
    ));
    assert_eq!(root.attr("server"), Some("test"));
    for s in &spans {
        assert!(
            s.attributes.iter().all(|(_, v)| !v.contains(PASSWORD)),
            "a span shows the password: {s:?}"
        );
    }
}
