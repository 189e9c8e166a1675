//! Where state lives in a data directory: the core store (apps, keys, operators, audit,
//! collector state) and one store per capability module, so a module's commits (each an
//! fsync) never queue behind another's — measured in docs/benchmarks.md ("state
//! isolation"): sharing one fjall store cost the counters processor 60% of its throughput
//! next to history.
//!
//! ```text
//! data_dir/LAYOUT                      "modules-v1" or "shared"
//! data_dir/state-fjall | state.redb    the core store
//! data_dir/modules/<module>/state-…    a module's store (same backend as the core)
//! ```
//!
//! A data directory created before per-module stores has no `LAYOUT` file but a core
//! store holding every module's state: it gets "shared" and keeps working as it was.

use anyhow::Context as _;
use meridian_state::{KvStore, StateBackend};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const LAYOUT_FILE: &str = "LAYOUT";
const PER_MODULE: &str = "modules-v1";
const SHARED: &str = "shared";

/// The stores of a data directory.
#[derive(Debug)]
pub(crate) struct Stores {
    data_dir: PathBuf,
    backend: StateBackend,
    core: Arc<dyn KvStore>,
    per_module: bool,
    opened: Mutex<HashMap<&'static str, Arc<dyn KvStore>>>,
}

impl Stores {
    /// Reads (or, for a new data directory, decides and writes) the layout. `existed`:
    /// whether the core store was there before this start.
    pub(crate) fn open(data_dir: &Path, backend: StateBackend, core: Arc<dyn KvStore>, existed: bool) -> anyhow::Result<Stores> {
        let file = data_dir.join(LAYOUT_FILE);
        let layout = match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let layout = if existed { SHARED } else { PER_MODULE };
                std::fs::write(&file, layout).with_context(|| format!("cannot write {}", file.display()))?;
                layout.to_owned()
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        let per_module = match layout.as_str() {
            PER_MODULE => true,
            SHARED => false,
            other => anyhow::bail!("{} says {other:?}; this build knows {PER_MODULE:?} and {SHARED:?}", file.display()),
        };
        Ok(Stores { data_dir: data_dir.to_owned(), backend, core, per_module, opened: Mutex::new(HashMap::new()) })
    }

    /// The core store.
    pub(crate) fn core(&self) -> &Arc<dyn KvStore> {
        &self.core
    }

    /// The store of `module` if it was asked for ([`Self::module`]).
    pub(crate) fn opened(&self, module: &str) -> Option<Arc<dyn KvStore>> {
        if !self.per_module {
            return None;
        }
        self.opened.lock().get(module).cloned()
    }

    /// The store of `module` (opened once).
    pub(crate) fn module(&self, module: &'static str) -> anyhow::Result<Arc<dyn KvStore>> {
        if !self.per_module {
            return Ok(self.core.clone());
        }
        let mut opened = self.opened.lock();
        if let Some(store) = opened.get(module) {
            return Ok(store.clone());
        }
        let dir = self.data_dir.join("modules").join(module);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let store = self.backend.open(&dir).with_context(|| format!("cannot open the {module} store in {}", dir.display()))?;
        opened.insert(module, store.clone());
        Ok(store)
    }
}
