//! A realistic Factorio log for benchmarks: mostly engine lines that no pattern matches, some
//! lifecycle lines, console events, bare output and a multi-line Lua crash now and then, with
//! player names that contain `-`, `.`, brackets and non-ASCII letters. Deterministic: the same
//! line count gives the same bytes.
//!
//! Shares per 1000 records: 550 unmatched engine lines, 150 engine state changes and saves,
//! 20 warnings, 10 errors, 240 console lines (chat, join, leave, command), 25 bare lines and
//! 5 five-line crash records.

/// A deterministic pseudo-random sequence (xorshift), so every run measures the same input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const PLAYERS: &[&str] = &[
    "bsalis",
    "Mattie",
    "foo-bar",
    "-Squigly-",
    "grilledham.",
    "Ülrich_[RU]",
    "kacperion",
];

/// Engine lines as real servers write them, with their share of a busy server's log. Most
/// match no pattern.
pub fn mix(lines: usize) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut out = String::new();
    let mut t = 0.0f64;
    out.push_str("   0.000 2025-10-07 08:22:06; Factorio 2.0.60 (build 83512, linux64, headless, space-age)\n");
    let mut n = 1;
    while n < lines {
        t += 0.0125;
        let secs = t;
        let tick = rng.next() % 10_000_000;
        let peer = rng.next() % 60;
        let p = rng.pick(PLAYERS);
        let r = rng.next() % 1000;
        let line = if r < 550 {
            // Unmatched engine chatter.
            match rng.next() % 6 {
                0 => format!(
                    "{secs:8.3} Info ServerSynchronizer.cpp:627: nextHeartbeatSequenceNumber({tick}) removing peer({peer})."
                ),
                1 => format!(
                    "{secs:8.3} Info ServerMultiplayerManager.cpp:1064: Disconnect notification for peer ({peer})"
                ),
                2 => format!(
                    "{secs:8.3} Info GameActionHandler.cpp:4996: UpdateTick ({tick}) processed PlayerJoinGame peerID({peer}) playerIndex(0) mode(connect)"
                ),
                3 => format!(
                    "{secs:8.3} Info ServerRouter.cpp:425: Replying to connectionRequest for address(IP ADDR:({{188.114.178.239:62207}}))."
                ),
                4 => format!(
                    "{secs:8.3} Info ServerMultiplayerManager.cpp:1024: UpdateTick({tick}) Serving map(/opt/factorio/temp/mp-save-0.zip) for peer({peer}) size(39779625) auxiliary(207) crc(8809669)"
                ),
                _ => format!("{secs:8.3} Checksum for script __level__/control.lua: {tick}"),
            }
        } else if r < 700 {
            // Matched engine lines: peer and server state changes, saves.
            match rng.next() % 4 {
                0 => format!(
                    "{secs:8.3} Info ServerMultiplayerManager.cpp:946: updateTick({tick}) received stateChanged peerID({peer}) oldState(ConnectedLoadingMap) newState(TryingToCatchUp)"
                ),
                1 => format!(
                    "{secs:8.3} Info ServerMultiplayerManager.cpp:814: updateTick({tick}) changing state from(InGame) to(InGameSavingMap)"
                ),
                2 => format!(
                    "{secs:8.3} Info AppManager.cpp:287: Saving to _autosave{} (non-blocking).",
                    peer % 5
                ),
                _ => format!("{secs:8.3} Info AppManagerStates.cpp:1941: Saving finished"),
            }
        } else if r < 720 {
            format!(
                "{secs:8.3} Warning ServerSynchronizer.cpp:113: nextHeartbeatSequenceNumber({tick}) peer({peer}) wants a heartbeat"
            )
        } else if r < 730 {
            format!(
                "{secs:8.3} Error ServerMultiplayerManager.cpp:633: Matching server connection failed: Error when creating server game: Missing token."
            )
        } else if r < 970 {
            let ts = "2025-10-07 08:22:06";
            match rng.next() % 10 {
                0..=5 => format!("{ts} [CHAT] {p}: anyone got iron plates? [gps=-154,118]"),
                6 | 7 => format!("{ts} [JOIN] {p} joined the game"),
                8 => format!("{ts} [LEAVE] {p} left the game"),
                _ => format!("{ts} [COMMAND] <server> (command): rcon.print(game.tick)"),
            }
        } else if r < 995 {
            rng.pick(&[
                "Players (0):",
                "[PLAYER-JOIN]d64",
                "[DATA-GET]4 {data_set:\"colors\",key:\"d64\"}",
                "2.0.77",
            ])
            .to_owned()
        } else {
            // A crash: a multi-line record of 5 physical lines.
            n += 4;
            format!(
                "{secs:8.3} Error MainLoop.cpp:1488: Exception at tick {tick}: The mod BotBridge (0.0.1) caused a non-recoverable error.\nError while running event BotBridge::on_nth_tick(60)\nstack traceback:\n\t[C]: in function '__index'\n\t__BotBridge__/control.lua:1326: in function 'sample_bots'"
            )
        };
        out.push_str(&line);
        out.push('\n');
        n += 1;
    }
    out.into_bytes()
}
