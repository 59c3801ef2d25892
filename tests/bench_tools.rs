//! The measurement tools of the benchmarks: the many-patterns directory that `genlog
//! --patterns-dir` writes (`benches/support/many_patterns.rs`), and the `patterns` and
//! `latency` scenarios of `benches/peers/compare.py`, run briefly against the debug binary.

use factorio_isr::patterns;

#[path = "../benches/support/many_patterns.rs"]
mod many_patterns;

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
