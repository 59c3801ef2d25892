//! Pattern files cannot make factorio-isr take unbounded memory. The regexes of a patterns
//! directory together may compile to at most 128 MiB; a file of many regexes, each under the
//! per-regex limit, stops the load at the first that does not fit, with an error naming its
//! file and line. `check` on such a directory stays small, and so does a running `run` whose
//! reload fails on it: the failed attempt keeps nothing, and a second one takes no more.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Env, SeqWriter};

/// How long a compile up to the budget may take in a debug build on a busy machine (about
/// 5 s when the machine is quiet).
const LOAD: Duration = Duration::from_secs(120);
/// Events reach stdout within this.
const ARRIVE: Duration = Duration::from_secs(30);

/// Address space `check` may use, in KiB: its peak is about 150 MiB resident here; without
/// the budget it took 1.2 GiB on the directory below.
const CHECK_ADDRESS_SPACE_KIB: u64 = 512 * 1024;
/// Resident memory a `run` may hold after failed reloads, in KiB (about 170 MiB here; without
/// the budget it kept 690 MiB).
const RUN_RSS_AFTER_KIB: u64 = 300 * 1024;
/// Peak resident memory of a `run` through failed reloads, in KiB (about 175 MiB here).
const RUN_PEAK_KIB: u64 = 350 * 1024;

/// A pattern file of `n` patterns whose regexes each compile to about 1.1 MiB (`\w` is every
/// letter of every language, and it is repeated), under the per-regex limit of 1 MiB per
/// automaton; the file itself is about 50 KB. Pattern `pN`'s regex is on line 4 + 4N, column 9.
/// `tag` makes the content differ.
fn big_patterns(n: usize, tag: &str) -> String {
    let mut text = String::from("# Many large regexes, each allowed on its own.\n");
    for i in 0..n {
        text.push_str(&format!(
            "[[pattern]]\nname = \"p{i}\"\nregex = '{tag}{i}\\w{{20}}y'\n\n"
        ));
    }
    text
}

/// The pattern number and line of the budget error in `output`.
fn budget_error(output: &str, file: &str) -> Option<(usize, usize)> {
    let line = output
        .lines()
        .find(|l| l.contains("with this regex the pattern files compile to more than 128 MiB"))?;
    let at = line.find(&format!("{file}:"))? + file.len() + 1;
    let mut parts = line[at..].splitn(3, ':');
    let line_no = parts.next()?.parse().ok()?;
    let rest = &line[line.find("pattern `p")? + "pattern `p".len()..];
    let n = rest[..rest.find('`')?].parse().ok()?;
    Some((n, line_no))
}

/// The budget error names pattern `pN` on its own line, and the load stopped early.
fn assert_names_its_line(output: &str, file: &str) {
    let (n, line) = budget_error(output, file)
        .unwrap_or_else(|| panic!("no budget error naming {file}:LINE:\n{output}"));
    assert_eq!(line, 4 + 4 * n, "the line is not pattern p{n}'s:\n{output}");
    // About 118 of these fit in 128 MiB; the others were never compiled.
    assert!((40..400).contains(&n), "stopped at p{n}:\n{output}");
    assert!(
        output.contains("later patterns were not checked"),
        "{output}"
    );
}

#[test]
fn check_stops_at_the_patterns_budget_naming_file_and_line_in_bounded_memory() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let patterns = tmp.path().join("patterns");
    fs::create_dir(&patterns).expect("creating patterns/");
    fs::write(patterns.join("big.toml"), big_patterns(1000, "x")).expect("writing big.toml");
    // After big.toml in name order: never reached, so its error is not reported.
    fs::write(
        patterns.join("zz.toml"),
        "[[pattern]]\nname = \"broken\"\nregex = '('\n",
    )
    .expect("writing zz.toml");
    // The kernel holds `check` to its address space (which bounds its resident memory too): a
    // load that kept compiling would fail to allocate and abort, not print the error.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {CHECK_ADDRESS_SPACE_KIB} && exec \"$0\" check --patterns \"$1\""
        ))
        .arg(env!("CARGO_BIN_EXE_factorio-isr"))
        .arg(&patterns)
        .stdin(Stdio::null())
        .env_remove("SERVICE_NAME")
        .env_remove("SERVICE_VERSION")
        .env_remove("SERVICE_ENVIRONMENT")
        .output()
        .expect("sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "check did not end with its problems ({}):\n{stderr}",
        out.status
    );
    assert_names_its_line(&stderr, "big.toml");
    assert!(
        stderr.contains("\n1 problem found; nothing was loaded"),
        "{stderr}"
    );
    assert!(!stderr.contains("zz.toml"), "{stderr}");
}

/// Writes `text` as `name` in `dir` at once (a dot-file renamed), so a reload sees it whole.
fn put_file(dir: &Path, name: &str, text: &str) {
    let staged = dir.join(format!(".{name}.tmp"));
    fs::write(&staged, text).expect("writing the staged pattern file");
    fs::rename(&staged, dir.join(name)).expect("renaming the pattern file into place");
}

#[test]
fn a_reload_past_the_patterns_budget_fails_keeps_the_old_set_and_its_memory_stays_bounded() {
    let env = Env::new();
    let patterns = env.shipped_patterns();
    let isr = env
        .isr()
        .start_at_beginning()
        .arg("--patterns")
        .arg(&patterns)
        .spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    let first = w.write_line();
    assert!(isr.wait_for_seqs("w", &[first], ARRIVE), "{}", isr.stderr());
    let (rss_start_kib, _) = isr.rss_kib();

    put_file(&patterns, "big.toml", &big_patterns(1000, "x"));
    assert!(
        isr.wait_for_stderr("Pattern reload failed", LOAD),
        "the reload did not fail within {LOAD:?}:\n{}",
        isr.stderr_tail()
    );
    assert_names_its_line(&isr.stderr(), "big.toml");
    // The shipped patterns still run: the chat line is still a `chat` event with its seq.
    let second = w.write_line();
    assert!(
        isr.wait_for_seqs("w", &[first, second], ARRIVE),
        "the old patterns stopped matching:\n{}",
        isr.stderr_tail()
    );
    let (rss_after_kib, peak_kib) = isr.rss_kib();
    assert!(
        rss_after_kib < RUN_RSS_AFTER_KIB,
        "{rss_after_kib} KiB resident after the failed reload (from {rss_start_kib} KiB)"
    );
    assert!(peak_kib < RUN_PEAK_KIB, "peak {peak_kib} KiB");

    // Another failed reload (new content) takes no more: nothing of the first was kept, and
    // what it freed is used again.
    put_file(&patterns, "big.toml", &big_patterns(1000, "z"));
    assert!(
        isr.wait_for_stderr_count("Pattern reload failed", 2, LOAD),
        "the second reload did not fail within {LOAD:?}:\n{}",
        isr.stderr_tail()
    );
    let (rss_again_kib, peak_again_kib) = isr.rss_kib();
    assert!(
        rss_again_kib < rss_after_kib + 16 * 1024,
        "{rss_again_kib} KiB resident after a second failed reload, {rss_after_kib} KiB after the first"
    );
    assert!(peak_again_kib < RUN_PEAK_KIB, "peak {peak_again_kib} KiB");
}
