//! The file source's own checks: CSV rows as objects, partial lines, resume from the
//! stored position across a real store reopen, new files, blank and bad lines, bad configs.

use crate::{append, FileHarness};
use meridian_sources::{FileSource, FileSourceConfig, Source, SourceError, SourceMessage};
use meridian_state::{KvStore, RedbStore};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_millis(300);

fn texts(batch: &[SourceMessage]) -> Vec<String> {
    batch.iter().map(|m| String::from_utf8(m.payload.to_vec()).unwrap()).collect()
}

async fn ack_all(source: &mut FileSource, batch: &[SourceMessage]) {
    source.ack(batch.iter().map(|m| m.token.clone()).collect()).await.unwrap();
}

#[tokio::test]
async fn csv_rows_become_objects_of_strings_keyed_by_the_header() {
    let h = FileHarness::new();
    append(h.dir.path(), "orders.csv", "user,action,amount\nu1,order,12.5\n\"u,2\",\"say \"\"hi\"\"\",3\nu3,too,many,columns\r\nu4,refund,1\n");
    let mut source = h.source().await;
    let batch = source.next(10, WAIT).await.unwrap();
    let values: Vec<serde_json::Value> = batch.iter().map(|m| serde_json::from_slice(&m.payload).unwrap_or(serde_json::Value::String(String::from_utf8_lossy(&m.payload).into_owned()))).collect();
    assert_eq!(values[0], serde_json::json!({"user": "u1", "action": "order", "amount": "12.5"}));
    assert_eq!(values[1], serde_json::json!({"user": "u,2", "action": "say \"hi\"", "amount": "3"}), "quoted fields");
    assert_eq!(values[2], serde_json::json!("u3,too,many,columns"), "a row of another width is delivered raw, without its CR LF");
    assert_eq!(values[3], serde_json::json!({"user": "u4", "action": "refund", "amount": "1"}), "reading goes on after a bad row");
    assert_eq!(batch.len(), 4, "the header is not a message");
    let header_len = "user,action,amount\n".len() as u64;
    assert_eq!(batch[0].id, format!("orders.csv:{header_len}"));
    assert_eq!(batch[0].origin.offset, header_len);
    assert_eq!(batch[0].origin.kind, "file");
    assert!(batch[0].origin.location.ends_with("orders.csv"));
    ack_all(&mut source, &batch[..2]).await;
    drop(source);
    // Reopened past the header: the header is read again, the rows resume after the ack.
    let mut source = h.source().await;
    let batch = source.next(10, WAIT).await.unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(texts(&batch)[0], "u3,too,many,columns");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&batch[1].payload).unwrap()["user"], "u4", "the header still maps rows after a resume");
}

#[tokio::test]
async fn a_partial_last_line_is_delivered_only_once_completed() {
    let h = FileHarness::new();
    let path = append(h.dir.path(), "a.ndjson", "{\"n\":1}\n{\"n\":");
    let mut source = h.source().await;
    let batch = source.next(10, WAIT).await.unwrap();
    assert_eq!(texts(&batch), vec!["{\"n\":1}"]);
    assert!(source.next(10, WAIT).await.unwrap().is_empty(), "the partial line waits");
    append(h.dir.path(), "a.ndjson", "2}\n");
    let batch2 = source.next(10, WAIT).await.unwrap();
    assert_eq!(texts(&batch2), vec!["{\"n\":2}"]);
    assert_eq!(batch2[0].id, "a.ndjson:8");
    assert_eq!(batch2[0].origin.location, path.display().to_string());
}

#[tokio::test]
async fn next_waits_for_a_line_appended_meanwhile() {
    let h = FileHarness::new();
    let mut source = h.source().await;
    let dir = h.dir.path().to_owned();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        append(&dir, "late.jsonl", "{\"late\":true}\n");
    });
    let batch = source.next(10, Duration::from_secs(5)).await.unwrap();
    writer.await.unwrap();
    assert_eq!(texts(&batch), vec!["{\"late\":true}"], "tailing: the line is delivered within the wait");
}

#[tokio::test]
async fn a_reopened_source_resumes_from_the_stored_position_across_a_store_reopen() {
    let h = FileHarness::new();
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("state.redb");
    for i in 0..10 {
        append(h.dir.path(), "a.ndjson", &format!("{{\"n\":{i}}}\n"));
    }
    {
        let store: Arc<dyn KvStore> = Arc::new(RedbStore::open(&db).unwrap());
        let mut source = FileSource::open(h.config(), store.clone()).await.unwrap();
        let batch = source.next(4, WAIT).await.unwrap();
        assert_eq!(batch.len(), 4);
        ack_all(&mut source, &batch).await;
        let unacked = source.next(3, WAIT).await.unwrap();
        assert_eq!(unacked.len(), 3, "handed out, never acked");
        assert_eq!(source.positions().get("a.ndjson"), Some(&(batch[3].origin.offset + batch[3].payload.len() as u64 + 1)));
    }
    let store: Arc<dyn KvStore> = Arc::new(RedbStore::open(&db).unwrap());
    let mut source = FileSource::open(h.config(), store).await.unwrap();
    let batch = source.next(100, WAIT).await.unwrap();
    assert_eq!(texts(&batch), (4..10).map(|i| format!("{{\"n\":{i}}}")).collect::<Vec<_>>(), "resumed after the last acked line");
}

#[tokio::test]
async fn new_files_are_picked_up_and_files_are_read_in_name_order() {
    let h = FileHarness::new();
    append(h.dir.path(), "b.ndjson", "{\"f\":\"b\"}\n");
    append(h.dir.path(), "a.jsonl", "{\"f\":\"a\"}\n\n   \n");
    append(h.dir.path(), "notes.txt", "not a source file\n");
    std::fs::create_dir(h.dir.path().join("sub.ndjson")).unwrap();
    let mut source = h.source().await;
    let batch = source.next(10, WAIT).await.unwrap();
    assert_eq!(texts(&batch), vec!["{\"f\":\"a\"}", "{\"f\":\"b\"}"], "name order; blank lines, other extensions and directories skipped");
    ack_all(&mut source, &batch).await;
    assert!(source.next(10, WAIT).await.unwrap().is_empty());
    append(h.dir.path(), "c.csv", "f\nc\n");
    append(h.dir.path(), "a.jsonl", "{\"f\":\"a2\"}\n");
    let batch = source.next(10, WAIT).await.unwrap();
    assert_eq!(texts(&batch), vec!["{\"f\":\"a2\"}", "{\"f\":\"c\"}"], "appended lines and a new file");
    assert_eq!(batch[1].id, "c.csv:2");
}

#[tokio::test]
async fn max_is_respected_across_files() {
    let h = FileHarness::new();
    for f in ["a.ndjson", "b.ndjson"] {
        append(h.dir.path(), f, "{}\n{}\n{}\n");
    }
    let mut source = h.source().await;
    let mut ids = Vec::new();
    for want in [2, 2, 2] {
        let batch = source.next(2, WAIT).await.unwrap();
        assert_eq!(batch.len(), want);
        ids.extend(batch.into_iter().map(|m| m.id));
    }
    assert_eq!(ids, ["a.ndjson:0", "a.ndjson:3", "a.ndjson:6", "b.ndjson:0", "b.ndjson:3", "b.ndjson:6"]);
}

#[tokio::test]
async fn invalid_configs_are_refused_with_what_to_do() {
    let h = FileHarness::new();
    let missing = h.dir.path().join("nope");
    let e = FileSource::open(FileSourceConfig::new("files", &missing), h.store.clone()).await.unwrap_err();
    assert!(matches!(e, SourceError::Config { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("nope") && text.contains("create it"), "{text}");
    let file = append(h.dir.path(), "x.ndjson", "{}\n");
    let e = FileSource::open(FileSourceConfig::new("files", &file), h.store.clone()).await.unwrap_err();
    assert!(e.to_string().contains("is not a directory"), "{e}");
    let e = FileSource::open(FileSourceConfig::new(" ", h.dir.path()), h.store.clone()).await.unwrap_err();
    assert!(e.to_string().contains("name is empty"), "{e}");
    let e = FileSource::open(FileSourceConfig { poll_interval: Duration::ZERO, ..h.config() }, h.store.clone()).await.unwrap_err();
    assert!(e.to_string().contains("poll_interval"), "{e}");
}

#[tokio::test]
async fn sources_with_other_names_keep_their_own_positions() {
    let h = FileHarness::new();
    append(h.dir.path(), "a.ndjson", "{}\n{}\n");
    let mut one = h.source().await;
    let batch = one.next(10, WAIT).await.unwrap();
    ack_all(&mut one, &batch).await;
    let mut other = FileSource::open(FileSourceConfig::new("other", h.dir.path()), h.store.clone()).await.unwrap();
    assert_eq!(other.next(10, WAIT).await.unwrap().len(), 2, "another source reads the same files from the start");
}
