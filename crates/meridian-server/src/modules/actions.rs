//! The user action system's adapter: the profile store (embedded, or Redis once
//! `meridian-actions-redis` lands), one processor per isolation group, app time zones from
//! tenancy, and the topics its processors read and write.

use crate::module::{Capability, Erasure, Module, ModuleBuilder, ModuleContext};
use meridian_actions::{ActionsService, AppZones, EmbeddedProfileStore, ProcessorSettings, ProfileStore, StoreKind, SystemClock};
use meridian_event::AppId;
use meridian_log::TopicName;
use meridian_runtime::Processor as _;
use meridian_tenancy::chrono_tz::Tz;
use meridian_tenancy::Tenancy;
use std::sync::Arc;

/// The user action system.
#[derive(Debug)]
pub(crate) struct Actions;

/// Apps' time zones, from tenancy (UTC for an unknown app).
struct TenancyZones(Arc<Tenancy>);

impl AppZones for TenancyZones {
    fn zone(&self, app: &AppId) -> Tz {
        self.0.app(app).map(|a| a.tz()).unwrap_or(Tz::UTC)
    }
}

impl Capability for Actions {
    fn name(&self) -> &'static str {
        "actions"
    }

    fn open(&self, ctx: &ModuleContext<'_>) -> anyhow::Result<Option<Module>> {
        let config = &ctx.config().actions;
        if !config.enabled {
            return Ok(None);
        }
        let kv = ctx.store()?;
        let store: Arc<dyn ProfileStore> = match config.store {
            StoreKind::Embedded => Arc::new(EmbeddedProfileStore::new(kv.clone())),
            // TODO: RedisProfileStore::connect(&config.redis_url, &config.redis_prefix) once
            // the meridian-actions-redis crate exists.
            StoreKind::Redis => anyhow::bail!("the redis profile store needs the meridian-actions-redis crate"),
        };
        let log = &ctx.state.log;
        let partitions = ctx.config().log.partitions;
        let topic = |name: &str| -> anyhow::Result<TopicName> {
            let topic = TopicName::new(name)?;
            log.ensure_topic(&topic, partitions)?;
            Ok(topic)
        };
        let settings = ProcessorSettings {
            events_topic: ctx.state.events_topic.clone(),
            segments_topic: topic(&config.segments_topic)?,
            triggers_topic: topic(&config.triggers_topic)?,
            notifications_topic: topic(&config.notifications_topic)?,
        };
        for group in &config.groups {
            topic(&group.topic)?;
        }
        let service = Arc::new(ActionsService::new(
            config.clone(),
            store,
            kv,
            Arc::new(TenancyZones(ctx.state.tenancy.clone())),
            Arc::new(SystemClock),
            log.clone(),
            settings,
        )?);
        let mut module = ModuleBuilder::new("actions");
        let mut erasing = Vec::new();
        for processor in service.processors()? {
            erasing.push(processor.name().to_owned());
            module = module.processor(Box::new(processor));
        }
        let module = module.erasure(Erasure::ByProcessors(erasing)).build()?;
        Ok(Some(module))
    }
}
