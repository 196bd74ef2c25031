//! What the proxy does with a denial, and what it counts.
//!
//! - [`problem`]: a denial rendered as RFC 9457 problem details with its
//!   RFC 6750 / RFC 9449 challenge;
//! - [`stats`]: outcome counters;
//! - [`timestamp`]: the problem document's RFC 3339 time.

pub mod problem;
pub mod stats;
pub mod timestamp;

/// A rendered local reply, as the host sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Envoy's response code details (`%RESPONSE_CODE_DETAILS%` in an access
    /// log): `cnf_guard.<slug>`, no whitespace.
    pub details: String,
}

/// The filter-state object every denial and dry-run would-deny sets, for
/// access logs: `%FILTER_STATE(wasm.cnf_guard:PLAIN)%`.
pub const OUTCOME_FILTER_STATE: &str = "cnf_guard";
