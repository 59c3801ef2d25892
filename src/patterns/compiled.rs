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
//! How it fails: [`SizeBudget::compile`] returns a [`CompileError`]: the regex does not compile
//! (its syntax), it alone is over the per-regex limit, or it does not fit in what is left of the
//! budget. Once the budget is spent, nothing more is compiled.

use regex_automata::meta;
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternID};

use super::load::{PATTERNS_SIZE_LIMIT_BYTES, REGEX_DFA_SIZE_LIMIT_BYTES, REGEX_SIZE_LIMIT_BYTES};

/// One compiled pattern regex. Matches as `regex::Regex` does.
#[derive(Clone, Debug)]
pub struct CompiledRegex {
    meta: meta::Regex,
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
        self.meta.is_match(Input::new(text).earliest(true))
    }

    /// The names of the capture groups, in group order (`None` for group 0 and unnamed groups).
    pub fn capture_names(&self) -> impl Iterator<Item = Option<&str>> {
        self.meta.group_info().pattern_names(PatternID::ZERO)
    }

    /// Empty capture locations for [`CompiledRegex::captures_read`].
    pub fn capture_locations(&self) -> CaptureLocations {
        CaptureLocations(self.meta.create_captures())
    }

    /// Finds the leftmost-first match in `text` and records its groups in `locs`; returns the
    /// match's start and end, or `None` when there is none.
    pub fn captures_read(&self, locs: &mut CaptureLocations, text: &str) -> Option<(usize, usize)> {
        self.meta.search_captures(&Input::new(text), &mut locs.0);
        locs.0.get_match().map(|m| (m.start(), m.end()))
    }

    /// The heap the compiled regex holds, in bytes (not counting the per-thread scratch space a
    /// search uses).
    pub fn memory_bytes(&self) -> usize {
        self.meta.memory_usage()
    }
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
    used_bytes: usize,
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
            used_bytes: 0,
            spent: false,
        }
    }

    /// What the regexes compiled so far take, in bytes.
    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// Whether a regex did not fit: from then on nothing is compiled.
    pub fn is_spent(&self) -> bool {
        self.spent
    }

    /// Compiles `src` with the per-regex limits, within what is left of the budget, and counts
    /// what it takes.
    pub fn compile(&mut self, src: &str) -> Result<CompiledRegex, CompileError> {
        let spent = CompileError::BudgetSpent {
            used_bytes: self.used_bytes,
            limit_bytes: self.limit_bytes,
        };
        if self.spent {
            return Err(spent);
        }
        let left_bytes = self.limit_bytes - self.used_bytes;
        let nfa_limit_bytes = left_bytes.min(REGEX_SIZE_LIMIT_BYTES);
        let built = meta::Builder::new()
            .configure(
                meta::Config::new()
                    .match_kind(MatchKind::LeftmostFirst)
                    .utf8_empty(true)
                    .nfa_size_limit(Some(nfa_limit_bytes))
                    .hybrid_cache_capacity(REGEX_DFA_SIZE_LIMIT_BYTES),
            )
            .syntax(syntax::Config::new().utf8(true))
            .build(src);
        let regex = match built {
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
        self.used_bytes += regex_bytes;
        Ok(CompiledRegex {
            meta: regex,
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
