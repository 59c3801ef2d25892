//! Model test of the tailer: random sequences of writes, partial writes, rename rotations,
//! copytruncates, deletions, restarts and polls, against a model of what was written.
//!
//! The property: every line is read at most once, every line read was written, and every line
//! written is read, except the lines inside a copytruncate window (written to the file after
//! the tailer's last look and before the truncation: no tailer can see those, they are in the
//! copy). After a restart the tailer resumes from the checkpoints of what it delivered, so a
//! restart loses nothing and repeats nothing.
//!
//! Like Vector's file-watcher tests, the tailer is stepped directly (no threads, no sleeping):
//! one `Poll` is one `Tailer::poll`, and time is a counter.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use factorio_isr::tail::checkpoint::CheckpointStore;
use factorio_isr::tail::tailer::{
    ServerSource, StartAt, TailBatch, TailOptions, Tailer, default_globs,
};

#[derive(Clone, Debug)]
enum Op {
    /// Append complete lines to factorio-current.log (creating it if needed).
    Write(u8),
    /// Append the first half of a line; the next write completes it.
    WriteHalf,
    /// One pass of the tailer.
    Poll,
    /// Let time pass (deleted files are let go after the rotate wait).
    Tick(u16),
    /// factorio-current.log → factorio-previous.log; the next write creates a new file.
    Rotate,
    /// Copy the file away and truncate it in place.
    CopyTruncate,
    /// Delete factorio-current.log.
    Delete,
    /// Stop the tailer (all it handed out is delivered) and start a new one from checkpoints.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..20).prop_map(Op::Write),
        2 => Just(Op::WriteHalf),
        6 => Just(Op::Poll),
        1 => (1u16..3000).prop_map(Op::Tick),
        2 => Just(Op::Rotate),
        1 => Just(Op::CopyTruncate),
        1 => Just(Op::Delete),
        1 => Just(Op::Restart),
    ]
}

const ROTATE_WAIT: Duration = Duration::from_millis(1000);

struct World {
    dir: PathBuf,
    state: PathBuf,
    current: Option<File>,
    next_seq: u64,
    /// A half-written line: its seq and the rest to write.
    half: Option<(u64, String)>,
    written: BTreeSet<u64>,
    /// Seqs in the current file the tailer has not looked at yet.
    unread_in_current: BTreeSet<u64>,
    /// Seqs lost to a copytruncate window.
    window: BTreeSet<u64>,
    read: BTreeMap<u64, u32>,
    tailer: Tailer,
    now: Instant,
}

fn options() -> TailOptions {
    TailOptions {
        // As in production: directories are listed every second, and at once when the watcher
        // reports a file created, renamed or deleted (the model asks for that itself).
        discovery_interval: Duration::from_secs(1),
        rotate_wait: ROTATE_WAIT,
        record_flush: Duration::from_millis(100),
        start_at: StartAt::End,
        read_chunk_bytes: 4096,
        max_read_bytes_per_file: 1 << 20,
        ..TailOptions::default()
    }
}

fn new_tailer(dir: &Path, state: &Path) -> Tailer {
    let (store, warning) = CheckpointStore::open(state).unwrap();
    assert!(warning.is_none());
    let server = ServerSource::new("model", dir.to_owned(), &default_globs()).unwrap();
    Tailer::new(vec![server], options(), &store)
}

impl World {
    fn new(root: &Path) -> Self {
        let dir = root.join("logs");
        let state = root.join("state");
        fs::create_dir_all(&dir).unwrap();
        World {
            tailer: new_tailer(&dir, &state),
            dir,
            state,
            current: None,
            next_seq: 0,
            half: None,
            written: BTreeSet::new(),
            unread_in_current: BTreeSet::new(),
            window: BTreeSet::new(),
            read: BTreeMap::new(),
            now: Instant::now(),
        }
    }

    fn current_path(&self) -> PathBuf {
        self.dir.join("factorio-current.log")
    }

    fn file(&mut self) -> &mut File {
        if self.current.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.current_path())
                .unwrap();
            self.current = Some(f);
            self.tailer.request_discovery();
        }
        self.current.as_mut().unwrap()
    }

    fn line(seq: u64) -> String {
        format!("2025-10-08 08:58:34 [CHAT] model: seq={seq:08} padding-to-make-lines-longer\n")
    }

    fn finish_half(&mut self) {
        if let Some((seq, rest)) = self.half.take() {
            self.file().write_all(rest.as_bytes()).unwrap();
            self.written.insert(seq);
            self.unread_in_current.insert(seq);
        }
    }

    fn write(&mut self, n: u8) {
        self.finish_half();
        for _ in 0..n {
            let seq = self.next_seq;
            self.next_seq += 1;
            self.file().write_all(Self::line(seq).as_bytes()).unwrap();
            self.written.insert(seq);
            self.unread_in_current.insert(seq);
        }
    }

    fn write_half(&mut self) {
        self.finish_half();
        let seq = self.next_seq;
        self.next_seq += 1;
        let line = Self::line(seq);
        let (a, b) = line.split_at(line.len() / 2);
        self.file().write_all(a.as_bytes()).unwrap();
        self.half = Some((seq, b.to_owned()));
    }

    /// Delivers batches: counts seqs and records checkpoints as delivered.
    fn deliver(&mut self, batches: Vec<TailBatch>) {
        let (mut store, _) = CheckpointStore::open(&self.state).unwrap();
        // As `TailSource::build` records the servers it follows.
        store.set_servers(["model".to_owned()]);
        for b in batches {
            for r in &b.records {
                for line in r.text.lines() {
                    let seq: u64 = line
                        .split("seq=")
                        .nth(1)
                        .and_then(|s| s.get(..8))
                        .and_then(|s| s.parse().ok())
                        .unwrap_or_else(|| panic!("a line that was never written: {line:?}"));
                    *self.read.entry(seq).or_insert(0) += 1;
                }
            }
            if let Some(cp) = b.checkpoint {
                store.update(cp);
            }
        }
        store.save(factorio_isr::event::Timestamp::now()).unwrap();
    }

    fn poll(&mut self) {
        let mut out = Vec::new();
        self.tailer.poll(self.now, &mut |b| out.push(b));
        self.deliver(out);
        // Everything complete in the current file has been looked at now.
        self.unread_in_current.clear();
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write(n) => self.write(*n),
            Op::WriteHalf => self.write_half(),
            Op::Poll => self.poll(),
            Op::Tick(ms) => self.now += Duration::from_millis(u64::from(*ms)),
            Op::Rotate => {
                // Factorio restarts: the old process is gone (its last line complete), the
                // tailer has seen the file (rotations are minutes apart, discovery is 1 s).
                self.finish_half();
                self.poll();
                if self.current_path().exists() {
                    fs::rename(self.current_path(), self.dir.join("factorio-previous.log"))
                        .unwrap();
                    self.tailer.request_discovery();
                }
                self.current = None;
            }
            Op::CopyTruncate => {
                // A truncation is only a data change to the watcher: no discovery is asked for.
                if let Some(f) = &self.current {
                    f.set_len(0).unwrap();
                    // Lines the tailer had not looked at, and a half line, are in the window.
                    self.window.append(&mut self.unread_in_current);
                    if let Some((seq, _)) = self.half.take() {
                        self.window.insert(seq);
                    }
                }
            }
            Op::Delete => {
                self.finish_half();
                self.poll();
                if self.current_path().exists() {
                    fs::remove_file(self.current_path()).unwrap();
                    self.tailer.request_discovery();
                }
                self.current = None;
            }
            Op::Restart => {
                self.tailer = new_tailer(&self.dir, &self.state);
            }
        }
    }

    fn finish(&mut self) {
        self.finish_half();
        // Poll until nothing new, with time passing so deleted files are let go.
        for _ in 0..5 {
            self.poll();
            self.now += ROTATE_WAIT * 2;
        }
        self.poll();
    }
}

fn check(ops: &[Op]) -> Result<(), TestCaseError> {
    let root = tempfile::tempdir().unwrap();
    let mut w = World::new(root.path());
    // Let the tailer take its first look at an empty directory.
    w.poll();
    for op in ops {
        w.apply(op);
    }
    w.finish();
    let dups: Vec<_> = w
        .read
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    prop_assert!(dups.is_empty(), "read more than once: {:?}", dups);
    let missing: Vec<_> = w
        .written
        .iter()
        .filter(|s| !w.read.contains_key(s) && !w.window.contains(s))
        .copied()
        .collect();
    prop_assert!(missing.is_empty(), "never read: {:?}", missing);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_line_outside_a_copytruncate_window_is_read_exactly_once(
        ops in proptest::collection::vec(op(), 1..40)
    ) {
        check(&ops)?;
    }
}

#[test]
fn a_restart_between_a_write_and_a_rotation_loses_nothing() {
    check(&[
        Op::Write(3),
        Op::Poll,
        Op::Write(2),
        Op::Restart,
        Op::Rotate,
        Op::Write(4),
        Op::Restart,
        Op::Write(1),
    ])
    .unwrap();
}

#[test]
fn a_file_created_while_stopped_is_read_from_its_start() {
    check(&[
        Op::Write(2),
        Op::Rotate,
        Op::Restart,
        Op::Write(3),
        Op::Poll,
    ])
    .unwrap();
}

#[test]
fn a_truncation_rewritten_past_the_old_offset_is_read_once() {
    check(&[
        Op::Write(3),
        Op::Poll,
        Op::CopyTruncate,
        Op::Write(10),
        Op::Poll,
    ])
    .unwrap();
}

#[test]
fn a_truncation_after_a_look_loses_nothing() {
    check(&[
        Op::Write(5),
        Op::Poll,
        Op::CopyTruncate,
        Op::Write(5),
        Op::Poll,
    ])
    .unwrap();
}

#[test]
fn a_truncation_rewritten_to_exactly_the_size_read_loses_nothing() {
    // Found by the model: 18 lines read, truncated, 18 lines of the same length written, so
    // the size is unchanged and only the modification time and first line tell.
    check(&[
        Op::Write(18),
        Op::Poll,
        Op::CopyTruncate,
        Op::Write(18),
        Op::Delete,
    ])
    .unwrap();
}
