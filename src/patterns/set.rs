//! The compiled pattern set and the match stage: record → typed [`Event`].
//!
//! All enabled patterns go into one search ([`super::winner`]), ordered by (priority, file
//! order) and run once, anchored at the record's start, with leftmost-first semantics: the first
//! pattern in that order that matches is the one it reports, as if the patterns were the
//! branches of one alternation. A pattern not anchored at the start (`^`) may match anywhere, so
//! it enters as `(?s:.)*?(?:pattern)`. Only the winner then runs its capture groups, on the span
//! the search found ([`super::compiled`]). A record no pattern matches becomes an event of type
//! [`LOG_EVENT_TYPE`] with no fields.
//!
//! Captures become typed fields: text by default, or `int`, `float`, `bool` as the pattern says.
//! A capture whose text does not parse as its type is kept as text rather than dropped (the
//! record is never lost because of a type), and a capture that did not take part in the match
//! (an optional group) is left out of `fields`.
//!
//! Matching cannot fail.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex_automata::util::syntax;

use super::load::{FieldType, Pattern, PatternError, PatternErrorKind};
use super::winner::WinnerSearch;
use crate::event::Record;
use crate::event::{
    Event, FieldValue, LOG_EVENT_TYPE, LogSource, PatternInfo, Severity, Timestamp,
};

pub use super::winner::SET_SIZE_LIMIT_BYTES;

/// One loaded pattern file, for summaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSummary {
    /// The file's stem (`console` for `console.toml`).
    pub stem: String,
    /// Patterns in the file.
    pub patterns: usize,
    /// Of which enabled.
    pub enabled: usize,
}

/// A validated, compiled set of patterns. Immutable; reloading builds a new one.
#[derive(Debug)]
pub struct PatternSet {
    /// Every active pattern, in order, as one leftmost-first search anchored at the start.
    winner: WinnerSearch,
    /// Enabled patterns in set order: by priority, then file order.
    active: Vec<Arc<Pattern>>,
    /// What events of each active pattern carry, in the same order.
    infos: Vec<Arc<PatternInfo>>,
    /// Every pattern, enabled or not, in file order.
    all: Vec<Arc<Pattern>>,
    files: Vec<FileSummary>,
    log_event_type: Arc<str>,
    /// Patterns by qualified name.
    by_name: std::collections::HashMap<Arc<str>, Arc<Pattern>>,
}

/// The result of matching one record.
#[derive(Debug)]
pub struct Match<'a> {
    /// The winning pattern.
    pub pattern: &'a Arc<Pattern>,
    /// What its events carry.
    pub info: &'a Arc<PatternInfo>,
    /// Its typed captures.
    pub fields: Vec<(Arc<str>, FieldValue)>,
}

impl PatternSet {
    /// Builds the set from loaded patterns.
    pub fn build(patterns: Vec<Pattern>, files: Vec<FileSummary>) -> Result<Self, PatternError> {
        let all: Vec<Arc<Pattern>> = patterns.into_iter().map(Arc::new).collect();
        let mut active: Vec<Arc<Pattern>> = all.iter().filter(|p| p.enabled).cloned().collect();
        // Stable sort: equal priorities keep file order.
        active.sort_by_key(|p| p.priority);
        let winner = WinnerSearch::build(
            &active
                .iter()
                .map(|p| anchored_form(p.regex.as_str()))
                .collect::<Vec<_>>(),
        )
        .map_err(|e| PatternError {
            path: active
                .first()
                .map(|p| p.location.path.clone())
                .unwrap_or_default(),
            line: 0,
            column: 0,
            pattern: None,
            kind: PatternErrorKind::SetTooBig(e),
        })?;
        let by_name = all
            .iter()
            .map(|p| (p.qualified_name.clone(), p.clone()))
            .collect();
        let infos = active
            .iter()
            .map(|p| {
                Arc::new(PatternInfo {
                    name: p.qualified_name.clone(),
                    discord: p.discord.clone(),
                })
            })
            .collect();
        Ok(PatternSet {
            winner,
            active,
            infos,
            by_name,
            all,
            files,
            log_event_type: LOG_EVENT_TYPE.into(),
        })
    }

    /// Every pattern, enabled or not, in file order.
    pub fn patterns(&self) -> &[Arc<Pattern>] {
        &self.all
    }

    /// The pattern whose qualified name (`file/name`, an event's `pattern`) is `name`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Pattern>> {
        self.by_name.get(name)
    }

    /// The pattern files the set came from.
    pub fn files(&self) -> &[FileSummary] {
        &self.files
    }

    /// Event types of the enabled patterns with how many patterns produce each.
    pub fn event_types(&self) -> BTreeMap<&str, usize> {
        let mut m = BTreeMap::new();
        for p in &self.active {
            *m.entry(&*p.event_type).or_insert(0) += 1;
        }
        m
    }

    /// The winning pattern for `text` and its typed captures, or `None` when nothing matches.
    pub fn match_text(&self, text: &str) -> Option<Match<'_>> {
        let (winner, end) = self.winner.winner(text)?;
        let pattern = &self.active[winner];
        let info = &self.infos[winner];
        let mut fields = Vec::new();
        if !pattern.captures.is_empty() {
            pattern.regex.captures_ending_at(text, end, |groups| {
                fields.reserve(pattern.captures.len());
                for c in &pattern.captures {
                    if let Some((start, end)) = groups.get(c.group) {
                        fields.push((c.name.clone(), typed(&text[start..end], c.ty)));
                    }
                }
            });
        }
        Some(Match {
            pattern,
            info,
            fields,
        })
    }

    /// The match stage: turns a framed record into an event. `read_time` stamps records whose
    /// lines carry no time. A record that starts with a server wrapper's prefix
    /// ([`super::wrapper`]) is matched without it (and, failing that, with it), and takes the
    /// wrapper's time when its lines carry none; its `raw` is the whole record.
    pub fn to_event(&self, record: Record, source: &Arc<LogSource>, read_time: Timestamp) -> Event {
        let unwrapped = super::wrapper::unwrap(&record.text);
        let time_ms = record.time_ms.or(unwrapped.and_then(|u| u.time_ms));
        let timestamp = time_ms.map_or(read_time, Timestamp);
        let matched = unwrapped
            .and_then(|u| self.match_text(u.rest))
            .or_else(|| self.match_text(&record.text));
        let (event_type, severity, pattern, fields) = match matched {
            Some(m) => (
                m.pattern.event_type.clone(),
                m.pattern.severity,
                Some(m.info.clone()),
                m.fields,
            ),
            None => (
                self.log_event_type.clone(),
                Severity::Info,
                None,
                Vec::new(),
            ),
        };
        Event {
            timestamp,
            event_type,
            severity,
            pattern,
            fields,
            message_start: record.message_start,
            raw: record.text,
            source: source.clone(),
            offset: record.offset,
            trace: None,
        }
    }
}

/// `regex` as a branch of the anchored winner search: as it is when it can only match at the
/// start, else preceded by a lazy `(?s:.)*?` so that it may match anywhere.
fn anchored_form(regex: &str) -> String {
    let at_start = syntax::parse(regex).is_ok_and(|hir| {
        hir.properties()
            .look_set_prefix()
            .contains(regex_syntax::hir::Look::Start)
    });
    if at_start {
        regex.to_owned()
    } else {
        format!("(?s:.)*?(?:{regex})")
    }
}

/// Converts capture text to its declared type; text that does not parse stays text.
fn typed(s: &str, ty: FieldType) -> FieldValue {
    match ty {
        FieldType::String => FieldValue::Str(s.to_owned()),
        FieldType::Int => s
            .parse::<i64>()
            .map(FieldValue::Int)
            .or_else(|_| s.parse::<u64>().map(FieldValue::UInt))
            .unwrap_or_else(|_| FieldValue::Str(s.to_owned())),
        FieldType::Float => s
            .parse::<f64>()
            .map(FieldValue::Float)
            .unwrap_or_else(|_| FieldValue::Str(s.to_owned())),
        FieldType::Bool => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => FieldValue::Bool(true),
            "false" | "no" | "0" => FieldValue::Bool(false),
            _ => FieldValue::Str(s.to_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patterns::load::load_file;
    use std::path::Path;

    fn set(text: &str) -> PatternSet {
        let mut p = Vec::new();
        let mut e = Vec::new();
        load_file(Path::new("t.toml"), "t", text, &mut p, &mut e);
        assert!(e.is_empty(), "{e:?}");
        PatternSet::build(p, vec![]).unwrap()
    }

    #[test]
    fn lowest_priority_wins_then_file_order() {
        let s = set(r#"
[[pattern]]
name = "generic"
regex = 'Error (?P<msg>.*)'
priority = 900
[[pattern]]
name = "first"
regex = 'Error x'
priority = 10
[[pattern]]
name = "second"
regex = 'Error x(?P<rest>.*)'
priority = 10
"#);
        assert_eq!(&*s.match_text("Error xyz").unwrap().pattern.name, "first");
        assert_eq!(&*s.match_text("Error abc").unwrap().pattern.name, "generic");
        assert!(s.match_text("fine").is_none());
    }

    #[test]
    fn the_winner_is_the_first_pattern_in_order_that_matches_anywhere_as_a_regex_set_says() {
        let regexes = [
            r"^(?P<a>\d+) only at the start$",
            r"needle (?P<n>\w+)",
            r"(?m)^second line$",
            r"end$",
            r"(?i)HAY",
            r"^.+",
        ];
        let mut toml = String::new();
        for (i, r) in regexes.iter().enumerate() {
            toml.push_str(&format!("[[pattern]]\nname = \"p{i}\"\nregex = '{r}'\n"));
        }
        let s = set(&toml);
        let reference = regex::RegexSet::new(regexes).unwrap();
        for text in [
            "12 only at the start",
            "x 12 only at the start",
            "a needle here",
            "first\nsecond line\nthird",
            "first\nneedle é",
            "",
            "hay in a stack",
            "the end",
            "the end\n",
            "nothing",
            "é\n",
        ] {
            let expected = reference.matches(text).iter().next();
            let got = s
                .match_text(text)
                .map(|m| m.pattern.name[1..].parse::<usize>().unwrap());
            assert_eq!(got, expected, "{text:?}");
        }
        let m = s.match_text("a needle here").unwrap();
        assert_eq!(m.fields, vec![("n".into(), FieldValue::Str("here".into()))]);
    }

    #[test]
    fn disabled_patterns_never_match() {
        let s = set("[[pattern]]\nname = \"a\"\nregex = 'x'\nenabled = false\n");
        assert!(s.match_text("x").is_none());
        assert_eq!(s.patterns().len(), 1);
    }

    #[test]
    fn captures_are_typed_and_optional_groups_omitted() {
        let s = set(r#"
[[pattern]]
name = "a"
regex = '^(?P<n>\S+) (?P<f>\S+) (?P<b>\S+)(?: (?P<opt>\S+))?$'
fields = { n = "int", f = "float", b = "bool" }
"#);
        let m = s.match_text("18446744073709551615 0.5 yes").unwrap();
        assert_eq!(
            m.fields,
            vec![
                ("n".into(), FieldValue::UInt(u64::MAX)),
                ("f".into(), FieldValue::Float(0.5)),
                ("b".into(), FieldValue::Bool(true)),
            ]
        );
        let m = s.match_text("-4 x maybe o").unwrap();
        assert_eq!(m.fields[0].1, FieldValue::Int(-4));
        assert_eq!(m.fields[1].1, FieldValue::Str("x".into()));
        assert_eq!(m.fields[2].1, FieldValue::Str("maybe".into()));
        assert_eq!(m.fields[3].1, FieldValue::Str("o".into()));
    }

    #[test]
    fn unmatched_records_become_log_events() {
        let s = set("[[pattern]]\nname = \"a\"\nregex = '^x'\n");
        let source = Arc::new(LogSource {
            server: "s".into(),
            path: "p".into(),
        });
        let rec = Record {
            offset: 7,
            end_offset: 12,
            text: "hello".into(),
            message_start: 0,
            lines: 1,
            time_ms: None,
        };
        let e = s.to_event(rec, &source, Timestamp(5));
        assert_eq!(&*e.event_type, "log");
        assert_eq!(e.timestamp, Timestamp(5));
        assert_eq!(e.pattern, None);
        assert_eq!(e.offset, 7);
    }
}
