//! Framing: bytes of a file → lines → records.
//!
//! [`LineFramer`] cuts the byte stream of one file into lines with `memchr`, whatever the chunk
//! boundaries are: a partial last line is held until its newline arrives, `\r\n` loses its
//! `\r`, a UTF-8 byte-order mark at the start of the file is skipped, and a line longer than
//! `max_line_bytes` is cut there (on a UTF-8 boundary); the rest of it, up to its newline, is
//! discarded without being buffered and counted in [`FrameStats`]. Memory per file is bounded
//! by `max_line_bytes`.
//!
//! [`RecordAssembler`] joins lines into records. A record is one line, except for an *error
//! record*: a Lua crash spans many physical lines and only its first carries a prefix. A record
//! is an error record when its first line is an engine line at level `Error`, a line with an
//! unclosed `MultiplayerManager failed: "…`, or a bare `Error while running event …` /
//! `The mod … caused a non-recoverable error.` line. While one is open, each following line
//! without an engine or console prefix (traceback frames, `stack traceback:`, empty lines, the
//! rest of the quoted message) joins it, except a mod's own `[TAG]` print line. A quoted
//! failure message ends with the line that closes its quote. A line without a prefix when no
//! error record is open is a record of its own. Records are capped at `max_record_lines` and
//! `max_record_bytes`: past that the record is emitted and the next line starts a new one.
//!
//! Only an open error record is ever held back, so every other line is emitted as soon as its
//! newline is read; the tailer calls [`RecordAssembler::flush`] when a file goes quiet or ends.
//!
//! The assembler also gives every record its time: a console line's own date, an engine line's
//! uptime added to the date of the last run header (`0.000 <date>; Factorio …`) seen in the same
//! file, or `None` when neither is known (the caller uses the time it read the bytes). Dates
//! are wall-clock times read in the file's time zone ([`LocalClock`]); engine seconds are real
//! elapsed time, added to the header's instant, so a run that crosses a daylight-saving change
//! keeps counting evenly.
//!
//! Bytes are decoded lossily: invalid UTF-8 becomes U+FFFD and is counted; no line is dropped.
//! Nothing here returns an error.

use super::shape::{self, EngineLevel, Shape};
use super::zone::LocalClock;

/// Default for [`FramingLimits::max_line_bytes`]: 1 MiB.
pub const fn default_max_line_bytes() -> usize {
    1024 * 1024
}

/// Default for [`FramingLimits::max_record_lines`].
pub const fn default_max_record_lines() -> usize {
    500
}

/// Default for [`FramingLimits::max_record_bytes`]: 256 KiB.
pub const fn default_max_record_bytes() -> usize {
    256 * 1024
}

/// Bounds on lines and multi-line records: the `[framing]` section of the config file
/// (checked by [`FramingLimits::validate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FramingLimits {
    /// A line longer than this many bytes is cut to it; the rest of the line is dropped and
    /// counted. Default 1 MiB.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// A multi-line error record is closed after this many lines. Default 500.
    #[serde(default = "default_max_record_lines")]
    pub max_record_lines: usize,
    /// A multi-line error record is closed after this many bytes. Default 256 KiB.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
}

impl Default for FramingLimits {
    fn default() -> Self {
        FramingLimits {
            max_line_bytes: default_max_line_bytes(),
            max_record_lines: default_max_record_lines(),
            max_record_bytes: default_max_record_bytes(),
        }
    }
}

/// Counters of what framing saw, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Lines framed (a cut line counts once).
    pub lines: u64,
    /// Bytes consumed, newlines included.
    pub bytes: u64,
    /// Lines longer than `max_line_bytes`.
    pub lines_cut: u64,
    /// Bytes dropped from cut lines.
    pub bytes_cut: u64,
    /// Lines that held invalid UTF-8.
    pub lines_invalid_utf8: u64,
}

impl FrameStats {
    /// What was counted since `earlier`, an earlier snapshot of the same counters.
    pub fn since(self, earlier: FrameStats) -> FrameStats {
        FrameStats {
            lines: self.lines - earlier.lines,
            bytes: self.bytes - earlier.bytes,
            lines_cut: self.lines_cut - earlier.lines_cut,
            bytes_cut: self.bytes_cut - earlier.bytes_cut,
            lines_invalid_utf8: self.lines_invalid_utf8 - earlier.lines_invalid_utf8,
        }
    }
}

/// One physical line, borrowed from the framer's input or its partial-line buffer.
#[derive(Debug)]
pub struct Line<'a> {
    /// Byte offset of the line's first byte in the file.
    pub offset: u64,
    /// Byte offset just past the line's newline.
    pub end_offset: u64,
    /// The line's bytes without `\n` / `\r\n` (and without a leading BOM).
    pub bytes: &'a [u8],
}

/// Cuts one file's bytes into lines. See the module docs.
#[derive(Debug)]
pub struct LineFramer {
    max_line_bytes: usize,
    /// Bytes of a line whose newline has not arrived yet (at most `max_line_bytes`).
    partial: Vec<u8>,
    /// File offset of the first byte of `partial` (or of the next byte when it is empty).
    line_start: u64,
    /// File offset of the next byte to be pushed.
    next_offset: u64,
    /// Bytes dropped from the current over-long line.
    dropping: u64,
    stats: FrameStats,
}

impl LineFramer {
    /// A framer for a file read from `start_offset` (0 for the start of the file).
    pub fn new(max_line_bytes: usize, start_offset: u64) -> Self {
        LineFramer {
            max_line_bytes: max_line_bytes.max(1),
            partial: Vec::new(),
            line_start: start_offset,
            next_offset: start_offset,
            dropping: 0,
            stats: FrameStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    /// File offset of the next byte to be pushed: how far the file has been read.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Offset just past the last complete line handed out: where a restart must resume.
    pub fn consumed_offset(&self) -> u64 {
        self.line_start
    }

    /// Bytes held for a line whose newline has not arrived.
    pub fn pending_bytes(&self) -> usize {
        self.partial.len()
    }

    /// Feeds the next bytes of the file and hands every completed line to `emit`.
    pub fn push(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(Line<'_>)) {
        while !chunk.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(nl) => {
                    let (head, rest) = (&chunk[..nl], &chunk[nl + 1..]);
                    self.next_offset += nl as u64 + 1;
                    if self.partial.is_empty() && self.dropping == 0 {
                        let end = head.len().min(self.max_line_bytes);
                        let cut = (head.len() - end) as u64;
                        self.finish_line(&head[..end], cut, emit);
                    } else {
                        self.append_partial(head);
                        let partial = std::mem::take(&mut self.partial);
                        let cut = self.dropping;
                        self.finish_line(&partial, cut, emit);
                        self.partial = partial;
                        self.partial.clear();
                    }
                    chunk = rest;
                }
                None => {
                    self.next_offset += chunk.len() as u64;
                    self.append_partial(chunk);
                    chunk = &[];
                }
            }
        }
    }

    /// Hands out a last line that has no newline (the end of a file that will not grow).
    pub fn finish(&mut self, emit: &mut impl FnMut(Line<'_>)) {
        if self.partial.is_empty() && self.dropping == 0 {
            return;
        }
        let partial = std::mem::take(&mut self.partial);
        let cut = self.dropping;
        self.finish_line(&partial, cut, emit);
        self.partial = partial;
        self.partial.clear();
    }

    /// Forgets a held partial line (the file was truncated or replaced) and restarts at `offset`.
    pub fn reset(&mut self, offset: u64) {
        self.partial.clear();
        self.dropping = 0;
        self.line_start = offset;
        self.next_offset = offset;
    }

    fn append_partial(&mut self, bytes: &[u8]) {
        let room = self.max_line_bytes - self.partial.len();
        let take = bytes.len().min(room);
        self.partial.extend_from_slice(&bytes[..take]);
        self.dropping += (bytes.len() - take) as u64;
    }

    fn finish_line(&mut self, kept: &[u8], cut: u64, emit: &mut impl FnMut(Line<'_>)) {
        let offset = self.line_start;
        let end_offset = self.next_offset;
        self.line_start = end_offset;
        self.dropping = 0;
        let mut bytes = kept;
        if cut > 0 {
            self.stats.lines_cut += 1;
            self.stats.bytes_cut += cut;
            // Cut on a UTF-8 boundary so the kept part does not end in a broken character.
            bytes = trim_partial_char(bytes);
        } else if let Some(stripped) = bytes.strip_suffix(b"\r") {
            bytes = stripped;
        }
        if offset == 0 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        self.stats.lines += 1;
        self.stats.bytes += end_offset - offset;
        emit(Line {
            offset,
            end_offset,
            bytes,
        });
    }
}

/// Drops an incomplete UTF-8 sequence at the end of `b` (at most 3 bytes).
fn trim_partial_char(b: &[u8]) -> &[u8] {
    let n = b.len();
    for back in 1..=3.min(n) {
        let c = b[n - back];
        if c & 0b1100_0000 == 0b1000_0000 {
            continue; // continuation byte: look further back for the lead byte
        }
        let need = if c & 0b1110_0000 == 0b1100_0000 {
            2
        } else if c & 0b1111_0000 == 0b1110_0000 {
            3
        } else if c & 0b1111_1000 == 0b1111_0000 {
            4
        } else {
            1
        };
        return if need > back { &b[..n - back] } else { b };
    }
    b
}

pub use crate::event::Record;

/// Why an open error record ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpenUntil {
    /// At the next line with a prefix.
    Prefixed,
    /// At the line that closes the quote of `MultiplayerManager failed: "`.
    QuoteCloses,
}

/// Joins lines into records. See the module docs.
#[derive(Debug)]
pub struct RecordAssembler {
    limits: FramingLimits,
    open: Option<(Record, OpenUntil)>,
    run_start_ms: Option<i64>,
    invalid_utf8_lines: u64,
    clock: LocalClock,
    /// The time of the last record that had one (a repeated wall-clock hour is read forward).
    last_time_ms: Option<i64>,
}

impl RecordAssembler {
    /// An assembler for one file whose dates are UTC.
    pub fn new(limits: FramingLimits) -> Self {
        RecordAssembler {
            limits,
            open: None,
            run_start_ms: None,
            invalid_utf8_lines: 0,
            clock: LocalClock::default(),
            last_time_ms: None,
        }
    }

    /// Reads the file's dates with `clock` (its server's time zone).
    pub fn with_clock(mut self, clock: LocalClock) -> Self {
        self.clock = clock;
        self
    }

    /// When `line` is a run header: its date in ms since the epoch, read in the file's zone.
    pub fn run_header_ms(&mut self, line: &[u8]) -> Option<i64> {
        match shape::classify(line) {
            Shape::Engine {
                run_start_ms: Some(wall_ms),
                ..
            } => Some(self.clock.to_utc_ms(wall_ms, None)),
            _ => None,
        }
    }

    /// Lines that held invalid UTF-8 so far.
    pub fn invalid_utf8_lines(&self) -> u64 {
        self.invalid_utf8_lines
    }

    /// Offset of the first line of a held (open) record: a checkpoint must not pass it.
    pub fn held_offset(&self) -> Option<u64> {
        self.open.as_ref().map(|(r, _)| r.offset)
    }

    /// Whether an error record is being held open.
    pub fn is_holding(&self) -> bool {
        self.open.is_some()
    }

    /// The date of the last run header seen, ms since the epoch (UTC).
    pub fn run_start_ms(&self) -> Option<i64> {
        self.run_start_ms
    }

    /// Sets the run date engine lines are timed from (a restart resuming mid-file, or a file
    /// opened at its end whose first line is the run header).
    pub fn set_run_start_ms(&mut self, run_start_ms: Option<i64>) {
        self.run_start_ms = run_start_ms;
    }

    /// Takes one line; pushes every record it completes onto `out`.
    pub fn push_line(&mut self, line: Line<'_>, out: &mut Vec<Record>) {
        let shape = shape::classify(line.bytes);

        if let Some((record, until)) = &mut self.open {
            let continues = !shape.is_prefixed()
                && !shape::is_mod_tag_line(line.bytes)
                && (record.lines as usize) < self.limits.max_record_lines
                && record.text.len() + line.bytes.len() < self.limits.max_record_bytes;
            if continues {
                record.text.push('\n');
                let valid = push_lossy(&mut record.text, line.bytes);
                self.invalid_utf8_lines += u64::from(!valid);
                record.lines += 1;
                record.end_offset = line.end_offset;
                if *until == OpenUntil::QuoteCloses && shape::quote_count(line.bytes) % 2 == 1 {
                    out.extend(self.open.take().map(|(r, _)| r));
                }
                return;
            }
            out.extend(self.open.take().map(|(r, _)| r));
        }

        let time_ms = match shape {
            Shape::Engine {
                uptime_ms,
                run_start_ms,
                ..
            } => {
                if let Some(wall_ms) = run_start_ms {
                    self.run_start_ms = Some(self.clock.to_utc_ms(wall_ms, self.last_time_ms));
                }
                self.run_start_ms
                    .map(|start| start.saturating_add(i64::try_from(uptime_ms).unwrap_or(0)))
            }
            Shape::Console { time_ms, .. } => {
                time_ms.map(|wall_ms| self.clock.to_utc_ms(wall_ms, self.last_time_ms))
            }
            Shape::Bare => None,
        };
        if time_ms.is_some() {
            self.last_time_ms = time_ms;
        }

        let mut text = String::new();
        let valid = push_lossy(&mut text, line.bytes);
        self.invalid_utf8_lines += u64::from(!valid);
        // Lossy decoding may change lengths before the message start: recompute it on the text.
        let message_start = if valid {
            shape.message_start()
        } else {
            shape::classify(text.as_bytes()).message_start()
        };
        let record = Record {
            offset: line.offset,
            end_offset: line.end_offset,
            text,
            message_start,
            lines: 1,
            time_ms,
        };

        // Only the engine writes `MultiplayerManager failed: "…`: the same text in a chat line
        // is a player's message and must not swallow the lines after it.
        let until = match shape {
            Shape::Engine { .. } if shape::opens_quoted_failure(line.bytes) => {
                Some(OpenUntil::QuoteCloses)
            }
            Shape::Engine {
                level: EngineLevel::Error,
                ..
            } => Some(OpenUntil::Prefixed),
            Shape::Bare if shape::is_bare_error_head(line.bytes) => Some(OpenUntil::Prefixed),
            _ => None,
        };
        match until {
            Some(until) if self.limits.max_record_lines > 1 => self.open = Some((record, until)),
            _ => out.push(record),
        }
    }

    /// Emits a held error record: the file went quiet or ended.
    pub fn flush(&mut self, out: &mut Vec<Record>) {
        out.extend(self.open.take().map(|(r, _)| r));
    }

    /// Forgets a held record and the run date (the file was truncated or replaced).
    pub fn reset(&mut self) {
        self.open = None;
        self.run_start_ms = None;
        self.last_time_ms = None;
    }
}

/// Appends `bytes` to `s`, decoding lossily; returns whether they were valid UTF-8.
fn push_lossy(s: &mut String, bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            s.push_str(text);
            true
        }
        Err(_) => {
            s.push_str(&String::from_utf8_lossy(bytes));
            false
        }
    }
}

/// Frames a whole in-memory file into records (tests, benches, small inputs).
pub fn frame_all(data: &[u8], limits: FramingLimits) -> Vec<Record> {
    let mut framer = LineFramer::new(limits.max_line_bytes, 0);
    let mut asm = RecordAssembler::new(limits);
    let mut out = Vec::new();
    framer.push(data, &mut |line| asm.push_line(line, &mut out));
    framer.finish(&mut |line| asm.push_line(line, &mut out));
    asm.flush(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines_of(chunks: &[&[u8]], max: usize) -> (Vec<(u64, u64, Vec<u8>)>, FrameStats) {
        let mut f = LineFramer::new(max, 0);
        let mut got = Vec::new();
        for c in chunks {
            f.push(c, &mut |l| {
                got.push((l.offset, l.end_offset, l.bytes.to_vec()))
            });
        }
        f.finish(&mut |l| got.push((l.offset, l.end_offset, l.bytes.to_vec())));
        (got, f.stats())
    }

    fn texts(data: &str) -> Vec<String> {
        frame_all(data.as_bytes(), FramingLimits::default())
            .into_iter()
            .map(|r| r.text)
            .collect()
    }

    #[test]
    fn partial_line_across_writes_is_one_line() {
        let (got, _) = lines_of(&[b"a3-part", b"-rest\nb\n"], 100);
        assert_eq!(
            got,
            vec![(0, 13, b"a3-part-rest".to_vec()), (13, 15, b"b".to_vec())]
        );
    }

    #[test]
    fn crlf_and_bom_are_stripped_offsets_kept() {
        let (got, _) = lines_of(&[b"\xEF\xBB\xBFfirst\r\nsecond\r\n"], 100);
        assert_eq!(
            got,
            vec![(0, 10, b"first".to_vec()), (10, 18, b"second".to_vec())]
        );
    }

    #[test]
    fn long_lines_are_cut_and_the_next_line_is_intact() {
        let mut long = vec![b'x'; 50];
        long.extend_from_slice(b"\nnext\n");
        let (got, stats) = lines_of(&[&long[..20], &long[20..]], 16);
        assert_eq!(got[0].2, vec![b'x'; 16]);
        assert_eq!((got[0].0, got[0].1), (0, 51));
        assert_eq!(got[1], (51, 56, b"next".to_vec()));
        assert_eq!(stats.lines_cut, 1);
        assert_eq!(stats.bytes_cut, 34);
    }

    #[test]
    fn cuts_do_not_split_a_character() {
        let line = "aé€€€\n".as_bytes(); // a(1) é(2) €(3)...
        let (got, _) = lines_of(&[line], 5);
        assert_eq!(got[0].2, "aé".as_bytes());
    }

    #[test]
    fn last_line_without_newline_is_handed_out_at_finish() {
        let (got, _) = lines_of(&[b"one\ntwo"], 100);
        assert_eq!(got[1], (4, 7, b"two".to_vec()));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        let recs = frame_all(b"bad \xff\xfe bytes\na4\n", FramingLimits::default());
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].text, "bad \u{fffd}\u{fffd} bytes");
        assert_eq!(recs[1].text, "a4");
    }

    #[test]
    fn lua_crash_with_traceback_is_one_record() {
        let log = "69945.475 Error MainLoop.cpp:1284: Exception at tick 37148045: The mod AAI Programmable Vehicles (0.7.22) caused a non-recoverable error.\n\
Please report this error to the mod author.\n\
\n\
Error while running event aai-programmable-vehicles::load-unit-group-2 (ID 220)\n\
__aai-programmable-vehicles__/control.lua:3560: attempt to index field 'cursor_stack' (a nil value)\n\
stack traceback:\n\
        __aai-programmable-vehicles__/control.lua:3560: in function 'on_load_unit_group'\n\
\t[C]: in function '__index'\n\
69945.475 Error ServerMultiplayerManager.cpp:92: MultiplayerManager failed: \"The mod AAI Programmable Vehicles (0.7.22) caused a non-recoverable error.\n";
        let recs = frame_all(log.as_bytes(), FramingLimits::default());
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].lines, 8);
        assert!(recs[0].text.ends_with("'__index'"));
        assert_eq!(recs[1].lines, 1);
    }

    #[test]
    fn quoted_failure_ends_at_its_closing_quote() {
        let log = "304588.295 Info X.cpp:96: MultiplayerManager failed: \"Error while running event a::b (ID 9)\n\
__a__/b.lua:93: attempt to index local 'stack' (a nil value)\"\n\
Players (0):\n";
        let t = texts(log);
        assert_eq!(t.len(), 2, "{t:?}");
        assert!(t[0].ends_with("(a nil value)\""));
        assert_eq!(t[1], "Players (0):");
    }

    #[test]
    fn a_chat_line_quoting_a_failure_does_not_open_a_record() {
        let log = "2024-04-09 06:09:46 [CHAT] bob: 1.000 Error X.cpp:92: MultiplayerManager failed: \"boom\nsome mod output\n";
        assert_eq!(texts(log).len(), 2);
    }

    #[test]
    fn bare_lines_outside_an_error_are_their_own_records() {
        let log = "   1.000 Info X.cpp:1: fine\nPlayers (0):\n\tindented\n";
        assert_eq!(
            texts(log),
            vec!["   1.000 Info X.cpp:1: fine", "Players (0):", "\tindented"]
        );
    }

    #[test]
    fn mod_print_lines_do_not_join_an_error() {
        let log = "6.826 Error S.cpp:633: Matching server connection failed\n[PLAYER-JOIN]d64\n";
        assert_eq!(
            texts(log),
            vec![
                "6.826 Error S.cpp:633: Matching server connection failed",
                "[PLAYER-JOIN]d64"
            ]
        );
    }

    #[test]
    fn records_are_capped() {
        let limits = FramingLimits {
            max_record_lines: 3,
            ..FramingLimits::default()
        };
        let log = "1.000 Error X.cpp:1: e\na\nb\nc\nd\n";
        let recs = frame_all(log.as_bytes(), limits);
        let t: Vec<_> = recs.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(t, vec!["1.000 Error X.cpp:1: e\na\nb", "c", "d"]);
    }

    #[test]
    fn engine_times_follow_the_run_header_of_the_same_file() {
        let log = "   1.000 Info X.cpp:1: before\n   0.000 2022-05-10 20:39:02; Factorio 1.1.57 (build 59622, linux64, headless)\n  16.011 Info X.cpp:1: later\n";
        let recs = frame_all(log.as_bytes(), FramingLimits::default());
        assert_eq!(recs[0].time_ms, None);
        assert_eq!(recs[1].time_ms, Some(1_652_215_142_000));
        assert_eq!(recs[2].time_ms, Some(1_652_215_158_011));
    }

    /// Frames `log` with its dates read in `zone`; the records' times.
    fn times_in(zone: &str, log: &str) -> Vec<Option<i64>> {
        let zone = jiff::tz::TimeZone::get(zone).unwrap();
        let mut asm = RecordAssembler::new(FramingLimits::default())
            .with_clock(super::super::zone::LocalClock::new(zone));
        let mut framer = LineFramer::new(1024, 0);
        let mut out = Vec::new();
        framer.push(log.as_bytes(), &mut |line| asm.push_line(line, &mut out));
        out.iter().map(|r| r.time_ms).collect()
    }

    #[test]
    fn dates_are_read_in_the_zone_of_the_file_with_daylight_saving_per_date() {
        // 2026-01-15 10:00 EST = 15:00Z; 2026-07-15 10:00 EDT = 14:00Z.
        let log = "2026-01-15 10:00:00 [JOIN] a joined the game
2026-07-15 10:00:00 [JOIN] a joined the game
";
        assert_eq!(
            times_in("America/New_York", log),
            vec![Some(1_768_489_200_000), Some(1_784_124_000_000)]
        );
    }

    #[test]
    fn engine_seconds_count_from_the_run_header_read_in_the_zone() {
        // 2026-03-08 01:59:00 EST = 06:59Z; 120 engine seconds later it is 07:01Z (03:01 EDT:
        // the clocks went forward in between, the seconds did not).
        let log = "   0.000 2026-03-08 01:59:00; Factorio 2.0.60 (build 83512, linux64, headless)
 120.500 Info X.cpp:1: later
";
        assert_eq!(
            times_in("America/New_York", log),
            vec![Some(1_772_953_140_000), Some(1_772_953_260_500)]
        );
        // A header that opens a file resumed mid-way is read in the same zone.
        let zone = jiff::tz::TimeZone::get("Asia/Tokyo").unwrap();
        let mut asm = RecordAssembler::new(FramingLimits::default())
            .with_clock(super::super::zone::LocalClock::new(zone));
        assert_eq!(
            asm.run_header_ms(b"   0.000 2026-01-15 10:00:00; Factorio 2.0.60 (build 1, linux64)"),
            Some(1_768_438_800_000)
        );
    }

    proptest! {
        /// Framing never depends on how the bytes were split into chunks.
        #[test]
        fn chunking_does_not_change_lines(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(0xffu8), Just(b'a'), Just(0xc3), Just(0xa9)], 0..300),
            cuts in proptest::collection::vec(0usize..300, 0..10),
            max in 1usize..40,
        ) {
            let (whole, whole_stats) = lines_of(&[&data], max);
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for p in points { chunks.push(&data[prev..p]); prev = p; }
            chunks.push(&data[prev..]);
            let (split, split_stats) = lines_of(&chunks, max);
            prop_assert_eq!(&whole, &split);
            prop_assert_eq!(whole_stats, split_stats);
            // Offsets tile the input exactly.
            let mut expect = 0;
            for (start, end, bytes) in &whole {
                prop_assert_eq!(*start, expect);
                prop_assert!(bytes.len() <= max);
                expect = *end;
            }
            prop_assert_eq!(expect, data.len() as u64);
        }
    }
}
