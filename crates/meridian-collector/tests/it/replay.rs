//! A dead-letter replay does its log reads, pipeline work and cursor commit off the
//! async thread.

use crate::gated::fixture_with;
use meridian_collector::split::Framing;
use meridian_collector::BodyFormat;
use meridian_event::AppId;
use meridian_pipeline::Pipeline;
use std::path::Path;

#[tokio::test(flavor = "current_thread")]
async fn a_replay_reads_and_commits_on_the_blocking_pool_and_stores_the_fixed_events() {
    let f = fixture_with(Pipeline::default());
    let app = AppId::new("shop").unwrap();
    // Invalid events (no action) become dead letters.
    let report = f.collector.ingest(&app, br#"[{"id": "d1", "user": "u1"}, {"id": "d2", "user": "u2"}]"#, BodyFormat::Events(Framing::Auto)).await.unwrap();
    assert_eq!(report.rejected, 2);
    // The fix: a pipeline that fills in the missing action.
    f.collector.set_pipeline(Pipeline::from_toml_str("[[parsers]]\nset_defaults = { action = \"view\" }\n", Path::new(".")).unwrap()).unwrap();
    let async_thread = std::thread::current().id();
    let (log_before, store_before) = (f.log.blocking_calls().len(), f.store.calls().len());
    let replayed = f.collector.replay_dead_letters(&app).await.unwrap();
    assert_eq!((replayed.replayed, replayed.accepted), (2, 2), "{replayed:?}");
    let log_calls = &f.log.blocking_calls()[log_before..];
    let store_calls = &f.store.calls()[store_before..];
    assert!(log_calls.iter().any(|(c, _)| *c == "log.read") && store_calls.iter().any(|(c, _)| *c == "store.commit"), "{log_calls:?} {store_calls:?}");
    let on_async: Vec<_> = log_calls.iter().chain(store_calls).filter(|(_, t)| *t == async_thread).map(|(c, _)| *c).collect();
    assert!(on_async.is_empty(), "blocking calls on the async thread: {on_async:?}");
    assert_eq!(f.stored_ids(), vec!["d1", "d2"]);
    // The cursor moved: a second replay finds nothing new.
    assert_eq!(f.collector.replay_dead_letters(&app).await.unwrap().replayed, 0);
}
