//! Test fixtures: a store on either backend that can be reopened, a wrapper that counts
//! commits and rows read and can make commits fail, and a `both_stores!` macro that runs
//! a test against `MemoryStore` and against `FjallStore` in a temp dir.

use meridian_event::AppId;
use meridian_state::{FjallStore, KeyValue, KvStore, MemoryStore, StateError, WriteBatch};
use meridian_tenancy::{Actor, ManualClock, OperatorId, PasswordHashing, Tenancy, TenancyConfig};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A fixed start time: 2023-11-14T22:13:20Z.
pub(crate) const T0: i64 = 1_700_000_000_000;
pub(crate) const MINUTE: i64 = 60_000;
pub(crate) const HOUR: i64 = 3_600_000;
pub(crate) const MASTER: &str = "master-secret-for-tests";
pub(crate) const PASSWORD: &str = "correct horse battery";

/// Runs each named `fn name(backend: Backend)` as two tests, `name::memory` and `name::fjall`.
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn memory() {
                    super::$name($crate::support::Backend::Memory)
                }
                #[test]
                fn fjall() {
                    super::$name($crate::support::Backend::Fjall)
                }
            }
        )*
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Memory,
    Fjall,
}

/// Where a store lives, so that it can be opened again.
#[derive(Debug)]
pub(crate) enum StoreDir {
    Memory(Arc<MemoryStore>),
    Fjall(tempfile::TempDir),
}

impl StoreDir {
    pub(crate) fn new(backend: Backend) -> StoreDir {
        match backend {
            Backend::Memory => StoreDir::Memory(Arc::new(MemoryStore::new())),
            Backend::Fjall => StoreDir::Fjall(tempfile::tempdir().expect("a temp dir")),
        }
    }

    /// Opens the store (for fjall: every earlier handle must be dropped first).
    pub(crate) fn open(&self) -> Arc<dyn KvStore> {
        match self {
            StoreDir::Memory(store) => store.clone(),
            StoreDir::Fjall(dir) => Arc::new(FjallStore::open(dir.path()).expect("open fjall store")),
        }
    }
}

/// A store that counts commits and rows read and fails commits on demand.
#[derive(Debug)]
pub(crate) struct FaultyStore {
    inner: Arc<dyn KvStore>,
    pub(crate) fail_commits: AtomicBool,
    pub(crate) commits: AtomicUsize,
    pub(crate) rows_read: AtomicUsize,
    /// The batches committed since the last `take_batches`.
    batches: parking_lot::Mutex<Vec<WriteBatch>>,
}

impl FaultyStore {
    pub(crate) fn new(inner: Arc<dyn KvStore>) -> FaultyStore {
        FaultyStore {
            inner,
            fail_commits: AtomicBool::new(false),
            commits: AtomicUsize::new(0),
            rows_read: AtomicUsize::new(0),
            batches: parking_lot::Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.fail_commits.store(failing, Ordering::SeqCst);
    }

    pub(crate) fn commits(&self) -> usize {
        self.commits.load(Ordering::SeqCst)
    }

    /// The batches committed since the last call.
    pub(crate) fn take_batches(&self) -> Vec<WriteBatch> {
        std::mem::take(&mut *self.batches.lock())
    }

    pub(crate) fn rows_read(&self) -> usize {
        self.rows_read.load(Ordering::SeqCst)
    }

    /// Every key and value of every tenancy table.
    pub(crate) fn dump(&self) -> Vec<(&'static str, KeyValue)> {
        let mut rows = Vec::new();
        for table in meridian_tenancy::TABLES {
            for row in self.inner.scan_prefix(table, b"", usize::MAX).unwrap() {
                rows.push((*table, row));
            }
        }
        rows
    }
}

impl KvStore for FaultyStore {
    fn get(&self, table: &'static str, key: &[u8]) -> meridian_state::Result<Option<Vec<u8>>> {
        self.inner.get(table, key)
    }

    fn range(&self, table: &'static str, start: Bound<&[u8]>, end: Bound<&[u8]>, limit: usize) -> meridian_state::Result<Vec<KeyValue>> {
        let rows = self.inner.range(table, start, end, limit)?;
        self.rows_read.fetch_add(rows.len(), Ordering::SeqCst);
        Ok(rows)
    }

    fn commit(&self, batch: WriteBatch) -> meridian_state::Result<()> {
        if self.fail_commits.load(Ordering::SeqCst) {
            return Err(StateError::Backend("injected commit failure".into()));
        }
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.batches.lock().push(batch.clone());
        self.inner.commit(batch)
    }
}

/// The default config with cheap password hashing.
pub(crate) fn fast_config() -> TenancyConfig {
    TenancyConfig { password_hashing: PasswordHashing::fast_insecure_for_tests(), ..TenancyConfig::default() }
}

/// A tenancy on a reopenable store with a manual clock at [`T0`].
#[derive(Debug)]
pub(crate) struct Fixture {
    pub(crate) dir: StoreDir,
    pub(crate) store: Arc<FaultyStore>,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) config: TenancyConfig,
    pub(crate) tenancy: Tenancy,
}

impl Fixture {
    pub(crate) fn new(backend: Backend) -> Fixture {
        Fixture::with_config(backend, fast_config())
    }

    pub(crate) fn with_config(backend: Backend, config: TenancyConfig) -> Fixture {
        Fixture::open(StoreDir::new(backend), config, Arc::new(ManualClock::new(T0)))
    }

    pub(crate) fn open(dir: StoreDir, config: TenancyConfig, clock: Arc<ManualClock>) -> Fixture {
        let store = Arc::new(FaultyStore::new(dir.open()));
        let tenancy = Tenancy::open_with_clock(store.clone(), Some(MASTER), config.clone(), clock.clone()).expect("open tenancy");
        Fixture { dir, store, clock, config, tenancy }
    }

    /// Drops the tenancy and the store, then opens both again from what was persisted.
    pub(crate) fn reopen(self) -> Fixture {
        let Fixture { dir, store, clock, config, tenancy } = self;
        drop(tenancy);
        drop(store);
        Fixture::open(dir, config, clock)
    }
}

pub(crate) fn app(id: &str) -> AppId {
    AppId::new(id).unwrap()
}

pub(crate) fn login(id: &str) -> OperatorId {
    OperatorId::new(id).unwrap()
}

/// The actor of an admin operator called `root`.
pub(crate) fn root() -> Actor {
    Actor::Operator { login: login("root") }
}

/// Whether `needle` occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|window| window == needle)
}
