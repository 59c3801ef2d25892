//! Server wrappers: prefixes that tools running Factorio put before every line it writes.
//!
//! When factorio-isr reads the output of such a tool instead of Factorio's own files, each line
//! starts with the tool's prefix and the shipped patterns (anchored on Factorio's own line
//! starts) would not match. [`unwrap`] recognises these prefixes, so the match stage can match
//! the line Factorio wrote; the event's `raw` keeps the whole line:
//!
//! | Wrapper | Prefix | Time taken from it |
//! |---------|--------|--------------------|
//! | `docker logs -t`, `docker compose logs -t` | `2024-06-18T09:32:54.123456789Z ` | yes (RFC 3339, with its zone) |
//! | `docker compose logs` | `factorio-1  \| ` (service name, replica number, `\|`), then maybe a `-t` time stamp | from the time stamp |
//! | Factorio Server Manager | `2024-06-18 11:32:54.895919+02:002024/06/18 09:32:54 Factorio Server: ` | yes (the first stamp, with its zone) |
//! | old Docker images | `5/15/2016 11:12:24 PM ` | no (it has no zone) |
//!
//! A record whose own lines carry no time (an engine line's uptime needs the run header, which
//! a wrapped header does not give) gets the wrapper's time, when it has one.
//!
//! Parsing is by hand and strict (digits where digits go), so a chat message or a mod's print
//! line is not taken for a wrapper. Nothing here fails: a line that does not start with a known
//! prefix is not wrapped.

use chrono::{DateTime, NaiveDate};

/// A line with its wrapper's prefix taken off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unwrapped<'a> {
    /// What Factorio wrote: the text after the prefix.
    pub rest: &'a str,
    /// The time in the prefix, in ms since the epoch, when it has one with a zone.
    pub time_ms: Option<i64>,
}

/// The text after a known wrapper's prefix, or `None` when `text` starts with none.
pub fn unwrap(text: &str) -> Option<Unwrapped<'_>> {
    // Called for every record: the stamped prefixes all start with a digit, so most Factorio
    // lines (engine lines start with spaces) are turned away by one byte.
    let stamped = text.as_bytes().first().is_some_and(u8::is_ascii_digit);
    if stamped {
        if let Some(u) = rfc3339_stamp(text) {
            return Some(u);
        }
        if let Some(u) = fsm(text) {
            return Some(u);
        }
    }
    if let Some(rest) = compose_service(text) {
        return Some(rfc3339_stamp(rest).unwrap_or(Unwrapped {
            rest,
            time_ms: None,
        }));
    }
    if !stamped {
        return None;
    }
    us_date(text).map(|rest| Unwrapped {
        rest,
        time_ms: None,
    })
}

/// Whether `s` is `pattern`, where `9` stands for any ASCII digit and other bytes for
/// themselves.
fn shaped(s: &[u8], pattern: &[u8]) -> bool {
    s.len() == pattern.len()
        && s.iter().zip(pattern).all(|(&c, &p)| match p {
            b'9' => c.is_ascii_digit(),
            _ => c == p,
        })
}

/// `2024-06-18T09:32:54[.fraction](Z|±hh:mm) ` (Docker's `--timestamps`).
fn rfc3339_stamp(text: &str) -> Option<Unwrapped<'_>> {
    let b = text.as_bytes();
    if b.len() < 21 || !shaped(&b[..19], b"9999-99-99T99:99:99") {
        return None;
    }
    let end = text[19..].find(' ')? + 19;
    let time = DateTime::parse_from_rfc3339(&text[..end]).ok()?;
    Some(Unwrapped {
        rest: &text[end + 1..],
        time_ms: Some(time.timestamp_millis()),
    })
}

/// `2024-06-18 11:32:54.895919+02:002024/06/18 09:32:54 Factorio Server: ` (Factorio Server
/// Manager).
fn fsm(text: &str) -> Option<Unwrapped<'_>> {
    const TAG: &str = " Factorio Server: ";
    let b = text.as_bytes();
    if b.len() < 20 || !shaped(&b[..20], b"9999-99-99 99:99:99.") {
        return None;
    }
    let digits = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
    let zone_at = 20 + digits;
    let stamp_end = zone_at + 6;
    let second_end = stamp_end + 19;
    if digits == 0
        || b.len() < second_end + TAG.len()
        || !shaped(&b[zone_at + 1..stamp_end], b"99:99")
        || !matches!(b[zone_at], b'+' | b'-')
        || !shaped(&b[stamp_end..second_end], b"9999/99/99 99:99:99")
        || !text[second_end..].starts_with(TAG)
    {
        return None;
    }
    let time = DateTime::parse_from_str(&text[..stamp_end], "%Y-%m-%d %H:%M:%S%.f%:z").ok()?;
    Some(Unwrapped {
        rest: &text[second_end + TAG.len()..],
        time_ms: Some(time.timestamp_millis()),
    })
}

/// `factorio-1  | ` or `factorio_1  | ` (`docker compose logs`: service, replica, padding, `|`).
fn compose_service(text: &str) -> Option<&str> {
    // A service name's characters only: engine lines (which start with spaces) stop here.
    let name_byte = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    if !text.as_bytes().first().is_some_and(|&c| name_byte(c)) {
        return None;
    }
    // Service names are short: look no further than the start of the line.
    let head = &text.as_bytes()[..text.len().min(80)];
    let bar = memchr::memchr_iter(b'|', head)
        .find(|&i| i > 0 && head[i - 1] == b' ' && head.get(i + 1) == Some(&b' '))?
        - 1;
    let name = text[..bar].trim_end_matches(' ');
    let (service, replica) = name.rsplit_once(['-', '_'])?;
    let ok = !service.is_empty()
        && service.bytes().all(name_byte)
        && !replica.is_empty()
        && replica.bytes().all(|c| c.is_ascii_digit());
    ok.then(|| &text[bar + 3..])
}

/// `5/15/2016 11:12:24 PM ` (older Docker images' own stamp).
fn us_date(text: &str) -> Option<&str> {
    // `M/` or `MM/`: anything else is not this stamp.
    if !text.bytes().take(3).any(|c| c == b'/') {
        return None;
    }
    let mut parts = text.splitn(4, ' ');
    let (date, time, half, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let mut d = date.split('/').map(|n| n.parse::<u32>().ok());
    let (m, day, y) = (d.next()??, d.next()??, d.next()??);
    let t: Vec<&str> = time.split(':').collect();
    let time_ok = t.len() == 3
        && t.iter()
            .all(|p| (1..=2).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()));
    (matches!(half, "AM" | "PM")
        && time_ok
        && date.len() <= 10
        && NaiveDate::from_ymd_opt(y as i32, m, day).is_some())
    .then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGINE: &str = "   1.196 Info ServerMultiplayerManager.cpp:808: updateTick(926) changing state from(CreatingGame) to(InGame)";

    #[test]
    fn docker_timestamps_are_taken_off_with_their_time() {
        let line = format!("2024-06-18T09:32:54.123456789Z {ENGINE}");
        let u = unwrap(&line).unwrap();
        assert_eq!(u.rest, ENGINE);
        assert_eq!(u.time_ms, Some(1_718_703_174_123));
        let u = unwrap("2024-06-18T11:32:54+02:00 x").unwrap();
        assert_eq!((u.rest, u.time_ms), ("x", Some(1_718_703_174_000)));
    }

    #[test]
    fn compose_service_prefixes_are_taken_off() {
        for line in [
            format!("factorio-1  | {ENGINE}"),
            format!("factorio_1 | {ENGINE}"),
            format!("my.server-2     | {ENGINE}"),
        ] {
            assert_eq!(unwrap(&line).unwrap().rest, ENGINE, "{line}");
        }
        let line = format!("factorio-1  | 2024-06-18T09:32:54Z {ENGINE}");
        let u = unwrap(&line).unwrap();
        assert_eq!((u.rest, u.time_ms), (ENGINE, Some(1_718_703_174_000)));
    }

    #[test]
    fn factorio_server_manager_prefixes_are_taken_off() {
        let u = unwrap("2024-06-18 11:32:54.895919+02:002024/06/18 09:32:54 Factorio Server:    0.000 2024-06-18 09:32:54; Factorio 1.1.109 (build 62320, linux64, headless)").unwrap();
        assert_eq!(
            u.rest,
            "   0.000 2024-06-18 09:32:54; Factorio 1.1.109 (build 62320, linux64, headless)"
        );
        assert_eq!(u.time_ms, Some(1_718_703_174_895));
    }

    #[test]
    fn old_docker_dates_are_taken_off_without_a_time() {
        let u =
            unwrap("5/15/2016 11:12:24 PM 487.271 Connection request from 1.2.3.4:34197").unwrap();
        assert_eq!(u.rest, "487.271 Connection request from 1.2.3.4:34197");
        assert_eq!(u.time_ms, None);
    }

    #[test]
    fn factorio_lines_and_chat_are_not_wrapped() {
        for line in [
            ENGINE,
            "2025-10-08 08:58:34 [CHAT] bob: 2024-06-18T09:32:54Z hi",
            "2025-10-08 08:58:34 [CHAT] factorio-1 | hi",
            "bob-1 said | hello",
            "status | ok",
            "1/2/3 4 PM x",
            "",
        ] {
            assert_eq!(unwrap(line), None, "{line}");
        }
    }
}
