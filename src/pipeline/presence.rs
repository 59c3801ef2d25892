//! Who the logs say is online, per server: the `player_join` and `player_leave` events the
//! router delivers, kept for the sources that compare it with what the server itself says
//! (RCON's `/players online`).
//!
//! Only servers that asked for it ([`Presence::track`]) are kept, so a pipeline without RCON
//! keeps nothing. Each join is stamped with a sequence number ([`Presence::mark`] reads the
//! current one), so a poller can tell a join routed after it asked the server (the server's
//! answer may predate it) from one routed before. A poller that finds a player gone removes
//! them here itself ([`Presence::remove`]) and sends a `player_leave` with
//! `fields.reconciled = true`; when that leave is delivered it is not applied again, so a
//! player who joined again in between stays online.
//!
//! How it fails: it does not; it is a map behind a lock that is held for a few look-ups.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::event::{Event, FieldValue};
use crate::settings::lock;

/// Who the logs say is online, per tracked server. Cheap to clone (shared).
#[derive(Clone, Debug, Default)]
pub struct Presence {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Whether any server is tracked: without one, [`Presence::observe_batch`] does nothing.
    tracking: AtomicBool,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bumped by every join.
    seq: u64,
    /// Tracked servers: player → the sequence number of their join.
    servers: HashMap<String, HashMap<String, u64>>,
}

impl Presence {
    /// Starts keeping who is online on `server`.
    pub fn track(&self, server: &str) {
        lock(&self.shared.inner)
            .servers
            .entry(server.to_owned())
            .or_default();
        self.shared.tracking.store(true, Ordering::Release);
    }

    /// Takes in the events of one delivered batch, in order; costs nothing while no server
    /// is tracked (a pipeline without RCON, `replay`).
    pub fn observe_batch(&self, events: &[Event]) {
        if !self.shared.tracking.load(Ordering::Acquire) {
            return;
        }
        for event in events {
            self.observe(event);
        }
    }

    /// Takes in one delivered event: a join adds its `player`, a leave removes it. A leave
    /// with `fields.reconciled = true` is skipped: the poller that made it took the player
    /// out itself ([`Presence::remove`]), and by its delivery they may have joined again.
    pub fn observe(&self, event: &Event) {
        let join = match &*event.event_type {
            "player_join" => true,
            "player_leave" if event.field("reconciled") == Some(&FieldValue::Bool(true)) => {
                return;
            }
            "player_leave" => false,
            _ => return,
        };
        let Some(player) = event.field("player").and_then(|p| p.as_str()) else {
            return;
        };
        let mut inner = lock(&self.shared.inner);
        let inner = &mut *inner;
        let Some(online) = inner.servers.get_mut(&*event.source.server) else {
            return;
        };
        if join {
            inner.seq += 1;
            online.insert(player.to_owned(), inner.seq);
        } else {
            online.remove(player);
        }
    }

    /// The current sequence number: joins observed from now on have a larger one.
    pub fn mark(&self) -> u64 {
        lock(&self.shared.inner).seq
    }

    /// The players online on `server` by the logs, with the sequence number of their join.
    pub fn online(&self, server: &str) -> Vec<(String, u64)> {
        lock(&self.shared.inner)
            .servers
            .get(server)
            .map(|m| m.iter().map(|(p, s)| (p.clone(), *s)).collect())
            .unwrap_or_default()
    }

    /// Removes `player` from `server`; `true` when they were online (and joined no later than
    /// `seq`, so a join that came meanwhile is kept).
    pub fn remove(&self, server: &str, player: &str, seq: u64) -> bool {
        let mut inner = lock(&self.shared.inner);
        let Some(online) = inner.servers.get_mut(server) else {
            return false;
        };
        match online.get(player) {
            Some(&joined) if joined <= seq => online.remove(player).is_some(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{LogSource, Severity, Timestamp};

    fn event(server: &str, event_type: &str, player: &str) -> Event {
        Event {
            timestamp: Timestamp(0),
            event_type: event_type.into(),
            severity: Severity::Info,
            pattern: None,
            fields: vec![("player".into(), FieldValue::Str(player.to_owned()))],
            raw: String::new(),
            message_start: 0,
            source: Arc::new(LogSource {
                server: server.into(),
                path: "console.log".into(),
            }),
            offset: 0,
            trace: None,
        }
    }

    #[test]
    fn joins_and_leaves_of_tracked_servers_are_kept_in_order() {
        let p = Presence::default();
        p.track("a");
        p.observe(&event("a", "player_join", "Mr. Spaceman [AFK]"));
        p.observe(&event("b", "player_join", "x"));
        let mark = p.mark();
        p.observe(&event("a", "player_join", "late"));
        let mut online = p.online("a");
        online.sort();
        assert_eq!(
            online,
            [("Mr. Spaceman [AFK]".to_owned(), 1), ("late".to_owned(), 2)]
        );
        assert!(p.online("b").is_empty(), "untracked servers keep nothing");
        assert!(
            !p.remove("a", "late", mark),
            "a join after the mark is kept"
        );
        assert!(p.remove("a", "Mr. Spaceman [AFK]", mark));
        assert!(!p.remove("a", "Mr. Spaceman [AFK]", mark), "only once");
        p.observe(&event("a", "player_leave", "late"));
        assert!(p.online("a").is_empty());
    }

    #[test]
    fn a_late_reconciled_leave_does_not_remove_a_player_who_rejoined() {
        let p = Presence::default();
        p.track("a");
        p.observe(&event("a", "player_join", "ghost"));
        // The poller finds them gone, takes them out itself and sends the reconciled leave.
        let mark = p.mark();
        assert!(p.remove("a", "ghost", mark));
        let mut reconciled = event("a", "player_leave", "ghost");
        reconciled
            .fields
            .push(("reconciled".into(), FieldValue::Bool(true)));
        // They join again before the reconciled leave is delivered.
        p.observe(&event("a", "player_join", "ghost"));
        p.observe(&reconciled);
        assert_eq!(p.online("a"), [("ghost".to_owned(), 2)]);
        // An ordinary leave still removes them.
        p.observe(&event("a", "player_leave", "ghost"));
        assert!(p.online("a").is_empty());
    }
}
