//! File hazards, end to end: the real `factorio-isr run` follows real files in a temporary
//! directory while the test rotates, truncates, deletes and rewrites them, and every line the
//! test wrote must come out as exactly one event.
//!
//! Every test has its own temporary directory (logs, state, config), so the tests run in
//! parallel. Every wait is bounded: a wait for lines gives up once no event came for a while
//! (a loaded machine is slow, not stuck); the only plain sleeps are the pauses a hazard needs
//! (half a line, then a pause), a writer's pace, and a short settle before counting duplicates.
//! A hazard begins once factorio-isr has shown it follows the file (a line arrived), never
//! after a fixed delay: a loaded machine may take seconds to start it.
//!
//! Where files start: files that exist at the first scan are read from their end unless
//! `--from-beginning` is given. Each test says which it relies on.

mod support;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use serde_json::Value;

use support::{
    Env, Isr, IsrCmd, SeqWriter, assert_each_once, check_seqs, clock_ticks_per_sec, paced, seqs_in,
    wait_until,
};

/// How long a wait for lines goes on with no event coming. Lines normally take milliseconds;
/// on a loaded machine running the whole suite in parallel they take longer, but they come.
const ARRIVE: Duration = Duration::from_secs(10);

/// How long after SIGTERM the process must have exited.
const EXIT: Duration = Duration::from_secs(5);

/// One mebibyte: the default `framing.max_line_bytes`.
const MIB: usize = 1024 * 1024;

/// Waits until every number of `want` from writer `id` has arrived; panics with what is missing
/// and the end of stderr otherwise.
#[track_caller]
fn expect_arrive(isr: &Isr, id: &str, want: &[u64]) {
    if !isr.wait_for_seqs(id, want, ARRIVE) {
        let report = check_seqs(want, &[], &isr.seqs(id))
            .err()
            .unwrap_or_default();
        panic!(
            "writer {id}: not every line arrived (no event for {ARRIVE:?}): {report}\nstderr (end):\n{}",
            isr.stderr_tail()
        );
    }
}

/// Waits in run 2 for the numbers of `all` that run 1 did not deliver.
#[track_caller]
fn expect_rest_arrive(isr2: &Isr, id: &str, all: &[u64], run1: &[u64]) {
    let run1: HashSet<u64> = run1.iter().copied().collect();
    let rest: Vec<u64> = all.iter().copied().filter(|s| !run1.contains(s)).collect();
    expect_arrive(isr2, id, &rest);
}

/// Lets late duplicates show up before counting: longer than a discovery interval plus the
/// rotate wait of the fast config, so a file that would be read twice has been.
fn settle() {
    sleep(Duration::from_millis(700));
}

fn path_of(e: &Value) -> &str {
    e["log"]["path"].as_str().unwrap_or_default()
}

// --- rotation ---------------------------------------------------------------------------------

#[test]
fn rename_rotation_while_writing_delivers_every_line_once() {
    let env = Env::new();
    // The file is created after the start; --from-beginning in case the first scan sees it.
    let isr = env.isr().start_at_beginning().spawn();
    let current = env.log("factorio-current.log");
    let previous = env.log("factorio-previous.log");
    // The rotations begin once factorio-isr follows the file (its first line arrived): on a
    // loaded machine the process may take longer to start than the writer takes to rotate
    // twice, and a file replaced before factorio-isr first looked at it is beyond any tailer.
    let mut w = SeqWriter::create(&current, "w");
    w.write_line();
    expect_arrive(&isr, "w", w.written());
    let writer = thread::spawn(move || {
        let mut rotations = 0;
        // ~2000 lines/s for 2 s; a rotation every 0.35 s, each followed at once by a line to
        // the renamed file's handle (its last words) and then lines to the new file.
        paced(4000, 2000, |i| {
            w.write_line();
            if i > 0 && i % 700 == 0 {
                w.rotate_rename(&previous);
                w.write_line_old();
                rotations += 1;
            }
        });
        (w, rotations)
    });
    let (w, rotations) = writer.join().expect("the writer thread");
    assert_eq!(rotations, 5);
    expect_arrive(&isr, "w", w.written());
    settle();
    assert_each_once(
        "rename rotation under load",
        w.written(),
        &isr.seqs("w"),
        &isr.stderr(),
    );
    // A rotation is logged as a rename when a look at the directory comes between it and the
    // next one; two rotations between two looks (a starved process) show the middle file only
    // under its new name, read from its start all the same. So at most one per rotation.
    let renames = isr
        .stderr()
        .matches("Log file renamed; following it.")
        .count();
    assert!(
        renames <= rotations,
        "{rotations} rotations but {renames} renames logged:\n{}",
        isr.stderr_tail()
    );
}

#[test]
fn writes_to_the_old_handle_after_a_rename_arrive_under_the_new_name() {
    let env = Env::new();
    // Created after the start; --from-beginning in case the first scan sees it.
    let isr = env.isr().start_at_beginning().spawn();
    let mut w = SeqWriter::create(env.log("factorio-current.log"), "w");
    let before = w.write_lines(3).collect::<Vec<_>>();
    expect_arrive(&isr, "w", &before);

    w.rotate_rename(&env.log("factorio-previous.log"));
    // Once factorio-isr has seen the rename, what the old handle writes belongs to the file's
    // new name.
    assert!(
        isr.wait_for_stderr("Log file renamed; following it.", ARRIVE),
        "the rename was not noticed:\n{}",
        isr.stderr_tail()
    );
    let old: Vec<u64> = (0..3).map(|_| w.write_line_old()).collect();
    let new: Vec<u64> = w.write_lines(2).collect();
    expect_arrive(&isr, "w", w.written());
    settle();

    let events = isr.events();
    assert_each_once("old handle", w.written(), &isr.seqs("w"), &isr.stderr());
    for e in &events {
        let seq = seqs_in(std::slice::from_ref(e), "w");
        let Some(seq) = seq.first() else { continue };
        let path = path_of(e);
        if old.contains(seq) {
            assert!(
                path.ends_with("/factorio-previous.log"),
                "seq {seq} was written to the old handle after the rename: {e}"
            );
        }
        if new.contains(seq) {
            assert!(path.ends_with("/factorio-current.log"), "{e}");
        }
    }
    let first_new = events
        .iter()
        .find(|e| seqs_in(std::slice::from_ref(e), "w") == [new[0]])
        .expect("the first line of the new file");
    assert_eq!(
        first_new["log"]["offset"], 0,
        "the new file is read from its start"
    );
}

#[test]
fn a_file_renamed_to_a_name_the_globs_do_not_match_is_read_to_its_end_then_let_go() {
    let env = Env::new();
    // Created after the start; --from-beginning in case the first scan sees it.
    let isr = env.isr().start_at_beginning().spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(10);
    expect_arrive(&isr, "w", w.written());

    // logrotate's create mode: console.log becomes console.log.1, which `*.log` does not
    // match; the writer's next lines still go to the old handle for a moment.
    let rotated = env.log("console.log.1");
    w.rotate_rename(&rotated);
    let last_words: Vec<u64> = (0..5).map(|_| w.write_line_old()).collect();
    let new: Vec<u64> = w.write_lines(5).collect();
    expect_arrive(&isr, "w", w.written());

    let rotated = rotated.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_millis(2500);
    while isr.fd_targets().contains(&rotated) && Instant::now() < deadline {
        sleep(Duration::from_millis(50));
    }
    assert!(
        !isr.fd_targets().contains(&rotated),
        "console.log.1 is still open 2.5 s later:\n{}",
        isr.stderr_tail()
    );
    settle();
    assert_each_once("renamed away", w.written(), &isr.seqs("w"), &isr.stderr());
    let events = isr.events();
    for e in &events {
        let Some(&seq) = seqs_in(std::slice::from_ref(e), "w").first() else {
            panic!("an event that is not one of the lines written: {e}");
        };
        if new.contains(&seq) {
            assert!(path_of(e).ends_with("/console.log"), "{e}");
        }
        if last_words.contains(&seq) {
            assert!(
                !path_of(e).ends_with(".1"),
                "a path the globs do not match: {e}"
            );
        }
    }
}

// --- truncation -------------------------------------------------------------------------------

#[test]
fn copytruncate_under_load_loses_only_the_window_and_duplicates_nothing() {
    let env = Env::new();
    // Created after the start; --from-beginning in case the first scan sees it.
    let isr = env.isr().start_at_beginning().spawn();
    let current = env.log("factorio-current.log");
    let logs = env.logs.clone();
    let mut w = SeqWriter::create(&current, "w");
    // Lines not yet read when the truncation comes are in the copy only, lost to any tailer:
    // normally just the copy's window, but a loaded machine may not run factorio-isr for longer
    // than the writer takes to get to the copy (or to start it at all). So each copy begins
    // once what was written before it has arrived, and the window alone may be lost.
    let outside = |w: &SeqWriter| -> Vec<u64> {
        w.written()
            .iter()
            .copied()
            .filter(|s| !w.windows().iter().any(|r| r.contains(s)))
            .collect()
    };
    w.write_line();
    expect_arrive(&isr, "w", w.written());
    let mut n = 0;
    // ~2000 lines/s for 1.5 s; logrotate's copytruncate every 0.3 s. The copy takes 50 ms,
    // during which the writer goes on (100 lines, lost unless read before the truncation), as
    // a real copy of a big file does. The copies' names do not match the globs.
    paced(3000, 2000, |i| {
        w.write_line();
        if i > 0 && i % 600 == 0 {
            expect_arrive(&isr, "w", &outside(&w));
            n += 1;
            let copy = logs.join(format!("factorio-current.log.{n}"));
            w.copytruncate(&copy, 100, Duration::from_millis(50));
        }
    });
    let truncations = w.windows().len();
    assert_eq!(truncations, 4);
    let window: Vec<u64> = w.windows().iter().flat_map(|r| r.clone()).collect();
    let outside = outside(&w);
    expect_arrive(&isr, "w", &outside);
    settle();

    let got = isr.seqs("w");
    if let Err(report) = check_seqs(&outside, &window, &got) {
        panic!(
            "copytruncate (windows {:?}): {report}\nstderr:\n{}",
            w.windows(),
            isr.stderr()
        );
    }
    let stderr = isr.stderr();
    let logged = stderr
        .lines()
        .filter(|l| l.contains("truncated") && l.contains("reading it from the start"))
        .count();
    assert_eq!(
        logged, truncations,
        "each truncation is logged once:\n{stderr}"
    );
}

#[test]
fn truncation_while_stopped_delivers_the_new_lines_once() {
    let env = Env::new();
    // console.log gets new lines after the truncation (a new first line); engine.log starts
    // again with the same first line (a header), so only its now shorter size tells.
    let header = "   0.000 2025-10-07 08:22:06; Factorio 2.0.60 (build 83512, linux64, headless)\n";
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    let mut h = SeqWriter::create(env.log("engine.log"), "h");
    let first: Vec<u64> = w.write_lines(10).collect();
    h.write_raw(header.as_bytes());
    let h_first: Vec<u64> = h.write_lines(10).collect();
    // Run 1: the files exist before the start, so --from-beginning.
    let mut isr = env.isr().start_at_beginning().spawn();
    expect_arrive(&isr, "w", &first);
    expect_arrive(&isr, "h", &h_first);
    let status = isr.stop(EXIT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", isr.stderr());
    assert_each_once("run 1", &first, &isr.seqs("w"), &isr.stderr());

    w.truncate();
    let fresh: Vec<u64> = w.write_lines(5).collect();
    h.truncate();
    h.write_raw(header.as_bytes());
    let h_fresh: Vec<u64> = h.write_lines(5).collect();

    // Run 2 without --from-beginning: console.log's checkpoint no longer matches (its first
    // line changed), so the checkpoints do not know it; engine.log's checkpoint is past its
    // end. Both are read from their start.
    let isr2 = env.isr().spawn();
    expect_arrive(&isr2, "w", &fresh);
    expect_arrive(&isr2, "h", &h_fresh);
    settle();
    assert_each_once(
        "after a truncation while stopped",
        &fresh,
        &isr2.seqs("w"),
        &isr2.stderr(),
    );
    assert_each_once(
        "same first line, truncated while stopped",
        &h_fresh,
        &isr2.seqs("h"),
        &isr2.stderr(),
    );
}

#[test]
fn rename_rotation_while_stopped_resumes_the_old_file_and_reads_the_new_one() {
    let env = Env::new();
    // Created after the start of run 1; --from-beginning in case the first scan sees it.
    let mut isr = env.isr().start_at_beginning().spawn();
    let mut w = SeqWriter::create(env.log("factorio-current.log"), "w");
    w.write_lines(20);
    expect_arrive(&isr, "w", w.written());
    assert_eq!(isr.stop(EXIT).code(), Some(0), "{}", isr.stderr());

    // While stopped: more lines, a rotation, the old handle's last lines, a new file.
    w.write_lines(5);
    w.rotate_rename(&env.log("factorio-previous.log"));
    w.write_line_old();
    w.write_lines(10);

    // Run 2 without --from-beginning: factorio-previous.log is the file of the checkpoint
    // (same first line, same inode) and resumes there; factorio-current.log is new (the
    // checkpoints do not know it), and is read from its start.
    let isr2 = env.isr().spawn();
    expect_rest_arrive(&isr2, "w", w.written(), &isr.seqs("w"));
    settle();
    let mut got = isr.seqs("w");
    got.extend(isr2.seqs("w"));
    assert_each_once("rotation while stopped", w.written(), &got, &isr2.stderr());
}

#[test]
fn truncated_and_rewritten_longer_before_the_next_poll_delivers_the_new_lines_once() {
    let env = Env::new();
    // Created after the start; --from-beginning in case the first scan sees it.
    let isr = env.isr().start_at_beginning().spawn();
    let mut w = SeqWriter::create(env.log("factorio-current.log"), "w");
    let old: Vec<u64> = w.write_lines(200).collect();
    expect_arrive(&isr, "w", &old);

    // Truncated and rewritten with twice as many bytes while factorio-isr is frozen, so that
    // its next look comes after both: the size is then past the old offset, and only the
    // changed first line tells.
    isr.freeze();
    let new: Vec<u64> = w.truncate_and_write(400).collect();
    isr.thaw();
    expect_arrive(&isr, "w", &new);
    settle();
    assert_each_once(
        "truncate and rewrite longer",
        w.written(),
        &isr.seqs("w"),
        &isr.stderr(),
    );
    let events = isr.events();
    let stray: Vec<&Value> = events
        .iter()
        .filter(|e| e["fields"]["player"] != "w")
        .collect();
    assert!(
        stray.is_empty(),
        "events that are not whole lines: {stray:?}"
    );
    let stderr = isr.stderr();
    let logged = stderr
        .lines()
        .filter(|l| l.contains("reading it from the start"))
        .count();
    assert_eq!(logged, 1, "the replacement is noticed once:\n{stderr}");
}

// --- deletion ---------------------------------------------------------------------------------

#[test]
fn a_deleted_file_is_read_to_its_end_then_let_go() {
    let env = Env::new();
    // Created after the start; --from-beginning in case the first scan sees it.
    let isr = env.isr().start_at_beginning().spawn();
    let path = env.log("console.log");
    let mut w = SeqWriter::create(&path, "w");
    let opened = w.write_line();
    // Now factorio-isr has the file open.
    expect_arrive(&isr, "w", &[opened]);

    for _ in 0..20 {
        w.write_lines(100);
    }
    // The last line is not finished when the file goes.
    let unfinished = w.next_seq();
    w.write_partial(32); // up to "w: s", before the number
    fs::remove_file(&path).expect("deleting the log file");
    let written = w.written().to_vec();
    assert_eq!(written.len(), 2001);
    let partial = w.line(unfinished)[..32].to_owned();
    drop(w);
    expect_arrive(&isr, "w", &written);

    // Let go once it has been quiet for rotate_wait (500 ms).
    let deadline = Instant::now() + Duration::from_millis(2500);
    let held = loop {
        let held: Vec<String> = isr
            .fd_targets()
            .into_iter()
            .filter(|t| t.contains("(deleted)"))
            .collect();
        if held.is_empty() || Instant::now() >= deadline {
            break held;
        }
        sleep(Duration::from_millis(50));
    };
    assert!(
        held.is_empty(),
        "deleted files still open 2.5 s later: {held:?}\nstderr:\n{}",
        isr.stderr_tail()
    );
    assert!(
        isr.wait_for_stderr("Let go of deleted or rotated log file.", ARRIVE),
        "{}",
        isr.stderr()
    );
    assert_each_once("deleted file", &written, &isr.seqs("w"), &isr.stderr());
    // The unfinished last line is emitted as it is when the file is let go.
    let events = isr.events();
    let last = events.last().expect("events");
    assert_eq!(last["raw"], partial.as_str(), "the partial last line");
}

// --- discovery --------------------------------------------------------------------------------

#[test]
fn a_file_created_later_is_read_from_its_start() {
    let env = Env::new();
    // A file present at the first scan, without --from-beginning: read from its end.
    // Its last line is unfinished at the start: "from its end" starts before that line.
    let mut marker = SeqWriter::create(env.log("marker.log"), "m");
    let old = marker.write_line();
    let unfinished = marker.write_partial(30);
    let isr = env.isr().spawn();
    assert!(
        isr.wait_for_stderr("Following log file: first seen: from its end.", ARRIVE),
        "the first scan did not happen:\n{}",
        isr.stderr()
    );

    // A file that appears with lines already in it (written under another name, then moved
    // in), and one created empty and written to afterwards.
    let tmp = env.root().join("staged");
    let mut staged = SeqWriter::create(&tmp, "a");
    let a: Vec<u64> = staged.write_lines(5).collect();
    fs::rename(&tmp, env.log("a.log")).expect("moving a.log in");
    let mut b = SeqWriter::create(env.log("b.log"), "b");
    let b_seqs: Vec<u64> = b.write_lines(5).collect();
    marker.finish_partial();
    let m2 = marker.write_line();

    expect_arrive(&isr, "a", &a);
    expect_arrive(&isr, "b", &b_seqs);
    expect_arrive(&isr, "m", &[unfinished, m2]);
    settle();
    assert_each_once("moved-in file", &a, &isr.seqs("a"), &isr.stderr());
    assert_each_once("new file", &b_seqs, &isr.seqs("b"), &isr.stderr());
    assert_each_once(
        "file present at start (from its end)",
        &[unfinished, m2],
        &isr.seqs("m"),
        &isr.stderr(),
    );
    assert!(!isr.seqs("m").contains(&old));
}

#[test]
fn five_hundred_files_are_all_read_in_bounded_memory() {
    let env = Env::new();
    let mut writers: Vec<SeqWriter> = (0..500)
        .map(|i| SeqWriter::create(env.log(&format!("s{i:03}.log")), &format!("s{i:03}")))
        .collect();
    for w in &mut writers {
        w.write_lines(10);
    }
    // The files exist before the start: --from-beginning.
    let isr = env.isr().start_at_beginning().spawn();
    let all_written = |isr: &Isr, writers: &[SeqWriter]| {
        isr.wait_while_events_come(
            |events| {
                let mut per_file: HashMap<&str, usize> = HashMap::new();
                for e in events {
                    if let Some(player) = e["fields"]["player"].as_str() {
                        *per_file.entry(player).or_default() += 1;
                    }
                }
                writers
                    .iter()
                    .all(|w| per_file.get(w.id()).copied().unwrap_or(0) >= w.written().len())
            },
            ARRIVE,
        )
    };
    assert!(
        all_written(&isr, &writers),
        "the first 10 lines of every file did not arrive; stderr:\n{}",
        isr.stderr_tail()
    );
    // Then 10 more lines to every file while it is followed.
    for w in &mut writers {
        w.write_lines(10);
    }
    assert!(
        all_written(&isr, &writers),
        "the next 10 lines of every file did not arrive; stderr:\n{}",
        isr.stderr_tail()
    );
    settle();
    let events = isr.events();
    for w in &writers {
        assert_each_once(w.id(), w.written(), &seqs_in(&events, w.id()), "");
    }
    assert_eq!(events.len(), 500 * 20, "only the lines written");

    let (rss, peak) = isr.rss_kib();
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB (now {rss} KiB) with 500 files"
    );
    let fds = isr.fd_targets();
    let logs = env.logs.to_string_lossy().into_owned();
    let log_fds = fds.iter().filter(|t| t.starts_with(&logs)).count();
    assert_eq!(log_fds, 500, "one descriptor per followed file");
    assert!(fds.len() <= 500 + 50, "{} descriptors open", fds.len());
}

#[test]
fn two_files_with_the_same_first_line_are_both_read_across_a_restart() {
    let env = Env::new();
    let header = "   0.000 2025-10-07 08:22:06; Factorio 2.0.60 (build 83512, linux64, headless)\n";
    // Created after the start; --from-beginning in case the first scan sees them. Run 2 uses
    // the same arguments: the checkpoints decide.
    let mut isr = env.isr().start_at_beginning().spawn();
    let mut a = SeqWriter::create(env.log("a.log"), "a");
    let mut b = SeqWriter::create(env.log("b.log"), "b");
    a.write_raw(header.as_bytes());
    b.write_raw(header.as_bytes());
    a.write_lines(20);
    b.write_lines(30);
    expect_arrive(&isr, "a", a.written());
    expect_arrive(&isr, "b", b.written());
    assert_eq!(isr.stop(EXIT).code(), Some(0), "{}", isr.stderr());
    let headers = isr
        .events()
        .iter()
        .filter(|e| e["raw"].as_str() == Some(header.trim_end()))
        .count();
    assert_eq!(headers, 2, "the header line of each file");

    a.write_lines(10);
    b.write_lines(5);
    let isr2 = env.isr().start_at_beginning().spawn();
    expect_rest_arrive(&isr2, "a", a.written(), &isr.seqs("a"));
    expect_rest_arrive(&isr2, "b", b.written(), &isr.seqs("b"));
    settle();
    for (w, what) in [(&a, "a.log"), (&b, "b.log")] {
        let mut got = isr.seqs(w.id());
        got.extend(isr2.seqs(w.id()));
        assert_each_once(what, w.written(), &got, &isr2.stderr());
    }
    assert!(
        isr2.events()
            .iter()
            .all(|e| e["event_type"] != "server_started"),
        "a header was read again after the restart"
    );
}

#[test]
fn a_directory_removed_and_recreated_is_followed_again() {
    let env = Env::new();
    // Files are created after the start; --from-beginning in case the first scan sees one.
    let isr = env.isr().start_at_beginning().spawn();
    let name = "factorio-current.log";
    let mut a = SeqWriter::create(env.log(name), "a");
    a.write_lines(5);
    expect_arrive(&isr, "a", a.written());

    // Removed long enough to be noticed as missing, then created again.
    fs::remove_dir_all(&env.logs).expect("removing logs/");
    assert!(
        isr.wait_for_stderr("Cannot list the log directory", ARRIVE),
        "the missing directory was not noticed:\n{}",
        isr.stderr_tail()
    );
    fs::create_dir(&env.logs).expect("creating logs/ again");
    let mut b = SeqWriter::create(env.log(name), "b");
    b.write_lines(5);
    expect_arrive(&isr, "b", b.written());

    // Removed and created again at once.
    fs::remove_dir_all(&env.logs).expect("removing logs/");
    fs::create_dir(&env.logs).expect("creating logs/ again");
    let mut c = SeqWriter::create(env.log(name), "c");
    c.write_lines(5);
    expect_arrive(&isr, "c", c.written());
    // And the recreated directory is still followed.
    c.write_lines(5);
    expect_arrive(&isr, "c", c.written());

    settle();
    for w in [&a, &b, &c] {
        assert_each_once(w.id(), w.written(), &isr.seqs(w.id()), &isr.stderr());
    }
}

#[test]
fn a_directory_renamed_away_and_back_resumes_its_files_where_they_were() {
    let env = Env::new();
    // Created after the start; --from-beginning in case the first scan sees it.
    let isr = env.isr().start_at_beginning().spawn();
    let mut w = SeqWriter::create(env.log("factorio-current.log"), "w");
    w.write_lines(50);
    expect_arrive(&isr, "w", w.written());

    // Away for longer than the rotate wait (a remount, a rename): the file is let go.
    let away = env.root().join("logs.away");
    fs::rename(&env.logs, &away).expect("renaming logs/ away");
    assert!(
        isr.wait_for_stderr("Let go of deleted or rotated log file.", ARRIVE),
        "the file was not let go:\n{}",
        isr.stderr_tail()
    );
    // Back: the same file (same first line, device and inode) resumes where it was delivered.
    fs::rename(&away, &env.logs).expect("renaming logs/ back");
    assert!(
        isr.wait_for_stderr_count("Following log file:", 2, ARRIVE),
        "the file that came back was not followed again:\n{}",
        isr.stderr_tail()
    );
    w.write_lines(5);
    // A file read again from its start would deliver its old lines before these new ones, so
    // once these are in, any duplicate is too.
    expect_arrive(&isr, "w", w.written());
    assert_each_once(
        "a directory renamed away and back",
        w.written(),
        &isr.seqs("w"),
        &isr.stderr(),
    );
    assert!(
        isr.stderr()
            .contains("Following log file: resuming at its checkpoint."),
        "{}",
        isr.stderr_tail()
    );
}

// --- content ----------------------------------------------------------------------------------

#[test]
fn a_line_written_in_two_halves_is_one_event() {
    let env = Env::new();
    // Created after the start; --from-beginning in case the first scan sees it.
    let isr = env.isr().start_at_beginning().spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    let pause = Duration::from_millis(400);

    // The first line of the file in two halves: the file has no fingerprint until its newline.
    let s1 = w.write_partial(20);
    sleep(pause);
    assert!(isr.events().is_empty(), "{:?}", isr.events());
    w.finish_partial();
    expect_arrive(&isr, "w", &[s1]);

    // A later line, split in its message.
    let s2 = w.write_partial(45);
    sleep(pause);
    assert_eq!(isr.seqs("w"), [s1], "half a line became an event");
    w.finish_partial();
    let s3 = w.write_line();
    expect_arrive(&isr, "w", &[s2, s3]);
    settle();

    let events = isr.events();
    let raws: Vec<&str> = events.iter().map(|e| e["raw"].as_str().unwrap()).collect();
    let want: Vec<String> = [s1, s2, s3].iter().map(|&s| w.line(s)).collect();
    assert_eq!(raws, want, "one event per whole line");
    let len = want[0].len() as u64 + 1;
    let offsets: Vec<&Value> = events.iter().map(|e| &e["log"]["offset"]).collect();
    assert_eq!(offsets, [0, len, 2 * len], "log.offset of each line");
}

#[test]
fn an_over_long_line_is_cut_and_the_next_line_is_intact() {
    let env = Env::new();
    // Created after the start; --from-beginning in case the first scan sees it.
    let isr = env.isr().start_at_beginning().spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    let s1 = w.write_line();
    let head = "2025-10-08 08:58:35 [CHAT] long: ";
    let long = format!("{head}{}\n", "y".repeat(MIB + 100 - head.len()));
    assert_eq!(long.len(), MIB + 101);
    w.write_raw(long.as_bytes());
    let s2 = w.write_line();
    expect_arrive(&isr, "w", &[s1, s2]);
    settle();

    let events = isr.events();
    assert_eq!(events.len(), 3, "{}", isr.stderr());
    let cut = events[1]["raw"].as_str().expect("a raw line");
    assert!(cut.len() <= MIB, "the cut line is {} bytes", cut.len());
    assert!(cut.starts_with(head), "the cut line lost its start");
    assert_eq!(events[2]["raw"], w.line(s2), "the next line is intact");
    assert_eq!(events[2]["event_type"], "chat");
    let l1 = w.line(s1).len() as u64 + 1;
    let offsets: Vec<&Value> = events.iter().map(|e| &e["log"]["offset"]).collect();
    assert_eq!(
        offsets,
        [0, l1, l1 + long.len() as u64],
        "log.offset of each line"
    );
    assert!(
        isr.wait_for_stderr("A line longer than the limit was cut.", ARRIVE),
        "{}",
        isr.stderr()
    );
}

#[test]
fn invalid_utf8_nul_crlf_and_a_bom_are_handled() {
    let env = Env::new();
    // Created after the start; --from-beginning in case the first scan sees it.
    let isr = env.isr().start_at_beginning().spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    let lines: [&[u8]; 4] = [
        b"\xEF\xBB\xBF2025-10-08 08:58:34 [JOIN] bob joined the game\r\n",
        b"2025-10-08 08:58:35 [CHAT] bob: caf\xe9\r\n",
        b"2025-10-08 08:58:36 [CHAT] bob: nul\x00here\n",
        b"2025-10-08 08:58:37 [CHAT] bob: crlf\r\n",
    ];
    w.write_raw(&lines.concat());
    assert!(
        isr.wait_for(|e| e.len() >= 4, ARRIVE),
        "events: {:?}\nstderr:\n{}",
        isr.events(),
        isr.stderr()
    );
    settle();
    let events = isr.events();
    assert_eq!(events.len(), 4, "{events:#?}");
    for e in &events {
        let raw = e["raw"].as_str().expect("a raw line");
        assert!(!raw.contains('\r'), "raw keeps \\r: {raw:?}");
        assert!(!raw.contains('\u{FEFF}'), "raw keeps the BOM: {raw:?}");
    }
    assert_eq!(events[0]["event_type"], "player_join", "{}", events[0]);
    assert_eq!(events[0]["fields"]["player"], "bob");
    assert_eq!(events[1]["event_type"], "chat");
    assert_eq!(events[1]["fields"]["message"], "caf\u{FFFD}");
    assert_eq!(events[2]["event_type"], "chat");
    assert_eq!(events[2]["fields"]["message"], "nul\u{0}here");
    assert!(events[2]["raw"].as_str().unwrap().contains('\u{0}'));
    assert_eq!(events[3]["fields"]["message"], "crlf");
    let offsets: Vec<&Value> = events.iter().map(|e| &e["log"]["offset"]).collect();
    let starts: Vec<usize> = lines
        .iter()
        .scan(0, |at, l| {
            let start = *at;
            *at += l.len();
            Some(start)
        })
        .collect();
    assert_eq!(
        offsets, starts,
        "log.offset counts the BOM and the \\r bytes"
    );
}

// --- restarts and checkpoints -----------------------------------------------------------------

#[test]
fn a_restart_resumes_at_the_checkpoint() {
    let env = Env::new();
    // Created after the start of run 1; --from-beginning in both runs, as a service would be
    // started: the checkpoint must win over it in run 2.
    let mut isr = env.isr().start_at_beginning().spawn();
    let mut w = SeqWriter::create(env.log("factorio-current.log"), "w");
    w.write_lines(50);
    expect_arrive(&isr, "w", w.written());
    // A multi-line error record, held open until a quiet 200 ms or the next prefixed line,
    // then half a line: SIGTERM comes while both may be pending.
    let crash = "  100.000 Error MainLoop.cpp:1284: Exception at tick 6000: Error while running event x::on_tick (ID 0)\n\
                 __x__/control.lua:1: attempt to index nil\n\
                 stack traceback:\n\
                 \t__x__/control.lua:1: in function <__x__/control.lua:1>\n";
    w.write_raw(crash.as_bytes());
    let split = w.write_partial(30);
    sleep(Duration::from_millis(50));
    let t = Instant::now();
    let status = isr.stop(EXIT);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", isr.stderr());
    assert!(t.elapsed() < EXIT);
    assert!(env.state.join("checkpoints.json").is_file());

    w.finish_partial();
    w.write_lines(49);
    let isr2 = env.isr().start_at_beginning().spawn();
    expect_arrive(&isr2, "w", &(51..=100).collect::<Vec<_>>());
    settle();
    let mut got = isr.seqs("w");
    got.extend(isr2.seqs("w"));
    assert_each_once("both runs", w.written(), &got, &isr2.stderr());
    assert!(got.contains(&split));

    let mut events = isr.events();
    events.extend(isr2.events());
    let crashes: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["raw"]
                .as_str()
                .is_some_and(|r| r.starts_with("  100.000 Error"))
        })
        .collect();
    assert_eq!(crashes.len(), 1, "the error record once: {crashes:#?}");
    assert_eq!(crashes[0]["raw"], crash.trim_end(), "the whole record");
    let halves: Vec<&Value> = events
        .iter()
        .filter(|e| e["raw"].as_str().is_some_and(|r| r.len() < 40))
        .collect();
    assert!(halves.is_empty(), "half a line became an event: {halves:?}");
}

/// The offset the checkpoint file records for the file named `name`, if any.
fn saved_offset(state: &Path, name: &str) -> Option<u64> {
    let text = fs::read_to_string(state.join("checkpoints.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["files"]
        .as_array()?
        .iter()
        .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with(name)))?["offset"]
        .as_u64()
}

#[test]
fn a_burst_then_quiet_is_checkpointed_so_a_kill_sends_nothing_twice() {
    // Checkpoints used to be saved only when a later batch was delivered: a burst followed by
    // quiet (a crash record is the last thing a server writes) stayed unsaved, and a SIGKILL
    // sent it all again.
    let env = Env::new();
    let isr = env.isr().start_at_beginning().spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(1000);
    expect_arrive(&isr, "w", w.written());
    let len = fs::metadata(env.log("console.log")).unwrap().len();
    assert!(
        wait_until(
            || saved_offset(&env.state, "console.log") == Some(len),
            Duration::from_secs(10)
        ),
        "the burst was never checkpointed: saved {:?} of {len} bytes\n{}",
        saved_offset(&env.state, "console.log"),
        isr.stderr_tail()
    );
    drop(isr); // SIGKILL: no final save.

    w.write_lines(10);
    let isr2 = env.isr().start_at_beginning().spawn();
    expect_arrive(&isr2, "w", &(1001..=1010).collect::<Vec<_>>());
    settle();
    let again: Vec<u64> = isr2.seqs("w").into_iter().filter(|&s| s <= 1000).collect();
    assert!(
        again.is_empty(),
        "{} lines of the burst sent again after the kill",
        again.len()
    );
}

#[test]
fn a_stop_whose_checkpoints_cannot_be_saved_says_so_and_exits_non_zero() {
    // The state directory goes away and a file takes its place: every save fails (as on a full
    // disk). `/ready` must say so while it lasts, and the stop must not claim it saved.
    let env = Env::new();
    let mut isr = env.isr().start_at_beginning().spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_lines(10);
    expect_arrive(&isr, "w", w.written());
    assert!(
        wait_until(
            || saved_offset(&env.state, "console.log").is_some(),
            Duration::from_secs(10)
        ),
        "{}",
        isr.stderr_tail()
    );
    fs::remove_dir_all(&env.state).unwrap();
    fs::write(&env.state, b"not a directory").unwrap();
    w.write_lines(10);
    expect_arrive(&isr, "w", w.written());
    let mut reason = String::new();
    assert!(
        wait_until(
            || {
                let (status, body) = isr.admin_get("/ready");
                reason = body;
                status == 503 && reason.contains("saving checkpoints failed")
            },
            Duration::from_secs(10)
        ),
        "/ready did not report the failing saves: {reason}"
    );
    let status = isr.stop(EXIT);
    let stderr = isr.stderr();
    assert_ne!(
        status.code(),
        Some(0),
        "a stop that could not save exited 0:\n{stderr}"
    );
    assert!(
        !stderr.contains("Stopped; checkpoints saved."),
        "the stop claimed it saved:\n{stderr}"
    );
    assert!(
        stderr.contains("saving the checkpoints failed"),
        "the failed save was not reported:\n{stderr}"
    );
}

#[test]
fn terminal_escapes_in_a_file_name_are_escaped_in_console_logs() {
    // A file name is anything a local user can create: it must not clear the admin's screen.
    let env = Env::new();
    fs::write(env.log("evil\x1b[2J\x07.log"), "x\n").unwrap();
    let isr = env.isr().start_at_beginning().spawn();
    assert!(
        isr.wait_for_stderr("Following log file", ARRIVE),
        "{}",
        isr.stderr_tail()
    );
    let stderr = isr.stderr();
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\x07'),
        "raw control characters in the console log:\n{stderr:?}"
    );
    assert!(stderr.contains("evil\\x1b[2J\\x07.log"), "{stderr}");
}

#[test]
fn sigterm_while_lines_flow_exits_cleanly_and_loses_nothing() {
    let env = Env::new();
    let path = env.log("factorio-current.log");
    // Created after the start of run 1; --from-beginning in every run (the checkpoint wins).
    let mut runs = vec![env.isr().start_at_beginning().spawn()];
    // ~2000 lines/s until run 3 reads: every SIGTERM comes while lines flow, however long a
    // loaded machine takes to start each run.
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop_writing.clone();
        thread::spawn(move || {
            let mut w = SeqWriter::create(&path, "w");
            while !stop.load(Ordering::Acquire) {
                w.write_lines(20);
                sleep(Duration::from_millis(10));
            }
            w
        })
    };
    let lines_flow = |isr: &Isr| {
        assert!(
            isr.wait_for(|e| !seqs_in(e, "w").is_empty(), ARRIVE),
            "lines do not flow:\n{}",
            isr.stderr()
        );
    };
    // Runs 1 and 2 get SIGTERM while lines flow, at different points of their checkpoint
    // cycle; run 3 reads to the end.
    for stop_after in [Duration::from_millis(250), Duration::from_millis(170)] {
        let isr = runs.last_mut().expect("a run");
        lines_flow(isr);
        sleep(stop_after);
        let t = Instant::now();
        let status = isr.stop(EXIT);
        assert_eq!(status.code(), Some(0), "stderr:\n{}", isr.stderr());
        assert!(t.elapsed() < EXIT);
        runs.push(env.isr().start_at_beginning().spawn());
    }
    lines_flow(runs.last().expect("run 3"));
    stop_writing.store(true, Ordering::Release);
    let w = writer.join().expect("the writer thread");
    let got_before: Vec<u64> = runs[..2].iter().flat_map(|r| r.seqs("w")).collect();
    let last = runs.last().expect("run 3");
    expect_rest_arrive(last, "w", w.written(), &got_before);
    settle();
    let mut got = got_before;
    got.extend(last.seqs("w"));
    let stderr: Vec<String> = runs.iter().map(Isr::stderr).collect();
    assert_each_once(
        "three runs, two SIGTERMs under load",
        w.written(),
        &got,
        &stderr.join("\n---\n"),
    );
}

#[test]
fn a_corrupt_checkpoint_file_is_ignored() {
    let cases: [(&str, &[u8]); 3] = [
        ("empty", b""),
        ("truncated JSON", b"{\"version\":1,\"saved_ms\":17000000"),
        ("garbage", b"\xff\xfe\x00\x01 not json at all \x80\x81"),
    ];
    for (what, bytes) in cases {
        let env = Env::new();
        fs::create_dir(&env.state).expect("creating state/");
        let store = env.state.join("checkpoints.json");
        fs::write(&store, bytes).expect("writing the corrupt checkpoint file");
        let mut w = SeqWriter::create(env.log("console.log"), "w");
        w.write_line();
        // No --from-beginning: with no usable checkpoint the existing line is skipped (read
        // from its end) and only new lines are followed.
        let mut isr = env.isr().spawn();
        assert!(
            isr.wait_for_stderr("Following log file", ARRIVE),
            "{what}: did not start:\n{}",
            isr.stderr()
        );
        let stderr = isr.stderr();
        let warning = stderr
            .lines()
            .find(|l| l.contains("ignoring it and starting without checkpoints"))
            .unwrap_or_else(|| panic!("{what}: no warning:\n{stderr}"));
        assert!(warning.contains("checkpoints.json"), "{what}: {warning}");
        let new: Vec<u64> = w.write_lines(3).collect();
        expect_arrive(&isr, "w", &new);
        assert_eq!(isr.stop(EXIT).code(), Some(0), "{what}: {}", isr.stderr());
        assert_each_once(what, &new, &isr.seqs("w"), &isr.stderr());
        let saved: Value = serde_json::from_slice(&fs::read(&store).expect("the store"))
            .unwrap_or_else(|e| panic!("{what}: the store is not rewritten as JSON: {e}"));
        assert_eq!(saved["files"].as_array().map(Vec::len), Some(1), "{saved}");
    }
}

// --- patterns ---------------------------------------------------------------------------------

#[test]
fn pattern_edits_apply_while_running_and_a_broken_edit_keeps_the_old_set() {
    let env = Env::new();
    let patterns = env.shipped_patterns();
    let custom = patterns.join("custom.toml");
    let probe_a = "[[pattern]]\nname = \"probe_a\"\nregex = '^PROBE-A '\n";
    fs::write(&custom, probe_a).expect("writing custom.toml");

    // Created after the start; --from-beginning in case the first scan sees it.
    let isr = env
        .isr()
        .start_at_beginning()
        .arg("--patterns")
        .arg(&patterns)
        .spawn();
    let mut w = SeqWriter::create(env.log("console.log"), "w");
    w.write_raw(b"PROBE-A 1\nPROBE-B 1\n");
    assert!(isr.wait_for(|e| e.len() >= 2, ARRIVE), "{}", isr.stderr());
    let events = isr.events();
    assert_eq!(events[0]["event_type"], "probe_a", "{}", events[0]);
    assert_eq!(events[1]["event_type"], "log", "{}", events[1]);

    // Add a pattern; it applies within ~2 s (reload poll 200 ms + debounce 300 ms; 2.5 s allowed).
    let edited = Instant::now();
    fs::write(
        &custom,
        format!("{probe_a}[[pattern]]\nname = \"probe_b\"\nregex = '^PROBE-B '\n"),
    )
    .expect("editing custom.toml");
    let mut n = 1;
    let reloaded = loop {
        n += 1;
        w.write_raw(format!("PROBE-B {n}\n").as_bytes());
        if isr.wait_for(
            |e| e.iter().any(|e| e["event_type"] == "probe_b"),
            Duration::from_millis(100),
        ) {
            break true;
        }
        if edited.elapsed() > Duration::from_millis(2500) {
            break false;
        }
    };
    assert!(
        reloaded,
        "the new pattern did not apply within 2.5 s:\n{}",
        isr.stderr()
    );

    // A broken file: the reload fails, is reported with file and line, and the running set stays.
    fs::write(
        patterns.join("broken.toml"),
        "# broken on purpose\n[[pattern]]\nname = \"broken\"\nregex = '('\n",
    )
    .expect("writing broken.toml");
    assert!(
        isr.wait_for_stderr("broken.toml:4:", ARRIVE),
        "the broken file is not named with its line:\n{}",
        isr.stderr()
    );
    let before = isr.events().len();
    w.write_raw(b"PROBE-B after\nPROBE-A after\n");
    let s = w.write_line();
    expect_arrive(&isr, "w", &[s]);
    let events = isr.events();
    let after: Vec<&str> = events[before..]
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        after,
        ["probe_b", "probe_a", "chat"],
        "the running set changed after a broken edit"
    );
    assert!(
        isr.wait_for_stderr("Pattern reload failed", ARRIVE),
        "{}",
        isr.stderr()
    );

    // The same broken content is reported once, not at every check (every 200 ms here).
    sleep(Duration::from_millis(600));
    assert_eq!(
        isr.stderr().matches("broken.toml:4:").count(),
        1,
        "{}",
        isr.stderr()
    );
    // Removing the broken file reloads the directory again.
    fs::remove_file(patterns.join("broken.toml")).expect("removing broken.toml");
    assert!(
        isr.wait_for_stderr_count("Patterns reloaded.", 2, ARRIVE),
        "{}",
        isr.stderr()
    );
}

// --- cost -------------------------------------------------------------------------------------

#[test]
fn idle_followers_cost_almost_no_cpu() {
    let env = Env::new();
    let mut writers: Vec<SeqWriter> = (0..20)
        .map(|i| SeqWriter::create(env.log(&format!("idle{i:02}.log")), &format!("i{i:02}")))
        .collect();
    for w in &mut writers {
        w.write_lines(5);
    }
    // The files exist before the start and are read from their end: nothing to read at all.
    // Default timings (no --config): the idle cost a deployment pays. (The fast test timings
    // look 20 times a second and cost about 0.5% of a core here.)
    let isr = IsrCmd::new(&env.logs, &env.state).spawn();
    assert!(
        isr.wait_for_stderr_count("Following log file", 20, ARRIVE),
        "{}",
        isr.stderr()
    );
    sleep(Duration::from_millis(500)); // start-up done
    let hz = clock_ticks_per_sec();
    let t0 = Instant::now();
    let c0 = isr.cpu_ticks();
    sleep(Duration::from_secs(3));
    let ticks = isr.cpu_ticks() - c0;
    let secs = t0.elapsed().as_secs_f64();
    let share = ticks as f64 / hz as f64 / secs;
    assert!(
        share < 0.01,
        "idle with 20 files: {ticks} ticks of 1/{hz} s in {secs:.2} s = {:.2}% of a core",
        share * 100.0
    );
    assert!(isr.events().is_empty());
}

// --- the checker itself -----------------------------------------------------------------------

#[test]
fn the_sequence_checker_reports_missing_duplicated_and_unknown_numbers_as_ranges() {
    assert_eq!(check_seqs(&[1, 2, 3], &[4], &[3, 1, 2]), Ok(()));
    assert_eq!(check_seqs(&[1, 2, 3], &[4], &[3, 1, 4, 2]), Ok(()));
    let report = check_seqs(
        &[1, 2, 3, 4, 5, 6, 7],
        &[9],
        &[1, 2, 2, 2, 3, 3, 7, 8, 9, 9],
    )
    .expect_err("problems");
    assert!(report.contains("missing (3): 4-6"), "{report}");
    assert!(
        report.contains("duplicated (3, up to 3 times each): 2-3, 9"),
        "{report}"
    );
    assert!(report.contains("never written (1): 8"), "{report}");
}
