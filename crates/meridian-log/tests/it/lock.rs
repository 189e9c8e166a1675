//! The data-directory lock: one open handle per directory, released by close, drop and
//! the death of the holding process.

use bytes::Bytes;
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::{AppendRecord, Log, LogError, TopicName};
use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Set in the child process: the log directory it opens and holds until it is killed.
const CHILD_DIR_VAR: &str = "MERIDIAN_LOG_LOCK_CHILD_DIR";
/// Printed by the child once it holds the lock and its append was acknowledged.
const CHILD_READY: &str = "MERIDIAN-LOG-LOCK-CHILD-READY";

fn open(dir: &Path) -> Arc<EmbeddedLog> {
    EmbeddedLog::open(dir, EmbeddedLogConfig::default()).unwrap()
}

/// Opens `dir`, expecting a refusal that names process `pid`; returns the message.
fn expect_locked(dir: &Path, pid: u32) -> String {
    let err = EmbeddedLog::open(dir, EmbeddedLogConfig::default()).expect_err("a second open must be refused");
    let message = err.to_string();
    let LogError::Locked { path, holder } = err else { panic!("expected Locked, got {message}") };
    assert_eq!(path, dir.display().to_string());
    assert!(holder.starts_with(&format!("process {pid} on host ")), "holder {holder:?} should name process {pid}");
    assert!(message.contains(&format!("is in use by process {pid} on host")), "{message}");
    assert!(message.ends_with("stop it or choose another --data-dir"), "{message}");
    message
}

#[test]
fn a_second_open_in_the_same_process_is_refused_naming_this_process() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    expect_locked(dir.path(), std::process::id());
    // The refused open changed nothing: the first handle still works.
    let t = TopicName::new("still-mine").unwrap();
    assert_eq!(first.ensure_topic(&t, 1).unwrap(), 1);
    expect_locked(dir.path(), std::process::id());
}

#[test]
fn open_after_close_or_drop_works() {
    let dir = tempfile::tempdir().unwrap();
    let first = open(dir.path());
    first.close().unwrap();
    let second = open(dir.path());
    expect_locked(dir.path(), std::process::id());
    drop(second);
    let third = open(dir.path());
    // Dropping a log that was closed (and so already unlocked) leaves the new holder alone.
    drop(first);
    expect_locked(dir.path(), std::process::id());
    drop(third);
    open(dir.path());
}

/// The child role of `open_after_a_sigkilled_holder_works`: hold the log until killed.
fn hold_until_killed(dir: &Path) -> ! {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let log = open(dir);
    let t = TopicName::new("held").unwrap();
    log.ensure_topic(&t, 1).unwrap();
    let record = AppendRecord { key: Bytes::from_static(b"k"), value: Bytes::from_static(b"acknowledged"), timestamp: 1 };
    runtime.block_on(log.append(&t, vec![record])).unwrap();
    println!("{CHILD_READY}");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn open_after_a_sigkilled_holder_works() {
    if let Some(dir) = std::env::var_os(CHILD_DIR_VAR) {
        hold_until_killed(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["lock::open_after_a_sigkilled_holder_works", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("re-execute the test binary as the holder");
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if line.is_ok_and(|l| l.contains(CHILD_READY)) {
                let _ = ready_tx.send(());
            }
        }
    });
    if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!("the child never reported holding the log");
    }
    let message = expect_locked(dir.path(), child.id());
    eprintln!("refused while the child holds the log: {message}");
    child.kill().expect("SIGKILL the holder");
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the holder died of SIGKILL: {status:?}");
    // The lock file still names the dead process, but the kernel released its lock.
    let log = open(dir.path());
    let t = TopicName::new("held").unwrap();
    let records = log.read(&t, 0, 0, 10, usize::MAX).unwrap();
    assert_eq!(records.len(), 1, "the child's acknowledged append survived its death");
    assert_eq!(records[0].value, Bytes::from_static(b"acknowledged"));
    expect_locked(dir.path(), std::process::id());
}
