//! The whole promise of `run` in one scenario: a writer appends sequence-numbered lines at
//! thousands of lines a second, through a rename rotation, writes to the old handle, a
//! copytruncate, a partial line, a 1 MiB line, invalid UTF-8, a SIGTERM and a restart with lines
//! written while factorio-isr was down. Every line must come out exactly once, except lines
//! inside the copytruncate's copy-to-truncate window, which may be missing (no tailer can see
//! them; they are in the copy) and are counted; memory stays under 64 MiB.

mod support;

use std::collections::HashSet;
use std::fs;
use std::thread::sleep;
use std::time::Duration;

use support::{Env, IsrCmd, SeqWriter, check_seqs, paced};

const ARRIVE: Duration = Duration::from_secs(15);
const RATE: u32 = 3000;
const RSS_LIMIT_KIB: u64 = 64 * 1024;

#[test]
fn every_line_arrives_once_through_every_hazard_and_a_restart() {
    // The writer starts at once, possibly before factorio-isr's first look, which would make the
    // file one "present at start" and read from its end: --from-beginning. The restart resumes
    // from checkpoints whatever the flag says.
    let env = Env::builder().start_at_beginning().build();
    let cmd = env.isr();
    let mut isr = cmd.spawn();
    let mut w = SeqWriter::create(env.log("factorio-current.log"), "w");
    // The hazards begin once factorio-isr follows the file (its first line arrived): on a loaded
    // machine the process may take longer to start than the writer takes to rotate and truncate,
    // and it would then see neither.
    w.write_line();
    assert!(
        isr.wait_for_seqs("w", w.written(), ARRIVE),
        "the first line did not arrive:\n{}",
        isr.stderr()
    );

    paced(1500, RATE, |_| {
        w.write_line();
    });
    // Factorio restarts: rename rotation while writing, then writes to the old handle.
    w.rotate_rename(&env.log("factorio-previous.log"));
    w.write_line_old();
    w.write_line_old();
    paced(1500, RATE, |_| {
        w.write_line();
    });
    // logrotate copytruncate under load (the copy gets a name the globs do not match). Lines
    // not yet read when the truncation comes are in the copy only, lost to any tailer: what
    // was written before the copy is read first, so that only the copy's window may be lost
    // (a loaded machine may not run factorio-isr for longer than the writer takes).
    assert!(
        isr.wait_for_seqs("w", w.written(), ARRIVE),
        "before the copytruncate: {}\nstderr:\n{}",
        check_seqs(w.written(), &[], &isr.seqs("w"))
            .err()
            .unwrap_or_default(),
        isr.stderr()
    );
    let window = w.copytruncate(
        &env.log("factorio-current.log.1"),
        60,
        Duration::from_millis(40),
    );
    paced(1000, RATE, |_| {
        w.write_line();
    });
    // A line written in two halves with a pause between them.
    w.write_partial(25);
    sleep(Duration::from_millis(300));
    w.finish_partial();
    // A 1 MiB line and a line with invalid UTF-8, between numbered lines.
    let mut long = b"2025-10-08 08:58:34 [CHAT] long: ".to_vec();
    long.resize(1024 * 1024 + 100, b'x');
    long.push(b'\n');
    w.write_raw(&long);
    w.write_line();
    w.write_raw(b"2025-10-08 08:58:34 [CHAT] bytes: caf\xe9 \xff\xfe\n");
    paced(1000, RATE, |_| {
        w.write_line();
    });

    let outside_window = |seqs: &[u64]| -> Vec<u64> {
        seqs.iter()
            .copied()
            .filter(|s| !window.contains(s))
            .collect()
    };
    let before_stop = outside_window(w.written());
    assert!(
        isr.wait_for_seqs("w", &before_stop, ARRIVE),
        "run 1: {}\nstderr:\n{}",
        check_seqs(&before_stop, &[], &isr.seqs("w"))
            .err()
            .unwrap_or_default(),
        isr.stderr()
    );
    let (_, peak1) = isr.rss_kib();
    let events1 = isr.events();
    let status = isr.stop(Duration::from_secs(5));
    assert!(
        status.success(),
        "exit after SIGTERM: {status:?}\n{}",
        isr.stderr()
    );

    // Lines written while factorio-isr is down.
    w.write_lines(2000);
    let mut isr2 = cmd.spawn();
    paced(1000, RATE, |_| {
        w.write_line();
    });
    let run1: HashSet<u64> = isr.seqs("w").into_iter().collect();
    let rest: Vec<u64> = outside_window(w.written())
        .into_iter()
        .filter(|s| !run1.contains(s))
        .collect();
    assert!(
        isr2.wait_for_seqs("w", &rest, ARRIVE),
        "run 2: {}\nstderr:\n{}",
        check_seqs(&rest, &[], &isr2.seqs("w"))
            .err()
            .unwrap_or_default(),
        isr2.stderr()
    );
    // Give duplicates, if any, time to show.
    sleep(Duration::from_millis(700));
    let (_, peak2) = isr2.rss_kib();
    let status = isr2.stop(Duration::from_secs(5));
    assert!(status.success(), "exit after SIGTERM: {status:?}");

    let mut got = isr.seqs("w");
    got.extend(isr2.seqs("w"));
    let window_seqs: Vec<u64> = window.clone().collect();
    let once = outside_window(w.written());
    if let Err(report) = check_seqs(&once, &window_seqs, &got) {
        panic!(
            "{report}\nrun 1 stderr:\n{}\nrun 2 stderr:\n{}",
            isr.stderr(),
            isr2.stderr()
        );
    }
    let got_set: HashSet<u64> = got.iter().copied().collect();
    let lost_in_window = window_seqs.iter().filter(|s| !got_set.contains(s)).count();
    eprintln!(
        "{} lines written; {} in the copytruncate window, of which {} lost; peak RSS {} / {} KiB",
        w.written().len(),
        window_seqs.len(),
        lost_in_window,
        peak1,
        peak2
    );
    assert!(
        peak1 < RSS_LIMIT_KIB && peak2 < RSS_LIMIT_KIB,
        "peak RSS {peak1} / {peak2} KiB"
    );

    // The special lines: the 1 MiB line was cut (and logged), the invalid bytes replaced.
    let long_event = events1
        .iter()
        .find(|e| e["fields"]["player"] == "long")
        .expect("the long line is an event");
    assert!(long_event["raw"].as_str().unwrap_or_default().len() <= 1024 * 1024);
    assert!(
        isr.stderr().contains("longer than the limit was cut"),
        "{}",
        isr.stderr()
    );
    let bytes_event = events1
        .iter()
        .find(|e| e["fields"]["player"] == "bytes")
        .expect("the invalid UTF-8 line is an event");
    assert!(
        bytes_event["raw"]
            .as_str()
            .unwrap_or_default()
            .contains('\u{fffd}')
    );
    // The rotation and the truncation were noticed.
    assert!(isr.stderr().contains("renamed"), "{}", isr.stderr());
    assert!(isr.stderr().contains("truncated"), "{}", isr.stderr());
}

#[test]
fn several_servers_are_followed_and_tagged() {
    let env = Env::new();
    let alpha = env.root().join("alpha");
    let beta = env.root().join("beta");
    fs::create_dir(&alpha).expect("creating alpha/");
    fs::create_dir(&beta).expect("creating beta/");
    // Two LOG_DIRs: each server is tagged with its directory's name.
    let mut isr = IsrCmd::new(&alpha, &env.state)
        .config(&env.config)
        .start_at_beginning()
        .without_server()
        .dir(&beta)
        .spawn();
    let mut a = SeqWriter::create(alpha.join("console.log"), "a");
    let mut b = SeqWriter::create(beta.join("console.log"), "b");
    let want_a: Vec<u64> = a.write_lines(50).collect();
    let want_b: Vec<u64> = b.write_lines(70).collect();
    assert!(isr.wait_for_seqs("a", &want_a, ARRIVE), "{}", isr.stderr());
    assert!(isr.wait_for_seqs("b", &want_b, ARRIVE), "{}", isr.stderr());
    for e in isr.events() {
        let expected = if e["fields"]["player"] == "a" {
            "alpha"
        } else {
            "beta"
        };
        assert_eq!(e["server"], expected, "{e}");
    }
    assert!(isr.stop(Duration::from_secs(5)).success());
}
