//! Integration tests of the log: the conformance suite against the embedded log, and the
//! data-directory lock.

mod lock;

use meridian_log::conformance::LogFactory;
use meridian_log::embedded::{EmbeddedLog, EmbeddedLogConfig};
use meridian_log::Log;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Embedded logs in temporary directories, each opened with the config it was made with.
#[derive(Debug, Default)]
pub(crate) struct EmbeddedFactory {
    dirs: Vec<tempfile::TempDir>,
    /// Directory and config of every log handed out, by the address of its handle.
    opened: HashMap<usize, (PathBuf, EmbeddedLogConfig)>,
}

impl EmbeddedFactory {
    fn open(&mut self, dir: PathBuf, config: EmbeddedLogConfig) -> Arc<dyn Log> {
        let log: Arc<dyn Log> = EmbeddedLog::open(&dir, config.clone()).expect("open the embedded log");
        self.opened.insert(Arc::as_ptr(&log) as *const () as usize, (dir, config));
        log
    }

    fn fresh_with(&mut self, config: EmbeddedLogConfig) -> Arc<dyn Log> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("log");
        self.dirs.push(dir);
        self.open(path, config)
    }
}

impl LogFactory for EmbeddedFactory {
    fn fresh(&mut self) -> Arc<dyn Log> {
        self.fresh_with(EmbeddedLogConfig::default())
    }

    fn fresh_with_retention(&mut self, segment_bytes: u64, retention_bytes: u64) -> Arc<dyn Log> {
        self.fresh_with(EmbeddedLogConfig { segment_bytes, retention_bytes: Some(retention_bytes), ..EmbeddedLogConfig::default() })
    }

    fn reopen(&mut self, log: Arc<dyn Log>) -> Arc<dyn Log> {
        let (dir, config) = self.opened.remove(&(Arc::as_ptr(&log) as *const () as usize)).expect("a log made by this factory");
        log.close().expect("close the embedded log");
        drop(log);
        self.open(dir, config)
    }
}

mod conformance {
    meridian_log::log_suite!(super::EmbeddedFactory::default());
}
