//! Deterministic demo world for Meridian: a product catalog, users and devices, a stream of
//! realistic behaviour events (with a share of deliberately malformed ones), file writers
//! for the catalog, dimension tables and events, and an HTTP sender.
//!
//! ```
//! use meridian_demo::{DemoConfig, DemoWorld};
//! use std::sync::Arc;
//!
//! let world = Arc::new(DemoWorld::generate(&DemoConfig::small()).unwrap());
//! let events: Vec<_> = world.events(100).collect();
//! assert_eq!(events.len(), 100);
//! ```

mod behaviour;
mod catalog;
mod config;
mod error;
mod names;
mod progress;
mod send;
mod users;
mod world;
mod writer;

pub use behaviour::{BehaviourGenerator, Malformation, P_CART_ORDER, P_ORDER_PAY, P_VIEW_CART};
pub use catalog::{Brand, Catalog, Category, Shop, Sku, Spu, FIRST_SKU_ID, SHOP_ZIPF_EXPONENT, SKU_ZIPF_EXPONENT};
pub use config::{DemoConfig, DAY_MS};
pub use error::{DemoError, Result};
pub use send::{send, SendReport, MAX_ATTEMPTS, MAX_THROTTLED};
pub use users::{AnonymousDevice, User, Users, CITIES, PLATFORMS};
pub use world::DemoWorld;
pub use writer::{write_files, write_files_with, write_world, WriteOptions, WriteReport};
