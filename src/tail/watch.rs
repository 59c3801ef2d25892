//! Waking the tailer: file-system notifications as a hint, polling as the truth.
//!
//! [`follow`] is the tailer's loop. After a pass that read something it polls again at once;
//! after an idle pass it waits, doubling the wait from 1 ms up to `poll_interval_max`, and any
//! notification from [`Waker`] cuts the wait short. So a write wakes the tailer at once when
//! inotify works, new lines wait at most `poll_interval_max` when it does not (Docker bind
//! mounts, network file systems), and an idle tailer costs a few system calls a second.
//!
//! A notification that files came or went (create, remove, rename), a queue overflow (notify's
//! rescan flag, with or without paths) or a watcher error all make the next pass list the
//! directories again. With `poll_only`, no watcher is created at all.
//!
//! How it fails: a directory that cannot be watched (missing, or out of inotify watches) is only
//! polled; the watch is tried again at each pass, so a directory that is removed and created
//! again is watched again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tracing::{debug, warn};

use super::fingerprint::FileKey;
use super::tailer::{TailBatch, TailStats, Tailer};

/// Shortest wait after an idle pass.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// Default longest wait between passes when nothing happens: 250 ms.
pub const fn default_poll_interval_max_ms() -> u64 {
    250
}

/// Wakes the tailer loop early.
#[derive(Clone)]
pub struct WakeHandle {
    tx: mpsc::SyncSender<()>,
    rescan: Arc<AtomicBool>,
}

impl WakeHandle {
    /// Wakes the loop (data may be there, or it should stop).
    pub fn wake(&self) {
        let _ = self.tx.try_send(());
    }

    /// Wakes the loop and makes it list the directories again.
    pub fn rescan(&self) {
        self.rescan.store(true, Ordering::Release);
        self.wake();
    }
}

/// Notifications about the log directories, turned into wake-ups.
pub struct Waker {
    rx: mpsc::Receiver<()>,
    handle: WakeHandle,
    watcher: Option<RecommendedWatcher>,
    /// Watched directories and the identity of the directory that is watched.
    watched: HashMap<PathBuf, FileKey>,
}

impl Waker {
    /// A waker; with `poll_only` it never watches anything and only `WakeHandle`s wake it.
    pub fn new(poll_only: bool) -> Self {
        let (tx, rx) = mpsc::sync_channel(1);
        let handle = WakeHandle {
            tx,
            rescan: Arc::new(AtomicBool::new(false)),
        };
        let watcher = if poll_only {
            None
        } else {
            let h = handle.clone();
            match notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                Ok(ev) if ev.need_rescan() => h.rescan(),
                Ok(ev) => match ev.kind {
                    EventKind::Create(_) | EventKind::Remove(_) => h.rescan(),
                    EventKind::Modify(notify::event::ModifyKind::Name(_)) => h.rescan(),
                    _ => h.wake(),
                },
                // An error may mean lost events: look at everything again.
                Err(_) => h.rescan(),
            }) {
                Ok(w) => Some(w),
                Err(e) => {
                    warn!(error = %e, "Cannot create a file watcher; polling only.");
                    None
                }
            }
        };
        Waker {
            rx,
            handle,
            watcher,
            watched: HashMap::new(),
        }
    }

    /// A handle that wakes this waker from another thread.
    pub fn handle(&self) -> WakeHandle {
        self.handle.clone()
    }

    /// Watches every existing directory of `dirs` that is not watched yet, or whose directory
    /// was replaced since it was watched.
    pub fn ensure_watched<'a>(&mut self, dirs: impl Iterator<Item = &'a Path>) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        for dir in dirs {
            let Ok(meta) = std::fs::metadata(dir) else {
                self.watched.remove(dir);
                continue;
            };
            let key = FileKey::of(&meta);
            if self.watched.get(dir) == Some(&key) {
                continue;
            }
            let _ = watcher.unwatch(dir);
            match watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    debug!(dir = %dir.display(), "Watching log directory.");
                    self.watched.insert(dir.to_owned(), key);
                }
                Err(e) => {
                    warn!(dir = %dir.display(), error = %e, "Cannot watch log directory; polling it.");
                    self.watched.insert(dir.to_owned(), key);
                }
            }
        }
    }

    /// Waits until woken or `timeout` passes. Returns whether a rescan was asked for.
    pub fn wait(&self, timeout: Duration) -> bool {
        let _ = self.rx.recv_timeout(timeout);
        self.take_rescan()
    }

    /// Whether a rescan was asked for since the last call.
    pub fn take_rescan(&self) -> bool {
        self.handle.rescan.swap(false, Ordering::AcqRel)
    }
}

/// The tailer's loop: poll, hand out batches, wait. Returns when `stop` is set or `send`
/// refuses a batch (the pipeline is gone). `send` may block: that is backpressure, and the
/// tailer reads nothing more while it does. `on_pass` runs at the start of every pass (a
/// heartbeat: an idle loop passes at least every `poll_interval_max`).
pub fn follow(
    mut tailer: Tailer,
    mut waker: Waker,
    poll_interval_max: Duration,
    stop: &AtomicBool,
    mut on_pass: impl FnMut(),
    mut send: impl FnMut(TailBatch) -> bool,
) -> TailStats {
    let mut wait = MIN_WAIT;
    let mut pipeline_alive = true;
    loop {
        on_pass();
        if stop.load(Ordering::Acquire) {
            return tailer.stats();
        }
        if waker.take_rescan() {
            tailer.request_discovery();
        }
        let read = tailer.poll(Instant::now(), &mut |batch| {
            if pipeline_alive {
                pipeline_alive = send(batch);
            }
        });
        if !pipeline_alive {
            return tailer.stats();
        }
        waker.ensure_watched(tailer.dirs());
        if read > 0 {
            wait = MIN_WAIT;
            continue;
        }
        if waker.wait(wait) {
            tailer.request_discovery();
        }
        wait = (wait * 2).min(poll_interval_max.max(MIN_WAIT));
    }
}
