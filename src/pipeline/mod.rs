//! The pipeline: a source, the stages, and the sinks, wired together.
//!
//! ```text
//!  source thread ──(seq, batch)──► match workers ×N ──(seq, events)──► sink thread
//!  Source::run                     match                               reorder by seq → route
//!                                                                      → sinks → receipt
//! ```
//!
//! - [`source`]: the [`Source`] seam (what feeds the pipeline) and its [`Batch`]es.
//! - `stages`: the source thread, the match workers, and the in-order hand-over
//!   to the sink thread.
//! - [`route`]: on the sink thread, every event to every sink, the reliable sinks flushed,
//!   then the batch's receipt moves the source's checkpoint.
//! - [`presence`]: who the delivered joins and leaves say is online, per server, for the
//!   sources that check it against the server ([`Inlet`] is their way in).
//! - [`run`]: [`Pipeline`] puts them together for `run` (the tailer) and `replay` (whole
//!   files) alike, with [`Control`] to stop it and save checkpoints from another thread.
//!
//! Matching is where the time goes, so it runs on as many workers as there are cores; reading
//! and framing stay on the source's thread because a file's records depend on the lines before
//! them. Every batch carries a sequence number and the sink thread takes batches in that order,
//! so events leave in source order whatever the workers' timing. The channel bounds keep memory
//! flat when the sinks are slower than the source: the source blocks, which for the tailer means
//! it stops reading and the log file itself is the buffer.

pub mod presence;
pub mod route;
pub mod run;
pub mod source;
mod stages;

pub use presence::Presence;
pub use run::{Control, Pipeline, RunError, RunOptions, RunSummary};
pub use source::{Batch, Checkpoints, Output, Progress, Receipt, Source, StopHandle};
pub use stages::{Inlet, default_workers};

/// Events the pipeline's tests send through an inlet.
#[cfg(test)]
mod testing {
    use std::sync::Arc;

    use crate::event::{Event, FieldValue, LogSource, Severity, Timestamp};

    /// A `player_leave` of server `a`, as the RCON poller sends one (`reconciled` or not).
    pub(super) fn leave(player: &str, reconciled: bool) -> Event {
        let mut fields = vec![("player".into(), FieldValue::Str(player.to_owned()))];
        if reconciled {
            fields.push(("reconciled".into(), FieldValue::Bool(true)));
        }
        Event {
            timestamp: Timestamp(0),
            event_type: "player_leave".into(),
            severity: Severity::Info,
            pattern: None,
            fields,
            raw: String::new(),
            message_start: 0,
            source: Arc::new(LogSource {
                server: "a".into(),
                path: "rcon:127.0.0.1:27015".into(),
            }),
            offset: 0,
            trace: None,
        }
    }
}
