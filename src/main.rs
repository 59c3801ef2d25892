//! The `factorio-isr` binary: arguments in (parsed by [`factorio_isr::cli`]), results out.
//! Everything else is in the library.

#![forbid(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use factorio_isr::app::{self, App};
use factorio_isr::cli::{Cli, Command, RunArgs};
use factorio_isr::config::{Config, Overrides};
use factorio_isr::settings::ProcessEnv;
use factorio_isr::sinks::stdout::is_closed_pipe;
use factorio_isr::tail::zone::TimeZoneSetting;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Replay {
            files,
            patterns,
            server,
            config,
            timezone,
        } => replay(&files, patterns, server, config.as_deref(), timezone),
        Command::Check { config, patterns } => check(config.as_deref(), patterns),
        Command::Completions { shell } => {
            factorio_isr::cli::write_completions(shell, &mut io::stdout().lock());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => factorio_isr::cli::write_man(&mut io::stdout().lock())
            .map(|()| ExitCode::SUCCESS)
            .or_else(|e| {
                if is_closed_pipe(&e) {
                    Ok(ExitCode::SUCCESS)
                } else {
                    Err(anyhow::Error::new(e).context("writing to stdout"))
                }
            }),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: most of the library's errors
/// already say their cause (`cannot read x: Permission denied (os error 13)`) and also return
/// it as `source()`, so a cause whose text is already in the message is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// The config file (or the defaults) with the environment and `flags` applied.
fn config(path: Option<&Path>, flags: &Overrides) -> Result<Config> {
    let mut config = Config::load_or_default(path)?;
    config.apply(flags, &ProcessEnv)?;
    Ok(config)
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let config = config(args.config.as_deref(), &args.overrides())?;
    App::build(config, &args.request())?.run()?;
    Ok(ExitCode::SUCCESS)
}

fn replay(
    files: &[PathBuf],
    patterns: Option<PathBuf>,
    server: Option<String>,
    config_path: Option<&Path>,
    timezone: Option<TimeZoneSetting>,
) -> Result<ExitCode> {
    let flags = Overrides {
        patterns_dir: patterns,
        timezone,
        ..Overrides::default()
    };
    let config = config(config_path, &flags)?;
    let outcome = app::replay_stdout(&config, files, server)?;
    let Some(summary) = outcome.summary else {
        return Ok(ExitCode::SUCCESS);
    };
    let frame = &summary.frame;
    if frame.lines_cut > 0 {
        eprintln!(
            "warning: {} line(s) longer than {} bytes were cut ({} bytes dropped)",
            frame.lines_cut, outcome.limits.max_line_bytes, frame.bytes_cut
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

fn check(config_path: Option<&Path>, patterns: Option<PathBuf>) -> Result<ExitCode> {
    let (mut out, mut err) = (io::stdout().lock(), io::stderr().lock());
    match app::check(config_path, patterns, &ProcessEnv, &mut out, &mut err) {
        Err(e) if is_closed_pipe(&e) => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
        Ok(0) => Ok(ExitCode::SUCCESS),
        Ok(_) => Ok(ExitCode::FAILURE),
    }
}
