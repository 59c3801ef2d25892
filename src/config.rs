//! Configuration: the TOML config file, environment variables, and their defaults.
//!
//! Precedence is flags > environment > config file > defaults. The file is optional; every
//! field has a default in a named function. Unknown keys are errors (a typo must not silently
//! turn a setting off), reported with the file, line and column.
//!
//! ```toml
//! # factorio-isr.toml
//! patterns_dir = "/etc/factorio-isr/patterns"
//! server_tag = "primary"
//!
//! [framing]
//! max_line_bytes = 1048576
//!
//! [service]
//! environment = "staging"
//! ```
//!
//! How it fails: [`ConfigError`] names the file and what is wrong; nothing is half-applied.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

use crate::event::ServiceInfo;
use crate::tail::frame::{self, FramingLimits};

/// Default tag of events' `server` when neither `--server` nor `server_tag` names one.
pub fn default_server_tag() -> String {
    "default".to_owned()
}

/// Default service name (`SERVICE_NAME`).
pub fn default_service_name() -> String {
    "factorio-isr".to_owned()
}

/// Default deployment environment (`SERVICE_ENVIRONMENT`).
pub fn default_service_environment() -> String {
    "production".to_owned()
}

/// The whole config file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of pattern files (`*.toml`). Unset: the shipped patterns built into the
    /// binary. A relative path is relative to the config file's directory. `--patterns DIR`
    /// overrides it.
    #[serde(default)]
    pub patterns_dir: Option<PathBuf>,
    /// The `server` tag of events when `--server TAG` is not given.
    #[serde(default = "default_server_tag")]
    pub server_tag: String,
    /// How log bytes are cut into lines and records.
    #[serde(default)]
    pub framing: FramingConfig,
    /// The `service` object every event carries.
    #[serde(default)]
    pub service: ServiceConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            patterns_dir: None,
            server_tag: default_server_tag(),
            framing: FramingConfig::default(),
            service: ServiceConfig::default(),
        }
    }
}

/// Limits on lines and multi-line records.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FramingConfig {
    /// A line longer than this many bytes is cut to it; the rest of the line is dropped and
    /// counted. Default 1 MiB.
    #[serde(default = "frame::default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// A multi-line error record is closed after this many lines. Default 500.
    #[serde(default = "frame::default_max_record_lines")]
    pub max_record_lines: usize,
    /// A multi-line error record is closed after this many bytes. Default 256 KiB.
    #[serde(default = "frame::default_max_record_bytes")]
    pub max_record_bytes: usize,
}

impl Default for FramingConfig {
    fn default() -> Self {
        FramingConfig {
            max_line_bytes: frame::default_max_line_bytes(),
            max_record_lines: frame::default_max_record_lines(),
            max_record_bytes: frame::default_max_record_bytes(),
        }
    }
}

impl FramingConfig {
    /// The limits the framer uses.
    pub fn limits(&self) -> FramingLimits {
        FramingLimits {
            max_line_bytes: self.max_line_bytes,
            max_record_lines: self.max_record_lines,
            max_record_bytes: self.max_record_bytes,
        }
    }
}

/// Who is sending: the `service` object of events (and, later, of traces).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Service name; `SERVICE_NAME` overrides it. Default `factorio-isr`.
    #[serde(default = "default_service_name")]
    pub name: String,
    /// Service version; `SERVICE_VERSION` overrides it. Default: this build's version.
    #[serde(default)]
    pub version: Option<String>,
    /// Deployment environment; `SERVICE_ENVIRONMENT` overrides it. Default `production`.
    #[serde(default = "default_service_environment")]
    pub environment: String,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            name: default_service_name(),
            version: None,
            environment: default_service_environment(),
        }
    }
}

impl ServiceConfig {
    /// The service description, with `SERVICE_NAME`, `SERVICE_VERSION` and
    /// `SERVICE_ENVIRONMENT` from `env` taking precedence.
    pub fn resolve(&self, env: impl Fn(&str) -> Option<String>) -> ServiceInfo {
        let non_empty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        ServiceInfo {
            name: non_empty("SERVICE_NAME").unwrap_or_else(|| self.name.clone()),
            version: non_empty("SERVICE_VERSION")
                .or_else(|| self.version.clone())
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
            environment: non_empty("SERVICE_ENVIRONMENT")
                .unwrap_or_else(|| self.environment.clone()),
        }
    }
}

/// The config file could not be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type.
    #[error("{}: {message}", Located(path, *line, *column))]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What is wrong, from the TOML parser.
        message: String,
    },
    /// A value is out of range.
    #[error("{}: `{key}` {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, dotted (`framing.max_line_bytes`).
        key: &'static str,
        /// What is wrong and what to do.
        problem: &'static str,
    },
}

struct Located<'a>(&'a Path, usize, usize);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.display())?;
        if self.1 > 0 {
            write!(f, ":{}:{}", self.1, self.2)?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a config file. Relative paths in it are resolved against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(path, &text)?;
        let base = path.parent().unwrap_or(Path::new(""));
        if let Some(dir) = &config.patterns_dir
            && dir.is_relative()
        {
            config.patterns_dir = Some(base.join(dir));
        }
        Ok(config)
    }

    /// Parses and validates config text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        let invalid = |key, problem| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            problem,
        };
        if config.framing.max_line_bytes == 0 {
            return Err(invalid("framing.max_line_bytes", "must be at least 1"));
        }
        if config.framing.max_record_lines == 0 {
            return Err(invalid(
                "framing.max_record_lines",
                "must be at least 1 (1 turns multi-line records off)",
            ));
        }
        if config.server_tag.trim().is_empty() {
            return Err(invalid("server_tag", "must not be empty"));
        }
        Ok(config)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let c = Config::parse(Path::new("c.toml"), "").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.framing.limits(), FramingLimits::default());
    }

    #[test]
    fn fields_are_read() {
        let c = Config::parse(
            Path::new("c.toml"),
            "patterns_dir = \"/p\"\nserver_tag = \"primary\"\n[framing]\nmax_line_bytes = 10\n[service]\nenvironment = \"staging\"\n",
        )
        .unwrap();
        assert_eq!(c.patterns_dir.as_deref(), Some(Path::new("/p")));
        assert_eq!(c.server_tag, "primary");
        assert_eq!(c.framing.max_line_bytes, 10);
        assert_eq!(c.service.environment, "staging");
    }

    #[test]
    fn unknown_keys_name_file_line_and_column() {
        let err = Config::parse(
            Path::new("c.toml"),
            "server_tag = \"a\"\n[framing]\nmax_line_byte = 3\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("c.toml:3:1: unknown field `max_line_byte`"),
            "{err}"
        );
    }

    #[test]
    fn relative_pattern_dirs_are_relative_to_the_config_file() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("isr.toml");
        std::fs::write(&file, "patterns_dir = \"my-patterns\"\n").unwrap();
        let c = Config::load(&file).unwrap();
        assert_eq!(c.patterns_dir, Some(tmp.path().join("my-patterns")));
        std::fs::write(&file, "patterns_dir = \"/abs\"\n").unwrap();
        assert_eq!(
            Config::load(&file).unwrap().patterns_dir,
            Some(PathBuf::from("/abs"))
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let err = Config::parse(Path::new("c.toml"), "[framing]\nmax_line_bytes = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("framing.max_line_bytes"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let s = ServiceConfig::default();
        let info = s.resolve(|k| (k == "SERVICE_ENVIRONMENT").then(|| "dev".to_owned()));
        assert_eq!(info.environment, "dev");
        assert_eq!(info.name, "factorio-isr");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    }
}
