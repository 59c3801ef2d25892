//! Discord's rate limits, as its documentation describes them, kept for every webhook.
//!
//! - Every response names the webhook's bucket (`X-RateLimit-Bucket`) and what is left of it
//!   (`X-RateLimit-Remaining`, `X-RateLimit-Reset-After` in seconds). When nothing is left, no
//!   request goes to any webhook of that bucket until the reset: several webhooks may share a
//!   bucket, so the wait is kept per bucket, not per URL.
//! - A 429 says how long to wait: `retry_after` in its JSON body (seconds, with decimals),
//!   else the `Retry-After` header. With `"global": true` (or `X-RateLimit-Global`) the wait
//!   applies to every webhook; otherwise to the webhook's bucket.
//!
//! [`RateLimits::wait`] tells a worker how long to wait before its next request, so no request
//! is ever sent inside an announced window. It cannot fail: headers that are missing or do not
//! parse are ignored (the next 429 will say).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;

/// The longest wait any header may impose: a broken value must not park a webhook for days.
const MAX_WAIT: Duration = Duration::from_secs(3600);

#[derive(Default)]
struct State {
    /// Until when no request may go anywhere.
    global_until: Option<Instant>,
    /// The bucket each webhook was last told it belongs to.
    bucket_of: HashMap<String, String>,
    /// Until when no request may go to a bucket (keyed by bucket, or by webhook name while
    /// its bucket is unknown).
    until: HashMap<String, Instant>,
}

impl State {
    fn key<'a>(&'a self, webhook: &'a str) -> &'a str {
        self.bucket_of.get(webhook).map_or(webhook, String::as_str)
    }
}

/// The rate-limit windows of every webhook, shared by their workers.
#[derive(Default)]
pub struct RateLimits {
    state: Mutex<State>,
}

/// What a 429 says.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limited {
    /// How long to wait.
    pub retry_after: Duration,
    /// Whether the limit is Discord's global one (all webhooks wait).
    pub global: bool,
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn seconds(text: &str) -> Option<Duration> {
    let s: f64 = text.trim().parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s).min(MAX_WAIT))
}

/// Reads a 429: `retry_after` from the body, else `Retry-After`, else one second.
pub fn parse_429(headers: &HeaderMap, body: &[u8]) -> Limited {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let from_body = json
        .as_ref()
        .and_then(|v| v.get("retry_after"))
        .and_then(serde_json::Value::as_f64)
        .and_then(|s| seconds(&s.to_string()));
    let retry_after = from_body
        .or_else(|| header(headers, "retry-after").and_then(seconds))
        .unwrap_or(Duration::from_secs(1));
    let global = json
        .as_ref()
        .and_then(|v| v.get("global"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
        || header(headers, "x-ratelimit-global").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    Limited {
        retry_after,
        global,
    }
}

impl RateLimits {
    /// How long `webhook` must wait before its next request; `None`: it may send now.
    pub fn wait(&self, webhook: &str, now: Instant) -> Option<Duration> {
        let state = self.lock();
        let bucket = state.until.get(state.key(webhook)).copied();
        let until = [state.global_until, bucket].into_iter().flatten().max()?;
        (until > now).then(|| until - now)
    }

    /// Takes in the rate-limit headers of a response that was not a 429. Returns true when
    /// the bucket is now exhausted (the next request must wait).
    pub fn update(&self, webhook: &str, headers: &HeaderMap, now: Instant) -> bool {
        let mut state = self.lock();
        if let Some(bucket) = header(headers, "x-ratelimit-bucket") {
            state
                .bucket_of
                .insert(webhook.to_owned(), bucket.to_owned());
        }
        let remaining =
            header(headers, "x-ratelimit-remaining").and_then(|r| r.parse::<u64>().ok());
        let reset_after = header(headers, "x-ratelimit-reset-after").and_then(seconds);
        match (remaining, reset_after) {
            (Some(0), Some(wait)) => {
                let key = state.key(webhook).to_owned();
                let until = now + wait;
                let entry = state.until.entry(key).or_insert(until);
                *entry = (*entry).max(until);
                true
            }
            _ => false,
        }
    }

    /// Takes in a 429 for `webhook`.
    pub fn limited(&self, webhook: &str, limited: Limited, headers: &HeaderMap, now: Instant) {
        let mut state = self.lock();
        if let Some(bucket) = header(headers, "x-ratelimit-bucket") {
            state
                .bucket_of
                .insert(webhook.to_owned(), bucket.to_owned());
        }
        let until = now + limited.retry_after;
        if limited.global {
            state.global_until = Some(state.global_until.map_or(until, |u| u.max(until)));
        } else {
            let key = state.key(webhook).to_owned();
            let entry = state.until.entry(key).or_insert(until);
            *entry = (*entry).max(until);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update is a few map writes: a poisoned state is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn an_exhausted_bucket_waits_for_its_reset_and_others_do_not() {
        let limits = RateLimits::default();
        let now = Instant::now();
        assert_eq!(limits.wait("a", now), None);
        let h = headers(&[
            ("x-ratelimit-bucket", "b1"),
            ("x-ratelimit-remaining", "1"),
            ("x-ratelimit-reset-after", "1.500"),
        ]);
        assert!(!limits.update("a", &h, now));
        assert_eq!(limits.wait("a", now), None);
        let h = headers(&[
            ("x-ratelimit-bucket", "b1"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset-after", "1.500"),
        ]);
        assert!(limits.update("a", &h, now));
        assert_eq!(limits.wait("a", now), Some(Duration::from_millis(1500)));
        assert_eq!(limits.wait("other", now), None);
        assert_eq!(limits.wait("a", now + Duration::from_millis(1500)), None);
    }

    #[test]
    fn webhooks_sharing_a_bucket_share_its_wait() {
        let limits = RateLimits::default();
        let now = Instant::now();
        let b = headers(&[
            ("x-ratelimit-bucket", "shared"),
            ("x-ratelimit-remaining", "3"),
        ]);
        limits.update("a", &b, now);
        limits.update("b", &b, now);
        let h = headers(&[
            ("x-ratelimit-bucket", "shared"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset-after", "2"),
        ]);
        limits.update("a", &h, now);
        assert_eq!(limits.wait("b", now), Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_429_body_wins_over_the_header_and_global_stops_everyone() {
        let h = headers(&[("retry-after", "3")]);
        let l = parse_429(
            &h,
            br#"{"message": "You are being rate limited.", "retry_after": 0.25, "global": false}"#,
        );
        assert_eq!(
            l,
            Limited {
                retry_after: Duration::from_millis(250),
                global: false
            }
        );
        let l = parse_429(&h, b"<html>cloudflare</html>");
        assert_eq!(l.retry_after, Duration::from_secs(3));
        let g = headers(&[("x-ratelimit-global", "true"), ("retry-after", "1")]);
        let l = parse_429(&g, b"{}");
        assert!(l.global);

        let limits = RateLimits::default();
        let now = Instant::now();
        limits.limited("a", l, &g, now);
        assert_eq!(limits.wait("zzz", now), Some(Duration::from_secs(1)));
    }

    #[test]
    fn absurd_values_are_capped_or_ignored() {
        let l = parse_429(&HeaderMap::new(), br#"{"retry_after": 1e12}"#);
        assert_eq!(l.retry_after, MAX_WAIT);
        let l = parse_429(&HeaderMap::new(), br#"{"retry_after": -5}"#);
        assert_eq!(l.retry_after, Duration::from_secs(1));
        let limits = RateLimits::default();
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset-after", "soon"),
        ]);
        assert!(!limits.update("a", &h, Instant::now()));
    }
}
