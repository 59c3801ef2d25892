//! The tailer as a pipeline [`Source`]: following log directories, with checkpoints.
//!
//! [`TailSource::build`] does everything that can fail before anything runs: it opens (and if
//! needed creates) the state directory, loads its checkpoints (a corrupt file is logged and
//! ignored), checks that the directory is writable, and sets up the tailer and the file
//! watcher. [`Source::run`] is the tail loop ([`follow`]) until stopped.
//!
//! Each batch's [`Receipt`] records the file's checkpoint once the batch is delivered, on the
//! sink thread, in memory only. The checkpoint file is saved by a thread of its own every
//! `checkpoint_interval` while something delivered is not saved yet, so a burst followed by
//! quiet is on disk within the interval, and neither delivering nor reading ever waits for a
//! save's fsyncs (tens of milliseconds on a busy disk: a live line's latency). The store's lock
//! is held only to take what to write, not while writing it. The pipeline
//! saves once more when it ends; a forced stop saves from the main thread through
//! [`Checkpoints::save`], after cutting the batch in flight where the sink's write stopped.
//!
//! How it fails: an unusable state directory is a [`TailSourceError`] from `build`, naming the
//! directory and the flag to change it. A failed save is logged and counted
//! (`errors_total{component="checkpoint",error_type="save"}`) and retried at the next interval.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use thiserror::Error;
use tracing::warn;

use super::checkpoint::{CheckpointStore, FileCheckpoint};
use super::tailer::{ServerSource, TailOptions, TailStats, Tailer};
use super::watch::{Waker, follow};
use crate::event::Timestamp;
use crate::pipeline::{Batch, Checkpoints, Output, Receipt, Source, StopHandle};
use crate::settings::lock;
use crate::telemetry::health::Component;
use crate::telemetry::metrics::{ErrorCounter, ErrorKind, PipelineMetrics};

/// How the tail source runs.
#[derive(Clone, Debug)]
pub struct TailSourceOptions {
    /// The servers to follow.
    pub servers: Vec<ServerSource>,
    /// Tailer behaviour.
    pub tail: TailOptions,
    /// Where checkpoints are kept.
    pub state_dir: PathBuf,
    /// Never use file-system notifications (Docker bind mounts, network file systems).
    pub poll_only: bool,
    /// Longest wait between two looks at the files when nothing happens.
    pub poll_interval_max: Duration,
    /// Checkpoints are saved at most this often.
    pub checkpoint_interval: Duration,
}

/// The state directory cannot hold checkpoints.
#[derive(Debug, Error)]
#[error("{}: cannot use the state directory: {source}; pass --state-dir DIR with a writable directory", path.display())]
pub struct TailSourceError {
    /// The directory.
    pub path: PathBuf,
    /// The cause.
    pub source: io::Error,
}

/// The checkpoint store's errors, for `errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointErrorKind {
    /// Writing the checkpoint file failed.
    Save,
}

impl ErrorKind for CheckpointErrorKind {
    const ALL: &'static [Self] = &[CheckpointErrorKind::Save];

    fn component(self) -> &'static str {
        "checkpoint"
    }

    fn error_type(self) -> &'static str {
        match self {
            CheckpointErrorKind::Save => "save",
        }
    }
}

/// The checkpoint store shared by the tail loop, the receipts and the stop path.
struct Store {
    store: Mutex<CheckpointStore>,
    interval: Duration,
    /// Held while a save is written: one at a time.
    writing: Mutex<()>,
    errors: ErrorCounter,
    /// `checkpoints` in `/ready`: not ready while saves fail.
    health: Component,
}

impl Store {
    /// Saves when there is something new; a failure is logged and counted.
    fn save(&self) -> io::Result<()> {
        let _writing = lock(&self.writing);
        let pending = {
            let mut store = lock(&self.store);
            if !store.is_dirty() {
                return Ok(());
            }
            store.prepare_save(Timestamp::now())
        };
        match pending.and_then(|p| p.write().map(|()| p)) {
            Ok(p) => {
                lock(&self.store).saved(&p);
                self.health.ready();
                Ok(())
            }
            Err(e) => {
                self.errors.record(CheckpointErrorKind::Save);
                warn!(error = %e, "Saving checkpoints failed; will retry.");
                self.health.not_ready(format!(
                    "saving checkpoints failed: {e}; lines delivered since the last save would be sent again after a restart"
                ));
                Err(e)
            }
        }
    }

    /// Saves every `interval` until `stop` says so (or is dropped): the saver thread.
    fn save_every_interval(&self, stop: &mpsc::Receiver<()>) {
        let interval = self.interval.max(MIN_SAVE_INTERVAL);
        while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
            let _ = self.save();
        }
    }
}

/// The saver thread's shortest interval, whatever `checkpoint_interval` says.
const MIN_SAVE_INTERVAL: Duration = Duration::from_millis(10);

impl Checkpoints for Store {
    fn save(&self) -> io::Result<()> {
        Store::save(self)
    }
}

/// One batch's checkpoint, recorded once it is delivered.
struct FileReceipt {
    store: Arc<Store>,
    checkpoint: FileCheckpoint,
}

impl Receipt for FileReceipt {
    fn delivered(&self) {
        lock(&self.store.store).update(self.checkpoint.clone());
    }

    fn cut_short(&self, offset: u64) {
        if offset < self.checkpoint.offset {
            lock(&self.store.store).update(FileCheckpoint {
                offset,
                ..self.checkpoint.clone()
            });
        }
    }
}

/// Follows log directories. See the module docs.
pub struct TailSource {
    tailer: Tailer,
    waker: Waker,
    stop: Arc<AtomicBool>,
    store: Arc<Store>,
    poll_interval_max: Duration,
}

impl TailSource {
    /// Opens the state directory and sets up the tailer and the watcher; `metrics` receives
    /// the tailer's counts and the checkpoint errors.
    pub fn build(
        opts: TailSourceOptions,
        metrics: &PipelineMetrics,
    ) -> Result<TailSource, TailSourceError> {
        let dir_error = |source| TailSourceError {
            path: opts.state_dir.clone(),
            source,
        };
        let (store, warning) = CheckpointStore::open(&opts.state_dir).map_err(dir_error)?;
        if let Some(w) = warning {
            warn!("{w}");
        }
        // Fail now, not at the first save, when the directory is not writable.
        let probe = opts.state_dir.join(".write-test");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(dir_error)?;
        let tags: Vec<String> = opts.servers.iter().map(|s| s.tag.to_string()).collect();
        // The tailer decides where files start on the store as it was: a server new to it
        // starts its files at their end; from the next start on, it is known.
        let tailer = Tailer::new(opts.servers, opts.tail, &store).with_metrics(metrics);
        let mut store = store;
        store.set_servers(tags);
        metrics.errors.register::<CheckpointErrorKind>();
        Ok(TailSource {
            tailer,
            waker: Waker::new(opts.poll_only),
            stop: Arc::new(AtomicBool::new(false)),
            store: Arc::new(Store {
                store: Mutex::new(store),
                interval: opts.checkpoint_interval,
                writing: Mutex::new(()),
                errors: metrics.errors.clone(),
                health: Component::default(),
            }),
            poll_interval_max: opts.poll_interval_max,
        })
    }
}

impl TailSource {
    /// Reports to the `tailer` health component whether every log directory can be followed
    /// (checked at each discovery): not ready, naming each directory and why, while one cannot.
    pub fn with_health(mut self, health: Component) -> Self {
        self.tailer = self.tailer.with_health(health);
        self
    }

    /// Reports to `health` (the `checkpoints` component) whether the last save worked: not
    /// ready, with the reason, while saves fail.
    pub fn with_checkpoint_health(mut self, health: Component) -> Self {
        // Nothing else holds the store before the source runs.
        if let Some(store) = Arc::get_mut(&mut self.store) {
            health.ready();
            store.health = health;
        }
        self
    }
}

impl Source for TailSource {
    type Report = TailStats;

    fn stop_handle(&self) -> StopHandle {
        let (stop, wake) = (self.stop.clone(), self.waker.handle());
        Arc::new(move || {
            stop.store(true, Ordering::Release);
            wake.wake();
        })
    }

    fn checkpoints(&self) -> Option<Arc<dyn Checkpoints>> {
        Some(self.store.clone())
    }

    fn run(self, out: &mut Output<'_>) -> TailStats {
        let TailSource {
            tailer,
            waker,
            stop,
            store,
            poll_interval_max,
        } = self;
        // `follow` wants two closures; both need `out`, one at a time.
        let out = std::cell::RefCell::new(out);
        let (stop_saver, saver_stop) = mpsc::channel::<()>();
        std::thread::scope(|scope| {
            let saver = store.clone();
            if let Err(e) = std::thread::Builder::new()
                .name("checkpoints".into())
                .spawn_scoped(scope, move || saver.save_every_interval(&saver_stop))
            {
                warn!(error = %e, "Could not start the checkpoint saver thread; checkpoints will be saved when factorio-isr stops.");
            }
            let stats = follow(
                tailer,
                waker,
                poll_interval_max,
                &stop,
                || out.borrow().alive(),
                |b| {
                    let receipt = b.checkpoint.map(|checkpoint| {
                        Arc::new(FileReceipt {
                            store: store.clone(),
                            checkpoint,
                        }) as Arc<dyn Receipt>
                    });
                    out.borrow_mut().send(Batch {
                        source: b.source,
                        read_time: b.read_time,
                        records: b.records,
                        receipt,
                        span: b.span,
                    })
                },
            );
            drop(stop_saver);
            stats
        })
    }
}
