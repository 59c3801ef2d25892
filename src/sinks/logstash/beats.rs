//! The beats protocol (Lumberjack v2), as Logstash's `beats` input and Filebeat speak it: the
//! frames factorio-isr sends, the acknowledgements it reads, and how an acknowledgement is
//! matched to the windows in flight. No I/O here; the sink does that.
//!
//! The wire format. Every frame starts with the version byte `'2'` and a type byte; integers
//! are unsigned 32-bit big-endian:
//!
//! | frame | bytes | who sends it |
//! |---|---|---|
//! | window | `'2' 'W'` count | client: the next `count` events form one window |
//! | JSON data | `'2' 'J'` seq, length, `length` bytes of JSON | client: one event |
//! | compressed | `'2' 'C'` length, `length` bytes of zlib | client: the zlib stream holds data frames |
//! | acknowledgement | `'2' 'A'` seq | server: every event of the window up to `seq` is taken |
//!
//! A window is a `W` frame followed by its events as `J` frames numbered 1 to `count`, either
//! as they are or, with `compression_level` above 0, all inside one `C` frame (a zlib stream of
//! exactly those `J` frames), which is what Filebeat's client (`go-lumber`) sends. Numbers start
//! again at 1 with every window.
//!
//! Acknowledgements. The server answers with `A` frames carrying the number of the last event
//! of the oldest unacknowledged window that it has taken: Logstash's beats input sends one when
//! the window's highest number has been handed to its pipeline; other servers (`go-lumber`'s)
//! may acknowledge part of a window first. An `A` frame whose number is not above what the
//! window already had acknowledged is a keep-alive: Logstash sends `A` 0 every 5 s while its
//! pipeline is blocked, `go-lumber` repeats the last number. A keep-alive says the server is
//! alive and busy; it moves nothing. Several windows may be sent before the first is
//! acknowledged (pipelining); a server acknowledges them in order, so every `A` frame belongs
//! to the oldest window still in flight. A number above the window's size is a protocol error.
//!
//! How it fails: [`AckReader::next`] and [`InFlight::apply`] return a [`ProtocolError`] for
//! bytes that are not acknowledgements as described (the peer is not a beats input, or is
//! broken); the sink then drops the connection and sends the unacknowledged windows again.

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::ZlibEncoder;
use thiserror::Error;

/// The protocol version byte.
pub const VERSION: u8 = b'2';
/// Type of a window frame.
pub const WINDOW: u8 = b'W';
/// Type of a JSON data frame.
pub const JSON: u8 = b'J';
/// Type of a compressed frame.
pub const COMPRESSED: u8 = b'C';
/// Type of an acknowledgement frame.
pub const ACK: u8 = b'A';
/// Bytes of an acknowledgement frame.
pub const ACK_FRAME_BYTES: usize = 6;

/// What the peer sent is not the beats protocol.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// Bytes that do not start an acknowledgement frame.
    #[error(
        "Logstash sent bytes that are not a beats acknowledgement (version {version:#04x}, type {kind:#04x}): is this address a Logstash `beats` input?"
    )]
    NotAnAck {
        /// The first byte of the frame.
        version: u8,
        /// The second byte.
        kind: u8,
    },
    /// An acknowledgement of more events than the window holds.
    #[error("Logstash acknowledged event {seq} of a window of {window} events")]
    BeyondWindow {
        /// The acknowledged number.
        seq: u32,
        /// The window's size.
        window: u32,
    },
    /// An acknowledgement with no window in flight.
    #[error("Logstash acknowledged event {seq} while no window was waiting for it")]
    Unexpected {
        /// The acknowledged number.
        seq: u32,
    },
}

/// Appends to `out` one window of `docs` (each one event's JSON): the `W` frame, then the `J`
/// frames numbered from 1, inside one zlib-compressed `C` frame when `compression_level` is
/// 1 to 9. `scratch` is reused between calls.
pub fn encode_window<'a>(
    docs: impl ExactSizeIterator<Item = &'a [u8]>,
    compression_level: u32,
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) {
    out.extend_from_slice(&[VERSION, WINDOW]);
    out.extend_from_slice(&(docs.len() as u32).to_be_bytes());
    if compression_level == 0 {
        encode_data(docs, out);
        return;
    }
    scratch.clear();
    encode_data(docs, scratch);
    let start = out.len();
    out.extend_from_slice(&[VERSION, COMPRESSED, 0, 0, 0, 0]);
    let mut z = ZlibEncoder::new(&mut *out, Compression::new(compression_level.min(9)));
    // Writing into a Vec cannot fail.
    let _ = z.write_all(scratch);
    let _ = z.finish();
    let len = (out.len() - start - 6) as u32;
    out[start + 2..start + 6].copy_from_slice(&len.to_be_bytes());
}

/// The `J` frames of `docs`, numbered from 1.
fn encode_data<'a>(docs: impl Iterator<Item = &'a [u8]>, out: &mut Vec<u8>) {
    for (i, doc) in docs.enumerate() {
        out.extend_from_slice(&[VERSION, JSON]);
        out.extend_from_slice(&(i as u32 + 1).to_be_bytes());
        out.extend_from_slice(&(doc.len() as u32).to_be_bytes());
        out.extend_from_slice(doc);
    }
}

/// Collects the bytes the server sends and cuts them into acknowledgements.
#[derive(Debug, Default)]
pub struct AckReader {
    buf: Vec<u8>,
}

impl AckReader {
    /// Takes bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole acknowledgement's number, `None` until one has arrived whole.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<u32>, ProtocolError> {
        if let [version, kind, ..] = self.buf[..]
            && (version != VERSION || kind != ACK)
        {
            return Err(ProtocolError::NotAnAck { version, kind });
        }
        if self.buf.len() < ACK_FRAME_BYTES {
            return Ok(None);
        }
        let seq = u32::from_be_bytes([self.buf[2], self.buf[3], self.buf[4], self.buf[5]]);
        self.buf.drain(..ACK_FRAME_BYTES);
        Ok(Some(seq))
    }

    /// Forgets what a lost connection sent.
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

/// One window sent and not yet wholly acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Index in the batch of its first event.
    pub first: usize,
    /// Events in it.
    pub len: u32,
    /// Events of it acknowledged so far (a prefix).
    pub acked: u32,
    /// When it was sent.
    pub sent_at: Instant,
}

/// What one acknowledgement did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckEffect {
    /// A keep-alive: nothing new is acknowledged.
    KeepAlive,
    /// `events` more events are acknowledged; `done` is the time from sending to the last
    /// acknowledgement when the window is now wholly acknowledged (it left the queue).
    Progress {
        /// Events newly acknowledged.
        events: u32,
        /// The window's latency, when it is complete.
        done: Option<Duration>,
    },
}

/// The windows in flight on one connection, oldest first.
#[derive(Debug, Default)]
pub struct InFlight {
    windows: VecDeque<Window>,
}

impl InFlight {
    /// Records a window of `len` events starting at batch index `first`, sent now.
    pub fn sent(&mut self, first: usize, len: u32) {
        self.windows.push_back(Window {
            first,
            len,
            acked: 0,
            sent_at: Instant::now(),
        });
    }

    /// Windows in flight.
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no window is in flight.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Events sent and not acknowledged.
    pub fn unacked_events(&self) -> u64 {
        self.windows
            .iter()
            .map(|w| u64::from(w.len - w.acked))
            .sum()
    }

    /// Forgets every window (their connection is gone); returns how many there were.
    pub fn clear(&mut self) -> usize {
        let n = self.windows.len();
        self.windows.clear();
        n
    }

    /// Applies acknowledgement `seq` to the oldest window.
    pub fn apply(&mut self, seq: u32) -> Result<AckEffect, ProtocolError> {
        let Some(front) = self.windows.front_mut() else {
            // Logstash's keep-alive (0) may arrive just after the last window completed.
            return if seq == 0 {
                Ok(AckEffect::KeepAlive)
            } else {
                Err(ProtocolError::Unexpected { seq })
            };
        };
        if seq > front.len {
            return Err(ProtocolError::BeyondWindow {
                seq,
                window: front.len,
            });
        }
        if seq <= front.acked {
            return Ok(AckEffect::KeepAlive);
        }
        let events = seq - front.acked;
        front.acked = seq;
        let done = (seq == front.len).then(|| front.sent_at.elapsed());
        if done.is_some() {
            self.windows.pop_front();
        }
        Ok(AckEffect::Progress { events, done })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// Decodes data frames into (seq, doc).
    fn data_frames(mut b: &[u8]) -> Vec<(u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !b.is_empty() {
            assert_eq!(&b[..2], b"2J");
            let len = u32_at(b, 6) as usize;
            out.push((u32_at(b, 2), b[10..10 + len].to_vec()));
            b = &b[10 + len..];
        }
        out
    }

    #[test]
    fn a_window_is_a_w_frame_then_numbered_j_frames() {
        let docs: [&[u8]; 2] = [b"{\"a\":1}", b"{}"];
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        encode_window(docs.iter().copied(), 0, &mut out, &mut scratch);
        assert_eq!(&out[..6], b"2W\0\0\0\x02");
        assert_eq!(
            data_frames(&out[6..]),
            [(1, b"{\"a\":1}".to_vec()), (2, b"{}".to_vec())]
        );
        // Byte for byte, as the protocol spells it.
        assert_eq!(
            &out[6..],
            b"2J\0\0\0\x01\0\0\0\x07{\"a\":1}2J\0\0\0\x02\0\0\0\x02{}"
        );
    }

    #[test]
    fn a_compressed_window_is_one_c_frame_of_zlib_j_frames() {
        let docs: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("{{\"n\":{i},\"pad\":\"xxxxxxxxxxxxxxxx\"}}").into_bytes())
            .collect();
        let (mut plain, mut packed, mut scratch) = (Vec::new(), Vec::new(), Vec::new());
        encode_window(docs.iter().map(|d| &d[..]), 0, &mut plain, &mut scratch);
        encode_window(docs.iter().map(|d| &d[..]), 6, &mut packed, &mut scratch);
        assert_eq!(&packed[..6], b"2W\0\0\0\x32");
        assert_eq!(&packed[6..8], b"2C");
        let len = u32_at(&packed, 8) as usize;
        assert_eq!(packed.len(), 12 + len, "the C frame ends the window");
        let mut inflated = Vec::new();
        flate2::read::ZlibDecoder::new(&packed[12..])
            .read_to_end(&mut inflated)
            .unwrap();
        assert_eq!(inflated, plain[6..], "the same J frames, compressed");
        assert!(packed.len() < plain.len() / 2, "{} bytes", packed.len());
    }

    #[test]
    fn acknowledgements_arrive_in_pieces_and_anything_else_is_refused() {
        let mut r = AckReader::default();
        r.push(b"2A\0");
        assert_eq!(r.next(), Ok(None));
        r.push(b"\0\x01\x002A\0\0\0\x07");
        assert_eq!(r.next(), Ok(Some(256)));
        assert_eq!(r.next(), Ok(Some(7)));
        assert_eq!(r.next(), Ok(None));
        r.push(b"HTTP/1.1 400");
        assert_eq!(
            r.next(),
            Err(ProtocolError::NotAnAck {
                version: b'H',
                kind: b'T'
            })
        );
        let mut r = AckReader::default();
        r.push(b"1A\0\0\0\x01");
        assert!(r.next().is_err(), "version 1 is not spoken");
    }

    #[test]
    fn partial_acks_keep_alives_and_pipelined_windows() {
        let mut f = InFlight::default();
        f.sent(0, 3);
        f.sent(3, 2);
        assert_eq!(f.unacked_events(), 5);
        // Logstash's keep-alive, then go-lumber's (the last number again).
        assert_eq!(f.apply(0), Ok(AckEffect::KeepAlive));
        assert!(matches!(
            f.apply(2),
            Ok(AckEffect::Progress {
                events: 2,
                done: None
            })
        ));
        assert_eq!(f.apply(2), Ok(AckEffect::KeepAlive));
        assert!(matches!(
            f.apply(3),
            Ok(AckEffect::Progress {
                events: 1,
                done: Some(_)
            })
        ));
        // The next acknowledgement belongs to the second window.
        assert_eq!(f.len(), 1);
        assert_eq!(
            f.apply(3),
            Err(ProtocolError::BeyondWindow { seq: 3, window: 2 })
        );
        assert!(matches!(
            f.apply(2),
            Ok(AckEffect::Progress {
                events: 2,
                done: Some(_)
            })
        ));
        assert!(f.is_empty());
        assert_eq!(f.apply(0), Ok(AckEffect::KeepAlive));
        assert_eq!(f.apply(1), Err(ProtocolError::Unexpected { seq: 1 }));
    }
}
