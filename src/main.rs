//! The `factorio-isr` command line. Parsing flags and printing results happen here; everything
//! else is in the library.

#![forbid(unsafe_code)]

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};

use factorio_isr::config::{Config, default_state_dir};
use factorio_isr::event::BUILT_IN_EVENT_TYPES;
use factorio_isr::patterns::reload::{self, Reloader};
use factorio_isr::patterns::{self, PatternErrors, PatternSet};
use factorio_isr::pipeline::route::Router;
use factorio_isr::pipeline::{
    self, Pipeline, ReplayError, ReplayOptions, RunError, RunOptions, Stopper, default_workers,
};
use factorio_isr::sinks::Sink;
use factorio_isr::sinks::discord::Discord;
use factorio_isr::sinks::logstash::{LogstashSink, NO_CUT, check_address, stall_probe};
use factorio_isr::sinks::stdout::{StdoutSink, is_closed_pipe};
use factorio_isr::tail::tailer::{ServerSource, StartAt, TailOptions};
use factorio_isr::telemetry::admin;
use factorio_isr::telemetry::health::Health;
use factorio_isr::telemetry::logs::{self, LogFormat};
use factorio_isr::telemetry::metrics::Metrics;
use factorio_isr::telemetry::traces::{Exporter, TraceConfig, Traces};

/// Follows Factorio server logs and turns them into typed events.
#[derive(Parser)]
#[command(name = "factorio-isr", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `factorio-isr run`.
#[derive(clap::Args)]
struct RunArgs {
    /// Log directories to follow, one per server (default: the config's [[servers]]).
    #[arg(value_name = "LOG_DIR")]
    dirs: Vec<PathBuf>,
    /// Config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Directory of pattern files, reloaded when edited (default: the config's
    /// `patterns_dir`, else the patterns built into factorio-isr).
    #[arg(long, value_name = "DIR")]
    patterns: Option<PathBuf>,
    /// Where checkpoints are kept (default: the config's `tail.state_dir`, else
    /// $STATE_DIRECTORY, $XDG_STATE_HOME/factorio-isr or ~/.local/state/factorio-isr).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The `server` tag of a single LOG_DIR's events.
    #[arg(long, value_name = "TAG")]
    server: Option<String>,
    /// Read files seen for the first time from their start instead of their end.
    #[arg(long)]
    from_beginning: bool,
    /// Poll only, without file-system notifications (Docker bind mounts, NFS).
    #[arg(long)]
    poll: bool,
    /// Send events to Logstash's tcp input (json_lines) at HOST:PORT instead of stdout
    /// (default: $LOGSTASH_ADDR, else the config's `logstash.address`).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_logstash_address)]
    logstash: Option<String>,
    /// Serve /metrics, /healthz and /ready on HOST:PORT (default: the config's
    /// `metrics.address`, 127.0.0.1:9464; $METRICS_PORT changes the port,
    /// METRICS_ENABLED=false turns the server off).
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<String>,
    /// Post events with a Discord template to this webhook URL, as the config's
    /// `discord.default_webhook` (default: $DISCORD_WEBHOOK_URL). Prefer the environment
    /// variable or a `url_file`: command lines are visible to every user of the machine.
    #[arg(long, value_name = "URL", hide_env_values = true)]
    discord_webhook: Option<String>,
}

fn parse_logstash_address(s: &str) -> Result<String, String> {
    check_address(s).map(|()| s.to_owned())
}

#[derive(Subcommand)]
enum Command {
    /// Follow the log directories of Factorio servers and write every record as a JSON event.
    Run(RunArgs),
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
        Command::Run(args) => run(args),
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

fn run(args: RunArgs) -> Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let env = |k: &str| std::env::var(k).ok();
    let log_format =
        LogFormat::from_env(env("LOG_FORMAT").as_deref()).map_err(anyhow::Error::msg)?;
    let trace_config = TraceConfig::from_env(env)?;
    let service = config.service.resolve(env);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("factorio-isr-admin")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The gRPC exporter needs the runtime when it is built.
    let (traces, tracer) = {
        let _guard = runtime.enter();
        match Traces::start(&trace_config, &service)? {
            Some((t, tracer)) => (Some(t), Some(tracer)),
            None => (None, None),
        }
    };
    logs::init(log_format, env("LOG_LEVEL").as_deref(), tracer);
    if traces.is_some() {
        tracing::info!(exporter = ?trace_config.exporter, endpoint = %trace_config.endpoint, sample_rate = trace_config.sample_rate, "Exporting traces.");
    }
    let servers = config
        .run_servers(&args.dirs, args.server.as_deref())?
        .into_iter()
        .map(|s| {
            ServerSource::new(&s.tag, s.log_dir.clone(), &s.globs)
                .with_context(|| format!("server `{}`: invalid globs", s.tag))
        })
        .collect::<Result<Vec<_>>>()?;
    let dir = patterns_dir(args.patterns, &config);
    let patterns = Arc::new(ArcSwap::from_pointee(load_patterns(dir.as_deref())?));
    let tail = &config.tail;
    let ms = Duration::from_millis;
    let metrics = Arc::new(Metrics::new());
    let health = Health::new(metrics.component_status.clone());
    let logstash_address = match args.logstash {
        Some(a) => Some(a),
        None => match env("LOGSTASH_ADDR").filter(|a| !a.is_empty()) {
            Some(a) => Some(
                parse_logstash_address(&a).map_err(|e| anyhow::anyhow!("LOGSTASH_ADDR: {e}"))?,
            ),
            None => config.logstash.address.clone(),
        },
    };
    let opts = RunOptions {
        servers,
        tail: TailOptions {
            limits: config.framing.limits(),
            read_chunk_bytes: tail.read_chunk_bytes,
            discovery_interval: ms(tail.discovery_interval_ms),
            rotate_wait: ms(tail.rotate_wait_ms),
            record_flush: ms(tail.record_flush_ms),
            start_at: if args.from_beginning {
                StartAt::Beginning
            } else {
                StartAt::End
            },
            ..TailOptions::default()
        },
        state_dir: args
            .state_dir
            .or_else(|| tail.state_dir.clone())
            .unwrap_or_else(|| default_state_dir(env)),
        poll_only: args.poll || tail.poll_only,
        poll_interval_max: ms(tail.poll_interval_max_ms),
        checkpoint_interval: ms(tail.checkpoint_interval_ms),
        workers: default_workers(),
        metrics: metrics.pipeline.clone(),
        sink_name: if logstash_address.is_some() {
            "logstash"
        } else {
            "stdout"
        },
    };
    if logstash_address.is_none() && traces.is_some() && trace_config.exporter == Exporter::Stdout {
        anyhow::bail!(
            "TRACES_EXPORTER=stdout needs --logstash: without it, stdout carries the events"
        );
    }
    let admin_address = config.metrics.resolve(args.metrics_addr, env)?;
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_server = match admin_address {
        Some(address) => {
            let listener = admin::bind(&address)?;
            let local = listener.local_addr().context("the admin address")?;
            tracing::info!(address = %local, "Serving /metrics, /healthz and /ready.");
            let (m, h) = (metrics.clone(), health.clone());
            let _guard = runtime.enter();
            Some(runtime.spawn(admin::serve(listener, m, h, async {
                let _ = admin_stopped.await;
            })))
        }
        None => None,
    };

    let tailer_health = health.component("tailer", "starting");
    let (pipeline, stopper) = Pipeline::new(opts)?;
    let progress = stopper.progress();
    tailer_health.set_liveness_probe(Box::new(move || progress.wedged(WEDGED_AFTER)));

    let stop_reload = Arc::new(AtomicBool::new(false));
    let reloader = dir.map(|dir| {
        let reloader = Reloader::new(dir, patterns.clone()).with_telemetry(
            metrics.reload.clone(),
            health.component("patterns", "loading"),
        );
        let stop = stop_reload.clone();
        let poll = ms(tail.reload_poll_interval_ms);
        std::thread::spawn(move || {
            reload::watch(reloader, ms(reload::default_debounce_ms()), poll, &stop)
        })
    });

    let mut cut_offset = None;
    let mut sink: Box<dyn Sink + Send> = match logstash_address {
        Some(address) => {
            tracing::info!(%address, tls = config.logstash.tls.is_some(), "Sending events to Logstash.");
            let component = health.component("logstash", &format!("connecting to {address}"));
            component.set_probe(stall_probe(&metrics.logstash, LOGSTASH_STALL_MS));
            let sink = LogstashSink::new(address, &config.logstash, &service)?
                .with_telemetry(metrics.logstash.clone(), component);
            cut_offset = Some(sink.cut_offset());
            Box::new(sink)
        }
        None => Box::new(StdoutSink::new(io::stdout(), service)),
    };
    let discord = Discord::from_config(
        &config.discord,
        config.discord_routes(),
        args.discord_webhook,
        env,
        runtime.handle(),
        metrics.discord.clone(),
        &health,
        &patterns.load(),
    )?
    .map(Arc::new);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let worker = {
        let patterns = patterns.clone();
        let tailer_health = tailer_health.clone();
        let discord = discord.clone();
        std::thread::spawn(move || {
            tailer_health.ready();
            let mut router = Router::new(&mut *sink, discord.as_deref(), &patterns);
            let result = pipeline.run(&patterns, &mut router);
            if let Err(e) = &result {
                tailer_health.failed(format!("the pipeline stopped: {e}"));
            }
            let _ = done_tx.send(());
            result
        })
    };

    let shutdown_timeout = ms(tail.shutdown_timeout_ms);
    let drained = runtime.block_on(wait_for_stop(stopper.clone(), done_rx, shutdown_timeout))?;
    stop_reload.store(true, Ordering::Release);
    if let Some(d) = &discord {
        d.shutdown(&runtime);
    }
    let _ = admin_stop.send(());
    if let Some(server) = admin_server {
        // Open scrapes get a moment to finish; the server must not hold up the exit.
        let _ =
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(1), server).await });
    }
    if !drained {
        tracing::error!(
            "Draining took longer than {shutdown_timeout:?}; saving the checkpoints of what was delivered and exiting."
        );
        let cut = cut_offset
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .filter(|&c| c != NO_CUT);
        stopper
            .save_checkpoints(cut)
            .context("saving checkpoints")?;
        if let Some(t) = traces {
            t.shutdown();
        }
        runtime.shutdown_background();
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(t) = traces {
        t.shutdown();
    }
    if let Some(r) = reloader {
        let _ = r.join();
    }
    match worker.join() {
        Ok(Ok(_)) => Ok(ExitCode::SUCCESS),
        Ok(Err(RunError::Sink(e))) if is_closed_pipe(&e) => Ok(ExitCode::SUCCESS),
        Ok(Err(e)) => Err(e.into()),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// How long the pipeline may make no progress, with no sink write pending, before `/healthz`
/// says it is wedged.
const WEDGED_AFTER: Duration = Duration::from_secs(60);

/// How long a Logstash write may block before `/ready` reports Logstash as not reading.
const LOGSTASH_STALL_MS: u64 = 5000;

/// Waits for SIGTERM or SIGINT (then stops the pipeline and waits up to `timeout` for it to
/// drain) or for the pipeline to end by itself. Returns whether it finished in time.
async fn wait_for_stop(
    stopper: Stopper,
    mut done: tokio::sync::oneshot::Receiver<()>,
    timeout: Duration,
) -> Result<bool> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = &mut done => return Ok(true),
    };
    tracing::info!("{name} received; stopping: draining what was read, saving checkpoints.");
    stopper.stop();
    Ok(tokio::time::timeout(timeout, done).await.is_ok())
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
    let result = pipeline::replay(files, Arc::new(set), &options, |event| sink.write(event));
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
