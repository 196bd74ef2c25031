//! cnf-guard: an Envoy proxy-wasm filter that enforces sender-constrained
//! OAuth access tokens (RFC 8705 certificate-bound, RFC 9449 DPoP).
//!
//! One request flows one way: facts → decision → reply.
//!
//! - [`certificate`], [`token`], [`dpop`]: the facts. Each folder holds the
//!   pure parsing of its evidence and one reader that fetches it through
//!   the host ([`certificate::source`], [`token::claims`], [`dpop::check`]).
//! - [`policy`]: the configuration, per-route rules, and the pure
//!   [`policy::decision`] that turns facts into one outcome.
//! - [`reply`]: the outcome as an RFC 9457 problem with its RFC 6750
//!   challenge, and the outcome counters.
//! - [`host`]: the one trait between the logic and the proxy, with a model of
//!   Envoy's behaviour for the fake hosts; [`headers`]: the request's header
//!   lines, read once.
//! - [`compat`]: which Envoy runs the module, and what an older one lacks
//!   (said once at plugin start).
//! - [`filter`]: one request end to end; `wasm` (wasm32 only): the
//!   proxy-wasm glue implementing the host trait. No policy lives there.

// Lets test code shared with tests/ name this crate as they do.
#[cfg(test)]
extern crate self as cnf_guard;

pub mod certificate;
pub mod compat;
pub mod dpop;
pub mod filter;
pub mod headers;
pub mod host;
pub mod policy;
pub mod reply;
pub mod token;

#[cfg(target_arch = "wasm32")]
mod wasm;
