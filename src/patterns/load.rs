//! Loading pattern files: TOML text → validated, compiled [`Pattern`]s, or every problem at once.
//!
//! A pattern file is a TOML document with an array of `[[pattern]]` tables (the shapes are in
//! [`super::spec`], the format is documented in `patterns/README.md`). [`load_file`] takes one
//! file's text through these steps, each a function below:
//!
//! 1. parse the TOML, keeping where each value is written (`parse_toml`);
//! 2. check the pattern's name (`check_name`), that no earlier pattern of the file has it
//!    (`check_duplicate`), and its event type (`check_event_type`);
//! 3. compile its regex and check its size, alone and with the patterns before it
//!    (`compile_checked`);
//! 4. check that its typed `fields` are captures of the regex (`check_typed_fields`);
//! 5. build its Discord template, whose placeholders must be captures (`build_discord`);
//! 6. put the compiled [`Pattern`] together (`assemble`).
//!
//! How it fails: unknown keys, bad names, duplicate names within a file, regexes that do not
//! compile, are longer than [`MAX_REGEX_BYTES`], compile to more than [`REGEX_SIZE_LIMIT_BYTES`]
//! or match the empty string, regexes that take the patterns loaded so far past
//! [`PATTERNS_SIZE_LIMIT_BYTES`], typed fields that are not captures, Discord templates that name
//! missing captures, and colours out of range. Each problem becomes a [`PatternError`] with the
//! file, the line and column of the offending value, and the pattern's name. Problems are
//! collected, not returned at the first: a user fixes a file in one round. A pattern with any
//! problem is left out, and [`super::load_dir`] loads no set at all while any file has one. The
//! exception is the total size: the first regex that does not fit ends the load (nothing after
//! it is compiled or checked), so that many large regexes cannot take the memory the budget
//! exists to protect.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use toml::Spanned;

use super::compiled::{CompileError, CompiledRegex, SizeBudget};
use super::spec::{DiscordSpec, FileSpec, PatternSpec};
use super::template::{BUILTIN_TEMPLATE_FIELDS, DiscordTemplate, TemplatePart, parse_color};
use crate::event::Severity;
use crate::settings::LineIndex;

// The paths these had when they were defined here.
pub use super::error::{Location, PatternError, PatternErrorKind};
pub use super::spec::FieldType;
pub use super::template::parse_template;

/// Longest regex source accepted, in bytes.
pub const MAX_REGEX_BYTES: usize = 4096;
/// Largest compiled program of one regex, in bytes (per automaton: the NFA size limit).
pub const REGEX_SIZE_LIMIT_BYTES: usize = 1024 * 1024;
/// Largest lazy-DFA cache of one regex, in bytes (per thread that searches with it).
pub const REGEX_DFA_SIZE_LIMIT_BYTES: usize = 8 * 1024 * 1024;
/// Most memory the compiled regexes of all the patterns of one load (a patterns directory) may
/// take together, in bytes. The 53 shipped patterns take 0.5 MiB; 2,001 patterns like them,
/// 18 MiB; a pattern a user adds for a mod's line is often one-pass (its captures found by a
/// one-pass DFA, fast but about 30 KiB), so 2,000 of those take about 60 MiB: room for
/// 4,000.
pub const PATTERNS_SIZE_LIMIT_BYTES: usize = 128 * 1024 * 1024;

/// Longest pattern name, event type or webhook name.
pub const MAX_NAME_CHARS: usize = 64;

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
    pub regex: CompiledRegex,
    /// Named captures in group order.
    pub captures: Vec<Capture>,
    /// The Discord section.
    pub discord: Option<DiscordTemplate>,
    /// Where the pattern's name is written.
    pub location: Location,
}

/// Loads one pattern file's text. `stem` is the file name without `.toml` (the `file` part of
/// qualified names); `path` is only used in messages. Good patterns go to `patterns`, every
/// problem to `errors`. The file's regexes together may take [`PATTERNS_SIZE_LIMIT_BYTES`].
pub fn load_file(
    path: &Path,
    stem: &str,
    text: &str,
    patterns: &mut Vec<Pattern>,
    errors: &mut Vec<PatternError>,
) {
    load_file_within(
        path,
        stem,
        text,
        &mut SizeBudget::default(),
        patterns,
        errors,
    );
}

/// [`load_file`] with the regexes compiled against `budget`, shared with the other files of the
/// load. When a regex does not fit, the load stops there: the rest of the file is not checked,
/// and the caller should stop too ([`SizeBudget::is_spent`]).
pub fn load_file_within(
    path: &Path,
    stem: &str,
    text: &str,
    budget: &mut SizeBudget,
    patterns: &mut Vec<Pattern>,
    errors: &mut Vec<PatternError>,
) {
    let file = FileText::new(path, text);
    let Some(spec) = parse_toml(&file, errors) else {
        return;
    };
    let mut first_lines = HashMap::new();
    for spec in spec.pattern {
        match check_pattern(&file, stem, spec, &mut first_lines, budget) {
            Ok(pattern) => patterns.push(pattern),
            Err(problems) => errors.extend(problems),
        }
        if budget.is_spent() {
            return;
        }
    }
}

/// Compiles one pattern regex with the limits every pattern gets, on its own (no total).
pub fn compile_regex(src: &str) -> Result<CompiledRegex, CompileError> {
    SizeBudget::new(usize::MAX).compile(src)
}

/// One file's text and name, to turn spans of the text into located errors.
struct FileText<'a> {
    path: &'a Path,
    text: &'a str,
    lines: LineIndex,
}

impl<'a> FileText<'a> {
    fn new(path: &'a Path, text: &'a str) -> Self {
        FileText {
            path,
            text,
            lines: LineIndex::new(text),
        }
    }

    /// 1-based line and column of the start of `span`.
    fn line_col(&self, span: &Range<usize>) -> (usize, usize) {
        self.lines.line_col(self.text, span.start)
    }

    fn location(&self, span: &Range<usize>) -> Location {
        let (line, column) = self.line_col(span);
        Location {
            path: self.path.to_owned(),
            line,
            column,
        }
    }

    fn error(
        &self,
        span: &Range<usize>,
        pattern: Option<&str>,
        kind: PatternErrorKind,
    ) -> PatternError {
        let Location { path, line, column } = self.location(span);
        PatternError {
            path,
            line,
            column,
            pattern: pattern.map(str::to_owned),
            kind,
        }
    }
}

/// The problems found in one pattern, in the order they were found.
struct Problems<'f> {
    file: &'f FileText<'f>,
    pattern: String,
    found: Vec<PatternError>,
}

impl<'f> Problems<'f> {
    fn new(file: &'f FileText<'f>, pattern: &str) -> Self {
        Problems {
            file,
            pattern: pattern.to_owned(),
            found: Vec::new(),
        }
    }

    /// Notes a problem with the value written at `span`.
    fn add(&mut self, span: Range<usize>, kind: PatternErrorKind) {
        let error = self.file.error(&span, Some(&self.pattern), kind);
        self.found.push(error);
    }
}

/// The file's TOML, or the one error that stops `toml` (syntax, unknown key, wrong
/// type), located at its span.
fn parse_toml(file: &FileText<'_>, errors: &mut Vec<PatternError>) -> Option<FileSpec> {
    match toml::from_str(file.text) {
        Ok(spec) => Some(spec),
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let kind = PatternErrorKind::Toml(e.message().trim().to_owned());
            errors.push(file.error(&span, None, kind));
            None
        }
    }
}

/// Every step for one pattern: the compiled pattern, or all its problems. `first_lines` holds
/// the line of each name already seen in the file.
fn check_pattern(
    file: &FileText<'_>,
    stem: &str,
    spec: PatternSpec,
    first_lines: &mut HashMap<String, usize>,
    budget: &mut SizeBudget,
) -> Result<Pattern, Vec<PatternError>> {
    let mut problems = Problems::new(file, spec.name.get_ref());
    check_name(&spec.name, &mut problems);
    check_duplicate(&spec.name, first_lines, &mut problems);
    let event_type = check_event_type(&spec, &mut problems);
    let regex = compile_checked(&spec.regex, budget, &mut problems);
    let captures = regex.as_ref().map(named_captures);
    if let Some(captures) = &captures {
        check_typed_fields(&spec.fields, captures, &mut problems);
    }
    let discord = spec
        .discord
        .as_ref()
        .and_then(|d| build_discord(d, captures.as_deref(), &mut problems));
    match (regex, captures) {
        (Some(regex), Some(captures)) if problems.found.is_empty() => Ok(assemble(
            file, stem, spec, event_type, regex, captures, discord,
        )),
        _ => Err(problems.found),
    }
}

/// The name uses 1 to [`MAX_NAME_CHARS`] of `[A-Za-z0-9_-]`.
fn check_name(name: &Spanned<String>, problems: &mut Problems<'_>) {
    if !valid_name(name.get_ref()) {
        problems.add(
            name.span(),
            PatternErrorKind::InvalidName {
                what: "name",
                value: name.get_ref().clone(),
            },
        );
    }
}

/// No earlier pattern of the file has this name; the first one's line is remembered.
fn check_duplicate(
    name: &Spanned<String>,
    first_lines: &mut HashMap<String, usize>,
    problems: &mut Problems<'_>,
) {
    if let Some(&first_line) = first_lines.get(name.get_ref()) {
        problems.add(name.span(), PatternErrorKind::Duplicate { first_line });
    } else {
        let (line, _) = problems.file.line_col(&name.span());
        first_lines.insert(name.get_ref().clone(), line);
    }
}

/// The event type, the name when none is written; a written one follows the name
/// rules.
fn check_event_type(spec: &PatternSpec, problems: &mut Problems<'_>) -> String {
    let Some(event_type) = &spec.event_type else {
        return spec.name.get_ref().clone();
    };
    if !valid_name(event_type.get_ref()) {
        problems.add(
            event_type.span(),
            PatternErrorKind::InvalidName {
                what: "event_type",
                value: event_type.get_ref().clone(),
            },
        );
    }
    event_type.get_ref().clone()
}

/// The regex, compiled, when it is short enough, compiles within the size limit and what is
/// left of `budget`, and does not match the empty string.
fn compile_checked(
    regex: &Spanned<String>,
    budget: &mut SizeBudget,
    problems: &mut Problems<'_>,
) -> Option<CompiledRegex> {
    let src = regex.get_ref();
    if src.len() > MAX_REGEX_BYTES {
        problems.add(
            regex.span(),
            PatternErrorKind::RegexTooLong { len: src.len() },
        );
        return None;
    }
    let problem = match budget.compile(src) {
        Ok(r) if !r.matches_empty() => return Some(r),
        Ok(_) => PatternErrorKind::MatchesEmpty,
        Err(CompileError::TooBig) => PatternErrorKind::RegexTooBig,
        Err(CompileError::Syntax(message)) => PatternErrorKind::RegexSyntax(message),
        Err(CompileError::BudgetSpent {
            used_bytes,
            limit_bytes,
        }) => PatternErrorKind::PatternsTooBig {
            used_bytes,
            limit_bytes,
        },
    };
    problems.add(regex.span(), problem);
    None
}

/// The regex's named captures: (group index, name), in group order.
fn named_captures(regex: &CompiledRegex) -> Vec<(usize, String)> {
    regex
        .capture_names()
        .enumerate()
        .filter_map(|(i, n)| n.map(|n| (i, n.to_owned())))
        .collect()
}

/// Every entry of `fields` names a capture.
fn check_typed_fields(
    fields: &BTreeMap<String, Spanned<FieldType>>,
    captures: &[(usize, String)],
    problems: &mut Problems<'_>,
) {
    for (field, ty) in fields {
        if !captures.iter().any(|(_, n)| n == field) {
            problems.add(ty.span(), PatternErrorKind::FieldNotCaptured(field.clone()));
        }
    }
}

/// The Discord section, validated. `captures` is `None` when the regex did not
/// compile; placeholders are then not checked (that problem is already reported). `None` when
/// the template does not parse.
fn build_discord(
    d: &DiscordSpec,
    captures: Option<&[(usize, String)]>,
    problems: &mut Problems<'_>,
) -> Option<DiscordTemplate> {
    let parts = match parse_template(d.template.get_ref()) {
        Ok(parts) => parts,
        Err(kind) => {
            problems.add(d.template.span(), kind);
            return None;
        }
    };
    if let Some(captures) = captures {
        check_placeholders(&d.template, &parts, captures, problems);
    }
    let color = d.color.as_ref().and_then(|c| {
        let color = parse_color(c.get_ref());
        if color.is_none() {
            problems.add(c.span(), PatternErrorKind::Color);
        }
        color
    });
    if let Some(w) = &d.webhook
        && !valid_name(w.get_ref())
    {
        problems.add(
            w.span(),
            PatternErrorKind::InvalidName {
                what: "webhook name",
                value: w.get_ref().clone(),
            },
        );
    }
    for role in &d.mention_roles {
        if !crate::event::is_discord_snowflake(role.get_ref()) {
            problems.add(
                role.span(),
                PatternErrorKind::RoleId(role.get_ref().clone()),
            );
        }
    }
    Some(DiscordTemplate {
        parts,
        source: d.template.get_ref().clone(),
        emoji: d.emoji.clone(),
        color,
        webhook: d.webhook.as_ref().map(|w| w.get_ref().clone()),
        enabled: d.enabled,
        mention_roles: d
            .mention_roles
            .iter()
            .map(|r| r.get_ref().clone())
            .collect(),
    })
}

/// Each placeholder is a capture or one of [`BUILTIN_TEMPLATE_FIELDS`].
fn check_placeholders(
    template: &Spanned<String>,
    parts: &[TemplatePart],
    captures: &[(usize, String)],
    problems: &mut Problems<'_>,
) {
    for part in parts {
        if let TemplatePart::Field(f) = part
            && !BUILTIN_TEMPLATE_FIELDS.contains(&f.as_str())
            && !captures.iter().any(|(_, n)| n == f)
        {
            let mut available: Vec<&str> = captures.iter().map(|(_, n)| n.as_str()).collect();
            available.extend(BUILTIN_TEMPLATE_FIELDS);
            problems.add(
                template.span(),
                PatternErrorKind::TemplateField {
                    name: f.clone(),
                    available: available.join(", "),
                },
            );
        }
    }
}

/// The compiled pattern of a spec that passed every check.
fn assemble(
    file: &FileText<'_>,
    stem: &str,
    spec: PatternSpec,
    event_type: String,
    regex: CompiledRegex,
    captures: Vec<(usize, String)>,
    discord: Option<DiscordTemplate>,
) -> Pattern {
    let captures = captures
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
    let location = file.location(&spec.name.span());
    let name = spec.name.into_inner();
    Pattern {
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
        location,
    }
}

/// 1 to [`MAX_NAME_CHARS`] ASCII letters, digits, `_` and `-`.
fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_CHARS
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
    fn mention_roles_take_discord_role_ids_only() {
        let (p, e) = load(
            r#"
[[pattern]]
name = "crash"
regex = 'crashed'
[pattern.discord]
template = "crashed"
mention_roles = ["123456789012345678", "@everyone", "12345"]
"#,
        );
        assert!(p.is_empty());
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(
            e[0].starts_with("patterns/test.toml:7:40: pattern `crash`: `@everyone` in mention_roles is not a Discord role id"),
            "{}",
            e[0]
        );
        assert!(e[1].contains("`12345`"), "{}", e[1]);
        let (p, e) = load(
            "[[pattern]]\nname = \"crash\"\nregex = 'crashed'\n[pattern.discord]\ntemplate = \"x\"\nmention_roles = [\"123456789012345678\"]\n",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            p[0].discord.as_ref().unwrap().mention_roles,
            ["123456789012345678"]
        );
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
    fn the_load_stops_where_the_patterns_together_exceed_their_budget() {
        // Each regex compiles to about 0.8 MiB; a later pattern is broken, but is never
        // reached.
        let mut text = String::from("# big patterns\n");
        for i in 0..10 {
            text.push_str(&format!(
                "[[pattern]]\nname = \"p{i}\"\nregex = 'x{i}\\w{{15}}y'\n\n"
            ));
        }
        text.push_str("[[pattern]]\nname = \"broken\"\nregex = '('\n");
        let mut budget = SizeBudget::new(3 * 1024 * 1024);
        let (mut p, mut e) = (Vec::new(), Vec::new());
        let path = Path::new("patterns/big.toml");
        load_file_within(path, "big", &text, &mut budget, &mut p, &mut e);
        assert!(budget.is_spent());
        assert_eq!(e.len(), 1, "{e:#?}");
        let n = p.len();
        assert!((1..10).contains(&n), "{n} patterns loaded");
        let used: usize = p.iter().map(|p| p.regex.memory_bytes()).sum();
        assert_eq!(budget.used_bytes(), used);
        // Pattern `pN`'s regex is on line 4 + 4N, column 9.
        let message = e[0].to_string();
        assert!(
            message.starts_with(&format!(
                "patterns/big.toml:{}:9: pattern `p{n}`: with this regex the pattern files compile to more than 3 MiB",
                4 + 4 * n
            )),
            "{message}"
        );
        assert!(
            message.contains("later patterns were not checked"),
            "{message}"
        );
    }

    #[test]
    fn oversized_regexes_are_refused() {
        let long = "a".repeat(MAX_REGEX_BYTES + 1);
        let (_, e) = load(&format!("[[pattern]]\nname = \"a\"\nregex = '{long}'\n"));
        assert!(e[0].contains("over the limit"), "{}", e[0]);
        let (_, e) = load("[[pattern]]\nname = \"a\"\nregex = '(?:a{1000}){1000}'\n");
        assert!(e[0].contains("compiles to more than"), "{}", e[0]);
    }
}
