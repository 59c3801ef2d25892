//! Where a file starts being read when the tailer opens it: a pure decision from what is known
//! about the file, so every case can be tested without a file system.
//!
//! - With a checkpoint: at the checkpoint's offset, or at 0 when the file is now shorter than
//!   that (it was truncated while factorio-isr was stopped).
//! - Without one, found after the first scan: at 0 (the file is new).
//! - Without one, present at the first scan: at 0 with `--from-beginning`, or when it was
//!   written after the last checkpoint save, give or take the clock's grain and the discovery
//!   interval (it changed while factorio-isr was stopped, see [`modified_since_save`]); else
//!   at the start of its last complete line (only what is written from now on is read).
//!
//! Nothing here fails; the start of the last complete line is asked for only when it is the
//! answer, so the caller reads the file's end only then.

use std::fmt;

use super::tailer::StartAt;

/// What is known about a file when it is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartInputs {
    /// The offset of its checkpoint, when it has one.
    pub checkpoint_offset: Option<u64>,
    /// Its length now.
    pub len_bytes: u64,
    /// Whether this is the first scan of the directories since factorio-isr started.
    pub first_scan: bool,
    /// Where files present at the first scan start (`--from-beginning`).
    pub start_at: StartAt,
    /// Whether it was modified at or after the previous checkpoint save (see
    /// [`modified_since_save`]).
    pub modified_since_save: bool,
}

/// Why a file starts where it does; its `Display` is the text of the "Following log file" log
/// line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartReason {
    /// At its checkpoint's offset.
    Checkpoint,
    /// At 0: its checkpoint is past its end (truncated while factorio-isr was stopped). This
    /// counts as a truncation.
    CheckpointPastEnd,
    /// At 0: found after the first scan.
    NewFile,
    /// At 0: `--from-beginning`.
    FromBeginning,
    /// At 0: written while factorio-isr was stopped.
    WrittenWhileStopped,
    /// At the start of its last complete line.
    FirstSeen,
}

impl StartReason {
    /// The text of the log line.
    pub fn text(self) -> &'static str {
        match self {
            StartReason::Checkpoint => "resuming at its checkpoint",
            StartReason::CheckpointPastEnd => {
                "its checkpoint is past its end (truncated while stopped): from the start"
            }
            StartReason::NewFile => "new file: from the start",
            StartReason::FromBeginning => "from the start (--from-beginning)",
            StartReason::WrittenWhileStopped => {
                "written while factorio-isr was stopped: from the start"
            }
            StartReason::FirstSeen => "first seen: from its end",
        }
    }
}

impl fmt::Display for StartReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Where a file starts, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Start {
    /// The first byte to read.
    pub offset: u64,
    /// Why.
    pub reason: StartReason,
}

/// Where a file described by `inputs` starts. `last_line_start` gives the start of its last
/// complete line; it is called only when that is the answer.
pub fn start_offset(inputs: StartInputs, last_line_start: impl FnOnce() -> u64) -> Start {
    let (offset, reason) = match inputs.checkpoint_offset {
        Some(offset) if offset > inputs.len_bytes => (0, StartReason::CheckpointPastEnd),
        Some(offset) => (offset, StartReason::Checkpoint),
        None if !inputs.first_scan => (0, StartReason::NewFile),
        None if inputs.start_at == StartAt::Beginning => (0, StartReason::FromBeginning),
        None if inputs.modified_since_save => (0, StartReason::WrittenWhileStopped),
        None => (last_line_start(), StartReason::FirstSeen),
    };
    Start { offset, reason }
}

/// Whether a file whose modification time is `mtime_ms` was written at or after the previous
/// checkpoint save at `saved_ms`, give or take `slack_ms` (all ms since the epoch). False when
/// either time is unknown: with no save, factorio-isr never ran here before.
///
/// The slack covers two things the two clocks do not say. A file system stamps modification
/// times from a coarse clock (ext4: the kernel tick, up to 10 ms behind the precise clock the
/// save time comes from), so a file created just after a save can look older than it. And a
/// file created shortly before the last save may not have been listed yet (directories are
/// listed every `discovery_interval`), so it was never followed. Both must be read from their
/// start; the callers pass the discovery interval plus a second. A file the checkpoints do not
/// know that was written within the slack before the save is read whole rather than lost.
pub fn modified_since_save(mtime_ms: Option<i64>, saved_ms: Option<i64>, slack_ms: i64) -> bool {
    match (mtime_ms, saved_ms) {
        (Some(m), Some(saved)) => m >= saved.saturating_sub(slack_ms),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAST_LINE: u64 = 70;

    fn inputs() -> StartInputs {
        StartInputs {
            checkpoint_offset: None,
            len_bytes: 100,
            first_scan: true,
            start_at: StartAt::End,
            modified_since_save: false,
        }
    }

    /// The decision, and whether it asked for the last line's start.
    fn decide(inputs: StartInputs) -> (u64, StartReason, bool) {
        let mut asked = false;
        let start = start_offset(inputs, || {
            asked = true;
            LAST_LINE
        });
        (start.offset, start.reason, asked)
    }

    #[test]
    fn a_checkpoint_is_resumed_whatever_else_holds() {
        for first_scan in [true, false] {
            for start_at in [StartAt::End, StartAt::Beginning] {
                for modified_since_save in [true, false] {
                    for at in [0, 42, 100] {
                        let got = decide(StartInputs {
                            checkpoint_offset: Some(at),
                            first_scan,
                            start_at,
                            modified_since_save,
                            ..inputs()
                        });
                        assert_eq!(got, (at, StartReason::Checkpoint, false));
                    }
                }
            }
        }
    }

    #[test]
    fn a_checkpoint_past_the_end_starts_at_zero() {
        let got = decide(StartInputs {
            checkpoint_offset: Some(101),
            ..inputs()
        });
        assert_eq!(got, (0, StartReason::CheckpointPastEnd, false));
    }

    #[test]
    fn a_file_found_after_the_first_scan_is_new() {
        for start_at in [StartAt::End, StartAt::Beginning] {
            let got = decide(StartInputs {
                first_scan: false,
                start_at,
                ..inputs()
            });
            assert_eq!(got, (0, StartReason::NewFile, false));
        }
    }

    #[test]
    fn from_beginning_starts_files_of_the_first_scan_at_zero() {
        let got = decide(StartInputs {
            start_at: StartAt::Beginning,
            modified_since_save: true,
            ..inputs()
        });
        assert_eq!(got, (0, StartReason::FromBeginning, false));
    }

    #[test]
    fn a_file_written_while_stopped_starts_at_zero() {
        let got = decide(StartInputs {
            modified_since_save: true,
            ..inputs()
        });
        assert_eq!(got, (0, StartReason::WrittenWhileStopped, false));
    }

    #[test]
    fn otherwise_a_file_starts_at_its_last_complete_line() {
        assert_eq!(decide(inputs()), (LAST_LINE, StartReason::FirstSeen, true));
    }

    #[test]
    fn reasons_read_as_the_log_line_says() {
        assert_eq!(
            StartReason::Checkpoint.to_string(),
            "resuming at its checkpoint"
        );
        assert_eq!(
            StartReason::CheckpointPastEnd.to_string(),
            "its checkpoint is past its end (truncated while stopped): from the start"
        );
        assert_eq!(StartReason::NewFile.to_string(), "new file: from the start");
        assert_eq!(
            StartReason::FromBeginning.to_string(),
            "from the start (--from-beginning)"
        );
        assert_eq!(
            StartReason::WrittenWhileStopped.to_string(),
            "written while factorio-isr was stopped: from the start"
        );
        assert_eq!(
            StartReason::FirstSeen.to_string(),
            "first seen: from its end"
        );
    }

    #[test]
    fn modified_since_save_needs_both_times() {
        assert!(modified_since_save(Some(10), Some(10), 0));
        assert!(modified_since_save(Some(11), Some(10), 0));
        assert!(!modified_since_save(Some(9), Some(10), 0));
        assert!(!modified_since_save(None, Some(10), 0));
        assert!(!modified_since_save(Some(10), None, 0));
        assert!(!modified_since_save(None, None, 0));
    }

    #[test]
    fn a_file_stamped_by_a_coarse_clock_just_after_a_save_counts_as_written_since() {
        // ext4 stamped the file 3 ms before the precise time of the save that came first.
        let saved = 1_000_000;
        assert!(modified_since_save(Some(saved - 3), Some(saved), 2000));
        assert!(modified_since_save(Some(saved - 2000), Some(saved), 2000));
        assert!(!modified_since_save(Some(saved - 2001), Some(saved), 2000));
    }
}
