//! Many user patterns, reproducibly: the shipped pattern files plus `custom.toml` with N
//! ordinary user patterns, the case of a server with many mods that each add their own lines.
//!
//! Pattern `i` (0-based) is named `custom_{i}`, has event type `custom_{i % 50}` and takes one
//! of three shapes in turn: a console-style line with a mod tag (`[MODi] … did thing i …`), a
//! mod's script output (`Script @__modi__/control.lua:…: eventi …`) and a bare CSV-like event
//! line (`[EVENTi] player,surface,x,y`). Each is anchored at the line's start and has its own
//! literal, so pattern `i` matches only the lines of [`sample_line`]`(i)`'s shape and number.
//! The same N gives the same bytes.
//!
//! Shared by the `genlog` example (`--patterns-dir DIR --patterns N`), the `many_patterns`
//! benchmark and its tests. Writing fails with the I/O error of the file it was writing, or
//! refuses a directory that already holds other pattern files (they would load too).

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::Path;

/// How many distinct event types the custom patterns share.
pub const CUSTOM_EVENT_TYPES: usize = 50;

/// The name of the file holding the custom patterns.
pub const CUSTOM_FILE: &str = "custom.toml";

/// The regex of custom pattern `i`.
pub fn custom_regex(i: usize) -> String {
    match i % 3 {
        0 => format!(
            r"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}} [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}} \[MOD{i}\] (?P<player>[^ ]+) did thing {i} (?P<value>[0-9]+)$"
        ),
        1 => format!(
            r"^ *[0-9]+\.[0-9]{{3}} Script @__mod{i}__/control\.lua:(?P<line>[0-9]+): event{i} (?P<what>.*)$"
        ),
        _ => format!(
            r"^\[EVENT{i}\] (?P<player>[^,]+),(?P<surface>[^,]+),(?P<x>-?[0-9.]+),(?P<y>-?[0-9.]+)$"
        ),
    }
}

/// A log line that custom pattern `i` matches (and no other custom pattern).
pub fn sample_line(i: usize) -> String {
    match i % 3 {
        0 => format!("2026-11-30 12:00:00 [MOD{i}] bsalis did thing {i} 42"),
        1 => format!("  12.345 Script @__mod{i}__/control.lua:77: event{i} spawned a biter"),
        _ => format!("[EVENT{i}] Mattie,nauvis,-12.5,40"),
    }
}

/// The text of `custom.toml` with `n` custom patterns.
pub fn custom_patterns_toml(n: usize) -> String {
    let mut out = format!(
        "# {n} ordinary user patterns for benchmarks, written by `genlog --patterns-dir`.\n"
    );
    for i in 0..n {
        let _ = write!(
            out,
            "\n[[pattern]]\nname = \"custom_{i}\"\nevent_type = \"custom_{}\"\nregex = '{}'\n",
            i % CUSTOM_EVENT_TYPES,
            custom_regex(i)
        );
    }
    out
}

/// Writes the shipped pattern files and `custom.toml` with `n` custom patterns into `dir`
/// (created if missing). Refuses a directory holding any other `*.toml` file: it would be
/// loaded too, and the set would not be the one asked for.
pub fn write_patterns_dir(dir: &Path, n: usize) -> std::io::Result<()> {
    let shipped = factorio_isr::patterns::SHIPPED_FILES;
    let in_dir =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(in_dir)?;
    for entry in std::fs::read_dir(dir).map_err(in_dir)? {
        let name = entry.map_err(in_dir)?.file_name();
        let name = name.to_string_lossy();
        let ours = name == CUSTOM_FILE || shipped.iter().any(|(f, _)| *f == name);
        if name.ends_with(".toml") && !name.starts_with('.') && !ours {
            return Err(std::io::Error::other(format!(
                "{} already holds the pattern file {name}, which would be loaded too; \
                 use an empty or new directory",
                dir.display()
            )));
        }
    }
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    };
    for (name, text) in shipped {
        write(name, text)?;
    }
    write(CUSTOM_FILE, &custom_patterns_toml(n))
}
