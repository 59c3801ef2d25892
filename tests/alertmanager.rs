//! Alerts into Discord, end to end (issue 15): the real `factorio-isr run` takes Alertmanager's
//! webhook on `POST /alertmanager` and posts the alerts to a fake Discord
//! (`support::discord`); role pings from the config reach Discord and nothing else can ping.
//!
//! The tests marked "real Alertmanager" start the Debian package `prometheus-alertmanager` on
//! loopback ports with a config they write, push alerts to its API and watch what reaches the
//! fake Discord. Without the binary they are skipped with a loud note, unless
//! `FACTORIO_ISR_REQUIRE_PROMTOOL=1` (then they fail).

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::discord::{FakeConfig, FakeDiscord, Mode, Recorded};
use support::{Env, Isr, metric_sample, prom_tools, wait_until};

const ARRIVE: Duration = Duration::from_secs(60);
const TOKEN: &str = "am-token-SECRET";
const ONCALL_ROLE: &str = "111111111111111111";
const SERVER_ROLE: &str = "222222222222222222";
const PATTERN_ROLE: &str = "333333333333333333";

/// A config whose `[alertmanager]` sends `critical` alerts to the webhook `oncall` pinging
/// [`ONCALL_ROLE`], whose server `test` pings [`SERVER_ROLE`] when something critical happens,
/// plus `discord_extra` in `[discord]` (no coalescing wait unless it sets one).
fn env(fake: &FakeDiscord, discord_extra: &str) -> Env {
    let coalesce = if discord_extra.contains("coalesce_ms") {
        ""
    } else {
        "coalesce_ms = 0\n"
    };
    Env::builder()
        .config_text(format!(
            "[tail]\ndiscovery_interval_ms = 100\npoll_interval_max_ms = 50\n\
             [[servers]]\ntag = \"test\"\nlog_dir = \"logs\"\nmention_roles = [\"{SERVER_ROLE}\"]\n\
             [discord]\n{coalesce}retry_initial_ms = 50\nretry_max_ms = 200\n{discord_extra}\n\
             [discord.webhooks.oncall]\nurl = \"{}\"\n\
             [alertmanager.routes.critical]\nwebhook = \"oncall\"\nmention_roles = [\"{ONCALL_ROLE}\"]\n",
            fake.webhook_url("2")
        ))
        .start_at_beginning()
        .build()
}

fn start(env: &Env, fake: &FakeDiscord, patterns: Option<&Path>) -> Isr {
    let mut cmd = env
        .isr()
        .env("DISCORD_WEBHOOK_URL", fake.webhook_url("1"))
        .env("ALERTMANAGER_TOKEN", TOKEN);
    if let Some(p) = patterns {
        cmd = cmd.arg("--patterns").arg(p);
    }
    cmd.spawn()
}

/// A plain HTTP/1.1 POST of JSON: the status code and the body (status 0 when it failed).
fn post(addr: SocketAddr, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    support::http_exchange(addr, &request, Duration::from_secs(30))
}

/// A version 4 notification of `alerts` (name, severity) on server `test`, all `status`.
fn notification(status: &str, alerts: &[(&str, &str)]) -> String {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(name, severity)| {
            json!({
                "status": status,
                "labels": {"alertname": name, "severity": severity, "server": "test"},
                "annotations": {"summary": format!("{name} happened")},
                "startsAt": "2026-01-15T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "", "fingerprint": name,
            })
        })
        .collect();
    json!({"version": "4", "status": status, "receiver": "factorio-isr", "groupKey": "{}",
           "truncatedAlerts": 0, "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
           "externalURL": "", "alerts": alerts})
    .to_string()
}

/// The embeds of every accepted request, each with the request.
fn embeds(fake: &FakeDiscord) -> Vec<(Recorded, Value)> {
    fake.accepted()
        .into_iter()
        .flat_map(|r| {
            let embeds = r.body["embeds"].as_array().cloned().unwrap_or_default();
            embeds.into_iter().map(move |e| (r.clone(), e))
        })
        .collect()
}

fn find_embed(fake: &FakeDiscord, title: &str) -> Option<(Recorded, Value)> {
    embeds(fake).into_iter().find(|(_, e)| e["title"] == title)
}

fn field<'a>(embed: &'a Value, name: &str) -> Option<&'a str> {
    embed["fields"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name)?["value"]
        .as_str()
}

fn metric(isr: &Isr, name: &str) -> f64 {
    metric_sample(&isr.admin_get("/metrics").1, name).unwrap_or(0.0)
}

/// The token never shows: not in factorio-isr's logs, not in its metrics.
fn assert_token_never_shown(isr: &Isr) {
    assert!(!isr.stderr().contains(TOKEN), "{}", isr.stderr());
    assert!(!isr.admin_get("/metrics").1.contains(TOKEN));
}

#[test]
fn notifications_posted_to_the_receiver_reach_discord_and_ping_only_the_configured_roles() {
    let fake = FakeDiscord::start(FakeConfig::default());
    let env = env(&fake, "");
    let isr = start(&env, &fake, None);
    let addr = isr.admin_addr();

    // Refused: no token, a wrong token, a body that is not the payload.
    let body = notification(
        "firing",
        &[("ServerDown", "critical"), ("Lagging", "warning")],
    );
    assert_eq!(post(addr, "/alertmanager", None, &body).0, 401);
    assert_eq!(
        post(addr, "/alertmanager", Some("Bearer nope"), &body).0,
        401
    );
    let bearer = format!("Bearer {TOKEN}");
    let (status, text) = post(addr, "/alertmanager", Some(&bearer), "{\"version\": \"4\"");
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("not an Alertmanager webhook payload"),
        "{text}"
    );

    let (status, text) = post(addr, "/alertmanager", Some(&bearer), &body);
    assert_eq!(status, 200, "{text}");
    assert!(
        fake.wait_for(|r| r.iter().filter(|r| r.accepted()).count() >= 2, ARRIVE),
        "{:#?}",
        fake.requests()
    );
    // Critical: to `oncall`, red, pinging the route's role and the server's, and only those.
    let (request, down) = find_embed(&fake, "🚨 ServerDown").expect("the critical alert");
    assert_eq!(request.webhook_id, "2");
    assert_eq!(down["color"], 0xE7_4C3C);
    assert_eq!(down["description"], "ServerDown happened");
    assert_eq!(field(&down, "Status"), Some("firing"));
    assert_eq!(field(&down, "Severity"), Some("critical"));
    assert_eq!(field(&down, "Server"), Some("test"));
    assert_eq!(down["timestamp"], "2026-01-15T10:00:00Z");
    assert_eq!(
        request.body["content"],
        format!("<@&{ONCALL_ROLE}> <@&{SERVER_ROLE}>")
    );
    assert_eq!(
        request.body["allowed_mentions"],
        json!({"parse": [], "roles": [ONCALL_ROLE, SERVER_ROLE]})
    );
    // Warning: to the default webhook, orange, nobody pinged.
    let (request, lag) = find_embed(&fake, "🚨 Lagging").expect("the warning");
    assert_eq!(request.webhook_id, "1");
    assert_eq!(lag["color"], 0xE6_7E22);
    assert_eq!(request.body["allowed_mentions"], json!({"parse": []}));
    assert!(request.body.get("content").is_none(), "{}", request.body);

    // Resolved: green, nobody pinged.
    let body = notification("resolved", &[("ServerDown", "critical")]);
    assert_eq!(post(addr, "/alertmanager", Some(&bearer), &body).0, 200);
    assert!(fake.wait_for(|_| find_embed(&fake, "✅ ServerDown").is_some(), ARRIVE));
    let (request, up) = find_embed(&fake, "✅ ServerDown").unwrap();
    assert_eq!(up["color"], 0x2E_CC71);
    assert_eq!(request.body["allowed_mentions"], json!({"parse": []}));

    let name = "factorio_isr_alertmanager_requests_rejected_total";
    assert_eq!(
        metric(&isr, &format!("{name}{{reason=\"unauthorized\"}}")),
        2.0
    );
    assert_eq!(
        metric(&isr, &format!("{name}{{reason=\"bad_request\"}}")),
        1.0
    );
    assert_eq!(
        metric(
            &isr,
            "factorio_isr_alertmanager_notifications_total{status=\"firing\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&isr, "factorio_isr_alertmanager_alerts_posted_total"),
        3.0
    );
    assert_eq!(fake.violations(), 0);
    assert_token_never_shown(&isr);
}

#[test]
fn a_notification_of_more_alerts_than_a_message_holds_becomes_several_messages() {
    let fake = FakeDiscord::start(FakeConfig::default());
    // A notification is queued at once, whole: the worker sees all of it.
    let env = env(&fake, "");
    let isr = start(&env, &fake, None);
    let names: Vec<String> = (0..23).map(|i| format!("Alert{i:02}")).collect();
    let alerts: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "warning")).collect();
    let bearer = format!("Bearer {TOKEN}");
    let body = notification("firing", &alerts);
    let (status, text) = post(isr.admin_addr(), "/alertmanager", Some(&bearer), &body);
    assert_eq!(status, 200, "{text}");
    assert!(
        fake.wait_for(|_| embeds(&fake).len() >= 23, ARRIVE),
        "{:#?}",
        fake.requests()
    );
    let accepted = fake.accepted();
    assert!(accepted.len() >= 3, "{} messages", accepted.len());
    for r in &accepted {
        let n = r.body["embeds"].as_array().map_or(0, Vec::len);
        assert!((1..=10).contains(&n), "{n} embeds in one message");
    }
    let titles: Vec<String> = embeds(&fake)
        .iter()
        .map(|(_, e)| e["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = names.iter().map(|n| format!("🚨 {n}")).collect();
    assert_eq!(titles, expected, "every alert, in order");
    assert!(fake.rejected().is_empty());
}

#[test]
fn a_patterns_roles_and_its_servers_ping_on_a_crash_and_player_text_pings_nobody() {
    let fake = FakeDiscord::start(FakeConfig::default());
    let env = env(&fake, "");
    let patterns = env.root().join("patterns");
    std::fs::create_dir(&patterns).unwrap();
    std::fs::write(
        patterns.join("test.toml"),
        format!(
            "[[pattern]]\nname = \"boom\"\nevent_type = \"server_crashed\"\nseverity = \"critical\"\n\
             regex = '^BOOM (?P<why>.*)$'\n[pattern.discord]\ntemplate = \"crashed: {{why}}\"\n\
             mention_roles = [\"{PATTERN_ROLE}\"]\n\n\
             [[pattern]]\nname = \"said\"\nevent_type = \"chat\"\nregex = '^SAID (?P<message>.*)$'\n\
             [pattern.discord]\ntemplate = \"{{message}}\"\n"
        ),
    )
    .unwrap();
    let isr = start(&env, &fake, Some(&patterns));
    std::fs::write(
        env.log("console.log"),
        format!(
            "SAID hi <@&{PATTERN_ROLE}> <@&{SERVER_ROLE}> @everyone <@1234567890123456789>\n\
             BOOM <@&{ONCALL_ROLE}> out of memory\n"
        ),
    )
    .unwrap();
    assert!(
        fake.wait_for(|r| r.iter().filter(|r| r.accepted()).count() >= 2, ARRIVE),
        "{:#?}\n{}",
        fake.requests(),
        isr.stderr()
    );
    let accepted = fake.accepted();
    let chat = accepted
        .iter()
        .find(|r| r.body["content"].as_str().is_some_and(|c| c.contains("hi")))
        .expect("the chat line");
    // Player text: every mention escaped, nothing allowed.
    assert_eq!(chat.body["allowed_mentions"], json!({"parse": []}));
    let content = chat.body["content"].as_str().unwrap();
    assert!(!content.replace("\\<@", "").contains("<@"), "{content}");
    let crash = accepted
        .iter()
        .find(|r| {
            r.body["embeds"][0]["title"]
                .as_str()
                .is_some_and(|t| t.contains("crashed"))
        })
        .expect("the crash");
    assert_eq!(
        crash.body["content"],
        format!("<@&{PATTERN_ROLE}> <@&{SERVER_ROLE}>")
    );
    assert_eq!(
        crash.body["allowed_mentions"],
        json!({"parse": [], "roles": [PATTERN_ROLE, SERVER_ROLE]})
    );
    let title = crash.body["embeds"][0]["title"].as_str().unwrap();
    assert!(title.contains("\\<@&"), "{title}");
}

// --- a real Alertmanager ------------------------------------------------------------------------

/// An alert to push: its name, its severity, and more labels.
type PushedAlert<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);

/// A running `prometheus-alertmanager`; killed when dropped.
struct Alertmanager {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (the system's pick; released for the process that binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Alertmanager {
    /// Starts Alertmanager, routing every alert to factorio-isr at `isr` with the right token,
    /// except alerts labelled `token="wrong"`, sent with a wrong one. Short group timings, no
    /// cluster, storage in a temporary directory. `None` when the binary is missing (and not
    /// required).
    fn start(isr: SocketAddr) -> Option<Alertmanager> {
        let bin = prom_tools::tool("prometheus-alertmanager")?;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let wrong_file = dir.path().join("wrong-token");
        std::fs::write(&wrong_file, "not-the-token\n").unwrap();
        let receiver = |name: &str, credentials: &Path| {
            format!(
                "  - name: {name}\n    webhook_configs:\n      - url: http://{isr}/alertmanager\n        send_resolved: true\n        http_config:\n          authorization:\n            credentials_file: {}\n",
                credentials.display()
            )
        };
        let config = format!(
            "route:\n  receiver: isr\n  group_by: [alertname]\n  group_wait: 100ms\n  group_interval: 500ms\n  repeat_interval: 1h\n  routes:\n    - receiver: wrong\n      matchers: ['token=\"wrong\"']\nreceivers:\n{}{}",
            receiver("isr", &token_file),
            receiver("wrong", &wrong_file)
        );
        let config_file = dir.path().join("alertmanager.yml");
        std::fs::write(&config_file, config).unwrap();
        // The port is free a moment ago; a clash is retried with another.
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let mut child = Command::new(bin)
                .arg(format!("--config.file={}", config_file.display()))
                .arg(format!(
                    "--storage.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .arg("--cluster.listen-address=")
                .arg("--log.level=debug")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.path().join("alertmanager.log")).unwrap(),
                ))
                .spawn()
                .expect("prometheus-alertmanager starts");
            let ready = wait_until(
                || {
                    support::http_get(addr, "/-/ready").0 == 200
                        || child.try_wait().ok().flatten().is_some()
                },
                Duration::from_secs(30),
            );
            if ready && child.try_wait().ok().flatten().is_none() {
                return Some(Alertmanager {
                    child,
                    addr,
                    _dir: dir,
                });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "Alertmanager did not start:\n{}",
            std::fs::read_to_string(dir.path().join("alertmanager.log")).unwrap_or_default()
        );
    }

    /// Pushes alerts to its v2 API; `resolved` ones end a minute ago.
    fn push(&self, alerts: &[PushedAlert<'_>], resolved: bool) {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let now = chrono::DateTime::from_timestamp(secs, 0).unwrap();
        let alerts: Vec<Value> = alerts
            .iter()
            .map(|(name, severity, extra)| {
                let mut labels = json!({"alertname": name, "severity": severity, "server": "test"});
                for (k, v) in *extra {
                    labels[*k] = json!(v);
                }
                let mut alert = json!({
                    "labels": labels,
                    "annotations": {"summary": format!("{name} happened")},
                    "startsAt": (now - chrono::Duration::minutes(5)).to_rfc3339(),
                });
                if resolved {
                    alert["endsAt"] = json!((now - chrono::Duration::minutes(1)).to_rfc3339());
                }
                alert
            })
            .collect();
        let (status, text) = post(
            self.addr,
            "/api/v2/alerts",
            None,
            &Value::Array(alerts).to_string(),
        );
        assert_eq!(status, 200, "Alertmanager refused the alerts: {text}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("alertmanager.log")).unwrap_or_default()
    }
}

/// Real Alertmanager: an alert raised there reaches Discord firing, then resolved; one sent
/// with a wrong token is refused and never reaches Discord.
#[test]
fn an_alert_raised_in_a_real_alertmanager_reaches_discord_firing_then_resolved() {
    let fake = FakeDiscord::start(FakeConfig::default());
    let env = env(&fake, "");
    let isr = start(&env, &fake, None);
    let Some(am) = Alertmanager::start(isr.admin_addr()) else {
        return;
    };
    am.push(&[("FactorioTestDown", "critical", &[])], false);
    assert!(
        fake.wait_for(
            |_| find_embed(&fake, "🚨 FactorioTestDown").is_some(),
            ARRIVE
        ),
        "no firing embed: {:#?}\n{}\n{}",
        fake.requests(),
        isr.stderr(),
        am.log()
    );
    let (request, firing) = find_embed(&fake, "🚨 FactorioTestDown").unwrap();
    assert_eq!(request.webhook_id, "2");
    assert_eq!(firing["color"], 0xE7_4C3C);
    assert_eq!(firing["description"], "FactorioTestDown happened");
    assert_eq!(field(&firing, "Status"), Some("firing"));
    assert_eq!(field(&firing, "Severity"), Some("critical"));
    assert_eq!(field(&firing, "Server"), Some("test"));
    assert_eq!(
        request.body["allowed_mentions"],
        json!({"parse": [], "roles": [ONCALL_ROLE, SERVER_ROLE]})
    );

    am.push(&[("FactorioTestDown", "critical", &[])], true);
    assert!(
        fake.wait_for(
            |_| find_embed(&fake, "✅ FactorioTestDown").is_some(),
            ARRIVE
        ),
        "no resolved embed: {:#?}\n{}",
        fake.requests(),
        am.log()
    );
    let (request, resolved) = find_embed(&fake, "✅ FactorioTestDown").unwrap();
    assert_eq!(resolved["color"], 0x2E_CC71);
    assert_eq!(field(&resolved, "Status"), Some("resolved"));
    assert_eq!(request.body["allowed_mentions"], json!({"parse": []}));

    // A wrong token: refused (Alertmanager does not retry a 4xx), nothing reaches Discord.
    am.push(&[("WrongToken", "warning", &[("token", "wrong")])], false);
    let rejected = "factorio_isr_alertmanager_requests_rejected_total{reason=\"unauthorized\"}";
    assert!(
        wait_until(|| metric(&isr, rejected) >= 1.0, ARRIVE),
        "the wrong token was not refused:\n{}",
        am.log()
    );
    assert!(find_embed(&fake, "🚨 WrongToken").is_none());
    assert_token_never_shown(&isr);
}

/// Real Alertmanager: with Discord's queue full, the receiver answers 503 and Alertmanager's
/// retry gets through once there is room.
#[test]
fn a_full_queue_answers_503_and_a_real_alertmanagers_retry_gets_through() {
    let fake = FakeDiscord::start(FakeConfig::default());
    // One event waits at most; a held request is never given up on.
    let env = env(&fake, "queue_events = 1\nrequest_timeout_ms = 300000");
    let isr = start(&env, &fake, None);
    let addr = isr.admin_addr();
    let Some(am) = Alertmanager::start(addr) else {
        return;
    };
    let bearer = format!("Bearer {TOKEN}");
    let queued = "factorio_isr_discord_queued_events{webhook=\"oncall\"}";
    fake.set_mode("2", Mode::Hold);
    // The first is taken and held in flight at Discord; the second then fills the queue.
    let first = notification("firing", &[("Filler1", "critical")]);
    assert_eq!(post(addr, "/alertmanager", Some(&bearer), &first).0, 200);
    assert!(wait_until(|| metric(&isr, queued) == 0.0, ARRIVE));
    let second = notification("firing", &[("Filler2", "critical")]);
    assert_eq!(post(addr, "/alertmanager", Some(&bearer), &second).0, 200);
    assert_eq!(metric(&isr, queued), 1.0);

    am.push(&[("QueuedLater", "critical", &[])], false);
    let full = "factorio_isr_alertmanager_requests_rejected_total{reason=\"queue_full\"}";
    assert!(
        wait_until(|| metric(&isr, full) >= 1.0, ARRIVE),
        "Alertmanager's notification was not refused:\n{}",
        am.log()
    );
    assert!(find_embed(&fake, "🚨 QueuedLater").is_none());

    fake.set_mode("2", Mode::Ok);
    assert!(
        fake.wait_for(|_| find_embed(&fake, "🚨 QueuedLater").is_some(), ARRIVE),
        "Alertmanager's retry did not get through: {:#?}\n{}",
        fake.requests(),
        am.log()
    );
    let titles: Vec<String> = embeds(&fake)
        .iter()
        .map(|(_, e)| e["title"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(titles, ["🚨 Filler1", "🚨 Filler2", "🚨 QueuedLater"]);
}

/// `factorio-isr check --config FILE` with a clean environment: exit code, stdout, stderr.
fn check(config: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .arg("check")
        .arg("--config")
        .arg(config)
        .env_remove("ALERTMANAGER_TOKEN")
        .env_remove("DISCORD_WEBHOOK_URL")
        .env_remove("METRICS_ENABLED")
        .output()
        .expect("factorio-isr check runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_names_the_line_of_every_role_id_and_alert_webhook_mistake_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("isr.toml");
    std::fs::write(dir.path().join("token"), "tok-SECRET\n").unwrap();
    std::fs::write(
        &config,
        "[[servers]]\n\
         tag = \"primary\"\n\
         log_dir = \"logs\"\n\
         mention_roles = [\"@here\"]\n\
         [discord.webhooks.main]\n\
         url = \"https://discord.com/api/webhooks/1/url-SECRET\"\n\
         [alertmanager]\n\
         token_file = \"token\"\n\
         webhook = \"phantom\"\n\
         [alertmanager.routes.critical]\n\
         mention_roles = [\"12345\"]\n",
    )
    .unwrap();
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let at = |line: usize| format!("{}:{line}: ", config.display());
    for (line, what) in [
        (4, "`@here` in mention_roles is not a Discord role id"),
        (11, "`12345` in mention_roles is not a Discord role id"),
        (
            9,
            "[alertmanager] posts to the discord webhook `phantom`, which is not configured",
        ),
    ] {
        let expected = format!("{}{what}", at(line));
        assert!(stderr.contains(&expected), "no `{expected}` in:\n{stderr}");
    }
    assert!(
        !stderr.contains("SECRET") && !stdout.contains("SECRET"),
        "{stderr}"
    );

    // Fixed, but the token file is gone: named, with its line.
    std::fs::write(
        &config,
        "[discord.webhooks.main]\n\
         url = \"https://discord.com/api/webhooks/1/url-SECRET\"\n\
         [alertmanager]\n\
         token_file = \"token\"\n\
         webhook = \"main\"\n\
         [alertmanager.routes.critical]\n\
         mention_roles = [\"123456789012345678\"]\n",
    )
    .unwrap();
    let (code, stdout, stderr) = check(&config);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    std::fs::remove_file(dir.path().join("token")).unwrap();
    let (code, _, stderr) = check(&config);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&at(4)) && stderr.contains("cannot read the Alertmanager token file"),
        "{stderr}"
    );
}
