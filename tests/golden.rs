//! Golden tests: replaying each fixture under `fixtures/` gives the reviewed events in
//! `fixtures/golden/<name>.jsonl`, byte for byte, and the event types listed independently in
//! `fixtures/expected/<name>.types`.
//!
//! To regenerate the golden files after a deliberate change: `UPDATE_GOLDEN=1 cargo test --test
//! golden`, then review the diff line by line before committing it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use factorio_isr::app::replay;
use factorio_isr::event::{BUILT_IN_EVENT_TYPES, EventEncoder, ServiceInfo, Timestamp};
use factorio_isr::patterns;
use factorio_isr::tail::ReplayOptions;
use factorio_isr::tail::frame::FramingLimits;

/// Fixed "read" time for records without a time of their own: 2000-01-01T00:00:00Z.
const READ_TIME: Timestamp = Timestamp(946_684_800_000);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root().join("fixtures"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    assert!(v.len() >= 10, "fixtures are missing");
    v
}

fn replay_fixture(path: &Path) -> Vec<(u64, String, String)> {
    let set = patterns::shipped().unwrap();
    let opts = ReplayOptions {
        server: Arc::from("golden"),
        limits: FramingLimits::default(),
        // The golden files are in UTC: the fixtures' dates are read as UTC whatever the
        // machine's zone.
        timezone: jiff::tz::TimeZone::UTC,
        read_time: Some(READ_TIME),
        progress: false,
    };
    let encoder = EventEncoder::new(&ServiceInfo {
        name: "factorio-isr".into(),
        version: "test".into(),
        environment: "test".into(),
    });
    let rel = path.strip_prefix(root()).unwrap().to_path_buf();
    // Replay through a relative path so `log.path` does not depend on the checkout location.
    let abs_rel = root().join(&rel);
    assert!(abs_rel.exists());
    let mut out = Vec::new();
    let cwd_rel = PathBuf::from(&rel);
    let old = std::env::current_dir().unwrap();
    assert_eq!(
        old,
        root(),
        "cargo runs integration tests from the package root"
    );
    let summary = replay(&[cwd_rel], Arc::new(set), &opts, |e| {
        let mut line = Vec::new();
        encoder.write_line(e, &mut line);
        out.push((
            e.offset,
            e.event_type.to_string(),
            String::from_utf8(line).unwrap(),
        ));
        Ok(())
    })
    .unwrap();
    assert!(summary.file_errors.is_empty(), "{:?}", summary.file_errors);
    out
}

#[test]
fn every_fixture_replays_to_its_golden_file() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let golden_dir = root().join("fixtures/golden");
    let mut failures = Vec::new();
    for fixture in fixtures() {
        let name = fixture.file_stem().unwrap().to_str().unwrap().to_owned();
        let got: String = replay_fixture(&fixture)
            .into_iter()
            .map(|(_, _, l)| l)
            .collect();
        let golden = golden_dir.join(format!("{name}.jsonl"));
        if update {
            std::fs::create_dir_all(&golden_dir).unwrap();
            std::fs::write(&golden, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
            panic!("{} is missing: run with UPDATE_GOLDEN=1", golden.display())
        });
        if got != want {
            let diff = got
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(got.lines().count().min(want.lines().count()));
            failures.push(format!(
                "{name}: event {} differs\n  got:  {}\n  want: {}",
                diff + 1,
                got.lines().nth(diff).unwrap_or("<none>"),
                want.lines().nth(diff).unwrap_or("<none>")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_gives_the_independently_expected_event_types() {
    let builtin: BTreeSet<&str> = BUILT_IN_EVENT_TYPES.iter().copied().collect();
    let mut failures = Vec::new();
    for fixture in fixtures() {
        let name = fixture.file_stem().unwrap().to_str().unwrap().to_owned();
        let expected_path = root().join(format!("fixtures/expected/{name}.types"));
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} is missing", expected_path.display()));
        let data = std::fs::read(&fixture).unwrap();
        // Byte offset → 1-based line number.
        let line_of = |offset: u64| {
            1 + data[..offset as usize]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
        };
        let got: Vec<(usize, String)> = replay_fixture(&fixture)
            .into_iter()
            .map(|(off, t, _)| (line_of(off), t))
            .collect();
        let want: Vec<(usize, String)> = expected
            .lines()
            .map(|l| {
                let (n, t) = l.split_once('\t').expect("`<line>\\t<type>`");
                (n.parse().unwrap(), t.to_owned())
            })
            .collect();
        let got_lines: Vec<usize> = got.iter().map(|g| g.0).collect();
        let want_lines: Vec<usize> = want.iter().map(|w| w.0).collect();
        if got_lines != want_lines {
            failures.push(format!(
                "{name}: records start on lines {got_lines:?}, expected {want_lines:?}"
            ));
            continue;
        }
        for ((line, got_t), (_, want_t)) in got.iter().zip(&want) {
            let ok = match want_t.as_str() {
                "-" => !builtin.contains(got_t.as_str()),
                t => got_t == t,
            };
            if !ok {
                failures.push(format!("{name}:{line}: got `{got_t}`, expected `{want_t}`"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
