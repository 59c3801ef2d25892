//! The event: what every stage after `match` passes along, and its JSON form.
//!
//! An [`Event`] is one log record (one line, or one multi-line error record) that the matcher has
//! classified. Its JSON form is a contract that Logstash pipelines, Elasticsearch index templates
//! and tests depend on:
//!
//! ```json
//! {"@timestamp":"2025-10-08T08:58:34Z","event_type":"player_join","server":"primary",
//!  "severity":"info","pattern":"console/player_join","fields":{"player":"bsalis"},
//!  "message":"bsalis joined the game","raw":"2025-10-08 08:58:34 [JOIN] bsalis joined the game",
//!  "log":{"path":"/srv/factorio/console.log","offset":1234},
//!  "trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7",
//!  "service":{"name":"factorio-isr","version":"0.1.0","environment":"production"}}
//! ```
//!
//! Keys always come in that order. `pattern` is absent for unmatched records (`event_type` is
//! then [`LOG_EVENT_TYPE`]); `trace_id` and `span_id` are absent when the record was not traced.
//! `@timestamp` is UTC with millisecond precision, written without a fraction when it has none.
//!
//! Serialising cannot fail for any event: strings are escaped as `serde_json` escapes them, so a
//! record with newlines, control characters or U+FFFD replacement characters is always exactly
//! one JSON line. [`EventEncoder`] writes it by hand into a byte buffer (its string escaping and
//! time stamps are written without `serde_json` or `fmt`, and checked against both in the tests),
//! which is several times faster than a generic serializer and cannot fail.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, Timelike};
use serde::Serialize;
use serde::ser::Serializer;

/// The `event_type` of a record that no pattern matched.
pub const LOG_EVENT_TYPE: &str = "log";

/// The event types the shipped patterns produce and other tools (dashboards, alert rules,
/// Logstash pipelines) rely on. Custom pattern sets may add others; `check` says which of these
/// a set does not produce.
pub const BUILT_IN_EVENT_TYPES: &[&str] = &[
    "player_join",
    "player_leave",
    "chat",
    "shout",
    "whisper",
    "command",
    "player_kicked",
    "player_banned",
    "player_unbanned",
    "player_promoted",
    "player_demoted",
    "server_started",
    "server_ready",
    "server_stopping",
    "server_stopped",
    "server_crashed",
    "save_started",
    "save_finished",
    "connection_refused",
    "desync",
    "mod_error",
    "script_error",
    "rcon_ready",
    "research_started",
    "research_finished",
    "rocket_launched",
    "player_died",
    "achievement",
    "engine_error",
    "engine_warning",
];

/// A point in time: milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> i64 {
        self.0
    }

    /// Writes the RFC 3339 form (`2025-10-08T08:58:34Z`, or `…:34.295Z` when there are
    /// milliseconds) into `out` without allocating.
    pub fn write_rfc3339(self, out: &mut impl fmt::Write) -> fmt::Result {
        let mut buf = [0u8; RFC3339_MAX_BYTES];
        if let Some(len) = self.rfc3339_bytes(&mut buf) {
            // The digits, dashes and letters written are ASCII.
            return out.write_str(std::str::from_utf8(&buf[..len]).unwrap_or_default());
        }
        let secs = self.0.div_euclid(1000);
        let millis = self.0.rem_euclid(1000);
        let Some(t) = DateTime::from_timestamp(secs, 0) else {
            return out.write_str("1970-01-01T00:00:00Z");
        };
        write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )?;
        if millis != 0 {
            write!(out, ".{millis:03}")?;
        }
        out.write_char('Z')
    }

    /// The RFC 3339 form of a time in the years 0000–9999 written into `buf`, returning its
    /// length; `None` for other years (written by [`Timestamp::write_rfc3339`]'s general path).
    /// Every JSON event writes one, so the digits are placed by hand rather than through the
    /// formatting machinery, which cost more than the rest of the encoder's work on a line.
    fn rfc3339_bytes(self, buf: &mut [u8; RFC3339_MAX_BYTES]) -> Option<usize> {
        let millis = self.0.rem_euclid(1000) as u32;
        let t = DateTime::from_timestamp(self.0.div_euclid(1000), 0)?;
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let (month, day) = (t.month(), t.day());
        let of_day = t.num_seconds_from_midnight();
        let two = |buf: &mut [u8; RFC3339_MAX_BYTES], at: usize, v: u32| {
            buf[at] = b'0' + (v / 10) as u8;
            buf[at + 1] = b'0' + (v % 10) as u8;
        };
        two(buf, 0, year / 100);
        two(buf, 2, year % 100);
        buf[4] = b'-';
        two(buf, 5, month);
        buf[7] = b'-';
        two(buf, 8, day);
        buf[10] = b'T';
        two(buf, 11, of_day / 3600);
        buf[13] = b':';
        two(buf, 14, of_day / 60 % 60);
        buf[16] = b':';
        two(buf, 17, of_day % 60);
        let mut len = 19;
        if millis != 0 {
            buf[19] = b'.';
            buf[20] = b'0' + (millis / 100) as u8;
            two(buf, 21, millis % 100);
            len = 23;
        }
        buf[len] = b'Z';
        Some(len + 1)
    }
}

/// The longest RFC 3339 form [`Timestamp::rfc3339_bytes`] writes: `2025-10-08T08:58:34.295Z`.
const RFC3339_MAX_BYTES: usize = 24;

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_rfc3339(f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = String::with_capacity(24);
        // Writing into a String cannot fail.
        let _ = self.write_rfc3339(&mut s);
        serializer.serialize_str(&s)
    }
}

/// How much an event matters. Patterns declare it; unmatched records are `info`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Detail that is rarely interesting.
    Debug,
    /// Normal operation: joins, chat, saves.
    Info,
    /// Something an admin may want to look at.
    Warning,
    /// Something failed: a script error, a refused mod.
    Error,
    /// The server went down or is unusable: crashes.
    Critical,
}

impl Severity {
    /// The lowercase name used in JSON and pattern files.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed capture value.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    /// Text, the default type of a capture.
    Str(String),
    /// A signed integer (`type = "int"`).
    Int(i64),
    /// An integer too large for `i64` (Factorio writes tick 18446744073709551615 before a game exists).
    UInt(u64),
    /// A floating-point number (`type = "float"`).
    Float(f64),
    /// A boolean (`type = "bool"`).
    Bool(bool),
}

impl FieldValue {
    /// The value as text, the way a template shows it.
    pub fn to_text(&self) -> String {
        match self {
            FieldValue::Str(s) => s.clone(),
            FieldValue::Int(v) => v.to_string(),
            FieldValue::UInt(v) => v.to_string(),
            FieldValue::Float(v) => v.to_string(),
            FieldValue::Bool(v) => v.to_string(),
        }
    }

    /// The value as a string slice, when it is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl Serialize for FieldValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldValue::Str(s) => serializer.serialize_str(s),
            FieldValue::Int(v) => serializer.serialize_i64(*v),
            FieldValue::UInt(v) => serializer.serialize_u64(*v),
            FieldValue::Float(v) if v.is_finite() => serializer.serialize_f64(*v),
            // JSON has no NaN or infinity; keep the information as text.
            FieldValue::Float(v) => serializer.serialize_str(&v.to_string()),
            FieldValue::Bool(v) => serializer.serialize_bool(*v),
        }
    }
}

/// Where events of one file come from: the server tag and the file path. Shared by every event
/// of that file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSource {
    /// The server tag every event of this file carries (`server` in the JSON).
    pub server: Arc<str>,
    /// The path of the log file as factorio-isr opened it (`log.path` in the JSON).
    pub path: Arc<str>,
}

/// W3C trace context ids of the span that handled the event, as lowercase hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceIds {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
}

/// Who produced the events: the `service` object of every event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceInfo {
    /// `SERVICE_NAME`, default `factorio-isr`.
    pub name: String,
    /// `SERVICE_VERSION`, default the crate version.
    pub version: String,
    /// `SERVICE_ENVIRONMENT`, default `production`.
    pub environment: String,
}

impl Default for ServiceInfo {
    fn default() -> Self {
        ServiceInfo {
            name: "factorio-isr".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            environment: "production".to_owned(),
        }
    }
}

/// A framed record: one line, or one multi-line error record, as read from a log file and
/// before any pattern looked at it. The match stage turns it into an [`Event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Byte offset of the first line in the file.
    pub offset: u64,
    /// Byte offset just past the last line's newline.
    pub end_offset: u64,
    /// The lines, decoded lossily, joined with `\n`.
    pub text: String,
    /// Where the message starts in `text` (after time stamp, level, source and tag).
    pub message_start: usize,
    /// Physical lines in the record.
    pub lines: u32,
    /// The record's time from its first line, in ms since the epoch, when the line carries one.
    pub time_ms: Option<i64>,
}

/// One piece of a Discord template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplatePart {
    /// Text copied as is.
    Literal(String),
    /// A `{field}` placeholder.
    Field(String),
}

/// A pattern's validated Discord section (`[pattern.discord]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscordTemplate {
    /// The template, split into text and placeholders.
    pub parts: Vec<TemplatePart>,
    /// The template as written.
    pub source: String,
    /// An emoji shown before the text.
    pub emoji: Option<String>,
    /// Embed colour, `0xRRGGBB`.
    pub color: Option<u32>,
    /// Name of the webhook to post to; `None` means the server's default webhook.
    pub webhook: Option<String>,
    /// Whether the pattern posts to Discord at all.
    pub enabled: bool,
    /// Discord role ids pinged when this pattern's event is posted (`mention_roles`); empty:
    /// nobody is pinged.
    pub mention_roles: Vec<String>,
}

/// Whether `id` is a Discord snowflake, as role ids are: 17 to 20 ASCII digits.
pub fn is_discord_snowflake(id: &str) -> bool {
    (17..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

/// What an event's pattern tells the stages after `match`: its name and where it may go. One
/// per pattern, shared by every event the pattern makes, so routing an event is a field access,
/// never a look-up by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternInfo {
    /// `file/name`: the event's `pattern` in JSON.
    pub name: Arc<str>,
    /// The Discord template, when the pattern has one.
    pub discord: Option<DiscordTemplate>,
}

impl PatternInfo {
    /// A pattern with no Discord template (tests, events made outside the match stage).
    pub fn named(name: &str) -> Arc<PatternInfo> {
        Arc::new(PatternInfo {
            name: name.into(),
            discord: None,
        })
    }
}

/// One classified log record.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// From the line when it carries a time, else when it was read.
    pub timestamp: Timestamp,
    /// The pattern's event type, or [`LOG_EVENT_TYPE`].
    pub event_type: Arc<str>,
    /// The pattern's severity; `info` for unmatched records.
    pub severity: Severity,
    /// The pattern that matched (its `file/name` and Discord template), `None` for unmatched
    /// records.
    pub pattern: Option<Arc<PatternInfo>>,
    /// Typed named captures of the winning pattern, in the pattern's capture order.
    pub fields: Vec<(Arc<str>, FieldValue)>,
    /// The whole record as read (lines joined with `\n`, decoded lossily).
    pub raw: String,
    /// Where the human-readable message starts in `raw` (after the time stamp, level, source
    /// and console tag); the message runs to the end of `raw`.
    pub message_start: usize,
    /// Server tag and file path.
    pub source: Arc<LogSource>,
    /// Byte offset of the record's first line in the file.
    pub offset: u64,
    /// Trace context, when the record was traced (shared by the events of a batch).
    pub trace: Option<Arc<TraceIds>>,
}

impl Event {
    /// The record without its time stamp, level, source file and console tag.
    pub fn message(&self) -> &str {
        self.raw.get(self.message_start..).unwrap_or(&self.raw)
    }

    /// The `file/name` of the pattern that matched, `None` for unmatched records.
    pub fn pattern_name(&self) -> Option<&str> {
        self.pattern.as_ref().map(|p| &*p.name)
    }

    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&FieldValue> {
        self.fields
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v)
    }
}

/// Writes events in their JSON form. Built once per sink: the `service` object, the same for
/// every event, is encoded once here rather than per event.
#[derive(Clone, Debug)]
pub struct EventEncoder {
    /// `,"service":{…}}`: the end of every event.
    suffix: Vec<u8>,
}

impl EventEncoder {
    /// An encoder stamping events with `service`.
    pub fn new(service: &ServiceInfo) -> Self {
        let mut suffix = b",\"service\":".to_vec();
        // Serialising three strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut suffix, service);
        suffix.push(b'}');
        EventEncoder { suffix }
    }

    /// Appends the event's JSON form and a newline to `out`.
    pub fn write_line(&self, e: &Event, out: &mut Vec<u8>) {
        self.write(e, out);
        out.push(b'\n');
    }

    /// Appends the event's JSON form (no newline) to `out`.
    pub fn write(&self, e: &Event, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"@timestamp\":\"");
        let mut ts = [0u8; RFC3339_MAX_BYTES];
        match e.timestamp.rfc3339_bytes(&mut ts) {
            Some(len) => out.extend_from_slice(&ts[..len]),
            None => {
                let mut ts = TimestampBuf::default();
                let _ = e.timestamp.write_rfc3339(&mut ts);
                out.extend_from_slice(&ts.buf[..ts.len]);
            }
        }
        out.extend_from_slice(b"\",\"event_type\":");
        json_str(out, &e.event_type);
        out.extend_from_slice(b",\"server\":");
        json_str(out, &e.source.server);
        out.extend_from_slice(b",\"severity\":\"");
        out.extend_from_slice(e.severity.as_str().as_bytes());
        out.push(b'"');
        if let Some(p) = &e.pattern {
            out.extend_from_slice(b",\"pattern\":");
            json_str(out, &p.name);
        }
        out.extend_from_slice(b",\"fields\":{");
        for (i, (k, v)) in e.fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(out, k);
            out.push(b':');
            // A field value serialises into a Vec without error.
            let _ = serde_json::to_writer(&mut *out, v);
        }
        out.extend_from_slice(b"},\"message\":");
        match e.raw.get(e.message_start..) {
            // The message is the end of `raw`: escaped once, its escaped form copied.
            Some(message) => {
                let start = out.len();
                json_str(out, message);
                let end = out.len();
                out.extend_from_slice(b",\"raw\":");
                let head = &e.raw[..e.message_start];
                json_str(out, head);
                out.pop(); // the head's closing quote: the message's escaped text follows
                out.extend_from_within(start + 1..end);
            }
            None => {
                json_str(out, e.message());
                out.extend_from_slice(b",\"raw\":");
                json_str(out, &e.raw);
            }
        }
        out.extend_from_slice(b",\"log\":{\"path\":");
        json_str(out, &e.source.path);
        out.extend_from_slice(b",\"offset\":");
        out.extend_from_slice(itoa_u64(e.offset, &mut [0u8; 20]));
        out.push(b'}');
        if let Some(t) = &e.trace {
            out.extend_from_slice(b",\"trace_id\":");
            json_str(out, &t.trace_id);
            out.extend_from_slice(b",\"span_id\":");
            json_str(out, &t.span_id);
        }
        out.extend_from_slice(&self.suffix);
    }
}

/// Appends `s` as a JSON string, escaped exactly as `serde_json` escapes it: quote and
/// backslash with a backslash, backspace, form feed, newline, carriage return and tab by their short
/// escapes, other control characters below U+0020 as `\u00XX` (lower-case hex), everything
/// else as it is. Runs of bytes that need no escape, the usual case, are found eight bytes at
/// a time and copied whole.
fn json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            if !needs_escape_word(word) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if b < 0x20 || b == b'"' || b == b'\\' {
            out.extend_from_slice(&bytes[copied..i]);
            push_escape(out, b);
            copied = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// Whether any of the eight bytes of `word` is below 0x20, a quote or a backslash (the classic
/// "has zero byte" bit trick on the word and on its XOR with each special byte).
fn needs_escape_word(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below_0x20 = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let has_quote = quote.wrapping_sub(ONES) & !quote;
    let has_backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_0x20 | has_quote | has_backslash) & HIGHS != 0
}

/// Appends the JSON escape of the byte `b` (below 0x20, a quote or a backslash).
fn push_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => out.extend_from_slice(&[
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[usize::from(b >> 4)],
            HEX[usize::from(b & 0xf)],
        ]),
    }
}

/// Formats `v` in decimal into `buf`, returning the digits.
fn itoa_u64(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

/// A stack buffer for one RFC 3339 time stamp.
#[derive(Default)]
struct TimestampBuf {
    buf: [u8; 32],
    len: usize,
}

impl fmt::Write for TimestampBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        Event {
            timestamp: Timestamp(1_759_913_914_000),
            event_type: "player_join".into(),
            severity: Severity::Info,
            pattern: Some(PatternInfo::named("console/player_join")),
            fields: vec![("player".into(), FieldValue::Str("bsalis".into()))],
            raw: "2025-10-08 08:58:34 [JOIN] bsalis joined the game".into(),
            message_start: 27,
            source: Arc::new(LogSource {
                server: "primary".into(),
                path: "/srv/factorio/console.log".into(),
            }),
            offset: 1234,
            trace: Some(Arc::new(TraceIds {
                trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                span_id: "00f067aa0ba902b7".into(),
            })),
        }
    }

    #[test]
    fn json_matches_the_design_contract_byte_for_byte() {
        let service = ServiceInfo {
            name: "factorio-isr".into(),
            version: "0.1.0".into(),
            environment: "production".into(),
        };
        let mut out = Vec::new();
        EventEncoder::new(&service).write_line(&sample(), &mut out);
        let expected = concat!(
            r#"{"@timestamp":"2025-10-08T08:58:34Z","event_type":"player_join","server":"primary","#,
            r#""severity":"info","pattern":"console/player_join","fields":{"player":"bsalis"},"#,
            r#""message":"bsalis joined the game","raw":"2025-10-08 08:58:34 [JOIN] bsalis joined the game","#,
            r#""log":{"path":"/srv/factorio/console.log","offset":1234},"#,
            r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","#,
            r#""service":{"name":"factorio-isr","version":"0.1.0","environment":"production"}}"#,
            "\n"
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    #[test]
    fn unmatched_events_have_no_pattern_key_and_untraced_no_ids() {
        let mut e = sample();
        e.pattern = None;
        e.trace = None;
        e.event_type = LOG_EVENT_TYPE.into();
        let mut out = Vec::new();
        EventEncoder::new(&ServiceInfo::default()).write_line(&e, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(v.get("pattern").is_none());
        assert!(v.get("trace_id").is_none());
        assert_eq!(v["event_type"], "log");
    }

    #[test]
    fn multi_line_and_control_characters_stay_on_one_json_line() {
        let mut e = sample();
        e.raw = "a\nb\t\"c\"\u{0}\u{1b}[2J\r".into();
        e.message_start = 0;
        let mut out = Vec::new();
        EventEncoder::new(&ServiceInfo::default()).write_line(&e, &mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["raw"], e.raw);
    }

    #[test]
    fn timestamps_have_millis_only_when_non_zero() {
        assert_eq!(
            Timestamp(1_759_913_914_000).to_string(),
            "2025-10-08T08:58:34Z"
        );
        assert_eq!(
            Timestamp(1_759_913_914_295).to_string(),
            "2025-10-08T08:58:34.295Z"
        );
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn typed_fields_serialise_as_json_types() {
        let mut e = sample();
        e.fields = vec![
            ("n".into(), FieldValue::Int(-3)),
            ("u".into(), FieldValue::UInt(u64::MAX)),
            ("f".into(), FieldValue::Float(0.5)),
            ("nan".into(), FieldValue::Float(f64::NAN)),
            ("b".into(), FieldValue::Bool(true)),
        ];
        let mut out = Vec::new();
        EventEncoder::new(&ServiceInfo::default()).write_line(&e, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["fields"]["n"], -3);
        assert_eq!(v["fields"]["u"], u64::MAX);
        assert_eq!(v["fields"]["f"], 0.5);
        assert_eq!(v["fields"]["nan"], "NaN");
        assert_eq!(v["fields"]["b"], true);
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = (0u8..0x80).map(|b| char::from(b).to_string()).collect();
        cases.extend(
            [
                "",
                "plain text of more than eight bytes",
                "tab\there and \"quotes\" and back\\slash",
                "\u{7f}\u{80}é ünï 🚀\u{fffd} [color=red]x[/color]",
                "\u{1b}[2J\u{7}bell",
                "0123456\"",
                "01234567\"",
                "012345678\\",
                "\n\n\n\n\n\n\n\n\n",
            ]
            .map(String::from),
        );
        // Every position of every special byte around the eight-byte boundary.
        for special in ['"', '\\', '\n', '\u{1f}', '\u{0}'] {
            for at in 0..20 {
                let mut s = "a".repeat(20);
                s.insert(at, special);
                cases.push(s);
            }
        }
        for s in cases {
            let mut out = Vec::new();
            json_str(&mut out, &s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(&s).unwrap(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn time_stamps_are_written_as_the_general_path_writes_them() {
        let general = |t: Timestamp| {
            let secs = t.0.div_euclid(1000);
            let millis = t.0.rem_euclid(1000);
            let d = DateTime::from_timestamp(secs, 0).unwrap();
            let mut s = d.format("%Y-%m-%dT%H:%M:%S").to_string();
            if millis != 0 {
                s.push_str(&format!(".{millis:03}"));
            }
            s + "Z"
        };
        let mut t = -62_167_219_200_000_i64; // 0000-01-01T00:00:00Z
        let end = 253_402_300_799_999_i64; // 9999-12-31T23:59:59.999Z
        let step = 86_399_997; // a day less 3 ms: every time of day drifts through
        while t <= end {
            let mut buf = [0u8; RFC3339_MAX_BYTES];
            let len = Timestamp(t).rfc3339_bytes(&mut buf).unwrap();
            assert_eq!(
                std::str::from_utf8(&buf[..len]).unwrap(),
                general(Timestamp(t))
            );
            t += step;
        }
        let mut buf = [0u8; RFC3339_MAX_BYTES];
        assert_eq!(Timestamp(end + 1).rfc3339_bytes(&mut buf), None);
        assert_eq!(Timestamp(-62_167_219_200_001).rfc3339_bytes(&mut buf), None);
        assert_eq!(Timestamp(end + 1).to_string(), "10000-01-01T00:00:00Z");
        assert_eq!(
            Timestamp(1_759_913_914_295).to_string(),
            "2025-10-08T08:58:34.295Z"
        );
    }

    #[test]
    fn message_and_raw_are_each_escaped_whole() {
        let mut e = sample();
        e.raw = "2025-10-08 08:58:34 [CHAT] \"q\": a\tb \\ \u{1b}".into();
        e.message_start = 27;
        let mut out = Vec::new();
        EventEncoder::new(&ServiceInfo::default()).write(&e, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["raw"], e.raw);
        assert_eq!(v["message"], e.message());
        e.message_start = 1000; // past the end: the message is the whole record
        let mut out = Vec::new();
        EventEncoder::new(&ServiceInfo::default()).write(&e, &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["message"], e.raw);
    }
}
