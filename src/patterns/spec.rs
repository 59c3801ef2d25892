//! The pattern-file format as written: what a `[[pattern]]` table and its `[pattern.discord]`
//! section may hold, with the defaults of the keys that may be left out.
//!
//! These are the serde shapes of one file, nothing more: values keep their place in the text
//! ([`Spanned`]) so that [`super::load`] can say on which line and column a value is wrong. The
//! rules that go beyond the shape (names, regexes, captures, templates) are checked there.
//!
//! How it fails: `serde` refuses unknown keys (a misspelt key is an error, not a silent
//! default), values of the wrong type and unknown severities or field types; `toml` reports
//! each with the span of the offending text. The format is documented for users in
//! `patterns/README.md`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::event::Severity;

/// Default `priority` of a pattern: lower numbers win when several patterns match.
pub const fn default_priority() -> i32 {
    100
}

/// Default `severity` of a pattern.
pub const fn default_severity() -> Severity {
    Severity::Info
}

/// The type a capture is converted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text (default).
    #[default]
    String,
    /// A whole number; values beyond `i64` are kept as unsigned, and text that is not a number
    /// stays text.
    Int,
    /// A floating-point number.
    Float,
    /// `true`/`false`, `yes`/`no`, `1`/`0`.
    Bool,
}

/// One pattern file: a TOML document of `[[pattern]]` tables. An empty file is a file with
/// no patterns.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileSpec {
    /// The `[[pattern]]` tables, in file order.
    #[serde(default)]
    pub(crate) pattern: Vec<PatternSpec>,
}

/// One `[[pattern]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PatternSpec {
    /// `name`: unique within the file, 1 to 64 of `[A-Za-z0-9_-]`; with the file's stem it
    /// makes the event's `pattern` value (`console/player_join`).
    pub(crate) name: Spanned<String>,
    /// `event_type`: the event's `event_type`; the name when left out. Several patterns may
    /// share one.
    pub(crate) event_type: Option<Spanned<String>>,
    /// `regex`: matched against the whole record (a line, or a multi-line record); its named
    /// captures become the event's fields.
    pub(crate) regex: Spanned<String>,
    /// `severity`: the event's severity; `info` when left out.
    #[serde(default = "default_severity")]
    pub(crate) severity: Severity,
    /// `priority`: when several patterns match a record, the lowest number wins; 100 when left
    /// out.
    #[serde(default = "default_priority")]
    pub(crate) priority: i32,
    /// `enabled`: `false` keeps the pattern checked but never matched; `true` when left out.
    #[serde(default = "crate::settings::default_true")]
    pub(crate) enabled: bool,
    /// `description`: what the pattern is for, for readers of the file.
    pub(crate) description: Option<String>,
    /// `fields`: the type of some captures (`{ count = "int" }`); captures not listed are text.
    #[serde(default)]
    pub(crate) fields: BTreeMap<String, Spanned<FieldType>>,
    /// `[pattern.discord]`: how the event is posted to Discord; no Discord post without it.
    pub(crate) discord: Option<DiscordSpec>,
}

/// One `[pattern.discord]` section as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscordSpec {
    /// `template`: the message, with `{capture}` placeholders (and `{server}`, `{event_type}`,
    /// `{severity}`, `{message}`); `{{` and `}}` are literal braces.
    pub(crate) template: Spanned<String>,
    /// `emoji`: shown before the message.
    pub(crate) emoji: Option<String>,
    /// `color`: the embed colour, a number up to `0xFFFFFF` or a string `"#rrggbb"`.
    pub(crate) color: Option<Spanned<ColorSpec>>,
    /// `webhook`: the name of the webhook to post to; the server's default webhook when left
    /// out.
    pub(crate) webhook: Option<Spanned<String>>,
    /// `enabled`: `false` stops this pattern's Discord posts and keeps its events; `true` when
    /// left out.
    #[serde(default = "crate::settings::default_true")]
    pub(crate) enabled: bool,
    /// `mention_roles`: Discord role ids pinged when the event is posted; nobody when left out.
    #[serde(default)]
    pub(crate) mention_roles: Vec<Spanned<String>>,
}

/// A `color` value as written: a TOML integer or a string.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum ColorSpec {
    /// An integer such as `0x2ecc71`.
    Number(i64),
    /// A string; only `"#rrggbb"` is valid.
    Hex(String),
}
