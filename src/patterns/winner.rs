//! Which pattern wins a record: one anchored, leftmost-first search of every active pattern at
//! once, in priority order, that reports the winner's index and nothing else.
//!
//! The patterns are compiled into one forward Thompson NFA without capture groups (the winner's
//! own regex runs its groups afterwards, [`super::compiled`]) and searched by a lazy DFA
//! (`regex_automata::hybrid`), anchored at the record's start. Leftmost-first over patterns in
//! priority order means the first pattern that matches at all is the one reported, as if the
//! patterns were the branches of one alternation.
//!
//! This is what a `regex_automata::meta::Regex` of the same patterns does for an anchored
//! search, minus what the winner does not need and what costs memory with thousands of
//! patterns: no capture states, no reverse NFA and no second lazy DFA for it, and a lazy-DFA
//! cache of [`WINNER_CACHE_BYTES`] per matching thread that is cleared and refilled when full
//! rather than given up on. With 2,000 patterns that is the difference between a load that
//! peaks at tens of megabytes inside the NFA compiler and one that does not.
//!
//! How it fails: building fails when the NFA of all the patterns would pass
//! [`SET_SIZE_LIMIT_BYTES`] (reported by the caller as a set too big). A search cannot fail:
//! where the lazy DFA must stop (a Unicode word boundary `\b` next to a non-ASCII byte, which it
//! cannot decide), the same NFA is searched by the PikeVM instead, which decides everything.

use std::panic::{RefUnwindSafe, UnwindSafe};

use regex_automata::hybrid::dfa::{Cache as DfaCache, DFA};
use regex_automata::nfa::thompson::pikevm::{Cache as PikeCache, PikeVM};
use regex_automata::nfa::thompson::{self, NFA, WhichCaptures};
use regex_automata::util::pool::Pool;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, MatchKind};

/// Compiled size limit of the NFA of all the patterns together, in bytes.
pub const SET_SIZE_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// The lazy DFA's cache per matching thread, in bytes: the states of the winner search that
/// one thread keeps. When it fills, it is cleared and the states the records need are built
/// again.
pub const WINNER_CACHE_BYTES: usize = 4 * 1024 * 1024;

/// Both engines' scratch space for one thread's searches.
#[derive(Debug, Clone)]
struct Caches {
    dfa: DfaCache,
    pike: PikeCache,
}

type MakeCaches = Box<dyn Fn() -> Caches + Send + Sync + UnwindSafe + RefUnwindSafe>;

/// The winner search over a list of regexes. Cheap to search from many threads at once: each
/// takes a cache from a pool.
#[derive(Debug)]
pub struct WinnerSearch {
    dfa: DFA,
    pike: PikeVM,
    caches: Pool<Caches, MakeCaches>,
}

impl WinnerSearch {
    /// Compiles `regexes` (each already in its anchored form, highest priority first) into one
    /// search. The error is the compiler's message.
    pub fn build(regexes: &[String]) -> Result<Self, String> {
        let nfa = thompson::Compiler::new()
            .syntax(syntax::Config::new().utf8(true))
            .configure(
                thompson::Config::new()
                    .utf8(true)
                    .which_captures(WhichCaptures::None)
                    .nfa_size_limit(Some(SET_SIZE_LIMIT_BYTES)),
            )
            .build_many(regexes)
            .map_err(|e| e.to_string())?;
        Self::from_nfa(nfa, WINNER_CACHE_BYTES)
    }

    /// The search of `nfa` with a lazy-DFA cache of `cache_bytes` per thread (at least the
    /// least the lazy DFA can work with).
    fn from_nfa(nfa: NFA, cache_bytes: usize) -> Result<Self, String> {
        let dfa = DFA::builder()
            .configure(
                DFA::config()
                    .match_kind(MatchKind::LeftmostFirst)
                    .cache_capacity(cache_bytes)
                    .skip_cache_capacity_check(true)
                    .minimum_cache_clear_count(None)
                    .unicode_word_boundary(true),
            )
            .build_from_nfa(nfa.clone())
            .map_err(|e| e.to_string())?;
        let pike = PikeVM::builder()
            .configure(PikeVM::config().match_kind(MatchKind::LeftmostFirst))
            .build_from_nfa(nfa)
            .map_err(|e| e.to_string())?;
        let (for_dfa, for_pike) = (dfa.clone(), pike.clone());
        let make: MakeCaches = Box::new(move || Caches {
            dfa: for_dfa.create_cache(),
            pike: for_pike.create_cache(),
        });
        Ok(WinnerSearch {
            dfa,
            pike,
            caches: Pool::new(make),
        })
    }

    /// The index of the first regex that matches `text` at its start, and where its match
    /// ends (the end of that regex's own leftmost-first match; at most `text.len()`), or
    /// `None`.
    pub fn winner(&self, text: &str) -> Option<(usize, usize)> {
        let input = Input::new(text).anchored(Anchored::Yes);
        let mut caches = self.caches.get();
        match self.dfa.try_search_fwd(&mut caches.dfa, &input) {
            Ok(found) => found.map(|m| (m.pattern().as_usize(), m.offset())),
            // Only a quit byte stops this lazy DFA (it never gives up): the PikeVM decides,
            // without the end (the NFA has no capture slots), so the whole text is the bound.
            Err(_) => self
                .pike
                .search_slots(&mut caches.pike, &input, &mut [])
                .map(|p| (p.as_usize(), text.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn search(regexes: &[&str]) -> WinnerSearch {
        WinnerSearch::build(&regexes.iter().map(|r| (*r).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn the_first_regex_in_order_that_matches_at_the_start_wins_with_the_end_of_its_match() {
        let s = search(&[r"^abc", r"^ab", r"^a", r"(?s:.)*?(?:needle)"]);
        assert_eq!(s.winner("abcd"), Some((0, 3)));
        assert_eq!(s.winner("abd"), Some((1, 2)));
        assert_eq!(s.winner("a"), Some((2, 1)));
        assert_eq!(s.winner("x needle"), Some((3, 8)));
        assert_eq!(s.winner("abc needle"), Some((0, 3)));
        assert_eq!(s.winner("xyz"), None);
        assert_eq!(s.winner(""), None);
        // A later, longer match does not beat an earlier pattern.
        let s = search(&[r"^a", r"^abc"]);
        assert_eq!(s.winner("abc"), Some((0, 1)));
    }

    #[test]
    fn a_unicode_word_boundary_next_to_non_ascii_text_is_decided_by_the_pikevm() {
        // The lazy DFA cannot decide `\b` beside a non-ASCII byte: it quits, and the fallback
        // must give the same answer a regex would.
        let s = search(&[r"^(?s:.)*?(?:\bé\b)", r"^é"]);
        let reference = regex::Regex::new(r"\bé\b").unwrap();
        for text in ["é", "aé", "é a", "xéx", " é "] {
            let expected = if reference.is_match(text) {
                Some(0)
            } else if text.starts_with('é') {
                Some(1)
            } else {
                None
            };
            assert_eq!(s.winner(text).map(|w| w.0), expected, "{text:?}");
        }
    }

    #[test]
    fn a_cache_far_too_small_for_the_patterns_is_cleared_not_given_up() {
        // Thousands of distinct literals after a shared prefix, searched with the smallest
        // cache the lazy DFA accepts: it fills again and again, and every answer stays right.
        let regexes: Vec<String> = (0..3000).map(|i| format!(r"^\[MOD{i}\] .*")).collect();
        let nfa = NFA::compiler()
            .configure(NFA::config().which_captures(WhichCaptures::None))
            .build_many(&regexes)
            .unwrap();
        let s = WinnerSearch::from_nfa(nfa, 1).unwrap();
        for i in (0..3000).chain((0..3000).rev()) {
            let text = format!("[MOD{i}] x");
            let input = Input::new(&text).anchored(Anchored::Yes);
            let found = s.dfa.try_search_fwd(&mut s.caches.get().dfa, &input);
            assert_eq!(found.unwrap().map(|m| m.pattern().as_usize()), Some(i));
        }
        assert_eq!(s.winner("[MOD3000] x"), None);
        // The cache did fill, and was cleared rather than given up on (an answer above would
        // then have come from the PikeVM; the lazy DFA is the engine under test).
        assert!(s.caches.get().dfa.clear_count() >= 2);
    }
}
