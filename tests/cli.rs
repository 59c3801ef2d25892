//! End-to-end tests of the `factorio-isr` binary: `replay` and `check` run as a user runs them,
//! judged by exit code, stdout (JSON events) and stderr (problems and warnings).

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

#[path = "support/schema.rs"]
mod schema;

use schema::EVENT_KEYS;

// --- helpers ----------------------------------------------------------------------------------

/// One mebibyte: the default `framing.max_line_bytes`.
const MIB: usize = 1024 * 1024;

/// The crate root: fixture paths are relative to it.
fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The binary, run from the crate root, with no `SERVICE_*` variables leaking in from the
/// environment the tests run in.
fn cli() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_factorio-isr"));
    cmd.current_dir(manifest_dir())
        .stdin(Stdio::null())
        .env_remove("SERVICE_NAME")
        .env_remove("SERVICE_VERSION")
        .env_remove("SERVICE_ENVIRONMENT");
    cmd
}

/// What one run of the binary did.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// `run` stopped before serving anything, and its output shows no secret (the tests put
/// `SECRET` in every webhook URL).
fn assert_refused_before_start(r: &Run) {
    assert!(
        !r.stderr.contains("Serving"),
        "something started:\n{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("SECRET"),
        "a secret is shown:\n{}",
        r.stderr
    );
}

impl Run {
    /// The exit code; `None` when the process was killed by a signal.
    fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Every stdout line parsed as a JSON object; panics naming the line that is not one.
    fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .enumerate()
            .map(|(i, line)| {
                let v: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("stdout line {} is not JSON ({e}): {line}", i + 1));
                assert!(
                    v.is_object(),
                    "stdout line {} is not an object: {line}",
                    i + 1
                );
                v
            })
            .collect()
    }
}

/// Runs the command to completion and captures its output.
fn run(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("the factorio-isr binary runs");
    Run {
        status: out.status,
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Asserts that the run failed with exit code 1 and named `path` on stderr; `what` is what
/// the failure message calls the path.
#[track_caller]
fn assert_fails_naming(r: &Run, path: &Path, what: &str) {
    assert_eq!(r.code(), Some(1), "stdout:\n{}", r.stdout);
    assert!(
        r.stderr.contains(&path.display().to_string()),
        "{what} not named:\n{}",
        r.stderr
    );
}

/// Writes `bytes` to `name` inside `dir` and returns the file's path.
fn write_file(dir: &TempDir, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

fn temp_dir() -> TempDir {
    tempfile::tempdir().expect("a temporary directory can be created")
}

/// Replays one log file holding `bytes` with the shipped patterns.
fn replay_bytes(bytes: impl AsRef<[u8]>) -> Run {
    let dir = temp_dir();
    let log = write_file(&dir, "server.log", bytes);
    run(cli().arg("replay").arg(&log))
}

/// Replays `bytes`, asserts success, and returns the events.
fn replay_ok(bytes: impl AsRef<[u8]>) -> Vec<Value> {
    let r = replay_bytes(bytes);
    assert_eq!(r.code(), Some(0), "replay failed; stderr:\n{}", r.stderr);
    r.events()
}

/// A text field of an event (`fields.player`, …), for readable assertions.
fn field<'a>(event: &'a Value, name: &str) -> &'a str {
    event["fields"][name]
        .as_str()
        .unwrap_or_else(|| panic!("event has no text field `{name}`: {event}"))
}

fn text<'a>(event: &'a Value, key: &str) -> &'a str {
    event[key]
        .as_str()
        .unwrap_or_else(|| panic!("event has no string `{key}`: {event}"))
}

/// A directory holding copies of the shipped pattern files.
fn copy_of_shipped_patterns() -> TempDir {
    let dir = temp_dir();
    let shipped = manifest_dir().join("patterns");
    let entries = fs::read_dir(&shipped).expect("the shipped patterns directory is readable");
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path.file_name().expect("a file name");
            fs::copy(&path, dir.path().join(name))
                .unwrap_or_else(|e| panic!("copying {}: {e}", path.display()));
        }
    }
    dir
}

// --- replay: output format --------------------------------------------------------------------

#[test]
fn replay_of_console_fixture_prints_one_complete_json_event_per_line() {
    let fixture = "fixtures/console.log";
    let r = run(cli().args(["replay", fixture]));
    assert_eq!(r.code(), Some(0), "stderr:\n{}", r.stderr);

    let events = r.events();
    let lines = fs::read_to_string(manifest_dir().join(fixture))
        .expect("the console fixture is readable")
        .lines()
        .count();
    assert_eq!(events.len(), lines, "one event per console line");
    for e in &events {
        for key in EVENT_KEYS {
            assert!(e.get(key).is_some(), "event lacks `{key}`: {e}");
        }
        assert_eq!(e["server"], "default", "{e}");
        assert_eq!(e["log"]["path"], fixture, "{e}");
    }
    assert_eq!(events[0]["event_type"], "player_join");
    assert_eq!(field(&events[0], "player"), "User");
}

#[test]
fn replay_with_server_flag_tags_every_event() {
    let r = run(cli().args(["replay", "fixtures/console.log", "--server", "primary"]));
    assert_eq!(r.code(), Some(0), "stderr:\n{}", r.stderr);
    let events = r.events();
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(e["server"], "primary", "{e}");
    }
}

// --- check ------------------------------------------------------------------------------------

#[test]
fn check_without_arguments_summarises_the_built_in_patterns() {
    let r = run(cli().arg("check"));
    assert_eq!(r.code(), Some(0), "stderr:\n{}", r.stderr);
    for expected in ["console.toml", "engine.toml", "mods.toml", "player_join"] {
        assert!(
            r.stdout.contains(expected),
            "summary does not mention {expected}:\n{}",
            r.stdout
        );
    }
    assert!(r.stderr.is_empty(), "stderr:\n{}", r.stderr);
}

#[test]
fn check_reports_every_pattern_problem_with_file_line_and_pattern() {
    let dir = copy_of_shipped_patterns();
    // The regex is on line 5 (column 9); its group is never closed.
    write_file(
        &dir,
        "broken.toml",
        "# A pattern whose regex does not compile.\n\
         \n\
         [[pattern]]\n\
         name = \"broken_group\"\n\
         regex = '^[0-9]{4} \\[JOIN\\] (?P<player>.+ joined the game$'\n",
    );
    // A typo'd key on line 4 of another file.
    write_file(
        &dir,
        "typo.toml",
        "[[pattern]]\n\
         name = \"typo\"\n\
         regex = '^x$'\n\
         severtiy = \"warning\"\n",
    );

    let r = run(cli().arg("check").arg("--patterns").arg(dir.path()));
    assert_eq!(
        r.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );

    let broken = r
        .stderr
        .lines()
        .find(|l| l.contains("broken.toml:"))
        .unwrap_or_else(|| panic!("broken.toml is not named:\n{}", r.stderr));
    assert!(
        broken.contains("broken.toml:5:9: pattern `broken_group`: regex does not compile"),
        "{broken}"
    );
    assert!(
        r.stderr.contains("typo.toml:4:1: unknown field `severtiy`"),
        "the second file's problem is not reported in the same run:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("2 problems found"),
        "the shipped copies must be clean and both problems counted:\n{}",
        r.stderr
    );
    for out in [&r.stdout, &r.stderr] {
        assert!(!out.contains("is valid"), "claims success:\n{out}");
    }
}

#[test]
fn check_with_a_missing_patterns_directory_names_it() {
    let dir = temp_dir();
    let missing = dir.path().join("no-such-patterns");
    let r = run(cli().arg("check").arg("--patterns").arg(&missing));
    assert_fails_naming(&r, &missing, "directory");
    assert!(
        r.stderr.contains("cannot read the patterns directory"),
        "{}",
        r.stderr
    );
}

#[test]
fn check_with_an_empty_patterns_directory_says_there_are_no_pattern_files() {
    let dir = temp_dir();
    let r = run(cli().arg("check").arg("--patterns").arg(dir.path()));
    assert_eq!(r.code(), Some(1), "stdout:\n{}", r.stdout);
    assert!(r.stderr.contains("no pattern files"), "{}", r.stderr);
}

#[test]
fn check_reports_an_unknown_config_key_with_its_line() {
    let dir = temp_dir();
    let config = write_file(
        &dir,
        "factorio-isr.toml",
        "server_tag = \"primary\"\n[framing]\nmax_line_byte = 4096\n",
    );
    let r = run(cli().arg("check").arg("--config").arg(&config));
    assert_eq!(r.code(), Some(1), "stdout:\n{}", r.stdout);
    let located = format!("{}:3:", config.display());
    assert!(
        r.stderr.contains(&located),
        "expected `{located}` in:\n{}",
        r.stderr
    );
    assert!(r.stderr.contains("max_line_byte"), "{}", r.stderr);
}

#[test]
fn check_lists_every_webhook_mistake_with_its_line_and_exits_1() {
    let dir = temp_dir();
    let patterns = copy_of_shipped_patterns();
    write_file(
        &patterns,
        "extra.toml",
        "[[pattern]]\n\
         name = \"rocket\"\n\
         regex = '^rocket launched$'\n\
         [pattern.discord]\n\
         template = \"A rocket!\"\n\
         webhook = \"phantom\"\n",
    );
    let config = write_file(
        &dir,
        "isr.toml",
        "[[servers]]\n\
         tag = \"primary\"\n\
         log_dir = \".\"\n\
         discord_webhook = \"ghost\"\n\
         \n\
         [discord.webhooks.bad]\n\
         url = \"not a url SECRET\"\n\
         \n\
         [discord.webhooks.filed]\n\
         url_file = \"no-such-secret\"\n",
    );
    let r = run(cli()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .arg("--patterns")
        .arg(patterns.path())
        .env(
            "DISCORD_WEBHOOK_URL",
            "https://example.com/hook?token=SECRET",
        ));
    assert_eq!(
        r.code(),
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        r.stdout,
        r.stderr
    );
    let c = config.display();
    let extra = patterns.path().join("extra.toml");
    for expected in [
        format!("{c}:7: discord webhook `bad`: the URL is not a URL"),
        format!("{c}:10: discord webhook `filed`: cannot read "),
        "DISCORD_WEBHOOK_URL (or --discord-webhook), the URL of the discord webhook `default`, is not a webhook URL".to_owned(),
        format!("{c}:4: server `primary` posts to the discord webhook `ghost`, which is not configured"),
        format!("{}:2:8: pattern `extra/rocket` posts to the discord webhook `phantom`, which is not configured", extra.display()),
        "5 problems found".to_owned(),
    ] {
        assert!(r.stderr.contains(&expected), "expected `{expected}` in:\n{}", r.stderr);
    }
    assert_eq!(
        r.stderr.matches("(os error").count(),
        1,
        "the OS error once:\n{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("SECRET"),
        "a secret is shown:\n{}",
        r.stderr
    );
    assert!(r.stdout.is_empty(), "nothing claimed valid:\n{}", r.stdout);

    // `run` refuses the same config for the same reasons, before serving anything.
    let r = run(cli()
        .arg("run")
        .arg("--config")
        .arg(&config)
        .arg("--patterns")
        .arg(patterns.path())
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--metrics-addr")
        .arg("127.0.0.1:0")
        .env(
            "DISCORD_WEBHOOK_URL",
            "https://example.com/hook?token=SECRET",
        ));
    assert_eq!(r.code(), Some(1), "stderr:\n{}", r.stderr);
    assert!(r.stderr.starts_with("error: 5 problems:\n"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{c}:4: server `primary`")),
        "{}",
        r.stderr
    );
    assert_refused_before_start(&r);
}

#[test]
fn check_warns_about_a_missing_log_dir_and_prints_the_summary_after() {
    let dir = temp_dir();
    let missing = dir.path().join("not-yet");
    let file = write_file(&dir, "a-file", "");
    let config = write_file(
        &dir,
        "isr.toml",
        format!(
            "[[servers]]\ntag = \"a\"\nlog_dir = {:?}\n\n[[servers]]\ntag = \"b\"\nlog_dir = {:?}\n",
            missing.display().to_string(),
            file.display().to_string()
        ),
    );
    let r = run(cli()
        .arg("check")
        .arg("--config")
        .arg(&config)
        .env_remove("DISCORD_WEBHOOK_URL"));
    assert_eq!(r.code(), Some(0), "stderr:\n{}", r.stderr);
    let warnings: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(warnings.len(), 2, "{}", r.stderr);
    assert!(
        warnings[0].starts_with("warning: server `a`: log_dir ")
            && warnings[0].contains(&format!("{} does not exist", missing.display())),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains(&format!("{} is not a directory", file.display())),
        "{}",
        warnings[1]
    );
    assert!(
        r.stdout
            .starts_with(&format!("config: {} is valid\n", config.display())),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("console.toml"), "{}", r.stdout);
}

#[test]
fn a_value_of_the_wrong_type_is_explained_with_its_line() {
    let dir = temp_dir();
    let config = write_file(
        &dir,
        "isr.toml",
        "[logstash]\nconnect_timeout_ms = \"5s\"\n",
    );
    let r = run(cli().arg("check").arg("--config").arg(&config));
    assert_eq!(r.code(), Some(1), "stdout:\n{}", r.stdout);
    let expected = format!(
        "{}:2:22: `logstash.connect_timeout_ms` must be a whole number of milliseconds, e.g. 5000",
        config.display()
    );
    assert!(
        r.stderr.contains(&expected),
        "expected `{expected}` in:\n{}",
        r.stderr
    );
    assert!(!r.stderr.contains("expected u64"), "{}", r.stderr);
}

#[test]
fn an_os_error_is_said_once() {
    let dir = temp_dir();
    let file = write_file(&dir, "a-file", "");
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    // A state directory under a file: `Not a directory`, whoever runs the test.
    let r = run(cli()
        .arg("run")
        .arg("--state-dir")
        .arg(file.join("state"))
        .arg("--metrics-addr")
        .arg("127.0.0.1:0")
        .arg(&logs)
        .env_remove("DISCORD_WEBHOOK_URL"));
    assert_eq!(r.code(), Some(1), "stderr:\n{}", r.stderr);
    let error = r
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{}", r.stderr));
    assert!(error.contains("cannot use the state directory"), "{error}");
    assert_eq!(error.matches("(os error").count(), 1, "{error}");

    // An admin address another process holds.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = busy.local_addr().unwrap().to_string();
    let r = run(cli()
        .arg("run")
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--metrics-addr")
        .arg(&address)
        .arg(&logs)
        .env_remove("DISCORD_WEBHOOK_URL"));
    assert_eq!(r.code(), Some(1), "stderr:\n{}", r.stderr);
    let error = r
        .stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{}", r.stderr));
    assert!(error.contains(&address), "{error}");
    assert_eq!(error.matches("(os error").count(), 1, "{error}");
}

#[test]
fn a_discord_webhook_flag_that_is_not_a_webhook_url_stops_before_anything_starts() {
    let dir = temp_dir();
    for bad in ["not-a-url-SECRET", "https://discord.com/SECRET"] {
        let r = run(cli()
            .arg("run")
            .arg("--discord-webhook")
            .arg(bad)
            .arg("--metrics-addr")
            .arg("127.0.0.1:0")
            .arg(dir.path()));
        assert_eq!(r.code(), Some(2), "a usage error; stderr:\n{}", r.stderr);
        assert!(
            r.stderr.starts_with("error: --discord-webhook: the URL "),
            "{}",
            r.stderr
        );
        assert_refused_before_start(&r);
    }
}

// --- replay: awkward input --------------------------------------------------------------------

#[test]
fn replay_of_an_empty_file_prints_nothing() {
    let r = replay_bytes(b"");
    assert_eq!(r.code(), Some(0), "stderr:\n{}", r.stderr);
    assert!(r.stdout.is_empty(), "stdout:\n{}", r.stdout);
}

#[test]
fn replay_replaces_invalid_utf8_and_still_classifies_the_line() {
    let events = replay_ok(b"2025-10-08 08:58:34 [CHAT] bob: caf\xe9\n");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event_type"], "chat");
    assert!(
        text(&events[0], "raw").contains('\u{FFFD}'),
        "{}",
        events[0]
    );
    assert_eq!(field(&events[0], "message"), "caf\u{FFFD}");
}

#[test]
fn replay_cuts_an_over_long_line_and_keeps_the_lines_around_it() {
    let first = "2025-10-08 08:58:34 [JOIN] bob joined the game";
    let long_head = "2025-10-08 08:58:35 [CHAT] bob: ";
    let last = "2025-10-08 08:58:36 [LEAVE] bob left the game";
    let long_line = format!("{long_head}{}", "x".repeat(MIB + 10 - long_head.len()));
    assert_eq!(long_line.len(), MIB + 10);

    let r = replay_bytes(format!("{first}\n{long_line}\n{last}\n"));
    assert_eq!(r.code(), Some(0), "stderr:\n{}", r.stderr);
    let events = r.events();
    assert_eq!(events.len(), 3);

    assert_eq!(events[0]["raw"], first);
    let cut = text(&events[1], "raw");
    assert!(cut.len() <= MIB, "cut line is {} bytes", cut.len());
    assert!(cut.starts_with(long_head), "cut line lost its start");
    assert_eq!(events[2]["event_type"], "player_leave");
    assert_eq!(events[2]["raw"], last);
    assert_eq!(field(&events[2], "player"), "bob");

    assert!(
        r.stderr.contains("warning") && r.stderr.contains("cut"),
        "no warning about the cut line:\n{}",
        r.stderr
    );
}

#[test]
fn replay_skips_a_binary_file_by_name_and_replays_the_others() {
    let dir = temp_dir();
    let binary = write_file(&dir, "save.zip", b"PK\x03\x04\x00\x00\x14\x00binary");
    let good = write_file(
        &dir,
        "console.log",
        "2025-10-08 08:58:34 [JOIN] bob joined the game\n",
    );
    let r = run(cli().arg("replay").arg(&binary).arg(&good));
    assert_eq!(r.code(), Some(1), "stdout:\n{}", r.stdout);
    let named = r
        .stderr
        .lines()
        .find(|l| l.contains(&binary.display().to_string()))
        .unwrap_or_else(|| panic!("binary file not named:\n{}", r.stderr));
    assert!(named.contains("binary"), "{named}");

    let events = r.events();
    assert_eq!(events.len(), 1, "the good file's event is missing");
    assert_eq!(events[0]["event_type"], "player_join");
    assert_eq!(events[0]["log"]["path"], good.display().to_string());
}

#[test]
fn replay_of_a_missing_file_names_it() {
    let dir = temp_dir();
    let missing = dir.path().join("gone.log");
    let r = run(cli().arg("replay").arg(&missing));
    assert_fails_naming(&r, &missing, "missing file");
    assert!(r.stdout.is_empty(), "stdout:\n{}", r.stdout);
}

#[test]
fn replay_with_a_missing_patterns_directory_names_it_and_prints_nothing() {
    let dir = temp_dir();
    let log = write_file(
        &dir,
        "console.log",
        "2025-10-08 08:58:34 [JOIN] bob joined the game\n",
    );
    let missing = dir.path().join("no-such-patterns");
    let r = run(cli()
        .arg("replay")
        .arg(&log)
        .arg("--patterns")
        .arg(&missing));
    assert_fails_naming(&r, &missing, "directory");
    assert!(
        r.stdout.is_empty(),
        "events printed without patterns:\n{}",
        r.stdout
    );
}

#[test]
fn replay_keeps_a_last_line_without_newline() {
    let last = "2025-10-08 08:58:36 [LEAVE] bob left the game";
    let events = replay_ok(format!(
        "2025-10-08 08:58:34 [JOIN] bob joined the game\n{last}"
    ));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["event_type"], "player_leave");
    assert_eq!(events[1]["raw"], last);
}

#[test]
fn replay_strips_crlf_and_a_leading_bom() {
    let events = replay_ok(
        b"\xEF\xBB\xBF2025-10-08 08:58:34 [JOIN] bob joined the game\r\n\
          2025-10-08 08:58:35 [CHAT] bob: hi\r\n",
    );
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        let raw = text(e, "raw");
        assert!(!raw.contains('\r'), "raw keeps \\r: {raw:?}");
        assert!(!raw.contains('\u{FEFF}'), "raw keeps the BOM: {raw:?}");
    }
    assert_eq!(events[0]["event_type"], "player_join");
    assert_eq!(
        events[0]["raw"],
        "2025-10-08 08:58:34 [JOIN] bob joined the game"
    );
    assert_eq!(field(&events[0], "player"), "bob");
    assert_eq!(events[1]["event_type"], "chat");
    assert_eq!(field(&events[1], "message"), "hi");
}

#[test]
fn replay_exits_quietly_when_stdout_is_closed() {
    let dir = temp_dir();
    let mut data = Vec::new();
    for i in 0..200_000 {
        writeln!(data, "2025-10-08 08:58:34 [CHAT] p{i}: message {i}").expect("writing to a Vec");
    }
    let log = write_file(&dir, "big.log", data);

    let mut child = cli()
        .arg("replay")
        .arg(&log)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the factorio-isr binary starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut first = String::new();
    stdout
        .read_line(&mut first)
        .expect("the first event can be read");
    drop(stdout);

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("the child can be waited on") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("replay did not exit after its stdout was closed");
        }
        sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr)
            .expect("stderr can be read");
    }
    assert_eq!(status.code(), Some(0), "status {status}; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");

    let event: Value = serde_json::from_str(&first).expect("the first line is JSON");
    assert_eq!(field(&event, "player"), "p0");
}

// --- replay: classification -------------------------------------------------------------------

/// The crash record of `fixtures/crash-aai-programmable-vehicles.log`, and the engine line
/// after it.
const AAI_CRASH: &str = "\
69945.475 Error MainLoop.cpp:1284: Exception at tick 37148045: The mod AAI Programmable Vehicles (0.7.22) caused a non-recoverable error.
Please report this error to the mod author.

Error while running event aai-programmable-vehicles::load-unit-group-2 (ID 220)
__aai-programmable-vehicles__/control.lua:3560: attempt to index field 'cursor_stack' (a nil value)
stack traceback:
        __aai-programmable-vehicles__/control.lua:3560: in function 'on_load_unit_group'
        __aai-programmable-vehicles__/control.lua:3570: in function 'callback'
        __aai-programmable-vehicles__/scripts/event.lua:14: in function <__aai-programmable-vehicles__/scripts/event.lua:12>
69945.475 Error ServerMultiplayerManager.cpp:92: MultiplayerManager failed: \"The mod AAI Programmable Vehicles (0.7.22) caused a non-recoverable error.
";

#[test]
fn a_multi_line_lua_error_is_one_mod_error_event() {
    let events = replay_ok(AAI_CRASH);
    let mod_errors: Vec<_> = events
        .iter()
        .filter(|e| e["event_type"] == "mod_error")
        .collect();
    assert_eq!(mod_errors.len(), 1, "{events:#?}");
    let e = mod_errors[0];
    let raw = text(e, "raw");
    assert!(raw.contains("stack traceback:"), "{raw}");
    assert!(
        raw.ends_with("in function <__aai-programmable-vehicles__/scripts/event.lua:12>"),
        "the record does not end at the last traceback frame: {raw}"
    );
    assert_eq!(field(e, "mod"), "AAI Programmable Vehicles");
    // Nothing else was split off the record as an event of its own.
    assert_eq!(events.len(), 2, "{events:#?}");
}

#[test]
fn chat_imitating_engine_lines_stays_chat() {
    let messages = [
        "304588.295 Info ServerMultiplayerManager.cpp:699: mapTick(1) changing state from(InGame) to(Failed)",
        "   0.000 2024-06-18 09:32:54; Factorio 1.1.109 (build 62320, linux64, headless)",
        "69945.475 Error ServerMultiplayerManager.cpp:92: MultiplayerManager failed: \"boom\"",
    ];
    let log: String = messages
        .iter()
        .map(|m| format!("2024-04-09 06:09:46 [CHAT] bob: {m}\n"))
        .collect();
    let events = replay_ok(log);
    assert_eq!(events.len(), messages.len(), "{events:#?}");
    for (e, m) in events.iter().zip(messages) {
        assert_eq!(e["event_type"], "chat", "{e}");
        assert_eq!(field(e, "player"), "bob");
        assert_eq!(field(e, "message"), m);
    }
}

#[test]
fn chat_with_an_open_multiplayer_failure_quote_does_not_swallow_the_next_line() {
    let chat = "2024-04-09 06:09:46 [CHAT] bob: 69945.475 Error X.cpp:92: MultiplayerManager failed: \"boom";
    // A bare line (a mod's untagged print on stdout) right after the chat line.
    let events = replay_ok(format!("{chat}\nsome mod output\n"));
    assert_eq!(events[0]["event_type"], "chat", "{}", events[0]);
    assert_eq!(events[0]["raw"], chat);
    assert_eq!(events.len(), 2, "{events:#?}");
}

#[test]
fn unusual_player_names_are_captured_whole() {
    let names = ["Ülrich_[RU]-x.y", "玩家一号", "-Squigly-", "a.b_c"];
    for name in names {
        let events = replay_ok(format!(
            "2025-10-08 08:58:34 [JOIN] {name} joined the game\n\
             2025-10-08 08:58:35 [CHAT] {name}: hello: world\n\
             2025-10-08 08:58:36 [LEAVE] {name} left the game\n"
        ));
        let types: Vec<_> = events.iter().map(|e| text(e, "event_type")).collect();
        assert_eq!(types, ["player_join", "chat", "player_leave"], "{name}");
        for e in &events {
            assert_eq!(field(e, "player"), name, "{e}");
        }
        assert_eq!(field(&events[1], "message"), "hello: world");
    }
}

// --- issue 11, item 8: fresh-machine setup ---------------------------------------------------

/// `replay -` reads standard input as a stream, to its end; its events' `log.path` is `-`.
#[test]
fn replay_dash_reads_standard_input() {
    let mut child = cli()
        .args(["replay", "-", "fixtures/console.log"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the factorio-isr binary runs");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Written in two pieces, the second after a pause: a stream, not a file read at once.
    stdin
        .write_all(b"2025-10-08 08:58:34 [JOIN] from-stdin joined the game\n2025-10-08 08:58:35 [CHAT] from-stdin: hel")
        .unwrap();
    stdin.flush().unwrap();
    sleep(Duration::from_millis(50));
    stdin.write_all(b"lo\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let r = Run {
        status: out.status,
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(r.code(), Some(0), "stderr:\n{}", r.stderr);
    let events = r.events();
    assert_eq!(text(&events[0], "event_type"), "player_join");
    assert_eq!(field(&events[0], "player"), "from-stdin");
    assert_eq!(text(&events[1], "event_type"), "chat");
    assert_eq!(field(&events[1], "message"), "hello");
    assert_eq!(events[0]["log"]["path"], "-");
    // The file named after it is replayed too.
    assert!(events.len() > 2);
    assert_eq!(events[2]["log"]["path"], "fixtures/console.log");
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef factorio-isr"),
        ("fish", "complete -c factorio-isr"),
    ] {
        let r = run(cli().args(["completions", shell]));
        assert_eq!(r.code(), Some(0), "{shell}: {}", r.stderr);
        assert!(r.stdout.contains(marker), "{shell}:\n{}", r.stdout);
        for word in ["replay", "check", "from-beginning"] {
            assert!(r.stdout.contains(word), "{shell} completion lacks {word}");
        }
    }
    let r = run(cli().args(["completions", "tcsh"]));
    assert_eq!(r.code(), Some(2));
    assert!(r.stderr.contains("bash"), "{}", r.stderr);
}

#[test]
fn the_man_page_documents_every_command_and_flag() {
    let r = run(cli().arg("man"));
    assert_eq!(r.code(), Some(0), "{}", r.stderr);
    assert!(r.stdout.contains(".TH factorio-isr 1"), "{}", r.stdout);
    for section in [
        "FACTORIO-ISR RUN",
        "FACTORIO-ISR REPLAY",
        "FACTORIO-ISR CHECK",
    ] {
        assert!(r.stdout.contains(section), "no {section}:\n{}", r.stdout);
    }
    for flag in [
        r"\-\-from\-beginning",
        r"\-\-discord\-webhook",
        r"\-\-patterns",
    ] {
        assert!(r.stdout.contains(flag), "no {flag}:\n{}", r.stdout);
    }
}

/// Issue 11, item 6: lines captured through a server wrapper (`docker logs -t`, `docker compose
/// logs`, Factorio Server Manager) are matched like Factorio's own, keep their whole line in
/// `raw`, and take the wrapper's time.
#[test]
fn lines_wrapped_by_docker_and_server_managers_are_recognised() {
    let lines = [
        "2024-06-18T09:32:54.123456789Z    0.000 2024-06-18 09:32:54; Factorio 1.1.109 (build 62320, linux64, headless)",
        "factorio-1  | 2024-06-18T09:33:00.000000000Z 2024-06-18 09:33:00 [JOIN] bob joined the game",
        "factorio_1  | 2024-06-18 09:33:05 [CHAT] bob: hi [item=iron-plate]",
        "2024-06-18 11:33:10.500000+02:002024/06/18 09:33:10 Factorio Server:   16.011 Received SIGINT, shutting down",
        "factorio-1  | 16.528 Goodbye",
    ];
    let events = replay_ok(lines.join("\n") + "\n");
    let types: Vec<&str> = events.iter().map(|e| text(e, "event_type")).collect();
    assert_eq!(
        types,
        [
            "server_started",
            "player_join",
            "chat",
            "server_stopping",
            "server_stopped"
        ]
    );
    for (event, line) in events.iter().zip(lines) {
        assert_eq!(text(event, "raw"), line);
    }
    assert_eq!(text(&events[0], "@timestamp"), "2024-06-18T09:32:54.123Z");
    assert_eq!(text(&events[1], "@timestamp"), "2024-06-18T09:33:00Z");
    assert_eq!(text(&events[3], "@timestamp"), "2024-06-18T09:33:10.500Z");
    assert_eq!(field(&events[2], "message"), "hi [item=iron-plate]");
}
