//! Self-tests of the fake Discord webhook server in `support/discord.rs`: it answers the way
//! Discord's documentation says Discord answers (message object and rate-limit headers, 429s,
//! form-body limits counted in characters, error codes), so tests of the Discord sink can trust
//! it.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::discord::{FakeConfig, FakeDiscord, Mode, STATUS_RESET, all_text};

const USER_AGENT: &str = "DiscordBot (https://example.invalid, 0.1) fake-discord-selftest";

const RATE_HEADERS: [&str; 5] = [
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "x-ratelimit-reset-after",
    "x-ratelimit-bucket",
];

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .build()
        .expect("client")
}

/// A fake whose buckets never run out in these tests.
fn roomy() -> FakeDiscord {
    FakeDiscord::start(FakeConfig {
        bucket_limit: 1000,
        ..FakeConfig::default()
    })
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    text: String,
    json: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn seconds(&self, name: &str) -> f64 {
        let v = self.header(name).unwrap_or_else(|| panic!("no {name}"));
        v.parse()
            .unwrap_or_else(|_| panic!("{name}: {v} is not a number"))
    }

    fn code(&self) -> i64 {
        self.json["code"].as_i64().expect("code")
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        json,
    }
}

async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Reply {
    reply(client.post(url).json(body).send().await.expect("send")).await
}

fn wait(url: &str) -> String {
    format!("{url}?wait=true")
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `1.234`: digits, a dot, exactly three decimals.
fn three_decimals(v: &str) -> bool {
    let Some((whole, frac)) = v.split_once('.') else {
        return false;
    };
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && frac.len() == 3
        && frac.bytes().all(|b| b.is_ascii_digit())
}

#[tokio::test]
async fn valid_post_with_wait_gets_the_message_and_counts_down() {
    let fake = FakeDiscord::start(FakeConfig::default());
    let client = client();
    let url = wait(&fake.webhook_url("111"));
    let mut bucket = None;
    for (i, expected_remaining) in [4, 3, 2, 1, 0].into_iter().enumerate() {
        let content = format!("hello {i}");
        let r = post(
            &client,
            &url,
            &json!({"content": content, "username": "Factorio"}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        for name in RATE_HEADERS {
            assert!(r.header(name).is_some(), "{name} missing");
        }
        assert_eq!(r.header("x-ratelimit-limit"), Some("5"));
        assert_eq!(
            r.header("x-ratelimit-remaining"),
            Some(expected_remaining.to_string().as_str())
        );
        let reset_after = r.header("x-ratelimit-reset-after").unwrap();
        assert!(three_decimals(reset_after), "{reset_after}");
        let reset_after: f64 = reset_after.parse().unwrap();
        assert!(reset_after > 0.0 && reset_after <= 2.0, "{reset_after}");
        let reset = r.header("x-ratelimit-reset").unwrap();
        assert!(three_decimals(reset), "{reset}");
        let reset: f64 = reset.parse().unwrap();
        assert!((reset - (now_epoch() + reset_after)).abs() < 0.5, "{reset}");
        let hash = r.header("x-ratelimit-bucket").unwrap().to_owned();
        assert_eq!(hash, fake.bucket_hash("111"));
        assert_eq!(*bucket.get_or_insert(hash.clone()), hash);

        let m = &r.json;
        let id = m["id"].as_str().expect("id is a string");
        assert!(
            id.len() >= 17 && id.bytes().all(|b| b.is_ascii_digit()),
            "{id}"
        );
        assert_eq!(m["type"], 0);
        assert_eq!(m["content"], content.as_str());
        assert_eq!(m["webhook_id"], "111");
        assert_eq!(m["author"]["username"], "Factorio");
        assert!(m["channel_id"].as_str().is_some_and(|c| !c.is_empty()));
        assert_eq!(m["embeds"], json!([]));
        let ts = m["timestamp"].as_str().expect("timestamp");
        assert!(ts.len() >= 25 && ts.ends_with("+00:00"), "{ts}");
    }
    assert_eq!(fake.accepted().len(), 5);
    assert_eq!(fake.violations(), 0);

    // Without wait: 204, no body, still the rate-limit headers (another webhook's bucket).
    let r = post(&client, &fake.webhook_url("222"), &json!({"content": "x"})).await;
    assert_eq!(r.status, 204);
    assert!(r.text.is_empty());
    assert_eq!(r.header("x-ratelimit-remaining"), Some("4"));
    assert_ne!(r.header("x-ratelimit-bucket"), bucket.as_deref());
}

#[tokio::test]
async fn sixth_request_in_the_window_is_a_429_and_a_violation() {
    let fake = FakeDiscord::start(FakeConfig::default());
    let client = client();
    let url = fake.webhook_url("7");
    for _ in 0..5 {
        assert_eq!(
            post(&client, &url, &json!({"content": "a"})).await.status,
            204
        );
    }
    let r = post(&client, &url, &json!({"content": "a"})).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json["message"], "You are being rate limited.");
    assert_eq!(r.json["global"], false);
    let retry_after = r.json["retry_after"].as_f64().expect("retry_after float");
    assert!(retry_after > 0.0 && retry_after <= 2.0, "{retry_after}");
    let retry_header: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(retry_header, retry_after.ceil() as u64);
    assert_eq!(r.header("x-ratelimit-scope"), Some("user"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("x-ratelimit-global"), None);
    assert!((r.seconds("x-ratelimit-reset-after") - retry_after).abs() < 0.002);
    assert_eq!(fake.violations(), 1);
    let records = fake.requests_to("7");
    assert_eq!(records.len(), 6);
    assert!(records[..5].iter().all(|r| !r.in_retry_window));
    assert!(records[5].in_retry_window);
    assert_eq!(records[5].status, 429);
    assert_eq!(records[5].rejection.as_deref(), Some("rate limited"));

    // Waiting exactly what was announced is enough, and is no violation.
    tokio::time::sleep(Duration::from_secs_f64(
        r.seconds("x-ratelimit-reset-after"),
    ))
    .await;
    let r = post(&client, &url, &json!({"content": "a"})).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("4"));
    assert_eq!(fake.violations(), 1);
    assert!(!fake.requests_to("7")[6].in_retry_window);
}

#[tokio::test]
async fn remaining_zero_announces_a_window() {
    let fake = FakeDiscord::start(FakeConfig {
        bucket_limit: 2,
        ..FakeConfig::default()
    });
    let client = client();
    let url = fake.webhook_url("8");
    post(&client, &url, &json!({"content": "a"})).await;
    let r = post(&client, &url, &json!({"content": "a"})).await;
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    // A client that waits what remaining 0 announced is fine.
    tokio::time::sleep(Duration::from_secs_f64(
        r.seconds("x-ratelimit-reset-after"),
    ))
    .await;
    assert_eq!(
        post(&client, &url, &json!({"content": "a"})).await.status,
        204
    );
    assert_eq!(fake.violations(), 0);
    // Use the bucket up again: a client that then does not wait gets a 429 and commits a
    // violation.
    let r = post(&client, &url, &json!({"content": "a"})).await;
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.status, 204);
    assert_eq!(fake.violations(), 0);
    assert_eq!(
        post(&client, &url, &json!({"content": "a"})).await.status,
        429
    );
    assert_eq!(fake.violations(), 1);
}

#[tokio::test]
async fn forced_global_429_blocks_every_webhook() {
    let fake = roomy();
    let client = client();
    fake.force_429("g1", Duration::from_millis(400), true);
    let r = post(&client, &fake.webhook_url("g1"), &json!({"content": "a"})).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json["global"], true);
    let retry_after = r.json["retry_after"].as_f64().unwrap();
    assert!((retry_after - 0.4).abs() < 0.0011, "{retry_after}");
    assert_eq!(r.header("x-ratelimit-global"), Some("true"));
    assert_eq!(r.header("x-ratelimit-scope"), Some("global"));
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("x-ratelimit-bucket"), None);
    // Nobody had told the client: not a violation.
    assert_eq!(fake.violations(), 0);

    // Another webhook inside the window: global 429 and a violation.
    let r = post(&client, &fake.webhook_url("g2"), &json!({"content": "a"})).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json["global"], true);
    assert_eq!(fake.violations(), 1);
    assert!(fake.requests_to("g2")[0].in_retry_window);

    tokio::time::sleep(Duration::from_millis(420)).await;
    let r = post(&client, &fake.webhook_url("g2"), &json!({"content": "a"})).await;
    assert_eq!(r.status, 204);
    assert_eq!(fake.violations(), 1);
}

#[tokio::test]
async fn forced_bucket_429_is_shared_and_holds_the_bucket() {
    let fake = roomy();
    let client = client();
    fake.force_429("f", Duration::from_millis(300), false);
    let r = post(&client, &fake.webhook_url("f"), &json!({"content": "a"})).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json["global"], false);
    assert_eq!(r.header("x-ratelimit-scope"), Some("shared"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("x-ratelimit-global"), None);
    assert_eq!(fake.violations(), 0);
    // Other webhooks have their own buckets.
    assert_eq!(
        post(
            &client,
            &fake.webhook_url("other"),
            &json!({"content": "a"})
        )
        .await
        .status,
        204
    );
    // The same one inside the window: 429 again and a violation.
    assert_eq!(
        post(&client, &fake.webhook_url("f"), &json!({"content": "a"}))
            .await
            .status,
        429
    );
    assert_eq!(fake.violations(), 1);
    tokio::time::sleep(Duration::from_millis(320)).await;
    assert_eq!(
        post(&client, &fake.webhook_url("f"), &json!({"content": "a"}))
            .await
            .status,
        204
    );
    assert_eq!(fake.violations(), 1);
}

#[tokio::test]
async fn global_limit_spans_webhooks() {
    let fake = FakeDiscord::start(FakeConfig {
        bucket_limit: 1000,
        global_limit: Some((3, Duration::from_secs(1))),
        ..FakeConfig::default()
    });
    let client = client();
    for id in ["a", "b", "c"] {
        assert_eq!(
            post(&client, &fake.webhook_url(id), &json!({"content": "x"}))
                .await
                .status,
            204
        );
    }
    let r = post(&client, &fake.webhook_url("d"), &json!({"content": "x"})).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json["global"], true);
    assert_eq!(r.header("x-ratelimit-global"), Some("true"));
    assert_eq!(fake.violations(), 0);
    let retry = r.json["retry_after"].as_f64().unwrap();
    assert!(retry > 0.0 && retry <= 1.0, "{retry}");
    tokio::time::sleep(Duration::from_secs_f64(retry)).await;
    assert_eq!(
        post(&client, &fake.webhook_url("a"), &json!({"content": "x"}))
            .await
            .status,
        204
    );
    assert_eq!(fake.violations(), 0);
}

#[tokio::test]
async fn form_body_limits() {
    let fake = roomy();
    let client = client();
    let url = fake.webhook_url("v");

    let r = post(&client, &url, &json!({"content": "x".repeat(2001)})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), 50035);
    assert_eq!(r.json["message"], "Invalid Form Body");
    assert_eq!(
        r.json["errors"]["content"]["_errors"][0]["code"],
        "BASE_TYPE_MAX_LENGTH"
    );
    // A 400 still carries the bucket's headers and uses it up.
    for name in RATE_HEADERS {
        assert!(r.header(name).is_some(), "{name} missing on a 400");
    }
    assert_eq!(r.header("x-ratelimit-remaining"), Some("999"));
    let rec = &fake.requests_to("v")[0];
    assert_eq!(rec.status, 400);
    assert!(
        rec.rejection.as_deref().unwrap().contains("content"),
        "{:?}",
        rec.rejection
    );

    assert_eq!(
        post(&client, &url, &json!({"content": "x".repeat(2000)}))
            .await
            .status,
        204
    );

    let embed = json!({"description": "d"});
    let r = post(&client, &url, &json!({"embeds": vec![embed.clone(); 11]})).await;
    assert_eq!((r.status, r.code()), (400, 50035));
    assert_eq!(
        r.json["errors"]["embeds"]["_errors"][0]["code"],
        "BASE_TYPE_MAX_LENGTH"
    );
    assert_eq!(
        post(&client, &url, &json!({"embeds": vec![embed; 10]}))
            .await
            .status,
        204
    );

    // 4096 + 1000 + 904 + 1 = 6001 characters over two embeds, each within its own limits.
    let big = |extra: usize| {
        json!({"embeds": [
            {"description": "a".repeat(4096)},
            {"title": "t", "fields": [{"name": "n".repeat(3), "value": "v".repeat(1000)}],
             "footer": {"text": "f".repeat(900 + extra)}},
        ]})
    };
    let r = post(&client, &url, &big(1)).await;
    assert_eq!((r.status, r.code()), (400, 50035));
    assert_eq!(
        r.json["errors"]["embeds"]["_errors"][0]["code"],
        "MAX_EMBED_SIZE_EXCEEDED"
    );
    assert_eq!(post(&client, &url, &big(0)).await.status, 204);

    let r = post(
        &client,
        &url,
        &json!({"embeds": [{"title": "t".repeat(257)}]}),
    )
    .await;
    assert_eq!(
        r.json["errors"]["embeds"]["0"]["title"]["_errors"][0]["code"],
        "BASE_TYPE_MAX_LENGTH"
    );
    let fields: Vec<Value> = (0..26)
        .map(|i| json!({"name": i.to_string(), "value": "v"}))
        .collect();
    let r = post(&client, &url, &json!({"embeds": [{"fields": fields}]})).await;
    assert_eq!(
        r.json["errors"]["embeds"]["0"]["fields"]["_errors"][0]["code"],
        "BASE_TYPE_MAX_LENGTH"
    );
    let r = post(
        &client,
        &url,
        &json!({"embeds": [{"fields": [{"name": "n", "value": "v".repeat(1025)}, {"name": "n", "value": ""}]}]}),
    )
    .await;
    let f = &r.json["errors"]["embeds"]["0"]["fields"];
    assert_eq!(
        f["0"]["value"]["_errors"][0]["code"],
        "BASE_TYPE_MAX_LENGTH"
    );
    assert_eq!(f["1"]["value"]["_errors"][0]["code"], "BASE_TYPE_REQUIRED");
    let r = post(
        &client,
        &url,
        &json!({"content": "x", "username": "u".repeat(81)}),
    )
    .await;
    assert_eq!(
        r.json["errors"]["username"]["_errors"][0]["code"],
        "BASE_TYPE_BAD_LENGTH"
    );
    let r = post(
        &client,
        &url,
        &json!({"content": "x", "username": "My Discord Bot"}),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, 50035));
    let r = post(
        &client,
        &url,
        &json!({"embeds": [{"title": "t", "timestamp": "yesterday"}]}),
    )
    .await;
    assert_eq!(
        r.json["errors"]["embeds"]["0"]["timestamp"]["_errors"][0]["code"],
        "DATE_TIME_TYPE_PARSE"
    );
    let r = post(
        &client,
        &url,
        &json!({"embeds": [{"title": "t", "color": 16777216}]}),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, 50035));
    let ok = json!({"embeds": [{"title": "t", "color": 16777215, "timestamp": "2025-10-08T08:58:34.000Z"}]});
    assert_eq!(post(&client, &url, &ok).await.status, 204);
}

#[tokio::test]
async fn empty_and_malformed_requests() {
    let fake = roomy();
    let client = client();
    let url = fake.webhook_url("e");
    for body in [
        json!({}),
        json!({"content": ""}),
        json!({"content": "  \n "}),
        json!({"embeds": []}),
    ] {
        let r = post(&client, &url, &body).await;
        assert_eq!((r.status, r.code()), (400, 50006), "{body}");
        assert_eq!(r.json["message"], "Cannot send an empty message");
    }
    let r = post(&client, &url, &json!(["content"])).await;
    assert_eq!((r.status, r.code()), (400, 50035));

    // Not JSON at all.
    let r = reply(
        client
            .post(&url)
            .header("content-type", "application/json")
            .body("{\"content\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, 50109));

    // JSON without a JSON content type: Discord sees no payload.
    let r = reply(
        client
            .post(&url)
            .header("content-type", "text/plain")
            .body(r#"{"content": "hi"}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.code()), (400, 50006));

    // No User-Agent (reqwest sends none unless told to).
    let bare = reqwest::Client::new();
    let r = post(&bare, &url, &json!({"content": "hi"})).await;
    assert_eq!(r.status, 400);
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.rejection.as_deref(), Some("missing User-Agent"));
    assert_eq!(last.header("user-agent"), None);

    assert_eq!(fake.accepted().len(), 0);
    assert_eq!(fake.requests().len(), 8);
}

#[tokio::test]
async fn modes() {
    let fake = roomy();
    let client = client();
    let body = json!({"content": "hi"});

    fake.set_mode("gone", Mode::Gone);
    let r = post(&client, &fake.webhook_url("gone"), &body).await;
    assert_eq!((r.status, r.code()), (404, 10015));
    assert_eq!(r.json["message"], "Unknown Webhook");

    fake.set_mode("unauth", Mode::Unauthorized);
    let r = post(&client, &fake.webhook_url("unauth"), &body).await;
    assert_eq!((r.status, r.code()), (401, 50027));

    fake.set_mode(
        "flaky",
        Mode::ServerError {
            remaining: 2,
            status: 503,
        },
    );
    let url = wait(&fake.webhook_url("flaky"));
    let statuses = [
        post(&client, &url, &body).await.status,
        post(&client, &url, &body).await.status,
        post(&client, &url, &body).await.status,
    ];
    assert_eq!(statuses, [503, 503, 200]);
    assert_eq!(fake.mode("flaky"), Mode::Ok);

    fake.set_mode(
        "cf",
        Mode::ServerError {
            remaining: 1,
            status: 502,
        },
    );
    let r = post(&client, &fake.webhook_url("cf"), &body).await;
    assert_eq!(r.status, 502);
    assert_eq!(
        r.json,
        Value::Null,
        "Cloudflare's 502 is not JSON: {}",
        r.text
    );

    // Modes can change at any time.
    fake.set_mode("gone", Mode::Ok);
    assert_eq!(
        post(&client, &fake.webhook_url("gone"), &body).await.status,
        204
    );
}

#[tokio::test]
async fn wrong_token_and_other_routes() {
    let fake = roomy();
    let client = client();
    let body = json!({"content": "hi"});
    let url = format!("{}/api/webhooks/5/not-the-token", fake.base_url());
    let r = post(&client, &url, &body).await;
    assert_eq!((r.status, r.code()), (401, 50027));

    let r = post(
        &client,
        &format!("{}/api/webhooks/5", fake.base_url()),
        &body,
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json, json!({"message": "404: Not Found", "code": 0}));
    let r = reply(client.get(fake.webhook_url("5")).send().await.unwrap()).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json["message"], "404: Not Found");
    assert_eq!(fake.accepted().len(), 0);
}

#[tokio::test]
async fn slow_mode_outlasts_a_client_timeout() {
    let fake = roomy();
    let client = client();
    fake.set_mode("slow", Mode::Slow(Duration::from_millis(500)));
    let started = Instant::now();
    let err = client
        .post(fake.webhook_url("slow"))
        .json(&json!({"content": "hi"}))
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .expect_err("timed out");
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500));
    // The fake still handles and records it.
    assert!(
        fake.wait_for_async(
            |r| r.len() == 1 && r[0].status == 204,
            Duration::from_secs(3)
        )
        .await
    );
    // A patient client gets its answer.
    let started = Instant::now();
    let r = post(
        &client,
        &fake.webhook_url("slow"),
        &json!({"content": "hi"}),
    )
    .await;
    assert_eq!(r.status, 204);
    assert!(started.elapsed() >= Duration::from_millis(500));
}

#[tokio::test]
async fn reset_mode_closes_without_an_answer() {
    let fake = roomy();
    let client = client();
    fake.set_mode("rst", Mode::Reset { remaining: 1 });
    let err = client
        .post(fake.webhook_url("rst"))
        .json(&json!({"content": "hi"}))
        .send()
        .await
        .expect_err("no response");
    assert!(!err.is_timeout() && err.status().is_none(), "{err}");
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut reset = false;
    while let Some(e) = source {
        reset |= e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset);
        source = e.source();
    }
    assert!(reset, "not a connection reset: {err:?}");
    let r = post(
        &client,
        &fake.webhook_url("rst"),
        &json!({"content": "again"}),
    )
    .await;
    assert_eq!(r.status, 204);
    let records = fake.requests_to("rst");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].status, STATUS_RESET);
    assert_eq!(records[0].body["content"], "hi");
    assert_eq!(records[1].status, 204);
}

#[tokio::test]
async fn limits_count_characters_not_bytes() {
    let fake = roomy();
    let client = client();
    let url = fake.webhook_url("u");
    for c in ['é', '😀', '中'] {
        let content: String = std::iter::repeat_n(c, 2000).collect();
        assert!(content.len() > 2000);
        assert_eq!(
            post(&client, &url, &json!({"content": content}))
                .await
                .status,
            204,
            "{c}"
        );
        let over: String = std::iter::repeat_n(c, 2001).collect();
        assert_eq!(
            post(&client, &url, &json!({"content": over})).await.status,
            400,
            "{c}"
        );
    }
    let title: String = std::iter::repeat_n('ü', 256).collect();
    assert_eq!(
        post(&client, &url, &json!({"embeds": [{"title": title}]}))
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn shared_bucket_shares_remaining() {
    let fake = FakeDiscord::start(FakeConfig {
        shared_bucket: true,
        ..FakeConfig::default()
    });
    let client = client();
    let mut seen = Vec::new();
    for id in ["a", "b", "a", "b", "a"] {
        let r = post(&client, &fake.webhook_url(id), &json!({"content": "x"})).await;
        assert_eq!(r.status, 204);
        seen.push((
            r.header("x-ratelimit-remaining").unwrap().to_owned(),
            r.header("x-ratelimit-bucket").unwrap().to_owned(),
        ));
    }
    let remaining: Vec<&str> = seen.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(remaining, ["4", "3", "2", "1", "0"]);
    assert!(seen.iter().all(|(_, b)| *b == seen[0].1));
    assert_eq!(fake.bucket_hash("a"), fake.bucket_hash("b"));
    let r = post(&client, &fake.webhook_url("b"), &json!({"content": "x"})).await;
    assert_eq!(r.status, 429);
    assert_eq!(fake.violations(), 1);

    // By default each webhook has its own bucket.
    let separate = FakeDiscord::start(FakeConfig::default());
    let a = post(
        &client,
        &separate.webhook_url("a"),
        &json!({"content": "x"}),
    )
    .await;
    let b = post(
        &client,
        &separate.webhook_url("b"),
        &json!({"content": "x"}),
    )
    .await;
    assert_eq!(a.header("x-ratelimit-remaining"), Some("4"));
    assert_eq!(b.header("x-ratelimit-remaining"), Some("4"));
    assert_ne!(
        a.header("x-ratelimit-bucket"),
        b.header("x-ratelimit-bucket")
    );
}

#[tokio::test]
async fn recording_and_helpers() {
    let fake = roomy();
    let client = client();
    assert_eq!(fake.token("42"), "tok-42-SECRET");
    assert!(
        fake.webhook_url("42")
            .ends_with("/api/webhooks/42/tok-42-SECRET")
    );
    let body = json!({
        "content": "chat from Alice",
        "embeds": [{
            "author": {"name": "Bob"},
            "title": "Rocket launched",
            "description": "by Carol",
            "fields": [{"name": "Player", "value": "Dave", "inline": true}],
            "footer": {"text": "server eu-1"},
        }],
    });
    let thread = format!(
        "{}?wait=true&thread_id=123456789012345678",
        fake.webhook_url("42")
    );
    let r = post(&client, &thread, &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["channel_id"], "123456789012345678");
    assert_eq!(r.json["embeds"][0]["type"], "rich");
    assert_eq!(r.json["embeds"][0]["title"], "Rocket launched");
    let r = post(
        &client,
        &format!("{}?wait=maybe", fake.webhook_url("42")),
        &body,
    )
    .await;
    assert_eq!(
        r.json["errors"]["wait"]["_errors"][0]["code"],
        "BASE_TYPE_BOOLEAN"
    );

    let records = fake.requests_to("42");
    assert_eq!(records.len(), 2);
    let rec = &records[0];
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.webhook_id, "42");
    assert!(
        rec.path_and_query
            .starts_with("/api/webhooks/42/tok-42-SECRET?wait=true")
    );
    assert_eq!(rec.header("User-Agent"), Some(USER_AGENT));
    assert!(
        rec.headers
            .iter()
            .all(|(n, _)| *n == n.to_ascii_lowercase())
    );
    assert_eq!(rec.body, body);
    assert_eq!(serde_json::from_str::<Value>(&rec.raw_body).unwrap(), body);
    assert_eq!(rec.rejection, None);
    let text = all_text(rec);
    for name in [
        "Alice",
        "Bob",
        "Rocket launched",
        "Carol",
        "Player",
        "Dave",
        "eu-1",
    ] {
        assert!(text.contains(name), "{name} not in {text:?}");
    }
    assert_eq!(fake.accepted().len(), 1);
    assert!(fake.wait_for(|r| r.len() == 2, Duration::from_millis(10)));
    assert!(!fake.wait_for(|r| r.len() == 3, Duration::from_millis(50)));
    fake.clear();
    assert!(fake.requests().is_empty());
    assert_eq!(fake.violations(), 0);
}

#[test]
fn works_from_a_plain_test_without_a_runtime() {
    let fake = roomy();
    let url = fake.webhook_url("sync");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = runtime.block_on(async {
        post(&client(), &url, &json!({"content": "from sync"}))
            .await
            .status
    });
    assert_eq!(status, 204);
    assert!(fake.wait_for(|r| r.len() == 1, Duration::from_secs(1)));
    drop(fake);
}
