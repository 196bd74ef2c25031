//! The policy knobs the top level and every rule share.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Denials are sent as local replies.
    #[default]
    Enforce,
    /// Denials are logged and counted, and the request goes on.
    DryRun,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BindingPolicy {
    /// A token without `cnf` is denied.
    #[default]
    Required,
    /// A token without `cnf` passes; a bound token must still match.
    Optional,
}
