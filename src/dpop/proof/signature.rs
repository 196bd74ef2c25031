//! Proof signatures: the four asymmetric JWS algorithms cnf-guard accepts,
//! and who verifies them. [`InModule`] uses the RustCrypto primitives (the
//! same ones jwt-simple's pure-rust build uses underneath), compiled into
//! the module; `crate::dpop::native` hands what Envoy's BoringSSL can do to
//! the proxy instead, which is some 25 times cheaper under V8.

use crate::dpop::proof::jwk::PublicJwk;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// A JWS `alg` a proof may use. `none` and the HMAC family cannot be named:
/// a proof must prove possession of a private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    ES256,
    RS256,
    PS256,
    EdDSA,
}

impl Algorithm {
    pub const ALL: [Algorithm; 4] = [
        Algorithm::ES256,
        Algorithm::RS256,
        Algorithm::PS256,
        Algorithm::EdDSA,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::RS256 => "RS256",
            Algorithm::PS256 => "PS256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// Whether `jwk` is the kind of key this algorithm signs with.
    pub fn fits(self, jwk: &PublicJwk) -> bool {
        matches!(
            (self, jwk),
            (Algorithm::ES256, PublicJwk::P256 { .. })
                | (Algorithm::RS256 | Algorithm::PS256, PublicJwk::Rsa { .. })
                | (Algorithm::EdDSA, PublicJwk::Ed25519 { .. })
        )
    }
}

/// Any reason a signature does not verify: which one is not the client's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignature;

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// It does not verify with the key.
    Bad,
    /// It could not be checked (the proxy failed); a denial, never a pass.
    Unavailable(String),
}

/// Checks a proof's signature; the proof checks do not care who does it.
pub trait VerifySignature {
    fn verify(
        &self,
        algorithm: Algorithm,
        jwk: &PublicJwk,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError>;
}

/// Verification compiled into the module.
#[derive(Debug, Clone, Copy, Default)]
pub struct InModule;

impl VerifySignature for InModule {
    fn verify(
        &self,
        algorithm: Algorithm,
        jwk: &PublicJwk,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        verify(algorithm, jwk, signing_input, signature).map_err(|BadSignature| SignatureError::Bad)
    }
}

/// Verifies `signature` over `signing_input` (`<header>.<payload>`).
pub fn verify(
    algorithm: Algorithm,
    jwk: &PublicJwk,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), BadSignature> {
    let decode = |value: &str| URL_SAFE_NO_PAD.decode(value).map_err(|_| BadSignature);
    match (algorithm, jwk) {
        (Algorithm::ES256, PublicJwk::P256 { x, y }) => {
            use p256::ecdsa::signature::Verifier as _;
            let mut point = vec![0x04];
            point.extend(decode(x)?);
            point.extend(decode(y)?);
            let key =
                p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).map_err(|_| BadSignature)?;
            // JWS ES256 is the fixed 64-byte r||s form (RFC 7518 §3.4), not DER.
            let signature =
                p256::ecdsa::Signature::from_slice(signature).map_err(|_| BadSignature)?;
            key.verify(signing_input, &signature)
                .map_err(|_| BadSignature)
        }
        (Algorithm::RS256 | Algorithm::PS256, PublicJwk::Rsa { n, e }) => {
            use rsa::signature::Verifier as _;
            let key = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(&decode(n)?),
                rsa::BigUint::from_bytes_be(&decode(e)?),
            )
            .map_err(|_| BadSignature)?;
            if algorithm == Algorithm::RS256 {
                let key = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key);
                let signature =
                    rsa::pkcs1v15::Signature::try_from(signature).map_err(|_| BadSignature)?;
                key.verify(signing_input, &signature)
                    .map_err(|_| BadSignature)
            } else {
                // RFC 7518 §3.5: the salt is as long as the hash.
                let key = rsa::pss::VerifyingKey::<sha2::Sha256>::new_with_salt_len(key, 32);
                let signature =
                    rsa::pss::Signature::try_from(signature).map_err(|_| BadSignature)?;
                key.verify(signing_input, &signature)
                    .map_err(|_| BadSignature)
            }
        }
        (Algorithm::EdDSA, PublicJwk::Ed25519 { x }) => {
            let key =
                ed25519_compact::PublicKey::from_slice(&decode(x)?).map_err(|_| BadSignature)?;
            let signature =
                ed25519_compact::Signature::from_slice(signature).map_err(|_| BadSignature)?;
            key.verify(signing_input, &signature)
                .map_err(|_| BadSignature)
        }
        _ => Err(BadSignature),
    }
}
