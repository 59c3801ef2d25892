//! Hot reload: edits to the patterns directory apply while `run` keeps running.
//!
//! [`Reloader::check`] hashes the directory's pattern files (names and contents); when the hash
//! is the one already loaded (an editor touched a file without changing it) nothing happens.
//! Otherwise the whole directory is loaded and compiled into a new set, which replaces the
//! running one in a single atomic swap; the match workers pick it up from their next batch.
//!
//! [`watch`] runs the checks on a thread: a notification about the directory starts a
//! `debounce` quiet period (an editor's save is several events), after which it checks; with no
//! notification it checks every `poll_interval` anyway, for file systems without notifications.
//!
//! How it fails: a set that does not load keeps the old set running; every problem is logged
//! with its file and line, counted, and kept in [`Reloader::last_error`]. The same broken content
//! is reported once, not at every check.

use std::hash::Hasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use tracing::warn;

use super::internal_events;
use super::{PatternErrors, PatternSet, load_dir, pattern_files};
use crate::telemetry::health::Component;
use crate::telemetry::metrics::ReloadMetrics;

/// Default quiet period after a change before reloading: 300 ms.
pub const fn default_debounce_ms() -> u64 {
    300
}

/// What one check did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// The files are the ones loaded.
    Unchanged,
    /// A new set is running.
    Reloaded {
        /// Patterns in it.
        patterns: usize,
    },
    /// The files changed but do not load; the old set keeps running.
    Failed(PatternErrors),
}

/// Reload counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReloadStats {
    /// Successful reloads.
    pub reloaded: u64,
    /// Failed reloads.
    pub failed: u64,
}

/// Reloads one patterns directory into a shared set.
pub struct Reloader {
    dir: PathBuf,
    current: Arc<ArcSwap<PatternSet>>,
    loaded_hash: Option<u64>,
    stats: ReloadStats,
    last_error: Option<String>,
    metrics: ReloadMetrics,
    health: Component,
}

impl Reloader {
    /// A reloader for `dir`, whose files are what `current` was loaded from.
    pub fn new(dir: PathBuf, current: Arc<ArcSwap<PatternSet>>) -> Self {
        let loaded_hash = dir_hash(&dir);
        Reloader {
            dir,
            current,
            loaded_hash,
            stats: ReloadStats::default(),
            last_error: None,
            metrics: ReloadMetrics::default(),
            health: Component::default(),
        }
    }

    /// Counts reloads in `metrics` and shows a failed one in `health` (`/ready`) until fixed.
    pub fn with_telemetry(mut self, metrics: ReloadMetrics, health: Component) -> Self {
        health.ready();
        internal_events::register(&metrics);
        self.metrics = metrics;
        self.health = health;
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> ReloadStats {
        self.stats
    }

    /// The problems of the last failed reload, while they are not fixed.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Reloads when the files changed, and logs and counts a reload that ran or failed.
    pub fn check(&mut self) -> ReloadOutcome {
        let hash = dir_hash(&self.dir);
        if hash.is_some() && hash == self.loaded_hash {
            return ReloadOutcome::Unchanged;
        }
        self.loaded_hash = hash;
        match load_dir(&self.dir) {
            Ok(set) => {
                let patterns = set.patterns().len();
                self.current.store(Arc::new(set));
                self.stats.reloaded += 1;
                internal_events::reloaded(&self.metrics, &self.dir, patterns);
                self.health.ready();
                self.last_error = None;
                ReloadOutcome::Reloaded { patterns }
            }
            Err(errors) => {
                self.stats.failed += 1;
                internal_events::reload_failed(&self.metrics, &self.dir, &errors);
                self.health.not_ready(format!(
                    "the pattern files do not load; the previous patterns keep running: {}",
                    errors.0.first().map_or(String::new(), |e| e.to_string())
                ));
                self.last_error = Some(errors.to_string());
                ReloadOutcome::Failed(errors)
            }
        }
    }
}

/// A hash of the names and contents of the directory's pattern files; `None` when the
/// directory cannot be read.
fn dir_hash(dir: &Path) -> Option<u64> {
    let files = pattern_files(dir).ok()?;
    let mut h = std::hash::DefaultHasher::new();
    for f in files {
        h.write(f.as_os_str().as_encoded_bytes());
        match std::fs::read(&f) {
            Ok(bytes) => h.write(&bytes),
            Err(_) => h.write(b"\0unreadable"),
        }
    }
    Some(h.finish())
}

/// Runs `reloader` until `stop` is set: after notifications (debounced), and every
/// `poll_interval` without them.
pub fn watch(
    mut reloader: Reloader,
    debounce: Duration,
    poll_interval: Duration,
    stop: &AtomicBool,
) -> ReloadStats {
    let (tx, rx) = mpsc::sync_channel::<()>(1);
    let watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = tx.try_send(());
    })
    .and_then(|mut w| {
        w.watch(&reloader.dir, RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    if let Err(e) = &watcher {
        warn!(dir = %reloader.dir.display(), error = %e, "Cannot watch the patterns directory; checking it every {:?}.", poll_interval);
    }
    while !stop.load(Ordering::Acquire) {
        if rx.recv_timeout(poll_interval).is_ok() {
            // Wait for the burst of events of one save to end.
            while rx.recv_timeout(debounce).is_ok() {}
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        reloader.check();
    }
    reloader.stats()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[[pattern]]\nname = \"a\"\nregex = '^a'\n";
    const GOOD2: &str =
        "[[pattern]]\nname = \"a\"\nregex = '^a'\n[[pattern]]\nname = \"b\"\nregex = '^b'\n";

    fn setup() -> (tempfile::TempDir, Arc<ArcSwap<PatternSet>>, Reloader) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), GOOD).unwrap();
        let set = Arc::new(ArcSwap::from_pointee(load_dir(dir.path()).unwrap()));
        let r = Reloader::new(dir.path().to_owned(), set.clone());
        (dir, set, r)
    }

    #[test]
    fn unchanged_files_do_not_reload() {
        let (dir, _set, mut r) = setup();
        assert!(matches!(r.check(), ReloadOutcome::Unchanged));
        std::fs::write(dir.path().join("p.toml"), GOOD).unwrap(); // same content, new mtime
        assert!(matches!(r.check(), ReloadOutcome::Unchanged));
        assert_eq!(r.stats(), ReloadStats::default());
    }

    #[test]
    fn an_edit_swaps_the_set() {
        let (dir, set, mut r) = setup();
        std::fs::write(dir.path().join("p.toml"), GOOD2).unwrap();
        assert!(matches!(r.check(), ReloadOutcome::Reloaded { patterns: 2 }));
        assert_eq!(set.load().patterns().len(), 2);
        assert!(set.load().match_text("b").is_some());
    }

    #[test]
    fn a_broken_edit_keeps_the_old_set_and_is_reported_once() {
        let (dir, set, mut r) = setup();
        std::fs::write(
            dir.path().join("p.toml"),
            "[[pattern]]\nname = \"a\"\nregex = '('\n",
        )
        .unwrap();
        match r.check() {
            ReloadOutcome::Failed(e) => assert!(e.to_string().contains("p.toml:3:9"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(set.load().patterns().len(), 1);
        assert!(set.load().match_text("a").is_some());
        assert!(r.last_error().is_some());
        assert!(matches!(r.check(), ReloadOutcome::Unchanged));
        assert_eq!(r.stats().failed, 1);
        // Fixing it reloads and clears the error.
        std::fs::write(dir.path().join("p.toml"), GOOD2).unwrap();
        assert!(matches!(r.check(), ReloadOutcome::Reloaded { .. }));
        assert!(r.last_error().is_none());
    }
}
