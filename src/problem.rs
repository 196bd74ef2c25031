//! Denials rendered as RFC 9457 problem details plus an RFC 6750 challenge.
//! This is the only place that turns a `Denial` into bytes on the wire.

use crate::decision::Denial;
use serde::Serialize;

/// The public problem types. The slug is part of the `type` URI and of metric names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    AuthenticationFailed,
    TokenInvalid,
    TokenUnbound,
    MtlsRequired,
    MtlsBindingMismatch,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 5] = [
        ProblemKind::AuthenticationFailed,
        ProblemKind::TokenInvalid,
        ProblemKind::TokenUnbound,
        ProblemKind::MtlsRequired,
        ProblemKind::MtlsBindingMismatch,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::AuthenticationFailed => "authentication-failed",
            ProblemKind::TokenInvalid => "token-invalid",
            ProblemKind::TokenUnbound => "token-unbound",
            ProblemKind::MtlsRequired => "mtls-required",
            ProblemKind::MtlsBindingMismatch => "mtls-binding-mismatch",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::AuthenticationFailed => "Authentication failed",
            ProblemKind::TokenInvalid => "Invalid confirmation claim",
            ProblemKind::TokenUnbound => "Sender-constrained token required",
            ProblemKind::MtlsRequired => "Client certificate required",
            ProblemKind::MtlsBindingMismatch => "Certificate binding mismatch",
        }
    }

    /// Every denial is a failed authentication (RFC 6750 §3.1, RFC 8705 §3).
    pub fn status(self) -> u32 {
        401
    }

    /// RFC 6750 `error_description`: fixed text, so it always stays within the
    /// characters a quoted auth-param allows.
    fn error_description(self) -> &'static str {
        match self {
            ProblemKind::AuthenticationFailed => "The access token could not be verified",
            ProblemKind::TokenInvalid => "The token's cnf claim is malformed",
            ProblemKind::TokenUnbound => "The access token is not bound to a client certificate",
            ProblemKind::MtlsRequired => {
                "The access token is certificate-bound but no client certificate was presented"
            }
            ProblemKind::MtlsBindingMismatch => {
                "The access token is bound to a different client certificate"
            }
        }
    }
}

impl Denial {
    pub fn kind(&self) -> ProblemKind {
        match self {
            Denial::AuthenticationFailed(_) => ProblemKind::AuthenticationFailed,
            Denial::TokenInvalid(_) => ProblemKind::TokenInvalid,
            Denial::TokenUnbound => ProblemKind::TokenUnbound,
            Denial::MtlsRequired { .. } => ProblemKind::MtlsRequired,
            Denial::MtlsBindingMismatch { .. } => ProblemKind::MtlsBindingMismatch,
        }
    }

    /// Human-readable detail. Never contains the token or key material.
    pub fn detail(&self) -> String {
        match self {
            Denial::AuthenticationFailed(failure) => match &failure.reason {
                Some(reason) => format!("No verified access token: {reason}."),
                None if failure.token_presented => {
                    "The access token presented was not verified by the proxy.".to_owned()
                }
                None => "The request carries no verified access token.".to_owned(),
            },
            Denial::TokenInvalid(malformation) => format!("{malformation}."),
            Denial::TokenUnbound => "This resource only accepts sender-constrained access tokens \
                 (RFC 8705); the token has no cnf claim."
                .to_owned(),
            Denial::MtlsRequired { reason: None, .. } => "The access token is bound to a client \
                 certificate, but none was presented."
                .to_owned(),
            Denial::MtlsRequired {
                reason: Some(reason),
                ..
            } => format!(
                "The access token is bound to a client certificate, but no usable one was \
                 presented: {reason}."
            ),
            Denial::MtlsBindingMismatch { .. } => "The access token is bound to a different \
                 client certificate than the one presented."
                .to_owned(),
        }
    }

    /// Whether the client sent a token, which decides if RFC 6750 wants an error code.
    fn token_presented(&self) -> bool {
        match self {
            Denial::AuthenticationFailed(failure) => failure.token_presented,
            _ => true,
        }
    }
}

/// Request facts a problem document needs.
pub struct ProblemContext<'a> {
    pub type_base: &'a str,
    /// `:path` as received; the query and fragment are cut off here.
    pub path: Option<&'a str>,
    pub timestamp: &'a str,
    pub request_id: Option<&'a str>,
}

/// A rendered local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

#[derive(Serialize)]
struct ProblemDocument<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'static str,
    status: u32,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a str>,
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

pub fn render(denial: &Denial, context: &ProblemContext<'_>) -> Reply {
    let kind = denial.kind();
    let document = ProblemDocument {
        type_uri: format!("{}{}", context.type_base, kind.slug()),
        title: kind.title(),
        status: kind.status(),
        detail: denial.detail(),
        instance: context.path.map(path_without_query),
        timestamp: context.timestamp,
        request_id: context.request_id,
    };
    // Serialising plain strings and integers cannot fail; an empty body would
    // still be a denial, so there is nothing to fail open on.
    let body = serde_json::to_vec(&document).unwrap_or_default();
    let challenge = if denial.token_presented() {
        format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            kind.error_description()
        )
    } else {
        "Bearer".to_owned()
    };
    Reply {
        status: kind.status(),
        headers: vec![
            ("content-type", PROBLEM_CONTENT_TYPE.to_owned()),
            ("www-authenticate", challenge),
            ("cache-control", "no-store".to_owned()),
        ],
        body,
    }
}

/// `:path` without query and fragment: what `instance` shows and rules match.
pub fn path_without_query(path: &str) -> &str {
    let end = path.find(['?', '#']).unwrap_or(path.len());
    path.get(..end).unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::{AuthFailure, Malformation};
    use crate::thumbprint::Thumbprint;
    use serde_json::Value;

    fn context() -> ProblemContext<'static> {
        ProblemContext {
            type_base: "https://example.com/p/",
            path: Some("/orders/7?token=secret#frag"),
            timestamp: "2026-01-02T03:04:05Z",
            request_id: Some("req-1"),
        }
    }

    fn body(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
        &reply.headers.iter().find(|(n, _)| *n == name).unwrap().1
    }

    #[test]
    fn mismatch_document_has_every_member() {
        let denial = Denial::MtlsBindingMismatch {
            expected: Thumbprint::of(b"a"),
            presented: Thumbprint::of(b"b"),
        };
        let reply = render(&denial, &context());
        assert_eq!(reply.status, 401);
        assert_eq!(header(&reply, "content-type"), "application/problem+json");
        assert_eq!(
            header(&reply, "www-authenticate"),
            "Bearer error=\"invalid_token\", error_description=\"The access token is bound to a different client certificate\""
        );
        let document = body(&reply);
        assert_eq!(
            document["type"],
            "https://example.com/p/mtls-binding-mismatch"
        );
        assert_eq!(document["title"], "Certificate binding mismatch");
        assert_eq!(document["status"], 401);
        assert_eq!(document["instance"], "/orders/7");
        assert_eq!(document["timestamp"], "2026-01-02T03:04:05Z");
        assert_eq!(document["request_id"], "req-1");
        assert!(document["detail"]
            .as_str()
            .unwrap()
            .contains("different client certificate"));
    }

    #[test]
    fn no_token_gets_a_bare_challenge() {
        let reply = render(
            &Denial::AuthenticationFailed(AuthFailure::default()),
            &context(),
        );
        assert_eq!(header(&reply, "www-authenticate"), "Bearer");
        let failed = AuthFailure {
            token_presented: true,
            reason: Some("Jwt is expired".into()),
        };
        let reply = render(&Denial::AuthenticationFailed(failed), &context());
        assert!(header(&reply, "www-authenticate").starts_with("Bearer error=\"invalid_token\""));
        assert_eq!(
            body(&reply)["detail"],
            "No verified access token: Jwt is expired."
        );
    }

    #[test]
    fn error_descriptions_are_valid_auth_params() {
        for kind in ProblemKind::ALL {
            assert!(kind
                .error_description()
                .bytes()
                .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'));
        }
    }

    #[test]
    fn missing_facts_are_omitted() {
        let context = ProblemContext {
            path: None,
            request_id: None,
            ..context()
        };
        let document = body(&render(
            &Denial::TokenInvalid(Malformation::CnfNotObject),
            &context,
        ));
        assert!(document.get("instance").is_none());
        assert!(document.get("request_id").is_none());
        assert_eq!(document["detail"], "The cnf claim is not a JSON object.");
    }

    #[test]
    fn slugs_are_distinct() {
        let mut slugs: Vec<_> = ProblemKind::ALL.iter().map(|k| k.slug()).collect();
        slugs.sort();
        slugs.dedup();
        assert_eq!(slugs.len(), ProblemKind::ALL.len());
    }
}
