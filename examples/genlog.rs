//! Writes the benchmark log mix to stdout: `cargo run --release --example genlog -- LINES`.
//!
//! Used to compare whole processes (factorio-isr against other log processors) on the same
//! input; see README.md, "Benchmarks".

use std::io::Write;

#[path = "../benches/support/mix.rs"]
mod mix;

fn main() -> std::io::Result<()> {
    let lines: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 2_000_000,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: genlog [LINES]");
            std::process::exit(2);
        }
    };
    std::io::stdout().lock().write_all(&mix::mix(lines))
}
