//! Tail: from log files on disk to framed records.
//!
//! This stage owns everything that touches the log files themselves: reading their bytes in
//! large chunks ([`read`]), cutting them into lines and joining multi-line error records
//! ([`frame`]), and understanding what a line's prefix says about it ([`shape`]): engine line,
//! console line or bare output, and the time it carries.
//!
//! Its output is a stream of [`frame::Record`]s per file, each with its byte offsets, so later
//! stages can say exactly where an event came from and a checkpoint can say where to resume.
//!
//! How it fails: a file that cannot be opened or read is an [`read::ReadError`] naming the file;
//! a file that looks binary is refused before any event is made from it. Content never fails:
//! invalid UTF-8 is replaced, over-long lines are cut, and both are counted.

pub mod checkpoint;
pub mod fingerprint;
pub mod frame;
pub mod read;
pub mod replay;
pub mod shape;
pub mod source;
pub mod tailer;
pub mod watch;

pub use replay::{ReplayOptions, ReplayReport, ReplaySource};
pub use source::{TailSource, TailSourceError, TailSourceOptions};
