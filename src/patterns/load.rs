//! Loading pattern files: TOML text → validated, compiled [`Pattern`]s, or every problem at once.
//!
//! A pattern file is a TOML document with an array of `[[pattern]]` tables (the format is
//! documented in `patterns/README.md`). Loading checks, for every pattern of every file:
//! unknown keys, bad names, duplicate names within a file, regexes that do not compile, are
//! longer than [`MAX_REGEX_BYTES`], compile to more than [`REGEX_SIZE_LIMIT_BYTES`] or match the
//! empty string, typed fields that are not captures, Discord templates that name missing
//! captures, and colours out of range. Each problem becomes a [`PatternError`] with the file, the
//! line and column of the offending value, and the pattern's name. Problems are collected, not
//! returned at the first: a user fixes a file in one round.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;
use thiserror::Error;
use toml::Spanned;

use crate::event::Severity;
pub use crate::event::{DiscordTemplate, TemplatePart};

/// Longest regex source accepted, in bytes.
pub const MAX_REGEX_BYTES: usize = 4096;
/// Largest compiled program of one regex, in bytes (`RegexBuilder::size_limit`).
pub const REGEX_SIZE_LIMIT_BYTES: usize = 1024 * 1024;
/// Largest lazy-DFA cache of one regex, in bytes (`RegexBuilder::dfa_size_limit`).
pub const REGEX_DFA_SIZE_LIMIT_BYTES: usize = 8 * 1024 * 1024;

/// Longest pattern name, event type or webhook name.
pub const MAX_NAME_CHARS: usize = 64;

/// Placeholders every Discord template may use besides the pattern's captures. A capture of the
/// same name (the shipped `chat` pattern captures `message`) takes precedence.
pub const BUILTIN_TEMPLATE_FIELDS: &[&str] = &["server", "event_type", "severity", "message"];

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    pattern: Vec<PatternSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternSpec {
    name: Spanned<String>,
    event_type: Option<Spanned<String>>,
    regex: Spanned<String>,
    #[serde(default = "default_severity")]
    severity: Severity,
    #[serde(default = "default_priority")]
    priority: i32,
    #[serde(default = "crate::settings::default_true")]
    enabled: bool,
    description: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, Spanned<FieldType>>,
    discord: Option<DiscordSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscordSpec {
    template: Spanned<String>,
    emoji: Option<String>,
    color: Option<Spanned<ColorSpec>>,
    webhook: Option<Spanned<String>>,
    #[serde(default = "crate::settings::default_true")]
    enabled: bool,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ColorSpec {
    Number(i64),
    Hex(String),
}

/// A named capture of a pattern and the type it becomes.
#[derive(Clone, Debug)]
pub struct Capture {
    /// The capture's name, the field's key.
    pub name: Arc<str>,
    /// Capture group index in the regex.
    pub group: usize,
    /// The type the text is converted to.
    pub ty: FieldType,
}

/// Where something is in a pattern file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// A compiled pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// `file/name`, the event's `pattern` value.
    pub qualified_name: Arc<str>,
    /// The name within its file.
    pub name: String,
    /// The event type it produces.
    pub event_type: Arc<str>,
    /// Severity of its events.
    pub severity: Severity,
    /// Lower wins when several patterns match a record.
    pub priority: i32,
    /// Disabled patterns are loaded and checked but never matched.
    pub enabled: bool,
    /// What the pattern is for.
    pub description: Option<String>,
    /// The regex, matched against the whole record.
    pub regex: Regex,
    /// Named captures in group order.
    pub captures: Vec<Capture>,
    /// The Discord section.
    pub discord: Option<DiscordTemplate>,
    /// Where the pattern's name is written.
    pub location: Location,
}

/// What was wrong with a pattern file.
#[derive(Debug, Error)]
pub enum PatternErrorKind {
    /// The patterns directory is missing or unreadable.
    #[error("cannot read the patterns directory: {0}")]
    Directory(io::Error),
    /// The directory holds no pattern files.
    #[error("no pattern files (*.toml) in this directory; copy the shipped `patterns/` here")]
    NoFiles,
    /// The file could not be read.
    #[error("cannot read: {0}")]
    Read(io::Error),
    /// The file is not UTF-8.
    #[error("not UTF-8 text; save pattern files as UTF-8")]
    NotUtf8,
    /// TOML syntax error, unknown key, or a value of the wrong type.
    #[error("{0}")]
    Toml(String),
    /// A name or event type that is empty, longer than [`MAX_NAME_CHARS`], or has characters
    /// outside `[A-Za-z0-9_-]`.
    #[error("invalid {what} `{value}`: use 1 to {MAX_NAME_CHARS} letters, digits, `_` and `-`")]
    InvalidName {
        /// `name` or `event_type`.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// Two patterns in one file share a name.
    #[error("duplicate pattern name; it is first defined on line {first_line}: rename one of them")]
    Duplicate {
        /// Line of the first definition.
        first_line: usize,
    },
    /// The regex is longer than [`MAX_REGEX_BYTES`].
    #[error("regex is {len} bytes long, over the limit of {MAX_REGEX_BYTES}: split the pattern")]
    RegexTooLong {
        /// Its length.
        len: usize,
    },
    /// The regex does not compile.
    #[error("regex does not compile:\n{0}")]
    RegexSyntax(String),
    /// The compiled regex is too large.
    #[error(
        "regex compiles to more than {REGEX_SIZE_LIMIT_BYTES} bytes: reduce counted repetitions like `{{1000}}` or split it"
    )]
    RegexTooBig,
    /// The regex matches the empty string, so it would match every record.
    #[error(
        "regex matches the empty string, so it would match every line: anchor it to fixed text such as `\\[JOIN\\]`"
    )]
    MatchesEmpty,
    /// A `fields` entry names something that is not a capture.
    #[error("field `{0}` is given a type, but the regex has no capture `(?P<{0}>…)`")]
    FieldNotCaptured(String),
    /// A template placeholder names something that is not a capture.
    #[error(
        "discord template uses `{{{name}}}`, but the regex has no such capture (it has: {available})"
    )]
    TemplateField {
        /// The placeholder.
        name: String,
        /// What it could have used.
        available: String,
    },
    /// A template has an unmatched brace.
    #[error(
        "discord template has an unmatched `{{` or `}}`; write `{{{{` or `}}}}` for a literal brace"
    )]
    TemplateSyntax,
    /// The colour is out of range.
    #[error("color must be a number from 0x000000 to 0xFFFFFF or a string \"#rrggbb\"")]
    Color,
    /// The enabled patterns do not fit in one regex set.
    #[error(
        "the enabled patterns together are too large to compile into one set ({0}); disable or simplify some"
    )]
    SetTooBig(String),
}

/// A problem in a pattern file, with where it is.
#[derive(Debug, Error)]
pub struct PatternError {
    /// The file (and line and column when known).
    pub path: PathBuf,
    /// 1-based line, 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub column: usize,
    /// The pattern's name, when the problem is in one pattern.
    pub pattern: Option<String>,
    /// What is wrong.
    #[source]
    pub kind: PatternErrorKind,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        f.write_str(": ")?;
        if let Some(p) = &self.pattern {
            write!(f, "pattern `{p}`: ")?;
        }
        write!(f, "{}", self.kind)
    }
}

/// Every problem found while loading pattern files.
#[derive(Debug, Error)]
pub struct PatternErrors(pub Vec<PatternError>);

impl fmt::Display for PatternErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the pattern files:",
            if n == 1 { "" } else { "s" }
        )?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Translates byte offsets of one file into 1-based line and column.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        LineIndex { starts }
    }

    fn line_col(&self, text: &str, offset: usize) -> (usize, usize) {
        let offset = offset.min(text.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let column = text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        (line, column)
    }
}

/// Loads one pattern file's text. `stem` is the file name without `.toml` (the `file` part of
/// qualified names); `path` is only used in messages.
pub fn load_file(
    path: &Path,
    stem: &str,
    text: &str,
    patterns: &mut Vec<Pattern>,
    errors: &mut Vec<PatternError>,
) {
    let index = LineIndex::new(text);
    let at = |span: Range<usize>, pattern: Option<&str>, kind: PatternErrorKind| {
        let (line, column) = index.line_col(text, span.start);
        PatternError {
            path: path.to_owned(),
            line,
            column,
            pattern: pattern.map(str::to_owned),
            kind,
        }
    };

    let spec: FileSpec = match toml::from_str(text) {
        Ok(spec) => spec,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            errors.push(at(
                span,
                None,
                PatternErrorKind::Toml(e.message().trim().to_owned()),
            ));
            return;
        }
    };

    let mut seen: HashMap<String, usize> = HashMap::new();
    for spec in spec.pattern {
        let name = spec.name.get_ref().clone();
        let name_span = spec.name.span();
        let before = errors.len();
        let mut err = |span: Range<usize>, kind| errors.push(at(span, Some(&name), kind));

        if !valid_name(&name) {
            err(
                name_span.clone(),
                PatternErrorKind::InvalidName {
                    what: "name",
                    value: name.clone(),
                },
            );
        }
        let (name_line, _) = index.line_col(text, name_span.start);
        if let Some(&first_line) = seen.get(&name) {
            err(
                name_span.clone(),
                PatternErrorKind::Duplicate { first_line },
            );
        } else {
            seen.insert(name.clone(), name_line);
        }
        let event_type = match &spec.event_type {
            Some(t) => {
                if !valid_name(t.get_ref()) {
                    err(
                        t.span(),
                        PatternErrorKind::InvalidName {
                            what: "event_type",
                            value: t.get_ref().clone(),
                        },
                    );
                }
                t.get_ref().clone()
            }
            None => name.clone(),
        };

        let regex_src = spec.regex.get_ref();
        let regex_span = spec.regex.span();
        let regex = if regex_src.len() > MAX_REGEX_BYTES {
            err(
                regex_span.clone(),
                PatternErrorKind::RegexTooLong {
                    len: regex_src.len(),
                },
            );
            None
        } else {
            match compile_regex(regex_src) {
                Ok(r) if r.is_match("") => {
                    err(regex_span.clone(), PatternErrorKind::MatchesEmpty);
                    None
                }
                Ok(r) => Some(r),
                Err(regex::Error::CompiledTooBig(_)) => {
                    err(regex_span.clone(), PatternErrorKind::RegexTooBig);
                    None
                }
                Err(e) => {
                    err(
                        regex_span.clone(),
                        PatternErrorKind::RegexSyntax(e.to_string()),
                    );
                    None
                }
            }
        };

        let capture_names: Vec<(usize, String)> = regex
            .as_ref()
            .map(|r| {
                r.capture_names()
                    .enumerate()
                    .filter_map(|(i, n)| n.map(|n| (i, n.to_owned())))
                    .collect()
            })
            .unwrap_or_default();

        if regex.is_some() {
            for (field, ty) in &spec.fields {
                if !capture_names.iter().any(|(_, n)| n == field) {
                    err(ty.span(), PatternErrorKind::FieldNotCaptured(field.clone()));
                }
            }
        }

        let discord = spec.discord.as_ref().and_then(|d| {
            let parts = match parse_template(d.template.get_ref()) {
                Ok(parts) => parts,
                Err(kind) => {
                    err(d.template.span(), kind);
                    return None;
                }
            };
            if regex.is_some() {
                for part in &parts {
                    if let TemplatePart::Field(f) = part
                        && !BUILTIN_TEMPLATE_FIELDS.contains(&f.as_str())
                        && !capture_names.iter().any(|(_, n)| n == f)
                    {
                        let mut available: Vec<&str> =
                            capture_names.iter().map(|(_, n)| n.as_str()).collect();
                        available.extend(BUILTIN_TEMPLATE_FIELDS);
                        err(
                            d.template.span(),
                            PatternErrorKind::TemplateField {
                                name: f.clone(),
                                available: available.join(", "),
                            },
                        );
                    }
                }
            }
            let color = match &d.color {
                None => None,
                Some(c) => match parse_color(c.get_ref()) {
                    Some(v) => Some(v),
                    None => {
                        err(c.span(), PatternErrorKind::Color);
                        None
                    }
                },
            };
            if let Some(w) = &d.webhook
                && !valid_name(w.get_ref())
            {
                err(
                    w.span(),
                    PatternErrorKind::InvalidName {
                        what: "webhook name",
                        value: w.get_ref().clone(),
                    },
                );
            }
            Some(DiscordTemplate {
                parts,
                source: d.template.get_ref().clone(),
                emoji: d.emoji.clone(),
                color,
                webhook: d.webhook.as_ref().map(|w| w.get_ref().clone()),
                enabled: d.enabled,
            })
        });

        if errors.len() > before {
            continue;
        }
        let Some(regex) = regex else { continue };
        let captures = capture_names
            .into_iter()
            .map(|(group, n)| Capture {
                ty: spec
                    .fields
                    .get(&n)
                    .map(|t| *t.get_ref())
                    .unwrap_or_default(),
                name: n.into(),
                group,
            })
            .collect();
        let (line, column) = index.line_col(text, name_span.start);
        patterns.push(Pattern {
            qualified_name: format!("{stem}/{name}").into(),
            name,
            event_type: event_type.into(),
            severity: spec.severity,
            priority: spec.priority,
            enabled: spec.enabled,
            description: spec.description,
            regex,
            captures,
            discord,
            location: Location {
                path: path.to_owned(),
                line,
                column,
            },
        });
    }
}

/// Compiles one pattern regex with the limits every pattern gets.
pub fn compile_regex(src: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(src)
        .size_limit(REGEX_SIZE_LIMIT_BYTES)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT_BYTES)
        .build()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn parse_color(c: &ColorSpec) -> Option<u32> {
    let v = match c {
        ColorSpec::Number(n) => u32::try_from(*n).ok()?,
        ColorSpec::Hex(s) => {
            let hex = s.strip_prefix('#')?;
            if hex.len() != 6 {
                return None;
            }
            u32::from_str_radix(hex, 16).ok()?
        }
    };
    (v <= 0xFF_FFFF).then_some(v)
}

/// Splits a template into literal text and `{field}` placeholders; `{{` and `}}` are braces.
pub fn parse_template(t: &str) -> Result<Vec<TemplatePart>, PatternErrorKind> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        // Capture names may hold `.`, `[` and `]` as well (regex 1.9+).
                        Some(c) if c != '{' => name.push(c),
                        _ => return Err(PatternErrorKind::TemplateSyntax),
                    }
                }
                if name.is_empty() {
                    return Err(PatternErrorKind::TemplateSyntax);
                }
                if !lit.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
                }
                parts.push(TemplatePart::Field(name));
            }
            '}' => return Err(PatternErrorKind::TemplateSyntax),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Literal(lit));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> (Vec<Pattern>, Vec<String>) {
        let mut p = Vec::new();
        let mut e = Vec::new();
        load_file(
            Path::new("patterns/test.toml"),
            "test",
            text,
            &mut p,
            &mut e,
        );
        (p, e.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn a_good_pattern_loads_with_defaults() {
        let (p, e) = load(
            r##"
[[pattern]]
name = "player_join"
regex = '^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[JOIN\] (?P<player>.+) joined the game$'
[pattern.discord]
template = "**{player}** joined {server}"
color = "#2ecc71"
"##,
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(&*p[0].qualified_name, "test/player_join");
        assert_eq!(&*p[0].event_type, "player_join");
        assert_eq!(p[0].priority, 100);
        assert_eq!(p[0].severity, Severity::Info);
        assert_eq!(p[0].location.line, 3);
        assert_eq!(p[0].discord.as_ref().unwrap().color, Some(0x2ecc71));
    }

    #[test]
    fn every_problem_is_reported_with_file_line_and_pattern() {
        let (p, e) = load(
            r#"
[[pattern]]
name = "a"
regex = '(unclosed'

[[pattern]]
name = "a"
regex = 'x(?P<who>y)'
fields = { whom = "int" }

[[pattern]]
name = "c"
regex = 'z(?P<p>.)'
[pattern.discord]
template = "{player} did it"

[[pattern]]
name = "d e"
regex = 'a*'
"#,
        );
        assert!(p.is_empty());
        assert_eq!(e.len(), 6, "{e:#?}");
        assert!(
            e[0].starts_with("patterns/test.toml:4:9: pattern `a`: regex does not compile"),
            "{}",
            e[0]
        );
        assert!(e[1].starts_with("patterns/test.toml:7:8: pattern `a`: duplicate pattern name; it is first defined on line 3"), "{}", e[1]);
        assert!(
            e[2].contains(":9:") && e[2].contains("field `whom`"),
            "{}",
            e[2]
        );
        assert!(
            e[3].contains(":15:")
                && e[3].contains("`{player}`")
                && e[3].contains("it has: p, server"),
            "{}",
            e[3]
        );
        assert!(
            e[4].contains(":18:") && e[4].contains("invalid name `d e`"),
            "{}",
            e[4]
        );
        assert!(
            e[5].contains(":19:") && e[5].contains("matches the empty string"),
            "{}",
            e[5]
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_line() {
        let (_, e) = load("[[pattern]]\nname = \"a\"\nregex = 'x'\nsevertiy = \"info\"\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("patterns/test.toml:4:1: unknown field `severtiy`"),
            "{}",
            e[0]
        );
        let (_, e) = load("[[pattern]]\nname = \"a\"\nregex = 'x'\nseverity = \"fatal\"\n");
        assert!(
            e[0].starts_with("patterns/test.toml:4:12: unknown variant `fatal`"),
            "{}",
            e[0]
        );
        let (_, e) = load("[[pattern]]\nname = \"a\"\nregex = 'x'\npriority = \"high\"\n");
        assert!(e[0].contains(":4:12:"), "{}", e[0]);
    }

    #[test]
    fn toml_syntax_errors_name_the_line() {
        let (_, e) = load("[[pattern]]\nname = \"a\nregex = 'x'\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("patterns/test.toml:2:"), "{}", e[0]);
    }

    #[test]
    fn oversized_regexes_are_refused() {
        let long = "a".repeat(MAX_REGEX_BYTES + 1);
        let (_, e) = load(&format!("[[pattern]]\nname = \"a\"\nregex = '{long}'\n"));
        assert!(e[0].contains("over the limit"), "{}", e[0]);
        let (_, e) = load("[[pattern]]\nname = \"a\"\nregex = '(?:a{1000}){1000}'\n");
        assert!(e[0].contains("compiles to more than"), "{}", e[0]);
    }

    #[test]
    fn templates_parse_with_escaped_braces() {
        assert_eq!(
            parse_template("{{x}} {player}!").unwrap(),
            vec![
                TemplatePart::Literal("{x} ".into()),
                TemplatePart::Field("player".into()),
                TemplatePart::Literal("!".into())
            ]
        );
        assert!(parse_template("{oops").is_err());
        assert!(parse_template("a } b").is_err());
        assert!(parse_template("{}").is_err());
        assert_eq!(
            parse_template("{a.b[0]}").unwrap(),
            vec![TemplatePart::Field("a.b[0]".into())]
        );
    }

    #[test]
    fn colors_accept_numbers_and_hex_strings() {
        assert_eq!(parse_color(&ColorSpec::Number(0xff0000)), Some(0xff0000));
        assert_eq!(
            parse_color(&ColorSpec::Hex("#00ff00".into())),
            Some(0x00ff00)
        );
        assert_eq!(parse_color(&ColorSpec::Number(0x1000000)), None);
        assert_eq!(parse_color(&ColorSpec::Hex("red".into())), None);
    }
}
