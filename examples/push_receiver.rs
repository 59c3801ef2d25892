//! A counting receiver for measuring the Loki and OTLP logs sinks on loopback: a Loki push
//! endpoint (snappy + protobuf, every request decoded and its entries counted) and an OTLP
//! logs gRPC service (every record counted), both answering success at once.
//!
//! ```sh
//! cargo run --release --example push_receiver -- 127.0.0.1:3100 127.0.0.1:4317 2000000
//! ```
//!
//! It prints the time from the first request to the one that brought the count to the
//! expected number (the third argument) for each protocol, then goes on serving.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use std::sync::Mutex;

/// Loki's push request, as far as counting needs: the streams and their entries.
#[derive(Clone, PartialEq, Message)]
struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    streams: Vec<Stream>,
}

#[derive(Clone, PartialEq, Message)]
struct Stream {
    #[prost(string, tag = "1")]
    labels: String,
    #[prost(message, repeated, tag = "2")]
    entries: Vec<Entry>,
}

#[derive(Clone, PartialEq, Message)]
struct Entry {
    #[prost(string, tag = "2")]
    line: String,
}

/// Counts one protocol's events and says when the expected number is reached.
struct Counter {
    name: &'static str,
    expected: u64,
    count: AtomicU64,
    bytes: AtomicU64,
    first: Mutex<Option<Instant>>,
}

impl Counter {
    fn add(&self, events: u64, bytes: u64) {
        let first = *self
            .first
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(Instant::now);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let before = self.count.fetch_add(events, Ordering::Relaxed);
        if before < self.expected && before + events >= self.expected {
            let secs = first.elapsed().as_secs_f64();
            println!(
                "{}: {} events, {} request bytes in {secs:.2} s from the first request: {:.0} events/s",
                self.name,
                before + events,
                self.bytes.load(Ordering::Relaxed),
                (before + events) as f64 / secs
            );
        }
    }
}

async fn push(State(counter): State<Arc<Counter>>, body: Bytes) -> StatusCode {
    let Ok(raw) = snap::raw::Decoder::new().decompress_vec(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let Ok(request) = PushRequest::decode(raw.as_slice()) else {
        return StatusCode::BAD_REQUEST;
    };
    let events = request.streams.iter().map(|s| s.entries.len() as u64).sum();
    counter.add(events, body.len() as u64);
    StatusCode::NO_CONTENT
}

struct Logs(Arc<Counter>);

#[tonic::async_trait]
impl LogsService for Logs {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let bytes = request.encoded_len() as u64;
        let events = request
            .resource_logs
            .iter()
            .flat_map(|r| &r.scope_logs)
            .map(|s| s.log_records.len() as u64)
            .sum();
        self.0.add(events, bytes);
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [loki_addr, otlp_addr, expected] = args.as_slice() else {
        eprintln!("usage: push_receiver LOKI_ADDR OTLP_ADDR EXPECTED_EVENTS");
        std::process::exit(2);
    };
    let expected: u64 = expected.parse().expect("EXPECTED_EVENTS is a number");
    let counter = |name| {
        Arc::new(Counter {
            name,
            expected,
            count: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            first: Mutex::new(None),
        })
    };
    let loki = Router::new()
        .route("/loki/api/v1/push", post(push))
        .with_state(counter("loki"));
    let listener = tokio::net::TcpListener::bind(loki_addr)
        .await
        .expect("bind the Loki address");
    tokio::spawn(async move { axum::serve(listener, loki).await });
    let otlp = LogsServiceServer::new(Logs(counter("otlp_logs")))
        .max_decoding_message_size(256 * 1024 * 1024);
    tonic::transport::Server::builder()
        .add_service(otlp)
        .serve(otlp_addr.parse().expect("OTLP_ADDR is HOST:PORT"))
        .await
        .expect("the OTLP server");
}
