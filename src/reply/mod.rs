//! What the proxy does with a denial, and what it counts.
//!
//! - [`problem`]: a denial rendered as RFC 9457 problem details with its
//!   RFC 6750 / RFC 9449 challenge;
//! - [`stats`]: outcome counters.

pub mod problem;
pub mod stats;

/// A rendered local reply, as the host sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}
