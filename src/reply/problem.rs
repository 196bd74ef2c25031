//! Denials rendered as RFC 9457 problem details plus an RFC 6750 challenge.
//! This is the only place that turns a `Denial` into bytes on the wire.

use crate::dpop::denial::Recorded;
use crate::dpop::denial::{DpopDenial, RequiredReason};
use crate::headers::path_without_query;
use crate::policy::decision::Denial;
use crate::reply::Reply;
use serde::Serialize;

/// The public problem types. The slug is part of the `type` URI and of metric names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    AuthenticationFailed,
    TokenInvalid,
    TokenUnbound,
    MtlsRequired,
    MtlsBindingMismatch,
    DpopRequired,
    DpopProofInvalid,
    DpopBindingMismatch,
    DpopReplay,
    DpopNonceRequired,
    MultipleTokens,
}

impl ProblemKind {
    pub const ALL: [ProblemKind; 11] = [
        ProblemKind::AuthenticationFailed,
        ProblemKind::TokenInvalid,
        ProblemKind::TokenUnbound,
        ProblemKind::MtlsRequired,
        ProblemKind::MtlsBindingMismatch,
        ProblemKind::DpopRequired,
        ProblemKind::DpopProofInvalid,
        ProblemKind::DpopBindingMismatch,
        ProblemKind::DpopReplay,
        ProblemKind::DpopNonceRequired,
        ProblemKind::MultipleTokens,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            ProblemKind::AuthenticationFailed => "authentication-failed",
            ProblemKind::TokenInvalid => "token-invalid",
            ProblemKind::TokenUnbound => "token-unbound",
            ProblemKind::MtlsRequired => "mtls-required",
            ProblemKind::MtlsBindingMismatch => "mtls-binding-mismatch",
            ProblemKind::DpopRequired => "dpop-required",
            ProblemKind::DpopProofInvalid => "dpop-proof-invalid",
            ProblemKind::DpopBindingMismatch => "dpop-binding-mismatch",
            ProblemKind::DpopReplay => "dpop-replay",
            ProblemKind::DpopNonceRequired => "dpop-nonce-required",
            ProblemKind::MultipleTokens => "multiple-tokens",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::AuthenticationFailed => "Authentication failed",
            ProblemKind::TokenInvalid => "Invalid confirmation claim",
            ProblemKind::TokenUnbound => "Sender-constrained token required",
            ProblemKind::MtlsRequired => "Client certificate required",
            ProblemKind::MtlsBindingMismatch => "Certificate binding mismatch",
            ProblemKind::DpopRequired => "DPoP proof of possession required",
            ProblemKind::DpopProofInvalid => "Invalid DPoP proof",
            ProblemKind::DpopBindingMismatch => "DPoP key binding mismatch",
            ProblemKind::DpopReplay => "DPoP proof replayed",
            ProblemKind::DpopNonceRequired => "DPoP nonce required",
            ProblemKind::MultipleTokens => "More than one access token",
        }
    }

    /// A failed authentication (RFC 6750 §3.1, RFC 8705 §3), except a
    /// request that is malformed in RFC 6750's sense (`invalid_request`).
    pub fn status(self) -> u32 {
        match self {
            ProblemKind::MultipleTokens => 400,
            _ => 401,
        }
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
            ProblemKind::DpopRequired => {
                "This resource requires a DPoP-bound access token sent with the DPoP scheme"
            }
            ProblemKind::DpopProofInvalid => "The DPoP proof is invalid",
            ProblemKind::DpopBindingMismatch => {
                "The DPoP proof was signed by a key the access token is not bound to"
            }
            ProblemKind::DpopReplay => {
                "The DPoP proof was used before, or cannot be recorded as used"
            }
            ProblemKind::DpopNonceRequired => "Resource server requires nonce in DPoP proof",
            ProblemKind::MultipleTokens => "The request carries more than one access token",
        }
    }

    /// The RFC 9449 §7.1 / §9 error code for the `DPoP` challenge, if a DPoP kind.
    fn dpop_error(self) -> Option<&'static str> {
        match self {
            ProblemKind::DpopProofInvalid | ProblemKind::DpopReplay => Some("invalid_dpop_proof"),
            ProblemKind::DpopNonceRequired => Some("use_dpop_nonce"),
            ProblemKind::DpopRequired | ProblemKind::DpopBindingMismatch => Some("invalid_token"),
            _ => None,
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
            Denial::Dpop(DpopDenial::Required(_)) => ProblemKind::DpopRequired,
            Denial::Dpop(DpopDenial::ProofInvalid(_)) => ProblemKind::DpopProofInvalid,
            Denial::Dpop(DpopDenial::BindingMismatch { .. }) => ProblemKind::DpopBindingMismatch,
            Denial::Dpop(DpopDenial::Replay(_)) => ProblemKind::DpopReplay,
            Denial::Dpop(DpopDenial::NonceRequired { .. }) => ProblemKind::DpopNonceRequired,
            Denial::MultipleTokens(_) => ProblemKind::MultipleTokens,
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
            Denial::Dpop(denial) => dpop_detail(denial),
            Denial::MultipleTokens(places) => format!(
                "The request carries more than one access token ({}); RFC 6750 allows one \
                 per request, and every token that reaches the service must be the checked one.",
                places.join(", ")
            ),
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

fn dpop_detail(denial: &DpopDenial) -> String {
    match denial {
        DpopDenial::Required(RequiredReason::BoundTokenWithoutDpopScheme) => {
            "The access token is bound to a DPoP key (cnf.jkt) and must be sent as \
             `Authorization: DPoP` with a DPoP proof, not as a bearer token."
                .to_owned()
        }
        DpopDenial::Required(RequiredReason::TokenNotKeyBound) => {
            "This resource only accepts DPoP-bound access tokens (cnf.jkt, RFC 9449).".to_owned()
        }
        DpopDenial::Required(RequiredReason::NoAuthorizationHeader) => {
            "The access token is bound to a DPoP key (cnf.jkt), but no Authorization header \
             reached cnf-guard, so the proof cannot be checked against the token (ath). This is \
             the proxy's configuration, not the client's request: jwt_authn removes the header \
             after verifying it unless its provider sets `forward: true`."
                .to_owned()
        }
        DpopDenial::ProofInvalid(error) => format!("The DPoP proof is invalid: {error}."),
        DpopDenial::BindingMismatch { .. } => "The DPoP proof is signed by a different key \
             than the one the access token is bound to (cnf.jkt)."
            .to_owned(),
        DpopDenial::Replay(Recorded::Replayed) => {
            "This DPoP proof has been used before; make a new proof for every request.".to_owned()
        }
        DpopDenial::Replay(Recorded::Full) => "The DPoP replay cache is full, so the proof \
             cannot be recorded as used; retry shortly."
            .to_owned(),
        DpopDenial::Replay(Recorded::Unavailable(_) | Recorded::Fresh) => {
            "The DPoP proof cannot be checked for replay right now; retry shortly.".to_owned()
        }
        DpopDenial::NonceRequired {
            had_nonce: false, ..
        } => "This resource requires a server-provided nonce in the DPoP proof; \
             use the one in the DPoP-Nonce header."
            .to_owned(),
        DpopDenial::NonceRequired {
            had_nonce: true, ..
        } => "The DPoP proof's nonce is not \
             one this resource issued, or has expired; use the one in the DPoP-Nonce header."
            .to_owned(),
    }
}

/// How DPoP shows in challenges; absent where DPoP is off.
#[derive(Debug, Clone, Copy)]
pub struct DpopChallenge<'a> {
    /// The `algs` parameter: accepted proof algorithms, space-separated.
    pub algs: &'a str,
    /// Whether a bearer token could also be accepted here (policy not `required`).
    pub bearer_accepted: bool,
}

/// Request facts a problem document needs.
pub struct ProblemContext<'a> {
    pub type_base: &'a str,
    /// `:path` as received; the query and fragment are cut off here.
    pub path: Option<&'a str>,
    pub timestamp: &'a str,
    pub request_id: Option<&'a str>,
    pub dpop: Option<DpopChallenge<'a>>,
    /// The client sent its token with the `DPoP` scheme, so an error
    /// challenge answers in that scheme.
    pub dpop_scheme: bool,
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
    let mut headers = vec![("content-type", PROBLEM_CONTENT_TYPE.to_owned())];
    for challenge in challenges(denial, context) {
        headers.push(("www-authenticate", challenge));
    }
    if let Denial::Dpop(DpopDenial::NonceRequired {
        nonce: Some(nonce), ..
    }) = denial
    {
        headers.push(("dpop-nonce", nonce.clone()));
    }
    headers.push(("cache-control", "no-store".to_owned()));
    Reply {
        status: kind.status(),
        headers,
        body,
        details: format!("cnf_guard.{}", kind.slug().replace('-', "_")),
    }
}

/// RFC 6750 §3 and RFC 9449 §7.1: a DPoP denial challenges with `DPoP`, and
/// so does any error for a token sent with the `DPoP` scheme; a request with
/// no token at all is offered every scheme the route takes.
fn challenges(denial: &Denial, context: &ProblemContext<'_>) -> Vec<String> {
    let kind = denial.kind();
    let dpop = context.dpop;
    let dpop_error = |error: &str, dpop: DpopChallenge<'_>| {
        format!(
            "DPoP error=\"{error}\", error_description=\"{}\", algs=\"{}\"",
            kind.error_description(),
            dpop.algs
        )
    };
    if let (Some(error), Some(dpop)) = (kind.dpop_error(), dpop) {
        return vec![dpop_error(error, dpop)];
    }
    let error = match kind {
        ProblemKind::MultipleTokens => Some("invalid_request"),
        _ if denial.token_presented() => Some("invalid_token"),
        _ => None,
    };
    match (error, dpop) {
        (Some(error), Some(dpop)) if context.dpop_scheme => vec![dpop_error(error, dpop)],
        (Some(error), _) => vec![format!(
            "Bearer error=\"{error}\", error_description=\"{}\"",
            kind.error_description()
        )],
        (None, None) => vec!["Bearer".to_owned()],
        (None, Some(dpop)) if dpop.bearer_accepted => {
            vec!["Bearer".to_owned(), format!("DPoP algs=\"{}\"", dpop.algs)]
        }
        (None, Some(dpop)) => vec![format!("DPoP algs=\"{}\"", dpop.algs)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certificate::thumbprint::Thumbprint;
    use crate::token::binding::{AuthFailure, Malformation};
    use serde_json::Value;

    fn context() -> ProblemContext<'static> {
        ProblemContext {
            type_base: "https://example.com/p/",
            path: Some("/orders/7?token=secret#frag"),
            timestamp: "2026-01-02T03:04:05Z",
            request_id: Some("req-1"),
            dpop: None,
            dpop_scheme: false,
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
            dpop: None,
            dpop_scheme: false,
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
