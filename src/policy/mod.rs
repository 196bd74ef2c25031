//! What to check, and the verdict.
//!
//! - [`config`]: the plugin configuration, composed of each part's own
//!   block, parsed and validated once at start; [`fields`] and [`json_path`]
//!   name the field a bad configuration gets wrong;
//! - [`settings`]: the policy knobs every level shares (`mode`, `binding`);
//! - [`rules`]: per-route overrides;
//! - [`decision`]: facts and policy → one outcome (pure).

pub mod config;
pub mod decision;
pub mod fields;
pub mod json_path;
pub mod rules;
pub mod settings;
