//! Reading a whole file once, start to end, into records: what `replay` does.
//!
//! The file is read front to back in chunks of [`default_read_chunk_bytes`] through a
//! [`FileReader`], framed as it arrives, and the records of each chunk are handed to the caller
//! together with the time the chunk was read (used as the time stamp of records whose lines
//! carry none). A file whose first 8 KiB hold a NUL byte is taken for a binary file (a save
//! archive, a core dump) and refused before any record is made from it
//! ([`BinaryFiles::Refuse`]); NUL bytes later in a file are kept, decoded as U+0000.
//!
//! The path `-` means standard input, read as a stream to its end (`replay -`); a file named
//! `-` is `./-`.
//!
//! Errors name the file and, for read errors, the byte offset reached. Records framed before a
//! read error have already been handed out: nothing that was read is lost.

use std::fs::File;
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::config::default_read_chunk_bytes;
use super::file::{BinaryFiles, FileReader, Stream};
use super::frame::{FrameStats, FramingLimits, Record};
use super::zone::LocalClock;
use crate::event::Timestamp;

/// A log file could not be read.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The file could not be opened.
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The path is a directory.
    #[error("{}: is a directory; name the log files inside it", path.display())]
    IsDirectory {
        /// The directory.
        path: PathBuf,
    },
    /// Reading failed part-way; records before `offset` were handed out.
    #[error("{}: read failed at byte {offset}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Bytes read before the failure.
        offset: u64,
        /// The cause.
        source: io::Error,
    },
    /// The file looks binary.
    #[error(
        "{}: looks like a binary file (NUL byte at offset {offset}), not a Factorio log; skipped",
        path.display()
    )]
    Binary {
        /// The file.
        path: PathBuf,
        /// Where the first NUL byte is.
        offset: usize,
    },
}

/// The path that stands for standard input.
pub const STDIN_PATH: &str = "-";

/// Whether `path` stands for standard input ([`STDIN_PATH`]).
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == STDIN_PATH
}

/// Reads `path` (standard input for `-`) from start to end, its dates read with `clock`,
/// handing the records of every chunk to `on_records` with the time the chunk was read, and the
/// number of bytes read so far to `on_progress`. When `on_records` returns
/// [`ControlFlow::Break`], reading stops there and the counters so far are returned.
pub fn read_records(
    path: &Path,
    limits: FramingLimits,
    clock: LocalClock,
    on_progress: impl FnMut(u64),
    on_records: impl FnMut(&mut Vec<Record>, Timestamp) -> ControlFlow<()>,
) -> Result<FrameStats, ReadError> {
    if is_stdin(path) {
        return read_stream(
            io::stdin().lock(),
            path,
            limits,
            clock,
            on_progress,
            on_records,
        );
    }
    let open_err = |source| ReadError::Open {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(open_err)?;
    if file.metadata().map_err(open_err)?.is_dir() {
        return Err(ReadError::IsDirectory {
            path: path.to_owned(),
        });
    }
    read_stream(file, path, limits, clock, on_progress, on_records)
}

/// [`read_records`] on an open stream; `path` names it in errors.
fn read_stream(
    input: impl Read,
    path: &Path,
    limits: FramingLimits,
    clock: LocalClock,
    mut on_progress: impl FnMut(u64),
    mut on_records: impl FnMut(&mut Vec<Record>, Timestamp) -> ControlFlow<()>,
) -> Result<FrameStats, ReadError> {
    let mut src = Stream(input);
    let mut reader = FileReader::new(limits, 0, BinaryFiles::Refuse).with_clock(clock);
    let mut buf = vec![0u8; default_read_chunk_bytes()];
    let mut records = Vec::new();
    loop {
        let n = match reader.read(&mut src, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(source) => {
                // Hand out what was framed before the failure, then report it.
                reader.finish(&mut records);
                let _ = on_records(&mut records, Timestamp::now());
                return Err(ReadError::Read {
                    path: path.to_owned(),
                    offset: reader.offset(),
                    source,
                });
            }
        };
        let now = Timestamp::now();
        if let Err(binary) = reader.push(&buf[..n], &mut records) {
            return Err(ReadError::Binary {
                path: path.to_owned(),
                offset: usize::try_from(binary.offset).unwrap_or(usize::MAX),
            });
        }
        if !records.is_empty() {
            let flow = on_records(&mut records, now);
            records.clear();
            if flow.is_break() {
                return Ok(reader.stats());
            }
        }
        on_progress(reader.offset());
    }
    reader.finish(&mut records);
    if !records.is_empty() {
        let _ = on_records(&mut records, Timestamp::now());
    }
    Ok(reader.stats())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read(data: &[u8]) -> Result<Vec<String>, ReadError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(data).unwrap();
        let mut out = Vec::new();
        read_records(
            f.path(),
            FramingLimits::default(),
            LocalClock::default(),
            |_| {},
            |recs, _| {
                out.extend(recs.drain(..).map(|r| r.text));
                ControlFlow::Continue(())
            },
        )?;
        Ok(out)
    }

    #[test]
    fn empty_file_gives_nothing() {
        assert!(read(b"").unwrap().is_empty());
    }

    #[test]
    fn chunk_boundaries_do_not_split_lines() {
        let mut data = Vec::new();
        for i in 0..100_000 {
            writeln!(data, "2025-10-08 08:58:34 [CHAT] p{i}: message {i}").unwrap();
        }
        let got = read(&data).unwrap();
        assert_eq!(got.len(), 100_000);
        assert_eq!(
            got[99_999],
            "2025-10-08 08:58:34 [CHAT] p99999: message 99999"
        );
    }

    #[test]
    fn binary_files_are_refused_by_name() {
        let err = read(b"PK\x03\x04\x00\x00binary").unwrap_err();
        assert!(matches!(err, ReadError::Binary { offset: 4, .. }), "{err}");
        assert!(err.to_string().contains("binary file"));
    }

    #[test]
    fn a_nul_after_the_first_8_kib_is_kept() {
        let mut data = vec![b'a'; 9000];
        data.extend_from_slice(b"\nx\0y\n");
        let got = read(&data).unwrap();
        assert_eq!(got[1], "x\0y");
    }

    #[test]
    fn missing_files_and_directories_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.log");
        let err = read_records(
            &missing,
            FramingLimits::default(),
            LocalClock::default(),
            |_| {},
            |_, _| ControlFlow::Continue(()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope.log"), "{err}");
        let err = read_records(
            dir.path(),
            FramingLimits::default(),
            LocalClock::default(),
            |_| {},
            |_, _| ControlFlow::Continue(()),
        )
        .unwrap_err();
        assert!(matches!(err, ReadError::IsDirectory { .. }), "{err}");
    }
}
