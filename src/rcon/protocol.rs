//! The Source RCON protocol as Factorio speaks it: packets, their framing on the byte stream,
//! and the answers of the commands factorio-isr sends. Pure: no I/O, every quirk unit-tested.
//!
//! A packet is `size: i32`, `id: i32`, `type: i32`, the body, and two NUL bytes, all
//! little-endian; `size` counts everything after itself (10 bytes plus the body). The client
//! sends `SERVERDATA_AUTH` (type 3) with the password, then `SERVERDATA_EXECCOMMAND` (type 2)
//! with a console command; the server answers `SERVERDATA_AUTH_RESPONSE` (type 2) and
//! `SERVERDATA_RESPONSE_VALUE` (type 0), echoing the request's id.
//!
//! What Factorio does, and how this module copes:
//!
//! - Authentication: Factorio answers `SERVERDATA_AUTH` with one `AUTH_RESPONSE` carrying the
//!   request's id on success and id `-1` on a wrong password. Source servers (and CS:GO) send
//!   an empty `RESPONSE_VALUE` first; [`AuthReply::of`] skips it, so both work.
//! - Long output: Factorio sends a command's whole answer in one packet, however long (it
//!   does not cut at 4096 bytes as Source servers do), so incoming packets are accepted up to
//!   [`MAX_PACKET_BYTES`]. Servers and proxies that do split send several packets with the same
//!   id; the client concatenates them.
//! - The end of an answer: the usual trick (an empty `RESPONSE_VALUE` or an empty command
//!   after the real one, whose echo marks the end) does not work with Factorio, which ignores
//!   empty commands and never answers them. The client therefore follows each command with
//!   a marker command Factorio does answer ([`END_MARKER_COMMAND`], harmless and short): since
//!   Factorio runs commands in order, the marker's answer comes after the last packet of the
//!   real answer, whether it came in one packet or many.
//! - Bodies are UTF-8 (player names hold any Unicode), decoded once the whole answer is in (a
//!   split may cut a character in two); invalid bytes are replaced, never an error.
//!
//! How it fails: [`Decoder::next_packet`] returns [`ProtocolError`] for a size that cannot be a
//! packet (under 10 bytes, or over [`MAX_PACKET_BYTES`]); the connection is then dropped and
//! made again. The answer parsers return `None` for text that is not the expected answer (a
//! mod that changed `/players`, a command Factorio refused).

use thiserror::Error;

/// `SERVERDATA_AUTH`: the client's password.
pub const TYPE_AUTH: i32 = 3;
/// `SERVERDATA_EXECCOMMAND`: a console command (client → server).
pub const TYPE_EXEC_COMMAND: i32 = 2;
/// `SERVERDATA_AUTH_RESPONSE`: the server's answer to `SERVERDATA_AUTH` (same value as
/// `EXECCOMMAND`; the direction tells them apart).
pub const TYPE_AUTH_RESPONSE: i32 = 2;
/// `SERVERDATA_RESPONSE_VALUE`: a command's output (server → client).
pub const TYPE_RESPONSE_VALUE: i32 = 0;

/// The id Factorio answers a wrong password with.
pub const AUTH_FAILED_ID: i32 = -1;

/// The largest packet accepted from a server: Factorio answers in one packet however long
/// the output (a `/players` of thousands of names), so this is far above Source's 4096.
pub const MAX_PACKET_BYTES: usize = 4 * 1024 * 1024;

/// The command whose answer marks the end of the previous command's answer: short, harmless
/// (no Lua, so achievements are kept) and always answered by Factorio.
pub const END_MARKER_COMMAND: &str = "/version";

/// The bytes of `size`, `id` and `type`, and the two NULs: a packet with an empty body.
const MIN_SIZE: usize = 10;

/// One packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The request id, echoed by the server.
    pub id: i32,
    /// The packet type (`TYPE_*`).
    pub kind: i32,
    /// The body as sent: UTF-8, once every packet of an answer is put together (a server
    /// that splits an answer may split a character).
    pub body: Vec<u8>,
}

impl Packet {
    /// The packet's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let body = &self.body[..];
        // Bodies the client sends are commands and passwords: far below i32::MAX.
        let size = i32::try_from(MIN_SIZE + body.len()).unwrap_or(i32::MAX);
        let mut out = Vec::with_capacity(4 + size as usize);
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.kind.to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&[0, 0]);
        out
    }
}

/// The byte stream from the server cannot be packets.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// A size field out of range.
    #[error(
        "the server sent a packet of {size} bytes, which RCON cannot carry (10 to {MAX_PACKET_BYTES}); is this address Factorio's RCON port (--rcon-port), not its game port?"
    )]
    BadSize {
        /// The size field as read.
        size: i64,
    },
}

/// Cuts the bytes read from a connection into packets, however TCP split or joined them.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole packet, `None` when more bytes are needed.
    pub fn next_packet(&mut self) -> Result<Option<Packet>, ProtocolError> {
        let Some(head) = self.buf.get(..4) else {
            return Ok(None);
        };
        let size = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let bad = || ProtocolError::BadSize { size: size.into() };
        let size = usize::try_from(size).map_err(|_| bad())?;
        if !(MIN_SIZE..=MAX_PACKET_BYTES).contains(&size) {
            return Err(bad());
        }
        if self.buf.len() < 4 + size {
            return Ok(None);
        }
        let packet: Vec<u8> = self.buf.drain(..4 + size).collect();
        let id = i32::from_le_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let kind = i32::from_le_bytes([packet[8], packet[9], packet[10], packet[11]]);
        // The body ends at the first of the two trailing NULs; tolerate servers that send one.
        let mut body = &packet[12..];
        while let [rest @ .., 0] = body {
            body = rest;
        }
        Ok(Some(Packet {
            id,
            kind,
            body: body.to_vec(),
        }))
    }
}

/// What a packet received while authenticating means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthReply {
    /// The password was accepted.
    Accepted,
    /// The password was refused.
    Refused,
    /// Not the answer yet (the empty `RESPONSE_VALUE` Source servers send first): read on.
    NotYet,
}

impl AuthReply {
    /// What `packet` means for the authentication request `id`.
    pub fn of(packet: &Packet, id: i32) -> AuthReply {
        match (packet.kind, packet.id) {
            (TYPE_AUTH_RESPONSE, AUTH_FAILED_ID) => AuthReply::Refused,
            (TYPE_AUTH_RESPONSE, got) if got == id => AuthReply::Accepted,
            _ => AuthReply::NotYet,
        }
    }
}

/// The answer of `/players online`: `Online players (N):` then one `  name (online)` line per
/// player. Names hold spaces, brackets and any Unicode, so a line is cut only at its two-space
/// indent and its ` (online)` suffix. `None` when the text is not that answer.
pub fn parse_players_online(answer: &str) -> Option<Vec<String>> {
    let mut lines = answer.lines();
    let header = lines.next()?.trim();
    let count = header
        .strip_prefix("Online players (")?
        .strip_suffix("):")?;
    count.parse::<u64>().ok()?;
    let mut players = Vec::new();
    for line in lines {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let name = line.strip_prefix("  ").unwrap_or(line);
        let name = name.strip_suffix(" (online)").unwrap_or(name);
        players.push(name.to_owned());
    }
    Some(players)
}

/// The answer of `/sc rcon.print(game.tick)`: the tick as a whole number.
pub fn parse_tick(answer: &str) -> Option<u64> {
    answer.trim().parse().ok()
}

/// The version in the answer of `/version` (`2.0.28`), at most 32 characters of digits and
/// dots, so a strange answer cannot make a strange metric label.
pub fn parse_version(answer: &str) -> Option<String> {
    let v = answer
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let v: String = v
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .take(32)
        .collect();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(id: i32, kind: i32, body: &str) -> Packet {
        Packet {
            id,
            kind,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_packet_is_little_endian_size_id_type_body_and_two_nuls() {
        let bytes = packet(7, TYPE_AUTH, "pw").encode();
        assert_eq!(
            bytes,
            [12, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, b'p', b'w', 0, 0],
            "size counts id, type, body and both NULs"
        );
        let empty = packet(-1, TYPE_AUTH_RESPONSE, "").encode();
        assert_eq!(empty, [10, 0, 0, 0, 255, 255, 255, 255, 2, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn packets_are_cut_from_the_stream_however_tcp_splits_or_joins_them() {
        let a = packet(
            1,
            TYPE_RESPONSE_VALUE,
            "Online players (1):\n  é ü [tag] (online)",
        );
        let b = packet(2, TYPE_RESPONSE_VALUE, "2.0.28");
        let mut stream = a.encode();
        stream.extend(b.encode());
        for cut in 0..stream.len() {
            let mut d = Decoder::default();
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                // One byte at a time after the cut: every split point is seen.
                d.push(part);
                while let Some(p) = d.next_packet().unwrap() {
                    got.push(p);
                }
            }
            assert_eq!(got, [a.clone(), b.clone()], "cut at {cut}");
        }
    }

    #[test]
    fn a_body_longer_than_source_servers_send_arrives_whole() {
        // Factorio does not cut answers at 4096 bytes.
        let long = "x".repeat(100_000);
        let mut d = Decoder::default();
        d.push(&packet(5, TYPE_RESPONSE_VALUE, &long).encode());
        assert_eq!(d.next_packet().unwrap().unwrap().body.len(), 100_000);
    }

    #[test]
    fn a_size_that_cannot_be_a_packet_is_an_error_naming_the_rcon_port() {
        for size in [-5i32, 0, 9, (MAX_PACKET_BYTES + 1) as i32] {
            let mut d = Decoder::default();
            d.push(&size.to_le_bytes());
            let e = d.next_packet().unwrap_err();
            assert!(e.to_string().contains("--rcon-port"), "{e}");
        }
    }

    #[test]
    fn a_body_keeps_its_bytes_even_half_a_character() {
        let mut d = Decoder::default();
        d.push(&packet(1, TYPE_RESPONSE_VALUE, "é").encode()[..13]);
        assert_eq!(d.next_packet().unwrap(), None);
        let mut half = packet(1, TYPE_RESPONSE_VALUE, "").encode();
        half.splice(12..12, [0xc3]);
        half[0] += 1;
        let mut d = Decoder::default();
        d.push(&half);
        assert_eq!(d.next_packet().unwrap().unwrap().body, [0xc3]);
    }

    #[test]
    fn auth_is_accepted_by_its_id_refused_by_minus_one_and_a_source_style_empty_value_is_skipped() {
        assert_eq!(
            AuthReply::of(&packet(4, TYPE_AUTH_RESPONSE, ""), 4),
            AuthReply::Accepted
        );
        assert_eq!(
            AuthReply::of(&packet(-1, TYPE_AUTH_RESPONSE, ""), 4),
            AuthReply::Refused
        );
        // Source servers send an empty RESPONSE_VALUE before the AUTH_RESPONSE.
        assert_eq!(
            AuthReply::of(&packet(4, TYPE_RESPONSE_VALUE, ""), 4),
            AuthReply::NotYet
        );
    }

    #[test]
    fn players_online_keeps_names_with_spaces_brackets_and_unicode() {
        let answer = "Online players (4):\n  bsalis (online)\n  Mr. Spaceman [AFK] (online)\n  名前-_. (online)\n  (online) (online)\n";
        assert_eq!(
            parse_players_online(answer).unwrap(),
            ["bsalis", "Mr. Spaceman [AFK]", "名前-_.", "(online)"]
        );
        assert_eq!(
            parse_players_online("Online players (0):").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            parse_players_online("Online players (1):\r\n  a (online)\r\n").unwrap(),
            ["a"]
        );
        assert_eq!(parse_players_online("Unknown command \"players\"."), None);
        assert_eq!(parse_players_online(""), None);
    }

    #[test]
    fn tick_and_version_answers_parse() {
        assert_eq!(parse_tick("123456\n"), Some(123_456));
        assert_eq!(parse_tick("Cannot execute command."), None);
        assert_eq!(parse_version("2.0.28\n").as_deref(), Some("2.0.28"));
        assert_eq!(
            parse_version("Version: 1.1.110 (build 62541)").as_deref(),
            Some("1.1.110")
        );
        assert_eq!(parse_version("no version here"), None);
    }
}
