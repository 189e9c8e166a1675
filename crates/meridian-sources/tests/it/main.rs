//! Integration tests of meridian-sources: the file source passes the source conformance
//! suite, plus its own checks (CSV, partial lines, resume, new files, bad configs) and the
//! runner's (overload, failures, reconnects, status).

mod file;
mod runner;

use meridian_sources::conformance::SourceHarness;
use meridian_sources::{FileSource, FileSourceConfig, Source};
use meridian_state::{KvStore, MemoryStore};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A file source over a temporary directory and a state store shared by every source it
/// opens (a restarted server opens the same store).
pub(crate) struct FileHarness {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) store: Arc<dyn KvStore>,
}

impl FileHarness {
    pub(crate) fn new() -> FileHarness {
        FileHarness { dir: tempfile::tempdir().unwrap(), store: Arc::new(MemoryStore::new()) }
    }

    pub(crate) fn config(&self) -> FileSourceConfig {
        FileSourceConfig { poll_interval: Duration::from_millis(20), ..FileSourceConfig::new("files", self.dir.path()) }
    }

    pub(crate) async fn source(&self) -> FileSource {
        FileSource::open(self.config(), self.store.clone()).await.expect("open the file source")
    }
}

/// Appends `text` to `dir/file` (created when absent).
pub(crate) fn append(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    path
}

#[async_trait::async_trait]
impl SourceHarness for FileHarness {
    async fn publish(&self, payloads: Vec<Vec<u8>>) {
        let dir = self.dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let mut text = Vec::new();
            for p in payloads {
                assert!(!p.contains(&b'\n'));
                text.extend_from_slice(&p);
                text.push(b'\n');
            }
            append(&dir, "events.ndjson", std::str::from_utf8(&text).unwrap());
        })
        .await
        .unwrap();
    }

    async fn open(&self) -> Box<dyn Source> {
        Box::new(self.source().await)
    }

    fn redelivery_after(&self) -> Duration {
        Duration::ZERO
    }

    async fn cleanup(&self) {}
}

async fn file_harness(_test: &'static str) -> Option<Arc<dyn SourceHarness>> {
    Some(Arc::new(FileHarness::new()))
}

mod conformance {
    meridian_sources::source_suite!(super::file_harness);
}
