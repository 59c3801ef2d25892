//! The application: a resolved [`Config`] becomes a running factorio-isr, and stops in order.
//!
//! - `run`: [`App::build`] does everything that can fail before anything runs (in the style of
//!   linkerd2-proxy's config → build → spawn): it loads the patterns, starts the trace
//!   exporter and the logs, binds the admin address, opens the state directory, and builds the
//!   source and every sink. [`App::run`] then serves, follows and forwards until SIGTERM or
//!   SIGINT (or until [`App::control`] stops it), and shuts down in order: the source stops
//!   reading, what was read drains to the sinks within `shutdown_timeout_ms`, checkpoints are
//!   saved, Discord gets its last seconds, the admin server and the exporter close.
//! - `replay`: [`replay`] runs the same pipeline from whole files to stdout (or any sink).
//! - `check`: [`check`] validates the config (with the environment applied) and the patterns
//!   exactly as `run` would: both run [`preflight`], which lists every problem at once.
//!
//! Sinks are registered in one place, [`App::build`]'s `sinks`: adding one is one line there.
//!
//! How it fails: every start-up problem is an [`AppError`] naming what to fix, before anything
//! is served or read. Once running, a reliable sink's error stops the pipeline (after saving
//! the checkpoints of what was delivered) and is returned by `run`; a stdout whose reader went
//! away is a normal end.

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use thiserror::Error;
use tokio::sync::oneshot;

use crate::alertmanager::config::MAX_MENTION_ROLES;
use crate::alertmanager::{AlertmanagerError, Receiver};
use crate::config::{Config, ConfigError, Overrides, ServerConfig, ServersError};
use crate::event::{BUILT_IN_EVENT_TYPES, LOG_EVENT_TYPE, is_discord_snowflake};
use crate::patterns::reload::{self, Reloader};
use crate::patterns::{self, PatternErrors, PatternSet};
use crate::pipeline::{Control, Pipeline, RunError, RunOptions, RunSummary};
use crate::settings::{Env, Secret};
use crate::sinks::discord::{Discord, DiscordError, check_webhooks};
use crate::sinks::logstash::tls::{Tls, TlsError};
use crate::sinks::stdout::{StdoutSink, is_closed_pipe};
use crate::sinks::{FnSink, Sink, SinkContext, SinkHandle};
use crate::tail::TailSourceOptions;
use crate::tail::frame::{FrameStats, FramingLimits};
use crate::tail::open_files::{self, OpenFileBudget, OpenFileLimit};
use crate::tail::read::ReadError;
use crate::tail::tailer::{ServerSource, StartAt, TailOptions, TailStats};
use crate::tail::zone::{ZoneError, zone_name};
use crate::tail::{ReplayOptions, ReplayReport, ReplaySource, TailSource, TailSourceError};
use crate::telemetry::admin::{self, AdminError};
use crate::telemetry::health::{Component, Health};
use crate::telemetry::logs::{self, LogFormat};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::{Exporter, TraceError, Traces};

/// How long the pipeline may make no progress, with no sink write pending, before `/healthz`
/// says it is wedged.
const WEDGED_AFTER: Duration = Duration::from_secs(60);

/// `factorio-isr` could not start, or stopped on an error.
#[derive(Debug, Error)]
pub enum AppError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// What [`preflight`] found: every setting that cannot work.
    #[error(transparent)]
    Invalid(#[from] Problems),
    /// The servers to follow are missing or contradict each other.
    #[error(transparent)]
    Servers(#[from] ServersError),
    /// A server's globs do not parse.
    #[error("server `{tag}`: invalid globs: {source}")]
    Globs {
        /// The server.
        tag: String,
        /// The cause.
        source: globset::Error,
    },
    /// A time zone cannot be found.
    #[error(transparent)]
    TimeZone(#[from] ZoneError),
    /// The pattern files are unusable.
    #[error(transparent)]
    Patterns(#[from] PatternErrors),
    /// The trace exporter cannot start.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The admin server cannot start.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The state directory is unusable.
    #[error(transparent)]
    State(#[from] TailSourceError),
    /// Logstash's TLS settings cannot work.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The Alertmanager receiver's token cannot be read.
    #[error(transparent)]
    Alertmanager(#[from] AlertmanagerError),
    /// A Discord webhook is unusable.
    #[error(transparent)]
    Discord(#[from] DiscordError),
    /// Loki's settings cannot work.
    #[error(transparent)]
    Loki(#[from] crate::sinks::loki::LokiError),
    /// The OTLP logs settings cannot work.
    #[error(transparent)]
    OtlpLogs(#[from] crate::sinks::otlp_logs::OtlpLogsError),
    /// Traces to stdout would mix with the events.
    #[error("TRACES_EXPORTER=stdout needs --logstash: without it, stdout carries the events")]
    StdoutTraces,
    /// The operating system refused something factorio-isr needs to run.
    #[error("{what}: {source}")]
    System {
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The pipeline stopped on a sink error.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The checkpoints could not be saved at a forced stop.
    #[error("saving checkpoints: {0}")]
    Checkpoints(io::Error),
}

/// What `run` follows, from the command line.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// LOG_DIR arguments; empty: the config's `[[servers]]`.
    pub dirs: Vec<PathBuf>,
    /// `--server TAG` for a single LOG_DIR.
    pub server: Option<String>,
    /// `--from-beginning`.
    pub from_beginning: bool,
}

/// The pattern set in force: the config's `patterns_dir` (or `--patterns`), else the shipped
/// patterns built into factorio-isr.
pub fn load_patterns(config: &Config) -> Result<PatternSet, PatternErrors> {
    match &config.patterns_dir {
        Some(dir) => patterns::load_dir(dir),
        None => patterns::shipped(),
    }
}

/// A built `run`, ready to start.
pub struct App {
    runtime: tokio::runtime::Runtime,
    traces: Option<Traces>,
    admin: Option<(tokio::task::JoinHandle<io::Result<()>>, oneshot::Sender<()>)>,
    admin_address: Option<SocketAddr>,
    reloader: Option<(Reloader, Duration)>,
    pipeline: Pipeline<'static, TailSource>,
    control: Control,
    sinks: Vec<SinkHandle>,
    tailer: Component,
    shutdown_timeout: Duration,
    /// One RCON poller per server with an `rcon_address`, spawned by `run`.
    rcon: Vec<crate::rcon::poller::Poller>,
}

impl App {
    /// Builds everything `run` needs from `config` (already resolved with the environment and
    /// flags by [`Config::apply`]) and `request`. Nothing is read or sent yet, but the admin
    /// server already answers. First of all it runs [`preflight`], as `check` does: every
    /// problem found is refused at once, before anything starts.
    pub fn build(config: Config, request: &RunRequest) -> Result<App, AppError> {
        let run_servers = config.run_servers(&request.dirs, request.server.as_deref())?;
        let rcon_servers = run_servers.clone();
        let checked = preflight(&config, &run_servers);
        let Some(patterns) = checked.patterns.filter(|_| checked.problems.errors() == 0) else {
            return Err(checked.problems.into());
        };
        let service = config.service.info();
        // Before anything opens files: every followed log file holds one.
        let nofile = open_files::raise_to_hard_limit();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("factorio-isr-admin")
            .enable_all()
            .build()
            .map_err(|source| AppError::System {
                what: "starting the async runtime",
                source,
            })?;
        // The gRPC exporter needs the runtime when it is built.
        let (traces, tracer) = {
            let _guard = runtime.enter();
            match Traces::start(&config.traces, &service)? {
                Some((t, tracer)) => (Some(t), Some(tracer)),
                None => (None, None),
            }
        };
        let format = config
            .log
            .format
            .unwrap_or_else(LogFormat::default_for_stderr);
        logs::init(format, config.log.level.as_deref(), tracer);
        if traces.is_some() {
            let t = &config.traces;
            tracing::info!(exporter = ?t.exporter, endpoint = %t.endpoint, sample_rate = t.sample_rate, "Exporting traces.");
        }
        for w in checked.problems.0.iter().filter(|p| p.warning) {
            tracing::warn!("{}", w.message);
        }
        let servers = run_servers
            .into_iter()
            .map(|s| {
                let setting = s.timezone.clone().unwrap_or_default();
                let timezone = setting.resolve()?;
                tracing::info!(server = %s.tag, timezone = %setting, zone = %zone_name(&timezone), "Reading this server's log dates in this time zone.");
                let source =
                    ServerSource::new(&s.tag, s.log_dir.clone(), &s.globs).map_err(|source| {
                        AppError::Globs {
                            tag: s.tag.clone(),
                            source,
                        }
                    })?;
                Ok::<_, AppError>(source.with_timezone(timezone))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let patterns = Arc::new(ArcSwap::from_pointee(patterns));
        let metrics = Arc::new(Metrics::new());
        let budget = OpenFileBudget {
            limit: nofile.soft,
            reserve: config.tail.reserved_open_files,
        };
        log_open_file_limit(&nofile, budget);
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        if let Some(soft) = nofile.soft {
            metrics.pipeline.open_files_limit.set(gauge(soft));
        }
        let max_files = u64::try_from(budget.max_files()).unwrap_or(u64::MAX);
        metrics.pipeline.tail_files_max.set(gauge(max_files));
        let health = Health::new(metrics.component_status.clone());
        // Every server's series of every event type the patterns make, at 0 from the start.
        let tags: Vec<&str> = servers.iter().map(|s| &*s.tag).collect();
        let set = patterns.load();
        let types = set.event_types();
        metrics
            .pipeline
            .register_events(&tags, types.keys().copied().chain([LOG_EVENT_TYPE]));

        // Bound now, so a busy port is reported before anything starts; served once the sinks
        // are built (the Alertmanager receiver posts into Discord's queues).
        let admin_listener = match config.metrics.serve_address() {
            Some(address) => {
                let listener = admin::bind(address)?;
                let local = listener.local_addr().map_err(|source| AppError::System {
                    what: "the admin address",
                    source,
                })?;
                Some((listener, local))
            }
            None => None,
        };

        let tail = &config.tail;
        let ms = Duration::from_millis;
        let tailer = health.component("tailer", "starting");
        let source = TailSource::build(
            TailSourceOptions {
                servers,
                tail: TailOptions {
                    open_files: budget,
                    ..tail.options(
                        config.framing,
                        if request.from_beginning {
                            StartAt::Beginning
                        } else {
                            StartAt::End
                        },
                    )
                },
                state_dir: config.state_dir(&crate::settings::ProcessEnv),
                poll_only: tail.poll_only,
                poll_interval_max: ms(tail.poll_interval_max_ms),
                checkpoint_interval: ms(tail.checkpoint_interval_ms),
            },
            &metrics.pipeline,
        )?
        .with_health(tailer.clone())
        .with_checkpoint_health(health.component("checkpoints", "starting"));

        // The sinks, in delivery order: the reliable one first, then the best-effort ones.
        let ctx = SinkContext {
            service: &service,
            metrics: &metrics,
            health: &health,
            runtime: runtime.handle(),
        };
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        match config.logstash.build(&ctx)? {
            Some(logstash) => sinks.push(Box::new(logstash)),
            None => sinks.push(Box::new(StdoutSink::new(io::stdout(), service.clone()))),
        }
        // Loki and OTLP logs: beside Logstash, or instead of stdout.
        let mut pushed: Vec<Box<dyn Sink>> = Vec::new();
        if let Some(loki) = config.loki.build(&ctx)? {
            pushed.push(Box::new(loki));
        }
        if let Some(otlp) = config.otlp_logs.build(&ctx)? {
            pushed.push(Box::new(otlp));
        }
        if !pushed.is_empty() && config.logstash.address.is_none() {
            sinks.clear();
        }
        sinks.extend(pushed);
        let discord = Discord::build(
            &config.discord,
            config.discord_routes(),
            config.discord_webhook_url.as_ref(),
            &ctx,
        )?;
        let alert_routes = match (
            config
                .alertmanager
                .token(config.alertmanager_token.as_ref())?,
            &discord,
        ) {
            (Some(token), Some(d)) => {
                let receiver = Receiver::new(
                    config.alertmanager.clone(),
                    token,
                    d.discord(),
                    metrics.alertmanager.clone(),
                );
                tracing::info!("Taking Alertmanager notifications on POST /alertmanager.");
                Arc::new(receiver).routes()
            }
            _ => axum::Router::new(),
        };
        if let Some(d) = discord {
            sinks.push(Box::new(d));
        }
        let (admin, admin_address) = match admin_listener {
            Some((listener, local)) => {
                tracing::info!(address = %local, "Serving /metrics, /healthz and /ready.");
                let (stop, stopped) = oneshot::channel::<()>();
                let (m, h) = (metrics.clone(), health.clone());
                let _guard = runtime.enter();
                let limits = config.metrics.limits();
                let task = runtime.spawn(admin::serve_with(
                    listener,
                    m,
                    h,
                    limits,
                    alert_routes,
                    async {
                        let _ = stopped.await;
                    },
                ));
                (Some((task, stop)), Some(local))
            }
            None => (None, None),
        };
        let handles = sinks.iter().map(|s| s.handle()).collect();
        for s in &sinks {
            if s.delivery() == crate::sinks::Delivery::Reliable {
                metrics.pipeline.latency(s.name());
            }
        }

        let (pipeline, control) = Pipeline::new(
            source,
            sinks,
            patterns.clone(),
            RunOptions {
                workers: crate::pipeline::default_workers(),
                metrics: metrics.pipeline.clone(),
            },
        );
        let progress = control.progress();
        tailer.set_liveness_probe(Box::new(move || progress.wedged(WEDGED_AFTER)));
        // RCON: preflight read every password already; each server's poller feeds the inlet.
        let (targets, _) = config.rcon_targets(&rcon_servers);
        let rcon = crate::rcon::pollers(
            targets,
            &config.rcon,
            &metrics.rcon,
            &health,
            &pipeline.presence(),
            &pipeline.inlet(),
            &patterns,
        );
        let reloader = config.patterns_dir.clone().map(|dir| {
            let reloader = Reloader::new(dir, patterns.clone()).with_telemetry(
                metrics.reload.clone(),
                health.component("patterns", "loading"),
            );
            (reloader, ms(tail.reload_poll_interval_ms))
        });
        Ok(App {
            runtime,
            traces,
            admin,
            admin_address,
            reloader,
            pipeline,
            control,
            sinks: handles,
            tailer,
            shutdown_timeout: ms(tail.shutdown_timeout_ms),
            rcon,
        })
    }

    /// Where the admin server listens, when it runs.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin_address
    }

    /// Stops the pipeline from another thread, as SIGTERM does.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// Runs until SIGTERM or SIGINT (or [`Control::stop`]), then shuts down in order. `Ok` on
    /// a clean stop, a forced stop whose checkpoints were saved, or a closed stdout.
    pub fn run(self) -> Result<RunSummary<TailStats>, AppError> {
        let App {
            runtime,
            traces,
            admin,
            reloader,
            pipeline,
            control,
            sinks,
            tailer,
            shutdown_timeout,
            rcon,
            ..
        } = self;
        let rcon: Vec<_> = rcon
            .into_iter()
            .map(|poller| runtime.spawn(poller.run()))
            .collect();
        let stop_reload = Arc::new(AtomicBool::new(false));
        let reloader = reloader.map(|(reloader, poll)| {
            let stop = stop_reload.clone();
            std::thread::spawn(move || {
                reload::watch(
                    reloader,
                    Duration::from_millis(reload::default_debounce_ms()),
                    poll,
                    &stop,
                )
            })
        });
        let (done_tx, done_rx) = oneshot::channel();
        // The tailer reports itself ready once a discovery has listed every log directory.
        let worker = std::thread::spawn(move || {
            let result = pipeline.run();
            if let Err(e) = &result {
                tailer.failed(format!("the pipeline stopped: {e}"));
            }
            let _ = done_tx.send(());
            result
        });

        let drained =
            runtime.block_on(wait_for_stop(control.clone(), done_rx, shutdown_timeout))?;
        stop_reload.store(true, Ordering::Release);
        for poller in rcon {
            poller.abort();
        }
        for h in sinks {
            if let Some(shutdown) = h.shutdown {
                shutdown();
            }
        }
        if let Some((server, stop)) = admin {
            let _ = stop.send(());
            // Open scrapes get a moment to finish; the server must not hold up the exit.
            let _ = runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(1), server).await });
        }
        if !drained {
            tracing::error!(
                "Draining took longer than {shutdown_timeout:?}; saving the checkpoints of what was delivered and exiting."
            );
            control.save_checkpoints().map_err(AppError::Checkpoints)?;
            if let Some(t) = traces {
                t.shutdown();
            }
            runtime.shutdown_background();
            return Ok(RunSummary::default());
        }
        if let Some(t) = traces {
            t.shutdown();
        }
        if let Some(r) = reloader {
            let _ = r.join();
        }
        match join(worker) {
            Ok(RunSummary {
                checkpoint_error: Some(e),
                ..
            }) => {
                tracing::error!(
                    error = %e,
                    "Stopped, but saving the checkpoints failed: lines delivered since the last save will be sent again after a restart."
                );
                Err(AppError::Checkpoints(io::Error::other(e)))
            }
            Ok(summary) => {
                tracing::info!(
                    events = summary.events,
                    files_opened = summary.source.files_opened,
                    truncations = summary.source.truncations,
                    "Stopped; checkpoints saved."
                );
                Ok(summary)
            }
            Err(RunError::Sink(e)) if is_closed_pipe(&e) => Ok(RunSummary::default()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Logs the open-file limit in force and how many log files fit under it, once at start.
fn log_open_file_limit(limit: &OpenFileLimit, budget: OpenFileBudget) {
    let show = |l: Option<u64>| l.map_or("unlimited".to_owned(), |l| l.to_string());
    let (soft, hard) = (show(limit.soft), show(limit.hard));
    let max_files = budget.limit.map_or("any number of".to_owned(), |_| {
        budget.max_files().to_string()
    });
    match (&limit.raise_error, limit.soft) {
        (Some(e), None) => {
            tracing::warn!(error = %e, "Cannot read the open-file limit; the log files followed are not capped.")
        }
        (Some(e), Some(_)) => {
            tracing::warn!(soft = %soft, hard = %hard, error = %e, "Cannot raise the open-file limit to the hard limit; keeping {soft}.")
        }
        (None, _) => {}
    }
    match limit.raised_from {
        Some(from) => {
            tracing::info!(soft = %soft, hard = %hard, raised_from = from, reserved = budget.reserve, "Open-file limit raised from {from} to {soft}: up to {max_files} log files can be followed.")
        }
        None => {
            tracing::info!(soft = %soft, hard = %hard, reserved = budget.reserve, "Open-file limit {soft}: up to {max_files} log files can be followed.")
        }
    }
    if budget.max_files() == 0 {
        tracing::warn!(soft = %soft, reserved = budget.reserve, "The open-file limit leaves no room for log files after the {} kept in reserve; raise the hard limit (systemd LimitNOFILE=, ulimit -Hn) or lower tail.reserved_open_files.", budget.reserve);
    }
}

fn join<T>(worker: JoinHandle<T>) -> T {
    match worker.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Waits for SIGTERM or SIGINT (then stops the pipeline and waits up to `timeout` for it to
/// drain) or for the pipeline to end by itself. Returns whether it finished in time.
async fn wait_for_stop(
    control: Control,
    mut done: oneshot::Receiver<()>,
    timeout: Duration,
) -> Result<bool, AppError> {
    use tokio::signal::unix::{SignalKind, signal};
    let handler = |source| AppError::System {
        what: "installing the signal handlers",
        source,
    };
    let mut term = signal(SignalKind::terminate()).map_err(handler)?;
    let mut int = signal(SignalKind::interrupt()).map_err(handler)?;
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        _ = &mut done => return Ok(true),
    };
    tracing::info!("{name} received; stopping: draining what was read, saving checkpoints.");
    control.stop();
    Ok(tokio::time::timeout(timeout, done).await.is_ok())
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplaySummary {
    /// Files read to the end.
    pub files_read: usize,
    /// Framing counters summed over all files.
    pub frame: FrameStats,
    /// Files that could not be read, in the order given.
    pub file_errors: Vec<ReadError>,
    /// Events emitted, by event type.
    pub events_by_type: std::collections::BTreeMap<String, u64>,
}

impl ReplaySummary {
    /// Events emitted in all.
    pub fn events(&self) -> u64 {
        self.events_by_type.values().sum()
    }
}

/// Replays `paths` start to end through the match stage, handing every event to `sink` on the
/// calling thread, in file order.
pub fn replay_to(
    paths: &[PathBuf],
    patterns: Arc<PatternSet>,
    options: &ReplayOptions,
    sink: Box<dyn Sink + '_>,
) -> Result<ReplaySummary, RunError> {
    let source = ReplaySource::new(paths, options.clone());
    let (pipeline, _control) = Pipeline::new(
        source,
        vec![sink],
        Arc::new(ArcSwap::new(patterns)),
        RunOptions::default(),
    );
    let RunSummary {
        source:
            ReplayReport {
                files_read,
                frame,
                file_errors,
            },
        events_by_type,
        ..
    } = pipeline.run()?;
    Ok(ReplaySummary {
        files_read,
        frame,
        file_errors,
        events_by_type,
    })
}

/// [`replay_to`] with a closure as the sink.
pub fn replay(
    paths: &[PathBuf],
    patterns: Arc<PatternSet>,
    options: &ReplayOptions,
    sink: impl FnMut(&crate::event::Event) -> io::Result<()> + Send,
) -> Result<ReplaySummary, RunError> {
    replay_to(paths, patterns, options, Box::new(FnSink(sink)))
}

/// What `replay` found besides the events: cut lines, unreadable files.
pub struct ReplayOutcome {
    /// The summary; `None` when stdout's reader went away.
    pub summary: Option<ReplaySummary>,
    /// The line limit, for the warning about cut lines.
    pub limits: FramingLimits,
}

/// `factorio-isr replay`: the events of `files` as JSON lines on stdout.
pub fn replay_stdout(
    config: &Config,
    files: &[PathBuf],
    server: Option<String>,
) -> Result<ReplayOutcome, AppError> {
    let set = load_patterns(config)?;
    let options = ReplayOptions {
        server: Arc::from(server.unwrap_or_else(|| config.server_tag.clone())),
        limits: config.framing,
        timezone: config.timezone.resolve()?,
        read_time: None,
        progress: io::stderr().is_terminal(),
    };
    // Unlocked: the sink thread is not this one. The sink buffers 256 KiB per write anyway.
    let sink = StdoutSink::new(io::stdout(), config.service.info());
    let summary = match replay_to(files, Arc::new(set), &options, Box::new(sink)) {
        Ok(s) => Some(s),
        Err(RunError::Sink(e)) if is_closed_pipe(&e) => None,
        Err(e) => return Err(e.into()),
    };
    Ok(ReplayOutcome {
        summary,
        limits: options.limits,
    })
}

/// One thing [`preflight`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// A warning does not stop `run` (a log directory that may appear later).
    pub warning: bool,
    /// What is wrong, where (`file:line: ` first when it is written in a file) and what to do.
    /// Never a secret.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Everything [`preflight`] found; as an error, its problems that are not warnings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// How many are not warnings.
    pub fn errors(&self) -> usize {
        self.0.iter().filter(|p| !p.warning).count()
    }

    fn error(&mut self, message: impl Into<String>) {
        self.0.push(Problem {
            warning: false,
            message: message.into(),
        });
    }

    fn warning(&mut self, message: impl Into<String>) {
        self.0.push(Problem {
            warning: true,
            message: message.into(),
        });
    }
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let errors: Vec<&Problem> = self.0.iter().filter(|p| !p.warning).collect();
        match errors.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{}:", plural(many.len(), "problem", "problems"))?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Problems {}

/// What [`preflight`] found: the pattern set (when it loads) and every problem.
#[derive(Debug)]
pub struct Checked {
    /// The pattern set in force; `None` when its files have problems.
    pub patterns: Option<PatternSet>,
    /// Every problem, errors and warnings.
    pub problems: Problems,
}

/// Everything `run` checks before it starts anything, for `run` ([`App::build`]) and `check`
/// alike: the patterns load; every Discord webhook has a usable URL (the config's, its
/// `url_file`'s, `DISCORD_WEBHOOK_URL`'s); every webhook a server or a pattern names is
/// configured; Logstash's TLS files can be read; traces to stdout do not mix with the events.
/// A log directory that does not exist or is not a directory is a warning: `run` waits for it.
/// Collects every problem rather than stopping at the first; `config` is already resolved with
/// the environment and the flags, `servers` are the servers `run` follows.
pub fn preflight(config: &Config, servers: &[ServerConfig]) -> Checked {
    let mut problems = Problems::default();
    let at = |keys: &[&str]| match &config.file {
        Some(f) => format!("{}: ", f.locate(keys)),
        None => String::new(),
    };

    // Discord: the webhooks' URLs, then the names servers and patterns give.
    let default_url = config.discord_webhook_url.as_ref().map(Secret::expose);
    let (_, webhook_errors) = check_webhooks(&config.discord, default_url);
    for e in webhook_errors {
        let location = match &e {
            DiscordError::BadUrl { name, .. } => {
                let has_url = config
                    .discord
                    .webhooks
                    .get(name)
                    .is_some_and(|w| w.url.is_some());
                let key = if has_url { "url" } else { "url_file" };
                at(&["discord", "webhooks", name, key])
            }
            DiscordError::UrlFile { name, .. } => at(&["discord", "webhooks", name, "url_file"]),
            DiscordError::UrlSource { name } => at(&["discord", "webhooks", name]),
            _ => String::new(),
        };
        problems.error(format!("{location}{e}"));
    }
    let mut configured: Vec<&str> = config.discord.webhooks.keys().map(String::as_str).collect();
    if default_url.is_some() {
        configured.push(&config.discord.default_webhook);
    }
    // Without any webhook, Discord is off and the names are unused.
    let patterns = match load_patterns(config) {
        Ok(set) => Some(set),
        Err(errors) => {
            for e in &errors.0 {
                problems.error(e.to_string());
            }
            None
        }
    };
    if !configured.is_empty() {
        let unknown = |who: String, name: &String| DiscordError::Unknown {
            who,
            name: name.clone(),
        };
        for s in servers {
            if let Some(w) = &s.discord_webhook
                && !configured.contains(&w.as_str())
            {
                let index = config.servers.iter().position(|c| c.tag == s.tag);
                let location = match index {
                    Some(i) => at(&["servers", &i.to_string(), "discord_webhook"]),
                    None => String::new(),
                };
                let e = unknown(format!("server `{}`", s.tag), w);
                problems.error(format!("{location}{e}"));
            }
        }
        for p in patterns.iter().flat_map(|set| set.patterns()) {
            if let Some(w) = p.discord.as_ref().and_then(|d| d.webhook.as_ref())
                && !configured.contains(&w.as_str())
            {
                let e = unknown(format!("pattern `{}`", p.qualified_name), w);
                problems.error(format!("{}: {e}", p.location));
            }
        }
    }

    // Role pings, and the Alertmanager receiver.
    let bad_role = |id: &str| {
        format!(
            "`{id}` in mention_roles is not a Discord role id: use the role's 17 to 20 digit id as a string (Server Settings > Roles > Copy Role ID, with Developer Mode on)"
        )
    };
    for (i, s) in config.servers.iter().enumerate() {
        let here = at(&["servers", &i.to_string(), "mention_roles"]);
        for id in s
            .mention_roles
            .iter()
            .filter(|id| !is_discord_snowflake(id))
        {
            problems.error(format!("{here}{}", bad_role(id)));
        }
        if s.mention_roles.len() > MAX_MENTION_ROLES {
            problems.error(format!(
                "{here}server `{}` lists more than {MAX_MENTION_ROLES} roles in mention_roles: ping a role that holds the people instead",
                s.tag
            ));
        }
    }
    for (severity, id) in config.alertmanager.bad_role_ids() {
        let here = at(&["alertmanager", "routes", severity, "mention_roles"]);
        problems.error(format!("{here}{}", bad_role(id)));
    }
    match config.alertmanager.token(config.alertmanager_token.as_ref()) {
        Err(e) => {
            let here = match (&e, &config.alertmanager_token) {
                (AlertmanagerError::EmptyToken { .. }, Some(_)) => String::new(),
                _ => at(&["alertmanager", "token_file"]),
            };
            problems.error(format!("{here}{e}"));
        }
        Ok(Some(_)) if configured.is_empty() => problems.error(format!(
            "{}the Alertmanager receiver has a token but no Discord webhook to post alerts to: set DISCORD_WEBHOOK_URL or configure [discord.webhooks]",
            at(&["alertmanager"])
        )),
        Ok(Some(_)) => {
            let default = &config.discord.default_webhook;
            if config.alertmanager.webhook.is_none() && !configured.contains(&default.as_str()) {
                problems.error(format!(
                    "{}alerts go to the default Discord webhook `{default}`, which is not configured: set [alertmanager] webhook to one of [discord.webhooks]",
                    at(&["alertmanager"])
                ));
            }
            for (keys, w) in config.alertmanager.webhooks() {
                if !configured.contains(&w) {
                    let e = DiscordError::Unknown {
                        who: "[alertmanager]".to_owned(),
                        name: w.to_owned(),
                    };
                    problems.error(format!("{}{e}", at(&keys)));
                }
            }
            if !config.metrics.enabled {
                problems.error(
                    "the Alertmanager receiver (POST /alertmanager) is served by the admin server, which is off: remove METRICS_ENABLED=false (or [metrics] enabled = false), or remove the Alertmanager token",
                );
            }
        }
        Ok(None) => {
            let a = &config.alertmanager;
            if a.webhook.is_some() || !a.routes.is_empty() {
                problems.warning(format!(
                    "{}[alertmanager] has no token (token_file or ALERTMANAGER_TOKEN), so POST /alertmanager is off",
                    at(&["alertmanager"])
                ));
            }
        }
    }

    // Logstash's TLS files, read as the sink will.
    if let (Some(address), Some(tls)) = (&config.logstash.address, &config.logstash.tls)
        && let Err(e) = Tls::new(tls, address)
    {
        problems.error(e.to_string());
    }
    // Loki's secret and CA files, read as the sink will.
    if let Err(e) = config.loki.preflight() {
        problems.error(format!("{}{e}", at(&["loki"])));
    }
    if let Err(e) = config.otlp_logs.preflight() {
        problems.error(format!("{}{e}", at(&["otlp_logs"])));
    }
    if config.logstash.address.is_none()
        && config.traces.enabled
        && config.traces.exporter == Exporter::Stdout
    {
        problems.error(AppError::StdoutTraces.to_string());
    }

    // RCON: every server with an address needs a password it can read.
    for p in config.rcon_targets(servers).1 {
        problems.error(p);
    }

    // Log directories may appear later: `run` waits for them.
    for s in servers {
        let dir = s.log_dir.display();
        match std::fs::metadata(&s.log_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => problems.warning(format!(
                "server `{}`: log_dir {dir} is not a directory; run waits until it is one",
                s.tag
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => problems.warning(format!(
                "server `{}`: log_dir {dir} does not exist (yet); run waits for it",
                s.tag
            )),
            Err(e) => problems.warning(format!(
                "server `{}`: log_dir {dir} cannot be read: {e}; run retries it",
                s.tag
            )),
        }
    }
    Checked { patterns, problems }
}

/// `factorio-isr check`: validates `config_path` with `env` and `patterns_flag` applied as
/// `run` applies them, then runs [`preflight`] over it and the config's `[[servers]]`. Every
/// problem (and warning) goes to `err` first; then, when there is no problem, what is valid
/// goes to `out`. Returns the number of problems, warnings not counted.
pub fn check(
    config_path: Option<&Path>,
    patterns_flag: Option<PathBuf>,
    env: &impl Env,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<usize> {
    let mut problems = 0usize;
    let mut config = match Config::load_or_default(config_path) {
        Ok(c) => c,
        Err(e) => {
            writeln!(err, "{e}")?;
            problems += 1;
            Config::default()
        }
    };
    let flags = Overrides {
        patterns_dir: patterns_flag,
        ..Overrides::default()
    };
    if let Err(e) = config.apply(&flags, env) {
        writeln!(err, "{e}")?;
        problems += 1;
    }
    let servers = config.servers.clone();
    let checked = preflight(&config, &servers);
    for p in &checked.problems.0 {
        writeln!(err, "{p}")?;
    }
    problems += checked.problems.errors();
    if problems > 0 {
        writeln!(
            err,
            "\n{}; nothing was loaded",
            plural(problems, "problem found", "problems found")
        )?;
        return Ok(problems);
    }
    err.flush()?;
    if let Some(path) = config_path {
        writeln!(out, "config: {} is valid", path.display())?;
    }
    if let Some(set) = &checked.patterns {
        write_summary(out, config.patterns_dir.as_deref(), set)?;
    }
    out.flush()?;
    Ok(problems)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Timestamp;
    use std::io::Write;

    fn options() -> ReplayOptions {
        ReplayOptions {
            server: "t".into(),
            limits: FramingLimits::default(),
            timezone: jiff::tz::TimeZone::UTC,
            read_time: Some(Timestamp(0)),
            progress: false,
        }
    }

    fn file(lines: impl Iterator<Item = String>) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        f
    }

    #[test]
    fn preflight_reports_every_problem_and_warns_about_log_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.logstash.address = Some("127.0.0.1:5044".into());
        config.logstash.tls = Some(crate::sinks::logstash::tls::TlsConfig {
            ca_file: Some(tmp.path().join("no-ca.pem")),
            ..Default::default()
        });
        config.discord_webhook_url = Some(Secret::new("nope-SECRET"));
        let servers = vec![ServerConfig {
            tag: "a".into(),
            log_dir: tmp.path().join("later"),
            globs: crate::tail::tailer::default_globs(),
            discord_webhook: Some("admins".into()),
            discord_disabled: Vec::new(),
            timezone: None,
            rcon_address: None,
            rcon_password_file: None,
            rcon_password: None,
            mention_roles: Vec::new(),
        }];
        let checked = preflight(&config, &servers);
        assert!(checked.patterns.is_some());
        let p = &checked.problems;
        assert_eq!(p.errors(), 3, "{p:#?}");
        let text = p.to_string();
        assert!(
            text.starts_with("3 problems:\n  DISCORD_WEBHOOK_URL"),
            "{text}"
        );
        assert!(
            text.contains("server `a` posts to the discord webhook `admins`"),
            "{text}"
        );
        assert!(text.contains("no-ca.pem"), "{text}");
        assert!(
            !text.contains("SECRET") && !text.contains("warning"),
            "{text}"
        );
        let warning = p.0.iter().find(|p| p.warning).unwrap().to_string();
        assert!(warning.contains("later does not exist"), "{warning}");

        // Without any webhook, Discord is off and the names servers give are not checked.
        config.discord_webhook_url = None;
        config.logstash.tls = None;
        assert_eq!(preflight(&config, &servers).problems.errors(), 0);
    }

    #[test]
    fn events_arrive_in_file_order_across_chunks_and_files() {
        let set = Arc::new(crate::patterns::shipped().unwrap());
        let a = file((0..50_000).map(|i| format!("2025-01-01 00:00:00 [CHAT] a: {i}")));
        let b = file((0..50_000).map(|i| format!("2025-01-01 00:00:00 [CHAT] b: {i}")));
        let paths = [a.path().to_owned(), b.path().to_owned()];
        let mut seen = Vec::new();
        let summary = replay(&paths, set.clone(), &options(), |e| {
            seen.push(e.raw.clone());
            Ok(())
        })
        .unwrap();
        assert_eq!(summary.files_read, 2);
        assert_eq!(summary.events(), 100_000);
        assert_eq!(summary.events_by_type["chat"], 100_000);
        for (i, raw) in seen.iter().enumerate() {
            let (who, n) = if i < 50_000 {
                ("a", i)
            } else {
                ("b", i - 50_000)
            };
            assert_eq!(raw, &format!("2025-01-01 00:00:00 [CHAT] {who}: {n}"));
        }
    }

    #[test]
    fn a_failing_sink_stops_the_replay_with_its_error() {
        let set = Arc::new(crate::patterns::shipped().unwrap());
        let a = file((0..200_000).map(|i| format!("line {i}")));
        let mut n = 0;
        let err = replay(&[a.path().to_owned()], set.clone(), &options(), |_| {
            n += 1;
            if n == 10 {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "gone"))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(matches!(err, RunError::Sink(ref e) if e.kind() == io::ErrorKind::BrokenPipe));
        assert_eq!(n, 10, "no event after the failing one");
    }

    #[test]
    fn stopping_early_never_deadlocks_whatever_the_point() {
        let set = Arc::new(crate::patterns::shipped().unwrap());
        let a = file((0..60_000).map(|i| format!("line {i}")));
        let b = file((0..60_000).map(|i| format!("other {i}")));
        let paths = [a.path().to_owned(), b.path().to_owned()];
        for stop_at in [1, 2, 100, 4_000, 30_000, 59_999, 60_001, 119_999] {
            let mut n = 0;
            let result = replay(&paths, set.clone(), &options(), |_| {
                n += 1;
                if n == stop_at {
                    Err(io::Error::other("stop"))
                } else {
                    Ok(())
                }
            });
            assert!(result.is_err(), "stop at {stop_at}");
            assert_eq!(n, stop_at);
        }
    }

    #[test]
    fn unreadable_files_are_reported_and_the_rest_replayed() {
        let set = Arc::new(crate::patterns::shipped().unwrap());
        let good = file(std::iter::once("hello".to_owned()));
        let paths = [PathBuf::from("/nonexistent/x.log"), good.path().to_owned()];
        let mut n = 0;
        let summary = replay(&paths, set.clone(), &options(), |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(summary.files_read, 1);
        assert_eq!(summary.file_errors.len(), 1);
    }
}
