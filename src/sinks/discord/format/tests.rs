//! Tests of Discord formatting: escaping against hostile values, rendering of the shipped
//! templates, request bodies within Discord's limits, and property tests of all three.

use std::sync::Arc;

use proptest::prelude::*;

use serde_json::{Value, json};

use super::body::embed_chars;
use super::escape::ZERO_WIDTH_SPACE;
use super::*;
use crate::event::{FieldValue, LogSource, Timestamp};
use crate::patterns::{PatternSet, load::parse_template, shipped};
use crate::tail::frame::{FramingLimits, frame_all};

/// The characters a value must never bring into the output unescaped. Written out here, not
/// taken from the module, so that dropping one there fails a test.
const METACHARACTERS: &[char] = &[
    '\\', '*', '_', '~', '|', '`', '>', '#', '-', '+', '[', ']', '(', ')', '<', ':',
];

/// 2025-10-08T08:58:34Z.
const TIME: Timestamp = Timestamp(1_759_913_914_000);

fn source(server: &str) -> Arc<LogSource> {
    Arc::new(LogSource {
        server: server.into(),
        path: "console.log".into(),
    })
}

fn event(event_type: &str, severity: Severity, fields: &[(&str, &str)], raw: &str) -> Event {
    Event {
        timestamp: TIME,
        event_type: event_type.into(),
        severity,
        pattern: None,
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).into(), FieldValue::Str((*v).to_owned())))
            .collect(),
        raw: raw.to_owned(),
        message_start: 0,
        source: source("primary"),
        offset: 0,
        trace: None,
    }
}

fn template(source: &str, emoji: Option<&str>, color: Option<u32>) -> DiscordTemplate {
    DiscordTemplate {
        parts: parse_template(source).unwrap_or_else(|e| panic!("{e}")),
        source: source.to_owned(),
        emoji: emoji.map(str::to_owned),
        color,
        webhook: None,
        enabled: true,
        mention_roles: Vec::new(),
    }
}

fn shipped_set() -> PatternSet {
    shipped().unwrap_or_else(|e| panic!("{e}"))
}

fn shipped_template(set: &PatternSet, qualified_name: &str) -> DiscordTemplate {
    set.patterns()
        .iter()
        .find(|p| &*p.qualified_name == qualified_name)
        .and_then(|p| p.discord.clone())
        .unwrap_or_else(|| panic!("no shipped template {qualified_name}"))
}

fn line(item: &Item) -> &str {
    match &item.body {
        ItemBody::Line(text) => text,
        ItemBody::Embed(e) => panic!("expected a line, got {e:?}"),
    }
}

fn embed(item: &Item) -> &Embed {
    match &item.body {
        ItemBody::Embed(e) => e,
        ItemBody::Line(text) => panic!("expected an embed, got {text:?}"),
    }
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// The last 40 characters of `text`, for failure messages.
fn tail(text: &str) -> String {
    let skip = chars(text).saturating_sub(40);
    text.chars().skip(skip).collect()
}

/// Walks text that an escaped value became: every metacharacter must come right after an
/// escaping backslash, and so must a `.` ending digits at the start of a line. Returns the
/// text as Discord shows it (escapes removed), or the first unescaped metacharacter.
fn unescape_checked(escaped: &str) -> Result<String, String> {
    let mut shown = String::new();
    let mut chars = escaped.chars();
    // None: the line has something besides indentation and digits; Some(saw a digit).
    let mut line_digits = Some(false);
    while let Some(c) = chars.next() {
        let (c, was_escaped) = if c == '\\' {
            match chars.next() {
                Some(next) => (next, true),
                None => return Err(format!("dangling backslash in {escaped:?}")),
            }
        } else {
            (c, false)
        };
        let meta = METACHARACTERS.contains(&c) || (c == '.' && line_digits == Some(true));
        if meta && !was_escaped {
            return Err(format!("unescaped {c:?} in {escaped:?}"));
        }
        shown.push(c);
        line_digits = match (line_digits, c) {
            (_, c) if is_line_break(c) => Some(false),
            (Some(false), ' ' | '\t') => Some(false),
            (Some(_), '0'..='9') => Some(true),
            _ => None,
        };
    }
    Ok(shown)
}

/// What a value should look like in the output: one line, no bidi controls, no zero-width
/// spaces (the escaper adds those after `@`, so they are left out on both sides).
fn visible(value: &str) -> String {
    value
        .chars()
        .filter(|&c| !is_bidi_control(c) && c != ZERO_WIDTH_SPACE)
        .map(|c| if is_line_break(c) { ' ' } else { c })
        .collect()
}

fn assert_no_mass_mention(out: &str) {
    let lower = out.to_lowercase();
    assert!(
        !lower.contains("@everyone") && !lower.contains("@here"),
        "mass mention survives in {out:?}"
    );
}

/// Checks a rendered line `out` = `prefix` + escaped `value` + `suffix` (the suffix may be
/// cut off when the line was truncated): the template's own text is intact, nothing of the
/// value is unescaped, it reads as the value, and no mass mention survives.
fn assert_value_escaped(out: &str, prefix: &str, value: &str, suffix: &str) {
    assert!(chars(out) <= CONTENT_MAX, "{} chars", chars(out));
    assert_no_mass_mention(out);
    let rest = out
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{out:?} lost the template prefix {prefix:?}"));
    let cut = chars(out) == CONTENT_MAX && out.ends_with(ELLIPSIS);
    let expected = visible(value);
    if cut {
        // The ellipsis is the last character; the escape walk takes a backslash before it as
        // an escape of the ellipsis, which Discord also does.
        let shown = unescape_checked(rest).unwrap_or_else(|e| panic!("{e}"));
        let shown = shown.strip_suffix(ELLIPSIS).unwrap_or(&shown).to_owned();
        let shown: String = shown.chars().filter(|&c| c != ZERO_WIDTH_SPACE).collect();
        assert!(
            expected.starts_with(&shown),
            "cut value {shown:?} is not a prefix of {expected:?}"
        );
    } else {
        let escaped = rest
            .strip_suffix(suffix)
            .unwrap_or_else(|| panic!("{out:?} lost the template suffix {suffix:?}"));
        let shown = unescape_checked(escaped).unwrap_or_else(|e| panic!("{e}"));
        let shown: String = shown.chars().filter(|&c| c != ZERO_WIDTH_SPACE).collect();
        assert_eq!(shown, expected, "value does not read as itself");
    }
}

/// Hostile player names and chat messages.
fn injection_corpus() -> Vec<String> {
    let mut corpus: Vec<String> = [
        "@everyone",
        "@HERE",
        "@EveryOne look",
        "hi @here!",
        "@@everyone",
        "\\@everyone",
        "@\u{202E}everyone",
        "<@123456789012345678>",
        "<@!123456789012345678>",
        "<@&1>",
        "<#1>",
        "**bold**",
        "__u__",
        "*i* _i_",
        "~~s~~",
        "||spoiler||",
        "> quote",
        ">>> all quoted",
        "# heading",
        "### small",
        "-# subtext",
        "- list",
        "* star list",
        "+ plus list",
        "1. numbered",
        "  42. indented numbered",
        "[click](https://evil.example)",
        "https://evil.example/x",
        "<https://evil.example>",
        "`code`",
        "```",
        "```rust\nfn evil() {}\n```",
        "\\*",
        "\\",
        "\\\\**",
        "<:emoji:1>",
        "<a:anim:2>",
        ":skull:",
        "<t:0:R>",
        "</ban:1>",
        "zero\u{200B}width*\u{200B}*",
        "\u{200D}\u{2060}\u{FEFF}",
        "\u{202E}desrever",
        "\u{2067}isolated\u{2069}",
        "line\n# break\r\n> quote",
        "🎉 party 👨‍👩‍👧 🦀",
        "玩家名字",
        "名前_テスト*",
        "some-name.v2",
        "[brackets]",
        "name [tag]",
        "1.2.3",
        "a|b~c>d<e:f",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    corpus.push("x".repeat(3000));
    corpus.push("*_".repeat(1500));
    corpus.push("@everyone ".repeat(300));
    corpus
}

#[test]
fn escape_markdown_escapes_every_metacharacter() {
    assert_eq!(
        escape_markdown(r"\ * _ ~ | ` > # - + [ ] ( ) < :"),
        r"\\ \* \_ \~ \| \` \> \# \- \+ \[ \] \( \) \< \:"
    );
    assert_eq!(escape_markdown("**bold**"), r"\*\*bold\*\*");
    assert_eq!(escape_markdown("<@123>"), r"\<@123\>");
    assert_eq!(
        escape_markdown("[x](https://e.example)"),
        r"\[x\]\(https\://e.example\)"
    );
}

#[test]
fn escape_markdown_escapes_the_backslash_so_it_cannot_cancel_an_escape() {
    // A user's `\*` becomes a literal backslash and a literal star.
    assert_eq!(escape_markdown(r"\*"), r"\\\*");
    assert_eq!(escape_markdown(r"\\"), r"\\\\");
    assert_eq!(
        unescape_checked(&escape_markdown(r"\*x\")),
        Ok(r"\*x\".into())
    );
}

#[test]
fn escape_markdown_neutralises_everyone_and_here_in_any_case() {
    for text in [
        "@everyone",
        "@EVERYONE",
        "@EveryOne",
        "@here",
        "@HeRe",
        "a@herex",
    ] {
        let out = escape_markdown(text);
        assert_no_mass_mention(&out);
        assert_eq!(out.replace(ZERO_WIDTH_SPACE, ""), text);
    }
    assert_eq!(escape_markdown("@everyone"), "@\u{200B}everyone");
    // A bidi control between `@` and the word is dropped, so the break must still be there.
    assert_eq!(escape_markdown("@\u{202E}here"), "@\u{200B}here");
    // Other `@`s are left alone.
    assert_eq!(escape_markdown("a@b @every one"), "a@b @every one");
}

#[test]
fn escape_markdown_escapes_numbered_list_dots_only_at_line_start() {
    assert_eq!(escape_markdown("1. item"), r"1\. item");
    assert_eq!(escape_markdown("  12. item"), r"  12\. item");
    assert_eq!(escape_markdown("a\n3. b"), "a\n3\\. b");
    assert_eq!(escape_markdown("v1.2.3"), "v1.2.3");
    assert_eq!(escape_markdown("x 1. y"), "x 1. y");
    assert_eq!(escape_markdown("1.2"), r"1\.2");
}

#[test]
fn escape_markdown_keeps_plain_text_and_drops_bidi_controls() {
    for text in [
        "bsalis",
        "玩家名字",
        "🎉👨‍👩‍👧",
        "name.v2 ok!",
        "zero\u{200B}width",
    ] {
        assert_eq!(escape_markdown(text), text);
    }
    assert_eq!(escape_markdown("\u{202E}abc\u{2066}d\u{2069}"), "abcd");
}

#[test]
fn truncate_keeps_text_that_fits_and_cuts_with_an_ellipsis() {
    let fits = "é".repeat(CONTENT_MAX);
    assert!(matches!(truncate(&fits, CONTENT_MAX), Cow::Borrowed(_)));

    let over = "é".repeat(CONTENT_MAX + 1);
    let cut = truncate(&over, CONTENT_MAX);
    assert_eq!(chars(&cut), CONTENT_MAX);
    assert!(cut.ends_with(ELLIPSIS));
    assert_eq!(cut.trim_end_matches(ELLIPSIS), "é".repeat(CONTENT_MAX - 1));

    let crabs = "🦀".repeat(CONTENT_MAX + 1);
    let cut = truncate(&crabs, CONTENT_MAX);
    assert_eq!(chars(&cut), CONTENT_MAX);
    assert!(cut.len() > CONTENT_MAX, "counted in characters, not bytes");
}

#[test]
fn truncate_handles_tiny_limits() {
    assert_eq!(truncate("abc", 0), "");
    assert_eq!(truncate("", 0), "");
    assert_eq!(truncate("abc", 1), "…");
    assert_eq!(truncate("abc", 2), "a…");
    assert_eq!(truncate("abc", 3), "abc");
}

#[test]
fn rendered_lines_of_exactly_2000_and_2001_characters() {
    let set = shipped_set();
    let join = shipped_template(&set, "console/player_join");
    // "👋 **" + name + "** joined the server"
    let overhead = chars("👋 **") + chars("** joined the server");
    let exact = "名".repeat(CONTENT_MAX - overhead);
    let item = render(
        &join,
        &event("player_join", Severity::Info, &[("player", &exact)], ""),
        false,
    );
    assert_eq!(chars(line(&item)), CONTENT_MAX);
    assert!(line(&item).ends_with("** joined the server"));

    let over = "名".repeat(CONTENT_MAX - overhead + 1);
    let item = render(
        &join,
        &event("player_join", Severity::Info, &[("player", &over)], ""),
        false,
    );
    assert_eq!(chars(line(&item)), CONTENT_MAX);
    assert!(line(&item).ends_with(ELLIPSIS));
}

#[test]
fn code_block_is_fenced_and_breaks_backtick_runs() {
    let out = code_block("a```b\n````\n`", DESCRIPTION_MAX);
    assert!(
        out.starts_with("```\n") && out.ends_with("\n```"),
        "{out:?}"
    );
    assert_eq!(out.matches("```").count(), 2, "{out:?}");
    assert_eq!(
        out.replace(ZERO_WIDTH_SPACE, ""),
        "```\na```b\n````\n`\n```"
    );
    // Mentions and markdown are left alone inside.
    assert_eq!(code_block("**x** <@1>", 100), "```\n**x** <@1>\n```");
}

#[test]
fn code_block_cuts_inside_the_fences() {
    let out = code_block(&"ab\n".repeat(5000), DESCRIPTION_MAX);
    assert_eq!(chars(&out), DESCRIPTION_MAX);
    assert!(out.ends_with("…\n```"), "{}", tail(&out));
    assert!(out.starts_with("```\nab\n"));

    let ticks = code_block(&"`".repeat(5000), DESCRIPTION_MAX);
    assert!(chars(&ticks) <= DESCRIPTION_MAX);
    assert_eq!(ticks.matches("```").count(), 2);

    assert_eq!(code_block("", 8), "```\n\n```");
    assert_eq!(code_block("abc", 9), "```\n…\n```");
    assert_eq!(code_block("abc", 7), "");
}

#[test]
fn injection_corpus_through_the_shipped_player_join_template() {
    let set = shipped_set();
    let join = shipped_template(&set, "console/player_join");
    for name in injection_corpus() {
        let e = event("player_join", Severity::Info, &[("player", &name)], "");
        let item = render(&join, &e, false);
        assert_value_escaped(line(&item), "👋 **", &name, "** joined the server");
        let item = render(&join, &e, true);
        assert_value_escaped(
            line(&item),
            "`[primary]` 👋 **",
            &name,
            "** joined the server",
        );
    }
}

#[test]
fn injection_corpus_through_the_shipped_chat_template() {
    let set = shipped_set();
    let chat = shipped_template(&set, "console/chat");
    for hostile in injection_corpus() {
        let as_player = event(
            "chat",
            Severity::Info,
            &[("player", &hostile), ("message", "hi")],
            "",
        );
        assert_value_escaped(
            line(&render(&chat, &as_player, false)),
            "💬 **",
            &hostile,
            "**: hi",
        );
        let as_message = event(
            "chat",
            Severity::Info,
            &[("player", "bob"), ("message", &hostile)],
            "",
        );
        assert_value_escaped(
            line(&render(&chat, &as_message, false)),
            "💬 **bob**: ",
            &hostile,
            "",
        );
    }
}

#[test]
fn a_mass_mention_cannot_be_assembled_from_template_and_value() {
    let t = template("ping @{who}", None, None);
    let item = render(
        &t,
        &event("x", Severity::Info, &[("who", "everyone")], ""),
        false,
    );
    assert_eq!(line(&item), "ping @\u{200B}everyone");
}

#[test]
fn placeholders_take_captures_then_builtins_then_nothing() {
    let t = template(
        "{server}|{event_type}|{severity}|{message}|{missing}|{n}",
        None,
        None,
    );
    let mut e = event("player_join", Severity::Warning, &[], "12:00 [X] hello");
    e.message_start = 10;
    e.fields.push(("n".into(), FieldValue::Int(-3)));
    assert_eq!(
        line(&render(&t, &e, false)),
        r"primary|player\_join|warning|hello||\-3"
    );
    // A capture named like a builtin wins (the shipped chat pattern captures `message`).
    e.fields
        .push(("message".into(), FieldValue::Str("captured".into())));
    assert!(line(&render(&t, &e, false)).contains("|captured|"));
}

#[test]
fn a_template_that_renders_empty_still_says_something() {
    let t = template("{reason}", None, None);
    let item = render(&t, &event("player_kicked", Severity::Info, &[], ""), false);
    assert_eq!(line(&item), r"player\_kicked");
}

#[test]
fn the_server_badge_is_safe_inline_code() {
    let t = template("{player} joined", Some("👋"), None);
    let mut e = event("player_join", Severity::Info, &[("player", "bob")], "");
    e.source = source("a`b\n@everyone");
    let out = render(&t, &e, true);
    assert_eq!(line(&out), "`[ab@\u{200B}everyone]` 👋 bob joined");
}

#[test]
fn lines_and_embeds_are_chosen_by_colour_and_severity() {
    let plain = template("{player} left", Some("🚪"), None);
    let coloured = template("Server is up", Some("🟢"), Some(0x2e_cc71));
    let info = event("player_leave", Severity::Info, &[("player", "bob")], "raw");
    let warning = event(
        "player_kicked",
        Severity::Warning,
        &[("player", "bob")],
        "r",
    );
    let error = event("mod_error", Severity::Error, &[("player", "bob")], "E1\nE2");
    let critical = event("server_crashed", Severity::Critical, &[], "C");

    assert_eq!(line(&render(&plain, &info, false)), "🚪 bob left");
    assert_eq!(line(&render(&plain, &warning, false)), "🚪 bob left");
    assert_eq!(render(&plain, &warning, false).severity, Severity::Warning);

    let up = render(&coloured, &info, true);
    let up = embed(&up);
    assert_eq!(
        *up,
        Embed {
            title: "🟢 Server is up".into(),
            description: None,
            color: Some(0x2e_cc71),
            fields: Vec::new(),
            footer: Some(Footer {
                text: "server primary".into()
            }),
            timestamp: Some("2025-10-08T08:58:34Z".into()),
        }
    );

    let failed = render(&plain, &error, false);
    let failed = embed(&failed);
    assert_eq!(failed.color, Some(COLOR_ERROR));
    assert_eq!(failed.description.as_deref(), Some("```\nE1\nE2\n```"));
    let crashed = render(&plain, &critical, false);
    assert_eq!(embed(&crashed).color, Some(COLOR_ERROR));

    assert_eq!(severity_color(Severity::Warning), COLOR_WARNING);
    assert_eq!(severity_color(Severity::Info), COLOR_INFO);
    assert_eq!(severity_color(Severity::Debug), COLOR_INFO);
}

#[test]
fn embeds_serialise_without_absent_keys() {
    let full = Embed {
        title: "t".into(),
        description: Some("d".into()),
        color: Some(1),
        fields: Vec::new(),
        footer: Some(Footer { text: "f".into() }),
        timestamp: Some("2025-10-08T08:58:34Z".into()),
    };
    assert_eq!(
        serde_json::to_value(&full).unwrap(),
        json!({"title": "t", "description": "d", "color": 1, "footer": {"text": "f"},
               "timestamp": "2025-10-08T08:58:34Z"})
    );
    let bare = Embed {
        title: "t".into(),
        description: None,
        color: None,
        fields: Vec::new(),
        footer: None,
        timestamp: None,
    };
    assert_eq!(serde_json::to_value(&bare).unwrap(), json!({"title": "t"}));
}

#[test]
fn a_real_crash_record_renders_as_a_red_embed_with_the_record_in_a_code_block() {
    let set = shipped_set();
    let log = include_str!("../../../../fixtures/crash-miniloader-15.log");
    let source = source("primary");
    let crash = frame_all(log.as_bytes(), FramingLimits::default())
        .into_iter()
        .map(|record| set.to_event(record, &source, TIME))
        .find(|e| &*e.event_type == "server_crashed")
        .unwrap_or_else(|| panic!("the fixture holds a crash"));
    let pattern = crash.pattern_name().unwrap_or_default();
    let item = render(&shipped_template(&set, pattern), &crash, false);
    assert_eq!(item.severity, Severity::Critical);
    let e = embed(&item);
    assert_eq!(e.color, Some(0xE7_4C3C));
    assert!(
        e.title
            .starts_with("💥 Server crashed: Error while running event")
    );
    assert!(!e.title.contains('\n'));
    assert!(chars(&e.title) <= TITLE_MAX);
    let description = e.description.as_deref().unwrap_or_default();
    assert!(chars(description) <= DESCRIPTION_MAX);
    let first_lines: Vec<&str> = crash.raw.lines().take(RECORD_LINES_SHOWN).collect();
    assert_eq!(
        description,
        format!("```\n{}\n```", first_lines.join("\n")),
        "the record, in a code block"
    );
    assert!(description.contains("MultiplayerManager failed"));
    assert_eq!(
        e.footer.as_ref().map(|f| f.text.as_str()),
        Some("server primary")
    );
}

#[test]
fn a_long_error_record_shows_its_first_lines_and_how_many_more() {
    let raw: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
    let t = template("Mod failed", Some("🧨"), Some(0xE7_4C3C));
    let item = render(
        &t,
        &event("mod_error", Severity::Error, &[], &raw.join("\n")),
        false,
    );
    let expected = format!("```\n{}\n… 5 more lines\n```", raw[..15].join("\n"));
    assert_eq!(embed(&item).description.as_deref(), Some(expected.as_str()));

    let one_more: Vec<String> = (0..16).map(|i| format!("l{i}")).collect();
    let item = render(
        &t,
        &event("mod_error", Severity::Error, &[], &one_more.join("\n")),
        false,
    );
    assert!(
        embed(&item)
            .description
            .as_deref()
            .unwrap_or_default()
            .ends_with("\n… 1 more line\n```")
    );
}

#[test]
fn a_huge_error_record_stays_within_the_description_and_embed_limits() {
    let raw: Vec<String> = (0..1000)
        .map(|i| format!("{i} ``` <@1> **x** {}", "y".repeat(1000)))
        .collect();
    let t = template("Crash: {message}", Some("💥"), None);
    let item = render(
        &t,
        &event("server_crashed", Severity::Critical, &[], &raw.join("\n")),
        false,
    );
    let e = embed(&item);
    let description = e.description.as_deref().unwrap_or_default();
    assert!(chars(description) <= DESCRIPTION_MAX);
    assert!(description.starts_with("```\n0 `\u{200B}`\u{200B}` <@1> **x** y"));
    assert!(
        description.ends_with("…\n… 985 more lines\n```"),
        "{}",
        tail(description)
    );
    assert_eq!(description.matches("```").count(), 2);
    assert!(chars(&e.title) <= TITLE_MAX);
    assert!(embed_chars(e) <= EMBED_TOTAL_MAX);
    assert_eq!(e.color, Some(COLOR_ERROR));
}

fn assert_no_pings(body: &Value) {
    assert_eq!(body["allowed_mentions"], json!({"parse": []}), "{body}");
}

fn line_item(text: &str) -> Item {
    Item {
        severity: Severity::Info,
        body: ItemBody::Line(text.to_owned()),
        trace: None,
        mentions: Vec::new(),
    }
}

fn embed_item(title: &str, description: Option<String>) -> Item {
    Item {
        severity: Severity::Warning,
        trace: None,
        mentions: Vec::new(),
        body: ItemBody::Embed(Embed {
            title: title.to_owned(),
            description,
            color: Some(1),
            fields: Vec::new(),
            footer: Some(Footer {
                text: "server primary".into(),
            }),
            timestamp: None,
        }),
    }
}

/// Sends everything in `items`, body by body.
fn all_bodies(items: &[Item]) -> Vec<(usize, Value)> {
    let mut bodies = Vec::new();
    let mut at = 0;
    while at < items.len() {
        let (taken, body) = build_body(&items[at..], Some("Factorio"));
        assert!(taken >= 1, "no progress at item {at}");
        assert_no_pings(&body);
        at += taken;
        bodies.push((taken, body));
    }
    bodies
}

#[test]
fn sixty_joins_coalesce_into_few_bodies_in_order() {
    let set = shipped_set();
    let join = shipped_template(&set, "console/player_join");
    let names: Vec<String> = (0..60)
        .map(|i| format!("Player{i:02}{}", "x".repeat(70)))
        .collect();
    let items: Vec<Item> = names
        .iter()
        .map(|n| {
            render(
                &join,
                &event("player_join", Severity::Info, &[("player", n)], ""),
                true,
            )
        })
        .collect();
    let bodies = all_bodies(&items);
    assert!(bodies.len() <= 4, "{} bodies", bodies.len());
    assert!(
        bodies.len() >= 3,
        "about 6000 characters do not fit in fewer"
    );
    let mut lines = Vec::new();
    for (taken, body) in &bodies {
        let content = body["content"].as_str().unwrap_or_default();
        assert!(chars(content) <= CONTENT_MAX);
        assert!(body.get("embeds").is_none());
        assert_eq!(body["username"], "Factorio");
        assert_eq!(content.split('\n').count(), *taken);
        lines.extend(content.split('\n').map(str::to_owned));
    }
    assert_eq!(lines.len(), 60);
    for (line, name) in lines.iter().zip(&names) {
        assert_eq!(
            *line,
            format!("`[primary]` 👋 **{name}** joined the server")
        );
    }
}

#[test]
fn twelve_embeds_go_out_as_ten_then_two() {
    let items: Vec<Item> = (0..12)
        .map(|i| embed_item(&format!("e{i}"), None))
        .collect();
    let bodies = all_bodies(&items);
    let counts: Vec<usize> = bodies.iter().map(|(n, _)| *n).collect();
    assert_eq!(counts, vec![10, 2]);
    assert_eq!(bodies[0].1["embeds"].as_array().map(Vec::len), Some(10));
    assert_eq!(bodies[1].1["embeds"][1]["title"], "e11");
    assert!(bodies[0].1.get("content").is_none());
}

#[test]
fn embeds_that_would_pass_the_total_limit_are_split() {
    let big = || Some(code_block(&"z".repeat(3000), DESCRIPTION_MAX));
    let items = vec![
        embed_item("a", big()),
        embed_item("b", big()),
        embed_item("c", None),
    ];
    let bodies = all_bodies(&items);
    let counts: Vec<usize> = bodies.iter().map(|(n, _)| *n).collect();
    assert_eq!(counts, vec![1, 2]);
    for (_, body) in &bodies {
        let total: usize = body["embeds"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                ["title", "description"]
                    .iter()
                    .map(|k| chars(e[k].as_str().unwrap_or_default()))
                    .sum::<usize>()
                    + chars(e["footer"]["text"].as_str().unwrap_or_default())
            })
            .sum();
        assert!(total <= EMBED_TOTAL_MAX, "{total}");
    }
}

#[test]
fn lines_and_embeds_are_never_mixed_and_keep_their_order() {
    let items = vec![
        line_item("one"),
        line_item("two"),
        embed_item("three", None),
        line_item("four"),
    ];
    let bodies = all_bodies(&items);
    let counts: Vec<usize> = bodies.iter().map(|(n, _)| *n).collect();
    assert_eq!(counts, vec![2, 1, 1]);
    assert_eq!(bodies[0].1["content"], "one\ntwo");
    assert_eq!(bodies[1].1["embeds"][0]["title"], "three");
    assert_eq!(bodies[2].1["content"], "four");
}

#[test]
fn bodies_always_forbid_pings_and_carry_a_valid_username() {
    let (taken, body) = build_body(&[], None);
    assert_eq!(taken, 0);
    assert_eq!(body, json!({"allowed_mentions": {"parse": []}}));

    let items = [line_item("hi")];
    let (_, body) = build_body(&items, Some("n".repeat(100).as_str()));
    assert_no_pings(&body);
    assert_eq!(
        chars(body["username"].as_str().unwrap_or_default()),
        USERNAME_MAX
    );
    let (_, body) = build_body(&items, Some("   "));
    assert!(body.get("username").is_none());
    let (_, body) = build_body(&items, None);
    assert!(body.get("username").is_none());
    assert_eq!(
        body,
        json!({"content": "hi", "allowed_mentions": {"parse": []}})
    );
}

#[test]
fn build_body_cuts_items_it_did_not_render() {
    let (taken, body) = build_body(&[line_item(&"é".repeat(5000)), line_item("x")], None);
    assert_eq!(taken, 1);
    assert_eq!(
        chars(body["content"].as_str().unwrap_or_default()),
        CONTENT_MAX
    );

    let (_, body) = build_body(&[line_item("  "), line_item("")], None);
    assert_eq!(body["content"], "…");

    let mut huge = embed_item(
        &"t".repeat(1000),
        Some(code_block(&"d".repeat(9000), 20_000)),
    );
    if let ItemBody::Embed(e) = &mut huge.body {
        e.footer = Some(Footer {
            text: "f".repeat(3000),
        });
    }
    let (taken, body) = build_body(&[huge.clone(), huge], None);
    assert_eq!(taken, 1);
    let e = &body["embeds"][0];
    let title = chars(e["title"].as_str().unwrap_or_default());
    let description = e["description"].as_str().unwrap_or_default();
    let footer = chars(e["footer"]["text"].as_str().unwrap_or_default());
    assert_eq!(title, TITLE_MAX);
    assert_eq!(chars(description), DESCRIPTION_MAX);
    assert!(description.starts_with("```\n") && description.ends_with("…\n```"));
    assert!(footer <= FOOTER_MAX);
    assert_eq!(title + chars(description) + footer, EMBED_TOTAL_MAX);
}

/// Text rich in what escaping has to get right.
fn hostile_text() -> impl Strategy<Value = String> {
    let alphabet = vec![
        '\\', '*', '_', '~', '|', '`', '>', '#', '-', '+', '[', ']', '(', ')', '<', ':', '.', '@',
        'e', 'v', 'r', 'y', 'o', 'n', 'h', 'E', 'H', '1', '9', ' ', '\t', '\n', '\r', '\u{202E}',
        '\u{2066}', '\u{200B}', 'é', '名', '🦀',
    ];
    prop::collection::vec(prop::sample::select(alphabet), 0..120)
        .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #[test]
    fn escaped_text_has_no_unescaped_markup_and_reads_as_itself(text in hostile_text()) {
        let out = escape_markdown(&text);
        assert_no_mass_mention(&out);
        let shown = unescape_checked(&out).map_err(TestCaseError::fail)?;
        let strip = |s: &str| -> String {
            s.chars().filter(|&c| c != ZERO_WIDTH_SPACE && !is_bidi_control(c)).collect()
        };
        prop_assert_eq!(strip(&shown), strip(&text));
    }

    #[test]
    fn truncation_and_code_blocks_respect_their_limits(
        text in hostile_text(),
        max in 0usize..60,
    ) {
        let cut = truncate(&text, max);
        prop_assert!(chars(&cut) <= max);
        prop_assert!(text.starts_with(cut.trim_end_matches(ELLIPSIS)));
        let block = code_block(&text, max);
        prop_assert!(chars(&block) <= max);
        if max >= FENCE_OVERHEAD {
            prop_assert!(block.starts_with("```\n") && block.ends_with("\n```"));
            prop_assert_eq!(block.matches("```").count(), 2);
        }
    }

    #[test]
    fn rendered_items_are_within_discords_limits(
        value in hostile_text(),
        repeat in 1usize..60,
        severity in prop::sample::select(vec![
            Severity::Debug, Severity::Info, Severity::Warning, Severity::Error,
            Severity::Critical,
        ]),
    ) {
        let value = value.repeat(repeat);
        let t = template("**{player}** says {message}", Some("💬"), None);
        let e = event("chat", severity, &[("player", &value), ("message", &value)], &value);
        let item = render(&t, &e, true);
        match &item.body {
            ItemBody::Line(text) => {
                prop_assert!(chars(text) <= CONTENT_MAX);
                assert_no_mass_mention(text);
            }
            ItemBody::Embed(embed) => {
                prop_assert!(chars(&embed.title) <= TITLE_MAX);
                assert_no_mass_mention(&embed.title);
                let description = embed.description.as_deref().unwrap_or_default();
                prop_assert!(chars(description) <= DESCRIPTION_MAX);
                prop_assert_eq!(description.matches("```").count(), 2);
                prop_assert!(embed_chars(embed) <= EMBED_TOTAL_MAX);
            }
        }
    }
}

/// Issue 11, item 6: chat with Factorio rich-text tags reads well on Discord, and the event keeps
/// the tags verbatim.
#[test]
fn rich_text_in_chat_is_readable_on_discord_and_verbatim_in_the_event() {
    let set = shipped_set();
    let source = source("primary");
    let raw = "2025-10-08 08:58:34 [CHAT] bob: need [item=iron-plate] at [gps=1,2] [color=red]now[/color] [special-item=0eNqVkt1u]";
    let chat = frame_all(format!("{raw}\n").as_bytes(), FramingLimits::default())
        .into_iter()
        .map(|record| set.to_event(record, &source, TIME))
        .next()
        .unwrap_or_else(|| panic!("one event"));
    assert_eq!(&*chat.event_type, "chat");
    assert_eq!(chat.raw, raw);
    let message = chat
        .field("message")
        .and_then(|m| m.as_str())
        .unwrap_or_default();
    assert!(
        message.contains("[item=iron-plate] at [gps=1,2]"),
        "{message}"
    );
    let pattern = chat.pattern_name().unwrap_or_default();
    let item = render(&shipped_template(&set, pattern), &chat, false);
    let shown = line(&item);
    assert!(
        shown.contains(r"need iron\-plate at 📍1,2 now \(blueprint\)"),
        "{shown}"
    );
    assert!(!shown.contains("item="), "{shown}");
}

const ROLE_A: &str = "123456789012345678";
const ROLE_B: &str = "98765432109876543";

fn pinging(mut item: Item, roles: &[&str]) -> Item {
    item.mentions = roles.iter().map(|r| (*r).to_owned()).collect();
    item
}

#[test]
fn role_pings_start_the_message_and_are_the_only_mentions_allowed() {
    let items = [
        pinging(
            line_item("crash 1"),
            &[ROLE_A, ROLE_B, ROLE_A, "not-a-role"],
        ),
        pinging(
            line_item("crash 2"),
            &[ROLE_A, ROLE_B, ROLE_A, "not-a-role"],
        ),
        line_item("join"),
    ];
    let (n, body) = build_body(&items, None);
    assert_eq!(n, 2, "only items pinging the same roles share a message");
    assert_eq!(
        body["content"],
        format!("<@&{ROLE_A}> <@&{ROLE_B}>\ncrash 1\ncrash 2")
    );
    assert_eq!(
        body["allowed_mentions"],
        json!({"parse": [], "roles": [ROLE_A, ROLE_B]})
    );
    let (n, body) = build_body(&items[2..], None);
    assert_eq!(n, 1);
    assert_eq!(body["content"], "join");
    assert_eq!(body["allowed_mentions"], json!({"parse": []}));

    // Embeds get the pings as their content; a long line still fits with them.
    let embed = pinging(embed_item("Server crashed", None), &[ROLE_A]);
    let (_, body) = build_body(&[embed], None);
    assert_eq!(body["content"], format!("<@&{ROLE_A}>"));
    assert_eq!(body["embeds"].as_array().unwrap().len(), 1);
    let long = pinging(line_item(&"x".repeat(CONTENT_MAX)), &[ROLE_A]);
    let (_, body) = build_body(&[long], None);
    let content = body["content"].as_str().unwrap();
    assert!(content.starts_with(&format!("<@&{ROLE_A}>\nxxx")));
    assert_eq!(content.chars().count(), CONTENT_MAX);
}

#[test]
fn embed_fields_are_kept_within_discords_limits() {
    let mut item = embed_item("t", Some("d".repeat(DESCRIPTION_MAX)));
    if let ItemBody::Embed(e) = &mut item.body {
        e.fields = (0..30)
            .map(|i| EmbedField {
                name: format!("n{i}{}", "N".repeat(FIELD_NAME_MAX)),
                value: "v".repeat(FIELD_VALUE_MAX + 5),
                inline: true,
            })
            .collect();
    }
    let (_, body) = build_body(&[item], None);
    let embed = &body["embeds"][0];
    let fields = embed["fields"].as_array().unwrap();
    assert!(!fields.is_empty() && fields.len() <= FIELDS_MAX);
    let mut total = embed["title"].as_str().unwrap().chars().count()
        + embed["description"].as_str().unwrap().chars().count()
        + embed["footer"]["text"].as_str().unwrap().chars().count();
    for f in fields {
        let (name, value) = (f["name"].as_str().unwrap(), f["value"].as_str().unwrap());
        assert!(name.chars().count() <= FIELD_NAME_MAX && value.chars().count() <= FIELD_VALUE_MAX);
        total += name.chars().count() + value.chars().count();
    }
    assert!(total <= EMBED_TOTAL_MAX, "{total}");
}
