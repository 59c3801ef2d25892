//! The open-file limit, end to end (issue 12, item 2): the real `factorio-isr run`, started
//! with a low `RLIMIT_NOFILE`, follows a directory with more log files than fit. It must raise
//! its soft limit to the hard one, follow as many files as the limit less the reserve allows,
//! keep them (never let one go and read it again from its start), stay alive, say in `/ready`
//! why it is not following the rest, count it, and follow the rest once room is made.

mod support;

use std::fs;
use std::time::Duration;

use support::{Env, Isr, SeqWriter, assert_each_once, check_seqs, metric_sample, wait_until};

/// How long anything may take on a loaded machine.
const ARRIVE: Duration = Duration::from_secs(20);

/// The limits the process starts with: the soft one is raised to the hard one.
const SOFT_LIMIT: u64 = 32;
const HARD_LIMIT: u64 = 160;
/// `tail.reserved_open_files`' default.
const RESERVE: u64 = 128;
/// Log files the tailer may hold open.
const FITS: usize = (HARD_LIMIT - RESERVE) as usize;
/// Log files in the directory.
const FILES: usize = 50;

/// Waits until every line `w` wrote has arrived; panics with what is missing otherwise.
#[track_caller]
fn expect_arrive(isr: &Isr, w: &SeqWriter) {
    if !isr.wait_for_seqs(w.id(), w.written(), ARRIVE) {
        let report = check_seqs(w.written(), &[], &isr.seqs(w.id()))
            .err()
            .unwrap_or_default();
        panic!(
            "{}: not every line arrived: {report}\nstderr (end):\n{}",
            w.id(),
            isr.stderr_tail()
        );
    }
}

/// The value of the sample `name` in `/metrics`, when it answers.
fn metric(isr: &Isr, name: &str) -> Option<f64> {
    let (status, text) = isr.admin_get("/metrics");
    if status != 200 {
        return None;
    }
    metric_sample(&text, name)
}

#[test]
fn more_files_than_the_open_file_limit_allows_wait_and_none_is_read_twice() {
    let env = Env::builder().start_at_beginning().build();
    let mut writers: Vec<SeqWriter> = (0..FILES)
        .map(|i| SeqWriter::create(env.log(&format!("s{i:02}.log")), &format!("w{i:02}")))
        .collect();
    for w in &mut writers {
        w.write_lines(3);
    }
    let isr = env.isr().open_file_limit(SOFT_LIMIT, HARD_LIMIT).spawn();
    // Raised to the hard limit; the tailer's share is the limit less the reserve.
    assert_eq!(
        metric(&isr, "factorio_isr_open_files_limit"),
        Some(HARD_LIMIT as f64),
        "{}",
        isr.stderr_tail()
    );
    assert_eq!(
        metric(&isr, "factorio_isr_tail_files_max"),
        Some(FITS as f64)
    );

    // Not ready, naming the limit and how many files wait; alive all the same.
    let want = format!(
        "tailer: cannot follow {} more log files: the open-file limit ({HARD_LIMIT}) is reached",
        FILES - FITS
    );
    let mut last = (0, String::new());
    assert!(
        wait_until(
            || {
                last = isr.admin_get("/ready");
                last.0 == 503 && last.1.contains(&want)
            },
            ARRIVE
        ),
        "/ready never said {want:?}; last: {last:?}\n{}",
        isr.stderr_tail()
    );
    assert_eq!(isr.admin_get("/healthz").0, 200);
    let too_many =
        "factorio_isr_errors_total{component=\"tailer\",error_type=\"too_many_open_files\"}";
    assert!(metric(&isr, too_many).is_some_and(|n| n >= 1.0));

    // The files that fit (the first in name order) are followed, and more lines of theirs
    // arrive while the others wait.
    for w in &mut writers[..FITS] {
        w.write_lines(2);
    }
    for w in &writers[..FITS] {
        expect_arrive(&isr, w);
    }
    assert_eq!(
        metric(&isr, "factorio_isr_tail_files_open"),
        Some(FITS as f64)
    );

    // Room is made: files that were followed are deleted (everything in them has arrived) and
    // let go after the rotate wait; the waiting files are followed and readiness returns.
    for w in &writers[..20] {
        fs::remove_file(&w.path).unwrap();
    }
    let mut last = (0, String::new());
    assert!(
        wait_until(
            || {
                last = isr.admin_get("/ready");
                last.0 == 200
            },
            ARRIVE
        ),
        "/ready never became ready; last: {last:?}\n{}",
        isr.stderr_tail()
    );
    for w in &writers {
        expect_arrive(&isr, w);
    }
    // Each line exactly once: no file was let go and read again from its start.
    for w in &writers {
        assert_each_once(w.id(), w.written(), &isr.seqs(w.id()), &isr.stderr_tail());
    }
    let stderr = isr.stderr();
    assert_eq!(
        stderr.matches("The files followed are kept").count(),
        1,
        "logged once per episode:\n{}",
        isr.stderr_tail()
    );
    assert!(stderr.contains("Every log file is followed again"));
    assert_eq!(
        metric(&isr, too_many),
        Some(1.0),
        "counted once per episode"
    );
}
