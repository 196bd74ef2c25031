//! DPoP (RFC 9449): tokens bound to a key (`cnf.jkt`), proven per request by
//! a `DPoP` proof JWT that key signed.
//!
//! - [`settings`]: the `dpop` configuration block.
//! - [`proof`]: one proof against its request (pure), using [`json`] (no
//!   duplicate members), [`jwk`] (public keys, RFC 7638 thumbprints),
//!   [`signature`] (ES256, RS256, PS256, EdDSA) and [`htu`] (URI normalisation).
//! - [`replay`], [`nonce`]: the state a proof is checked against, in shared data.
//! - [`check`]: one request end to end.

pub mod check;
pub mod htu;
pub mod json;
pub mod jwk;
pub mod nonce;
pub mod proof;
pub mod replay;
pub mod settings;
pub mod signature;
/// The test signer shared with the end-to-end tests and the demo.
#[cfg(test)]
#[path = "../../tests/support/dpop.rs"]
pub mod test_proofs;
