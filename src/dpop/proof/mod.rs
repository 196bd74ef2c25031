//! One DPoP proof checked against the request it came with (RFC 9449 §4.3).
//! Pure: the caller supplies the headers, the request URI and the time.
//! Binding (`jkt`), nonces and replay are the caller's next steps.
//!
//! - [`json`]: strict JSON (no duplicate members);
//! - [`jwk`]: public keys and their RFC 7638 thumbprints;
//! - [`signature`]: ES256, RS256, PS256 and EdDSA, and who verifies them;
//! - [`der`], [`protobuf`]: what Envoy's `verify_signature` takes and gives;
//! - [`htu`]: RFC 3986 normalisation of the request URI.

pub mod der;
pub mod htu;
pub mod json;
pub mod jwk;
pub mod protobuf;
pub mod signature;

use crate::dpop::proof::htu::normalize;
use crate::dpop::proof::json::{strict_object, Object};
use crate::dpop::proof::jwk::{header_jwk, JwkError, JwkThumbprint, PublicJwk};
use crate::dpop::proof::signature::{Algorithm, SignatureError, VerifySignature};
use crate::dpop::settings::DpopConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Larger proofs are refused before any parsing; an RSA-8192 proof fits.
pub const MAX_PROOF_BYTES: usize = 8192;
/// A `jti` is an identifier, not a payload.
const MAX_JTI_BYTES: usize = 256;

/// What the proof is checked against.
#[derive(Debug, Clone)]
pub struct ProofRequest<'a> {
    /// Every `DPoP` header value the request carries.
    pub proofs: &'a [Vec<u8>],
    pub method: &'a str,
    /// The URI the client addressed, as `normalize` gives it.
    pub uri: &'a str,
    /// The access token exactly as sent after `DPoP `.
    pub access_token: &'a str,
    /// Seconds since the Unix epoch.
    pub now: f64,
}

/// A proof that passed every check of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    pub key: JwkThumbprint,
    pub jti: String,
    pub nonce: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError {
    Missing,
    Multiple,
    TooLarge,
    NotJws,
    Header(String),
    Type,
    Algorithm(String),
    Critical,
    Jwk(JwkError),
    KeyDoesNotFitAlgorithm,
    Claims(String),
    Claim(&'static str),
    Method {
        expected: String,
        proof: String,
    },
    Uri {
        expected: String,
        proof: String,
    },
    Stale {
        age_seconds: u64,
    },
    Future {
        ahead_seconds: u64,
    },
    AccessTokenHash,
    Signature,
    /// `Authorization` is not exactly `DPoP <token>`.
    AuthorizationSpelling,
    /// The proxy could not supply what the check needs (headers, the clock).
    Unavailable(String),
}

impl std::fmt::Display for ProofError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProofError::Missing => write!(f, "the request carries no DPoP header"),
            ProofError::Multiple => write!(f, "the request carries more than one DPoP proof"),
            ProofError::TooLarge => {
                write!(f, "the DPoP proof is larger than {MAX_PROOF_BYTES} bytes")
            }
            ProofError::NotJws => write!(f, "the DPoP header is not one compact JWS"),
            ProofError::Header(why) => write!(f, "the proof header is not a JSON object: {why}"),
            ProofError::Type => write!(f, "the proof's typ is not dpop+jwt"),
            ProofError::Algorithm(alg) => write!(f, "the proof's alg {alg} is not accepted"),
            ProofError::Critical => write!(
                f,
                "the proof names critical extensions cnf-guard does not know"
            ),
            ProofError::Jwk(error) => error.fmt(f),
            ProofError::KeyDoesNotFitAlgorithm => {
                write!(f, "the jwk is not a key for the proof's alg")
            }
            ProofError::Claims(why) => write!(f, "the proof claims are not a JSON object: {why}"),
            ProofError::Claim(claim) => write!(
                f,
                "the proof's {claim} claim is missing or of the wrong type"
            ),
            ProofError::Method { expected, proof } => write!(
                f,
                "the proof's htm {proof:?} does not match the request method {expected}"
            ),
            ProofError::Uri { expected, proof } => write!(
                f,
                "the proof's htu {proof:?} does not match the request URI {expected}"
            ),
            ProofError::Stale { age_seconds } => {
                write!(f, "the proof was issued {age_seconds} s ago, too long ago")
            }
            ProofError::Future { ahead_seconds } => {
                write!(f, "the proof's iat is {ahead_seconds} s in the future")
            }
            ProofError::AccessTokenHash => write!(
                f,
                "the proof's ath is not the hash of the access token it came with"
            ),
            ProofError::Signature => {
                write!(f, "the proof's signature does not verify with its jwk")
            }
            ProofError::AuthorizationSpelling => write!(
                f,
                "the Authorization header must be `DPoP <token>` with exactly one space; \
                 another spelling of the same token could reach a replica that a load \
                 balancer hashing on the header would not send it to"
            ),
            ProofError::Unavailable(why) => write!(f, "the request could not be checked: {why}"),
        }
    }
}

/// Checks the single proof on `request` against `config`.
pub fn verify_proof(
    config: &DpopConfig,
    request: &ProofRequest<'_>,
    verifier: &impl VerifySignature,
) -> Result<VerifiedProof, ProofError> {
    let proof = single_proof(request.proofs)?;
    let (signing_input, signature) = proof.rsplit_once('.').ok_or(ProofError::NotJws)?;
    let (header, claims) = signing_input.split_once('.').ok_or(ProofError::NotJws)?;
    let decode = |segment: &str| {
        URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| ProofError::NotJws)
    };
    let header = strict_object(&decode(header)?).map_err(ProofError::Header)?;
    let claims_json = decode(claims)?;
    let signature = decode(signature)?;

    let algorithm = check_header(config, &header)?;
    let jwk = header_jwk(&header).map_err(ProofError::Jwk)?;
    if !algorithm.fits(&jwk) {
        return Err(ProofError::KeyDoesNotFitAlgorithm);
    }
    let claims = strict_object(&claims_json).map_err(ProofError::Claims)?;
    let checked = check_claims(config, request, &claims)?;
    // Last: the costliest check, done only for a proof worth verifying.
    verifier
        .verify(algorithm, &jwk, signing_input.as_bytes(), &signature)
        .map_err(|error| match error {
            SignatureError::Bad => ProofError::Signature,
            SignatureError::Unavailable(why) => ProofError::Unavailable(why),
        })?;
    Ok(VerifiedProof {
        key: PublicJwk::thumbprint(&jwk),
        jti: checked.jti,
        nonce: checked.nonce,
    })
}

fn single_proof(proofs: &[Vec<u8>]) -> Result<&str, ProofError> {
    let proof = match proofs {
        [] => return Err(ProofError::Missing),
        [proof] => proof,
        _ => return Err(ProofError::Multiple),
    };
    if proof.len() > MAX_PROOF_BYTES {
        return Err(ProofError::TooLarge);
    }
    let proof = std::str::from_utf8(proof)
        .map_err(|_| ProofError::NotJws)?
        .trim();
    // A proxy joins repeated headers with commas; a JWS never contains one.
    if proof.contains(',') {
        return Err(ProofError::Multiple);
    }
    if proof.is_empty() || proof.split('.').count() != 3 {
        return Err(ProofError::NotJws);
    }
    Ok(proof)
}

fn check_header(config: &DpopConfig, header: &Object) -> Result<Algorithm, ProofError> {
    // Media type names are case-insensitive (RFC 2045 §5.1).
    match header.get("typ").and_then(Value::as_str) {
        Some(typ) if typ.eq_ignore_ascii_case("dpop+jwt") => {}
        _ => return Err(ProofError::Type),
    }
    let name = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or("(missing)");
    let algorithm = Algorithm::from_name(name)
        .filter(|alg| config.algorithms.contains(alg))
        .ok_or_else(|| ProofError::Algorithm(printable(name)))?;
    // RFC 7515 §4.1.11: extensions that must be understood, and are not.
    if header.contains_key("crit") {
        return Err(ProofError::Critical);
    }
    Ok(algorithm)
}

struct CheckedClaims {
    jti: String,
    nonce: Option<String>,
}

fn check_claims(
    config: &DpopConfig,
    request: &ProofRequest<'_>,
    claims: &Object,
) -> Result<CheckedClaims, ProofError> {
    let text = |claim: &'static str| -> Result<&str, ProofError> {
        claims
            .get(claim)
            .and_then(Value::as_str)
            .ok_or(ProofError::Claim(claim))
    };
    let jti = text("jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
        return Err(ProofError::Claim("jti"));
    }
    let htm = text("htm")?;
    if htm != request.method {
        return Err(ProofError::Method {
            expected: request.method.to_owned(),
            proof: printable(htm),
        });
    }
    let htu = text("htu")?;
    if normalize(htu).as_deref() != Ok(request.uri) {
        return Err(ProofError::Uri {
            expected: request.uri.to_owned(),
            proof: printable(htu),
        });
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .filter(|iat| iat.is_finite())
        .ok_or(ProofError::Claim("iat"))?;
    if iat < request.now - config.max_age_seconds as f64 {
        return Err(ProofError::Stale {
            age_seconds: (request.now - iat) as u64,
        });
    }
    if iat > request.now + config.max_clock_skew_seconds as f64 {
        return Err(ProofError::Future {
            ahead_seconds: (iat - request.now) as u64,
        });
    }
    let ath = text("ath")?;
    if ath != access_token_hash(request.access_token) {
        return Err(ProofError::AccessTokenHash);
    }
    let nonce = match claims.get("nonce") {
        None => None,
        Some(Value::String(nonce)) => Some(nonce.clone()),
        Some(_) => return Err(ProofError::Claim("nonce")),
    };
    Ok(CheckedClaims {
        jti: jti.to_owned(),
        nonce,
    })
}

/// `ath`: base64url SHA-256 of the access token's ASCII (RFC 9449 §4.2).
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(access_token.as_bytes()))
}

/// Client-chosen text, cut and kept printable for logs and problem details.
fn printable(text: &str) -> String {
    text.chars()
        .take(80)
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpop::test_proofs::{claims, TestKey};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;
    const URI: &str = "https://api.example.com/orders";
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";

    fn check(proofs: &[String]) -> Result<VerifiedProof, ProofError> {
        check_with(&DpopConfig::default(), proofs)
    }

    fn check_with(config: &DpopConfig, proofs: &[String]) -> Result<VerifiedProof, ProofError> {
        let proofs: Vec<Vec<u8>> = proofs.iter().map(|p| p.clone().into_bytes()).collect();
        verify_proof(
            config,
            &ProofRequest {
                proofs: &proofs,
                method: "POST",
                uri: &normalize(URI).unwrap(),
                access_token: TOKEN,
                now: NOW as f64,
            },
            &crate::dpop::proof::signature::InModule,
        )
    }

    fn valid(key: &TestKey) -> String {
        key.proof("POST", URI, TOKEN, NOW, "jti-1")
    }

    #[test]
    fn valid_proofs_of_every_algorithm_pass() {
        for key in TestKey::all() {
            let verified = check(&[valid(&key)]).unwrap_or_else(|e| panic!("{}: {e}", key.alg()));
            assert!(verified.key.matches(&key.jkt()), "{}", key.alg());
            assert_eq!(verified.jti, "jti-1");
        }
    }

    #[test]
    fn equivalent_htu_spellings_pass() {
        let key = TestKey::es256();
        for htu in [
            "HTTPS://API.example.com:443/orders",
            "https://api.example.com/orders?x=1",
        ] {
            assert!(
                check(&[key.proof("POST", htu, TOKEN, NOW, "j")]).is_ok(),
                "{htu}"
            );
        }
    }

    #[test]
    fn each_claim_check_refuses_its_inversion() {
        for key in TestKey::all() {
            claim_inversions(&key);
        }
    }

    fn claim_inversions(key: &TestKey) {
        type Expectation = fn(&ProofError) -> bool;
        let cases: Vec<(String, Expectation)> = vec![
            (key.proof("GET", URI, TOKEN, NOW, "j"), |e| {
                matches!(e, ProofError::Method { .. })
            }),
            (key.proof("post", URI, TOKEN, NOW, "j"), |e| {
                matches!(e, ProofError::Method { .. })
            }),
            (
                key.proof("POST", "https://api.example.com/other", TOKEN, NOW, "j"),
                |e| matches!(e, ProofError::Uri { .. }),
            ),
            (
                key.proof("POST", "http://api.example.com/orders", TOKEN, NOW, "j"),
                |e| matches!(e, ProofError::Uri { .. }),
            ),
            (key.proof("POST", URI, TOKEN, NOW - 61, "j"), |e| {
                *e == ProofError::Stale { age_seconds: 61 }
            }),
            (key.proof("POST", URI, TOKEN, NOW + 11, "j"), |e| {
                *e == ProofError::Future { ahead_seconds: 11 }
            }),
            (key.proof("POST", URI, "another.token.x", NOW, "j"), |e| {
                *e == ProofError::AccessTokenHash
            }),
            (key.proof("POST", URI, TOKEN, NOW, ""), |e| {
                *e == ProofError::Claim("jti")
            }),
        ];
        for (proof, expected) in cases {
            let error = check(&[proof]).unwrap_err();
            assert!(expected(&error), "{}: {error:?}", key.alg());
        }
        // The window's edges are inside it.
        assert!(check(&[key.proof("POST", URI, TOKEN, NOW - 60, "j")]).is_ok());
        assert!(check(&[key.proof("POST", URI, TOKEN, NOW + 10, "j")]).is_ok());
    }

    #[test]
    fn missing_or_mistyped_claims() {
        for key in TestKey::all() {
            missing_or_mistyped(&key);
        }
    }

    fn missing_or_mistyped(key: &TestKey) {
        for claim in ["jti", "htm", "htu", "iat", "ath"] {
            let mut body = claims("POST", URI, TOKEN, NOW, "j");
            body.as_object_mut().unwrap().remove(claim);
            assert_eq!(
                check(&[key.sign(&key.header(), &body)]),
                Err(ProofError::Claim(claim))
            );
            body[claim] = json!(["x"]);
            assert_eq!(
                check(&[key.sign(&key.header(), &body)]),
                Err(ProofError::Claim(claim))
            );
        }
    }

    #[test]
    fn header_checks() {
        for key in TestKey::all() {
            header_inversions(&key);
        }
    }

    fn header_inversions(key: &TestKey) {
        let body = claims("POST", URI, TOKEN, NOW, "j");
        let with = |change: &dyn Fn(&mut Value)| {
            let mut header = key.header();
            change(&mut header);
            check(&[key.sign(&header, &body)]).unwrap_err()
        };
        assert_eq!(with(&|h| h["typ"] = json!("JWT")), ProofError::Type);
        assert_eq!(
            with(&|h| {
                h.as_object_mut().unwrap().remove("typ");
            }),
            ProofError::Type
        );
        assert_eq!(
            with(&|h| h["alg"] = json!("none")),
            ProofError::Algorithm("none".into())
        );
        assert_eq!(
            with(&|h| h["alg"] = json!("HS256")),
            ProofError::Algorithm("HS256".into())
        );
        let other_kind = if key.alg().ends_with("S256") && key.alg() != "ES256" {
            "ES256"
        } else {
            "RS256"
        };
        assert_eq!(
            with(&|h| h["alg"] = json!(other_kind)),
            ProofError::KeyDoesNotFitAlgorithm
        );
        assert_eq!(with(&|h| h["crit"] = json!(["exp"])), ProofError::Critical);
        assert!(matches!(
            with(&|h| h["jwk"]["d"] = json!("c2VjcmV0")),
            ProofError::Jwk(JwkError::PrivateMember("d"))
        ));
        assert!(matches!(
            with(&|h| {
                h.as_object_mut().unwrap().remove("jwk");
            }),
            ProofError::Jwk(JwkError::Absent)
        ));
        // "typ" compares as a media type: case-insensitively.
        let mut header = key.header();
        header["typ"] = json!("DPoP+JWT");
        assert!(check(&[key.sign(&header, &body)]).is_ok());
    }

    #[test]
    fn algorithms_outside_the_allow_list_are_refused() {
        let config = DpopConfig {
            algorithms: vec![Algorithm::EdDSA],
            ..DpopConfig::default()
        };
        assert_eq!(
            check_with(&config, &[valid(&TestKey::es256())]),
            Err(ProofError::Algorithm("ES256".into()))
        );
        assert!(check_with(&config, &[valid(&TestKey::eddsa())]).is_ok());
    }

    #[test]
    fn signatures_must_verify_with_the_header_key() {
        for key in TestKey::all() {
            let other = match key {
                TestKey::Es256(_) => TestKey::es256(),
                TestKey::EdDsa(_) => TestKey::eddsa(),
                // The RSA test key is shared; tamper with the claims instead.
                _ => {
                    let proof = valid(&key);
                    let (head, signature) = proof.rsplit_once('.').unwrap();
                    let (header, _) = head.split_once('.').unwrap();
                    let body = claims("POST", URI, TOKEN, NOW, "jti-2");
                    let forged = format!(
                        "{header}.{}.{signature}",
                        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&body).unwrap())
                    );
                    assert_eq!(
                        check(&[forged]),
                        Err(ProofError::Signature),
                        "{}",
                        key.alg()
                    );
                    continue;
                }
            };
            // Signed by another key, claiming this one.
            let proof = other.sign(&key.header(), &claims("POST", URI, TOKEN, NOW, "j"));
            assert_eq!(check(&[proof]), Err(ProofError::Signature), "{}", key.alg());
        }
        // An HMAC "proof" keyed with the public key proves nothing.
        let key = TestKey::es256();
        let mut header = key.header();
        header["alg"] = json!("HS256");
        let proof = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap()),
            URL_SAFE_NO_PAD
                .encode(serde_json::to_vec(&claims("POST", URI, TOKEN, NOW, "j")).unwrap()),
            URL_SAFE_NO_PAD.encode([0u8; 32])
        );
        assert_eq!(check(&[proof]), Err(ProofError::Algorithm("HS256".into())));
    }

    #[test]
    fn exactly_one_compact_proof() {
        let key = TestKey::es256();
        assert_eq!(check(&[]), Err(ProofError::Missing));
        assert_eq!(
            check(&[valid(&key), valid(&key)]),
            Err(ProofError::Multiple)
        );
        assert_eq!(
            check(&[format!("{},{}", valid(&key), valid(&key))]),
            Err(ProofError::Multiple)
        );
        for junk in ["", "abc", "a.b", "a.b.c.d", "%%%.e30.AA"] {
            assert_eq!(check(&[junk.to_owned()]), Err(ProofError::NotJws), "{junk}");
        }
        assert_eq!(
            check(&["a".repeat(MAX_PROOF_BYTES + 1)]),
            Err(ProofError::TooLarge)
        );
    }

    #[test]
    fn duplicate_members_are_refused() {
        let key = TestKey::es256();
        let header = serde_json::to_string(&key.header()).unwrap();
        let header = header.replacen('{', r#"{"typ":"JWT","#, 1);
        let body = serde_json::to_vec(&claims("POST", URI, TOKEN, NOW, "j")).unwrap();
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(body)
        );
        let proof = format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(key.signature(input.as_bytes()))
        );
        assert!(
            matches!(check(&[proof]), Err(ProofError::Header(why)) if why.contains("duplicate"))
        );
    }
}
