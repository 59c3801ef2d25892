//! The stdout sink: every event as one JSON line (the schema of [`crate::event`]).
//!
//! Output is buffered and written in large blocks; [`StdoutSink::flush`] must be called at the
//! end. Write errors are returned as they are; [`is_closed_pipe`] tells the caller when the
//! reader went away (`| head`), which is how a command-line tool ends quietly.

use std::io::{self, Write};

use super::{Delivery, Sink};
use crate::event::{Event, EventEncoder, ServiceInfo};

/// Size of the output buffer.
const BUFFER_BYTES: usize = 256 * 1024;

/// Writes events as JSON lines to any writer (standard output in production).
pub struct StdoutSink<W: Write> {
    out: W,
    encoder: EventEncoder,
    buf: Vec<u8>,
}

impl<W: Write> StdoutSink<W> {
    /// A sink writing to `out`, stamping events with `service`.
    pub fn new(out: W, service: ServiceInfo) -> Self {
        StdoutSink {
            out,
            encoder: EventEncoder::new(&service),
            buf: Vec::with_capacity(BUFFER_BYTES + 4096),
        }
    }

    /// Queues one event; writes the buffer out when it is full.
    pub fn write(&mut self, event: &Event) -> io::Result<()> {
        self.encoder.write_line(event, &mut self.buf);
        if self.buf.len() >= BUFFER_BYTES {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes out everything queued.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }

    /// The underlying writer (tests).
    pub fn into_inner(mut self) -> io::Result<W> {
        self.flush()?;
        Ok(self.out)
    }
}

impl<W: Write + Send> Sink for StdoutSink<W> {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn delivery(&self) -> Delivery {
        Delivery::Reliable
    }

    fn write(&mut self, event: &Event) -> io::Result<()> {
        StdoutSink::write(self, event)
    }

    fn flush(&mut self) -> io::Result<()> {
        StdoutSink::flush(self)
    }

    fn flush_span(&self, parent: &tracing::Span, events: usize) -> tracing::Span {
        crate::traced_span!(parent: parent, "sink.stdout", events = events)
    }
}

/// Whether an error means the reader of our output went away.
pub fn is_closed_pipe(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::BrokenPipe
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{LogSource, Severity, Timestamp};
    use std::sync::Arc;

    #[test]
    fn writes_one_json_object_per_line() {
        let source = Arc::new(LogSource {
            server: "s".into(),
            path: "p".into(),
        });
        let mut sink = StdoutSink::new(Vec::new(), ServiceInfo::default());
        for i in 0..3u64 {
            let e = Event {
                timestamp: Timestamp(0),
                event_type: "log".into(),
                severity: Severity::Info,
                pattern: None,
                fields: vec![],
                raw: format!("line {i}\nwith newline"),
                message_start: 0,
                source: source.clone(),
                offset: i,
                trace: None,
            };
            sink.write(&e).unwrap();
        }
        let out = String::from_utf8(sink.into_inner().unwrap()).unwrap();
        let lines: Vec<_> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        for (i, l) in lines.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["log"]["offset"], i);
        }
    }
}
