//! The decision: token binding + client certificate + policy → one outcome.
//!
//! Pure: every input is a plain value, so each branch is unit-tested natively.

use crate::binding::{AuthFailure, Malformation, TokenBinding};
use crate::config::BindingPolicy;
use crate::thumbprint::Thumbprint;

/// What the downstream connection tells us about the client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCertificate {
    Absent,
    Present(Thumbprint),
    /// Presented but not usable (e.g. unparsable PEM in `spki` mode).
    Unusable(String),
    /// A forwarded certificate header came from an untrusted hop and was
    /// ignored; holds the header's name.
    Untrusted(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The token is bound and the certificate matches.
    AllowedBound,
    /// The token is unbound and `binding: optional` lets it through.
    AllowedUnbound,
    Denied(Denial),
}

/// Every way a request can be refused; each maps to one problem slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    AuthenticationFailed(AuthFailure),
    TokenInvalid(Malformation),
    TokenUnbound,
    MtlsRequired {
        expected: Thumbprint,
        reason: Option<String>,
    },
    MtlsBindingMismatch {
        expected: Thumbprint,
        presented: Thumbprint,
    },
}

/// Decides one request. `certificate` is only consulted for a certificate-bound
/// token, so callers need not fetch it otherwise (`TokenBinding::needs_certificate`).
pub fn decide(
    policy: BindingPolicy,
    token: TokenBinding,
    certificate: Option<ClientCertificate>,
) -> Outcome {
    match token {
        TokenBinding::Missing(failure) => Outcome::Denied(Denial::AuthenticationFailed(failure)),
        TokenBinding::Malformed(malformation) => {
            Outcome::Denied(Denial::TokenInvalid(malformation))
        }
        TokenBinding::Unbound => match policy {
            BindingPolicy::Required => Outcome::Denied(Denial::TokenUnbound),
            BindingPolicy::Optional => Outcome::AllowedUnbound,
        },
        TokenBinding::Certificate(expected) => match certificate {
            None | Some(ClientCertificate::Absent) => Outcome::Denied(Denial::MtlsRequired {
                expected,
                reason: None,
            }),
            Some(ClientCertificate::Unusable(reason)) => Outcome::Denied(Denial::MtlsRequired {
                expected,
                reason: Some(reason),
            }),
            Some(ClientCertificate::Untrusted(header)) => Outcome::Denied(Denial::MtlsRequired {
                expected,
                reason: Some(format!(
                    "the {header} header did not come from a trusted proxy and was ignored"
                )),
            }),
            Some(ClientCertificate::Present(presented)) if expected.matches(&presented) => {
                Outcome::AllowedBound
            }
            Some(ClientCertificate::Present(presented)) => {
                Outcome::Denied(Denial::MtlsBindingMismatch {
                    expected,
                    presented,
                })
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thumbprint::X5tError;

    fn cert(name: &[u8]) -> Thumbprint {
        Thumbprint::of(name)
    }

    #[test]
    fn matching_certificate_is_allowed() {
        let outcome = decide(
            BindingPolicy::Required,
            TokenBinding::Certificate(cert(b"one")),
            Some(ClientCertificate::Present(cert(b"one"))),
        );
        assert_eq!(outcome, Outcome::AllowedBound);
    }

    #[test]
    fn other_certificate_is_a_mismatch() {
        let outcome = decide(
            BindingPolicy::Optional,
            TokenBinding::Certificate(cert(b"one")),
            Some(ClientCertificate::Present(cert(b"two"))),
        );
        assert_eq!(
            outcome,
            Outcome::Denied(Denial::MtlsBindingMismatch {
                expected: cert(b"one"),
                presented: cert(b"two")
            })
        );
    }

    #[test]
    fn bound_token_without_certificate_needs_mtls() {
        for certificate in [None, Some(ClientCertificate::Absent)] {
            let outcome = decide(
                BindingPolicy::Required,
                TokenBinding::Certificate(cert(b"one")),
                certificate,
            );
            assert_eq!(
                outcome,
                Outcome::Denied(Denial::MtlsRequired {
                    expected: cert(b"one"),
                    reason: None
                })
            );
        }
        for certificate in [
            ClientCertificate::Unusable("bad pem".into()),
            ClientCertificate::Untrusted("x-forwarded-client-cert".into()),
        ] {
            let outcome = decide(
                BindingPolicy::Required,
                TokenBinding::Certificate(cert(b"one")),
                Some(certificate),
            );
            assert!(matches!(
                outcome,
                Outcome::Denied(Denial::MtlsRequired {
                    reason: Some(_),
                    ..
                })
            ));
        }
    }

    #[test]
    fn unbound_follows_policy_and_ignores_certificate() {
        assert_eq!(
            decide(BindingPolicy::Required, TokenBinding::Unbound, None),
            Outcome::Denied(Denial::TokenUnbound)
        );
        assert_eq!(
            decide(BindingPolicy::Optional, TokenBinding::Unbound, None),
            Outcome::AllowedUnbound
        );
    }

    #[test]
    fn token_problems_come_before_certificate_problems() {
        let malformed = TokenBinding::Malformed(Malformation::X5t(X5tError::Hex));
        for policy in [BindingPolicy::Required, BindingPolicy::Optional] {
            assert_eq!(
                decide(policy, malformed.clone(), Some(ClientCertificate::Absent)),
                Outcome::Denied(Denial::TokenInvalid(Malformation::X5t(X5tError::Hex)))
            );
            assert!(matches!(
                decide(policy, TokenBinding::Missing(AuthFailure::default()), None),
                Outcome::Denied(Denial::AuthenticationFailed(_))
            ));
        }
    }
}
