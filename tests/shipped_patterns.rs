//! The shipped patterns on lines that no public log shows verbatim.
//!
//! The fixtures (and their golden files) cover every format for which a real line exists. Some
//! formats are known only from the code that writes them or from other parsers' tests: Factorio's
//! `[UNBANNED]`, `[PROMOTE]`, `[DEMOTE]`, `[SHOUT]` and `[WHISPER]` console lines, and the
//! events-logger and FactoCord mod lines. The lines below follow those formats exactly; each case
//! names where the format comes from.

use factorio_isr::event::{BUILT_IN_EVENT_TYPES, FieldValue};
use factorio_isr::patterns::{self, PatternSet};

fn set() -> PatternSet {
    patterns::shipped().unwrap_or_else(|e| panic!("{e}"))
}

fn s(v: &str) -> FieldValue {
    FieldValue::Str(v.to_owned())
}

/// Asserts the event type and that every given field has the given value.
fn assert_event(set: &PatternSet, line: &str, event_type: &str, fields: &[(&str, FieldValue)]) {
    let m = set
        .match_text(line)
        .unwrap_or_else(|| panic!("no pattern matched {line:?}"));
    assert_eq!(&*m.pattern.event_type, event_type, "{line:?}");
    for (k, v) in fields {
        let got = m.fields.iter().find(|(n, _)| &**n == *k).map(|(_, v)| v);
        assert_eq!(got, Some(v), "field `{k}` of {line:?}: {:?}", m.fields);
    }
}

#[test]
fn console_admin_lines_from_parser_formats() {
    let set = set();
    // Format: `[UNBANNED] <player> was unbanned by <by>.` (Rust and TS bot parsers; clusterio).
    assert_event(
        &set,
        "2024-01-02 03:04:05 [UNBANNED] grilled.ham was unbanned by admin.",
        "player_unbanned",
        &[("player", s("grilled.ham")), ("by", s("admin"))],
    );
    // Format: `[PROMOTE] <player> was promoted to admin by <by>.` and the offline variant.
    assert_event(
        &set,
        "2024-01-02 03:04:05 [PROMOTE] -Squigly- was promoted to admin by <server>.",
        "player_promoted",
        &[("player", s("-Squigly-")), ("by", s("<server>"))],
    );
    assert_event(
        &set,
        "2024-01-02 03:04:05 [PROMOTE] bob was promoted to admin by alice. They will be promoted upon joining the game.",
        "player_promoted",
        &[("player", s("bob")), ("by", s("alice"))],
    );
    assert_event(
        &set,
        "2024-01-02 03:04:05 [DEMOTE] bob was demoted from admin by alice.",
        "player_demoted",
        &[("player", s("bob")), ("by", s("alice"))],
    );
    // A kick without a reason.
    assert_event(
        &set,
        "2024-01-02 03:04:05 [KICK] bob was kicked by alice.",
        "player_kicked",
        &[("player", s("bob")), ("by", s("alice"))],
    );
    // A ban without a reason tail (clusterio: "default to no reason").
    assert_event(
        &set,
        "2024-01-02 03:04:05 [BAN] bob was banned by alice.",
        "player_banned",
        &[("player", s("bob")), ("by", s("alice"))],
    );
}

#[test]
fn shout_and_whisper_like_chat() {
    let set = set();
    // `[SHOUT]` is handled like `[CHAT]` by ChatWire and FactorioWebInterface.
    assert_event(
        &set,
        "2024-01-02 03:04:05 [SHOUT] Ülrich_[RU] (shout): to all forces!",
        "shout",
        &[
            ("player", s("Ülrich_[RU]")),
            ("message", s("to all forces!")),
        ],
    );
    assert_event(
        &set,
        "2024-01-02 03:04:05 [SHOUT] bob: hi: there",
        "shout",
        &[("player", s("bob")), ("message", s("hi: there"))],
    );
    assert_event(
        &set,
        "2024-01-02 03:04:05 [WHISPER] bob to alice: psst",
        "whisper",
        &[
            ("player", s("bob")),
            ("recipient", s("alice")),
            ("message", s("psst")),
        ],
    );
    assert_event(
        &set,
        "2024-01-02 03:04:05 [CHAT] 玩家一号 [Dog]: 你好",
        "chat",
        &[
            ("player", s("玩家一号")),
            ("player_tag", s("Dog")),
            ("message", s("你好")),
        ],
    );
}

#[test]
fn events_logger_lines_from_its_source() {
    let set = set();
    // events-logger `log("[" .. EVENT .. "] " .. message)`, written by Lua log() as
    // `<secs> Script @__events-logger__/<file>.lua:<n>: …`.
    let p = "1234.567 Script @__events-logger__/el_helpers.lua:41: ";
    assert_event(
        &set,
        &format!("{p}[RESEARCH_STARTED] steel-processing 1"),
        "research_started",
        &[
            ("technology", s("steel-processing")),
            ("level", FieldValue::Int(1)),
        ],
    );
    assert_event(
        &set,
        &format!("{p}[RESEARCH_STARTED] mining-productivity no-level"),
        "research_started",
        &[("technology", s("mining-productivity"))],
    );
    assert_event(
        &set,
        &format!("{p}[DIED] PVE:foo-bar small-biter"),
        "player_died",
        &[("player", s("foo-bar")), ("cause", s("small-biter"))],
    );
    assert_event(
        &set,
        &format!("{p}[DIED] foo-bar PVP"),
        "player_died",
        &[("player", s("foo-bar")), ("cause", s("PVP"))],
    );
    assert_event(
        &set,
        &format!("{p}[DIED] ambient damagefoo-bar - ambient damage"),
        "player_died",
        &[("player", s("foo-bar")), ("cause", s("ambient damage"))],
    );
    // The second line events-logger writes for a PvE death is not a second death.
    let second = format!("{p}[DIED] foo-bar PVE");
    assert_ne!(
        set.match_text(&second)
            .map(|m| m.pattern.event_type.to_string()),
        Some("player_died".to_owned())
    );
    assert_event(
        &set,
        &format!("{p}[ROCKET_LAUNCHED]  from rocket-silo at -12.5, 40"),
        "rocket_launched",
        &[
            ("silo", s("rocket-silo")),
            ("x", FieldValue::Float(-12.5)),
            ("y", FieldValue::Float(40.0)),
        ],
    );
    assert_event(
        &set,
        &format!("{p}[ACHIEVEMENT_GAINED] 113by Mattie"),
        "achievement",
        &[("player", s("Mattie")), ("achievement", s("113"))],
    );
}

#[test]
fn factocord_deaths() {
    let set = set();
    // FactoCord-3.0 control.lua: localised_print with the fake zero date.
    assert_event(
        &set,
        "0000-00-00 00:00:00 [DISCORD] **bob** was killed by small-biter.",
        "player_died",
        &[("player", s("bob")), ("cause", s("small-biter"))],
    );
}

#[test]
fn mod_lines_cannot_be_faked_from_chat() {
    let set = set();
    for line in [
        "2024-01-02 03:04:05 [CHAT] bob: [FactoriGOChatBot]: \"1 [PLAYER_DIED:alice]\"",
        "2024-01-02 03:04:05 [CHAT] bob: 1.000 Script @__events-logger__/x.lua:1: [DIED] PVE:alice biter",
        "2024-01-02 03:04:05 [CHAT] bob: 0000-00-00 00:00:00 [DISCORD] alice was killed by bob.",
        "2024-01-02 03:04:05 [CHAT] bob:     1.000 Goodbye",
    ] {
        assert_event(&set, line, "chat", &[("player", s("bob"))]);
    }
}

#[test]
fn every_built_in_event_type_has_a_shipped_pattern() {
    let set = set();
    let types = set.event_types();
    for t in BUILT_IN_EVENT_TYPES {
        assert!(
            types.contains_key(t),
            "no enabled shipped pattern produces `{t}`"
        );
    }
}
