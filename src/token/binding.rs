//! What a verified token says about its sender constraint (`cnf`, RFC 7800).

use crate::certificate::thumbprint::{Thumbprint, X5tError};
use crate::dpop::proof::jwk::{JktError, JwkThumbprint};
use serde_json::Value;

/// Name of the RFC 8705 confirmation method.
pub const X5T_S256: &str = "x5t#S256";
/// Name of the RFC 9449 confirmation method.
pub const JKT: &str = "jkt";

/// The binding a verified token declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenBinding {
    /// No verified token reached the filter.
    Missing(AuthFailure),
    /// The token has no `cnf` claim.
    Unbound,
    /// `cnf` is present but unusable; never treated as unbound.
    Malformed(Malformation),
    /// Bound to the certificate with this thumbprint.
    Certificate(Thumbprint),
    /// Bound to the DPoP key with this thumbprint.
    Key(JwkThumbprint),
    /// Bound both ways: both checks must pass.
    CertificateAndKey(Thumbprint, JwkThumbprint),
}

/// Why no verified token is available, as far as the filter can tell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthFailure {
    /// A token was presented (and failed), as opposed to none at all.
    pub token_presented: bool,
    /// jwt_authn's own reason, when `failed_status_in_metadata` recorded one.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformation {
    CnfNotObject,
    /// `cnf` names no confirmation method this filter checks (e.g. only `jkt`).
    NoSupportedMethod,
    X5t(X5tError),
    Jkt(JktError),
    /// Bound to a DPoP key where `dpop.policy` is `off`: cannot be checked.
    KeyBindingNotChecked,
    /// The claim exists but Envoy could not hand it over.
    Unreadable,
}

impl std::fmt::Display for Malformation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformation::CnfNotObject => write!(f, "The cnf claim is not a JSON object"),
            Malformation::NoSupportedMethod => write!(
                f,
                "The cnf claim carries no confirmation method this resource checks (x5t#S256, jkt)"
            ),
            Malformation::X5t(error) => error.fmt(f),
            Malformation::Jkt(error) => error.fmt(f),
            Malformation::KeyBindingNotChecked => write!(
                f,
                "The token is bound to a DPoP key (cnf.jkt), and this resource does not check DPoP proofs"
            ),
            Malformation::Unreadable => write!(f, "The cnf claim could not be read"),
        }
    }
}

impl TokenBinding {
    /// Classifies a decoded JWT payload (a JSON object).
    pub fn from_payload(payload: &Value) -> TokenBinding {
        let Some(claims) = payload.as_object() else {
            return TokenBinding::Missing(AuthFailure {
                token_presented: true,
                reason: Some("the token payload is not a JSON object".to_owned()),
            });
        };
        match claims.get("cnf") {
            None => TokenBinding::Unbound,
            Some(cnf) => TokenBinding::from_cnf(cnf),
        }
    }

    fn from_cnf(cnf: &Value) -> TokenBinding {
        let Some(methods) = cnf.as_object() else {
            return TokenBinding::Malformed(Malformation::CnfNotObject);
        };
        let text = |value: &Value| match value {
            Value::String(text) => Ok(text.as_bytes().to_vec()),
            _ => Err(()),
        };
        let x5t = methods.get(X5T_S256).map(text);
        let jkt = methods.get(JKT).map(text);
        let x5t = x5t.map(|v| v.map_err(|()| Malformation::X5t(X5tError::NotText)));
        let jkt = jkt.map(|v| v.map_err(|()| Malformation::Jkt(JktError::NotText)));
        TokenBinding::from_methods(x5t, jkt)
    }

    /// Classifies the raw `x5t#S256` and `jkt` values, either possibly absent.
    pub fn from_methods(
        x5t: Option<Result<Vec<u8>, Malformation>>,
        jkt: Option<Result<Vec<u8>, Malformation>>,
    ) -> TokenBinding {
        let certificate = x5t.map(|value| Thumbprint::from_x5t(&value?).map_err(Malformation::X5t));
        let key = jkt.map(|value| JwkThumbprint::from_jkt(&value?).map_err(Malformation::Jkt));
        match (certificate, key) {
            (None, None) => TokenBinding::Malformed(Malformation::NoSupportedMethod),
            (Some(Err(malformation)), _) | (_, Some(Err(malformation))) => {
                TokenBinding::Malformed(malformation)
            }
            (Some(Ok(certificate)), None) => TokenBinding::Certificate(certificate),
            (None, Some(Ok(key))) => TokenBinding::Key(key),
            (Some(Ok(certificate)), Some(Ok(key))) => {
                TokenBinding::CertificateAndKey(certificate, key)
            }
        }
    }

    /// Classifies a raw `x5t#S256` value.
    pub fn from_x5t(value: &[u8]) -> TokenBinding {
        TokenBinding::from_methods(Some(Ok(value.to_vec())), None)
    }

    /// The certificate the token is bound to, if any.
    pub fn certificate(&self) -> Option<&Thumbprint> {
        match self {
            TokenBinding::Certificate(thumbprint)
            | TokenBinding::CertificateAndKey(thumbprint, _) => Some(thumbprint),
            _ => None,
        }
    }

    /// The DPoP key the token is bound to, if any.
    pub fn key(&self) -> Option<&JwkThumbprint> {
        match self {
            TokenBinding::Key(key) | TokenBinding::CertificateAndKey(_, key) => Some(key),
            _ => None,
        }
    }

    /// Whether deciding needs the client certificate.
    pub fn needs_certificate(&self) -> bool {
        self.certificate().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn x5t() -> String {
        Thumbprint::of(b"cert").to_x5t()
    }

    #[test]
    fn bound_payload() {
        let binding = TokenBinding::from_payload(&json!({"sub": "a", "cnf": {"x5t#S256": x5t()}}));
        assert_eq!(binding, TokenBinding::Certificate(Thumbprint::of(b"cert")));
        assert!(binding.needs_certificate());
    }

    #[test]
    fn key_and_dual_bound_payloads() {
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        let key = JwkThumbprint::from_jkt(jkt.as_bytes()).unwrap();
        let binding = TokenBinding::from_payload(&json!({"cnf": {"jkt": jkt}}));
        assert_eq!(binding, TokenBinding::Key(key));
        assert!(!binding.needs_certificate());
        let binding = TokenBinding::from_payload(&json!({"cnf": {"jkt": jkt, "x5t#S256": x5t()}}));
        assert_eq!(
            binding,
            TokenBinding::CertificateAndKey(Thumbprint::of(b"cert"), key)
        );
        assert!(binding.needs_certificate());
        assert_eq!(binding.key(), Some(&key));
    }

    #[test]
    fn unbound_payload() {
        assert_eq!(
            TokenBinding::from_payload(&json!({"sub": "a"})),
            TokenBinding::Unbound
        );
    }

    #[test]
    fn present_cnf_is_never_unbound() {
        for cnf in [
            json!({}),
            json!({"jkt": "abc"}),
            json!({"jkt": 1}),
            json!({"x5t#S256": x5t(), "jkt": "abc"}),
            json!(null),
            json!("x"),
            json!([1]),
        ] {
            let binding = TokenBinding::from_payload(&json!({"cnf": cnf}));
            assert!(
                matches!(binding, TokenBinding::Malformed(_)),
                "{cnf}: {binding:?}"
            );
        }
        assert_eq!(
            TokenBinding::from_payload(&json!({"cnf": {"jwk": "abc"}})),
            TokenBinding::Malformed(Malformation::NoSupportedMethod)
        );
        assert_eq!(
            TokenBinding::from_payload(&json!({"cnf": {"jkt": "abc"}})),
            TokenBinding::Malformed(Malformation::Jkt(JktError::Encoding))
        );
        assert_eq!(
            TokenBinding::from_payload(&json!({"cnf": "x"})),
            TokenBinding::Malformed(Malformation::CnfNotObject)
        );
    }

    #[test]
    fn x5t_must_be_a_string() {
        for x5t in [
            json!(1.5),
            json!(true),
            json!({"a": "b"}),
            json!(["x"]),
            json!(null),
        ] {
            assert_eq!(
                TokenBinding::from_payload(&json!({"cnf": {"x5t#S256": x5t}})),
                TokenBinding::Malformed(Malformation::X5t(X5tError::NotText))
            );
        }
    }

    #[test]
    fn non_object_payload_is_not_a_token() {
        assert!(matches!(
            TokenBinding::from_payload(&json!([1])),
            TokenBinding::Missing(_)
        ));
    }
}
