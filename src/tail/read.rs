//! Reading a whole file once, start to end, into records: what `replay` does.
//!
//! The file is read in chunks of [`default_read_chunk_bytes`], framed as it arrives, and the
//! records of each chunk are handed to the caller together with the time the chunk was read
//! (used as the time stamp of records whose lines carry none). A file whose first 8 KiB hold a
//! NUL byte is taken for a binary file (a save archive, a core dump) and refused before any
//! record is made from it; NUL bytes later in a file are kept, decoded as U+0000.
//!
//! Errors name the file and, for read errors, the byte offset reached. Records framed before a
//! read error have already been handed out: nothing that was read is lost.

use std::fs::File;
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::frame::{FrameStats, FramingLimits, LineFramer, Record, RecordAssembler};
use crate::event::Timestamp;

/// Default size of one `read()`: 256 KiB.
pub const fn default_read_chunk_bytes() -> usize {
    256 * 1024
}

/// How many leading bytes are searched for a NUL to tell a binary file.
const BINARY_SNIFF_BYTES: usize = 8 * 1024;

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

/// Reads `path` from start to end, handing the records of every chunk to `on_records` with the
/// time the chunk was read, and the number of bytes read so far to `on_progress`. When
/// `on_records` returns [`ControlFlow::Break`], reading stops there and the counters so far
/// are returned.
pub fn read_records(
    path: &Path,
    limits: FramingLimits,
    mut on_progress: impl FnMut(u64),
    mut on_records: impl FnMut(&mut Vec<Record>, Timestamp) -> ControlFlow<()>,
) -> Result<FrameStats, ReadError> {
    let open_err = |source| ReadError::Open {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(open_err)?;
    if file.metadata().map_err(open_err)?.is_dir() {
        return Err(ReadError::IsDirectory {
            path: path.to_owned(),
        });
    }

    let mut framer = LineFramer::new(limits.max_line_bytes, 0);
    let mut asm = RecordAssembler::new(limits);
    let mut buf = vec![0u8; default_read_chunk_bytes()];
    let mut records = Vec::new();
    let mut total: u64 = 0;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                // Hand out what was framed before the failure, then report it.
                framer.finish(&mut |line| asm.push_line(line, &mut records));
                asm.flush(&mut records);
                let _ = on_records(&mut records, Timestamp::now());
                return Err(ReadError::Read {
                    path: path.to_owned(),
                    offset: total,
                    source,
                });
            }
        };
        let chunk = &buf[..n];
        if total < BINARY_SNIFF_BYTES as u64 {
            let sniff = &chunk[..chunk.len().min(BINARY_SNIFF_BYTES - total as usize)];
            if let Some(pos) = memchr::memchr(0, sniff) {
                return Err(ReadError::Binary {
                    path: path.to_owned(),
                    offset: total as usize + pos,
                });
            }
        }
        total += n as u64;
        let now = Timestamp::now();
        framer.push(chunk, &mut |line| asm.push_line(line, &mut records));
        if !records.is_empty() {
            let flow = on_records(&mut records, now);
            records.clear();
            if flow.is_break() {
                return Ok(framer.stats());
            }
        }
        on_progress(total);
    }
    framer.finish(&mut |line| asm.push_line(line, &mut records));
    asm.flush(&mut records);
    if !records.is_empty() {
        let _ = on_records(&mut records, Timestamp::now());
    }
    let mut stats = framer.stats();
    stats.lines_invalid_utf8 = asm.invalid_utf8_lines();
    Ok(stats)
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
            |_| {},
            |_, _| ControlFlow::Continue(()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope.log"), "{err}");
        let err = read_records(
            dir.path(),
            FramingLimits::default(),
            |_| {},
            |_, _| ControlFlow::Continue(()),
        )
        .unwrap_err();
        assert!(matches!(err, ReadError::IsDirectory { .. }), "{err}");
    }
}
