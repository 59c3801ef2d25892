//! The measurement tools of the benchmarks: the many-patterns directory that `genlog
//! --patterns-dir` writes (`benches/support/many_patterns.rs`), and the `patterns` and
//! `latency` scenarios of `benches/peers/compare.py`, run briefly against the debug binary.

use std::process::Command;

use factorio_isr::patterns;

#[path = "../benches/support/many_patterns.rs"]
mod many_patterns;

#[allow(dead_code)]
#[path = "../benches/support/mix.rs"]
mod mix;

#[allow(dead_code)]
#[path = "support/prom_tools.rs"]
mod prom_tools;

const COMPARE_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/compare.py");

/// Runs compare.py with `args` against the debug binary, scratch files in `work`; returns its
/// standard output (the tables). Fails the test on a non-zero exit, with its stderr.
fn compare_py(work: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(COMPARE_PY)
        .args(args)
        .args(["--isr", env!("CARGO_BIN_EXE_factorio-isr")])
        .arg("--work")
        .arg(work)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "compare.py {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The cells of the table row whose first cell is `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no row `{first}` in:\n{table}"))
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect()
}

#[test]
fn generated_patterns_directory_loads_and_each_pattern_matches_its_own_lines() {
    let dir = tempfile::tempdir().unwrap();
    let n = 301;
    many_patterns::write_patterns_dir(dir.path(), n).unwrap();
    let shipped = patterns::shipped().unwrap();
    let set = patterns::load_dir(dir.path()).unwrap();
    assert_eq!(set.patterns().len(), shipped.patterns().len() + n);
    for file in patterns::SHIPPED_FILES.iter().map(|(f, _)| *f) {
        let text = std::fs::read_to_string(dir.path().join(file)).unwrap();
        let built_in = patterns::SHIPPED_FILES
            .iter()
            .find(|(f, _)| *f == file)
            .unwrap();
        assert_eq!(text, built_in.1, "{file} is the shipped file");
    }
    assert_eq!(
        set.event_types()
            .keys()
            .filter(|t| t.starts_with("custom_"))
            .count(),
        many_patterns::CUSTOM_EVENT_TYPES
    );
    for i in 0..n {
        let line = many_patterns::sample_line(i);
        let m = set
            .match_text(&line)
            .unwrap_or_else(|| panic!("nothing matches {line:?}"));
        assert_eq!(&*m.pattern.name, format!("custom_{i}"), "{line:?}");
        assert_eq!(
            &*m.pattern.event_type,
            format!("custom_{}", i % many_patterns::CUSTOM_EVENT_TYPES)
        );
        assert!(!m.fields.is_empty(), "{line:?} has its captures");
    }
    // The shipped lines still go to the shipped patterns.
    let join = "2025-10-08 08:58:34 [JOIN] bsalis joined the game";
    assert_eq!(&*set.match_text(join).unwrap().pattern.name, "player_join");
    // Same N, same bytes.
    assert_eq!(
        many_patterns::custom_patterns_toml(n),
        std::fs::read_to_string(dir.path().join(many_patterns::CUSTOM_FILE)).unwrap()
    );
}

/// The winner search over the shipped patterns plus hundreds of user patterns reports, for
/// every line of the benchmark mix and every user pattern's own line, the first pattern in
/// priority order that matches anywhere: what a `regex::RegexSet` of the same regexes says.
#[test]
fn the_winner_over_many_patterns_is_the_first_a_regex_set_finds() {
    let dir = tempfile::tempdir().unwrap();
    let n = 600;
    many_patterns::write_patterns_dir(dir.path(), n).unwrap();
    let set = patterns::load_dir(dir.path()).unwrap();
    let mut active: Vec<_> = set.patterns().iter().filter(|p| p.enabled).collect();
    active.sort_by_key(|p| p.priority);
    let reference = regex::RegexSet::new(active.iter().map(|p| p.regex.as_str())).unwrap();
    let mix = String::from_utf8(mix::mix(20_000)).unwrap();
    let samples: Vec<String> = (0..n).map(many_patterns::sample_line).collect();
    let mut matched = 0;
    for line in mix.lines().chain(samples.iter().map(String::as_str)) {
        let expected = reference
            .matches(line)
            .iter()
            .next()
            .map(|i| &*active[i].qualified_name);
        let got = set.match_text(line).map(|m| &*m.pattern.qualified_name);
        assert_eq!(got, expected, "{line:?}");
        matched += usize::from(got.is_some());
    }
    assert!(
        matched > n + 5_000,
        "only {matched} lines matched a pattern"
    );
}

#[test]
fn generating_into_a_directory_with_other_pattern_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mine.toml"), "").unwrap();
    let err = many_patterns::write_patterns_dir(dir.path(), 10).unwrap_err();
    assert!(err.to_string().contains("mine.toml"), "{err}");
    assert!(!dir.path().join(many_patterns::CUSTOM_FILE).exists());
    // Writing twice into the same directory is fine: the files are its own.
    let again = tempfile::tempdir().unwrap();
    many_patterns::write_patterns_dir(again.path(), 10).unwrap();
    many_patterns::write_patterns_dir(again.path(), 20).unwrap();
    assert_eq!(
        patterns::load_dir(again.path()).unwrap().patterns().len(),
        patterns::shipped().unwrap().patterns().len() + 20
    );
}

#[test]
fn compare_py_latency_scenario_delivers_every_live_line_and_measures_idle_cpu() {
    if prom_tools::tool("python3").is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let out = compare_py(
        work.path(),
        &[
            "--scenario",
            "latency",
            "--rate",
            "1000",
            "--seconds",
            "1",
            "--idle-seconds",
            "1",
        ],
    );
    let live = row(&out, "factorio-isr run -> socket");
    assert_eq!(live[1], "1000", "lines written:\n{out}");
    assert_eq!(live[2], "0", "lines lost:\n{out}");
    // p50, p99, p99.9 and max of the lines' latencies: each a real time a line took (a line
    // cannot arrive before it is written, nor take longer than the run), in rank order.
    let ms: Vec<f64> = live[3..7]
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            cell.strip_suffix(" ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("latency cell {i} `{cell}`:\n{out}"))
        })
        .collect();
    assert!(
        ms.iter()
            .all(|v| v.is_finite() && *v > 0.0 && *v < 60_000.0),
        "latencies {ms:?}:\n{out}"
    );
    assert!(
        ms.windows(2).all(|w| w[0] <= w[1]),
        "p50 <= p99 <= p99.9 <= max, not {ms:?}:\n{out}"
    );
    let idle = row(&out, "factorio-isr run");
    let share: f64 = idle[2]
        .strip_suffix(" %")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("idle CPU as a share of one core:\n{out}"));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    assert!(
        share.is_finite() && (0.0..=100.0 * cores).contains(&share),
        "idle CPU share {share} %:\n{out}"
    );
}

#[test]
fn compare_py_patterns_scenario_replays_with_both_pattern_sets() {
    if prom_tools::tool("python3").is_none() || prom_tools::tool("/usr/bin/time").is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let pdir = work.path().join("patterns");
    many_patterns::write_patterns_dir(&pdir, 30).unwrap();
    let out = compare_py(
        work.path(),
        &[
            "--scenario",
            "patterns",
            "--lines",
            "2000",
            "--runs",
            "1",
            "--patterns",
            "30",
            "--patterns-dir",
            pdir.to_str().unwrap(),
        ],
    );
    let shipped = row(&out, "factorio-isr replay (shipped patterns)");
    let many = row(&out, "factorio-isr replay --patterns (shipped + 30)");
    for r in [&shipped, &many] {
        assert!(r[1].ends_with(" s") && r[4].ends_with(" MiB"), "{out}");
    }
    assert!(
        out.contains("throughput") && out.contains("(target >= 50 %)"),
        "the ratio line:\n{out}"
    );
}
