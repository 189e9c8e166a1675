//! Crash tests of processors (feature `testing`, for tests only): a test re-executes its own
//! binary as a child that runs a processor wrapped in [`StopsMidRound`]; the wrapper prints
//! where it stopped — records committed before, records in the open round — and waits; the
//! parent SIGKILLs the child there ([`sigkill_mid_round`]) and checks what a restart does.

use crate::{ProcessContext, Processor, Result, Timer};
use meridian_log::{Record, TopicName};
use meridian_state::WriteBatch;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const MID_ROUND: &str = "MID-ROUND";

/// Where a [`StopsMidRound`] stops for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopAt {
    /// In the n-th `process` call (1-based), after the inner processor handled its records;
    /// it must not be the first partition of its round (asserted), so that the round's batch
    /// holds more than one partition's work.
    ProcessCall(usize),
    /// After the inner processor's `end_of_round` of the n-th round (1-based): the whole
    /// round is in the batch (and in any tier the hook writes), nothing is committed.
    EndOfRound(usize),
}

/// A processor that stops in the middle of a round (see [`StopAt`]), prints the line
/// [`sigkill_mid_round`] waits for, and sleeps until it is killed.
#[allow(missing_debug_implementations)] // wraps any processor, which need not be Debug
pub struct StopsMidRound {
    inner: Box<dyn Processor>,
    at: StopAt,
    calls: usize,
    rounds: usize,
    committed_records: usize,
    round_records: usize,
}

impl StopsMidRound {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Processor>, at: StopAt) -> Self {
        StopsMidRound { inner, at, calls: 0, rounds: 0, committed_records: 0, round_records: 0 }
    }

    fn stop(&self) -> ! {
        println!("{MID_ROUND} committed={} in_round={}", self.committed_records, self.round_records);
        std::io::stdout().flush().expect("stdout of a crash-test child");
        std::thread::sleep(Duration::from_secs(60));
        panic!("the child was not killed");
    }
}

impl Processor for StopsMidRound {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn topics(&self) -> Vec<TopicName> {
        self.inner.topics()
    }

    fn process(&mut self, ctx: &mut ProcessContext<'_>, topic: &TopicName, records: &[Record]) -> Result<()> {
        self.inner.process(ctx, topic, records)?;
        self.calls += 1;
        self.round_records += records.len();
        if self.at == StopAt::ProcessCall(self.calls) {
            assert!(self.round_records > records.len(), "an earlier partition of this round is in the batch too");
            self.stop();
        }
        Ok(())
    }

    fn end_of_round(&mut self, ctx: &mut ProcessContext<'_>) -> Result<()> {
        self.inner.end_of_round(ctx)?;
        self.rounds += 1;
        if self.at == StopAt::EndOfRound(self.rounds) {
            self.stop();
        }
        // Every earlier round commits before the next one starts.
        self.committed_records += std::mem::take(&mut self.round_records);
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut ProcessContext<'_>, timer: &Timer) -> Result<()> {
        self.inner.on_timer(ctx, timer)
    }

    fn after_commit(&mut self) -> Result<()> {
        self.inner.after_commit()
    }

    fn reset_cache(&mut self) {
        self.inner.reset_cache();
    }

    fn clear_state(&mut self, batch: &mut WriteBatch) {
        self.inner.clear_state(batch);
    }
}

/// Where the killed child stood.
#[derive(Debug, Clone, Copy)]
pub struct Killed {
    /// Records of the rounds committed before the one it stopped in.
    pub committed: usize,
    /// Records in the round it stopped in (in its batch, not committed).
    pub in_round: usize,
}

/// Runs the test `test` (its full path, e.g. `crash::name`) of the current test binary as a
/// child with `env_var` set to `dir`, waits (at most 60 s) until a [`StopsMidRound`] in it
/// says it stopped, and kills it with SIGKILL.
pub fn sigkill_mid_round(test: &str, env_var: &str, dir: &Path) -> Killed {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut child = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(env_var, dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("the crash-test child starts");
    let stdout = BufReader::new(child.stdout.take().expect("the child's stdout is piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(std::io::Result::ok) {
            if let Some(at) = line.find(MID_ROUND) {
                let _ = tx.send(line[at..].to_owned());
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).expect("the child reached the middle of a round");
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("the killed child is reaped");
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
    let field = |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name)?.parse::<usize>().ok()).unwrap_or_else(|| panic!("{name} in {line:?}"));
    Killed { committed: field("committed="), in_round: field("in_round=") }
}
