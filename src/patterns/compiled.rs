//! Compiled pattern regexes, and the memory all the patterns of one load may take together.
//!
//! A pattern's regex is compiled by [`regex_automata::meta::Regex`], the engine inside the
//! `regex` crate, with the settings `regex::Regex` gives it (leftmost-first, UTF-8, Unicode), so
//! it matches exactly as a `regex::Regex` would. Unlike `regex::Regex` it says how much heap it
//! holds, which is what [`SizeBudget`] needs: every regex of a load is compiled against one
//! budget, [`PATTERNS_SIZE_LIMIT_BYTES`] for a patterns directory. Each compile may use at most
//! what is left of the budget (and never more than the per-regex limit,
//! [`REGEX_SIZE_LIMIT_BYTES`]), so the memory a load holds is bounded by the budget plus one
//! regex however many patterns the files hold, and the load stops at the first regex that does
//! not fit instead of compiling the rest.
//!
//! A regex is compiled at load to check it (its syntax, its size, whether it matches the empty
//! string, its group names) and to count what it takes against the budget, and then dropped:
//! the pattern keeps its source, and the regex is compiled again the first time the pattern
//! wins a record. That second compile adds the one-pass DFA, the engine that runs the capture
//! groups of a one-pass regex fastest and the largest part of its memory (about 26 KiB of a 30
//! KiB regex), if what is left of the budget holds the difference; otherwise, or when the regex
//! is not one-pass, it is the regex as it was at load. The budget counts each regex from its
//! load on, compiled or not, so what the first wins compile always fits. So a directory of
//! 2,000 patterns of which a log uses a few holds what those few need, and the budget bounds
//! the total either way.
//!
//! How it fails: [`SizeBudget::compile`] returns a [`CompileError`]: the regex does not compile
//! (its syntax), it alone is over the per-regex limit, or it does not fit in what is left of the
//! budget. Once the budget is spent, nothing more is compiled.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use regex_automata::meta;
use regex_automata::util::captures::{Captures, GroupInfo};
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternID};

use super::load::{PATTERNS_SIZE_LIMIT_BYTES, REGEX_DFA_SIZE_LIMIT_BYTES, REGEX_SIZE_LIMIT_BYTES};

/// One compiled pattern regex. Matches as `regex::Regex` does.
#[derive(Clone, Debug)]
pub struct CompiledRegex {
    /// The regex, compiled the first time it is searched: with its one-pass DFA when it is
    /// one-pass and the budget holds the difference, else as at load. `None` only if the
    /// second compile failed where the first succeeded, which the same source and settings
    /// do not do.
    compiled: OnceLock<Option<meta::Regex>>,
    /// What the regex took when compiled at load, in bytes: counted in the budget from then on.
    load_bytes: usize,
    /// The capture group names, in group order.
    names: Vec<Option<String>>,
    /// Whether the regex matches the empty string.
    matches_empty: bool,
    /// What is left of the budget of the load this regex came from.
    left_bytes: Arc<AtomicUsize>,
    source: String,
}

/// Where a regex's capture groups matched; made by [`CompiledRegex::capture_locations`] and
/// filled by [`CompiledRegex::captures_read`].
#[derive(Clone, Debug)]
pub struct CaptureLocations(Captures);

impl CaptureLocations {
    /// The start and end (byte offsets) of group `i` in the last match, or `None` when it did
    /// not take part (or there was no match).
    pub fn get(&self, i: usize) -> Option<(usize, usize)> {
        self.0.get_group(i).map(|span| (span.start, span.end))
    }
}

impl CompiledRegex {
    /// The regex as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the regex matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        self.regex()
            .is_some_and(|r| r.is_match(Input::new(text).earliest(true)))
    }

    /// Whether the regex matches the empty string (known from the load's compile).
    pub fn matches_empty(&self) -> bool {
        self.matches_empty
    }

    /// The names of the capture groups, in group order (`None` for group 0 and unnamed groups).
    pub fn capture_names(&self) -> impl Iterator<Item = Option<&str>> {
        self.names.iter().map(Option::as_deref)
    }

    /// Empty capture locations for [`CompiledRegex::captures_read`].
    pub fn capture_locations(&self) -> CaptureLocations {
        CaptureLocations(self.regex().map_or_else(
            || Captures::empty(GroupInfo::empty()),
            meta::Regex::create_captures,
        ))
    }

    /// Finds the leftmost-first match in `text` and records its groups in `locs`; returns the
    /// match's start and end, or `None` when there is none.
    pub fn captures_read(&self, locs: &mut CaptureLocations, text: &str) -> Option<(usize, usize)> {
        self.regex()?
            .search_captures(&Input::new(text), &mut locs.0);
        locs.0.get_match().map(|m| (m.start(), m.end()))
    }

    /// The heap the regex is counted for in the budget, in bytes: what it took at load, and its
    /// one-pass DFA once that is built (not counting the per-thread scratch space a search
    /// uses).
    pub fn memory_bytes(&self) -> usize {
        let built = self.compiled.get().and_then(Option::as_ref);
        built.map_or(self.load_bytes, |r| r.memory_usage().max(self.load_bytes))
    }

    /// The regex, compiled on the first call.
    fn regex(&self) -> Option<&meta::Regex> {
        self.compiled.get_or_init(|| self.compile()).as_ref()
    }

    /// Compiles the regex with its one-pass DFA if it is one-pass and the budget holds the
    /// difference, else as at load.
    fn compile(&self) -> Option<meta::Regex> {
        // The load's compile succeeded with these settings, and the limits only grow.
        let regex = builder(REGEX_SIZE_LIMIT_BYTES, true)
            .build(&self.source)
            .ok()?;
        let extra_bytes = regex.memory_usage().saturating_sub(self.load_bytes);
        if extra_bytes == 0 {
            // Not one-pass: this is the regex as it was at load.
            return Some(regex);
        }
        let fits = self
            .left_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(extra_bytes)
            })
            .is_ok();
        if fits {
            return Some(regex);
        }
        drop(regex);
        builder(REGEX_SIZE_LIMIT_BYTES, false)
            .build(&self.source)
            .ok()
    }
}

/// The settings `regex::Regex` gives the meta engine, with an NFA limit and with or without the
/// one-pass DFA.
fn builder(nfa_limit_bytes: usize, onepass: bool) -> meta::Builder {
    let mut builder = meta::Builder::new();
    builder
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::LeftmostFirst)
                .utf8_empty(true)
                .onepass(onepass)
                .nfa_size_limit(Some(nfa_limit_bytes))
                .hybrid_cache_capacity(REGEX_DFA_SIZE_LIMIT_BYTES),
        )
        .syntax(syntax::Config::new().utf8(true));
    builder
}

/// Why a regex was not compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileError {
    /// The regex does not compile: the parser's message.
    Syntax(String),
    /// The regex alone compiles to more than [`REGEX_SIZE_LIMIT_BYTES`].
    TooBig,
    /// The regex does not fit in what is left of the budget.
    BudgetSpent {
        /// What the regexes compiled before it take, in bytes.
        used_bytes: usize,
        /// The budget, in bytes.
        limit_bytes: usize,
    },
}

/// The running total of what the regexes of one load take, against a limit.
#[derive(Debug)]
pub struct SizeBudget {
    limit_bytes: usize,
    /// What is left, shared with the regexes compiled against it for their one-pass DFAs.
    left_bytes: Arc<AtomicUsize>,
    spent: bool,
}

impl Default for SizeBudget {
    /// A budget of [`PATTERNS_SIZE_LIMIT_BYTES`].
    fn default() -> Self {
        SizeBudget::new(PATTERNS_SIZE_LIMIT_BYTES)
    }
}

impl SizeBudget {
    /// A budget of `limit_bytes`.
    pub fn new(limit_bytes: usize) -> Self {
        SizeBudget {
            limit_bytes,
            left_bytes: Arc::new(AtomicUsize::new(limit_bytes)),
            spent: false,
        }
    }

    /// What the regexes compiled so far take, in bytes (with the one-pass DFAs built since).
    pub fn used_bytes(&self) -> usize {
        self.limit_bytes - self.left_bytes.load(Ordering::Relaxed)
    }

    /// Whether a regex did not fit: from then on nothing is compiled.
    pub fn is_spent(&self) -> bool {
        self.spent
    }

    /// Compiles `src` with the per-regex limits, within what is left of the budget, and counts
    /// what it takes.
    pub fn compile(&mut self, src: &str) -> Result<CompiledRegex, CompileError> {
        let spent = CompileError::BudgetSpent {
            used_bytes: self.used_bytes(),
            limit_bytes: self.limit_bytes,
        };
        if self.spent {
            return Err(spent);
        }
        let left_bytes = self.left_bytes.load(Ordering::Relaxed);
        let nfa_limit_bytes = left_bytes.min(REGEX_SIZE_LIMIT_BYTES);
        let regex = match builder(nfa_limit_bytes, false).build(src) {
            Ok(regex) => regex,
            Err(e) if e.size_limit().is_some() => {
                if nfa_limit_bytes < REGEX_SIZE_LIMIT_BYTES {
                    self.spent = true;
                    return Err(spent);
                }
                return Err(CompileError::TooBig);
            }
            Err(e) => {
                let message = e
                    .syntax_error()
                    .map_or_else(|| e.to_string(), |s| s.to_string());
                return Err(CompileError::Syntax(message));
            }
        };
        let regex_bytes = regex.memory_usage();
        if regex_bytes > left_bytes {
            self.spent = true;
            return Err(spent);
        }
        self.left_bytes.fetch_sub(regex_bytes, Ordering::Relaxed);
        let names = regex
            .group_info()
            .pattern_names(PatternID::ZERO)
            .map(|n| n.map(str::to_owned))
            .collect();
        Ok(CompiledRegex {
            compiled: OnceLock::new(),
            load_bytes: regex_bytes,
            names,
            matches_empty: regex.is_match(""),
            left_bytes: self.left_bytes.clone(),
            source: src.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_and_captures_as_the_regex_crate_does() {
        let src = r"^(?P<a>\d+) (x)?(?P<b>\w+)$";
        let ours = SizeBudget::default().compile(src).unwrap();
        let theirs = regex::Regex::new(src).unwrap();
        let names: Vec<_> = ours.capture_names().collect();
        let expected: Vec<_> = theirs.capture_names().collect();
        assert_eq!(names, expected);
        for text in ["12 abc", "12 xabc", "no", "", "١٢ é"] {
            assert_eq!(ours.is_match(text), theirs.is_match(text), "{text}");
            let mut locs = ours.capture_locations();
            let mut theirs_locs = theirs.capture_locations();
            let m = ours.captures_read(&mut locs, text);
            let t = theirs.captures_read(&mut theirs_locs, text);
            assert_eq!(m, t.map(|t| (t.start(), t.end())), "{text}");
            for i in 0..4 {
                assert_eq!(locs.get(i), theirs_locs.get(i), "{text} group {i}");
            }
        }
        assert_eq!(ours.as_str(), src);
    }

    #[test]
    fn a_one_pass_regex_gets_its_one_pass_dfa_on_its_first_capture_search_within_the_budget() {
        let src = r"^\[EVENT\] (?P<player>[^,]+),(?P<x>-?[0-9.]+)$";
        let mut budget = SizeBudget::default();
        let regex = budget.compile(src).unwrap();
        let at_load = regex.memory_bytes();
        assert_eq!(budget.used_bytes(), at_load);
        let mut locs = regex.capture_locations();
        assert_eq!(
            regex.captures_read(&mut locs, "[EVENT] a b,-1.5"),
            Some((0, 16))
        );
        assert_eq!(locs.get(1), Some((8, 11)));
        assert_eq!(locs.get(2), Some((12, 16)));
        // The one-pass DFA is most of a one-pass regex's memory, and it is counted.
        assert!(
            regex.memory_bytes() > 3 * at_load,
            "{at_load} → {}",
            regex.memory_bytes()
        );
        assert_eq!(budget.used_bytes(), regex.memory_bytes());

        // A budget that holds the regex but not its one-pass DFA: captures still work, and
        // nothing more is taken.
        let mut tight = SizeBudget::new(at_load + 1024);
        let regex = tight.compile(src).unwrap();
        assert_eq!(
            regex.captures_read(&mut locs, "[EVENT] a b,-1.5"),
            Some((0, 16))
        );
        assert_eq!(locs.get(1), Some((8, 11)));
        assert_eq!(regex.memory_bytes(), at_load);
        assert_eq!(tight.used_bytes(), at_load);

        // A regex that is not one-pass keeps its first compile.
        let mut budget = SizeBudget::default();
        let regex = budget.compile(r"^(?P<player>.+) joined the game$").unwrap();
        let at_load = regex.memory_bytes();
        assert_eq!(
            regex.captures_read(&mut locs, "a b joined the game"),
            Some((0, 19))
        );
        assert_eq!(regex.memory_bytes(), at_load);
        assert_eq!(budget.used_bytes(), at_load);
    }

    #[test]
    fn the_budget_counts_each_regex_and_stops_at_the_first_that_does_not_fit() {
        let mut budget = SizeBudget::new(3 * 1024 * 1024);
        let mut compiled = Vec::new();
        let err = loop {
            match budget.compile(r"x\w{15}y") {
                Ok(r) => compiled.push(r),
                Err(e) => break e,
            }
            assert!(compiled.len() < 10, "the budget never ran out");
        };
        let used: usize = compiled.iter().map(CompiledRegex::memory_bytes).sum();
        assert!(!compiled.is_empty());
        assert_eq!(budget.used_bytes(), used);
        assert!(used <= 3 * 1024 * 1024);
        assert_eq!(
            err,
            CompileError::BudgetSpent {
                used_bytes: used,
                limit_bytes: 3 * 1024 * 1024
            }
        );
        assert!(budget.is_spent());
        // Spent is spent: even a tiny regex is not compiled any more.
        assert!(matches!(
            budget.compile("a"),
            Err(CompileError::BudgetSpent { .. })
        ));
    }

    #[test]
    fn a_regex_over_its_own_limit_and_a_bad_one_are_told_apart() {
        let mut budget = SizeBudget::default();
        assert_eq!(
            budget.compile("(?:a{1000}){1000}").unwrap_err(),
            CompileError::TooBig
        );
        assert!(matches!(
            budget.compile("(").unwrap_err(),
            CompileError::Syntax(m) if m.contains("unclosed group")
        ));
        assert!(!budget.is_spent());
        assert_eq!(budget.used_bytes(), 0);
    }
}
