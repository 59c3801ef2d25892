//! Matching throughput of the shipped pattern set.
//!
//! - `mix/*`: a realistic stream (mostly engine lines that no pattern matches, some lifecycle
//!   lines, console events, bare output and a Lua crash now and then), measured as
//!   frame + match → `Event` (`frame_and_match`), and with the JSON line written too
//!   (`frame_match_json`), which is what `replay` does per record.
//! - `shape/*`: `PatternSet::match_text` on one line of each shape.
//! - `many_patterns/*`: `frame_match_json` on the same mix with the shipped set and with the
//!   shipped set plus 2,000 ordinary user patterns (`support/many_patterns.rs`, the directory
//!   `genlog --patterns-dir` writes), loaded with `patterns::load_dir` as `run` loads them.
//!
//! Throughput is in lines (elements) per second on one thread. Run: `cargo bench --bench matching`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use factorio_isr::event::{EventEncoder, LogSource, ServiceInfo, Timestamp};
use factorio_isr::patterns::{self, PatternSet};
use factorio_isr::tail::frame::{FramingLimits, LineFramer, RecordAssembler};

#[path = "support/mix.rs"]
mod support;
use support::mix;

#[path = "support/many_patterns.rs"]
mod many_patterns;

fn line_count(data: &[u8]) -> u64 {
    data.iter().filter(|&&b| b == b'\n').count() as u64
}

/// Frames `data` and matches every record, calling `each` with the event.
fn run(set: &PatternSet, data: &[u8], mut each: impl FnMut(&factorio_isr::event::Event)) {
    let source = Arc::new(LogSource {
        server: "bench".into(),
        path: "bench.log".into(),
    });
    let limits = FramingLimits::default();
    let mut framer = LineFramer::new(limits.max_line_bytes, 0);
    let mut asm = RecordAssembler::new(limits);
    let mut records = Vec::with_capacity(4096);
    let now = Timestamp(1_759_824_126_000);
    for chunk in data.chunks(256 * 1024) {
        framer.push(chunk, &mut |line| asm.push_line(line, &mut records));
        for r in records.drain(..) {
            let e = set.to_event(r, &source, now);
            each(&e);
        }
    }
    framer.finish(&mut |line| asm.push_line(line, &mut records));
    asm.flush(&mut records);
    for r in records.drain(..) {
        each(&set.to_event(r, &source, now));
    }
}

fn bench_mix(c: &mut Criterion) {
    let set = patterns::shipped().expect("shipped patterns load");
    let data = mix(200_000);
    let lines = line_count(&data);
    let mut group = c.benchmark_group("mix");
    group.throughput(Throughput::Elements(lines));
    group.sample_size(20);
    group.bench_function("frame_and_match", |b| {
        b.iter(|| {
            let mut n = 0u64;
            run(&set, &data, |e| n += e.raw.len() as u64);
            black_box(n)
        })
    });
    let encoder = EventEncoder::new(&ServiceInfo::default());
    group.bench_function("frame_match_json", |b| {
        let mut buf = Vec::with_capacity(1 << 20);
        b.iter(|| {
            run(&set, &data, |e| {
                encoder.write_line(e, &mut buf);
                if buf.len() > 1 << 20 {
                    buf.clear();
                }
            });
            black_box(buf.len())
        })
    });
    group.finish();
}

fn bench_shapes(c: &mut Criterion) {
    let set = patterns::shipped().expect("shipped patterns load");
    let shapes: &[(&str, &str)] = &[
        (
            "engine_unmatched",
            "29973.150 Info ServerSynchronizer.cpp:627: nextHeartbeatSequenceNumber(1798073) removing peer(2).",
        ),
        (
            "engine_state_change",
            "  16.429 Info ServerMultiplayerManager.cpp:814: updateTick(27899560) changing state from(InGame) to(InGameSavingMap)",
        ),
        (
            "engine_error",
            "   6.826 Error ServerMultiplayerManager.cpp:633: Matching server connection failed: Error when creating server game: Missing token.",
        ),
        (
            "console_chat",
            "2020-01-01 16:08:20 [CHAT] kacperion: what is this[gps=-154,118]?",
        ),
        (
            "console_join",
            "2025-10-08 08:58:34 [JOIN] bsalis joined the game",
        ),
        (
            "console_ban",
            "2019-01-20 10:30:30 [BAN] grilled ham (not on map) was banned by <server>. Reason: unspecified.",
        ),
        (
            "mod_line",
            "[FactoriGOChatBot]: \"2852569 [PLAYER_DIED:Mattie:locomotive:10:50]\"",
        ),
        ("bare", "Online players (123):"),
        (
            "crash_record",
            "69945.475 Error MainLoop.cpp:1284: Exception at tick 37148045: The mod AAI Programmable Vehicles (0.7.22) caused a non-recoverable error.\nPlease report this error to the mod author.\n\nError while running event aai-programmable-vehicles::load-unit-group-2 (ID 220)\n__aai-programmable-vehicles__/control.lua:3560: attempt to index field 'cursor_stack' (a nil value)\nstack traceback:\n        __aai-programmable-vehicles__/control.lua:3560: in function 'on_load_unit_group'",
        ),
    ];
    let mut group = c.benchmark_group("shape");
    group.throughput(Throughput::Elements(1));
    for (name, line) in shapes {
        group.bench_function(*name, |b| {
            b.iter(|| black_box(set.match_text(black_box(line)).map(|m| m.fields.len())))
        });
    }
    group.finish();
}

fn bench_many_patterns(c: &mut Criterion) {
    let custom = 2000;
    let dir = tempfile::tempdir().expect("a temporary directory");
    many_patterns::write_patterns_dir(dir.path(), custom).expect("patterns directory written");
    let sets = [
        (
            "shipped".to_owned(),
            patterns::shipped().expect("shipped patterns load"),
        ),
        (
            format!("shipped_plus_{custom}"),
            patterns::load_dir(dir.path()).expect("generated patterns load"),
        ),
    ];
    let data = mix(200_000);
    let lines = line_count(&data);
    let encoder = EventEncoder::new(&ServiceInfo::default());
    let mut group = c.benchmark_group("many_patterns");
    group.throughput(Throughput::Elements(lines));
    group.sample_size(10);
    for (name, set) in &sets {
        group.bench_function(format!("frame_match_json/{name}"), |b| {
            let mut buf = Vec::with_capacity(1 << 20);
            b.iter(|| {
                run(set, &data, |e| {
                    encoder.write_line(e, &mut buf);
                    if buf.len() > 1 << 20 {
                        buf.clear();
                    }
                });
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_mix, bench_shapes, bench_many_patterns);
criterion_main!(benches);
