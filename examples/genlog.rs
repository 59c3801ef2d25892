//! Writes the benchmark log mix to stdout: `cargo run --release --example genlog -- LINES`.
//!
//! Used to compare whole processes (factorio-isr against other log processors) on the same
//! input; see README.md, "Benchmarks".
//!
//! `genlog --patterns-dir DIR [--patterns N]` writes a patterns directory instead: the shipped
//! pattern files plus `custom.toml` with N (default 2000) ordinary user patterns
//! (`benches/support/many_patterns.rs`), for `replay --patterns DIR`. With LINES too it also
//! writes the log. It refuses a directory that holds other pattern files.

use std::io::Write;
use std::path::PathBuf;

#[path = "../benches/support/mix.rs"]
mod mix;

#[path = "../benches/support/many_patterns.rs"]
mod many_patterns;

const USAGE: &str = "usage: genlog [LINES] [--patterns-dir DIR [--patterns N]]";

fn usage(why: &str) -> ! {
    eprintln!("genlog: {why}\n{USAGE}");
    std::process::exit(2);
}

fn main() -> std::io::Result<()> {
    let mut lines: Option<usize> = None;
    let mut patterns_dir: Option<PathBuf> = None;
    let mut patterns: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--patterns-dir" => match args.next() {
                Some(dir) => patterns_dir = Some(dir.into()),
                None => usage("--patterns-dir needs a directory"),
            },
            "--patterns" => match args.next().map(|n| n.parse()) {
                Some(Ok(n)) => patterns = Some(n),
                _ => usage("--patterns needs a whole number of patterns, e.g. 2000"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            n => match n.parse() {
                Ok(n) if lines.is_none() => lines = Some(n),
                _ => usage(&format!("unexpected argument `{n}`")),
            },
        }
    }
    match patterns_dir {
        Some(dir) => {
            let n = patterns.unwrap_or(2000);
            if let Err(e) = many_patterns::write_patterns_dir(&dir, n) {
                eprintln!("genlog: cannot write the patterns directory: {e}");
                std::process::exit(1);
            }
            eprintln!(
                "genlog: wrote the shipped pattern files and {} with {n} patterns to {}",
                many_patterns::CUSTOM_FILE,
                dir.display()
            );
            if lines.is_none() {
                return Ok(());
            }
        }
        None if patterns.is_some() => usage("--patterns needs --patterns-dir DIR"),
        None => {}
    }
    std::io::stdout()
        .lock()
        .write_all(&mix::mix(lines.unwrap_or(2_000_000)))
}
