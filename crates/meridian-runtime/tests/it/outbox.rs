//! The outbox: emitted records reach their topic after the commit, in order (within each
//! topic; rounds here alternate between two), exactly once —
//! across failed rounds, SIGKILL at random moments, and aborts in the windows between
//! commit, append and cleanup (a child process: this test binary re-executed).

use crate::support::{
    append_input, assert_emitted_exactly_once, assert_emitted_exactly_once_to, caught_up, committed_emits, echo_topic, env, eventually, input_topic, open,
    output_topic, read_topic, runtime, Emitter,
};
use bytes::Bytes;
use meridian_event::Event;
use meridian_log::{AppendRecord, Log, Record, TopicName};
use meridian_runtime::{CrashPoint, Emit, ProcessContext, Processor, Timer};
use meridian_state::WriteBatch;
use rand::Rng;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "MERIDIAN_OUTBOX_TEST_CHILD_DIR";
const CHILD_MODE: &str = "MERIDIAN_OUTBOX_TEST_CHILD_MODE";
const READY: &str = "OUTBOX-CHILD-READY";

#[test]
fn emitted_records_reach_their_topic_once_in_order_after_the_commit() {
    let e = env();
    append_input(&e.log, 0, 300);
    {
        let rt = runtime(&e.log, &e.store, None);
        rt.spawn(Box::new(Emitter::new("emitter"))).unwrap();
        assert!(eventually(Duration::from_secs(20), || caught_up(&rt) && read_topic(&*e.log, &output_topic()).len() == 300));
        let status = rt.status();
        assert_eq!(status[0].outbox_pending, 0);
        assert_eq!(status[0].last_error, None);
        rt.shutdown();
    }
    assert_eq!(assert_emitted_exactly_once(&*e.log, "emitter"), 300);
    assert_eq!(committed_emits(&*e.store, "emitter"), 300, "the state that counts the emits committed with them");
    // A restart appends nothing again and carries on.
    append_input(&e.log, 300, 310);
    let rt = runtime(&e.log, &e.store, None);
    rt.spawn(Box::new(Emitter::new("emitter"))).unwrap();
    assert!(eventually(Duration::from_secs(20), || caught_up(&rt) && read_topic(&*e.log, &output_topic()).len() >= 310));
    rt.shutdown();
    assert_eq!(assert_emitted_exactly_once(&*e.log, "emitter"), 310);
}

#[test]
fn a_round_that_fails_after_emitting_emits_nothing_and_its_retry_emits_once() {
    let e = env();
    append_input(&e.log, 0, 400);
    let mut emitter = Emitter::new("flaky-emitter");
    emitter.fail_every = Some(5);
    let failures = emitter.failures.clone();
    let rt = runtime(&e.log, &e.store, None);
    rt.spawn(Box::new(emitter)).unwrap();
    assert!(eventually(Duration::from_secs(60), || caught_up(&rt)));
    rt.shutdown();
    assert!(failures.load(Ordering::SeqCst) >= 5, "failures were injected");
    // A failed round's records would be in the log twice: once from it, once from its retry.
    assert_eq!(assert_emitted_exactly_once(&*e.log, "flaky-emitter"), 400);
    assert_eq!(committed_emits(&*e.store, "flaky-emitter"), 400);
}

/// Emits a record whose payload does not carry the emitted id.
struct Careless;

impl Processor for Careless {
    fn name(&self) -> &str {
        "careless"
    }
    fn topics(&self) -> Vec<TopicName> {
        vec![input_topic()]
    }
    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, records: &[Record]) -> meridian_runtime::Result<()> {
        for record in records {
            ctx.emit(Emit { topic: output_topic(), key: record.key.clone(), value: Bytes::from_static(b"{\"id\": \"other\"}"), id: "mine".into() })?;
        }
        Ok(())
    }
    fn clear_state(&mut self, _batch: &mut WriteBatch) {}
}

#[test]
fn an_emit_whose_payload_does_not_carry_its_id_fails_the_round() {
    let e = env();
    append_input(&e.log, 0, 5);
    let rt = runtime(&e.log, &e.store, None);
    rt.spawn(Box::new(Careless)).unwrap();
    assert!(eventually(Duration::from_secs(10), || rt.status()[0].last_error.is_some()));
    let error = rt.status()[0].last_error.clone().unwrap();
    assert!(error.contains("cannot be de-duplicated") && error.contains("\"other\""), "{error}");
    rt.shutdown();
    assert!(read_topic(&*e.log, &output_topic()).is_empty());
}

#[test]
fn a_topic_the_log_refuses_holds_the_outbox_and_the_processor_until_it_exists() {
    let e = env();
    // Fewer records than a round takes per partition: the first round takes all ten.
    append_input(&e.log, 0, 10);
    let missing = TopicName::new("not-yet").unwrap();
    let mut emitter = Emitter::new("waiting");
    emitter.target = missing.clone();
    let rt = runtime(&e.log, &e.store, None);
    rt.spawn(Box::new(emitter)).unwrap();
    // The first round commits 10 emitted records that the log refuses.
    assert!(eventually(Duration::from_secs(10), || rt.status()[0].outbox_pending == 10));
    let status = rt.status()[0].clone();
    assert!(status.last_error.as_deref().is_some_and(|e| e.contains("unknown topic not-yet")), "{status:?}");
    // No further round runs while the outbox is stuck.
    append_input(&e.log, 10, 20);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(committed_emits(&*e.store, "waiting"), 10, "the processor waits for its outbox");
    assert_eq!(rt.status()[0].outbox_pending, 10);
    assert_eq!(rt.total_lag(), 10);
    let err = rt.rebuild("waiting").unwrap_err().to_string();
    assert!(err.contains("outbox holds 10 emitted records") && err.contains("unknown topic"), "{err}");

    e.log.ensure_topic(&missing, 3).unwrap();
    assert!(eventually(Duration::from_secs(20), || caught_up(&rt) && read_topic(&*e.log, &missing).len() == 20));
    let ids: std::collections::HashSet<String> =
        read_topic(&*e.log, &missing).iter().map(|r| meridian_event::payload_id(&r.value).unwrap().into_owned()).collect();
    assert_eq!(ids.len(), 20, "each once");
    assert_eq!(rt.status()[0].last_error, None);
    // Delivered, the rebuild goes ahead.
    rt.rebuild("waiting").unwrap();
    rt.shutdown();
}

#[test]
fn shutdown_finishes_appending_what_a_round_committed() {
    let mut rng = rand::thread_rng();
    for attempt in 0..5 {
        let e = env();
        append_input(&e.log, 0, 2000);
        let rt = runtime(&e.log, &e.store, None);
        rt.spawn(Box::new(Emitter::new("emitter"))).unwrap();
        std::thread::sleep(Duration::from_millis(rng.gen_range(20..120)));
        rt.shutdown();
        let committed = committed_emits(&*e.store, "emitter") as usize;
        let appended = read_topic(&*e.log, &output_topic()).len();
        assert!(committed > 0, "attempt {attempt}: the runtime had time to work");
        assert_eq!(appended, committed, "attempt {attempt}: every committed emit is in the log after shutdown");
    }
}

/// Schedules a timer on its first record; the timer emits one record.
struct TimerEmitter {
    scheduled: bool,
}

impl Processor for TimerEmitter {
    fn name(&self) -> &str {
        "timer-emitter"
    }
    fn topics(&self) -> Vec<TopicName> {
        vec![input_topic()]
    }
    fn process(&mut self, ctx: &mut ProcessContext<'_>, _topic: &TopicName, _records: &[Record]) -> meridian_runtime::Result<()> {
        if !self.scheduled {
            ctx.schedule_timer(meridian_event::Timestamp::now().millis() + 50, b"window-1");
            self.scheduled = true;
        }
        Ok(())
    }
    fn on_timer(&mut self, ctx: &mut ProcessContext<'_>, timer: &Timer) -> meridian_runtime::Result<()> {
        let id = format!("timer/{}", String::from_utf8_lossy(&timer.key));
        let value = serde_json::json!({"id": id, "due": timer.due_ms});
        ctx.emit(Emit { topic: output_topic(), key: Bytes::from_static(b"k"), value: Bytes::from(value.to_string()), id })
    }
    fn clear_state(&mut self, _batch: &mut WriteBatch) {}
}

#[test]
fn a_timer_emits_once_across_a_restart() {
    let e = env();
    append_input(&e.log, 0, 3);
    let rt = runtime(&e.log, &e.store, None);
    rt.spawn(Box::new(TimerEmitter { scheduled: false })).unwrap();
    assert!(eventually(Duration::from_secs(10), || !read_topic(&*e.log, &output_topic()).is_empty()));
    rt.shutdown();
    let rt = runtime(&e.log, &e.store, None);
    rt.spawn(Box::new(TimerEmitter { scheduled: true })).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    rt.shutdown();
    let out = read_topic(&*e.log, &output_topic());
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(meridian_event::payload_id(&out[0].value).as_deref(), Some("timer/window-1"));
}

// ---- crash safety: a child process (this test binary re-executed) does the work ----

/// What the child does, chosen by the parent through the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildMode {
    /// Append input and process it until killed.
    Run,
    /// Process everything there is, shut down cleanly and exit.
    Finish,
    /// Process with a crash point set: the runtime aborts the process there.
    Abort(CrashPoint),
}

impl ChildMode {
    fn as_str(self) -> &'static str {
        match self {
            ChildMode::Run => "run",
            ChildMode::Finish => "finish",
            ChildMode::Abort(CrashPoint::AfterOutboxCommit) => "abort-after-commit",
            ChildMode::Abort(CrashPoint::AfterOutboxAppend) => "abort-after-append",
        }
    }

    fn parse(s: &str) -> ChildMode {
        match s {
            "run" => ChildMode::Run,
            "finish" => ChildMode::Finish,
            "abort-after-commit" => ChildMode::Abort(CrashPoint::AfterOutboxCommit),
            "abort-after-append" => ChildMode::Abort(CrashPoint::AfterOutboxAppend),
            other => panic!("unknown child mode {other:?}"),
        }
    }
}

/// If this process is a child started by a crash test, does the child's work and returns true.
fn run_as_child() -> bool {
    let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_MODE)) else { return false };
    child_main(Path::new(&dir), ChildMode::parse(&mode));
    true
}

fn child_main(dir: &Path, mode: ChildMode) {
    let (log, store) = open(dir);
    // Input ids continue after the highest one in the log (a killed append may have left
    // any subset of its records).
    let mut next = read_topic(&*log, &input_topic())
        .iter()
        .map(|r| Event::decode(&r.value).unwrap().id.as_str()[2..].parse::<usize>().unwrap() + 1)
        .max()
        .unwrap_or(0);
    let crash_at = match mode {
        ChildMode::Abort(point) => Some(point),
        _ => None,
    };
    let rt = runtime(&log, &store, crash_at);
    // Its rounds' records alternate between two topics.
    rt.spawn(Box::new(Emitter::new("emitter").echoing())).unwrap();
    println!("{READY} next={next}");
    match mode {
        ChildMode::Run => {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                append_input(&log, next, next + 10);
                next += 10;
                std::thread::sleep(Duration::from_millis(2));
            }
            panic!("the child was not killed within a minute");
        }
        ChildMode::Finish => {
            assert!(rt.wait_caught_up(Duration::from_secs(60)), "the child caught up");
            // Shutdown waits for the last round's append.
            rt.shutdown();
            assert_eq!(rt.status()[0].outbox_pending, 0);
            log.close().unwrap();
        }
        ChildMode::Abort(point) => {
            std::thread::sleep(Duration::from_secs(20));
            panic!("crash point {point:?} was never reached");
        }
    }
}

/// A child process running `test` (this binary, re-executed) in `mode` over `dir`;
/// `ready` receives the child's ready line.
struct ChildProcess {
    child: Child,
    ready: mpsc::Receiver<String>,
}

impl ChildProcess {
    fn start(test: &str, dir: &Path, mode: ChildMode) -> ChildProcess {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir)
            .env(CHILD_MODE, mode.as_str())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The harness may print "test … … " on the same line first.
                if line.contains(READY) {
                    let _ = tx.send(line);
                }
            }
        });
        ChildProcess { child, ready }
    }

    fn wait_ready(&self) -> String {
        self.ready.recv_timeout(Duration::from_secs(30)).expect("the child started its runtime")
    }

    fn wait(mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the child did not exit within 90 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill9(mut self) {
        // `Child::kill` is SIGKILL on Unix.
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL, not exited: {status:?}");
    }
}

fn create_topics(dir: &Path) {
    let (log, _store) = open(dir);
    log.ensure_topic(&input_topic(), 3).unwrap();
    log.ensure_topic(&output_topic(), 3).unwrap();
    log.ensure_topic(&echo_topic(), 3).unwrap();
    log.close().unwrap();
}

#[test]
fn outbox_records_are_appended_exactly_once_across_sigkill() {
    const TEST: &str = "outbox::outbox_records_are_appended_exactly_once_across_sigkill";
    if run_as_child() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    create_topics(dir.path());
    let mut rng = rand::thread_rng();
    for _ in 0..5 {
        let child = ChildProcess::start(TEST, dir.path(), ChildMode::Run);
        child.wait_ready();
        std::thread::sleep(Duration::from_millis(rng.gen_range(100..500)));
        child.kill9();
    }
    let finish = ChildProcess::start(TEST, dir.path(), ChildMode::Finish);
    let status = finish.wait();
    assert!(status.success(), "the last child finished cleanly: {status:?}");

    let (log, store) = open(dir.path());
    let n_inputs = read_topic(&*log, &input_topic()).len();
    assert!(n_inputs >= 100, "the children appended enough input to mean something: {n_inputs}");
    assert_eq!(assert_emitted_exactly_once(&*log, "emitter"), n_inputs);
    assert_eq!(assert_emitted_exactly_once_to(&*log, "emitter", &echo_topic(), "echo-"), n_inputs, "the second topic too");
    assert_eq!(committed_emits(&*store, "emitter") as usize, n_inputs, "each input counted once in the state too");
    eprintln!("outbox sigkill test: {n_inputs} input records, each emitted exactly once to each of two topics across 5 kills");
}

/// Aborts the child at `point` in its first round with emitted records, then checks what
/// is in the log, adds input and records of another producer, restarts, and checks that
/// each emitted record is in the log exactly once.
fn abort_and_restart(test: &str, point: CrashPoint) {
    let dir = tempfile::tempdir().unwrap();
    create_topics(dir.path());
    {
        let (log, _store) = open(dir.path());
        append_input(&log, 0, 50);
        log.close().unwrap();
    }
    let child = ChildProcess::start(test, dir.path(), ChildMode::Abort(point));
    let status = child.wait();
    assert_eq!(status.signal(), Some(6), "the child aborted at {point:?} (SIGABRT): {status:?}");
    {
        let (log, store) = open(dir.path());
        let committed = committed_emits(&*store, "emitter") as usize;
        assert!(committed > 0, "the aborted round committed its emitted records");
        let appended = read_topic(&*log, &output_topic()).len();
        let echoed = read_topic(&*log, &echo_topic()).len();
        match point {
            CrashPoint::AfterOutboxCommit => assert_eq!((appended, echoed), (0, 0), "nothing appended before the abort"),
            CrashPoint::AfterOutboxAppend => {
                assert_eq!((appended, echoed), (committed, committed), "the round's records (both topics) were appended before the abort")
            }
        }
        // Other producers write to the topic meanwhile; recovery scans past their records.
        let foreign = (0..30)
            .map(|n| AppendRecord {
                key: Bytes::from(format!("u{n}")),
                value: Bytes::from(serde_json::json!({"id": format!("foreign-{n}")}).to_string()),
                timestamp: 0,
            })
            .collect();
        futures::executor::block_on(log.append(&output_topic(), foreign)).unwrap();
        append_input(&log, 50, 80);
        log.close().unwrap();
    }
    let status = ChildProcess::start(test, dir.path(), ChildMode::Finish).wait();
    assert!(status.success(), "the restarted child finished cleanly: {status:?}");
    let (log, _store) = open(dir.path());
    assert_eq!(assert_emitted_exactly_once(&*log, "emitter"), 80);
    assert_eq!(assert_emitted_exactly_once_to(&*log, "emitter", &echo_topic(), "echo-"), 80);
    assert_eq!(read_topic(&*log, &output_topic()).len(), 80 + 30, "the other producer's records are untouched");
}

#[test]
fn outbox_records_are_appended_exactly_once_when_the_process_dies_between_commit_and_append() {
    if run_as_child() {
        return;
    }
    abort_and_restart("outbox::outbox_records_are_appended_exactly_once_when_the_process_dies_between_commit_and_append", CrashPoint::AfterOutboxCommit);
}

#[test]
fn outbox_records_are_appended_exactly_once_when_the_process_dies_between_append_and_cleanup() {
    if run_as_child() {
        return;
    }
    abort_and_restart("outbox::outbox_records_are_appended_exactly_once_when_the_process_dies_between_append_and_cleanup", CrashPoint::AfterOutboxAppend);
}
