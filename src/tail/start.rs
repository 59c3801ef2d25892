//! Where a file starts being read when the tailer opens it: a pure decision from what is known
//! about the file, so every case can be tested without a file system.
//!
//! - With a checkpoint: at the checkpoint's offset, or at 0 when the file is now shorter than
//!   that (it was truncated while factorio-isr was stopped). The checkpoints know every file the
//!   tailer followed, from when it was opened (at its end) or first read, and the files it
//!   let go of in the last day ([`super::checkpoint`]): a file that comes back with the
//!   same identity (fingerprint, device and inode), after a restart or after its directory was
//!   gone for a while, resumes where its delivered lines end.
//! - Without one, found after the first scan: at 0 (the file is new).
//! - Without one, present at the first scan: at 0 with `--from-beginning`; at 0 too when
//!   factorio-isr followed the file's server before (the checkpoint file names the server): a
//!   file the checkpoints do not know was created (or got its first line) while factorio-isr
//!   was stopped. Only at the first run that follows a server (no checkpoint file, or one
//!   written before the server was configured) does a file start at its last complete line,
//!   so that only what is written from now on is read: adding a server to the configuration
//!   does not send its old logs.
//!
//! The rule reads no clock: whether a file is known is a fact of the checkpoint file, whatever
//! the file system's timestamps say. Nothing here fails; the start of the last complete line is
//! asked for only when it is the answer, so the caller reads the file's end only then.

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
    /// Whether this is the first run that follows the file's server: the checkpoint file does
    /// not name it (there was none, or it was written before the server was configured).
    pub first_run: bool,
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
    /// At 0: present at the first scan of a later run, and not in the checkpoints (created
    /// while factorio-isr was stopped, or never followed).
    NotInCheckpoints,
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
            StartReason::NotInCheckpoints => {
                "not in the checkpoints (new since the last run): from the start"
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
        None if !inputs.first_run => (0, StartReason::NotInCheckpoints),
        None => (last_line_start(), StartReason::FirstSeen),
    };
    Start { offset, reason }
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
            first_run: true,
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
                for first_run in [true, false] {
                    for at in [0, 42, 100] {
                        let got = decide(StartInputs {
                            checkpoint_offset: Some(at),
                            first_scan,
                            start_at,
                            first_run,
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
        for first_run in [true, false] {
            let got = decide(StartInputs {
                start_at: StartAt::Beginning,
                first_run,
                ..inputs()
            });
            assert_eq!(got, (0, StartReason::FromBeginning, false));
        }
    }

    #[test]
    fn a_file_the_checkpoints_do_not_know_at_a_later_run_starts_at_zero() {
        // Whatever its modification time says: created while stopped, or never followed.
        let got = decide(StartInputs {
            first_run: false,
            ..inputs()
        });
        assert_eq!(got, (0, StartReason::NotInCheckpoints, false));
    }

    #[test]
    fn at_the_first_run_a_file_starts_at_its_last_complete_line() {
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
            StartReason::NotInCheckpoints.to_string(),
            "not in the checkpoints (new since the last run): from the start"
        );
        assert_eq!(
            StartReason::FirstSeen.to_string(),
            "first seen: from its end"
        );
    }
}
