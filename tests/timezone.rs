//! Time zones, through the real binary: Factorio writes its dates in the local time of the
//! machine it runs on, so `@timestamp` is that wall-clock time read in the `timezone` setting
//! (default `local`: `TZ`, else the system's), with daylight saving per date.

mod support;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::Env;

const ARRIVE: Duration = Duration::from_secs(15);

/// A console line of January and one of July (New York: EST, then EDT), and a run whose header
/// is read in the zone and whose engine seconds count from it.
const LOG: &str = "2026-01-15 10:00:00 [JOIN] winter joined the game\n\
2026-07-15 10:00:00 [JOIN] summer joined the game\n\
   0.000 2026-01-15 10:00:00; Factorio 2.0.60 (build 83512, linux64, headless)\n\
  90.250 Info ServerMultiplayerManager.cpp:1: networkTick(0) mapTick(0) changing state from(CreatingGame) to(InGame)\n";

/// `factorio-isr replay FILE ARGS…` with `TZ` set to `tz` (or unset).
fn replay(file: &Path, tz: Option<&str>, args: &[&str]) -> (i32, Vec<Value>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_factorio-isr"));
    cmd.arg("replay").arg(file).args(args).stdin(Stdio::null());
    match tz {
        Some(tz) => cmd.env("TZ", tz),
        None => cmd.env_remove("TZ"),
    };
    let out = cmd.output().expect("the factorio-isr binary runs");
    let events = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .collect();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code().unwrap_or(-1), events, stderr)
}

fn timestamps(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["@timestamp"].as_str().expect("@timestamp"))
        .collect()
}

fn log_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("server.log");
    fs::write(&path, LOG).unwrap();
    path
}

#[test]
fn default_local_zone_is_the_tz_of_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_file(&dir);
    let (code, events, stderr) = replay(&log, Some("Asia/Tokyo"), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        timestamps(&events),
        [
            "2026-01-15T01:00:00Z",
            "2026-07-15T01:00:00Z",
            "2026-01-15T01:00:00Z",
            "2026-01-15T01:01:30.250Z"
        ]
    );
}

#[test]
fn new_york_applies_daylight_saving_per_date_and_times_engine_lines_from_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_file(&dir);
    // The flag wins over the process's zone.
    let (code, events, stderr) = replay(
        &log,
        Some("Asia/Tokyo"),
        &["--timezone", "America/New_York"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        timestamps(&events),
        [
            "2026-01-15T15:00:00Z",
            "2026-07-15T14:00:00Z",
            "2026-01-15T15:00:00Z",
            "2026-01-15T15:01:30.250Z"
        ]
    );
    assert_eq!(events[3]["event_type"], "server_ready");
}

#[test]
fn a_fixed_offset_from_the_flag_or_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_file(&dir);
    let (code, events, stderr) = replay(&log, None, &["--timezone", "+02:00"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        timestamps(&events)[..2],
        ["2026-01-15T08:00:00Z", "2026-07-15T08:00:00Z"]
    );

    let config = dir.path().join("isr.toml");
    fs::write(&config, "timezone = \"-03:30\"\n").unwrap();
    let config = config.to_str().unwrap();
    let (code, events, stderr) = replay(&log, Some("Asia/Tokyo"), &["--config", config]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(timestamps(&events)[0], "2026-01-15T13:30:00Z");
    // The flag overrides the config.
    let (_, events, _) = replay(&log, None, &["--config", config, "--timezone", "UTC"]);
    assert_eq!(timestamps(&events)[0], "2026-01-15T10:00:00Z");
}

#[test]
fn zones_that_do_not_exist_are_refused_by_check_and_by_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("isr.toml");
    fs::write(
        &config,
        "server_tag = \"a\"\n\n[[servers]]\ntag = \"b\"\nlog_dir = \"/srv/b\"\ntimezone = \"Mars/Olympus\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("isr.toml:6:"), "{stderr}");
    assert!(
        stderr.contains("timezone `Mars/Olympus` is not a time zone"),
        "{stderr}"
    );

    let log = log_file(&dir);
    let (code, events, stderr) = replay(&log, None, &["--timezone", "Mars/Olympus"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(events.is_empty());
    assert!(stderr.contains("--timezone"), "{stderr}");
    assert!(stderr.contains("Mars/Olympus"), "{stderr}");
}

#[test]
fn run_reads_each_server_in_its_own_zone() {
    let env = Env::new();
    fs::write(env.log("console.log"), LOG).unwrap();
    let other = env.root().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("console.log"), LOG).unwrap();
    let config = format!(
        "{}\n[[servers]]\ntag = \"tokyo\"\nlog_dir = {:?}\n\n[[servers]]\ntag = \"newyork\"\nlog_dir = {:?}\ntimezone = \"America/New_York\"\n",
        fs::read_to_string(&env.config).unwrap(),
        env.logs,
        other,
    );
    fs::write(&env.config, config).unwrap();
    // No LOG_DIR: the config's [[servers]]. The first has no zone of its own: `local`.
    let mut child = Command::new(env!("CARGO_BIN_EXE_factorio-isr"))
        .arg("run")
        .arg("--state-dir")
        .arg(&env.state)
        .arg("--config")
        .arg(&env.config)
        .arg("--from-beginning")
        .env("TZ", "Asia/Tokyo")
        .env("METRICS_PORT", "0")
        .env_remove("LOGSTASH_ADDR")
        .env_remove("DISCORD_WEBHOOK_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the factorio-isr binary starts");
    let stdout = child.stdout.take().unwrap();
    let events = Arc::new(Mutex::new(Vec::<Value>::new()));
    let reader = {
        let events = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                events
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(&line).expect("a JSON event"));
            }
        })
    };
    let done = support::wait_until(|| events.lock().unwrap().len() >= 8, ARRIVE);
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    let events = events.lock().unwrap().clone();
    assert!(done, "events: {events:?}");
    let by = |tag: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["server"] == tag)
            .map(|e| e["@timestamp"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        by("tokyo"),
        [
            "2026-01-15T01:00:00Z",
            "2026-07-15T01:00:00Z",
            "2026-01-15T01:00:00Z",
            "2026-01-15T01:01:30.250Z"
        ]
    );
    assert_eq!(
        by("newyork"),
        [
            "2026-01-15T15:00:00Z",
            "2026-07-15T14:00:00Z",
            "2026-01-15T15:00:00Z",
            "2026-01-15T15:01:30.250Z"
        ]
    );
}
