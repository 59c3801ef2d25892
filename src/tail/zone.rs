//! Time zones: what the dates Factorio writes mean.
//!
//! Factorio writes console-log dates (`2026-01-15 10:00:00 [JOIN] …`) and the run header's date
//! (`0.000 2026-01-15 10:00:00; Factorio …`) without a zone, in the local time of the machine
//! (or container) it runs on. [`TimeZoneSetting`] is the `timezone` setting that says which
//! zone that is: an IANA name (`America/New_York`), `UTC`, a fixed offset (`+02:00`), or
//! `local` (the default: the zone of this process, from `TZ`, else the system's, which is
//! right when factorio-isr runs beside the server). Zones come from the system's time-zone
//! database, with a copy built in for machines that have none.
//!
//! [`LocalClock`] turns such a wall-clock time into a UTC instant, per date, so daylight
//! saving time is applied as it was on that day. It is made once per file from a zone
//! resolved once per server, and remembers the offset of the last hour it converted, so a
//! file costs one time-zone lookup per hour of log, not one per line; UTC and fixed offsets
//! cost a subtraction.
//!
//! The one rule for wall-clock times that do not name a single instant:
//! - a time in a *gap* (skipped when clocks go forward, e.g. 02:30 on the spring-forward night
//!   in New York) is read with the offset in force before the gap (02:30 EST = 03:30 EDT);
//! - a time in a *fold* (repeated when clocks go back, e.g. 01:30 on the autumn night in New
//!   York) is its first occurrence (01:30 EDT), unless that would put it before the previous
//!   line of the same file, when it is the second (01:30 EST): log lines do not go back in time.
//!
//! How it fails: a `timezone` value that names no zone is refused when the config loads
//! ([`ZoneError`]); when the process's own zone cannot be found, `local` is UTC and a warning
//! says so. Converting never fails.

use std::fmt;
use std::str::FromStr;

use jiff::tz::{AmbiguousOffset, Offset, TimeZone};

/// The `timezone` setting: which zone the dates in a server's logs are in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TimeZoneSetting {
    /// The zone of this process: `TZ`, else the system's (the default).
    #[default]
    Local,
    /// UTC.
    Utc,
    /// A fixed offset east of UTC, in seconds (`+02:00` is 7200).
    Fixed {
        /// Seconds east of UTC.
        offset_seconds: i32,
    },
    /// A zone of the time-zone database by its IANA name (`America/New_York`); known to exist.
    Named(String),
}

/// A `timezone` value that names no zone.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "timezone `{value}` is not a time zone: use a name from the time-zone database such as \"America/New_York\" or \"Europe/Berlin\", \"UTC\", a fixed offset such as \"+02:00\", or \"local\" (the zone of this machine)"
)]
pub struct ZoneError {
    /// The value as given.
    pub value: String,
}

impl FromStr for TimeZoneSetting {
    type Err = ZoneError;

    fn from_str(s: &str) -> Result<Self, ZoneError> {
        let err = || ZoneError {
            value: s.to_owned(),
        };
        let v = s.trim();
        if v.eq_ignore_ascii_case("local") {
            return Ok(TimeZoneSetting::Local);
        }
        if v.eq_ignore_ascii_case("utc") || v == "Z" {
            return Ok(TimeZoneSetting::Utc);
        }
        if v.starts_with(['+', '-']) {
            return parse_offset(v)
                .map(|offset_seconds| TimeZoneSetting::Fixed { offset_seconds })
                .ok_or_else(err);
        }
        match TimeZone::get(v) {
            Ok(_) => Ok(TimeZoneSetting::Named(v.to_owned())),
            Err(_) => Err(err()),
        }
    }
}

/// `+HH:MM`, `+HHMM` or `+HH` (or `-`) → seconds east of UTC, within ±25:59.
fn parse_offset(v: &str) -> Option<i32> {
    let (sign, rest) = match v.as_bytes().first()? {
        b'+' => (1, &v[1..]),
        b'-' => (-1, &v[1..]),
        _ => return None,
    };
    let (hh, mm) = match rest.len() {
        2 => (rest, "00"),
        4 => (&rest[..2], &rest[2..]),
        5 if rest.as_bytes()[2] == b':' => (&rest[..2], &rest[3..]),
        _ => return None,
    };
    if !hh.bytes().chain(mm.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (h, m): (i32, i32) = (hh.parse().ok()?, mm.parse().ok()?);
    if h > 25 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

impl fmt::Display for TimeZoneSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeZoneSetting::Local => f.write_str("local"),
            TimeZoneSetting::Utc => f.write_str("UTC"),
            TimeZoneSetting::Fixed { offset_seconds } => {
                let sign = if *offset_seconds < 0 { '-' } else { '+' };
                let abs = offset_seconds.unsigned_abs();
                write!(f, "{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
            }
            TimeZoneSetting::Named(name) => f.write_str(name),
        }
    }
}

impl<'de> serde::Deserialize<'de> for TimeZoneSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl TimeZoneSetting {
    /// The zone, looked up once (for a server, or a replay). `local` whose zone cannot be
    /// found (an invalid `TZ`, no `/etc/localtime`) is UTC, with a warning.
    pub fn resolve(&self) -> Result<TimeZone, ZoneError> {
        match self {
            TimeZoneSetting::Local => Ok(TimeZone::try_system().unwrap_or_else(|e| {
                tracing::warn!(error = %e, "Cannot tell this machine's time zone; reading log dates as UTC. Set `timezone` in the config or TZ.");
                TimeZone::UTC
            })),
            TimeZoneSetting::Utc => Ok(TimeZone::UTC),
            TimeZoneSetting::Fixed { offset_seconds } => Offset::from_seconds(*offset_seconds)
                .map(TimeZone::fixed)
                .map_err(|_| ZoneError {
                    value: self.to_string(),
                }),
            TimeZoneSetting::Named(name) => TimeZone::get(name).map_err(|_| ZoneError {
                value: name.clone(),
            }),
        }
    }
}

/// A zone's name for logs: its IANA name, else its fixed offset, else `unnamed`.
pub fn zone_name(zone: &TimeZone) -> String {
    match (zone.iana_name(), zone.to_fixed_offset()) {
        (Some(name), _) => name.to_owned(),
        (None, Ok(offset)) => TimeZoneSetting::Fixed {
            offset_seconds: offset.seconds(),
        }
        .to_string(),
        (None, Err(_)) => "unnamed".to_owned(),
    }
}

const HOUR_MS: i64 = 3_600_000;

/// Converts one file's wall-clock times to UTC. See the module docs.
#[derive(Clone, Debug)]
pub struct LocalClock {
    zone: TimeZone,
    /// The zone's offset when it never changes (UTC, `+02:00`), in ms.
    fixed_ms: Option<i64>,
    /// The wall-clock hour (ms since the epoch of the wall clock / 1 h) last converted, when
    /// the whole hour had one offset; `i64::MIN` when none.
    cached_hour: i64,
    /// That hour's offset, in ms.
    cached_offset_ms: i64,
}

impl Default for LocalClock {
    /// UTC.
    fn default() -> Self {
        LocalClock::new(TimeZone::UTC)
    }
}

impl LocalClock {
    /// A clock of `zone`.
    pub fn new(zone: TimeZone) -> Self {
        let fixed_ms = zone
            .to_fixed_offset()
            .ok()
            .map(|o| i64::from(o.seconds()) * 1000);
        LocalClock {
            zone,
            fixed_ms,
            cached_hour: i64::MIN,
            cached_offset_ms: 0,
        }
    }

    /// The zone.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// `wall_ms`, a wall-clock time counted in ms since the epoch of the wall clock (as if it
    /// were UTC), → ms since the epoch. `previous_ms`, the time of the previous line of the
    /// same file, decides a time that occurs twice (see the module docs).
    pub fn to_utc_ms(&mut self, wall_ms: i64, previous_ms: Option<i64>) -> i64 {
        if let Some(offset) = self.fixed_ms {
            return wall_ms.saturating_sub(offset);
        }
        let hour = wall_ms.div_euclid(HOUR_MS);
        if hour == self.cached_hour {
            return wall_ms.saturating_sub(self.cached_offset_ms);
        }
        let offset_ms = match self.offset_at(wall_ms) {
            Some(AmbiguousOffset::Unambiguous { offset }) => {
                let start = self.offset_at(hour * HOUR_MS);
                let end = self.offset_at(hour * HOUR_MS + HOUR_MS - 1);
                let whole_hour = Some(AmbiguousOffset::Unambiguous { offset });
                if start == whole_hour && end == whole_hour {
                    self.cached_hour = hour;
                    self.cached_offset_ms = ms(offset);
                }
                ms(offset)
            }
            Some(AmbiguousOffset::Gap { before, .. }) => ms(before),
            Some(AmbiguousOffset::Fold { before, after }) => {
                let first = wall_ms.saturating_sub(ms(before));
                if previous_ms.is_some_and(|p| first < p) {
                    ms(after)
                } else {
                    ms(before)
                }
            }
            None => 0,
        };
        wall_ms.saturating_sub(offset_ms)
    }

    /// The zone's offset(s) at a wall-clock time; `None` outside the range of dates.
    fn offset_at(&self, wall_ms: i64) -> Option<AmbiguousOffset> {
        let ts = jiff::Timestamp::from_millisecond(wall_ms).ok()?;
        let civil = TimeZone::UTC.to_datetime(ts);
        Some(self.zone.to_ambiguous_timestamp(civil).offset())
    }
}

fn ms(offset: Offset) -> i64 {
    i64::from(offset.seconds()) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `YYYY-MM-DD HH:MM:SS` counted as if UTC.
    fn wall(s: &str) -> i64 {
        let dt: jiff::civil::DateTime = s.parse().unwrap();
        TimeZone::UTC.to_timestamp(dt).unwrap().as_millisecond()
    }

    fn utc(s: &str) -> i64 {
        let ts: jiff::Timestamp = s.parse().unwrap();
        ts.as_millisecond()
    }

    fn clock(name: &str) -> LocalClock {
        LocalClock::new(name.parse::<TimeZoneSetting>().unwrap().resolve().unwrap())
    }

    #[test]
    fn settings_parse_and_print() {
        for (text, want) in [
            ("local", TimeZoneSetting::Local),
            ("UTC", TimeZoneSetting::Utc),
            ("utc", TimeZoneSetting::Utc),
            (
                "+02:00",
                TimeZoneSetting::Fixed {
                    offset_seconds: 7200,
                },
            ),
            (
                "-0530",
                TimeZoneSetting::Fixed {
                    offset_seconds: -19800,
                },
            ),
            (
                "America/New_York",
                TimeZoneSetting::Named("America/New_York".into()),
            ),
        ] {
            assert_eq!(text.parse::<TimeZoneSetting>().unwrap(), want, "{text}");
        }
        assert_eq!(
            TimeZoneSetting::Fixed {
                offset_seconds: -19800
            }
            .to_string(),
            "-05:30"
        );
        for bad in [
            "Mars/Olympus",
            "",
            "+2",
            "+26:00",
            "+02:60",
            "02:00",
            "EST5EDT,M3",
        ] {
            let err = bad.parse::<TimeZoneSetting>().unwrap_err().to_string();
            assert!(err.starts_with("timezone `"), "{bad}: {err}");
        }
    }

    #[test]
    fn new_york_is_five_hours_behind_in_january_and_four_in_july() {
        let mut c = clock("America/New_York");
        assert_eq!(
            c.to_utc_ms(wall("2026-01-15 10:00:00"), None),
            utc("2026-01-15T15:00:00Z")
        );
        assert_eq!(
            c.to_utc_ms(wall("2026-07-15 10:00:00"), None),
            utc("2026-07-15T14:00:00Z")
        );
        // The cached hour gives the same answer as a lookup.
        assert_eq!(
            c.to_utc_ms(wall("2026-07-15 10:59:59"), None),
            utc("2026-07-15T14:59:59Z")
        );
    }

    #[test]
    fn fixed_offsets_and_utc_subtract() {
        assert_eq!(
            clock("+02:00").to_utc_ms(wall("2026-01-15 10:00:00"), None),
            utc("2026-01-15T08:00:00Z")
        );
        assert_eq!(
            clock("-03:30").to_utc_ms(wall("2026-01-15 10:00:00"), None),
            utc("2026-01-15T13:30:00Z")
        );
        assert_eq!(
            clock("UTC").to_utc_ms(wall("2026-01-15 10:00:00"), None),
            utc("2026-01-15T10:00:00Z")
        );
    }

    #[test]
    fn gaps_use_the_offset_before_and_folds_do_not_go_back() {
        let mut c = clock("America/New_York");
        // 2026-03-08 02:30 does not exist in New York: read as EST.
        assert_eq!(
            c.to_utc_ms(wall("2026-03-08 02:30:00"), None),
            utc("2026-03-08T07:30:00Z")
        );
        // 2026-11-01 01:30 happens twice: first EDT, then EST.
        let first = c.to_utc_ms(wall("2026-11-01 01:30:00"), None);
        assert_eq!(first, utc("2026-11-01T05:30:00Z"));
        let late_first = c.to_utc_ms(wall("2026-11-01 01:59:00"), Some(first));
        assert_eq!(late_first, utc("2026-11-01T05:59:00Z"));
        let second = c.to_utc_ms(wall("2026-11-01 01:10:00"), Some(late_first));
        assert_eq!(second, utc("2026-11-01T06:10:00Z"));
        let after = c.to_utc_ms(wall("2026-11-01 02:10:00"), Some(second));
        assert_eq!(after, utc("2026-11-01T07:10:00Z"));
    }
}
