//! What a verified token says about its sender constraint (`cnf`, RFC 7800).

use crate::thumbprint::{Thumbprint, X5tError};
use serde_json::Value;

/// Name of the RFC 8705 confirmation method.
pub const X5T_S256: &str = "x5t#S256";

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
    /// The claim exists but Envoy could not hand it over.
    Unreadable,
}

impl std::fmt::Display for Malformation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformation::CnfNotObject => write!(f, "The cnf claim is not a JSON object"),
            Malformation::NoSupportedMethod => write!(
                f,
                "The cnf claim carries no confirmation method this resource checks (x5t#S256)"
            ),
            Malformation::X5t(error) => error.fmt(f),
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
        match methods.get(X5T_S256) {
            None => TokenBinding::Malformed(Malformation::NoSupportedMethod),
            Some(Value::String(x5t)) => TokenBinding::from_x5t(x5t.as_bytes()),
            Some(_) => TokenBinding::Malformed(Malformation::X5t(X5tError::NotText)),
        }
    }

    /// Classifies a raw `x5t#S256` value.
    pub fn from_x5t(value: &[u8]) -> TokenBinding {
        match Thumbprint::from_x5t(value) {
            Ok(thumbprint) => TokenBinding::Certificate(thumbprint),
            Err(error) => TokenBinding::Malformed(Malformation::X5t(error)),
        }
    }

    /// Whether deciding needs the client certificate.
    pub fn needs_certificate(&self) -> bool {
        matches!(self, TokenBinding::Certificate(_))
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
            TokenBinding::from_payload(&json!({"cnf": {"jkt": "abc"}})),
            TokenBinding::Malformed(Malformation::NoSupportedMethod)
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
