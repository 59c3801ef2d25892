//! One server's poller: a task that keeps one RCON connection and asks the server, every
//! `poll_interval_ms`, who is online (and, with `ups = true`, its tick).
//!
//! Each poll is a root span `rcon_poll` with one `rcon_command` span per command. The first
//! poll of a connection starts with `/version` (`server_info`). Each poll runs `/players online`
//! (`players_online`), reconciles the logs' view of who is online with the server's (below),
//! and with `ups = true` runs `/sc rcon.print(game.tick)`: ticks since the last poll over the
//! wall-clock time between them is `game_ups`.
//!
//! Reconciling: a player the delivered logs say joined (the pipeline's
//! [`crate::pipeline::Presence`]) who is missing from two answers in a row, both
//! asked after the join was delivered, gets one `player_leave` event with
//! `fields.reconciled = true` through the pipeline's [`Inlet`]: a missed leave line, a desync,
//! a crash of the server no longer leave a ghost online in Discord or Logstash. Two answers,
//! not one, so a leave line still on its way through a busy pipeline wins.
//!
//! How it fails: every failure (connect, authentication, timeout, a closed connection, an
//! answer that is not one) drops the connection, is reported ([`super::internal_events`]) and
//! is retried after a jittered backoff: from 0.5 s doubling to 30 s for connection problems;
//! from at least 2 s doubling to 5 minutes for a refused password, which does not fix itself.
//! A connection that works resets both. The log pipeline never waits for a poller: events go
//! through the inlet, which never blocks.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::time::{MissedTickBehavior, timeout};
use tracing::Instrument;

use super::client::{Client, RconError};
use super::config::{RconConfig, RconTarget};
use super::internal_events::{CommandKind, Report};
use super::protocol;
use crate::event::{Event, FieldValue, LogSource, PatternInfo, Severity, Timestamp};
use crate::patterns::PatternSet;
use crate::pipeline::{Inlet, Presence};

/// Connection problems: the first wait, and the longest.
const CONNECT_BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));
/// A refused password: the first wait, and the longest.
const AUTH_BACKOFF: (Duration, Duration) = (Duration::from_secs(2), Duration::from_secs(300));

/// Everything a poller needs.
pub struct Poller {
    /// The server to poll.
    pub target: RconTarget,
    /// `[rcon]`.
    pub options: RconConfig,
    /// Where it reports.
    pub report: Report,
    /// Who the logs say is online.
    pub presence: Presence,
    /// Where reconciled leaves go.
    pub inlet: Inlet,
    /// The patterns in force: a reconciled leave takes the Discord template of the pattern
    /// that makes `player_leave`.
    pub patterns: Arc<ArcSwap<PatternSet>>,
}

/// The wait before the next attempt, doubling per failure.
#[derive(Debug, Default)]
struct Backoff {
    connect: Option<Duration>,
    auth: Option<Duration>,
}

impl Backoff {
    /// The wait after `e`: connection problems wait between half and all of their step; a
    /// refused password at least its whole step.
    fn after(&mut self, e: &RconError) -> Duration {
        let (slot, (first, max), refused) = match e {
            RconError::AuthRefused => (&mut self.auth, AUTH_BACKOFF, true),
            _ => (&mut self.connect, CONNECT_BACKOFF, false),
        };
        let step = slot.map_or(first, |d| (d * 2).min(max));
        *slot = Some(step);
        let jitter = step.mul_f64(fastrand::f64() / 2.0);
        if refused {
            step + jitter
        } else {
            step - jitter
        }
    }

    fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// What carries over from one poll to the next.
#[derive(Debug, Default)]
struct PollState {
    /// Players the logs had online and the last answer did not list.
    suspects: HashSet<String>,
    /// The last tick and when it was read, on this connection.
    last_tick: Option<(u64, Instant)>,
}

impl Poller {
    /// Runs until the task is dropped (aborted at shutdown).
    pub async fn run(self) {
        let mut commands = vec![CommandKind::Players, CommandKind::Version];
        if self.options.ups {
            commands.push(CommandKind::Tick);
        }
        self.report.register(&commands);
        let source = Arc::new(LogSource {
            server: self.target.server.as_str().into(),
            path: format!("rcon:{}", self.target.address).into(),
        });
        let mut backoff = Backoff::default();
        let mut state = PollState::default();
        loop {
            let connecting = timeout(
                self.options.command_timeout(),
                Client::connect(&self.target.address, &self.target.password),
            );
            let e = match connecting.await {
                Err(_) => self.timed_out("authentication"),
                Ok(Err(e)) => e,
                Ok(Ok(client)) => {
                    backoff.reset();
                    state.last_tick = None;
                    self.session(client, &mut state, &source).await
                }
            };
            let wait = backoff.after(&e);
            self.report.failed(&e, wait);
            tokio::time::sleep(wait).await;
        }
    }

    fn timed_out(&self, what: &str) -> RconError {
        RconError::Timeout {
            what: what.to_owned(),
            timeout_ms: self.options.command_timeout_ms,
        }
    }

    /// Polls on one connection until it fails.
    async fn session(
        &self,
        mut client: Client,
        state: &mut PollState,
        source: &Arc<LogSource>,
    ) -> RconError {
        let mut interval = tokio::time::interval(self.options.poll_interval());
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            interval.tick().await;
            let root = crate::traced_span!(parent: None, "rcon_poll", server = %self.target.server);
            let polled = async {
                // The connection's first poll asks the version first: the connection counts
                // once it has answered a command.
                if first {
                    let answer = self.command(&mut client, CommandKind::Version).await?;
                    self.report
                        .connected(protocol::parse_version(&answer).as_deref());
                    first = false;
                }
                self.poll(&mut client, state, source, &root).await
            };
            if let Err(e) = polled.instrument(root.clone()).await {
                return e;
            }
        }
    }

    /// One poll: players, reconciliation, and the tick.
    async fn poll(
        &self,
        client: &mut Client,
        state: &mut PollState,
        source: &Arc<LogSource>,
        root: &tracing::Span,
    ) -> Result<(), RconError> {
        let server = &self.target.server;
        // Joins delivered after this may be missing from the answer: they are not judged.
        let mark = self.presence.mark();
        let answer = self.command(client, CommandKind::Players).await?;
        let players = protocol::parse_players_online(&answer)
            .ok_or_else(|| RconError::unexpected("/players online", &answer))?;
        self.report.players(players.len());
        let (suspects, missing) = judge(
            self.presence.online(server),
            &players,
            mark,
            &state.suspects,
        );
        state.suspects = suspects;
        let gone: Vec<String> = missing
            .into_iter()
            .filter(|player| self.presence.remove(server, player, mark))
            .collect();
        if !gone.is_empty() {
            let info = self.leave_info();
            let events = gone
                .iter()
                .map(|player| {
                    self.report.reconciled(player);
                    reconciled_leave(source, player, info.clone())
                })
                .collect();
            self.inlet.send(events, root.clone());
        }
        if self.options.ups {
            let answer = self.command(client, CommandKind::Tick).await?;
            let tick = protocol::parse_tick(&answer)
                .ok_or_else(|| RconError::unexpected("/sc rcon.print(game.tick)", &answer))?;
            let now = Instant::now();
            if let Some((last, at)) = state.last_tick {
                let seconds = now.duration_since(at).as_secs_f64();
                // A smaller tick: the server loaded another save; start over.
                if tick >= last && seconds > 0.0 {
                    self.report.ups((tick - last) as f64 / seconds);
                }
            }
            state.last_tick = Some((tick, now));
        }
        Ok(())
    }

    /// Runs one command within the timeout, in its span, and times it.
    async fn command(&self, client: &mut Client, kind: CommandKind) -> Result<String, RconError> {
        let span = crate::traced_span!(
            parent: &tracing::Span::current(),
            "rcon_command",
            server = %self.target.server,
            command = kind.as_str()
        );
        let started = Instant::now();
        let answer = timeout(
            self.options.command_timeout(),
            client.command(kind.command()),
        )
        .instrument(span)
        .await
        .map_err(|_| self.timed_out(kind.command()))??;
        self.report
            .command_done(kind, started.elapsed().as_secs_f64());
        Ok(answer)
    }

    /// What a reconciled leave carries: the Discord template of the pattern that makes
    /// `player_leave`, under the name `rcon/player_leave`.
    fn leave_info(&self) -> Arc<PatternInfo> {
        let set = self.patterns.load();
        let discord = set
            .patterns()
            .iter()
            .filter(|p| p.enabled && &*p.event_type == "player_leave")
            .min_by_key(|p| p.priority)
            .and_then(|p| p.discord.clone());
        Arc::new(PatternInfo {
            name: "rcon/player_leave".into(),
            discord,
        })
    }
}

/// Judges the players `online` by the logs (with the sequence number of their join) against
/// the players `listed` by an answer asked at `mark`: returns who is missing for the first
/// time (the next `suspects`) and who is missing again (gone: a reconciled leave each). A
/// join after `mark` is not judged: the answer may predate it.
fn judge(
    online: Vec<(String, u64)>,
    listed: &[String],
    mark: u64,
    suspects: &HashSet<String>,
) -> (HashSet<String>, Vec<String>) {
    let listed: HashSet<&str> = listed.iter().map(String::as_str).collect();
    let mut missing = HashSet::new();
    let mut gone = Vec::new();
    for (player, joined) in online {
        if joined > mark || listed.contains(player.as_str()) {
            continue;
        }
        if suspects.contains(&player) {
            gone.push(player);
        } else {
            missing.insert(player);
        }
    }
    gone.sort();
    (missing, gone)
}

/// The `player_leave` event of `player`, who the logs had online and the server no longer
/// lists.
fn reconciled_leave(source: &Arc<LogSource>, player: &str, info: Arc<PatternInfo>) -> Event {
    Event {
        timestamp: Timestamp::now(),
        event_type: "player_leave".into(),
        severity: Severity::Info,
        pattern: Some(info),
        fields: vec![
            ("player".into(), FieldValue::Str(player.to_owned())),
            ("reconciled".into(), FieldValue::Bool(true)),
        ],
        raw: format!(
            "{player} is no longer online (not listed by /players online; no leave line was read)"
        ),
        message_start: 0,
        source: source.clone(),
        offset: 0,
        trace: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_password_waits_at_least_2_s_then_longer_and_a_connection_problem_less() {
        let mut b = Backoff::default();
        let first = b.after(&RconError::AuthRefused);
        assert!(first >= Duration::from_secs(2), "{first:?}");
        let second = b.after(&RconError::AuthRefused);
        assert!(second >= Duration::from_secs(4), "{second:?}");
        for _ in 0..20 {
            b.after(&RconError::AuthRefused);
        }
        let w = b.after(&RconError::AuthRefused);
        assert!(w >= AUTH_BACKOFF.1 && w <= AUTH_BACKOFF.1 * 3 / 2, "{w:?}");
        let connect = b.after(&RconError::Closed { during: "x".into() });
        assert!(connect <= CONNECT_BACKOFF.0, "{connect:?}");
        b.reset();
        assert!(b.after(&RconError::AuthRefused) < Duration::from_secs(3));
    }

    #[test]
    fn a_player_is_gone_when_missing_from_two_answers_asked_after_their_join() {
        let online = || {
            vec![
                ("ghost".to_owned(), 1),
                ("here".to_owned(), 2),
                ("late".to_owned(), 9),
            ]
        };
        let listed = ["here".to_owned()];
        let (suspects, gone) = judge(online(), &listed, 5, &HashSet::new());
        assert_eq!(suspects, HashSet::from(["ghost".to_owned()]));
        assert!(
            gone.is_empty(),
            "one answer is not enough: a leave line may be on its way"
        );
        let (suspects, gone) = judge(online(), &listed, 6, &suspects);
        assert_eq!(gone, ["ghost"]);
        assert!(suspects.is_empty());
        // A join after the question is not judged by its answer.
        let (suspects, gone) = judge(online(), &listed, 5, &HashSet::from(["late".to_owned()]));
        assert!(
            gone.is_empty() && !suspects.contains("late"),
            "{gone:?} {suspects:?}"
        );
        // Listed again: no longer a suspect.
        let (suspects, _) = judge(
            online(),
            &["ghost".to_owned()],
            6,
            &HashSet::from(["ghost".to_owned()]),
        );
        assert!(!suspects.contains("ghost"));
    }

    #[test]
    fn a_reconciled_leave_says_so_in_its_fields() {
        let source = Arc::new(LogSource {
            server: "a".into(),
            path: "rcon:127.0.0.1:27015".into(),
        });
        let e = reconciled_leave(
            &source,
            "Mr. Spaceman [AFK]",
            PatternInfo::named("rcon/player_leave"),
        );
        assert_eq!(&*e.event_type, "player_leave");
        assert_eq!(
            e.field("player"),
            Some(&FieldValue::Str("Mr. Spaceman [AFK]".into()))
        );
        assert_eq!(e.field("reconciled"), Some(&FieldValue::Bool(true)));
    }
}
