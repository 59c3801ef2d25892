//! The event's JSON schema as the tests check it: the keys every event object carries (the
//! contract of `src/event.rs`; `pattern` only when one matched, `trace_id` and `span_id` only
//! when traced, so they are not here).
//!
//! Test crates that need only this list include this file by itself
//! (`#[path = "support/schema.rs"] mod schema;`), without the rest of `support`.

/// The keys every event's JSON object carries.
pub const EVENT_KEYS: [&str; 9] = [
    "@timestamp",
    "event_type",
    "server",
    "severity",
    "fields",
    "message",
    "raw",
    "log",
    "service",
];
