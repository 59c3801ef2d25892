//! The `factorio-isr` command line. Parsing flags and printing results happen here; everything
//! else is in the library.

#![forbid(unsafe_code)]

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use factorio_isr::config::Config;
use factorio_isr::event::BUILT_IN_EVENT_TYPES;
use factorio_isr::patterns::{self, PatternErrors, PatternSet};
use factorio_isr::pipeline::{self, ReplayError, ReplayOptions};
use factorio_isr::sinks::stdout::{StdoutSink, is_closed_pipe};

/// Follows Factorio server logs and turns them into typed events.
#[derive(Parser)]
#[command(name = "factorio-isr", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print every record of the files as one JSON event per line on stdout, then exit.
    Replay {
        /// Log files to read, start to end, in this order.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Directory of pattern files (default: the config's `patterns_dir`, else the
        /// patterns built into factorio-isr).
        #[arg(long, value_name = "DIR")]
        patterns: Option<PathBuf>,
        /// The `server` tag of every event (default: the config's `server_tag`, else `default`).
        #[arg(long, value_name = "TAG")]
        server: Option<String>,
        /// Config file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate the config file and the pattern files: exit 1 listing every problem.
    Check {
        /// Config file.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Directory of pattern files (default: the config's `patterns_dir`, else the
        /// patterns built into factorio-isr).
        #[arg(long, value_name = "DIR")]
        patterns: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Replay {
            files,
            patterns,
            server,
            config,
        } => replay(&files, patterns, server, config.as_deref()),
        Command::Check { config, patterns } => check(config.as_deref(), patterns),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

/// The pattern directory in force, if any: the flag, else the config's.
fn patterns_dir(flag: Option<PathBuf>, config: &Config) -> Option<PathBuf> {
    flag.or_else(|| config.patterns_dir.clone())
}

fn load_patterns(dir: Option<&Path>) -> Result<PatternSet, PatternErrors> {
    match dir {
        Some(dir) => patterns::load_dir(dir),
        None => patterns::shipped(),
    }
}

fn replay(
    files: &[PathBuf],
    patterns_flag: Option<PathBuf>,
    server: Option<String>,
    config_path: Option<&Path>,
) -> Result<ExitCode> {
    let config = load_config(config_path)?;
    let dir = patterns_dir(patterns_flag, &config);
    let set = load_patterns(dir.as_deref())?;
    let service = config.service.resolve(|k| std::env::var(k).ok());
    let options = ReplayOptions {
        server: Arc::from(server.unwrap_or(config.server_tag)),
        limits: config.framing.limits(),
        read_time: None,
        progress: io::stderr().is_terminal(),
    };

    let stdout = io::stdout().lock();
    let mut sink = StdoutSink::new(stdout, service);
    let result = pipeline::replay(files, &set, &options, |event| sink.write(event));
    let flushed = sink.flush();
    let summary = match result {
        Ok(summary) => summary,
        Err(ReplayError::Sink(e)) if is_closed_pipe(&e) => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e.into()),
    };
    match flushed {
        Err(e) if is_closed_pipe(&e) => return Ok(ExitCode::SUCCESS),
        other => other.context("writing events to stdout")?,
    }

    let cut = summary.frame.lines_cut;
    if cut > 0 {
        eprintln!(
            "warning: {cut} line(s) longer than {} bytes were cut ({} bytes dropped)",
            options.limits.max_line_bytes, summary.frame.bytes_cut
        );
    }
    for e in &summary.file_errors {
        eprintln!("error: {e}");
    }
    Ok(if summary.file_errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn check(config_path: Option<&Path>, patterns_flag: Option<PathBuf>) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    match check_to(&mut out, config_path, patterns_flag) {
        Err(e) if is_closed_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
        Ok(code) => Ok(code),
    }
}

fn check_to(
    out: &mut impl Write,
    config_path: Option<&Path>,
    patterns_flag: Option<PathBuf>,
) -> io::Result<ExitCode> {
    let mut problems = 0usize;
    let config = match config_path {
        None => Config::default(),
        Some(path) => match Config::load(path) {
            Ok(c) => {
                writeln!(out, "config: {} is valid", path.display())?;
                c
            }
            Err(e) => {
                eprintln!("{e}");
                problems += 1;
                Config::default()
            }
        },
    };
    let dir = patterns_dir(patterns_flag, &config);
    match load_patterns(dir.as_deref()) {
        Ok(set) => write_summary(out, dir.as_deref(), &set)?,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            problems += errors.0.len();
        }
    }
    out.flush()?;
    if problems > 0 {
        eprintln!(
            "\n{}; nothing was loaded",
            plural(problems, "problem found", "problems found")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn write_summary(out: &mut impl Write, dir: Option<&Path>, set: &PatternSet) -> io::Result<()> {
    match dir {
        Some(d) => writeln!(out, "patterns: {} is valid", d.display())?,
        None => writeln!(out, "patterns: the built-in set is valid")?,
    }
    for f in set.files() {
        writeln!(
            out,
            "  {:<20} {}, {} enabled",
            format!("{}.toml", f.stem),
            plural(f.patterns, "pattern", "patterns"),
            f.enabled
        )?;
    }
    let types = set.event_types();
    writeln!(out, "event types ({}):", types.len())?;
    for (t, n) in &types {
        writeln!(out, "  {t:<20} {}", plural(*n, "pattern", "patterns"))?;
    }
    let missing: Vec<&str> = BUILT_IN_EVENT_TYPES
        .iter()
        .copied()
        .filter(|t| !types.contains_key(t))
        .collect();
    if !missing.is_empty() {
        writeln!(
            out,
            "note: no enabled pattern produces these built-in event types: {}",
            missing.join(", ")
        )?;
    }
    Ok(())
}
