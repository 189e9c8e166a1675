//! The event pipeline: parse heterogeneous client JSON, validate it into [`Event`]s,
//! transform and enrich them, and route them to topics — all declared in TOML.
//!
//! ```toml
//! [[tables]]                      # dimension table, loaded into memory
//! name = "sku"
//! path = "dims/sku.csv"           # or .jsonl; relative to the config file
//! key = "sku_id"
//!
//! [[parsers]]                     # on the raw JSON, before validation
//! apps = ["shop"]                 # optional scope
//! sources = ["orders-nats"]       # optional: only messages of these sources (not the API's)
//! json_strings = ["props"]        # decode "{\"a\":1}" in place
//! aliases = { uid = "user", ts = "time", cityId = "context.city" }
//! coerce = { "context.city" = "int" }
//! set_defaults = { "target.type" = "sku" }
//! time_zone = "+08:00"            # local times; normalises `time` to epoch ms
//!
//! [[transformers]]                # on the validated event, in order
//! type = "lookup"                 # lookup | rename | merge | split | set | drop | filter
//! table = "sku"
//! key = "target.id"
//! fields = { spu = "props.spu", brand = "props.brand" }
//! on_missing = "keep"             # or "reject"
//! when = { "target.type" = "sku" }   # optional; or an expression string
//!
//! [[routes]]                      # every matching route, until one with final = true
//! topic = "views"
//! actions = ["view"]
//! when = 'context.city == 1 && props.price > 100'
//! fields = ["user", "target", "context.city"]
//! format = "json"                 # or "binary" (default)
//! ```
//!
//! Conditions are either tables of `path = value | [values]` (all must match) or
//! [evalexpr](https://docs.rs/evalexpr/11) expressions whose variables are event paths
//! (`context.city`, `props.price`); both are compiled at load.
//!
//! [`Pipeline`] is immutable and `Send + Sync`; a reload builds a new one and swaps it,
//! so a config that fails to load leaves the running pipeline untouched.

mod condition;
mod config;
mod error;
mod filter;
mod parser;
mod path;
mod pipeline;
mod route;
mod table;
mod transform;

pub use config::{
    ConditionConfig, DropConfig, FilterConfig, LookupConfig, MergeConfig, OnMissing, OrderedMap, ParserConfig, PayloadFormat, PipelineConfig, RenameConfig, RouteConfig, SetConfig,
    SplitConfig, TableConfig, TableFormat, TransformerConfig, ValueType,
};
pub use error::{Error, PayloadError, Result};
pub use filter::{EventField, EventFilter, FieldValue};
pub use pipeline::{Pipeline, Processed, Routed, DEFAULT_TOPIC};
pub use route::decode_payload;

pub use meridian_event::Event;
