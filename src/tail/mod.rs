//! Tail: from log files on disk to framed records.
//!
//! This stage owns everything that touches the log files themselves: its config sections
//! ([`config`]), following each server's directory ([`tailer`], woken by [`watch`], resumed from
//! [`checkpoint`]s of files known by their [`fingerprint`]), where a followed file starts
//! ([`start`]), reading one file into records for `run` and `replay` alike ([`file`](mod@file); `replay`'s
//! whole-file loop is [`read`]), the two as pipeline sources ([`source`] follows directories
//! with checkpoints, [`replay`] reads whole files once), cutting bytes into lines and joining multi-line error records
//! ([`frame`]), the open-file limit and the tailer's share of it ([`open_files`]), and understanding what a line's prefix says about it ([`shape`]): engine line,
//! console line or bare output, and the time it carries, read in the server's time zone
//! ([`zone`]). What happens to followed files is
//! logged and counted in [`internal_events`].
//!
//! Its output is a stream of [`frame::Record`]s per file, each with its byte offsets, so later
//! stages can say exactly where an event came from and a checkpoint can say where to resume.
//!
//! How it fails: a file that cannot be opened or read is an [`read::ReadError`] naming the file
//! (`replay`) or a logged, counted error retried later (`run`); `replay` refuses a file that
//! looks binary before any event is made from it. Content never fails: invalid UTF-8 is
//! replaced, over-long lines are cut, and both are counted.

pub mod checkpoint;
pub mod config;
pub mod file;
pub mod fingerprint;
pub mod frame;
pub mod internal_events;
pub mod open_files;
pub mod read;
pub mod replay;
pub mod shape;
pub mod source;
pub mod start;
pub mod tailer;
pub mod watch;
pub mod zone;

pub use replay::{ReplayOptions, ReplayReport, ReplaySource};
pub use source::{TailSource, TailSourceError, TailSourceOptions};
