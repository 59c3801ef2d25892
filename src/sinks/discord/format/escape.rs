//! Escaping for Discord: values from the game are made to show exactly as written, and
//! text is cut to a length without breaking what it is in.
//!
//! [`escape_markdown`] puts a backslash before each of these characters, which makes Discord
//! show it as it is:
//!
//! | Characters | The markup they could make |
//! |------------|----------------------------|
//! | `\` | an escape of its own that would cancel ours: `\*` from a player must stay a backslash and a star, so the backslash is escaped like every other character (which is what "escaping it first" achieves) |
//! | `*` `_` | bold, italic, underline; `*` also starts a list item |
//! | `~` | strike-through |
//! | `\|` | spoilers |
//! | `` ` `` | inline code and code blocks |
//! | `>` | block quotes (`>` and `>>>`) |
//! | `#` | headings (`#`, `##`, `###`) and, with `-`, subtext (`-#`) |
//! | `-` `+` | list items and subtext |
//! | `[` `]` `(` `)` | masked links `[text](url)` |
//! | `<` | user, role and channel mentions (`<@1>`, `<@&1>`, `<#1>`), custom emoji (`<:name:1>`), timestamps (`<t:0:R>`), command mentions (`</cmd:1>`) and `<url>` links: all of them start with `<`, and an escaped `<` shows as text |
//! | `:` | emoji shortcodes (`:skull:`); it also stops `https://` links from being linked and previewed |
//!
//! A `.` is escaped where it would end a numbered list marker: after digits at the start of a
//! line (`1. item`). Elsewhere it is left alone, so `1.2.3` and `name.v2` stay readable.
//!
//! `@everyone` and `@here` (in any case) get a zero-width space (U+200B) after the `@`: the
//! `allowed_mentions` of every body already keeps them from notifying anyone, and this also
//! keeps Discord from highlighting them. [`render`](super::render) applies the same to the
//! finished text, so a mention cannot be assembled from template text and a value either.
//!
//! Explicit bidirectional controls (U+202A–U+202E, U+2066–U+2069) are dropped from values: they
//! cannot make markup, but they would let a player name reverse the template text that follows
//! it. Other characters, zero-width ones included, are kept: alone they make no markup.
//!
//! Places where markdown does not apply get no backslashes: a code block shows its text as is
//! (only a run of three backticks, which would close it, is broken with zero-width spaces), and
//! an embed footer is plain text.
//!
//! [`truncate`] cuts text to a number of characters (counted as Discord counts them, in
//! Unicode scalar values) and ends it with `…`; [`code_block`] cuts inside the fences, so a cut
//! record still shows as code.
//!
//! # How it fails
//!
//! It does not: every input is escaped or cut, and nothing here panics on input.

use std::borrow::Cow;

/// Ends text that was cut.
pub(super) const ELLIPSIS: char = '…';
/// Breaks `@everyone`, `@here` and runs of backticks without showing anything.
pub(super) const ZERO_WIDTH_SPACE: char = '\u{200B}';
/// Opens and closes a code block.
const FENCE: &str = "```";
/// Characters [`code_block`] adds around its text: "```\n" and "\n```".
pub(super) const FENCE_OVERHEAD: usize = 2 * (FENCE.len() + 1);
/// Characters [`escape_markdown`] always puts a backslash before (see the module docs).
const ESCAPED: &[char] = &[
    '\\', '*', '_', '~', '|', '`', '>', '#', '-', '+', '[', ']', '(', ')', '<', ':',
];
/// The mass mentions, lowercase.
const MASS_MENTIONS: &[&str] = &["everyone", "here"];

/// Escapes `text` so that Discord shows it exactly as written: no markdown, no mentions, no
/// custom emoji or timestamps, no links (see the module docs for the set of characters and why),
/// and `@everyone`/`@here` broken with a zero-width space. Explicit bidirectional controls are
/// dropped.
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 4 + 4);
    let mut line = LinePosition::Start;
    for (at, c) in text.char_indices() {
        if is_bidi_control(c) {
            continue;
        }
        if ESCAPED.contains(&c) || (c == '.' && line == LinePosition::Digits) {
            out.push('\\');
        }
        out.push(c);
        if c == '@' && starts_mass_mention(&text[at + c.len_utf8()..]) {
            out.push(ZERO_WIDTH_SPACE);
        }
        line = line.after(c);
    }
    out
}

/// Cuts `text` to at most `max_chars` characters, ending the cut text with `…` (which counts
/// toward the limit). Text that fits is returned as is. With `max_chars == 0` only the empty
/// string fits.
pub fn truncate(text: &str, max_chars: usize) -> Cow<'_, str> {
    if text.char_indices().nth(max_chars).is_none() {
        return Cow::Borrowed(text);
    }
    let Some(keep_chars) = max_chars.checked_sub(1) else {
        return Cow::Owned(String::new());
    };
    let keep_bytes = text
        .char_indices()
        .nth(keep_chars)
        .map_or(text.len(), |(at, _)| at);
    let mut cut = String::with_capacity(keep_bytes + ELLIPSIS.len_utf8());
    cut.push_str(&text[..keep_bytes]);
    cut.push(ELLIPSIS);
    Cow::Owned(cut)
}

/// Puts `text` in a code block (`` ```\n{text}\n``` ``) of at most `max_chars` characters in
/// all. Text that does not fit is cut with `…` inside the fences, so the block is always closed.
/// Runs of backticks in `text` are broken with zero-width spaces, so the text cannot close the
/// block early. Nothing is escaped otherwise: Discord renders no markdown and no mentions in a
/// code block. With `max_chars` below 8 not even the fences fit, and the result is empty.
pub fn code_block(text: &str, max_chars: usize) -> String {
    let Some(budget) = max_chars.checked_sub(FENCE_OVERHEAD) else {
        return String::new();
    };
    fenced(&truncate(&break_backtick_runs(text), budget))
}

/// `text` with every line break replaced by a space, so a value cannot start a line of its own.
pub(super) fn single_line(text: &str) -> Cow<'_, str> {
    if !text.contains(is_line_break) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| if is_line_break(c) { ' ' } else { c })
            .collect(),
    )
}

pub(super) fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Explicit bidirectional embeddings, overrides and isolates.
pub(super) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Whether `rest` (the text after an `@`) starts with `everyone` or `here` in any case, ignoring
/// the bidirectional controls [`escape_markdown`] drops.
fn starts_mass_mention(rest: &str) -> bool {
    MASS_MENTIONS.iter().any(|word| {
        let mut visible = rest.chars().filter(|&c| !is_bidi_control(c));
        word.chars()
            .all(|w| visible.next().is_some_and(|c| c.eq_ignore_ascii_case(&w)))
    })
}

/// `text` with a zero-width space after the `@` of every `@everyone` and `@here`.
pub(super) fn defuse_mass_mentions(text: &str) -> Cow<'_, str> {
    let needs = text
        .char_indices()
        .any(|(at, c)| c == '@' && starts_mass_mention(&text[at + 1..]));
    if !needs {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 3);
    for (at, c) in text.char_indices() {
        out.push(c);
        if c == '@' && starts_mass_mention(&text[at + 1..]) {
            out.push(ZERO_WIDTH_SPACE);
        }
    }
    Cow::Owned(out)
}

/// Where [`escape_markdown`] is within a line, to spot numbered list markers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LinePosition {
    /// At the start of a line, or after only spaces and tabs.
    Start,
    /// After only (indentation and) digits.
    Digits,
    /// Anywhere else.
    Other,
}

impl LinePosition {
    fn after(self, c: char) -> Self {
        match (self, c) {
            (_, c) if is_line_break(c) => LinePosition::Start,
            (LinePosition::Start, ' ' | '\t') => LinePosition::Start,
            (LinePosition::Start | LinePosition::Digits, '0'..='9') => LinePosition::Digits,
            _ => LinePosition::Other,
        }
    }
}

/// `text` with a zero-width space between adjacent backticks, so it holds no "```".
pub(super) fn break_backtick_runs(text: &str) -> Cow<'_, str> {
    if !text.contains("``") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    let mut previous = None;
    for c in text.chars() {
        if c == '`' && previous == Some('`') {
            out.push(ZERO_WIDTH_SPACE);
        }
        out.push(c);
        previous = Some(c);
    }
    Cow::Owned(out)
}

/// `inner` between code block fences; `inner` must hold no "```".
pub(super) fn fenced(inner: &str) -> String {
    let mut out = String::with_capacity(inner.len() + FENCE_OVERHEAD);
    out.push_str(FENCE);
    out.push('\n');
    out.push_str(inner);
    out.push('\n');
    out.push_str(FENCE);
    out
}
