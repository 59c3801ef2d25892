//! Line shapes: what the prefix of a Factorio log line says about it.
//!
//! Factorio writes two kinds of prefixed lines, and its stdout adds lines with no prefix:
//!
//! - **engine** lines (`factorio-current.log`, stdout): seconds since the process started,
//!   right-aligned to width 8 (`   0.401 `, `304588.295 `; pastes sometimes strip the spaces),
//!   then optionally a level and a source (`Info ServerMultiplayerManager.cpp:699: `) or a Lua
//!   source (`Script @__mod__/file.lua:12: `), then the message. The first line of every run is
//!   the *run header*, `   0.000 2022-05-10 20:39:02; Factorio 1.1.57 (build 59622, …)`, the only
//!   engine line with a wall-clock date.
//! - **console** lines (`--console-log FILE`, stdout): `YYYY-MM-DD HH:MM:SS `, then optionally a
//!   tag (`[JOIN] `), then the message.
//! - **bare** lines: command replies, mod `print()` output, continuation lines of errors.
//!
//! Parsing here is by hand, not by regex: it runs on every line before matching and must cost
//! a few nanoseconds. Nothing here fails: a line that does not fit a shape is bare, and a date
//! that does not exist (FactoCord writes `0000-00-00 00:00:00`) gives no time stamp.

use chrono::NaiveDate;

/// The level of an engine line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineLevel {
    /// `Verbose File.cpp:N:`
    Verbose,
    /// `Info File.cpp:N:`
    Info,
    /// `Warning File.cpp:N:`
    Warning,
    /// `Error File.cpp:N:`
    Error,
    /// `Script @__mod__/file.lua:N:` (Lua `log()` output)
    Script,
    /// No level: `   0.000 Operating system: Linux`, `1641.421 Goodbye`
    None,
}

/// What the prefix of one line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// An engine line.
    Engine {
        /// Seconds since the process started, in milliseconds.
        uptime_ms: u64,
        /// Level, or `Script`, or none.
        level: EngineLevel,
        /// When this is a run header: its wall-clock date as written (no zone), counted in ms
        /// as if it were UTC; [`LocalClock`](super::zone::LocalClock) reads it in the server's
        /// zone.
        run_start_ms: Option<i64>,
        /// Byte index where the message starts (after level and source).
        message_start: usize,
    },
    /// A console line.
    Console {
        /// The line's date and time as written (no zone), counted in ms as if it were UTC
        /// (see `run_start_ms`); `None` when it is not a real date.
        time_ms: Option<i64>,
        /// Byte index where the message starts (after the tag, if any).
        message_start: usize,
    },
    /// No known prefix.
    Bare,
}

impl Shape {
    /// Whether the line starts with an engine or console prefix.
    pub fn is_prefixed(&self) -> bool {
        !matches!(self, Shape::Bare)
    }

    /// Byte index where the human-readable message starts.
    pub fn message_start(&self) -> usize {
        match *self {
            Shape::Engine { message_start, .. } | Shape::Console { message_start, .. } => {
                message_start
            }
            Shape::Bare => 0,
        }
    }
}

/// Classifies one line (without its newline).
pub fn classify(line: &[u8]) -> Shape {
    if let Some(shape) = engine(line) {
        return shape;
    }
    if let Some(shape) = console(line) {
        return shape;
    }
    Shape::Bare
}

fn digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

fn engine(line: &[u8]) -> Option<Shape> {
    // Width-8 right alignment gives at most 7 spaces; allow a few more for odd pastes.
    let spaces = line.iter().take(12).take_while(|&&c| c == b' ').count();
    let rest = &line[spaces..];
    let int_len = digits(rest);
    if int_len == 0 || int_len > 12 {
        return None;
    }
    if rest.get(int_len) != Some(&b'.') {
        return None;
    }
    let frac = rest.get(int_len + 1..int_len + 4)?;
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let after = int_len + 4;
    match rest.get(after) {
        Some(b' ') => {}
        None => {}
        _ => return None,
    }
    let secs = parse_u64(&rest[..int_len])?;
    let millis = parse_u64(frac)?;
    let uptime_ms = secs.checked_mul(1000)?.checked_add(millis)?;
    let body_start = spaces + after + usize::from(rest.get(after).is_some());
    let body = &line[body_start..];

    let run_start_ms = if uptime_ms == 0 {
        run_header_date(body)
    } else {
        None
    };
    let (level, skip) = engine_level(body);
    Some(Shape::Engine {
        uptime_ms,
        level,
        run_start_ms,
        message_start: body_start + skip,
    })
}

/// `Level Source.cpp:123: ` or `Script @__mod__/f.lua:12: ` → (level, bytes to skip).
fn engine_level(body: &[u8]) -> (EngineLevel, usize) {
    let (level, word_len) = if body.starts_with(b"Info ") {
        (EngineLevel::Info, 5)
    } else if body.starts_with(b"Error ") {
        (EngineLevel::Error, 6)
    } else if body.starts_with(b"Warning ") {
        (EngineLevel::Warning, 8)
    } else if body.starts_with(b"Verbose ") {
        (EngineLevel::Verbose, 8)
    } else if body.starts_with(b"Script ") {
        (EngineLevel::Script, 7)
    } else {
        return (EngineLevel::None, 0);
    };
    // The source runs up to the first ": " after a `:digits` suffix, with no spaces inside
    // for C++ sources; Lua sources may contain spaces in paths, so search for `:N: `.
    let src = &body[word_len..];
    let mut i = 0;
    while let Some(pos) = memchr::memchr(b':', &src[i..]) {
        let colon = i + pos;
        let n = digits(&src[colon + 1..]);
        if n > 0 && src.get(colon + 1 + n) == Some(&b':') {
            let end = colon + 1 + n + 1;
            let skip = end + usize::from(src.get(end) == Some(&b' '));
            return (level, word_len + skip);
        }
        if level != EngineLevel::Script && src[..colon].contains(&b' ') {
            break;
        }
        i = colon + 1;
    }
    // A level word without a source (`Info something`) is not a level; keep the message whole.
    (EngineLevel::None, 0)
}

/// `YYYY-MM-DD HH:MM:SS; Factorio ` → the wall-clock date, counted in ms as if it were UTC.
fn run_header_date(body: &[u8]) -> Option<i64> {
    if body.len() < 30 || &body[19..21] != b"; " || !body[21..].starts_with(b"Factorio ") {
        return None;
    }
    date_time_ms(&body[..19])
}

fn console(line: &[u8]) -> Option<Shape> {
    if line.len() < 19 {
        return None;
    }
    let d = &line[..19];
    let shape_ok = d[4] == b'-'
        && d[7] == b'-'
        && d[10] == b' '
        && d[13] == b':'
        && d[16] == b':'
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
            .iter()
            .all(|&i| d[i].is_ascii_digit());
    if !shape_ok {
        return None;
    }
    match line.get(19) {
        None | Some(b' ') => {}
        _ => return None,
    }
    let mut message_start = (line.len()).min(20);
    // Skip a `[TAG] ` right after the date.
    let rest = &line[message_start..];
    if rest.first() == Some(&b'[')
        && let Some(close) = memchr::memchr(b']', rest)
        && close > 1
        && rest[1..close]
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
    {
        message_start += close + 1;
        if line.get(message_start) == Some(&b' ') {
            message_start += 1;
        }
    }
    Some(Shape::Console {
        time_ms: date_time_ms(d),
        message_start,
    })
}

/// `YYYY-MM-DD HH:MM:SS` (already checked to be digits in the right places) → ms since the
/// epoch of the wall clock (the zone is applied by the caller).
fn date_time_ms(d: &[u8]) -> Option<i64> {
    let num = |a: usize, b: usize| parse_u64(&d[a..b]).and_then(|v| u32::try_from(v).ok());
    let date = NaiveDate::from_ymd_opt(i32::try_from(num(0, 4)?).ok()?, num(5, 7)?, num(8, 10)?)?;
    let t = date.and_hms_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?)?;
    Some(t.and_utc().timestamp_millis())
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    Some(v)
}

/// Whether a bare line opens an error record by itself: the head of a Lua error whose engine
/// line was cut off (`Error while running event …`) or the client's error dialog text
/// (`The mod X (1.2.3) caused a non-recoverable error.`).
pub fn is_bare_error_head(line: &[u8]) -> bool {
    line.starts_with(b"Error while running event ")
        || (line.starts_with(b"The mod ")
            && memchr::memmem::find(line, b" caused a non-recoverable error").is_some())
}

/// Whether a bare line is a mod's own tagged `print()` output (`[PLAYER-JOIN]d64`,
/// `[FactoriGOChatBot]: "…"`), which never continues an error record. `[C]: in function` is a
/// Lua traceback frame, not a tag.
pub fn is_mod_tag_line(line: &[u8]) -> bool {
    if line.first() != Some(&b'[') {
        return false;
    }
    let Some(close) = memchr::memchr(b']', line) else {
        return false;
    };
    let tag = &line[1..close];
    if tag == b"C" {
        return false;
    }
    !tag.is_empty()
        && tag[0].is_ascii_alphabetic()
        && tag
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
}

/// For an engine line containing `MultiplayerManager failed: "`: whether its quoted message is
/// still open at the end of the line (an odd number of `"` from the opening quote on). The
/// caller checks that the line is an engine line.
pub fn opens_quoted_failure(line: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"MultiplayerManager failed: \"";
    // Called for every engine line: most have no quote at all, and the searcher for the
    // others is built once, not per call.
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(NEEDLE));
    if memchr::memchr(b'"', line).is_none() {
        return false;
    }
    match FINDER.find(line) {
        Some(pos) => {
            let from = pos + NEEDLE.len() - 1;
            memchr::memchr_iter(b'"', &line[from..]).count() % 2 == 1
        }
        None => false,
    }
}

/// Number of `"` in a line: an odd count closes (or re-opens) a quoted message.
pub fn quote_count(line: &[u8]) -> usize {
    memchr::memchr_iter(b'"', line).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(line: &str) -> &str {
        &line[classify(line.as_bytes()).message_start()..]
    }

    #[test]
    fn engine_lines_with_levels_and_padding() {
        let l = "   0.401 Info MultiplayerManager.cpp:906: networkTick(0) mapTick(-1) changing state from(Ready) to(PreparedToHostGame)";
        match classify(l.as_bytes()) {
            Shape::Engine {
                uptime_ms, level, ..
            } => {
                assert_eq!(uptime_ms, 401);
                assert_eq!(level, EngineLevel::Info);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            msg(l),
            "networkTick(0) mapTick(-1) changing state from(Ready) to(PreparedToHostGame)"
        );
        assert_eq!(
            msg("304588.295 Error MainLoop.cpp:1035: Exception at tick 147111319: x"),
            "Exception at tick 147111319: x"
        );
        assert_eq!(msg("1641.421 Goodbye"), "Goodbye");
        assert_eq!(
            msg("6.161 Hosting game at IP ADDR:({0.0.0.0:34197})"),
            "Hosting game at IP ADDR:({0.0.0.0:34197})"
        );
        assert_eq!(
            msg(
                " 442.539 Script @__Factorio-Event-Logger__/logger.lua:65: [RESEARCH CANCELLED] worker-robots-speed"
            ),
            "[RESEARCH CANCELLED] worker-robots-speed"
        );
        assert_eq!(
            msg(
                "   9.633 Script @__level__/modules/surface_export/core/destination-hold.lua:184: [DestinationHold] staged"
            ),
            "[DestinationHold] staged"
        );
    }

    #[test]
    fn level_words_without_a_source_are_message_text() {
        assert_eq!(msg("   1.000 Info about things"), "Info about things");
        assert!(matches!(
            classify(b"   1.000 Error happened here: yes"),
            Shape::Engine {
                level: EngineLevel::None,
                ..
            }
        ));
    }

    #[test]
    fn run_headers_carry_their_date() {
        let l = b"   0.000 2022-05-10 20:39:02; Factorio 1.1.57 (build 59622, linux64, headless)";
        match classify(l) {
            Shape::Engine { run_start_ms, .. } => {
                assert_eq!(run_start_ms, Some(1_652_215_142_000));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(b"0.000 2017-04-24 21:39:48; Factorio 0.15.1 (build 29050, linux64, steam)"),
            Shape::Engine {
                run_start_ms: Some(_),
                ..
            }
        ));
        // Only uptime 0.000 is a header.
        assert!(matches!(
            classify(b"   1.000 2022-05-10 20:39:02; Factorio 1.1.57 (build 59622, linux64)"),
            Shape::Engine {
                run_start_ms: None,
                ..
            }
        ));
    }

    #[test]
    fn console_lines_and_their_tags() {
        let l = "2025-10-08 08:58:34 [JOIN] bsalis joined the game";
        match classify(l.as_bytes()) {
            Shape::Console { time_ms, .. } => assert_eq!(time_ms, Some(1_759_913_914_000)),
            other => panic!("{other:?}"),
        }
        assert_eq!(msg(l), "bsalis joined the game");
        assert_eq!(
            msg("2019-01-20 10:30:14 Cannot execute command. Error: x"),
            "Cannot execute command. Error: x"
        );
        assert_eq!(msg("2018-01-01 00:00:00 [DISCORD-EMBED] {}"), "{}");
        // FactoCord's fake zero date: console-shaped, no time.
        assert!(matches!(
            classify(b"0000-00-00 00:00:00 [DISCORD] **a** joined."),
            Shape::Console { time_ms: None, .. }
        ));
    }

    #[test]
    fn everything_else_is_bare() {
        for l in [
            "Players (0):",
            "[PLAYER-JOIN]d64",
            "\t[C]: in function '__index'",
            "__miniloader__/lualib/event.lua:14: attempt to call field '?' (a nil value)",
            "5/15/2016 11:12:24 PM 487.271 Connection request from 74.134.247.255:34197",
            "2.0.77",
            "1.2.3 is not",
            "",
            "12.34 x",
        ] {
            assert_eq!(classify(l.as_bytes()), Shape::Bare, "{l:?}");
        }
    }

    #[test]
    fn mod_tags_and_error_heads() {
        assert!(is_mod_tag_line(b"[PLAYER-JOIN]d64"));
        assert!(is_mod_tag_line(b"[FactoriGOChatBot]: \"1 [X]\""));
        assert!(!is_mod_tag_line(b"[C]: in function '__index'"));
        assert!(!is_mod_tag_line(b"[string \"blah\"]:1: x"));
        assert!(is_bare_error_head(
            b"Error while running event level::on_nth_tick(1)"
        ));
        assert!(is_bare_error_head(
            b"The mod Todo List (18.0.1) caused a non-recoverable error."
        ));
        assert!(opens_quoted_failure(
            b"304588.295 Error X.cpp:96: MultiplayerManager failed: \"Error while running"
        ));
        assert!(!opens_quoted_failure(
            b"0.421 Error X.cpp:110: MultiplayerManager failed: \"Opening zip failed\""
        ));
        assert!(!opens_quoted_failure(
            b"110.207 Info X.cpp:85: MultiplayerManager failed: ..."
        ));
    }
}
