//! Checkpoints: where to resume each file after a restart.
//!
//! The store is one JSON file, `checkpoints.json` in the state directory, holding for every file
//! the tailer follows (from when it is opened at its end or first read) its
//! server tag, fingerprint, device and inode, last path, the offset up to which its events were
//! delivered, the date of the run header seen in it (so engine lines keep their time after a
//! restart), and, once the tailer let go of it, when (`let_go_ms`). Offsets only ever reach a
//! record boundary that the sink has taken: a partial last line or a held multi-line error is
//! read again after a restart. The file is also the record that factorio-isr ran here
//! before: at a later start, a file the store does not know is new (see [`super::start`]).
//!
//! Entries are forgotten when they are saved: a file let go [`LET_GO_KEEP_MS`] ago (it did not
//! come back), or any file whose entry has not changed for [`EXPIRE_AFTER_MS`] (the tailer
//! records the files it follows at least daily, so only files gone while factorio-isr was
//! stopped get that old). The fields added since the first format are optional: an older
//! `checkpoints.json` loads as it is.
//!
//! Saving is atomic: the whole store is written to `checkpoints.json.tmp`, fsynced, renamed over
//! `checkpoints.json`, and the directory fsynced, with mode 0600. A crash leaves either the old or
//! the new file, never half of one; a `.tmp` left by a crash after its fsync is newer and is
//! preferred when it parses.
//!
//! How it fails: a checkpoint file that is empty, truncated or not valid JSON is reported (as a
//! [`LoadWarning`]) and ignored, as if factorio-isr had never run, never a crash. Errors writing
//! it are returned to the caller, who logs them and keeps running (the next save retries).

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fingerprint::{FileKey, Fingerprint};
use crate::event::Timestamp;

/// File name of the store inside the state directory.
pub const CHECKPOINT_FILE: &str = "checkpoints.json";

/// Checkpoints of files not seen for this long are forgotten: 30 days.
pub const EXPIRE_AFTER_MS: i64 = 30 * 24 * 3600 * 1000;

/// Checkpoints of files the tailer let go (deleted, rotated away, or in a directory that was
/// gone or empty for the rotate wait) are kept this long, so a file that comes back (a
/// directory renamed away and back, a remount) resumes where it was: one day.
pub const LET_GO_KEEP_MS: i64 = 24 * 3600 * 1000;

/// Format version written into the file.
const VERSION: u32 = 1;

/// Where one file stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCheckpoint {
    /// The server tag the file belongs to.
    pub server: String,
    /// The path it was last seen at.
    pub path: PathBuf,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// Device and inode.
    pub key: FileKey,
    /// Events up to this byte offset were delivered.
    pub offset: u64,
    /// The date of the last run header seen in the file, ms since the epoch.
    #[serde(default)]
    pub run_start_ms: Option<i64>,
    /// When this entry last changed, ms since the epoch.
    pub updated_ms: i64,
    /// When the tailer let go of the file, ms since the epoch; `None` while it is followed.
    /// Such an entry is kept [`LET_GO_KEEP_MS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub let_go_ms: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct StoreFile {
    version: u32,
    saved_ms: i64,
    /// The tags of the servers followed when the file was written (absent in files written
    /// before it was added: then a server is known by its files' entries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    servers: Vec<String>,
    files: Vec<FileCheckpoint>,
}

/// Why a checkpoint file was ignored.
#[derive(Debug)]
pub struct LoadWarning {
    /// The file.
    pub path: PathBuf,
    /// What was wrong with it.
    pub problem: String,
}

impl std::fmt::Display for LoadWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}; ignoring it and starting without checkpoints",
            self.path.display(),
            self.problem
        )
    }
}

/// The checkpoints of all files.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
    entries: HashMap<(String, Fingerprint, FileKey), FileCheckpoint>,
    /// The tags of the servers followed.
    servers: BTreeSet<String>,
    previous_save_ms: Option<i64>,
    /// Changes made, and of those the ones on disk: unsaved changes while they differ.
    changes: u64,
    saved_changes: u64,
}

impl CheckpointStore {
    /// Opens the store in `state_dir`, creating the directory. A corrupt store is ignored with
    /// a warning.
    pub fn open(state_dir: &Path) -> io::Result<(Self, Option<LoadWarning>)> {
        fs::create_dir_all(state_dir)?;
        let mut store = CheckpointStore {
            dir: state_dir.to_owned(),
            entries: HashMap::new(),
            servers: BTreeSet::new(),
            previous_save_ms: None,
            changes: 0,
            saved_changes: 0,
        };
        let main = state_dir.join(CHECKPOINT_FILE);
        let tmp = tmp_path(&main);
        // A complete tmp file is a save that crashed between fsync and rename: it is newer.
        let loaded = match read_store(&tmp) {
            Ok(Some(s)) => Ok(Some(s)),
            _ => read_store(&main),
        };
        let warning = match loaded {
            Ok(Some(file)) => {
                store.previous_save_ms = Some(file.saved_ms);
                store.servers = file.servers.into_iter().collect();
                for cp in file.files {
                    store
                        .entries
                        .insert((cp.server.clone(), cp.fingerprint, cp.key), cp);
                }
                None
            }
            Ok(None) => None,
            Err(problem) => Some(LoadWarning {
                path: main,
                problem,
            }),
        };
        Ok((store, warning))
    }

    /// When the store was last saved before this process started; `None` on a first run.
    pub fn previous_save_ms(&self) -> Option<i64> {
        self.previous_save_ms
    }

    /// Whether the server `tag` was followed when the store was written: it is named in the
    /// store, or (a store written before servers were named) one of its files is.
    pub fn knows_server(&self, tag: &str) -> bool {
        self.servers.contains(tag) || self.entries.values().any(|cp| cp.server == tag)
    }

    /// Records the tags of the servers followed from now on (those no longer configured are
    /// forgotten).
    pub fn set_servers(&mut self, tags: impl IntoIterator<Item = String>) {
        let tags: BTreeSet<String> = tags.into_iter().collect();
        if tags != self.servers {
            self.servers = tags;
            self.changes += 1;
        }
    }

    /// The checkpoint of a file: the entry with the same fingerprint, device and inode; else
    /// the only entry with that fingerprint whose device and inode are not in `taken` (the
    /// file was copied, or its device number changed, as with some container mounts), leaving
    /// out files let go: one of those is the same file only with the same device and inode (a
    /// file deleted and created again with the same first line is a new file).
    pub fn find(
        &self,
        server: &str,
        fingerprint: Fingerprint,
        key: FileKey,
        taken: impl Fn(FileKey) -> bool,
    ) -> Option<&FileCheckpoint> {
        if let Some(cp) = self.entries.get(&(server.to_owned(), fingerprint, key)) {
            return Some(cp);
        }
        let mut candidates = self.entries.values().filter(|cp| {
            cp.server == server
                && cp.fingerprint == fingerprint
                && cp.let_go_ms.is_none()
                && !taken(cp.key)
        });
        match (candidates.next(), candidates.next()) {
            (Some(cp), None) => Some(cp),
            _ => None,
        }
    }

    /// Records where a file stands.
    pub fn update(&mut self, cp: FileCheckpoint) {
        let key = (cp.server.clone(), cp.fingerprint, cp.key);
        if self.entries.get(&key) != Some(&cp) {
            self.entries.insert(key, cp);
            self.changes += 1;
        }
    }

    /// Whether there are changes not saved yet.
    pub fn is_dirty(&self) -> bool {
        self.changes != self.saved_changes
    }

    /// Every checkpoint.
    pub fn entries(&self) -> impl Iterator<Item = &FileCheckpoint> {
        self.entries.values()
    }

    /// Forgets the entries of files let go more than [`LET_GO_KEEP_MS`] before `now`, and
    /// those unchanged for [`EXPIRE_AFTER_MS`].
    pub fn expire(&mut self, now: Timestamp) {
        let now = now.as_millis();
        self.entries.retain(|_, cp| {
            now.saturating_sub(cp.updated_ms) < EXPIRE_AFTER_MS
                && cp
                    .let_go_ms
                    .is_none_or(|t| now.saturating_sub(t) < LET_GO_KEEP_MS)
        });
    }

    /// Writes the store atomically, after forgetting what [`CheckpointStore::expire`] forgets.
    pub fn save(&mut self, now: Timestamp) -> io::Result<()> {
        let pending = self.prepare_save(now)?;
        pending.write()?;
        self.saved(&pending);
        Ok(())
    }

    /// The first half of [`CheckpointStore::save`]: what to write, taken under the caller's
    /// lock so that [`PendingSave::write`] (two fsyncs, milliseconds to tens of them) can run
    /// without it while deliveries go on updating the store.
    pub fn prepare_save(&mut self, now: Timestamp) -> io::Result<PendingSave> {
        self.expire(now);
        let mut files: Vec<FileCheckpoint> = self.entries.values().cloned().collect();
        files.sort_by(|a, b| (&a.server, &a.path).cmp(&(&b.server, &b.path)));
        let body = serde_json::to_vec_pretty(&StoreFile {
            version: VERSION,
            saved_ms: now.as_millis(),
            servers: self.servers.iter().cloned().collect(),
            files,
        })
        .map_err(io::Error::other)?;
        Ok(PendingSave {
            dir: self.dir.clone(),
            body,
            changes: self.changes,
        })
    }

    /// The last half: `pending` is on disk, so the changes it holds are saved (those made
    /// since it was prepared are not).
    pub fn saved(&mut self, pending: &PendingSave) {
        self.saved_changes = self.saved_changes.max(pending.changes);
    }
}

/// A save prepared by [`CheckpointStore::prepare_save`], to be written without the store's lock.
/// Saves of one store must be written one at a time.
pub struct PendingSave {
    dir: PathBuf,
    body: Vec<u8>,
    changes: u64,
}

impl PendingSave {
    /// Writes the file atomically: a temporary file, fsynced, renamed over the checkpoint file,
    /// and the directory fsynced.
    pub fn write(&self) -> io::Result<()> {
        let main = self.dir.join(CHECKPOINT_FILE);
        let tmp = tmp_path(&main);
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&self.body)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &main)?;
        File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

fn tmp_path(main: &Path) -> PathBuf {
    let mut p = main.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

/// `Ok(None)` when the file does not exist; `Err(problem)` when it exists but is unusable.
fn read_store(path: &Path) -> Result<Option<StoreFile>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("the file is empty".to_owned());
    }
    let file: StoreFile =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a valid checkpoint file: {e}"))?;
    if file.version != VERSION {
        return Err(format!("unknown format version {}", file.version));
    }
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(server: &str, fp: u64, offset: u64) -> FileCheckpoint {
        FileCheckpoint {
            server: server.into(),
            path: PathBuf::from("/srv/factorio-current.log"),
            fingerprint: Fingerprint(fp),
            key: FileKey { dev: 1, ino: 2 },
            offset,
            run_start_ms: Some(5),
            updated_ms: 1000,
            let_go_ms: None,
        }
    }

    #[test]
    fn a_change_made_while_a_save_is_written_stays_unsaved() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = CheckpointStore::open(dir.path()).unwrap();
        store.update(cp("a", 1, 10));
        let pending = store.prepare_save(Timestamp(2000)).unwrap();
        // A delivery while the file is written, without the store's lock.
        store.update(cp("a", 1, 20));
        pending.write().unwrap();
        store.saved(&pending);
        assert!(store.is_dirty(), "the offset 20 is not on disk yet");
        let (on_disk, _) = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(on_disk.entries.values().next().unwrap().offset, 10);
        store.save(Timestamp(3000)).unwrap();
        assert!(!store.is_dirty());
        let (on_disk, _) = CheckpointStore::open(dir.path()).unwrap();
        assert_eq!(on_disk.entries.values().next().unwrap().offset, 20);
    }

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, warning) = CheckpointStore::open(dir.path()).unwrap();
        assert!(warning.is_none());
        assert_eq!(store.previous_save_ms(), None);
        store.update(cp("a", 1, 10));
        store.update(cp("b", 1, 20));
        assert!(store.is_dirty());
        store.save(Timestamp(2000)).unwrap();
        assert!(!store.is_dirty());
        assert!(!dir.path().join("checkpoints.json.tmp").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join(CHECKPOINT_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let (again, warning) = CheckpointStore::open(dir.path()).unwrap();
        assert!(warning.is_none());
        assert_eq!(again.previous_save_ms(), Some(2000));
        let key = FileKey { dev: 1, ino: 2 };
        let get = |s: &str| again.find(s, Fingerprint(1), key, |_| false).unwrap();
        assert_eq!(get("a").offset, 10);
        assert_eq!(get("b").offset, 20);
        assert_eq!(get("a").run_start_ms, Some(5));
    }

    #[test]
    fn corrupt_or_empty_stores_are_reported_and_ignored() {
        for content in [
            &b""[..],
            b"   \n",
            b"{\"version\":1,\"saved_ms\":",
            b"\xff\xfe garbage",
            b"[]",
        ] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(CHECKPOINT_FILE), content).unwrap();
            let (store, warning) = CheckpointStore::open(dir.path()).unwrap();
            let warning = warning.expect("a warning");
            assert!(
                warning.to_string().contains("checkpoints.json"),
                "{warning}"
            );
            assert_eq!(store.entries().count(), 0);
            assert_eq!(store.previous_save_ms(), None);
        }
    }

    #[test]
    fn a_complete_tmp_file_left_by_a_crash_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = CheckpointStore::open(dir.path()).unwrap();
        store.update(cp("a", 1, 10));
        store.save(Timestamp(2000)).unwrap();
        // A newer save that crashed after fsync, before rename.
        store.update(cp("a", 1, 99));
        store.save(Timestamp(3000)).unwrap();
        fs::rename(
            dir.path().join(CHECKPOINT_FILE),
            dir.path().join("checkpoints.json.tmp"),
        )
        .unwrap();
        fs::write(
            dir.path().join(CHECKPOINT_FILE),
            b"{\"version\":1,\"saved_ms\":2000,\"files\":[]}",
        )
        .unwrap();
        let (again, _) = CheckpointStore::open(dir.path()).unwrap();
        let key = FileKey { dev: 1, ino: 2 };
        assert_eq!(
            again
                .find("a", Fingerprint(1), key, |_| false)
                .unwrap()
                .offset,
            99
        );
    }

    #[test]
    fn same_first_line_in_two_files_keeps_two_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = CheckpointStore::open(dir.path()).unwrap();
        let mut a = cp("s", 7, 10);
        a.key = FileKey { dev: 1, ino: 100 };
        let mut b = cp("s", 7, 20);
        b.key = FileKey { dev: 1, ino: 200 };
        store.update(a.clone());
        store.update(b.clone());
        assert_eq!(store.find("s", Fingerprint(7), a.key, |_| false), Some(&a));
        assert_eq!(store.find("s", Fingerprint(7), b.key, |_| false), Some(&b));
        // Unknown inode and two candidates: no guess.
        let other = FileKey { dev: 9, ino: 9 };
        assert_eq!(store.find("s", Fingerprint(7), other, |_| false), None);
        // One candidate left (the other is open under its own inode): that one.
        assert_eq!(
            store.find("s", Fingerprint(7), other, |k| k == a.key),
            Some(&b)
        );
    }

    #[test]
    fn a_store_written_before_let_go_ms_loads_and_is_written_alike() {
        let dir = tempfile::tempdir().unwrap();
        let old = r#"{
  "version": 1,
  "saved_ms": 2000,
  "files": [
    {
      "server": "a",
      "path": "/srv/factorio-current.log",
      "fingerprint": "0000000000000001",
      "key": { "dev": 1, "ino": 2 },
      "offset": 10,
      "run_start_ms": 5,
      "updated_ms": 1000
    }
  ]
}"#;
        fs::write(dir.path().join(CHECKPOINT_FILE), old).unwrap();
        let (mut store, warning) = CheckpointStore::open(dir.path()).unwrap();
        assert!(warning.is_none());
        let key = FileKey { dev: 1, ino: 2 };
        assert_eq!(
            store.find("a", Fingerprint(1), key, |_| false),
            Some(&cp("a", 1, 10))
        );
        // A followed file's entry is written without the new field, as before.
        store.update(cp("a", 1, 11));
        store.save(Timestamp(3000)).unwrap();
        let text = fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).unwrap();
        assert!(!text.contains("let_go_ms"), "{text}");
        // Without a list of servers, a server is known by its files.
        assert!(store.knows_server("a"));
        assert!(!store.knows_server("b"));
    }

    #[test]
    fn the_servers_followed_are_saved_and_known_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = CheckpointStore::open(dir.path()).unwrap();
        assert!(!store.knows_server("empty"));
        store.set_servers(["empty".to_owned(), "busy".to_owned()]);
        assert!(
            store.is_dirty(),
            "a new server is saved even before any file is"
        );
        store.save(Timestamp(1000)).unwrap();
        let (mut again, _) = CheckpointStore::open(dir.path()).unwrap();
        assert!(again.knows_server("empty") && again.knows_server("busy"));
        again.set_servers(["busy".to_owned(), "empty".to_owned()]);
        assert!(!again.is_dirty(), "the same servers change nothing");
        again.set_servers(["busy".to_owned()]);
        again.save(Timestamp(2000)).unwrap();
        let (third, _) = CheckpointStore::open(dir.path()).unwrap();
        assert!(
            !third.knows_server("empty"),
            "a server no longer configured is forgotten"
        );
    }

    #[test]
    fn a_file_let_go_is_found_again_only_under_its_device_and_inode() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = CheckpointStore::open(dir.path()).unwrap();
        let mut gone = cp("s", 7, 10);
        gone.let_go_ms = Some(1000);
        store.update(gone.clone());
        assert_eq!(
            store.find("s", Fingerprint(7), gone.key, |_| false),
            Some(&gone)
        );
        let other = FileKey { dev: 9, ino: 9 };
        assert_eq!(store.find("s", Fingerprint(7), other, |_| false), None);
    }

    #[test]
    fn files_let_go_are_kept_a_day_then_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = CheckpointStore::open(dir.path()).unwrap();
        let mut gone = cp("a", 1, 10);
        gone.let_go_ms = Some(1000);
        store.update(gone.clone());
        store.update(cp("b", 2, 20));
        store.save(Timestamp(1000 + LET_GO_KEEP_MS - 1)).unwrap();
        let (again, _) = CheckpointStore::open(dir.path()).unwrap();
        let key = FileKey { dev: 1, ino: 2 };
        assert_eq!(again.find("a", Fingerprint(1), key, |_| false), Some(&gone));
        store.save(Timestamp(1000 + LET_GO_KEEP_MS)).unwrap();
        let servers: Vec<&str> = store.entries().map(|cp| cp.server.as_str()).collect();
        assert_eq!(servers, ["b"], "the followed file stays");
    }

    #[test]
    fn old_entries_expire_on_save() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = CheckpointStore::open(dir.path()).unwrap();
        store.update(cp("a", 1, 10));
        store.save(Timestamp(1000 + EXPIRE_AFTER_MS + 1)).unwrap();
        assert_eq!(store.entries().count(), 0);
    }
}
