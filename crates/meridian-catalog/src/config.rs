//! The `[catalog]` config section: where the catalog comes from.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the server's catalog comes from. Without a directory, history shows every SKU as
/// its own SPU without name or image (or the demo world's catalog with `--demo`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// Directory holding `skus.jsonl` (directly or in its `catalog/` folder), as written by
    /// `meridian demo generate`.
    pub dir: Option<PathBuf>,
}

impl meridian_config::Section for CatalogConfig {
    const NAME: &'static str = "catalog";

    fn validate(&self) -> Result<(), meridian_config::FieldError> {
        match &self.dir {
            Some(dir) if !dir.is_dir() => Err(meridian_config::FieldError::new("dir", format!("{} is not a directory; write a catalog with `meridian demo generate --out DIR`", dir.display()))),
            _ => Ok(()),
        }
    }
}
