//! The demo world: config, catalog and users generated together.

use crate::catalog::Catalog;
use crate::config::DemoConfig;
use crate::error::Result;
use crate::users::Users;
use crate::BehaviourGenerator;
use std::sync::Arc;

/// A generated catalog and user base, shared by the behaviour generator and the writers.
#[derive(Debug, Clone)]
pub struct DemoWorld {
    /// The config it was built from.
    pub config: DemoConfig,
    /// Products.
    pub catalog: Catalog,
    /// Users and anonymous devices.
    pub users: Users,
    start_ms: i64,
}

impl DemoWorld {
    /// Builds the world of `config`. With `start_time_ms: None` the event window is fixed
    /// here, to the `days` before now.
    pub fn generate(config: &DemoConfig) -> Result<DemoWorld> {
        config.validate()?;
        Ok(DemoWorld {
            config: config.clone(),
            catalog: Catalog::generate(config)?,
            users: Users::generate(config)?,
            start_ms: config.resolved_start_ms(),
        })
    }

    /// Start of the event window, epoch ms.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// End of the event window, epoch ms.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.config.span_ms()
    }

    /// A generator of `total_events` events spread over the window.
    pub fn events(self: &Arc<Self>, total_events: u64) -> BehaviourGenerator {
        BehaviourGenerator::new(Arc::clone(self), total_events)
    }
}
