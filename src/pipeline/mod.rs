//! The pipeline: the stages wired together.
//!
//! Both commands move work through the same stages, in batches over bounded channels:
//!
//! ```text
//!  source thread ──(seq, records)──► match workers ×N ──(seq, events)──► sink thread
//!  read + frame                      match                               reorder by seq → sink
//! ```
//!
//! - [`route`]: on the sink thread, every event goes to the reliable sink and events with a
//!   Discord template also to Discord's queue, which never waits.
//! - [`replay()`]: the source reads whole files once, start to end.
//! - [`run`]: the source is the tailer following log directories; the sink thread advances a
//!   file's checkpoint only past events the sink has taken, and saves checkpoints.
//!
//! Matching is where the time goes, so it runs on as many workers as there are cores; reading
//! and framing stay on one thread because a file's records depend on the lines before them.
//! Every batch carries a sequence number and the sink thread takes batches in that order, so
//! events leave in file order whatever the workers' timing. The channel bounds keep memory flat
//! when the sink is slower than the source: the source blocks, which for `run` means the tailer
//! stops reading and the log file itself is the buffer.

pub mod replay;
pub mod route;
pub mod run;
mod stages;

pub use replay::{ReplayError, ReplayOptions, ReplaySummary, replay};
pub use run::{Pipeline, RunError, RunOptions, RunSummary, Stopper};
pub use stages::default_workers;
