//! The `[counters]` config section.

use serde::{Deserialize, Serialize};

/// Settings of the counters capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CountersConfig {
    /// Count events per app, action and day.
    pub enabled: bool,
}

impl Default for CountersConfig {
    fn default() -> Self {
        CountersConfig { enabled: true }
    }
}

impl meridian_config::Section for CountersConfig {
    const NAME: &'static str = "counters";
}
