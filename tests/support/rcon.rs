//! A fake Factorio RCON server on 127.0.0.1 that follows the Source RCON protocol and answers
//! like Factorio: `/players online` (`Online players (N):` then `  name (online)` lines),
//! `/sc rcon.print(game.tick)` (60 ticks per second since it started, answered after
//! [`FakeRcon::delay_ticks`]), `/version` (`2.0.28`);
//! a wrong password gets the `AUTH_RESPONSE` with id -1, then the connection is closed.
//!
//! Switches ([`Misbehave`]) make it answer like Source servers (an empty `RESPONSE_VALUE`
//! before the auth response), split answers into many packets (written a few bytes at a
//! time), accept commands and never answer, or close the connection halfway through an
//! answer. [`FakeRcon::restart`] closes every connection and listens again on the same port.
//!
//! It records every authentication attempt (with its time), command and connection, for
//! tests to wait on, and every tick it answered with when (for `game_ups`: the poller reads
//! its clock between an answer and its next command on that connection).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

/// How the fake misbehaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Misbehave {
    /// Answers like Factorio.
    #[default]
    None,
    /// Answers authentication like Source servers: an empty `RESPONSE_VALUE` first.
    SourceStyleAuth,
    /// Cuts every answer into packets of at most this many body bytes, written a few bytes at
    /// a time.
    Split(usize),
    /// Authenticates, then never answers a command.
    NeverAnswer,
    /// Writes half of the answer to a command, then closes the connection.
    CloseMidResponse,
}

/// What the fake saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// When each authentication attempt came, and whether its password was right.
    pub auths: Vec<(Instant, bool)>,
    /// Every command, in order.
    pub commands: Vec<String>,
    /// Connections accepted.
    pub connections: usize,
    /// Every password tried (to check nothing else leaked it).
    pub passwords: Vec<String>,
    /// Every `/sc rcon.print(game.tick)` answered, in order.
    pub ticks: Vec<Tick>,
}

/// A tick answer.
#[derive(Clone, Copy, Debug)]
pub struct Tick {
    /// The connection it was answered on (1 for the first accepted).
    pub connection: usize,
    /// The tick answered.
    pub tick: u64,
    /// Just before the answer was written.
    pub answered_at: Instant,
    /// When the next command (other than the `/version` sent behind each command) on that
    /// connection was read, once it was.
    pub next_command_at: Option<Instant>,
}

struct State {
    password: String,
    players: Vec<String>,
    misbehave: Misbehave,
    /// How long a tick answer takes.
    tick_delay: Duration,
    seen: Seen,
    /// Open connections, to close at a restart.
    open: Vec<TcpStream>,
    /// Bumped by a restart: threads of older generations stop.
    generation: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    started: Instant,
}

/// A running fake server; stops when dropped.
pub struct FakeRcon {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeRcon {
    /// Starts a fake whose password is `password`, with nobody online.
    pub fn start(password: &str) -> FakeRcon {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the fake RCON server");
        let addr = listener.local_addr().expect("its address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                password: password.to_owned(),
                players: Vec::new(),
                misbehave: Misbehave::None,
                tick_delay: Duration::ZERO,
                seen: Seen::default(),
                open: Vec::new(),
                generation: 0,
            }),
            changed: Condvar::new(),
            started: Instant::now(),
        });
        spawn_accept(listener, shared.clone(), 0);
        FakeRcon { addr, shared }
    }

    /// `HOST:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Who `/players online` lists from now on.
    pub fn set_players(&self, players: &[&str]) {
        lock(&self.shared).players = players.iter().map(|p| (*p).to_owned()).collect();
    }

    /// How long answering `/sc rcon.print(game.tick)` takes from now on: the tick is read
    /// (and recorded) once that time has passed, just before it is written.
    pub fn delay_ticks(&self, delay: Duration) {
        lock(&self.shared).tick_delay = delay;
    }

    /// How it answers from now on (connections already open included).
    pub fn misbehave(&self, m: Misbehave) {
        lock(&self.shared).misbehave = m;
    }

    /// Closes every connection and the listener, and listens again on the same port.
    pub fn restart(&self) {
        let mut s = lock(&self.shared);
        s.generation += 1;
        for c in s.open.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        let generation = s.generation;
        drop(s);
        // Wake the old accept loop so it sees the new generation and drops its listener.
        let _ = TcpStream::connect(self.addr);
        let listener = bind_again(self.addr);
        spawn_accept(listener, self.shared.clone(), generation);
    }

    /// Runs `f` on what the fake saw.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&lock(&self.shared).seen)
    }

    /// Waits until `pred` holds of what the fake saw, for at most `timeout`; whether it held.
    pub fn wait_for(&self, mut pred: impl FnMut(&Seen) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = lock(&self.shared);
        loop {
            if pred(&s.seen) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = self
                .shared
                .changed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// How many times `command` was received.
    pub fn count(&self, command: &str) -> usize {
        self.seen(|s| s.commands.iter().filter(|c| *c == command).count())
    }

    /// Waits until `command` arrived `more` times after the `seen` times counted before;
    /// `false` after `timeout`.
    pub fn wait_count(&self, command: &str, seen: usize, more: usize, timeout: Duration) -> bool {
        self.wait_for(
            |s| s.commands.iter().filter(|c| *c == command).count() >= seen + more,
            timeout,
        )
    }
}

impl Drop for FakeRcon {
    fn drop(&mut self) {
        let mut s = lock(&self.shared);
        s.generation += 1;
        for c in s.open.drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        drop(s);
        let _ = TcpStream::connect(self.addr);
    }
}

/// Binds `addr` again after a restart; the old listener may take a moment to close.
fn bind_again(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("binding {addr} again: {e}"),
        }
    }
}

fn spawn_accept(listener: TcpListener, shared: Arc<Shared>, generation: u64) {
    thread::spawn(move || {
        for stream in listener.incoming() {
            if lock(&shared).generation != generation {
                return;
            }
            let Ok(stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            let connection = {
                let mut s = lock(&shared);
                s.seen.connections += 1;
                if let Ok(c) = stream.try_clone() {
                    s.open.push(c);
                }
                s.seen.connections
            };
            shared.changed.notify_all();
            let shared = shared.clone();
            thread::spawn(move || serve(stream, &shared, connection));
        }
    });
}

fn read_packet(stream: &mut TcpStream) -> Option<(i32, i32, String)> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let size = i32::from_le_bytes(size);
    let mut rest = vec![0u8; usize::try_from(size).ok()?];
    stream.read_exact(&mut rest).ok()?;
    let id = i32::from_le_bytes(rest[0..4].try_into().ok()?);
    let kind = i32::from_le_bytes(rest[4..8].try_into().ok()?);
    let body = String::from_utf8_lossy(&rest[8..rest.len().saturating_sub(2)]).into_owned();
    Some((id, kind, body))
}

/// A packet's bytes.
pub fn packet(id: i32, kind: i32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 14);
    out.extend_from_slice(&(body.len() as i32 + 10).to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&[0, 0]);
    out
}

fn serve(mut stream: TcpStream, shared: &Shared, connection: usize) {
    let mut authed = false;
    while let Some((id, kind, body)) = read_packet(&mut stream) {
        let read_at = Instant::now();
        let (misbehave, answer) = {
            let mut s = lock(shared);
            if kind == 3 {
                let ok = body == s.password;
                s.seen.auths.push((read_at, ok));
                s.seen.passwords.push(body.clone());
                (s.misbehave, if ok { "ok" } else { "refused" }.to_owned())
            } else {
                // Each command comes with `/version` behind it, whose answer marks the end of
                // the command's: it is sent before the answer is read, so it does not count as
                // the next command.
                if body != "/version"
                    && let Some(last) = s
                        .seen
                        .ticks
                        .iter_mut()
                        .rfind(|t| t.connection == connection)
                {
                    last.next_command_at.get_or_insert(read_at);
                }
                s.seen.commands.push(body.clone());
                let tick_delay = s.tick_delay;
                let answer = if body == TICK
                    && !matches!(
                        s.misbehave,
                        Misbehave::NeverAnswer | Misbehave::CloseMidResponse
                    ) {
                    drop(s);
                    thread::sleep(tick_delay);
                    s = lock(shared);
                    let answer = answer(&body, &s.players, shared.started);
                    s.seen.ticks.push(Tick {
                        connection,
                        tick: answer.trim().parse().expect("a tick"),
                        answered_at: Instant::now(),
                        next_command_at: None,
                    });
                    answer
                } else {
                    answer(&body, &s.players, shared.started)
                };
                (s.misbehave, answer)
            }
        };
        shared.changed.notify_all();
        let written = if kind == 3 {
            let mut out = Vec::new();
            if misbehave == Misbehave::SourceStyleAuth {
                out.extend(packet(id, 0, b""));
            }
            let ok = answer == "ok";
            out.extend(packet(if ok { id } else { -1 }, 2, b""));
            authed = ok;
            let w = stream.write_all(&out);
            if !ok {
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            w
        } else if !authed {
            return;
        } else {
            match misbehave {
                Misbehave::NeverAnswer => Ok(()),
                Misbehave::CloseMidResponse => {
                    let bytes = packet(id, 0, answer.as_bytes());
                    let _ = stream.write_all(&bytes[..bytes.len() / 2]);
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                Misbehave::Split(n) => {
                    let mut out = Vec::new();
                    let bytes = answer.as_bytes();
                    if bytes.is_empty() {
                        out.extend(packet(id, 0, b""));
                    }
                    for chunk in bytes.chunks(n.max(1)) {
                        out.extend(packet(id, 0, chunk));
                    }
                    out.chunks(7).try_for_each(|c| {
                        stream.write_all(c)?;
                        stream.flush()
                    })
                }
                _ => stream.write_all(&packet(id, 0, answer.as_bytes())),
            }
        };
        if written.is_err() {
            return;
        }
    }
}

/// The command that asks for the tick.
const TICK: &str = "/sc rcon.print(game.tick)";

/// What Factorio answers to `command`.
fn answer(command: &str, players: &[String], started: Instant) -> String {
    match command {
        "/players online" => {
            let mut out = format!("Online players ({}):", players.len());
            for p in players {
                out.push_str(&format!("\n  {p} (online)"));
            }
            out.push('\n');
            out
        }
        TICK => {
            format!("{}\n", (started.elapsed().as_secs_f64() * 60.0) as u64)
        }
        "/version" => "2.0.28".to_owned(),
        "" => String::new(),
        other => format!("Unknown command \"{}\".", other.trim_start_matches('/')),
    }
}
