//! The Logstash sink, in one of two protocols (`[logstash] protocol`): `tcp` (the default),
//! every event as one JSON line over TCP for Logstash's `tcp` input with the `json_lines`
//! codec, which acknowledges nothing; or `beats`, the beats protocol (Lumberjack v2, [`beats`])
//! for Logstash's `beats` input, which acknowledges every window of events. The connection
//! handling (address, TLS, connect timeout, backoff) is the same for both; what counts as
//! delivered differs.
//!
//! With `beats`, a batch is split into windows of `window_size` events (`'2' 'W'`, then one
//! `'2' 'J'` frame per event numbered from 1, or all of them in one zlib `'2' 'C'` frame with
//! `compression_level` above 0), up to `pipelining` windows are in flight, and
//! [`Sink::flush`](crate::sinks::Sink::flush) returns only once Logstash acknowledged every
//! event (`'2' 'A'` with the number of the last event taken; several may acknowledge a window
//! in parts). So the checkpoint moves only past acknowledged events, and a forced stop saves
//! it at the first event not acknowledged. Acknowledgements replace the probation of `tcp`
//! (`probation_ms` is not used): a connection counts as healthy, for `/ready` and the backoff,
//! once Logstash acknowledged something on it. An acknowledgement that moves nothing is a
//! keep-alive (Logstash sends `'2' 'A'` 0 every 5 s while its pipeline is blocked): it proves
//! Logstash alive, so a slow pipeline is waited for, not taken for a dead one. When Logstash
//! sends nothing at all for `ack_timeout_ms` while a window waits, when it closes or resets
//! the connection, or when it sends bytes that are not acknowledgements (not a beats input),
//! the connection is dropped and the windows not wholly acknowledged are sent again on the
//! next one, from their first unacknowledged event: at-least-once, with duplicates at most
//! the events sent and not acknowledged (`logstash_windows_resent_total`,
//! `logstash_events_resent_total`). `/ready` says not ready from a connect until the first
//! acknowledgement, and while a window has waited [`ACK_STALL_MS`] with nothing from Logstash.
//! Writes still have no timeout (a Logstash that does not read is backpressure).
//!
//! The rest of these docs describe `tcp`.
//!
//! Events of a batch are encoded into one buffer and written with one `write_all` when the
//! pipeline flushes the batch. [`Sink::flush`](crate::sinks::Sink::flush) returns only once the whole batch is written to
//! the socket on a connection that has proved healthy, so a file's checkpoint never moves past
//! events that were not handed to the kernel of a connection that holds.
//!
//! Connection handling:
//!
//! - The connection is made when the first batch is flushed, with `connect_timeout_ms`, and made
//!   again after any failure with exponential backoff (`backoff_initial_ms` doubling up to
//!   `backoff_max_ms`, each wait randomised between half and all of it, so many instances do not
//!   reconnect in step). While it is down, `flush` keeps retrying and blocks: the pipeline
//!   stops, the tailer stops reading, and the log file is the buffer. Nothing is dropped.
//! - A new connection is on probation: that `connect` (and a TLS handshake) succeeded says
//!   only that something accepted it. A TCP proxy or load balancer with no healthy Logstash
//!   behind it accepts, takes the first bytes, and then resets; a `write` that succeeded says
//!   only that the kernel took the bytes. So after the first batch is written, the sink waits
//!   `probation_ms` watching the socket (a read with a timeout: end-of-file is a close, an
//!   error a reset). Until the connection has held that long, the batch is not delivered
//!   (`flush` has not returned, so the checkpoint has not moved and a forced stop does not
//!   save past it), `/ready` says not ready, and the backoff is not reset: a connection lost
//!   on probation is made again only after the next, doubled, wait, and the batch is written
//!   again on it. A healthy connection that is lost is made again at once.
//! - Before every batch the socket is checked without blocking: a peer that closed or reset the
//!   connection (Logstash restarted) is noticed before the batch is written into a dead socket.
//! - A write that fails part-way drops the connection, and the whole batch is written again on
//!   the next one: at-least-once. Events that may have reached Logstash before are counted as
//!   possibly duplicated (`logstash_events_resent_total`, an upper bound): over plain TCP the
//!   events from the start of the batch up to the last byte the kernel took, over TLS the
//!   whole batch, and the whole batch when its connection failed on probation. Events never
//!   handed to a connection are not counted.
//! - Writes have no timeout: a Logstash that accepts but does not read (its pipeline is full)
//!   blocks the pipeline through TCP flow control, which is backpressure, not a failure.
//!
//! - With a `[logstash.tls]` section the connection is TLS ([`tls`]): the server is always
//!   verified, and a failed handshake is a failed connection, never a reason to send plaintext.
//!
//! State for `/ready` and the metrics: the sink reports connected / on probation / connecting
//! (with the last error) to its health component, counts reconnects, events sent and events
//! possibly sent twice, and marks when a write started, so `/ready` can tell a Logstash that
//! stopped reading.
//!
//! What plain TCP cannot promise: bytes the kernel accepted just before the peer died are lost
//! without any error, because the `json_lines` input acknowledges nothing. That is the limit
//! of this protocol; the at-least-once promise holds up to the socket.

pub mod beats;
mod config;
mod internal_events;
mod sink;
pub mod tls;

pub use self::config::{
    ACK_STALL_MS, LogstashConfig, LogstashProtocol, STALL_MS, default_ack_timeout_ms,
    default_backoff_initial_ms, default_backoff_max_ms, default_connect_timeout_ms,
    default_pipelining, default_probation_ms, default_window_size,
};
pub use self::internal_events::LogstashErrorKind;
pub use self::sink::{LogstashSink, LogstashStats, stall_probe};
pub use crate::sinks::NO_CUT;
