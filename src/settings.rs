//! Small helpers every component's config and wiring shares: reading booleans from the
//! environment, `HOST:PORT` addresses, line:column positions in a file's text, and a lock that
//! survives a panic elsewhere.
//!
//! This module is the bottom of the house: it imports nothing of the crate, so any module may
//! use it without making a cycle.
//!
//! How it fails: parsers return a [`SettingError`] that says what was expected, in words an admin
//! can act on; nothing here panics.

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use thiserror::Error;

/// Default of every boolean setting that is on unless turned off.
pub const fn default_true() -> bool {
    true
}

/// A boolean from an environment variable: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`,
/// any case; `None` for anything else.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// A source of environment variables: `std::env::var` in production, a table in tests.
pub trait Env {
    /// The variable's value; `None` when unset or empty (an empty variable counts as unset,
    /// as `VAR= factorio-isr run` usually means "not this one").
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name).filter(|v| !v.trim().is_empty())
    }
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

/// A secret setting (a webhook URL, a password, a token): its `Debug` and `Display` show
/// `<redacted>`, so it cannot reach a log line, an error or `check` output by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A setting that does not parse.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SettingError {
    /// Not `HOST:PORT`.
    #[error("`{0}` is not HOST:PORT (for example 127.0.0.1:5044)")]
    HostPort(String),
}

/// A value in a config section that is out of range: the dotted key and what to do. The config
/// loader adds the file.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("`{key}` {problem}")]
pub struct InvalidSetting {
    /// The key, dotted (`logstash.address`).
    pub key: &'static str,
    /// What is wrong and what to do.
    pub problem: &'static str,
}

impl InvalidSetting {
    /// `key` is wrong: `problem`.
    pub fn new(key: &'static str, problem: &'static str) -> InvalidSetting {
        InvalidSetting { key, problem }
    }
}

/// A `HOST:PORT` address as written (the host is not resolved): `127.0.0.1:5044`,
/// `logstash.internal:5044`, `[::1]:5044`. The port is 1 to 65535.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    host: String,
    port: u16,
}

impl HostPort {
    /// Parses `HOST:PORT` to connect to: an IPv6 host must be in brackets, the port is 1 to
    /// 65535.
    pub fn parse(address: &str) -> Result<HostPort, SettingError> {
        HostPort::parse_listen(address)
            .ok()
            .filter(|hp| hp.port != 0)
            .ok_or_else(|| SettingError::HostPort(address.to_owned()))
    }

    /// Parses `HOST:PORT` to listen on: as [`HostPort::parse`], and port 0 lets the system
    /// pick one.
    pub fn parse_listen(address: &str) -> Result<HostPort, SettingError> {
        let problem = || SettingError::HostPort(address.to_owned());
        let (host, port) = address.trim().rsplit_once(':').ok_or_else(problem)?;
        let port: u16 = port.parse().map_err(|_| problem())?;
        if host.is_empty() {
            return Err(problem());
        }
        if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
            return Err(problem());
        }
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }

    /// The host as written (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The host without IPv6 brackets, as a TLS server name or a resolver wants it.
    pub fn bare_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The same host with another port.
    pub fn with_port(&self, port: u16) -> HostPort {
        HostPort {
            host: self.host.clone(),
            port,
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Where each line of a text starts, to turn byte offsets (parser spans) into 1-based line
/// and column numbers. Columns count characters, as editors do.
#[derive(Clone, Debug)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    /// Indexes `text`.
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        LineIndex { starts }
    }

    /// The 1-based line and column of byte `offset` of `text` (the text that was indexed).
    pub fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let column = text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line, column + 1)
    }
}

/// The 1-based line and column of byte `offset` in `text`, for a single lookup.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).line_col(text, offset)
}

/// Locks `m`, using the data even if another thread panicked while holding the lock. For locks
/// whose every update is one assignment or insert, so the data is consistent whatever happened.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_read_as_admins_write_them() {
        for t in ["1", "true", "TRUE", " yes ", "On"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "false", "No", "off"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn host_port_takes_names_ipv4_and_bracketed_ipv6() {
        for ok in ["127.0.0.1:5044", "logstash:5044", "[::1]:5044", "a.b-c:1"] {
            let hp = HostPort::parse(ok).unwrap();
            assert_eq!(hp.to_string(), ok);
        }
        assert_eq!(HostPort::parse("[::1]:80").unwrap().bare_host(), "::1");
        for bad in [
            "",
            "5044",
            ":5044",
            "host:",
            "host:0",
            "host:70000",
            "::1:5044",
            "h:p",
        ] {
            let err = HostPort::parse(bad).unwrap_err();
            assert!(err.to_string().contains("HOST:PORT"), "{bad}: {err}");
        }
        assert_eq!(
            HostPort::parse("h:1").unwrap().with_port(9).to_string(),
            "h:9"
        );
        assert_eq!(HostPort::parse_listen("127.0.0.1:0").unwrap().port(), 0);
        assert!(HostPort::parse_listen("127.0.0.1").is_err());
    }

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let text = "ab\ncé d\n\nx";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 1), (1, 2));
        assert_eq!(line_col(text, 3), (2, 1));
        // `é` is two bytes, one column.
        assert_eq!(line_col(text, 6), (2, 3));
        assert_eq!(line_col(text, 9), (3, 1));
        assert_eq!(line_col(text, 10), (4, 1));
        assert_eq!(line_col(text, 99), (4, 2));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("https://discord.com/api/webhooks/1/token");
        assert_eq!(format!("{s} {s:?}"), "<redacted> <redacted>");
        assert!(s.expose().ends_with("token"));
    }

    #[test]
    fn a_poisoned_lock_is_still_usable() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
