//! The route stage: every event to the reliable sink (Logstash or stdout), and the events
//! whose pattern has an enabled Discord template also to Discord.
//!
//! It runs on the sink's thread, between the match workers and the sinks. Discord gets a
//! rendered copy through a queue that never waits ([`crate::sinks::discord::Discord::route`]),
//! so a slow or failing Discord cannot hold up Logstash or the checkpoints. The template is
//! looked up by the event's pattern name in the pattern set in force, which is taken once per
//! batch (a reload applies from the next batch, as in the match stage); without Discord, or
//! for an event no pattern matched, routing costs one branch.
//!
//! How it fails: the reliable sink's errors are returned as they are; Discord reports nothing
//! back (it counts what it drops).

use std::io;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::event::Event;
use crate::patterns::PatternSet;
use crate::sinks::Sink;
use crate::sinks::discord::Discord;

/// A sink that writes to `primary` and routes Discord events to `discord`.
pub struct Router<'a> {
    primary: &'a mut dyn Sink,
    discord: Option<&'a Discord>,
    patterns: &'a ArcSwap<PatternSet>,
    /// The pattern set of the batch being routed; taken again after every flush.
    set: Arc<PatternSet>,
}

impl<'a> Router<'a> {
    /// Routes to `primary`, and to `discord` when there is one.
    pub fn new(
        primary: &'a mut dyn Sink,
        discord: Option<&'a Discord>,
        patterns: &'a ArcSwap<PatternSet>,
    ) -> Self {
        Router {
            primary,
            discord,
            set: patterns.load_full(),
            patterns,
        }
    }
}

impl Sink for Router<'_> {
    fn write(&mut self, event: &Event) -> io::Result<()> {
        self.primary.write(event)?;
        if let (Some(discord), Some(name)) = (self.discord, event.pattern.as_deref())
            && let Some(template) = self.set.by_name(name).and_then(|p| p.discord.as_ref())
        {
            discord.route(event, template);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.discord.is_some() {
            self.set = self.patterns.load_full();
        }
        self.primary.flush()
    }
}
