//! `/ready` tells the truth about what is followed: the real `factorio-isr run` given a log
//! directory that does not exist, or that is a file, answers `/ready` 503 naming the path and
//! the reason (while `/healthz` stays 200 and the directory is retried), and 200 once the
//! directory can be followed; `factorio_isr_component_status{component="tailer"}` follows it.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{Env, Isr, IsrCmd, SeqWriter, metric_sample};

const ARRIVE: Duration = Duration::from_secs(30);

/// `factorio-isr run DIR` with the fast timings of `env`'s config.
fn run_on(env: &Env, dir: &Path) -> Isr {
    IsrCmd::new(dir, &env.state)
        .config(&env.config)
        .start_at_beginning()
        .spawn()
}

/// Waits until `/ready` answers `status` with a body for which `pred` holds; returns the body.
fn wait_ready(isr: &Isr, status: u16, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + ARRIVE;
    loop {
        let (got, body) = isr.admin_get("/ready");
        if got == status && pred(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready never answered {status} as expected; last {got}: {body}\n{}",
            isr.stderr_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tailer_status(isr: &Isr) -> f64 {
    let (status, text) = isr.admin_get("/metrics");
    assert_eq!(status, 200, "{text}");
    metric_sample(&text, "factorio_isr_component_status{component=\"tailer\"}")
        .unwrap_or_else(|| panic!("no tailer status in\n{text}"))
}

/// Once the directory can be followed: `/ready` 200, the tailer's status 1, and lines written
/// there arrive.
fn assert_followed(isr: &Isr, dir: &Path) {
    wait_ready(isr, 200, |_| true);
    assert_eq!(tailer_status(isr), 1.0);
    let mut w = SeqWriter::create(dir.join("console.log"), "w");
    let seqs: Vec<u64> = w.write_lines(3).collect();
    assert!(
        isr.wait_for_seqs("w", &seqs, ARRIVE),
        "{}",
        isr.stderr_tail()
    );
}

#[test]
fn a_missing_log_directory_is_not_ready_until_it_appears() {
    let env = Env::new();
    let dir = env.root().join("server-logs");
    let isr = run_on(&env, &dir);
    let want = format!(
        "tailer: cannot list {}: No such file or directory",
        dir.display()
    );
    let body = wait_ready(&isr, 503, |b| b.contains(&want));
    assert!(!body.contains("os error"), "{body}");
    assert_eq!(
        isr.admin_get("/healthz").0,
        200,
        "a missing directory is retried, not a liveness failure"
    );
    assert_eq!(tailer_status(&isr), 0.0);

    fs::create_dir(&dir).unwrap();
    assert_followed(&isr, &dir);
}

#[test]
fn a_log_directory_that_is_a_file_is_not_ready_until_it_is_a_directory() {
    let env = Env::new();
    let dir = env.root().join("server-logs");
    fs::write(&dir, "not a directory\n").unwrap();
    let isr = run_on(&env, &dir);
    let want = format!("tailer: {} is not a directory", dir.display());
    wait_ready(&isr, 503, |b| b.contains(&want));
    assert_eq!(isr.admin_get("/healthz").0, 200);
    assert_eq!(tailer_status(&isr), 0.0);

    fs::remove_file(&dir).unwrap();
    fs::create_dir(&dir).unwrap();
    assert_followed(&isr, &dir);
}

#[test]
fn one_missing_directory_of_two_is_named_and_the_other_is_followed() {
    let env = Env::new();
    let gone = env.root().join("beta");
    let isr = IsrCmd::new(&env.logs, &env.state)
        .dir(&gone)
        .without_server()
        .config(&env.config)
        .start_at_beginning()
        .spawn();
    let want = format!("cannot list {}", gone.display());
    let body = wait_ready(&isr, 503, |b| b.contains(&want));
    assert!(
        !body.contains(&format!("{}:", env.logs.display())),
        "{body}"
    );
    // The directory that exists is followed meanwhile.
    let mut w = SeqWriter::create(env.log("console.log"), "a");
    let seqs: Vec<u64> = w.write_lines(3).collect();
    assert!(
        isr.wait_for_seqs("a", &seqs, ARRIVE),
        "{}",
        isr.stderr_tail()
    );
    assert_eq!(isr.admin_get("/ready").0, 503);

    fs::create_dir(&gone).unwrap();
    assert_followed(&isr, &gone);
}
