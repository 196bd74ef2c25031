//! DPoP (RFC 9449): tokens bound to a key (`cnf.jkt`), proven per request by
//! a `DPoP` proof JWT that key signed.
//!
//! Pure:
//! - [`settings`]: the `dpop` configuration block;
//! - [`proof`]: one proof against its request, with its JSON, JWK, signature
//!   and URI checks;
//! - [`denial`]: why a request failed DPoP;
//! - [`replay_store`]: the fleet-wide store's request and answer.
//!
//! Through the host (shared data):
//! - [`native`]: signatures verified by Envoy's BoringSSL where it can;
//! - [`replay`], [`nonce`]: the state a proof is checked against;
//! - [`check`]: one request end to end.

pub mod check;
pub mod denial;
pub mod native;
pub mod nonce;
pub mod proof;
pub mod replay;
pub mod replay_store;
pub mod settings;
#[cfg(test)]
mod store_tests;
/// The test signer shared with the end-to-end tests and the demo.
#[cfg(test)]
#[path = "../../tests/support/dpop.rs"]
pub mod test_proofs;
