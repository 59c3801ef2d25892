//! What the patterns module tells its operators: the one place where a hot reload that
//! succeeded or failed is logged and counted.
//!
//! A reload that ran is logged at `info` and counted in
//! `factorio_isr_pattern_reloads_total{result="reloaded"}`. A reload that failed logs every
//! problem at `error` (each with its file, line and column), then one `warn` line saying the
//! previous patterns keep running, and counts both
//! `factorio_isr_pattern_reloads_total{result="failed"}` and
//! `factorio_isr_errors_total{component="patterns",error_type="reload"}`. Label values are the
//! fixed words of [`ReloadResult`] and [`InternalError`].
//!
//! How it fails: it does not; logging and counting never block or return an error.

use std::path::Path;

use tracing::{error, info, warn};

use super::PatternErrors;
use crate::telemetry::metrics::{ErrorKind, ReloadMetrics, ResultLabels};

pub use crate::telemetry::metrics::ReloadResult;

/// The errors the patterns module counts in `errors_total` (component `patterns`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InternalError {
    /// A hot reload whose files do not load (`error_type="reload"`).
    Reload,
}

impl ErrorKind for InternalError {
    const ALL: &'static [Self] = &[InternalError::Reload];

    fn component(self) -> &'static str {
        "patterns"
    }

    fn error_type(self) -> &'static str {
        match self {
            InternalError::Reload => "reload",
        }
    }
}

/// Registers every reload result and error at 0, so the series show from the first scrape.
pub(crate) fn register(metrics: &ReloadMetrics) {
    for result in ReloadResult::ALL {
        let _ = metrics.reloads.get_or_create(&ResultLabels {
            result: result.as_str().to_owned(),
        });
    }
    metrics.errors.register::<InternalError>();
}

/// A reload of `dir` put a new set of `patterns` patterns in place.
pub(crate) fn reloaded(metrics: &ReloadMetrics, dir: &Path, patterns: usize) {
    info!(dir = %dir.display(), patterns, "Patterns reloaded.");
    metrics.count(ReloadResult::Reloaded);
}

/// A reload of `dir` failed with `errors`; the previous set keeps running.
pub(crate) fn reload_failed(metrics: &ReloadMetrics, dir: &Path, errors: &PatternErrors) {
    for e in &errors.0 {
        error!("{e}");
    }
    warn!(dir = %dir.display(), "Pattern reload failed; the previous patterns keep running.");
    metrics.count(ReloadResult::Failed);
    metrics.errors.record(InternalError::Reload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_the_words_of_the_metrics_contract() {
        let words: Vec<_> = ReloadResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(words, ["reloaded", "failed"]);
        assert_eq!(InternalError::Reload.component(), "patterns");
        assert_eq!(InternalError::Reload.error_type(), "reload");
    }

    #[test]
    fn a_reload_counts_its_result_and_a_failed_one_its_error() {
        let metrics = crate::telemetry::metrics::Metrics::new();
        let dir = Path::new("patterns");
        reloaded(&metrics.reload, dir, 3);
        reload_failed(&metrics.reload, dir, &PatternErrors(Vec::new()));
        reload_failed(&metrics.reload, dir, &PatternErrors(Vec::new()));
        let text = metrics.encode();
        for sample in [
            "factorio_isr_pattern_reloads_total{result=\"reloaded\"} 1",
            "factorio_isr_pattern_reloads_total{result=\"failed\"} 2",
            "factorio_isr_errors_total{component=\"patterns\",error_type=\"reload\"} 2",
        ] {
            assert!(text.lines().any(|l| l == sample), "{sample}\n{text}");
        }
    }
}
