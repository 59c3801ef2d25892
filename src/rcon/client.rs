//! One RCON connection to one Factorio server: connect, authenticate, run one command at a
//! time.
//!
//! [`Client::connect`] opens the TCP connection and authenticates; [`Client::command`] sends a
//! command followed by the end marker ([`super::protocol::END_MARKER_COMMAND`]) and gathers every
//! packet of the command's answer until the marker's answer comes. Both take `&mut self`, so
//! a connection never has more than one command in flight.
//!
//! Neither sets a time limit: the caller wraps each call in `tokio::time::timeout` and drops
//! the client when it expires (an answer may still be on its way, and a fresh connection is
//! simpler than telling a late answer from the next one).
//!
//! How it fails: every failure is an [`RconError`] saying what happened in an admin's words,
//! with a fixed [`RconError::error_type`] for metrics. The password is never part of one.

use std::io;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::protocol::{
    AuthReply, Decoder, END_MARKER_COMMAND, Packet, ProtocolError, TYPE_AUTH, TYPE_EXEC_COMMAND,
    TYPE_RESPONSE_VALUE,
};
use crate::settings::Secret;

/// Talking to a server over RCON failed.
#[derive(Debug, Error)]
pub enum RconError {
    /// The TCP connection could not be made.
    #[error(
        "cannot connect: {0} (is the server running with --rcon-port, and is the address right?)"
    )]
    Connect(#[source] io::Error),
    /// The server refused the password.
    #[error(
        "the server refused the RCON password: set rcon_password_file, rcon_password or RCON_PASSWORD to the server's --rcon-password"
    )]
    AuthRefused,
    /// No answer in time.
    #[error("no answer to {what} within {timeout_ms} ms")]
    Timeout {
        /// What was waited for: `authentication`, a command.
        what: String,
        /// The limit, `[rcon] command_timeout_ms`.
        timeout_ms: u64,
    },
    /// The server closed the connection.
    #[error("the server closed the connection during {during}")]
    Closed {
        /// `authentication` or a command.
        during: String,
    },
    /// Reading or writing failed.
    #[error("the connection failed: {0}")]
    Io(#[source] io::Error),
    /// The bytes are not RCON packets.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The answer is not what the command answers.
    #[error("unexpected answer to {command}: {answer:?}")]
    Unexpected {
        /// The command.
        command: &'static str,
        /// The answer's first 200 characters.
        answer: String,
    },
}

impl RconError {
    /// The `error_type` label of `rcon_errors_total`.
    pub fn error_type(&self) -> &'static str {
        match self {
            RconError::Connect(_) => "connect",
            RconError::AuthRefused => "auth",
            RconError::Timeout { .. } => "timeout",
            RconError::Closed { .. } | RconError::Io(_) => "connection_lost",
            RconError::Protocol(_) => "protocol",
            RconError::Unexpected { .. } => "unexpected_answer",
        }
    }

    /// Every `error_type`, to register the series at 0.
    pub const ERROR_TYPES: &'static [&'static str] = &[
        "connect",
        "auth",
        "timeout",
        "connection_lost",
        "protocol",
        "unexpected_answer",
    ];

    /// An unexpected answer to `command`, cut to 200 characters.
    pub fn unexpected(command: &'static str, answer: &str) -> RconError {
        RconError::Unexpected {
            command,
            answer: answer.chars().take(200).collect(),
        }
    }
}

/// An authenticated connection.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    decoder: Decoder,
    next_id: i32,
}

impl Client {
    /// Connects to `address` (`HOST:PORT`) and authenticates with `password`.
    pub async fn connect(address: &str, password: &Secret) -> Result<Client, RconError> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(RconError::Connect)?;
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            stream,
            decoder: Decoder::default(),
            next_id: 1,
        };
        let id = client.id();
        client
            .send(&[Packet {
                id,
                kind: TYPE_AUTH,
                body: password.expose().as_bytes().to_vec(),
            }])
            .await?;
        loop {
            let packet = client.read("authentication").await?;
            match AuthReply::of(&packet, id) {
                AuthReply::Accepted => return Ok(client),
                AuthReply::Refused => return Err(RconError::AuthRefused),
                AuthReply::NotYet => {}
            }
        }
    }

    /// Runs `command` and returns its whole answer (the bodies of every packet answering it).
    pub async fn command(&mut self, command: &str) -> Result<String, RconError> {
        let id = self.id();
        let marker = self.id();
        let exec = |id, body: &str| Packet {
            id,
            kind: TYPE_EXEC_COMMAND,
            body: body.as_bytes().to_vec(),
        };
        self.send(&[exec(id, command), exec(marker, END_MARKER_COMMAND)])
            .await?;
        let mut answer = Vec::new();
        loop {
            let packet = self.read(command).await?;
            if packet.id == marker {
                return Ok(String::from_utf8_lossy(&answer).into_owned());
            }
            // Anything else is a late answer to a command given up on: not this one.
            if packet.id == id && packet.kind == TYPE_RESPONSE_VALUE {
                answer.extend_from_slice(&packet.body);
            }
        }
    }

    fn id(&mut self) -> i32 {
        let id = self.next_id;
        // Ids stay positive: -1 means a refused password.
        self.next_id = if id == i32::MAX { 1 } else { id + 1 };
        id
    }

    async fn send(&mut self, packets: &[Packet]) -> Result<(), RconError> {
        let bytes: Vec<u8> = packets.iter().flat_map(Packet::encode).collect();
        self.stream.write_all(&bytes).await.map_err(RconError::Io)
    }

    async fn read(&mut self, during: &str) -> Result<Packet, RconError> {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(p) = self.decoder.next_packet()? {
                return Ok(p);
            }
            let n = self.stream.read(&mut buf).await.map_err(RconError::Io)?;
            if n == 0 {
                return Err(RconError::Closed {
                    during: during.to_owned(),
                });
            }
            self.decoder.push(&buf[..n]);
        }
    }
}
