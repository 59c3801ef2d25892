//! File identity: which file is this, whatever its name is now?
//!
//! A file is identified by a CRC-64 of its first line (at most [`FINGERPRINT_MAX_BYTES`]), and
//! told apart from a same-content file by its device and inode. Inodes alone are not enough
//! (they are reused as soon as a file is deleted) and names are worse (rotation moves them), but
//! a Factorio log's first line carries the run's start time to the second, so it names a run.
//!
//! A file whose first line is not complete yet (and is shorter than the maximum) has no
//! fingerprint yet: it produces no record either until that newline arrives.
//!
//! Reading the fingerprint uses positioned reads (`pread`), so it never moves a reader's
//! position. Errors are the file system's own, returned as they are.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crc::{CRC_64_ECMA_182, Crc};
use serde::{Deserialize, Serialize};

/// The most bytes of the first line that are hashed.
pub const FINGERPRINT_MAX_BYTES: usize = 1024;

const CRC64: Crc<u64> = Crc::<u64>::new(&CRC_64_ECMA_182);

/// A CRC-64 of a file's first line. Serialised as 16 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u64);

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:016x}", self.0))
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16)
            .map(Fingerprint)
            .map_err(serde::de::Error::custom)
    }
}

/// Where a file lives: device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl FileKey {
    /// The key of an open file or of a path's metadata.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileKey {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// The first line of `file` (without its newline, at most [`FINGERPRINT_MAX_BYTES`]), or
/// `None` when it is not complete yet.
pub fn first_line(file: &File) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; FINGERPRINT_MAX_BYTES];
    let mut len = 0;
    while len < buf.len() {
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if memchr::memchr(b'\n', &buf[..len]).is_some() {
            break;
        }
    }
    buf.truncate(len);
    match memchr::memchr(b'\n', &buf) {
        Some(nl) => {
            buf.truncate(nl);
            Ok(Some(buf))
        }
        None if len == FINGERPRINT_MAX_BYTES => Ok(Some(buf)),
        None => Ok(None),
    }
}

/// The fingerprint of `file`, or `None` while its first line is incomplete.
pub fn fingerprint(file: &File) -> io::Result<Option<Fingerprint>> {
    Ok(first_line(file)?.map(|line| of_line(&line)))
}

/// The fingerprint of a first line.
pub fn of_line(line: &[u8]) -> Fingerprint {
    Fingerprint(CRC64.checksum(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(data: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(data).unwrap();
        f
    }

    #[test]
    fn same_first_line_same_fingerprint_whatever_follows() {
        let a = file_with(b"   0.000 2025-10-07 08:22:06; Factorio 2.0.60\nmore\n");
        let b = file_with(b"   0.000 2025-10-07 08:22:06; Factorio 2.0.60\nother\n");
        let c = file_with(b"   0.000 2025-10-07 08:22:07; Factorio 2.0.60\nmore\n");
        let fa = fingerprint(a.as_file()).unwrap().unwrap();
        assert_eq!(Some(fa), fingerprint(b.as_file()).unwrap());
        assert_ne!(Some(fa), fingerprint(c.as_file()).unwrap());
    }

    #[test]
    fn an_incomplete_first_line_has_no_fingerprint_yet() {
        assert_eq!(fingerprint(file_with(b"").as_file()).unwrap(), None);
        assert_eq!(fingerprint(file_with(b"partial").as_file()).unwrap(), None);
        let long = vec![b'x'; FINGERPRINT_MAX_BYTES + 10];
        assert!(fingerprint(file_with(&long).as_file()).unwrap().is_some());
    }

    #[test]
    fn fingerprints_round_trip_as_hex() {
        let fp = Fingerprint(0x00ab_cdef_0123_4567);
        let json = serde_json::to_string(&fp).unwrap();
        assert_eq!(json, "\"00abcdef01234567\"");
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).unwrap(), fp);
    }
}
