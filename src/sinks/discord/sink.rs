//! The Discord sink on the pipeline's [`Sink`] seam: every event whose pattern has a Discord
//! template is handed to [`Discord::route`], which queues it without waiting.
//!
//! Best-effort: `write` never blocks and never fails, `flush` does nothing, and the checkpoint
//! never waits for Discord. Stopping (see [`SinkHandle::shutdown`]) gives the workers up to
//! `shutdown_flush_ms` to send what is queued; the rest is counted as dropped.

use std::io;
use std::sync::Arc;

use super::Discord;
use crate::event::Event;
use crate::sinks::{Delivery, Sink, SinkHandle};

/// The running Discord sink, as the pipeline sees it.
pub struct DiscordSink {
    discord: Arc<Discord>,
    runtime: tokio::runtime::Handle,
}

impl DiscordSink {
    /// Wraps a started [`Discord`] whose workers run on `runtime`.
    pub fn new(discord: Discord, runtime: tokio::runtime::Handle) -> Self {
        DiscordSink {
            discord: Arc::new(discord),
            runtime,
        }
    }

    /// The running sink, for a source that queues messages itself (the Alertmanager receiver).
    pub fn discord(&self) -> Arc<Discord> {
        self.discord.clone()
    }
}

impl Sink for DiscordSink {
    fn name(&self) -> &'static str {
        "discord"
    }

    fn delivery(&self) -> Delivery {
        Delivery::BestEffort
    }

    fn write(&mut self, event: &Event) -> io::Result<()> {
        if let Some(template) = event.pattern.as_ref().and_then(|p| p.discord.as_ref()) {
            self.discord.route(event, template);
        } else {
            self.discord.observe(event);
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn handle(&self) -> SinkHandle {
        let (discord, runtime) = (self.discord.clone(), self.runtime.clone());
        SinkHandle {
            cut_offset: None,
            shutdown: Some(Box::new(move || discord.shutdown(&runtime))),
        }
    }
}
