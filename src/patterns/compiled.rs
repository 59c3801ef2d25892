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
//! the pattern keeps its source, and the engines that run it are built the first time the
//! pattern wins a record (`Engines`): its NFA with every capture group, a bounded backtracker
//! and a PikeVM on it, and its one-pass DFA, the engine that runs the capture groups of a
//! one-pass regex fastest and the largest part of its memory (about 26 KiB of a 30 KiB regex),
//! when the regex is one-pass, can only match at the start, and what is left of the budget holds
//! the difference. The budget counts each regex from its load on, built or not, so what a first
//! win builds without the one-pass DFA fits in what was counted. So a directory of 2,000
//! patterns of which a log uses a few holds what those few need, and the budget bounds the total
//! either way.
//!
//! A winner's capture groups are run where the winner search found its match
//! ([`CompiledRegex::captures_ending_at`]): by the engines `regex_automata::meta::Regex` would
//! choose for a capture search (one-pass DFA, bounded backtracker, PikeVM), called directly,
//! without the lazy-DFA pass it makes first to find the match. A regex that is not one-pass and
//! ends in a greedy `(?P<name>.*)$`, the message of most log patterns, is searched without that
//! group when the group would take the whole rest of the text, so the backtracker does not walk
//! the message character by character.
//!
//! How it fails: [`SizeBudget::compile`] returns a [`CompileError`]: the regex does not compile
//! (its syntax), it alone is over the per-regex limit, or it does not fit in what is left of the
//! budget. Once the budget is spent, nothing more is compiled. Building the engines on a first
//! win compiles the same source with the same limits the load's compile passed; were it to fail
//! all the same, the regex would report no match and no groups (its event keeps the pattern and
//! has no fields) rather than stop matching.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use std::panic::{RefUnwindSafe, UnwindSafe};

use regex_automata::dfa::onepass;
use regex_automata::meta;
use regex_automata::nfa::thompson::NFA;
use regex_automata::nfa::thompson::backtrack::{self, BoundedBacktracker};
use regex_automata::nfa::thompson::pikevm::{self, PikeVM};
use regex_automata::util::captures::Captures;
use regex_automata::util::pool::Pool;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind, PatternID};
use regex_syntax::hir::{Dot, Hir, HirKind, Look};

use super::load::{PATTERNS_SIZE_LIMIT_BYTES, REGEX_DFA_SIZE_LIMIT_BYTES, REGEX_SIZE_LIMIT_BYTES};

/// One compiled pattern regex. Matches as `regex::Regex` does.
#[derive(Clone, Debug)]
pub struct CompiledRegex {
    /// The engines that run the regex, built the first time it is searched. `None` only if
    /// that build failed where the load's compile of the same source succeeded, which the same
    /// source and limits do not do.
    engines: OnceLock<Option<Arc<Engines>>>,
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

impl CompiledRegex {
    /// The regex as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the regex matches the empty string (known from the load's compile).
    pub fn matches_empty(&self) -> bool {
        self.matches_empty
    }

    /// The names of the capture groups, in group order (`None` for group 0 and unnamed groups).
    pub fn capture_names(&self) -> impl Iterator<Item = Option<&str>> {
        self.names.iter().map(Option::as_deref)
    }

    /// The capture groups of the regex's leftmost-first match in `text`, which is known to end
    /// at `end` (the winner search found it): only `text[..end]` is searched, and a regex that
    /// can only match at the start is searched anchored there, which lets a one-pass regex go
    /// straight to its one-pass DFA and any other to the bounded backtracker, without a first
    /// pass to find where the match is. `read` gets the groups; `None` when the regex does not
    /// match there after all.
    pub fn captures_ending_at<R>(
        &self,
        text: &str,
        end: usize,
        read: impl FnOnce(Groups<'_>) -> R,
    ) -> Option<R> {
        let engines = self.engines()?;
        let end = end.min(text.len());
        let mut scratch = engines.scratch.get();
        let scratch = &mut *scratch;
        if let (Some(head), Some((backtrack_cache, pikevm_cache, caps))) =
            (&engines.head, &mut scratch.head)
        {
            // The regex ends in `(?P<…>.*)$`: its match ends where the text does, and where
            // that group's `.` takes every character left, the head decides the rest.
            if end == text.len()
                && (head.dot_all || memchr::memchr(b'\n', text.as_bytes()).is_none())
            {
                let input = Input::new(text).anchored(Anchored::Yes);
                backtrack_or_pikevm(
                    (&head.backtrack, backtrack_cache),
                    (&head.pikevm, pikevm_cache),
                    &input,
                    caps,
                );
                if let Some(m) = caps.get_match() {
                    return Some(read(Groups {
                        caps,
                        tail: Some((head.tail_group, (m.end(), end))),
                    }));
                }
            }
        }
        let mut input = Input::new(text).range(..end);
        if engines.anchored {
            input = input.anchored(Anchored::Yes);
        }
        engines.search(scratch, &input);
        scratch.caps.is_match().then(|| {
            read(Groups {
                caps: &scratch.caps,
                tail: None,
            })
        })
    }

    /// The heap the regex is counted for in the budget, in bytes: what it took at load, and
    /// what its engines took beyond that once built (its one-pass DFA), not counting the
    /// per-thread scratch space a search uses.
    pub fn memory_bytes(&self) -> usize {
        let extra = self.engines.get().and_then(Option::as_ref);
        self.load_bytes + extra.map_or(0, |e| e.extra_bytes)
    }

    /// The engines, built on the first call.
    fn engines(&self) -> Option<&Engines> {
        self.engines
            .get_or_init(|| Engines::build(&self.source, self.load_bytes, &self.left_bytes))
            .as_deref()
    }
}

/// The capture groups of one match, borrowed from a search's scratch space.
#[derive(Clone, Copy, Debug)]
pub struct Groups<'a> {
    caps: &'a Captures,
    /// When the regex's head ran instead of the whole regex: the index of the tail group and
    /// where it matched.
    tail: Option<(usize, (usize, usize))>,
}

impl Groups<'_> {
    /// The start and end (byte offsets) of group `i`, or `None` when it did not take part.
    pub fn get(&self, i: usize) -> Option<(usize, usize)> {
        match self.tail {
            Some((group, span)) if i == group => Some(span),
            Some((_, (_, end))) if i == 0 => Some((0, end)),
            _ => self.caps.get_group(i).map(|span| (span.start, span.end)),
        }
    }
}

/// A regex that ends in a greedy `(?P<name>.*)$` (the message of most log patterns), without
/// that last group. Where that group's `.` matches every character of the rest of the text (the
/// text has no line break, or the group is `(?s)`), the whole regex matches along the same
/// path as its head, and the last group is simply the rest of the text: so the head alone is
/// searched, and the engine does not walk the message character by character.
struct Head {
    backtrack: BoundedBacktracker,
    pikevm: PikeVM,
    /// The index of the dropped group: the regex's last.
    tail_group: usize,
    /// Whether the dropped group's `.` matches a line break too.
    dot_all: bool,
}

impl Head {
    /// The head of the regex `hir`, when it is a concatenation ending in a greedy `.*` capture
    /// and then the end of the text.
    fn of(hir: &Hir) -> Option<(Hir, usize, bool)> {
        let HirKind::Concat(items) = hir.kind() else {
            return None;
        };
        let [head @ .., last_group, end] = items.as_slice() else {
            return None;
        };
        if !matches!(end.kind(), HirKind::Look(Look::End)) {
            return None;
        }
        let HirKind::Capture(capture) = last_group.kind() else {
            return None;
        };
        let HirKind::Repetition(rep) = capture.sub.kind() else {
            return None;
        };
        if rep.min != 0 || rep.max.is_some() || !rep.greedy {
            return None;
        }
        let any = Hir::dot(Dot::AnyChar);
        let any_but_lf = Hir::dot(Dot::AnyCharExceptLF);
        let dot_all = if *rep.sub == any {
            true
        } else if *rep.sub == any_but_lf {
            false
        } else {
            return None;
        };
        Some((Hir::concat(head.to_vec()), capture.index as usize, dot_all))
    }
}

/// What runs one regex: its NFA with every capture group, searched by the one-pass DFA when
/// the regex is one-pass and the search anchored, else by the bounded backtracker when the text
/// is short enough for it, else by the PikeVM. These are the engines
/// `regex_automata::meta::Regex` chooses between for a capture search, minus the lazy DFAs it
/// runs first to find where the match is, which the winner search already knows.
struct Engines {
    /// Whether the regex can only match at the start of the text.
    anchored: bool,
    onepass: Option<onepass::DFA>,
    backtrack: BoundedBacktracker,
    pikevm: PikeVM,
    /// The regex without its trailing `(?P<…>.*)$`, for a regex that is not one-pass.
    head: Option<Head>,
    scratch: Pool<Scratch, MakeScratch>,
    /// What the engines take beyond the load's compile, in bytes, taken from the budget.
    extra_bytes: usize,
}

/// One thread's scratch space for the engines, with the captures of its last search.
#[derive(Debug, Clone)]
struct Scratch {
    onepass: Option<onepass::Cache>,
    backtrack: backtrack::Cache,
    pikevm: pikevm::Cache,
    caps: Captures,
    /// The head's caches and captures.
    head: Option<(backtrack::Cache, pikevm::Cache, Captures)>,
}

type MakeScratch = Box<dyn Fn() -> Scratch + Send + Sync + UnwindSafe + RefUnwindSafe>;

impl std::fmt::Debug for Engines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engines")
            .field("anchored", &self.anchored)
            .field("onepass", &self.onepass.is_some())
            .field("extra_bytes", &self.extra_bytes)
            .finish_non_exhaustive()
    }
}

impl Engines {
    /// Builds the engines of `source`, whose load compile took `load_bytes`, with its one-pass
    /// DFA if it is one-pass and `left_bytes` holds what that adds.
    fn build(source: &str, load_bytes: usize, left_bytes: &AtomicUsize) -> Option<Arc<Engines>> {
        let hir = syntax::parse_with(source, &syntax::Config::new().utf8(true)).ok()?;
        let compile = |hir: &Hir| {
            NFA::compiler()
                .configure(
                    NFA::config()
                        .utf8(true)
                        .nfa_size_limit(Some(REGEX_SIZE_LIMIT_BYTES)),
                )
                .build_from_hir(hir)
                .ok()
        };
        let nfa = compile(&hir)?;
        let anchored = nfa.is_always_start_anchored();
        let nfa_bytes = nfa.memory_usage();
        let take = |bytes: usize| {
            let extra = bytes.saturating_sub(load_bytes);
            let fits = extra == 0
                || left_bytes
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                        left.checked_sub(extra)
                    })
                    .is_ok();
            fits.then_some(extra)
        };
        // A one-pass DFA is only of use to an anchored search.
        let onepass = anchored
            .then(|| {
                onepass::DFA::builder()
                    .configure(
                        onepass::Config::new()
                            .match_kind(MatchKind::LeftmostFirst)
                            .size_limit(Some(REGEX_DFA_SIZE_LIMIT_BYTES)),
                    )
                    .build_from_nfa(nfa.clone())
                    .ok()
            })
            .flatten()
            .and_then(|dfa| take(nfa_bytes + dfa.memory_usage()).map(|extra| (dfa, extra)));
        // A regex that is not one-pass and ends in `(?P<…>.*)$` gets its head.
        let head = (anchored && onepass.is_none())
            .then(|| Head::of(&hir))
            .flatten()
            .and_then(|(head_hir, tail_group, dot_all)| {
                let nfa = compile(&head_hir)?;
                Some(Head {
                    backtrack: BoundedBacktracker::builder()
                        .build_from_nfa(nfa.clone())
                        .ok()?,
                    pikevm: PikeVM::builder()
                        .configure(PikeVM::config().match_kind(MatchKind::LeftmostFirst))
                        .build_from_nfa(nfa)
                        .ok()?,
                    tail_group,
                    dot_all,
                })
            });
        let head_bytes = head
            .as_ref()
            .map_or(0, |h| h.pikevm.get_nfa().memory_usage());
        let (onepass, extra_bytes) = match onepass {
            Some((dfa, extra)) => (Some(dfa), extra),
            // The NFAs alone are about what the load's compile took.
            None => (None, take(nfa_bytes + head_bytes).unwrap_or(0)),
        };
        let backtrack = BoundedBacktracker::builder()
            .build_from_nfa(nfa.clone())
            .ok()?;
        let pikevm = PikeVM::builder()
            .configure(PikeVM::config().match_kind(MatchKind::LeftmostFirst))
            .build_from_nfa(nfa.clone())
            .ok()?;
        let (for_onepass, for_backtrack, for_pikevm) =
            (onepass.clone(), backtrack.clone(), pikevm.clone());
        let for_head = head
            .as_ref()
            .map(|h| (h.backtrack.clone(), h.pikevm.clone()));
        let make: MakeScratch = Box::new(move || Scratch {
            onepass: for_onepass.as_ref().map(onepass::Cache::new),
            backtrack: for_backtrack.create_cache(),
            pikevm: for_pikevm.create_cache(),
            caps: Captures::all(nfa.group_info().clone()),
            head: for_head.as_ref().map(|(backtrack, pikevm)| {
                (
                    backtrack.create_cache(),
                    pikevm.create_cache(),
                    Captures::all(pikevm.get_nfa().group_info().clone()),
                )
            }),
        });
        Some(Arc::new(Engines {
            anchored,
            onepass,
            backtrack,
            pikevm,
            head,
            scratch: Pool::new(make),
            extra_bytes,
        }))
    }

    /// Runs a capture search of `input`; the result is in `scratch.caps`.
    fn search(&self, scratch: &mut Scratch, input: &Input<'_>) {
        let Scratch {
            onepass: onepass_cache,
            backtrack: backtrack_cache,
            pikevm: pikevm_cache,
            caps,
            head: _,
        } = scratch;
        if let (Some(dfa), Some(cache)) = (&self.onepass, onepass_cache) {
            // Built only for a regex that matches only at the start: every search is anchored.
            if dfa.try_search(cache, input, caps).is_ok() {
                return;
            }
        }
        backtrack_or_pikevm(
            (&self.backtrack, backtrack_cache),
            (&self.pikevm, pikevm_cache),
            input,
            caps,
        );
    }
}

/// A capture search of `input` by the bounded backtracker, or by the PikeVM when the text is
/// too long for the backtracker's memory; the result is in `caps`.
fn backtrack_or_pikevm(
    (backtrack, backtrack_cache): (&BoundedBacktracker, &mut backtrack::Cache),
    (pikevm, pikevm_cache): (&PikeVM, &mut pikevm::Cache),
    input: &Input<'_>,
    caps: &mut Captures,
) {
    let fits = input.get_span().len() <= backtrack.max_haystack_len();
    if !fits || backtrack.try_search(backtrack_cache, input, caps).is_err() {
        pikevm.search(pikevm_cache, input, caps);
    }
}

/// The settings `regex::Regex` gives the meta engine, with an NFA limit, without the one-pass
/// DFA (the load's compile only checks and counts).
fn builder(nfa_limit_bytes: usize) -> meta::Builder {
    let mut builder = meta::Builder::new();
    builder
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::LeftmostFirst)
                .utf8_empty(true)
                .onepass(false)
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
        let regex = match builder(nfa_limit_bytes).build(src) {
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
            engines: OnceLock::new(),
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

    /// Where the regex's leftmost-first match in `text` is, and its first eight groups.
    fn captures_read(regex: &CompiledRegex, text: &str) -> Option<Locations> {
        regex.captures_ending_at(text, text.len(), |groups| {
            Locations((0..8).map(|i| groups.get(i)).collect())
        })
    }

    struct Locations(Vec<Option<(usize, usize)>>);

    impl Locations {
        fn whole(&self) -> (usize, usize) {
            self.0[0].unwrap()
        }
        fn get(&self, i: usize) -> Option<(usize, usize)> {
            self.0[i]
        }
    }

    #[test]
    fn matches_and_captures_as_the_regex_crate_does() {
        let src = r"^(?P<a>\d+) (x)?(?P<b>\w+)$";
        let ours = SizeBudget::default().compile(src).unwrap();
        let theirs = regex::Regex::new(src).unwrap();
        let names: Vec<_> = ours.capture_names().collect();
        let expected: Vec<_> = theirs.capture_names().collect();
        assert_eq!(names, expected);
        for text in ["12 abc", "12 xabc", "no", "", "١٢ é"] {
            let locs = captures_read(&ours, text);
            assert_eq!(locs.is_some(), theirs.is_match(text), "{text}");
            let mut theirs_locs = theirs.capture_locations();
            let m = locs.as_ref().map(Locations::whole);
            let t = theirs.captures_read(&mut theirs_locs, text);
            assert_eq!(m, t.map(|t| (t.start(), t.end())), "{text}");
            for i in 0..4 {
                let got = locs.as_ref().and_then(|l| l.get(i));
                assert_eq!(got, theirs_locs.get(i), "{text} group {i}");
            }
        }
        assert_eq!(ours.as_str(), src);
    }

    #[test]
    fn captures_of_a_match_known_to_end_at_a_place_are_those_the_regex_crate_finds() {
        // One-pass and anchored, anchored but not one-pass (the chat shape: where the player
        // ends is only known by trying), not anchored, optional groups, and a text too long for
        // the bounded backtracker (the PikeVM then runs).
        let long = format!("{}: {}", "ü".repeat(40_000), "x".repeat(100_000));
        let cases: [(&str, &[&str]); 5] = [
            (
                r"^\[EVENT\] (?P<player>[^,]+),(?P<x>-?[0-9.]+)$",
                &["[EVENT] a b,-1.5", "[EVENT] é,2", "[EVENT] x"],
            ),
            (
                r"^(?:\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} )?\[CHAT\] (?P<player>[^:]+?)(?: \[(?P<tag>[^\]]+)\])?: (?P<message>.*)$",
                &[
                    "2025-01-01 00:00:00 [CHAT] a [b] c [gps=1]: hi: there",
                    "[CHAT] Ülrich_[RU] [admin]: ok",
                    "[CHAT] x: ",
                    "[CHAT] nope",
                ],
            ),
            (
                r"needle (?P<n>\w+)",
                &["a needle here", "needle é needle two", "none"],
            ),
            (r"^(?P<a>\d+)(?: (?P<b>\w+))?$", &["12", "12 ab", "12 "]),
            (r"^(?P<who>[^:]+): (?P<what>.*)$", &[long.as_str()]),
        ];
        let multi_line: [(&str, &[&str]); 3] = [
            // A line break: `.` stops there, so the whole regex decides (no match here).
            (
                r"^(?P<who>[^:]+?)(?: \[(?P<t>[^\]]*)\])?: (?P<what>.*)$",
                &["a [b]: x\ny", "a: b"],
            ),
            // `(?s)`: the tail takes the line break too.
            (
                r"(?s)^(?P<who>[^:]+?)(?: \[(?P<t>[^\]]*)\])?: (?P<what>.*)$",
                &["a [b]: x\ny", "a:\n"],
            ),
            // Not a greedy tail: no head.
            (r"^(?P<who>[^:]+?): (?P<what>.*?)$", &["a: b: c"]),
        ];
        let cases = cases.into_iter().chain(multi_line);
        for (src, texts) in cases {
            let ours = SizeBudget::default().compile(src).unwrap();
            let theirs = regex::Regex::new(src).unwrap();
            for text in texts {
                let Some(expected) = theirs.captures(text) else {
                    assert_eq!(ours.captures_ending_at(text, text.len(), |_| ()), None);
                    continue;
                };
                let end = expected.get(0).unwrap().end();
                let got = ours
                    .captures_ending_at(text, end, |groups| {
                        (0..expected.len())
                            .map(|i| groups.get(i))
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_else(|| panic!("{src} does not match {text:?}"));
                let want: Vec<_> = expected
                    .iter()
                    .map(|m| m.map(|m| (m.start(), m.end())))
                    .collect();
                assert_eq!(got, want, "{src} on {:?}", &text[..text.len().min(80)]);
            }
        }
    }

    #[test]
    fn a_regex_that_is_not_one_pass_and_ends_in_a_greedy_dot_star_group_gets_a_head() {
        let head = |src: &str| {
            let regex = SizeBudget::default().compile(src).unwrap();
            let engines = regex.engines().unwrap();
            engines.head.as_ref().map(|h| (h.tail_group, h.dot_all))
        };
        let chat = r"^\[CHAT\] (?P<player>[^:]+?)(?: \[(?P<tag>[^\]]*)\])?: (?P<message>.*)$";
        assert_eq!(head(chat), Some((3, false)));
        assert_eq!(head(&format!("(?s){chat}")), Some((3, true)));
        // One-pass: its one-pass DFA is faster still.
        assert_eq!(head(r"^\[EVENT\] (?P<who>[^ ]+) (?P<rest>.*)$"), None);
        // Lazy, bounded, not at the end, not anchored: no head.
        assert_eq!(head(r"^(?P<a>[^:]+?): (?P<b>.*?)$"), None);
        assert_eq!(head(r"^(?P<a>[^:]+?): (?P<b>.{0,9})$"), None);
        assert_eq!(head(r"^(?P<a>[^:]+?): (?P<b>.*) x$"), None);
        assert_eq!(head(r"(?P<a>[^:]+?): (?P<b>.*)$"), None);
    }

    #[test]
    fn a_one_pass_regex_gets_its_one_pass_dfa_on_its_first_capture_search_within_the_budget() {
        let src = r"^\[EVENT\] (?P<player>[^,]+),(?P<x>-?[0-9.]+)$";
        let mut budget = SizeBudget::default();
        let regex = budget.compile(src).unwrap();
        let at_load = regex.memory_bytes();
        assert_eq!(budget.used_bytes(), at_load);
        let locs = captures_read(&regex, "[EVENT] a b,-1.5").unwrap();
        assert_eq!(locs.whole(), (0, 16));
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
        let locs = captures_read(&regex, "[EVENT] a b,-1.5").unwrap();
        assert_eq!(locs.whole(), (0, 16));
        assert_eq!(locs.get(1), Some((8, 11)));
        assert_eq!(regex.memory_bytes(), at_load);
        assert_eq!(tight.used_bytes(), at_load);

        // A regex that is not one-pass keeps its first compile.
        let mut budget = SizeBudget::default();
        let regex = budget.compile(r"^(?P<player>.+) joined the game$").unwrap();
        let at_load = regex.memory_bytes();
        assert_eq!(
            captures_read(&regex, "a b joined the game").map(|l| l.whole()),
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
