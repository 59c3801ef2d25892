//! One file's reader, for `run` and `replay` alike: bytes → lines → records, with the file's
//! offset and what framing saw (lines, cut lines, invalid UTF-8 lines).
//!
//! A [`FileReader`] owns a file's [`LineFramer`] and [`RecordAssembler`] and the offset of the
//! next byte to read. Its caller reads a chunk with [`FileReader::read`] (positioned reads for a
//! followed file, plain reads for a stream, see [`ReadFrom`]) and hands it back to
//! [`FileReader::push`], which frames it into records; the two steps are apart so the tailer can
//! time and trace each. At the end of a file (or when a followed file is let go)
//! [`FileReader::finish`] hands out the partial last line and a held error record.
//!
//! Binary files: with [`BinaryFiles::Refuse`], a NUL byte in the first 8 KiB of the file means
//! it is not a log (a save archive, a core dump) and the chunk holding it is refused
//! ([`BinaryFile`]) before any record is made from it; NUL bytes later in a file are kept,
//! decoded as U+0000. With [`BinaryFiles::Read`] nothing is looked for.
//!
//! How it fails: a read error is the file system's own, returned as it is (the offset does not
//! move, so the read can be tried again); content never fails: invalid UTF-8 is replaced and
//! over-long lines are cut, and both are counted in [`FileReader::stats`].

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use super::frame::{FrameStats, FramingLimits, LineFramer, Record, RecordAssembler};
use super::zone::LocalClock;

/// How many leading bytes of a file are searched for a NUL to tell a binary file.
pub const BINARY_SNIFF_BYTES: u64 = 8 * 1024;

/// What a reader does about a file that looks binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryFiles {
    /// Refuse it: [`FileReader::push`] returns [`BinaryFile`] (what `replay` does).
    Refuse,
    /// Read it like any other file (what `run` does with the files it follows).
    Read,
}

/// A NUL byte in the first 8 KiB: the file looks binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinaryFile {
    /// Where the first NUL byte is.
    pub offset: u64,
}

/// Where a reader's bytes come from.
pub trait ReadFrom {
    /// Reads into `buf` the bytes at `offset` (the reader's offset); `Ok(0)` at the end.
    fn read_from(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// A file read with positioned reads (`pread`): a followed file, whose position nothing else
/// moves.
impl ReadFrom for File {
    fn read_from(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.read_at(buf, offset)
    }
}

/// A stream read front to back (a file read once, or a pipe): the offset is where it stands.
#[derive(Debug)]
pub struct Stream<R>(pub R);

impl<R: Read> ReadFrom for Stream<R> {
    fn read_from(&mut self, _offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

/// One file's framing state and offset. See the module docs.
#[derive(Debug)]
pub struct FileReader {
    framer: LineFramer,
    asm: RecordAssembler,
    binary: BinaryFiles,
}

impl FileReader {
    /// A reader of a file from `start_offset` (0 for its start), whose dates are UTC (see
    /// [`FileReader::with_clock`]).
    pub fn new(limits: FramingLimits, start_offset: u64, binary: BinaryFiles) -> Self {
        FileReader {
            framer: LineFramer::new(limits.max_line_bytes, start_offset),
            asm: RecordAssembler::new(limits),
            binary,
        }
    }

    /// Reads the file's dates with `clock` (its server's time zone).
    pub fn with_clock(mut self, clock: LocalClock) -> Self {
        self.asm = self.asm.with_clock(clock);
        self
    }

    /// When `line` is a run header: its date in ms since the epoch, read in the file's zone.
    pub fn run_header_ms(&mut self, line: &[u8]) -> Option<i64> {
        self.asm.run_header_ms(line)
    }

    /// Offset of the next byte to read.
    pub fn offset(&self) -> u64 {
        self.framer.next_offset()
    }

    /// Where a restart must resume: before a held record, else after the last complete line.
    pub fn safe_offset(&self) -> u64 {
        self.asm
            .held_offset()
            .unwrap_or_else(|| self.framer.consumed_offset())
    }

    /// The date of the last run header seen (engine lines are timed from it), ms since the
    /// epoch.
    pub fn run_start_ms(&self) -> Option<i64> {
        self.asm.run_start_ms()
    }

    /// Sets the run date engine lines are timed from (a file opened mid-way).
    pub fn set_run_start_ms(&mut self, run_start_ms: Option<i64>) {
        self.asm.set_run_start_ms(run_start_ms);
    }

    /// Whether an error record is held open, waiting for more lines.
    pub fn is_holding(&self) -> bool {
        self.asm.is_holding()
    }

    /// What framing saw since the reader was made (restarts included).
    pub fn stats(&self) -> FrameStats {
        FrameStats {
            lines_invalid_utf8: self.asm.invalid_utf8_lines(),
            ..self.framer.stats()
        }
    }

    /// Reads the next chunk from `src` into `buf`, at the reader's offset; `Ok(0)` at the end.
    /// An interrupted read is tried again. The bytes are not framed until they are pushed.
    pub fn read(&self, src: &mut impl ReadFrom, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match src.read_from(self.offset(), buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Frames `chunk`, the next bytes of the file, pushing every record it completes onto
    /// `out`. A refused binary file leaves the reader as it was.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Record>) -> Result<(), BinaryFile> {
        if self.binary == BinaryFiles::Refuse {
            self.sniff(chunk)?;
        }
        let asm = &mut self.asm;
        self.framer
            .push(chunk, &mut |line| asm.push_line(line, out));
        Ok(())
    }

    /// Hands out a held error record (the file went quiet).
    pub fn flush_held(&mut self, out: &mut Vec<Record>) {
        self.asm.flush(out);
    }

    /// Hands out the last line without a newline and a held error record: the file ends (or
    /// is let go).
    pub fn finish(&mut self, out: &mut Vec<Record>) {
        let asm = &mut self.asm;
        self.framer.finish(&mut |line| asm.push_line(line, out));
        self.asm.flush(out);
    }

    /// Forgets a partial line, a held record and the run date, and reads again from 0 (the
    /// file was truncated or replaced). Counters are kept.
    pub fn restart_at_zero(&mut self) {
        self.framer.reset(0);
        self.asm.reset();
    }

    /// A NUL byte within the file's first [`BINARY_SNIFF_BYTES`].
    fn sniff(&self, chunk: &[u8]) -> Result<(), BinaryFile> {
        let offset = self.offset();
        if offset >= BINARY_SNIFF_BYTES {
            return Ok(());
        }
        let head = &chunk[..chunk.len().min((BINARY_SNIFF_BYTES - offset) as usize)];
        match memchr::memchr(0, head) {
            Some(pos) => Err(BinaryFile {
                offset: offset + pos as u64,
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(records: &[Record]) -> Vec<&str> {
        records.iter().map(|r| r.text.as_str()).collect()
    }

    /// Pushes `chunks` to a fresh reader, then finishes it.
    fn read_all(
        chunks: &[&[u8]],
        limits: FramingLimits,
        binary: BinaryFiles,
    ) -> (Vec<Record>, Result<(), BinaryFile>, FrameStats) {
        let mut r = FileReader::new(limits, 0, binary);
        let mut out = Vec::new();
        for c in chunks {
            if let Err(e) = r.push(c, &mut out) {
                return (out, Err(e), r.stats());
            }
        }
        r.finish(&mut out);
        (out, Ok(()), r.stats())
    }

    #[test]
    fn bytes_become_records_and_the_offset_follows() {
        let mut r = FileReader::new(FramingLimits::default(), 0, BinaryFiles::Refuse);
        let mut out = Vec::new();
        r.push(b"one\ntw", &mut out).unwrap();
        assert_eq!(texts(&out), vec!["one"]);
        assert_eq!((r.offset(), r.safe_offset()), (6, 4));
        r.push(b"o\n", &mut out).unwrap();
        assert_eq!(texts(&out), vec!["one", "two"]);
        assert_eq!((r.offset(), r.safe_offset()), (8, 8));
    }

    #[test]
    fn a_held_record_keeps_the_safe_offset_before_it() {
        let mut r = FileReader::new(FramingLimits::default(), 10, BinaryFiles::Read);
        let mut out = Vec::new();
        r.push(b"1.000 Error X.cpp:1: boom\n\tframe\n", &mut out)
            .unwrap();
        assert!(out.is_empty());
        assert!(r.is_holding());
        assert_eq!(r.safe_offset(), 10);
        r.flush_held(&mut out);
        assert_eq!(texts(&out), vec!["1.000 Error X.cpp:1: boom\n\tframe"]);
        assert!(!r.is_holding());
        assert_eq!(r.safe_offset(), r.offset());
    }

    #[test]
    fn finish_hands_out_the_partial_last_line() {
        let (recs, res, _) = read_all(
            &[b"a\n", b"no newline"],
            FramingLimits::default(),
            BinaryFiles::Refuse,
        );
        res.unwrap();
        assert_eq!(texts(&recs), vec!["a", "no newline"]);
    }

    #[test]
    fn cut_and_invalid_lines_are_counted() {
        let limits = FramingLimits {
            max_line_bytes: 4,
            ..FramingLimits::default()
        };
        let (recs, _, stats) = read_all(&[b"abcdefgh\nok\nbad \xff\n"], limits, BinaryFiles::Read);
        assert_eq!(recs.len(), 3);
        assert_eq!(stats.lines, 3);
        assert_eq!((stats.lines_cut, stats.bytes_cut), (2, 5));
        assert_eq!(stats.lines_invalid_utf8, 0, "the cut removed the bad byte");
        let (_, _, stats) = read_all(&[b"x \xff\n"], FramingLimits::default(), BinaryFiles::Read);
        assert_eq!(stats.lines_invalid_utf8, 1);
    }

    #[test]
    fn a_nul_in_the_first_8_kib_refuses_the_file_when_asked() {
        let (recs, res, _) = read_all(
            &[b"PK\x03\x04\x00\x00binary"],
            FramingLimits::default(),
            BinaryFiles::Refuse,
        );
        assert_eq!(res, Err(BinaryFile { offset: 4 }));
        assert!(recs.is_empty());
        // Across chunks: the NUL's file offset is reported.
        let first = vec![b'a'; 8000];
        let mut second = vec![b'b'; 100];
        second[50] = 0;
        let (_, res, _) = read_all(
            &[&first, &second],
            FramingLimits::default(),
            BinaryFiles::Refuse,
        );
        assert_eq!(res, Err(BinaryFile { offset: 8050 }));
        // `run` reads it anyway.
        let (recs, res, _) = read_all(&[b"PK\x00\n"], FramingLimits::default(), BinaryFiles::Read);
        res.unwrap();
        assert_eq!(texts(&recs), vec!["PK\0"]);
    }

    #[test]
    fn a_nul_after_the_first_8_kib_is_kept() {
        let first = vec![b'a'; 8192];
        let (recs, res, _) = read_all(
            &[&first, b"\nx\0y\n"],
            FramingLimits::default(),
            BinaryFiles::Refuse,
        );
        res.unwrap();
        assert_eq!(recs[1].text, "x\0y");
    }

    #[test]
    fn restart_forgets_the_partial_line_and_keeps_the_counters() {
        let mut r = FileReader::new(FramingLimits::default(), 0, BinaryFiles::Read);
        let mut out = Vec::new();
        r.push(b"a\npartial", &mut out).unwrap();
        r.restart_at_zero();
        assert_eq!((r.offset(), r.safe_offset()), (0, 0));
        r.push(b"b\n", &mut out).unwrap();
        assert_eq!(texts(&out), vec!["a", "b"]);
        assert_eq!(r.stats().lines, 2);
    }

    #[test]
    fn reads_are_positioned_for_files_and_sequential_for_streams() {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut tmp, b"0123456789").unwrap();
        let mut file = File::open(tmp.path()).unwrap();
        let mut r = FileReader::new(FramingLimits::default(), 4, BinaryFiles::Read);
        let mut buf = [0u8; 3];
        assert_eq!(r.read(&mut file, &mut buf).unwrap(), 3);
        assert_eq!(&buf, b"456");
        r.push(&buf, &mut Vec::new()).unwrap();
        assert_eq!(r.read(&mut file, &mut buf).unwrap(), 3);
        assert_eq!(&buf, b"789");

        let mut stream = Stream(&b"abc"[..]);
        let r = FileReader::new(FramingLimits::default(), 0, BinaryFiles::Refuse);
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut stream, &mut buf).unwrap(), 3);
        assert_eq!(r.read(&mut stream, &mut buf).unwrap(), 0);
    }
}
