//! The route and sink stages: every event of a batch to every sink, then the reliable sinks
//! flushed, then the batch's receipt.
//!
//! It runs on the sink thread, after the match workers, one batch at a time in source order.
//! Routing is a field access: an event carries its pattern's [`crate::event::PatternInfo`],
//! so the Discord sink sees the template without a look-up, and a sink that wants nothing of
//! an event returns at once. Best-effort sinks only queue, so a slow or failing Discord cannot
//! hold up Logstash or the checkpoints.
//!
//! Each reliable sink's flush runs in its own span (`sink.<name>`) and is timed into
//! `processing_seconds{stage="sink"}`, and the batch's read-to-delivered time into
//! `event_latency_seconds{sink="<name>"}` with the batch's trace id as exemplar.
//!
//! How it fails: a reliable sink's error is returned as it is and the batch is not receipted
//! (its checkpoint does not move). Best-effort sinks report nothing back.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::metrics::histogram::Histogram;
use tracing::debug;

use super::presence::Presence;
use super::source::{Progress, Receipt};
use super::stages::Matched;
use crate::event::Event;
use crate::settings::lock;
use crate::sinks::{Delivery, Sink};
use crate::telemetry::metrics::{
    EventLabels, LatencyHistogram, PipelineMetrics, Stage, TraceLabel,
};

/// The sinks of a pipeline and the metric handles of the route and sink stages.
pub struct Router<'a> {
    sinks: Vec<Box<dyn Sink + 'a>>,
    /// Per sink: its latency histogram when it is reliable.
    latency: Vec<Option<LatencyHistogram>>,
    route_seconds: Histogram,
    sink_seconds: Histogram,
    metrics: PipelineMetrics,
    types: EventTypeCounts,
    presence: Option<Presence>,
}

impl<'a> Router<'a> {
    /// Routes to `sinks`, in the order given.
    pub fn new(sinks: Vec<Box<dyn Sink + 'a>>, metrics: &PipelineMetrics) -> Self {
        let latency = sinks
            .iter()
            .map(|s| (s.delivery() == Delivery::Reliable).then(|| metrics.latency(s.name())))
            .collect();
        Router {
            sinks,
            latency,
            route_seconds: metrics.stage(Stage::Route),
            sink_seconds: metrics.stage(Stage::Sink),
            metrics: metrics.clone(),
            types: EventTypeCounts::default(),
            presence: None,
        }
    }

    /// Keeps `presence` up to date with the joins and leaves this router delivers.
    pub fn with_presence(mut self, presence: Presence) -> Self {
        self.presence = Some(presence);
        self
    }

    /// Delivers one batch: writes, flushes, counts, then receipts it; returns how many events
    /// it carried. `in_flight` holds the receipt while the reliable sinks flush, for a forced
    /// stop that cuts the flush short.
    pub fn deliver(
        &mut self,
        matched: Matched,
        progress: &Progress,
        in_flight: &Mutex<Option<Arc<dyn Receipt>>>,
        by_type: &mut std::collections::BTreeMap<String, u64>,
    ) -> io::Result<u64> {
        let Matched {
            events,
            receipt,
            read_at,
            span,
        } = matched;
        let started = Instant::now();
        // Who is online changes as the events are handed on: a reader of the presence never
        // sees a join or leave the sinks have and it has not.
        if let Some(presence) = &self.presence {
            presence.observe_batch(&events);
        }
        // Writing may block on a sink (stdout's buffer writes out as it fills).
        progress.flushing(true);
        let sinks = &mut self.sinks;
        let routed = crate::traced_span!(parent: &span, "route", events = events.len()).in_scope(
            || -> io::Result<()> {
                for event in &events {
                    for sink in sinks.iter_mut() {
                        sink.write(event)?;
                    }
                }
                Ok(())
            },
        );
        if let Err(e) = routed {
            progress.flushing(false);
            return Err(e);
        }
        let routed = Instant::now();
        self.route_seconds.observe((routed - started).as_secs_f64());
        // Where the file ends up once this batch is delivered, for a forced stop that cuts
        // its write short.
        lock(in_flight).clone_from(&receipt);
        let flushed = self.flush(&span, &events, read_at);
        progress.flushing(false);
        flushed?;
        self.sink_seconds.observe(routed.elapsed().as_secs_f64());
        self.types.count(&events, &self.metrics, by_type);
        if let Some(r) = &receipt {
            r.delivered();
        }
        *lock(in_flight) = None;
        Ok(events.len() as u64)
    }

    /// Flushes every reliable sink in its span and observes its latency.
    fn flush(
        &mut self,
        span: &tracing::Span,
        events: &[Event],
        read_at: Instant,
    ) -> io::Result<()> {
        let exemplar = events
            .first()
            .and_then(|e| e.trace.as_ref())
            .map(|t| TraceLabel {
                trace_id: t.trace_id.clone(),
            });
        for (sink, latency) in self.sinks.iter_mut().zip(&self.latency) {
            let Some(latency) = latency else {
                sink.flush()?;
                continue;
            };
            let sink_span = sink.flush_span(span, events.len());
            sink_span.in_scope(|| -> io::Result<()> {
                sink.flush()?;
                debug!(events = events.len(), "Batch delivered.");
                Ok(())
            })?;
            drop(sink_span);
            latency.observe(read_at.elapsed().as_secs_f64(), exemplar.clone(), None);
        }
        Ok(())
    }
}

/// Counts a batch's events by server and type into `events_processed_total`. A batch comes
/// from one file and has few distinct types, so a short list beats a map per event; types
/// are usually the same `Arc` (a pattern's), compared by pointer first.
#[derive(Default)]
struct EventTypeCounts {
    counts: Vec<(Arc<str>, u64)>,
}

impl EventTypeCounts {
    fn count(
        &mut self,
        events: &[Event],
        metrics: &PipelineMetrics,
        by_type: &mut std::collections::BTreeMap<String, u64>,
    ) {
        let Some(first) = events.first() else { return };
        self.counts.clear();
        for e in events {
            match self
                .counts
                .iter_mut()
                .find(|(t, _)| Arc::ptr_eq(t, &e.event_type) || **t == *e.event_type)
            {
                Some((_, n)) => *n += 1,
                None => self.counts.push((e.event_type.clone(), 1)),
            }
        }
        for (event_type, n) in &self.counts {
            metrics
                .events_processed
                .get_or_create(&EventLabels {
                    server: first.source.server.to_string(),
                    event_type: event_type.to_string(),
                })
                .inc_by(*n);
            match by_type.get_mut(&**event_type) {
                Some(total) => *total += n,
                None => {
                    by_type.insert(event_type.to_string(), *n);
                }
            }
        }
    }
}
