//! The proof's `jwk` header: a public key, and its RFC 7638 thumbprint.

use crate::dpop::proof::json::Object;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// Members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];
/// RSA moduli below this many bits are refused (NIST SP 800-131A).
pub const MIN_RSA_BITS: usize = 2048;
/// And above this many: the verification cost is the client's to choose otherwise.
pub const MAX_RSA_BITS: usize = 8192;

/// A public key the proof may be verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicJwk {
    /// `kty: EC`, `crv: P-256`: the affine coordinates, 32 bytes each.
    P256 { x: String, y: String },
    /// `kty: RSA`: big-endian modulus and exponent.
    Rsa { n: String, e: String },
    /// `kty: OKP`, `crv: Ed25519`: the 32-byte public key.
    Ed25519 { x: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwkError {
    /// The proof header has no `jwk` member at all.
    Absent,
    NotObject,
    PrivateMember(&'static str),
    UnsupportedKeyType(String),
    Member(&'static str),
    /// The coordinates or modulus decode but do not form a usable key.
    BadKey(&'static str),
}

impl std::fmt::Display for JwkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwkError::Absent => write!(f, "the proof header has no `jwk` member"),
            JwkError::NotObject => write!(f, "the jwk header is not a JSON object"),
            JwkError::PrivateMember(member) => write!(
                f,
                "the jwk header carries the private key member `{member}`; a proof must carry only the public key"
            ),
            JwkError::UnsupportedKeyType(kind) => write!(
                f,
                "the jwk key type {kind} is not supported (EC P-256, RSA, OKP Ed25519)"
            ),
            JwkError::Member(member) => write!(
                f,
                "the jwk member `{member}` is missing or not base64url text"
            ),
            JwkError::BadKey(why) => write!(f, "the jwk is not a usable public key: {why}"),
        }
    }
}

impl PublicJwk {
    pub fn parse(value: &Value) -> Result<PublicJwk, JwkError> {
        let jwk = value.as_object().ok_or(JwkError::NotObject)?;
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(JwkError::PrivateMember(member));
        }
        let text = |member: &'static str| -> Result<String, JwkError> {
            match jwk.get(member) {
                Some(Value::String(value)) if is_base64url(value) => Ok(value.clone()),
                _ => Err(JwkError::Member(member)),
            }
        };
        let curve = jwk.get("crv").and_then(Value::as_str);
        match (jwk.get("kty").and_then(Value::as_str), curve) {
            (Some("EC"), Some("P-256")) => {
                let key = PublicJwk::P256 {
                    x: text("x")?,
                    y: text("y")?,
                };
                key.check_lengths()?;
                Ok(key)
            }
            (Some("RSA"), _) => {
                let key = PublicJwk::Rsa {
                    n: text("n")?,
                    e: text("e")?,
                };
                key.check_lengths()?;
                Ok(key)
            }
            (Some("OKP"), Some("Ed25519")) => {
                let key = PublicJwk::Ed25519 { x: text("x")? };
                key.check_lengths()?;
                Ok(key)
            }
            (Some(kty), curve) => Err(JwkError::UnsupportedKeyType(match curve {
                Some(curve) => format!("{kty} {curve}"),
                None => kty.to_owned(),
            })),
            (None, _) => Err(JwkError::Member("kty")),
        }
    }

    fn check_lengths(&self) -> Result<(), JwkError> {
        let decoded_len = |value: &str, member: &'static str| {
            URL_SAFE_NO_PAD
                .decode(value)
                .map(|bytes| bytes.len())
                .map_err(|_| JwkError::Member(member))
        };
        match self {
            PublicJwk::P256 { x, y } => {
                if decoded_len(x, "x")? != 32 || decoded_len(y, "y")? != 32 {
                    return Err(JwkError::BadKey("P-256 coordinates are 32 bytes"));
                }
            }
            PublicJwk::Ed25519 { x } => {
                if decoded_len(x, "x")? != 32 {
                    return Err(JwkError::BadKey("an Ed25519 key is 32 bytes"));
                }
            }
            PublicJwk::Rsa { n, e } => {
                let n = URL_SAFE_NO_PAD
                    .decode(n)
                    .map_err(|_| JwkError::Member("n"))?;
                let bits = significant_bits(&n);
                if bits < MIN_RSA_BITS {
                    return Err(JwkError::BadKey(
                        "the RSA modulus is shorter than 2048 bits",
                    ));
                }
                if bits > MAX_RSA_BITS {
                    return Err(JwkError::BadKey("the RSA modulus is longer than 8192 bits"));
                }
                if decoded_len(e, "e")? > 8 {
                    return Err(JwkError::BadKey("the RSA exponent is too long"));
                }
            }
        }
        Ok(())
    }

    /// RFC 7638: SHA-256 over the required members, lexicographic order, no whitespace.
    pub fn thumbprint(&self) -> JwkThumbprint {
        // Members are base64url text (checked when parsed), so they need no JSON escaping.
        let canonical = match self {
            PublicJwk::P256 { x, y } => {
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
            }
            PublicJwk::Rsa { n, e } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
            PublicJwk::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        };
        JwkThumbprint(Sha256::digest(canonical.as_bytes()).into())
    }
}

/// Bits in a big-endian unsigned integer, leading zero bytes ignored.
fn significant_bits(bytes: &[u8]) -> usize {
    let mut rest = bytes.iter().skip_while(|b| **b == 0);
    match rest.next() {
        None => 0,
        Some(first) => 8 - first.leading_zeros() as usize + 8 * rest.count(),
    }
}

fn is_base64url(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An RFC 7638 JWK SHA-256 thumbprint (`cnf.jkt`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct JwkThumbprint([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JktError {
    NotText,
    /// Not 43 characters of unpadded base64url.
    Encoding,
}

impl std::fmt::Display for JktError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JktError::NotText => write!(f, "The cnf.jkt claim is not a string"),
            JktError::Encoding => write!(
                f,
                "The cnf.jkt claim is not a base64url SHA-256 JWK thumbprint (43 characters, no padding)"
            ),
        }
    }
}

impl JwkThumbprint {
    /// Parses `cnf.jkt`: exactly the 43-character unpadded base64url of 32 bytes.
    pub fn from_jkt(value: &[u8]) -> Result<JwkThumbprint, JktError> {
        if value.len() != 43 {
            return Err(JktError::Encoding);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| JktError::Encoding)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| JktError::Encoding)?;
        let canonical = JwkThumbprint(bytes);
        // Reject non-canonical trailing bits: only one spelling names a key.
        if canonical.to_jkt().as_bytes() != value {
            return Err(JktError::Encoding);
        }
        Ok(canonical)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_jkt(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Constant time: the comparison must not say how many bytes agreed.
    pub fn matches(&self, other: &JwkThumbprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for JwkThumbprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwkThumbprint({})", self.to_jkt())
    }
}

/// Reads `jwk` from a parsed proof header.
pub fn header_jwk(header: &Object) -> Result<PublicJwk, JwkError> {
    match header.get("jwk") {
        Some(value) => PublicJwk::parse(value),
        None => Err(JwkError::Absent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7638_example_thumbprint() {
        // RFC 7638 §3.1.
        let jwk = PublicJwk::parse(&json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29"
        }))
        .unwrap();
        assert_eq!(
            jwk.thumbprint().to_jkt(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn rfc9449_example_thumbprint() {
        // RFC 9449 §4.1 and §6.1: the example proof key and its jkt.
        let jwk = PublicJwk::parse(&json!({
            "kty": "EC",
            "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
            "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
            "crv": "P-256"
        }))
        .unwrap();
        assert_eq!(
            jwk.thumbprint().to_jkt(),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn private_keys_are_refused() {
        for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            let mut jwk =
                json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode([7; 32])});
            jwk[member] = json!("AAAA");
            assert_eq!(
                PublicJwk::parse(&jwk),
                Err(JwkError::PrivateMember(
                    PRIVATE_MEMBERS.iter().find(|m| **m == member).unwrap()
                ))
            );
        }
        assert!(matches!(
            PublicJwk::parse(&json!({"kty": "oct", "k": "c2VjcmV0"})),
            Err(JwkError::PrivateMember("k"))
        ));
    }

    #[test]
    fn unusable_keys_are_refused() {
        let b = |n: usize| URL_SAFE_NO_PAD.encode(vec![0x80u8; n]);
        for (jwk, expected) in [
            (json!("x"), JwkError::NotObject),
            (json!({"crv": "P-256"}), JwkError::Member("kty")),
            (
                json!({"kty": "EC", "crv": "P-384", "x": b(48), "y": b(48)}),
                JwkError::UnsupportedKeyType("EC P-384".into()),
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": b(32)}),
                JwkError::Member("y"),
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": b(32), "y": b(31)}),
                JwkError::BadKey("P-256 coordinates are 32 bytes"),
            ),
            (
                json!({"kty": "EC", "crv": "P-256", "x": "a=", "y": b(32)}),
                JwkError::Member("x"),
            ),
            (
                json!({"kty": "RSA", "n": b(255), "e": "AQAB"}),
                JwkError::BadKey("the RSA modulus is shorter than 2048 bits"),
            ),
            (
                json!({"kty": "RSA", "n": b(256), "e": 3}),
                JwkError::Member("e"),
            ),
        ] {
            assert_eq!(PublicJwk::parse(&jwk), Err(expected), "{jwk}");
        }
        assert!(PublicJwk::parse(&json!({"kty": "RSA", "n": b(256), "e": "AQAB"})).is_ok());
    }

    #[test]
    fn jkt_is_canonical_base64url_of_32_bytes() {
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        let parsed = JwkThumbprint::from_jkt(jkt.as_bytes()).unwrap();
        assert_eq!(parsed.to_jkt(), jkt);
        assert!(parsed.matches(&parsed));
        for bad in [
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I=",
            "0ZcOCORZNYy+DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4J",
            "short",
        ] {
            assert_eq!(
                JwkThumbprint::from_jkt(bad.as_bytes()),
                Err(JktError::Encoding),
                "{bad}"
            );
        }
    }
}
