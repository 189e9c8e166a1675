//! Typed, layered configuration: sections with defaults and field-named validation, loaded
//! from a TOML file, `MERIDIAN_*` environment variables and overrides (see the README).
//!
//! * [`Section`]: what a config section implements (its table name, validation, secrets).
//! * [`FieldError`] and the `check_*` helpers: validation errors that name the field.
//! * [`load`]: file + environment + overrides → the root config, with precise errors.
//! * [`known_keys`], [`masked_toml`]: every settable key; the effective config with
//!   secrets masked (`meridian config check`).

mod load;
mod section;

pub use load::{env_var_name, known_keys, load, masked_toml, parse_override, LoadError, Sources};
pub use section::{check, check_range, FieldError, Section};
