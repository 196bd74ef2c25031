//! Why a request failed DPoP (pure): each reason maps to one problem slug.

use crate::dpop::proof::jwk::JwkThumbprint;
use crate::dpop::proof::ProofError;

/// Why a request failed DPoP; each maps to one problem slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopDenial {
    /// `dpop-required`.
    Required(RequiredReason),
    /// `dpop-proof-invalid`.
    ProofInvalid(ProofError),
    /// `dpop-binding-mismatch`: the proof is valid, but signed by another key.
    BindingMismatch {
        expected: JwkThumbprint,
        presented: JwkThumbprint,
    },
    /// `dpop-replay`.
    Replay(Recorded),
    /// `dpop-nonce-required`, with the nonce to use (if one could be made).
    NonceRequired {
        nonce: Option<String>,
        had_nonce: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequiredReason {
    /// A `cnf.jkt`-bound token sent without the `DPoP` scheme (a downgrade).
    BoundTokenWithoutDpopScheme,
    /// `policy: required`, and the token is not bound to a key.
    TokenNotKeyBound,
    /// No `Authorization` header reached the filter (jwt_authn's `forward:
    /// false` removes it), so there is no token to check the proof's `ath` on.
    NoAuthorizationHeader,
}

/// What the replay cache made of a proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// First use: the proof may pass.
    Fresh,
    /// Seen before within its window.
    Replayed,
    /// The proof's bucket holds only live entries: cannot record, so cannot pass.
    Full,
    /// Shared data could not be read or written.
    Unavailable(String),
}
