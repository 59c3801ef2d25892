//! The state of every component, for `/healthz` (liveness) and `/ready` (readiness).
//!
//! Each component (`tailer`, `logstash`, `discord.<webhook>`, `patterns`) gets a
//! [`Component`] handle and reports changes of state: ready, not ready with a reason (a sink
//! that is connecting, a pattern file that failed to reload), or failed (a task that died).
//! A component may also have a probe, asked at every `/ready`, for conditions nothing reports
//! by itself (a Logstash that stopped reading leaves its writer blocked in a write).
//!
//! - Liveness fails only when restarting factorio-isr would help: a component failed. A sink
//!   that is down, stalled or rate-limited is not a liveness failure; it shows in `/ready`.
//! - Readiness needs every component ready: `/ready` lists each with its state and reason.
//!
//! Every change also sets `factorio_isr_component_status{component}` (1 ready, 0 not).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;

use super::metrics::ComponentLabels;

/// A component's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Working.
    Ready,
    /// Not working yet or for now; factorio-isr keeps trying.
    NotReady,
    /// Dead: restarting factorio-isr is the remedy.
    Failed,
}

/// A condition a component is asked about at every `/ready`: `Some(reason)` when not ready.
pub type Probe = Box<dyn Fn() -> Option<String> + Send + Sync>;

struct Entry {
    state: State,
    reason: Option<String>,
    probe: Option<Probe>,
    live_probe: Option<Probe>,
}

/// The components and their states.
pub struct Health {
    components: Mutex<BTreeMap<String, Entry>>,
    status: Family<ComponentLabels, Gauge>,
}

/// One component's report in `/ready`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ComponentReport {
    /// Its state.
    pub state: State,
    /// Why it is not ready, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of `/ready` and `/healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Whether the check passes.
    pub ok: bool,
    /// `component: reason` for every component that fails the check.
    pub reasons: Vec<String>,
    /// Every component.
    pub components: BTreeMap<String, ComponentReport>,
}

impl Health {
    /// No components yet; states are mirrored into `status`.
    pub fn new(status: Family<ComponentLabels, Gauge>) -> Arc<Health> {
        Arc::new(Health {
            components: Mutex::new(BTreeMap::new()),
            status,
        })
    }

    /// Registers a component, not ready with `reason` until it says otherwise.
    pub fn component(self: &Arc<Self>, name: &str, reason: &str) -> Component {
        let c = Component {
            health: self.clone(),
            name: name.to_owned(),
        };
        c.set(State::NotReady, Some(reason.to_owned()));
        c
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // Every update is one map write: a poisoned map is still consistent.
        self.components.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reports(&self) -> BTreeMap<String, ComponentReport> {
        self.lock()
            .iter()
            .map(|(name, e)| {
                let mut report = ComponentReport {
                    state: e.state.clone(),
                    reason: e.reason.clone(),
                };
                if report.state != State::Failed
                    && let Some(reason) = e.live_probe.as_ref().and_then(|p| p())
                {
                    report = ComponentReport {
                        state: State::Failed,
                        reason: Some(reason),
                    };
                }
                if report.state == State::Ready
                    && let Some(reason) = e.probe.as_ref().and_then(|p| p())
                {
                    report = ComponentReport {
                        state: State::NotReady,
                        reason: Some(reason),
                    };
                }
                (name.clone(), report)
            })
            .collect()
    }

    /// Readiness: every component ready.
    pub fn readiness(&self) -> Report {
        report(self.reports(), |s| *s == State::Ready)
    }

    /// Liveness: no component failed.
    pub fn liveness(&self) -> Report {
        report(self.reports(), |s| *s != State::Failed)
    }
}

fn report(components: BTreeMap<String, ComponentReport>, pass: impl Fn(&State) -> bool) -> Report {
    let reasons: Vec<String> = components
        .iter()
        .filter(|(_, c)| !pass(&c.state))
        .map(|(name, c)| format!("{name}: {}", c.reason.as_deref().unwrap_or("not ready")))
        .collect();
    Report {
        ok: reasons.is_empty(),
        reasons,
        components,
    }
}

/// A component's handle for reporting its state.
#[derive(Clone)]
pub struct Component {
    health: Arc<Health>,
    name: String,
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Component")
            .field("name", &self.name)
            .finish()
    }
}

impl Component {
    fn set(&self, state: State, reason: Option<String>) {
        self.health
            .status
            .get_or_create(&ComponentLabels {
                component: self.name.clone(),
            })
            .set(i64::from(state == State::Ready));
        let mut map = self.health.lock();
        let entry = map.entry(self.name.clone()).or_insert(Entry {
            state: State::NotReady,
            reason: None,
            probe: None,
            live_probe: None,
        });
        entry.state = state;
        entry.reason = reason;
    }

    /// Working.
    pub fn ready(&self) {
        self.set(State::Ready, None);
    }

    /// Not working for now, and why.
    pub fn not_ready(&self, reason: impl Into<String>) {
        self.set(State::NotReady, Some(reason.into()));
    }

    /// Dead, and why: `/healthz` fails.
    pub fn failed(&self, reason: impl Into<String>) {
        self.set(State::Failed, Some(reason.into()));
    }

    /// Asks `probe` at every `/healthz` and `/ready`: `Some(reason)` means the component is
    /// dead (wedged), and restarting factorio-isr would help.
    pub fn set_liveness_probe(&self, probe: Probe) {
        if let Some(e) = self.health.lock().get_mut(&self.name) {
            e.live_probe = Some(probe);
        }
    }

    /// Asks `probe` at every `/ready` while the component is otherwise ready.
    pub fn set_probe(&self, probe: Probe) {
        if let Some(e) = self.health.lock().get_mut(&self.name) {
            e.probe = Some(probe);
        }
    }
}

/// A detached handle for code run without a health report (tests, `replay`).
impl Default for Component {
    fn default() -> Self {
        Health::new(Family::default()).component("detached", "detached")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_every_component_and_live_only_needs_none_failed() {
        let status = Family::<ComponentLabels, Gauge>::default();
        let health = Health::new(status.clone());
        let tailer = health.component("tailer", "starting");
        let logstash = health.component("logstash", "connecting");
        let r = health.readiness();
        assert!(!r.ok);
        assert_eq!(r.reasons, ["logstash: connecting", "tailer: starting"]);
        assert!(health.liveness().ok);

        tailer.ready();
        logstash.ready();
        assert!(health.readiness().ok);
        let gauge = |c: &str| {
            status
                .get_or_create(&ComponentLabels {
                    component: c.into(),
                })
                .get()
        };
        assert_eq!(gauge("logstash"), 1);

        logstash.set_probe(Box::new(|| Some("not reading for 12 s".into())));
        let r = health.readiness();
        assert_eq!(r.reasons, ["logstash: not reading for 12 s"]);
        assert!(
            health.liveness().ok,
            "a stalled sink is not a liveness failure"
        );

        let wedged = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let w = wedged.clone();
        tailer.set_liveness_probe(Box::new(move || {
            w.load(std::sync::atomic::Ordering::Relaxed)
                .then(|| "no progress for 60 s".to_owned())
        }));
        assert!(health.liveness().ok);
        wedged.store(true, std::sync::atomic::Ordering::Relaxed);
        let r = health.liveness();
        assert_eq!(r.reasons, ["tailer: no progress for 60 s"]);
        assert!(!health.readiness().ok);
        wedged.store(false, std::sync::atomic::Ordering::Relaxed);

        tailer.failed("the tail thread panicked");
        assert!(!health.liveness().ok);
        assert_eq!(gauge("tailer"), 0);
        let body = serde_json::to_value(health.liveness()).unwrap();
        assert_eq!(body["components"]["tailer"]["state"], "failed");
    }
}
