//! The directory lock: one process at a time may open a log directory.
//!
//! [`DirectoryLock::acquire`] takes an exclusive OS file lock (`flock`, through
//! [`std::fs::File::try_lock`]) on `dir/lock` and writes the holder's PID and host into
//! the file, so a second opener can say who holds it. The kernel releases the lock when
//! the handle is closed or the process dies, so a crashed server leaves no stale lock:
//! the file may still name the dead process, but nothing holds its lock.
//!
//! The lock belongs to an open file description, so a second open of the same directory
//! in the same process is refused as well.

use crate::{LogError, Result};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside the log directory.
pub(crate) const LOCK_FILE: &str = "lock";

/// How long `acquire` keeps trying a held lock before reporting its holder.
const RELEASE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// What the lock file says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
}

/// An exclusive lock on a log directory, held until dropped.
#[derive(Debug)]
pub(crate) struct DirectoryLock {
    file: File,
    path: PathBuf,
}

impl DirectoryLock {
    /// Locks `dir` (which must exist) or fails with [`LogError::Locked`] naming the
    /// process that holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<DirectoryLock> {
        DirectoryLock::acquire_within(dir, RELEASE_GRACE)
    }

    /// As [`DirectoryLock::acquire`], trying again for up to `grace` while the lock is held:
    /// a lock is shared by every copy of its file descriptor, and a process that forks a
    /// child (a test harness, a supervisor) lends its descriptors to the child until the
    /// child's `exec` closes them, so a lock released just then stays held for a moment.
    /// A running holder holds it for good, and is reported after `grace`.
    pub(crate) fn acquire_within(dir: &Path, grace: std::time::Duration) -> Result<DirectoryLock> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let deadline = std::time::Instant::now() + grace;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < deadline => std::thread::sleep(std::time::Duration::from_millis(20)),
                Err(TryLockError::WouldBlock) => {
                    return Err(LogError::Locked { path: dir.display().to_string(), holder: describe_holder(&mut file) });
                }
                Err(TryLockError::Error(e)) => return Err(e.into()),
            }
        }
        let holder = Holder { pid: std::process::id(), host: host_name() };
        let json = serde_json::to_vec(&holder).map_err(std::io::Error::other)?;
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&json)?;
        // Only informative: a holder that crashes before this is durable leaves a lock the
        // kernel has already released.
        file.sync_data()?;
        Ok(DirectoryLock { file, path })
    }
}

impl Drop for DirectoryLock {
    fn drop(&mut self) {
        // Still holding the lock: nobody else can have written the file. Emptying it keeps
        // a stopped server's PID from being shown to the next opener.
        if let Err(e) = self.file.set_len(0) {
            tracing::debug!(path = %self.path.display(), error = %e, "could not empty the lock file");
        }
        // Closing the handle (after this) releases the lock.
    }
}

/// "process 1234 on host x", from the lock file of a directory someone else holds.
fn describe_holder(file: &mut File) -> String {
    let mut text = String::new();
    let parsed = file.read_to_string(&mut text).ok().and_then(|_| serde_json::from_str::<Holder>(&text).ok());
    match parsed {
        Some(h) => format!("process {} on host {}", h.pid, h.host),
        // The holder has locked the file but not written it yet.
        None => "another process".to_owned(),
    }
}

/// This machine's host name (Linux), or `unknown`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_and_a_dropped_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirectoryLock::acquire(dir.path()).unwrap();
        let written: Holder = serde_json::from_slice(&std::fs::read(dir.path().join(LOCK_FILE)).unwrap()).unwrap();
        assert_eq!(written.pid, std::process::id());
        assert_eq!(written.host, host_name());
        match DirectoryLock::acquire(dir.path()) {
            Err(LogError::Locked { path, holder }) => {
                assert_eq!(path, dir.path().display().to_string());
                assert_eq!(holder, format!("process {} on host {}", std::process::id(), host_name()));
            }
            other => panic!("expected a lock error, got {other:?}"),
        }
        drop(first);
        assert_eq!(std::fs::metadata(dir.path().join(LOCK_FILE)).unwrap().len(), 0, "emptied on release");
        DirectoryLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_locked_but_unwritten_file_names_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.path().join(LOCK_FILE)).unwrap();
        file.try_lock().unwrap();
        match DirectoryLock::acquire(dir.path()) {
            Err(LogError::Locked { holder, .. }) => assert_eq!(holder, "another process"),
            other => panic!("expected a lock error, got {other:?}"),
        }
    }

    #[test]
    fn a_lock_released_within_the_grace_is_taken_and_a_held_one_is_reported_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirectoryLock::acquire(dir.path()).unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            drop(first);
        });
        let started = std::time::Instant::now();
        let second = DirectoryLock::acquire_within(dir.path(), std::time::Duration::from_secs(5)).expect("taken once released");
        assert!(started.elapsed() >= std::time::Duration::from_millis(150), "it waited for the release");
        releaser.join().unwrap();
        let started = std::time::Instant::now();
        assert!(matches!(DirectoryLock::acquire_within(dir.path(), std::time::Duration::from_millis(100)), Err(LogError::Locked { .. })));
        assert!(started.elapsed() >= std::time::Duration::from_millis(100), "reported after the grace, not before");
        drop(second);
    }
}
