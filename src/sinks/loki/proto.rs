//! The few messages of Loki's push API (`logproto.PushRequest` in Loki's `push.proto`), as
//! Promtail sends them: a request holds streams, a stream its label set (as LogQL text,
//! `{server="a", …}`) and its entries, an entry its time, line and structured metadata.
//!
//! How it fails: encoding into a `Vec` cannot fail.

use prost::Message;

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    /// The streams of the batch, one per label set.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct StreamAdapter {
    /// The label set as LogQL text: `{event_type="chat", server="a"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// The entries, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// Unused by clients (Loki computes it).
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct EntryAdapter {
    /// When the event happened.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<prost_types_timestamp::Timestamp>,
    /// The line: the event's JSON.
    #[prost(string, tag = "2")]
    pub line: String,
    /// Per-entry metadata that is not a label (`trace_id`); Loki 2.9+ with the TSDB schema v13.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, Message)]
pub struct LabelPairAdapter {
    /// The name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.protobuf.Timestamp`, defined here rather than taken from `prost-types`.
pub mod prost_types_timestamp {
    /// Seconds and nanoseconds since the Unix epoch.
    #[derive(Clone, Copy, PartialEq, ::prost::Message)]
    pub struct Timestamp {
        /// Whole seconds.
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        /// Nanoseconds within the second, 0 to 999,999,999.
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    impl Timestamp {
        /// The time `ms` milliseconds since the epoch.
        pub fn from_millis(ms: i64) -> Timestamp {
            Timestamp {
                seconds: ms.div_euclid(1000),
                nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
            }
        }
    }
}

/// The request's protobuf encoding, compressed with snappy's block format: the body of a
/// `POST /loki/api/v1/push` with `Content-Type: application/x-protobuf`.
pub fn encode_snappy(request: &PushRequest) -> Vec<u8> {
    let raw = request.encode_to_vec();
    // Compressing into a Vec fails only beyond snappy's 4 GiB input limit, which a batch
    // never reaches; an empty body would then be refused by Loki, and counted.
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}
