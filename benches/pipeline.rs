//! End to end in one process: a log file → `run`'s pipeline (tailer, match workers, Logstash
//! sink) → a json_lines receiver on loopback that counts lines.
//!
//! Each iteration starts from an empty state directory, so the whole file is read from its
//! start (`--from-beginning`), and ends when the receiver has counted every record. Throughput
//! is in log lines per second. Run: `cargo bench --bench pipeline`. Whole-process figures with
//! peak memory, and against syslog-ng, are in README.md ("Benchmarks").
//!
//! Tracing overhead: `FACTORIO_ISR_BENCH_TRACES=1.0` (or `0.01`, any sample rate) exports the
//! pipeline's spans over OTLP/gRPC to an in-process receiver, as a collector on the same host
//! would receive them; unset or `off`, no trace subscriber is installed. Metrics are always on.
//! The bench's name carries the setting, so criterion keeps the runs apart:
//!
//! ```sh
//! cargo bench --bench pipeline
//! FACTORIO_ISR_BENCH_TRACES=1.0 cargo bench --bench pipeline
//! FACTORIO_ISR_BENCH_TRACES=0.01 cargo bench --bench pipeline
//! ```

use std::io::Read;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use factorio_isr::event::ServiceInfo;
use factorio_isr::patterns;
use factorio_isr::pipeline::{Pipeline, RunOptions};
use factorio_isr::sinks::logstash::{LogstashConfig, LogstashSink};
use factorio_isr::tail::tailer::{ServerSource, StartAt, TailOptions, default_globs};
use factorio_isr::tail::{TailSource, TailSourceOptions};

#[path = "support/mix.rs"]
mod support;

#[path = "../tests/support/otlp.rs"]
mod otlp;

/// Installs an OTLP trace pipeline to an in-process receiver when `FACTORIO_ISR_BENCH_TRACES`
/// holds a sample rate; returns what must live as long as the bench, and the setting's name.
fn traces() -> (
    Option<(tokio::runtime::Runtime, otlp::OtlpReceiver)>,
    String,
) {
    use factorio_isr::telemetry::traces::{Exporter, TraceConfig, Traces};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let setting = std::env::var("FACTORIO_ISR_BENCH_TRACES").unwrap_or_default();
    let Ok(rate) = setting.parse::<f64>() else {
        return (None, "traces_off".to_owned());
    };
    let receiver = otlp::OtlpReceiver::start();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let config = TraceConfig {
        enabled: true,
        exporter: Exporter::Otlp,
        sample_rate: rate,
        endpoint: receiver.endpoint(),
    };
    let (traces, tracer) = {
        let _guard = runtime.enter();
        Traces::start(&config, &ServiceInfo::default())
            .expect("traces start")
            .expect("traces are on")
    };
    // Spans are flushed as the process ends; the bench measures the pipeline meanwhile.
    std::mem::forget(traces);
    tracing_subscriber::registry()
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("factorio_isr", tracing::Level::INFO),
                ),
        )
        .init();
    (Some((runtime, receiver)), format!("traces_{setting}"))
}

const LINES: usize = 200_000;

fn bench_file_to_logstash(c: &mut Criterion) {
    let (_traces, setting) = traces();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("creating logs/");
    let data = support::mix(LINES);
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    std::fs::write(logs.join("factorio-current.log"), &data).expect("writing the log");
    let patterns = std::sync::Arc::new(ArcSwap::from_pointee(
        patterns::shipped().expect("shipped patterns load"),
    ));
    // Records, not lines: a crash record spans several lines and is one event.
    let records = factorio_isr::tail::frame::frame_all(&data, Default::default()).len();

    let mut group = c.benchmark_group("end_to_end");
    group.throughput(Throughput::Elements(lines));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function(format!("file_to_logstash_{setting}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let state = dir.path().join(format!("state-{i}-{}", fastrand::u64(..)));
                let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
                let address = listener.local_addr().expect("its address").to_string();
                let receiver = std::thread::spawn(move || {
                    let (mut conn, _) = listener.accept().expect("factorio-isr connects");
                    let mut buf = vec![0u8; 1 << 20];
                    let mut seen = 0usize;
                    while seen < records {
                        let n = conn.read(&mut buf).expect("reading");
                        assert!(n > 0, "the connection closed early");
                        seen += buf[..n].iter().filter(|&&b| b == b'\n').count();
                    }
                });
                let source = TailSource::build(
                    TailSourceOptions {
                        servers: vec![
                            ServerSource::new("bench", logs.clone(), &default_globs())
                                .expect("globs"),
                        ],
                        tail: TailOptions {
                            start_at: StartAt::Beginning,
                            ..TailOptions::default()
                        },
                        state_dir: state,
                        poll_only: true,
                        poll_interval_max: Duration::from_millis(50),
                        checkpoint_interval: Duration::from_secs(1),
                    },
                    &Default::default(),
                )
                .expect("the source builds");
                let sink =
                    LogstashSink::new(address, &LogstashConfig::default(), &ServiceInfo::default())
                        .expect("no TLS settings to fail");
                let (pipeline, control) = Pipeline::new(
                    source,
                    vec![Box::new(sink)],
                    patterns.clone(),
                    RunOptions::default(),
                );
                let start = Instant::now();
                let stop_when_received = std::thread::spawn(move || {
                    receiver.join().expect("the receiver");
                    let elapsed = start.elapsed();
                    control.stop();
                    elapsed
                });
                pipeline.run().expect("the pipeline runs");
                total += stop_when_received.join().expect("timing");
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench_file_to_logstash);
criterion_main!(benches);
