//! The capability module shape: what every capability hands the server, and the checks
//! done when it is registered.
//!
//! A capability (counters, history; user actions, analytics… as they land) is a domain
//! crate (config section, processor, service, store trait with its conformance suite)
//! plus an adapter in `modules/` implementing [`Capability`]. `open` builds a [`Module`]
//! with [`ModuleBuilder`]: its processors (the server spawns them), its routes with their
//! OpenAPI operations (merged into the router and `/openapi.json`), its background tasks,
//! its console pages ([`ConsoleSection`]: navigation entries and page routes, registered
//! with one `ModuleBuilder::console` line; the page code lives in `src/console/`), and —
//! required — how it erases a user ([`Erasure`]). The server is composition only: it opens
//! every entry of [`crate::modules::CAPABILITIES`] and wires what they return.

use crate::config::Config;
use crate::state::AppState;
use meridian_catalog::CatalogLookup;
use meridian_runtime::Processor;
use meridian_tenancy::Permission;
use std::sync::Arc;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;

/// What a capability does with `DELETE /v1/apps/{app}/users/{user}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    /// Its processors erase the user's data when they reach the erasure record in the
    /// `events` topic (in order with the user's events, so a replay of the log erases
    /// again), and report what they removed with `ProcessContext::erasure_receipt`.
    /// Lists the processors that do so.
    ByProcessors(Vec<String>),
    /// It keeps no per-user data; `why` says what it keeps instead.
    NoUserData {
        /// Shown in erasure answers.
        why: &'static str,
    },
}

/// A periodic maintenance job of a module (run on the blocking pool).
pub struct Task {
    /// Name, for logs and metrics.
    pub name: &'static str,
    /// Time between runs.
    pub every: Duration,
    /// The job; its `Ok` text is logged when not empty.
    pub run: Arc<dyn Fn() -> anyhow::Result<String> + Send + Sync>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").field("name", &self.name).field("every", &self.every).finish_non_exhaustive()
    }
}

/// A long-running part of a module (e.g. the webhook delivery worker), started when the
/// server starts serving and stopped at shutdown.
pub trait Service: Send + Sync {
    /// Starts it on the server's tokio runtime.
    fn start(&self, handle: &tokio::runtime::Handle);
    /// Asks it to stop (the server's shutdown waits for processors and the log only).
    fn stop(&self);
}

/// Where a console page is listed in the layout's navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NavGroup {
    /// Pages of the app chosen in the app switcher (`/console/apps/{app}/…`).
    App,
    /// Pages of the whole server, for global roles (`/console/…`).
    Admin,
}

/// Who sees a console page: the navigation lists an entry only to operators who may open it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NavAccess {
    /// A permission on the current app.
    App(Permission),
    /// A permission on every app (a global grant).
    Global(Permission),
}

/// One entry of the console's navigation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NavEntry {
    /// Stable id; the page with this id is shown as the current one.
    pub id: &'static str,
    /// Key of its label in the console's message catalogs (`assets/console/i18n`).
    pub label: &'static str,
    /// Where it links; `{app}` is replaced by the current app.
    pub href: &'static str,
    /// Who sees it.
    pub access: NavAccess,
    /// Its group.
    pub group: NavGroup,
    /// Position within the group (smaller first).
    pub order: u16,
}

/// A capability's console pages: its navigation entries and the routes that serve them
/// (each documented like any route: tag `console`, `text/html`, the `session` security
/// scheme, `x-permission`). A module that is off registers none, so its pages disappear.
#[derive(Default)]
pub struct ConsoleSection {
    /// Its entries in the layout's navigation.
    pub nav: Vec<NavEntry>,
    /// Its page routes (handlers carry their state).
    pub routes: OpenApiRouter,
}

impl std::fmt::Debug for ConsoleSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSection").field("nav", &self.nav).finish_non_exhaustive()
    }
}

/// An open capability, ready to be wired in.
pub struct Module {
    pub(crate) name: &'static str,
    pub(crate) processors: Vec<Box<dyn Processor>>,
    pub(crate) routes: OpenApiRouter,
    pub(crate) erasure: Erasure,
    pub(crate) tasks: Vec<Task>,
    pub(crate) services: Vec<Arc<dyn Service>>,
    pub(crate) console: ConsoleSection,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("name", &self.name)
            .field("processors", &self.processors.iter().map(|p| p.name().to_owned()).collect::<Vec<_>>())
            .field("erasure", &self.erasure)
            .field("console", &self.console.nav.iter().map(|n| n.id).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a module cannot be registered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModuleError {
    /// It did not say how it erases a user.
    #[error("capability {0} does not say how it erases a user: call ModuleBuilder::erasure (Erasure::ByProcessors or Erasure::NoUserData)")]
    MissingErasure(&'static str),
    /// It says a processor erases, but has no processor of that name.
    #[error("capability {module} names processor {processor} for erasure, but it has no processor of that name")]
    UnknownErasureProcessor {
        /// The module.
        module: &'static str,
        /// The processor named.
        processor: String,
    },
    /// Two modules have the same name.
    #[error("two capabilities are named {0}")]
    Duplicate(&'static str),
}

/// Builds a [`Module`]; `build` refuses one that does not say how it erases a user.
#[derive(Debug)]
pub struct ModuleBuilder {
    module: Module,
    erasure: Option<Erasure>,
}

impl ModuleBuilder {
    /// A module named `name` (its config section's name).
    pub fn new(name: &'static str) -> ModuleBuilder {
        ModuleBuilder {
            module: Module { name, processors: Vec::new(), routes: OpenApiRouter::new(), erasure: Erasure::NoUserData { why: "" }, tasks: Vec::new(), services: Vec::new(), console: ConsoleSection::default() },
            erasure: None,
        }
    }

    /// Adds a processor of the `events` topic (or of the topics it names).
    pub fn processor(mut self, processor: Box<dyn Processor>) -> ModuleBuilder {
        self.module.processors.push(processor);
        self
    }

    /// Adds routes (with their OpenAPI operations; handlers carry their state).
    pub fn routes(mut self, routes: OpenApiRouter) -> ModuleBuilder {
        self.module.routes = std::mem::take(&mut self.module.routes).merge(routes);
        self
    }

    /// Says how the module erases a user (required).
    pub fn erasure(mut self, erasure: Erasure) -> ModuleBuilder {
        self.erasure = Some(erasure);
        self
    }

    /// Adds a periodic maintenance task.
    pub fn task(mut self, task: Task) -> ModuleBuilder {
        self.module.tasks.push(task);
        self
    }

    /// Adds console pages: navigation entries and their routes.
    pub fn console(mut self, section: ConsoleSection) -> ModuleBuilder {
        let console = &mut self.module.console;
        console.nav.extend(section.nav);
        console.routes = std::mem::take(&mut console.routes).merge(section.routes);
        self
    }

    /// Adds a long-running service.
    pub fn service(mut self, service: Arc<dyn Service>) -> ModuleBuilder {
        self.module.services.push(service);
        self
    }

    /// The module, if it says how it erases a user and its erasing processors exist.
    pub fn build(self) -> Result<Module, ModuleError> {
        let mut module = self.module;
        let erasure = self.erasure.ok_or(ModuleError::MissingErasure(module.name))?;
        if let Erasure::ByProcessors(names) = &erasure {
            if let Some(missing) = names.iter().find(|n| !module.processors.iter().any(|p| p.name() == n.as_str())) {
                return Err(ModuleError::UnknownErasureProcessor { module: module.name, processor: missing.clone() });
            }
        }
        module.erasure = erasure;
        Ok(module)
    }
}

/// What a capability gets to open itself.
#[derive(Debug)]
pub struct ModuleContext<'a> {
    pub(crate) config: &'a Config,
    pub(crate) state: &'a Arc<AppState>,
    pub(crate) catalog: Arc<dyn CatalogLookup>,
    pub(crate) catalog_slot: &'a Arc<meridian_catalog::CatalogSlot>,
    pub(crate) name: &'static str,
    pub(crate) stores: &'a crate::layout::Stores,
}

impl ModuleContext<'_> {
    /// The module's state store: its processors' state, positions and receipts, and what
    /// its services read. A store of its own, so its commits never wait for another
    /// module's (docs/benchmarks.md, "state isolation"); the shared store in data
    /// directories created before per-module stores.
    pub fn store(&self) -> anyhow::Result<Arc<dyn meridian_state::KvStore>> {
        self.stores.module(self.name)
    }

    /// The whole config (a module reads its own section).
    pub fn config(&self) -> &Config {
        self.config
    }

    /// The catalog (SKU names, images, SPUs): the server's one catalog, shared by every
    /// module (a module that keeps the product catalog puts it in with
    /// [`ModuleContext::provide_catalog`], whatever the modules' order).
    pub fn catalog(&self) -> &Arc<dyn CatalogLookup> {
        &self.catalog
    }

    /// Makes `wrap(current catalog)` the catalog every module reads (the listing module
    /// puts its durable per-app catalog in front of the configured one).
    pub fn provide_catalog(&self, wrap: impl FnOnce(Arc<dyn CatalogLookup>) -> Arc<dyn CatalogLookup>) {
        let current = self.catalog_slot.current();
        self.catalog_slot.replace(wrap(current));
    }
}

/// A capability's adapter: opens the module from the config, or `None` when its section
/// turns it off.
pub trait Capability: Sync {
    /// Its name (= its config section's name).
    fn name(&self) -> &'static str;

    /// Opens it: stores, service, processors, routes, tasks, erasure.
    fn open(&self, ctx: &ModuleContext<'_>) -> anyhow::Result<Option<Module>>;
}

/// A module as the server keeps it once wired in.
#[derive(Debug, Clone)]
pub(crate) struct Registered {
    pub(crate) name: &'static str,
    pub(crate) erasure: Erasure,
    /// Each of its processors and the topics it reads (an erasure record goes to every
    /// topic an erasing processor reads).
    pub(crate) topics: Vec<(String, Vec<meridian_log::TopicName>)>,
}

impl Registered {
    /// Its erasing processors and the topics each reads.
    pub(crate) fn erasing(&self) -> Vec<(String, Vec<meridian_log::TopicName>)> {
        match &self.erasure {
            Erasure::ByProcessors(names) => names.iter().map(|n| (n.clone(), self.topics.iter().find(|(p, _)| p == n).map(|(_, t)| t.clone()).unwrap_or_default())).collect(),
            Erasure::NoUserData { .. } => Vec::new(),
        }
    }
}
