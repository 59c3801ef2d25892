//! The open-file limit, and how many log files the tailer may hold open under it.
//!
//! Every followed log file holds one descriptor for as long as it is followed, so the process's
//! open-file limit (`RLIMIT_NOFILE`) bounds how many files factorio-isr can follow. At start,
//! [`raise_to_hard_limit`] raises the soft limit to the hard one, as servers commonly do (the
//! soft limit is often 1024 while the hard one is far higher). An [`OpenFileBudget`] then says
//! how many log files fit: the limit less a reserve kept for everything else (the admin
//! server's connections, the sinks' sockets, checkpoint saves, directory listings, the async
//! runtime), so following files can never starve those.
//!
//! How it fails: limits that cannot be read or raised (a sandbox that forbids it) are reported
//! in [`OpenFileLimit::raise_error`]; the limit in force is used, and without one the tailer's
//! files are not capped (running out of descriptors is then still handled, see
//! [`super::tailer`]). Nothing here panics.

use std::io;

use rlimit::Resource;

/// Default of [`super::config::TailConfig::reserved_open_files`].
pub const fn default_reserved_open_files() -> u64 {
    // The admin server's `max_connections` (64 by default), the process's own (about 16:
    // standard streams, the runtime, the watcher, the listening socket, sink connections),
    // a checkpoint save, a directory listing and a pattern reload.
    128
}

/// Smallest allowed [`super::config::TailConfig::reserved_open_files`]: the process itself
/// holds about 16 (standard streams, the runtime, the watcher, the listening socket, a sink
/// connection), plus a checkpoint save, a listing and a few admin connections.
pub const MIN_RESERVED_OPEN_FILES: u64 = 32;

/// The process's open-file limit, as [`raise_to_hard_limit`] left it.
#[derive(Debug)]
pub struct OpenFileLimit {
    /// The soft limit in force; `None` when unlimited or unknown.
    pub soft: Option<u64>,
    /// The hard limit, the most the soft limit may be raised to; `None` when unlimited or
    /// unknown.
    pub hard: Option<u64>,
    /// The soft limit before it was raised, when it was.
    pub raised_from: Option<u64>,
    /// Why the limits could not be read, or the soft limit raised to the hard one.
    pub raise_error: Option<io::Error>,
}

/// The soft and hard open-file limits, `None` for unlimited.
fn nofile() -> io::Result<(Option<u64>, Option<u64>)> {
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE)?;
    let finite = |l: u64| (l != rlimit::INFINITY).then_some(l);
    Ok((finite(soft), finite(hard)))
}

/// Raises the soft open-file limit to the hard limit (when it is lower) and returns the limits
/// now in force.
pub fn raise_to_hard_limit() -> OpenFileLimit {
    let (soft, hard) = match nofile() {
        Ok(limits) => limits,
        Err(e) => {
            return OpenFileLimit {
                soft: None,
                hard: None,
                raised_from: None,
                raise_error: Some(e),
            };
        }
    };
    let mut limit = OpenFileLimit {
        soft,
        hard,
        raised_from: None,
        raise_error: None,
    };
    // `None` is unlimited: below the hard limit is a number below a larger number or below
    // unlimited.
    let Some(before) = soft.filter(|&s| hard.is_none_or(|h| s < h)) else {
        return limit;
    };
    let to = hard.unwrap_or(rlimit::INFINITY);
    match rlimit::setrlimit(Resource::NOFILE, to, to).and_then(|()| nofile()) {
        Ok((soft, _)) => {
            limit.soft = soft;
            limit.raised_from = Some(before);
        }
        Err(e) => limit.raise_error = Some(e),
    }
    limit
}

/// Whether `e` says the process (`EMFILE`) or the system (`ENFILE`) has no descriptor left.
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// How many log files the tailer may hold open: the open-file limit less a reserve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileBudget {
    /// The process's soft open-file limit; `None` when unknown or unlimited (no cap).
    pub limit: Option<u64>,
    /// Descriptors kept for everything but log files.
    pub reserve: u64,
}

impl OpenFileBudget {
    /// The most log files the tailer holds open at once: `limit − reserve` (0 when the reserve
    /// takes it all), unbounded without a limit.
    pub fn max_files(&self) -> usize {
        self.limit.map_or(usize::MAX, |limit| {
            usize::try_from(limit.saturating_sub(self.reserve)).unwrap_or(usize::MAX)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_the_limit_less_the_reserve() {
        let budget = |limit| OpenFileBudget {
            limit,
            reserve: 128,
        };
        assert_eq!(budget(Some(1024)).max_files(), 896);
        assert_eq!(budget(Some(128)).max_files(), 0);
        assert_eq!(budget(Some(10)).max_files(), 0);
        assert_eq!(budget(None).max_files(), usize::MAX);
    }

    #[test]
    fn only_emfile_and_enfile_are_a_lack_of_descriptors() {
        let os = io::Error::from_raw_os_error;
        assert!(is_out_of_descriptors(&os(libc::EMFILE)));
        assert!(is_out_of_descriptors(&os(libc::ENFILE)));
        assert!(!is_out_of_descriptors(&os(libc::ENOENT)));
        assert!(!is_out_of_descriptors(&os(libc::EACCES)));
        assert!(!is_out_of_descriptors(&io::Error::other("boom")));
    }

    #[test]
    fn raising_leaves_the_soft_limit_at_the_hard_one() {
        // The test process's own limits: raising twice changes nothing more.
        let first = raise_to_hard_limit();
        let again = raise_to_hard_limit();
        if first.raise_error.is_none() {
            assert_eq!(first.soft, first.hard);
            assert_eq!(again.raised_from, None);
        }
        assert_eq!(again.soft, first.soft);
    }
}
