//! The tail's sections of the config file: `[tail]` ([`TailConfig`]) and `[framing]`
//! ([`FramingLimits`], the framer's own limits), with the one copy of each of their defaults,
//! their checks, and the step that turns them into the tailer's [`TailOptions`].
//!
//! ```toml
//! [tail]
//! state_dir = "/var/lib/factorio-isr"
//! poll_only = true
//!
//! [framing]
//! max_line_bytes = 65536
//! ```
//!
//! How it fails: unknown keys are refused by serde (`deny_unknown_fields`); a value out of range
//! is an [`InvalidSetting`] naming the dotted key and what is wrong. Nothing here reads files.

use std::path::PathBuf;
use std::time::Duration;

use super::frame::FramingLimits;
use super::open_files::{self, MIN_RESERVED_OPEN_FILES, OpenFileBudget};
use super::tailer::{StartAt, TailOptions};
use super::watch;
use crate::settings::{Env, InvalidSetting};
use serde::Deserialize;

/// Default of [`TailConfig::discovery_interval_ms`].
pub const fn default_discovery_interval_ms() -> u64 {
    1000
}

/// Default of [`TailConfig::rotate_wait_ms`].
pub const fn default_rotate_wait_ms() -> u64 {
    10_000
}

/// Default of [`TailConfig::record_flush_ms`].
pub const fn default_record_flush_ms() -> u64 {
    1000
}

/// Default of [`TailConfig::checkpoint_interval_ms`].
pub const fn default_checkpoint_interval_ms() -> u64 {
    1000
}

/// Default of [`TailConfig::read_chunk_bytes`]: 256 KiB.
pub const fn default_read_chunk_bytes() -> usize {
    256 * 1024
}

/// Smallest allowed [`TailConfig::read_chunk_bytes`].
pub const MIN_READ_CHUNK_BYTES: usize = 4096;

/// Default of [`TailOptions::max_read_bytes_per_file`] (not a config key): 4 MiB.
pub const fn default_max_read_bytes_per_file() -> usize {
    4 * 1024 * 1024
}

/// Default of [`TailConfig::shutdown_timeout_ms`].
pub const fn default_shutdown_timeout_ms() -> u64 {
    10_000
}

/// Default of [`TailConfig::reload_poll_interval_ms`].
pub const fn default_reload_poll_interval_ms() -> u64 {
    1000
}

/// How `run` follows log files.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TailConfig {
    /// Where checkpoints are kept; `--state-dir` overrides it. Default: `$STATE_DIRECTORY`
    /// (systemd's `StateDirectory=`), else `$XDG_STATE_HOME/factorio-isr`, else
    /// `~/.local/state/factorio-isr`.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Never use file-system notifications, only polling: for Docker bind mounts and network
    /// file systems, where notifications do not arrive. `--poll` sets it.
    #[serde(default)]
    pub poll_only: bool,
    /// Longest wait between two looks at the files when nothing happens; a file-system
    /// notification about a write cuts the wait short. Default 250.
    #[serde(default = "watch::default_poll_interval_max_ms")]
    pub poll_interval_max_ms: u64,
    /// How often the directories are listed for new, renamed and deleted files. Default 1000.
    #[serde(default = "default_discovery_interval_ms")]
    pub discovery_interval_ms: u64,
    /// How long a deleted or renamed-away file is kept open after its last new data. Default
    /// 10000.
    #[serde(default = "default_rotate_wait_ms")]
    pub rotate_wait_ms: u64,
    /// A multi-line error record is emitted after this much quiet. Default 1000.
    #[serde(default = "default_record_flush_ms")]
    pub record_flush_ms: u64,
    /// Checkpoints are saved at most this often. Default 1000.
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
    /// Size of one read. Default 256 KiB.
    #[serde(default = "default_read_chunk_bytes")]
    pub read_chunk_bytes: usize,
    /// On SIGTERM, how long draining may take before factorio-isr saves its checkpoints and
    /// exits anyway. Default 10000.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// How often the patterns directory is checked for edits when no notification arrives.
    /// Default 1000.
    #[serde(default = "default_reload_poll_interval_ms")]
    pub reload_poll_interval_ms: u64,
    /// Open files (descriptors) kept for everything but log files: the admin server's
    /// connections, the sinks' sockets, checkpoint saves, directory listings. At most the
    /// open-file limit less this many log files are followed at once. Default 64, at least 32.
    #[serde(default = "open_files::default_reserved_open_files")]
    pub reserved_open_files: u64,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            state_dir: None,
            poll_only: false,
            poll_interval_max_ms: watch::default_poll_interval_max_ms(),
            discovery_interval_ms: default_discovery_interval_ms(),
            rotate_wait_ms: default_rotate_wait_ms(),
            record_flush_ms: default_record_flush_ms(),
            checkpoint_interval_ms: default_checkpoint_interval_ms(),
            read_chunk_bytes: default_read_chunk_bytes(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            reload_poll_interval_ms: default_reload_poll_interval_ms(),
            reserved_open_files: open_files::default_reserved_open_files(),
        }
    }
}

impl TailConfig {
    /// Checks the values serde cannot: `read_chunk_bytes` is at least 4096,
    /// `reserved_open_files` at least 32.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.read_chunk_bytes < MIN_READ_CHUNK_BYTES {
            return Err(InvalidSetting::new(
                "tail.read_chunk_bytes",
                "must be at least 4096",
            ));
        }
        if self.reserved_open_files < MIN_RESERVED_OPEN_FILES {
            return Err(InvalidSetting::new(
                "tail.reserved_open_files",
                "must be at least 32 (the process itself holds about 16 open files, plus the admin server's connections and checkpoint saves)",
            ));
        }
        Ok(())
    }

    /// The tailer's options: these settings with the framing `limits` and where files without
    /// a checkpoint start (`--from-beginning`). The open-file limit is not known here: the
    /// budget has none (no cap) until the caller sets [`OpenFileBudget::limit`].
    pub fn options(&self, limits: FramingLimits, start_at: StartAt) -> TailOptions {
        let ms = Duration::from_millis;
        TailOptions {
            limits,
            read_chunk_bytes: self.read_chunk_bytes,
            max_read_bytes_per_file: default_max_read_bytes_per_file(),
            discovery_interval: ms(self.discovery_interval_ms),
            rotate_wait: ms(self.rotate_wait_ms),
            record_flush: ms(self.record_flush_ms),
            start_at,
            open_files: OpenFileBudget {
                limit: None,
                reserve: self.reserved_open_files,
            },
        }
    }
}

impl FramingLimits {
    /// Checks the values serde cannot: a line holds at least 1 byte and a record at least one
    /// line.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.max_line_bytes == 0 {
            return Err(InvalidSetting::new(
                "framing.max_line_bytes",
                "must be at least 1",
            ));
        }
        if self.max_record_lines == 0 {
            return Err(InvalidSetting::new(
                "framing.max_record_lines",
                "must be at least 1 (1 turns multi-line records off)",
            ));
        }
        Ok(())
    }
}

/// The default state directory (see [`TailConfig::state_dir`]), from `env`: systemd's
/// `$STATE_DIRECTORY` (the first when it lists several), else `$XDG_STATE_HOME/factorio-isr`,
/// else `$HOME/.local/state/factorio-isr`, else `.factorio-isr-state`.
pub fn default_state_dir(env: &impl Env) -> PathBuf {
    if let Some(d) = env.get("STATE_DIRECTORY") {
        // systemd may pass several, separated by ':'; the first is ours.
        return PathBuf::from(d.split(':').next().unwrap_or(&d));
    }
    if let Some(d) = env.get("XDG_STATE_HOME") {
        return PathBuf::from(d).join("factorio-isr");
    }
    if let Some(h) = env.get("HOME") {
        return PathBuf::from(h).join(".local/state/factorio-isr");
    }
    PathBuf::from(".factorio-isr-state")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sections_are_all_defaults() {
        let tail: TailConfig = toml::from_str("").unwrap();
        assert_eq!(tail, TailConfig::default());
        let framing: FramingLimits = toml::from_str("").unwrap();
        assert_eq!(framing, FramingLimits::default());
        assert_eq!(
            FramingLimits::default(),
            FramingLimits {
                max_line_bytes: 1024 * 1024,
                max_record_lines: 500,
                max_record_bytes: 256 * 1024,
            }
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<FramingLimits>("max_line_byte = 3\n").unwrap_err();
        assert!(
            err.message().contains("unknown field `max_line_byte`"),
            "{err}"
        );
        assert!(toml::from_str::<TailConfig>("poll = true\n").is_err());
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let framing = |text: &str| {
            toml::from_str::<FramingLimits>(text)
                .unwrap()
                .validate()
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            framing("max_line_bytes = 0"),
            Err("`framing.max_line_bytes` must be at least 1".to_owned())
        );
        assert_eq!(
            framing("max_record_lines = 0"),
            Err(
                "`framing.max_record_lines` must be at least 1 (1 turns multi-line records off)"
                    .to_owned()
            )
        );
        assert_eq!(framing("max_record_lines = 1"), Ok(()));
        assert_eq!(FramingLimits::default().validate(), Ok(()));

        let tail = |text: &str| {
            toml::from_str::<TailConfig>(text)
                .unwrap()
                .validate()
                .map_err(|e| (e.key, e.problem))
        };
        assert_eq!(
            tail("read_chunk_bytes = 4095"),
            Err(("tail.read_chunk_bytes", "must be at least 4096"))
        );
        assert_eq!(tail("read_chunk_bytes = 4096"), Ok(()));
        assert_eq!(
            tail("reserved_open_files = 31"),
            Err((
                "tail.reserved_open_files",
                "must be at least 32 (the process itself holds about 16 open files, plus the admin server's connections and checkpoint saves)"
            ))
        );
        assert_eq!(tail("reserved_open_files = 32"), Ok(()));
        assert_eq!(TailConfig::default().validate(), Ok(()));
    }

    #[test]
    fn options_carry_the_settings() {
        let tail: TailConfig = toml::from_str(
            "discovery_interval_ms = 5\nrotate_wait_ms = 6\nrecord_flush_ms = 7\nread_chunk_bytes = 8192\n",
        )
        .unwrap();
        let limits = FramingLimits {
            max_line_bytes: 10,
            ..FramingLimits::default()
        };
        let o = tail.options(limits, StartAt::Beginning);
        assert_eq!(o.limits, limits);
        assert_eq!(o.read_chunk_bytes, 8192);
        assert_eq!(o.max_read_bytes_per_file, default_max_read_bytes_per_file());
        assert_eq!(o.discovery_interval, Duration::from_millis(5));
        assert_eq!(o.rotate_wait, Duration::from_millis(6));
        assert_eq!(o.record_flush, Duration::from_millis(7));
        assert_eq!(o.start_at, StartAt::Beginning);
    }

    #[test]
    fn tail_options_default_to_the_config_defaults() {
        let o = TailOptions::default();
        assert_eq!(o.limits, FramingLimits::default());
        assert_eq!(o.read_chunk_bytes, 256 * 1024);
        assert_eq!(o.max_read_bytes_per_file, 4 * 1024 * 1024);
        assert_eq!(o.discovery_interval, Duration::from_secs(1));
        assert_eq!(o.rotate_wait, Duration::from_secs(10));
        assert_eq!(o.record_flush, Duration::from_secs(1));
        assert_eq!(o.start_at, StartAt::End);
        assert_eq!(
            o.open_files,
            OpenFileBudget {
                limit: None,
                reserve: 128
            }
        );
    }

    #[test]
    fn state_dir_defaults_follow_systemd_then_xdg_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            default_state_dir(&env(&[
                ("STATE_DIRECTORY", "/var/lib/factorio-isr"),
                ("HOME", "/root")
            ])),
            PathBuf::from("/var/lib/factorio-isr")
        );
        assert_eq!(
            default_state_dir(&env(&[("STATE_DIRECTORY", "/a:/b")])),
            PathBuf::from("/a")
        );
        assert_eq!(
            default_state_dir(&env(&[("XDG_STATE_HOME", "/x"), ("HOME", "/root")])),
            PathBuf::from("/x/factorio-isr")
        );
        assert_eq!(
            default_state_dir(&env(&[("XDG_STATE_HOME", ""), ("HOME", "/home/f")])),
            PathBuf::from("/home/f/.local/state/factorio-isr")
        );
        assert_eq!(
            default_state_dir(&env(&[("HOME", "/home/f")])),
            PathBuf::from("/home/f/.local/state/factorio-isr")
        );
        assert_eq!(
            default_state_dir(&env(&[])),
            PathBuf::from(".factorio-isr-state")
        );
    }
}
