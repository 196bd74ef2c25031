//! cnf-guard: an Envoy proxy-wasm filter that enforces sender-constrained
//! (RFC 8705 certificate-bound) OAuth access tokens.
//!
//! Data flows one way: the host trait supplies facts (claims, client
//! certificate), the pure core decides, and the result is rendered as a reply.
//!
//! - [`config`]: the plugin configuration, parsed and validated once.
//! - [`claims`], [`certificate`]: where facts come from (via [`host::Host`]).
//! - [`binding`], [`thumbprint`], [`decision`]: what the facts mean (pure);
//!   [`x509`]: the parts of a certificate they need.
//! - [`dpop`]: RFC 9449 proofs for key-bound tokens.
//! - [`problem`]: RFC 9457 problem details and the RFC 6750 challenge.
//! - [`filter`]: one request end to end; [`stats`]: outcome counters.
//! - `wasm` (wasm32 only): the proxy-wasm glue implementing the host trait.

// Lets test code shared with tests/ name this crate as they do.
#[cfg(test)]
extern crate self as cnf_guard;

pub mod binding;
pub mod certificate;
pub mod claims;
pub mod config;
pub mod decision;
pub mod dpop;
pub mod filter;
pub mod forwarded;
pub mod headers;
pub mod host;
pub mod json_path;
pub mod pairs;
pub mod problem;
pub mod rules;
pub mod stats;
pub mod thumbprint;
pub mod token_places;
pub mod trust;
pub mod x509;
pub mod xfcc;

#[cfg(target_arch = "wasm32")]
mod wasm;
