//! The Discord sink, end to end: the real `factorio-isr run` follows a real log file and posts
//! to a fake Discord (`support::discord`) that enforces Discord's documented rate limits, size
//! limits and error answers.
//!
//! Events go to stdout as well (no Logstash configured), so every test can also check that the
//! reliable path is never held up by Discord.

mod support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use support::discord::{FakeConfig, FakeDiscord, Mode, Recorded, Recorder, all_text};
use support::{Env, Isr, metric_sample, wait_until};

const ARRIVE: Duration = Duration::from_secs(30);

/// A test's directories and config: fast discovery and polling, a short coalescing wait and
/// short retries, plus `discord_extra` in `[discord]`; `run` with `--from-beginning`.
fn discord_env(discord_extra: &str) -> Env {
    Env::builder()
        .config_text(format!(
            "[tail]\ndiscovery_interval_ms = 100\npoll_interval_max_ms = 50\n\
             [discord]\ncoalesce_ms = 100\nretry_initial_ms = 50\nretry_max_ms = 200\n{discord_extra}\n"
        ))
        .start_at_beginning()
        .build()
}

/// Starts `factorio-isr run` in `env` posting to `webhook_url`.
fn start(env: &Env, webhook_url: &str) -> Isr {
    env.isr().env("DISCORD_WEBHOOK_URL", webhook_url).spawn()
}

/// Appends console lines stamped with the current time in UTC (the zone the test processes
/// run in: `TZ=UTC`).
fn append(path: &Path, lines: &[String]) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let stamp = chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = String::new();
    for l in lines {
        text += &format!("{stamp} {l}\n");
    }
    f.write_all(text.as_bytes()).unwrap();
}

/// Every request's text, joined.
fn delivered_text(fake: &FakeDiscord) -> String {
    fake.accepted()
        .iter()
        .map(all_text)
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_no_mentions_parsed(requests: &[Recorded]) {
    for r in requests {
        assert_eq!(
            r.body["allowed_mentions"]["parse"],
            serde_json::json!([]),
            "a request without allowed_mentions.parse = []: {}",
            r.raw_body
        );
    }
}

#[track_caller]
fn assert_secret_never_shown(isr: &Isr, fake: &FakeDiscord, id: &str) {
    let token = fake.token(id);
    assert!(
        !isr.stderr().contains(&token),
        "the webhook token is in the logs:\n{}",
        isr.stderr()
    );
    let stdout = serde_json::to_string(&isr.events()).unwrap();
    assert!(
        !stdout.contains(&token),
        "the webhook token is in the events"
    );
    let (_, metrics) = isr.admin_get("/metrics");
    assert!(
        !metrics.contains(&token),
        "the webhook token is in /metrics"
    );
    let (_, ready) = isr.admin_get("/ready");
    assert!(!ready.contains(&token), "the webhook token is in /ready");
}

fn stop(mut isr: Isr) -> Isr {
    isr.sigterm();
    let status = isr
        .wait_exit(Duration::from_secs(20))
        .expect("an exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", isr.stderr());
    isr
}

/// The acceptance run: 60 joins in a burst reach a Discord that allows 5 requests per
/// 2 s in far fewer than 60 requests, none inside a retry window, every name delivered, and
/// no request that could ping.
#[test]
fn a_burst_of_sixty_joins_is_coalesced_within_the_rate_limit() {
    let env = discord_env("");
    let fake = FakeDiscord::start(FakeConfig::default());
    let isr = start(&env, &fake.webhook_url("main"));
    let names: Vec<String> = (0..60).map(|i| format!("player-{i:02}.x")).collect();
    let lines: Vec<String> = names
        .iter()
        .map(|n| format!("[JOIN] {n} joined the game"))
        .collect();
    append(&env.log("console.log"), &lines);
    let all_there = wait_until(
        || {
            let text = delivered_text(&fake).replace('\\', "");
            names.iter().all(|n| text.contains(n.as_str()))
        },
        ARRIVE,
    );
    let requests = fake.requests();
    assert!(
        all_there,
        "not every join arrived in {} requests:\n{}\n{}",
        requests.len(),
        delivered_text(&fake),
        isr.stderr()
    );
    assert!(
        requests.len() < 60,
        "{} requests for 60 joins",
        requests.len()
    );
    assert_eq!(fake.violations(), 0, "requests inside a retry window");
    assert!(
        requests.iter().all(|r| r.status == 200),
        "{:?}",
        requests.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_no_mentions_parsed(&requests);
    // Order is kept: the names appear in the order they joined.
    // Markdown escapes (`player\-00.x`) aside.
    let text = delivered_text(&fake).replace('\\', "");
    let positions: Vec<usize> = names
        .iter()
        .map(|n| text.find(n.as_str()).unwrap_or(usize::MAX))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "joins out of order:\n{text}"
    );
    assert_secret_never_shown(&isr, &fake, "main");
    eprintln!(
        "60 joins: {} requests, 0 inside a retry window",
        requests.len()
    );
    stop(isr);
}

#[test]
fn a_deleted_webhook_is_tried_at_most_twice_and_everything_else_keeps_running() {
    let env = discord_env("");
    let fake = FakeDiscord::start(FakeConfig::default());
    fake.set_mode("gone", Mode::Gone);
    let isr = start(&env, &fake.webhook_url("gone"));
    append(
        &env.log("console.log"),
        &["[JOIN] alice joined the game".to_owned()],
    );
    assert!(
        fake.wait_for(|r| !r.is_empty(), ARRIVE),
        "no request:\n{}",
        isr.stderr()
    );
    // More events for the dead webhook, and lines for stdout.
    for i in 0..20 {
        append(
            &env.log("console.log"),
            &[
                format!("[JOIN] p{i} joined the game"),
                format!("[CHAT] p{i}: hello"),
            ],
        );
    }
    assert!(
        isr.wait_for(|events| events.len() >= 41, ARRIVE),
        "events stopped flowing to stdout: {}\n{}",
        isr.events().len(),
        isr.stderr()
    );
    std::thread::sleep(Duration::from_millis(1000));
    let tries = fake.requests_to("gone").len();
    assert!(
        (1..=2).contains(&tries),
        "a 404 webhook was tried {tries} times"
    );
    let (status, body) = isr.admin_get("/ready");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("discord.default") && body.contains("404"),
        "{body}"
    );
    assert_eq!(isr.admin_get("/healthz").0, 200);
    let logged = isr
        .stderr()
        .matches("does not exist or its token is wrong")
        .count();
    assert_eq!(
        logged,
        1,
        "the disabled webhook should be logged once:\n{}",
        isr.stderr()
    );
    // The series exist from the start at 0: the drops and the error must have moved them.
    let counted = |text: &str| {
        let at_least_one = |name: &str| metric_sample(text, name).is_some_and(|v| v >= 1.0);
        at_least_one("factorio_isr_discord_dropped_total{reason=\"webhook_disabled\"}")
            && at_least_one(
                "factorio_isr_errors_total{component=\"discord\",error_type=\"webhook_disabled\"}",
            )
    };
    assert!(
        wait_until(|| counted(&isr.admin_get("/metrics").1), ARRIVE),
        "{}",
        isr.admin_get("/metrics").1
    );
    assert_secret_never_shown(&isr, &fake, "gone");
    stop(isr);
}

#[test]
fn server_errors_are_retried_until_the_message_gets_through() {
    let env = discord_env("");
    let fake = FakeDiscord::start(FakeConfig::default());
    fake.set_mode(
        "main",
        Mode::ServerError {
            remaining: 2,
            status: 503,
        },
    );
    let isr = start(&env, &fake.webhook_url("main"));
    append(
        &env.log("console.log"),
        &["[JOIN] bob joined the game".to_owned()],
    );
    assert!(
        fake.wait_for(|r| r.iter().any(|x| x.status == 200), ARRIVE),
        "never delivered: {:?}\n{}",
        fake.requests().iter().map(|r| r.status).collect::<Vec<_>>(),
        isr.stderr()
    );
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 503, 200]);
    assert!(all_text(&fake.accepted()[0]).contains("bob"));
    assert_secret_never_shown(&isr, &fake, "main");
    stop(isr);
}

/// A webhook URL that answers a redirect: the redirect is not followed (its target never sees
/// the token, in the URL or a `Referer`), the message is counted as dropped, not as sent, and
/// the log says the status, never the `Location`. A 302 (which a follower turns into a bodiless
/// GET) and a 307 (which a follower re-posts).
#[test]
fn a_redirect_is_never_followed_and_the_message_is_counted_as_dropped() {
    let env = discord_env("");
    let fake = FakeDiscord::start(FakeConfig::default());
    let elsewhere = Recorder::start();
    let location = format!("{}/elsewhere", elsewhere.base_url());
    let isr = start(&env, &fake.webhook_url("main"));
    for (n, status) in [(1.0, 302), (2.0, 307)] {
        fake.set_mode(
            "main",
            Mode::Redirect {
                status,
                location: location.clone(),
            },
        );
        append(
            &env.log("console.log"),
            &[format!("[JOIN] p{status} joined the game")],
        );
        let settled = |text: &str| {
            metric_sample(
                text,
                "factorio_isr_discord_dropped_total{reason=\"redirected\"}",
            ) == Some(n)
                && metric_sample(
                    text,
                    "factorio_isr_errors_total{component=\"discord\",error_type=\"redirected\"}",
                ) == Some(n)
        };
        // Either the drop is counted, or a follower reached the target: both end the wait.
        wait_until(
            || !elsewhere.requests().is_empty() || settled(&isr.admin_get("/metrics").1),
            ARRIVE,
        );
        let leaked: Vec<String> = elsewhere
            .requests()
            .iter()
            .map(|r| format!("{} {} {:?}", r.method, r.path_and_query, r.headers))
            .collect();
        assert!(
            leaked.is_empty(),
            "the redirect was followed after a {status}: {leaked:?}"
        );
        let metrics = isr.admin_get("/metrics").1;
        assert!(settled(&metrics), "after a {status}:\n{metrics}");
        assert_eq!(
            metric_sample(
                &metrics,
                "factorio_isr_discord_events_sent_total{webhook=\"default\"}"
            ),
            Some(0.0),
            "{metrics}"
        );
    }
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [302, 307], "redirects must not be retried");
    for r in fake.requests() {
        assert_eq!(r.header("referer"), None);
    }
    let stderr = isr.stderr();
    assert!(
        stderr.contains("redirect") && !stderr.contains("/elsewhere"),
        "{stderr}"
    );
    assert_secret_never_shown(&isr, &fake, "main");
    stop(isr);
}

#[test]
fn reset_connections_are_retried_and_the_url_stays_out_of_the_logs() {
    let env = discord_env("");
    let fake = FakeDiscord::start(FakeConfig::default());
    fake.set_mode("main", Mode::Reset { remaining: 2 });
    let isr = start(&env, &fake.webhook_url("main"));
    append(
        &env.log("console.log"),
        &["[JOIN] carol joined the game".to_owned()],
    );
    assert!(
        fake.wait_for(|r| r.iter().any(|x| x.status == 200), ARRIVE),
        "{}",
        isr.stderr()
    );
    assert!(
        isr.stderr().contains("Posting to Discord failed; retrying"),
        "{}",
        isr.stderr()
    );
    assert_secret_never_shown(&isr, &fake, "main");
    stop(isr);
}

#[test]
fn no_request_is_sent_inside_a_retry_window() {
    let env = discord_env("");
    let fake = FakeDiscord::start(FakeConfig::default());
    let isr = start(&env, &fake.webhook_url("main"));
    // Someone else used the bucket: the next request gets a 429 for 1.5 s.
    fake.force_429("main", Duration::from_millis(1500), false);
    append(
        &env.log("console.log"),
        &["[JOIN] dave joined the game".to_owned()],
    );
    assert!(fake.wait_for(|r| r.len() >= 2, ARRIVE), "{}", isr.stderr());
    let requests = fake.requests();
    assert_eq!(requests[0].status, 429);
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap >= Duration::from_millis(1490), "retried after {gap:?}");
    assert_eq!(fake.violations(), 0);
    assert_eq!(requests[1].status, 200);
    // Then a global limit on another burst.
    fake.force_429("main", Duration::from_millis(800), true);
    append(
        &env.log("console.log"),
        &["[JOIN] erin joined the game".to_owned()],
    );
    assert!(fake.wait_for(
        |r| r.iter().filter(|x| x.status == 200).count() >= 2,
        ARRIVE
    ));
    assert_eq!(fake.violations(), 0);
    let (_, metrics) = isr.admin_get("/metrics");
    assert!(
        metrics.contains(
            "factorio_isr_discord_rate_limited_total{webhook=\"default\",scope=\"global\"} 1"
        ),
        "{metrics}"
    );
    stop(isr);
}

#[test]
fn hostile_names_and_messages_cannot_ping_or_format() {
    let env = discord_env("");
    let fake = FakeDiscord::start(FakeConfig::default());
    let isr = start(&env, &fake.webhook_url("main"));
    let hostile = [
        "@everyone",
        "@here",
        "<@123456789012345678>",
        "<@&111>",
        "**bold**",
        "__under__",
        "~~gone~~",
        "||spoiler||",
        "`code`",
        "[link](https://evil.example)",
    ];
    let lines: Vec<String> = hostile
        .iter()
        .enumerate()
        .map(|(i, h)| format!("[CHAT] mallory{i}: {h}"))
        .collect();
    append(&env.log("console.log"), &lines);
    assert!(
        wait_until(|| delivered_text(&fake).contains("mallory9"), ARRIVE),
        "{}\n{}",
        delivered_text(&fake),
        isr.stderr()
    );
    let requests = fake.requests();
    assert_no_mentions_parsed(&requests);
    let text = delivered_text(&fake);
    assert!(
        !text.contains("@everyone") && !text.contains("@here"),
        "{text}"
    );
    for raw in [
        "<@123456789012345678>",
        "**bold**",
        "__under__",
        "~~gone~~",
        "||spoiler||",
        "`code`",
        "[link](https",
    ] {
        assert!(
            !text.contains(raw),
            "`{raw}` reached Discord unescaped:\n{text}"
        );
    }
    // The template's own bold stays.
    assert!(text.contains("**mallory0**"), "{text}");
    stop(isr);
}

#[test]
fn long_messages_are_truncated_never_refused() {
    let env = discord_env("");
    let fake = FakeDiscord::start(FakeConfig::default());
    let isr = start(&env, &fake.webhook_url("main"));
    let long = "é".repeat(5000);
    append(&env.log("console.log"), &[format!("[CHAT] frank: {long}")]);
    assert!(fake.wait_for(|r| !r.is_empty(), ARRIVE), "{}", isr.stderr());
    std::thread::sleep(Duration::from_millis(300));
    let requests = fake.requests();
    assert!(
        requests.iter().all(|r| r.status == 200),
        "{:?}",
        requests
            .iter()
            .map(|r| (r.status, r.rejection.clone()))
            .collect::<Vec<_>>()
    );
    let content = requests[0].body["content"].as_str().unwrap_or_default();
    assert!(
        content.chars().count() <= 2000 && content.ends_with('…'),
        "{} chars",
        content.chars().count()
    );
    stop(isr);
}

#[test]
fn bridge_echoes_are_not_sent_back_and_player_chat_is() {
    let env = discord_env("");
    let fake = FakeDiscord::start(FakeConfig::default());
    let isr = start(&env, &fake.webhook_url("main"));
    append(
        &env.log("console.log"),
        &[
            "[CHAT] <server>: [Discord] zed: hi from discord".to_owned(),
            "[CHAT] yara: hi from the game".to_owned(),
        ],
    );
    assert!(
        wait_until(|| delivered_text(&fake).contains("yara"), ARRIVE),
        "{}",
        isr.stderr()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !delivered_text(&fake).contains("hi from discord"),
        "{}",
        delivered_text(&fake)
    );
    // Both lines still reach the reliable sink.
    assert!(isr.wait_for(|e| e.len() >= 2, ARRIVE));
    stop(isr);
}

#[test]
fn a_slow_discord_never_holds_up_the_reliable_sink() {
    let env = discord_env("request_timeout_ms = 60000\nshutdown_flush_ms = 500");
    let fake = FakeDiscord::start(FakeConfig::default());
    fake.set_mode("main", Mode::Slow(Duration::from_secs(30)));
    let isr = start(&env, &fake.webhook_url("main"));
    let lines: Vec<String> = (0..5000)
        .map(|i| format!("[JOIN] p{i} joined the game"))
        .collect();
    append(&env.log("console.log"), &lines);
    assert!(
        isr.wait_for(|e| e.len() >= 5000, ARRIVE),
        "only {} of 5000 events reached stdout while Discord hangs",
        isr.events().len()
    );
    // The queue is bounded: the overflow is dropped and counted.
    let (_, metrics) = isr.admin_get("/metrics");
    assert!(
        metrics.contains("factorio_isr_discord_dropped_total{reason=\"queue_full\"}"),
        "{metrics}"
    );
    let started = Instant::now();
    stop(isr);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stop took {:?}",
        started.elapsed()
    );
}

#[test]
fn old_backlog_is_not_posted() {
    let env = discord_env("");
    let fake = FakeDiscord::start(FakeConfig::default());
    fs::write(
        env.log("console.log"),
        "2019-01-20 10:30:04 [JOIN] olduser joined the game\n",
    )
    .unwrap();
    let isr = start(&env, &fake.webhook_url("main"));
    append(
        &env.log("console.log"),
        &["[JOIN] newuser joined the game".to_owned()],
    );
    assert!(
        wait_until(|| delivered_text(&fake).contains("newuser"), ARRIVE),
        "{}",
        isr.stderr()
    );
    assert!(!delivered_text(&fake).contains("olduser"));
    stop(isr);
}

#[test]
fn a_steady_trickle_waits_for_the_bucket_to_refill() {
    // One join every 150 ms: more requests than the bucket's 5 per 2 s allow, so the sink must
    // wait when a response says the bucket is empty.
    let env = discord_env("");
    let fake = FakeDiscord::start(FakeConfig::default());
    let isr = start(&env, &fake.webhook_url("main"));
    for i in 0..16 {
        append(
            &env.log("console.log"),
            &[format!("[JOIN] t{i:02} joined the game")],
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    assert!(
        wait_until(|| delivered_text(&fake).contains("t15"), ARRIVE),
        "{}\n{}",
        delivered_text(&fake),
        isr.stderr()
    );
    let requests = fake.requests();
    assert!(
        requests.len() > 5,
        "only {} requests: the bucket was never emptied",
        requests.len()
    );
    assert_eq!(
        fake.violations(),
        0,
        "{} requests inside a retry window",
        fake.violations()
    );
    assert!(requests.iter().all(|r| r.status == 200));
    let (_, metrics) = isr.admin_get("/metrics");
    assert!(
        metrics.contains(
            "factorio_isr_discord_rate_limited_total{webhook=\"default\",scope=\"bucket\"}"
        ),
        "{metrics}"
    );
    stop(isr);
}

/// Every notification posted (a line of content or an embed title), in order.
fn notifications(fake: &FakeDiscord) -> Vec<String> {
    let mut out = Vec::new();
    for r in fake.accepted() {
        if let Some(content) = r.body.get("content").and_then(|c| c.as_str()) {
            out.extend(content.lines().map(str::to_owned));
        }
        for embed in r.body["embeds"].as_array().into_iter().flatten() {
            out.extend(embed["title"].as_str().map(str::to_owned));
        }
    }
    out
}

/// Issue 11, item 5: a real stop (Factorio 2.0, SIGINT) and a real crash (a mod's Lua error, then
/// `MultiplayerManager failed`, `Quitting: multiplayer error.`, `Goodbye`) are one notification
/// each; the next run of the server is announced again.
#[test]
fn one_stop_is_one_notification_and_one_crash_is_one_notification() {
    let env = discord_env("max_event_age_ms = 0");
    let fake = FakeDiscord::start(FakeConfig::default());
    let log = env.log("factorio-current.log");
    fs::write(&log, "").unwrap();
    let isr = start(&env, &fake.webhook_url("main"));
    let text = "   0.000 2026-01-15 10:00:00; Factorio 2.0.77 (build 83000, linux64, headless)
   1.196 Info ServerMultiplayerManager.cpp:808: updateTick(926) changing state from(CreatingGame) to(InGame)
16.011 Received SIGINT, shutting down
16.011 Quitting: signal.
16.011 Info MainLoop.cpp:437: Saving map as .../probe.zip
16.030 Info MainLoop.cpp:448: Saving progress: 100.000000%
16.528 Goodbye
   0.000 2026-01-15 11:00:00; Factorio 2.0.77 (build 83000, linux64, headless)
   0.578 Info ServerMultiplayerManager.cpp:808: updateTick(926) changing state from(CreatingGame) to(InGame)
110.207 Error MainLoop.cpp:1488: Exception at tick 5880: The mod BotBridge (0.0.1) caused a non-recoverable error.
Error while running event BotBridge::on_nth_tick(60)
Entity is not mining-drill.
stack traceback:
\t[C]: in function '__index'
\t__BotBridge__/control.lua:1326: in function 'sample_bots'
110.207 Info ServerMultiplayerManager.cpp:85: MultiplayerManager failed: ...
110.214 Quitting: multiplayer error.
111.441 Goodbye
";
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(text.replace("\\t", "\t").as_bytes()).unwrap();
    drop(f);
    // Both runs have gone through the pipeline (their second `Goodbye` is the last line) and
    // the crash has been posted.
    let stopped = |isr: &Isr| {
        isr.events()
            .iter()
            .filter(|e| e["event_type"] == "server_stopped")
            .count()
    };
    assert!(
        wait_until(
            || stopped(&isr) == 2 && delivered_text(&fake).contains("BotBridge"),
            ARRIVE
        ),
        "{}\n{}",
        delivered_text(&fake),
        isr.stderr()
    );
    // Whatever is still queued is sent at exit.
    stop(isr);
    let posted = notifications(&fake);
    let about = |words: &[&str]| {
        posted
            .iter()
            .filter(|n| words.iter().any(|w| n.contains(w)))
            .count()
    };
    assert_eq!(about(&["stopping", "stopped"]), 1, "{posted:#?}");
    assert!(posted.iter().any(|n| n.contains("SIGINT")), "{posted:#?}");
    assert_eq!(about(&["crashed", "multiplayer error"]), 1, "{posted:#?}");
    assert_eq!(about(&["starting"]), 2, "{posted:#?}");
    assert_eq!(about(&["Server is up"]), 2, "{posted:#?}");
}
